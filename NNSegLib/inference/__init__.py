"""Prediction (METHOD §5): loading model folders (NNSeg's and nnU-Net v2's), the
Gaussian sliding window with mirror TTA, fold/configuration ensembles, the cascade's
hand-over between stages, model packages (zip export/import), and the clinician's loop's
batch segmentation and review queue (METHOD §8).

May import every subpackage above except ``training`` and ``slicer``.
"""
