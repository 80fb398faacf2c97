"""The 3D Slicer side of the library: the MRML bridge (the only code that imports
``slicer``, lazily), scene ⇄ dataset and prediction, terminology, RAS geometry, the
subprocess runner and the texts/commands of the module's panels. No ``qt``.

May import every other subpackage; nothing in NNSegLib imports it (only ``NNSeg.py``).
"""
