"""How unsure a prediction is, voxel by voxel, from the averaged class probabilities.

The normalized entropy ``-Σ p ln p / ln K`` is 0 where one class has all the probability
and 1 where all ``K`` classes are equally likely. ``nnseg predict --uncertainty`` writes it
as an image; the Slicer module shows it as an overlay.
"""

from __future__ import annotations

import numpy as np


def normalized_entropy(probabilities) -> np.ndarray:
    """``-Σ p ln p / ln K`` over axis 0 of ``(K, …)`` probabilities, float32 in ``[0, 1]``."""
    import torch

    p = torch.as_tensor(np.asarray(probabilities), dtype=torch.float32)
    k = p.shape[0]
    h = torch.zeros(p.shape[1:], dtype=torch.float32)
    for c in range(k):   # class by class: no (K, …) temporary; 0 ln 0 = 0
        pc = p[c].clamp(0.0, 1.0)
        h -= torch.special.xlogy(pc, pc)
    return (h / float(np.log(k))).clamp_(0.0, 1.0).numpy() if k > 1 else h.numpy()


__all__ = ["normalized_entropy"]
