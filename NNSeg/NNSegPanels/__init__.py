"""The Qt controllers of NNSeg's panels, one module per panel (Dataset, Plan, Train, Segment,
Batch and review) plus ``common``: each connects its buttons and shows what
``NNSegLogic`` decides. ``NNSeg.py``'s widget creates them in ``setup()``. ``path_field`` binds
the path fields that may stay empty (the model, the batch's input folder)."""
