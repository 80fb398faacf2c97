"""Training (METHOD §4): loss, augmentation, patch sampling, schedules, the training loop,
checkpoints and logs of a run, distributed training, and fold validation (which
predicts with ``inference``).

May import every subpackage except ``slicer``.
"""
