"""The 3D Slicer side of the library, without ``qt``, in rooms (see NNSegLib/README.md):

``scene/`` (the MRML bridge, the only code that imports ``slicer``, lazily; scene ⇄ dataset
and prediction, terminology, RAS geometry, review nodes), ``panels/`` (one module per panel
of the Slicer module: its state, rules, texts, locks and commands) and, below the panels,
what they decide with (captured Segment runs and their preview, run discovery, fine-tune
plans, batch jobs, typed requests, default folders, device text). ``module_logic`` puts the
panels together for ``NNSeg/NNSeg.py``, which only wires widgets.

May import every other subpackage; nothing in NNSegLib imports it (only ``NNSeg.py``).
"""
