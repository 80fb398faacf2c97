"""Training (METHOD §4): loss, augmentation, patch sampling, schedules, the training loop,
checkpoints and logs of a run, distributed training, fold validation (which
predicts with ``inference``), and fine-tuning from trained weights with model versions
(METHOD §8).

May import every subpackage except ``slicer``.
"""
