"""The 3D Slicer side of the library: the MRML bridge (the only code that imports
``slicer``, lazily), scene ⇄ dataset and prediction, terminology, RAS geometry, the
subprocess and background-job runners, every decision of the module's panels (which
button is enabled and why, default folders, captured inputs, overwrite rules, run
discovery, device text), so that ``NNSeg/NNSeg.py`` only wires widgets, and the review side
of the clinician's loop (batch job, review case in the scene). No ``qt``.

May import every other subpackage; nothing in NNSegLib imports it (only ``NNSeg.py``).
"""
