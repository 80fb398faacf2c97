"""The U-Net (METHOD §4): building blocks, the network built from a plan, and
checkpoints (tensors + plain values, loaded ``weights_only``).

May import ``util``, ``data``, ``planning`` and ``preprocessing``.
"""
