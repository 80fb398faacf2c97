"""Prediction (METHOD §5): loading model folders (NNSeg's and nnU-Net v2's), the
Gaussian sliding window with mirror TTA, fold/configuration ensembles, the cascade's
hand-over between stages, and model packages (zip export/import).

May import every subpackage above except ``training`` and ``slicer``.
"""
