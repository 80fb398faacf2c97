"""The per-epoch pseudo-Dice (METHOD §4): Dice of TP/FP/FN summed over validation patches."""

from __future__ import annotations

import numpy as np
import torch


def confusion_counts(logits: torch.Tensor, target: torch.Tensor, num_classes: int
                     ) -> torch.Tensor:
    """Per class ``[tp, fp, fn]`` (``(K, 3)`` int64) of ``argmax(logits)`` against ``target``."""
    pred = logits.argmax(1).flatten().long()
    ref = target[:, 0].flatten().long().clamp(0, num_classes - 1)
    cm = torch.bincount(ref * num_classes + pred, minlength=num_classes ** 2)
    cm = cm.reshape(num_classes, num_classes).cpu()
    tp = cm.diagonal()
    return torch.stack([tp, cm.sum(0) - tp, cm.sum(1) - tp], dim=1)


def dice_from_counts(counts: np.ndarray) -> list[float | None]:
    """Foreground classes' Dice from ``(K, 3)`` counts (``None`` where undefined)."""
    out: list[float | None] = []
    for tp, fp, fn in counts[1:]:
        denom = 2 * tp + fp + fn
        out.append(float(2 * tp / denom) if denom > 0 else None)
    return out


__all__ = ["confusion_counts", "dice_from_counts"]
