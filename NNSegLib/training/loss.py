"""Dice + cross-entropy loss with deep supervision (METHOD.md §4), and pseudo-Dice counts.

Sign convention (nnU-Net's): the Dice term is the *negative* soft Dice, so a perfect
prediction gives a Dice term of −1 and a loss of about −1 (cross-entropy → 0).

Soft Dice is computed on the softmax over foreground classes only (background left out),
``(2·Σ p·g + smooth) / (Σ p + Σ g + smooth)``:

- ``batch_dice=False``: sums over each sample's voxels, Dice averaged over samples and
  classes (3D full-res and cascade);
- ``batch_dice=True``: sums over the whole batch, averaged over classes.

Deep supervision: output ``i`` (``0`` = highest resolution) has weight ``2**-i``; the
lowest-resolution output gets weight 0 and is not evaluated; weights are normalized to
sum 1. Targets are downsampled to each output's shape by strided slicing
(``target[..., ::f, ::f, ::f]``, nearest neighbour taking the first voxel of every
``f``-block): a view, no copy, no interpolation; other shapes fall back to nearest
interpolation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """Weights ``2**-i`` per output, the last (lowest resolution) 0, normalized to sum 1.

    A single output gets weight 1.
    """
    if num_outputs < 1:
        raise ValueError("need at least one output")
    if num_outputs == 1:
        return [1.0]
    raw = [0.5 ** i for i in range(num_outputs - 1)] + [0.0]
    total = sum(raw)
    return [w / total for w in raw]


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of a label map ``(B, 1, *S)`` to spatial ``shape``."""
    shape = tuple(int(s) for s in shape)
    src = tuple(target.shape[2:])
    if src == shape:
        return target
    if all(a % b == 0 for a, b in zip(src, shape)):
        index: tuple = (Ellipsis, *[slice(None, None, a // b) for a, b in zip(src, shape)])
        return target[index]
    return F.interpolate(target.float(), size=shape, mode="nearest").to(target.dtype)


def _one_hot(target: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``(B, 1, *S)`` integer labels → ``(B, K, *S)`` float one-hot in ``like``'s layout."""
    onehot = torch.zeros_like(like)
    return onehot.scatter_(1, target.long(), 1.0)


def soft_dice(probs: torch.Tensor, onehot: torch.Tensor, batch_dice: bool,
              smooth: float = 1e-5, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean soft Dice over foreground classes (channels 1…K-1) of probabilities ``probs``.

    Args:
        probs: ``(B, K, *S)`` softmax probabilities.
        onehot: ``(B, K, *S)`` one-hot target.
        batch_dice: Sum over the batch before taking the ratio.
        smooth: Added to numerator and denominator.
        mask: Optional ``(B, 1, *S)`` float mask of voxels that count.
    """
    probs, onehot = probs[:, 1:], onehot[:, 1:]
    if mask is not None:
        probs = probs * mask
        onehot = onehot * mask
    dims = tuple(range(2, probs.ndim))
    if batch_dice:
        dims = (0, *dims)
    intersect = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersect + smooth) / (denominator + smooth).clamp_min(1e-8)
    return dice.mean()


class DiceCELoss(nn.Module):
    """``ce_weight · CE − dice_weight · softDice`` for one output.

    Args:
        num_classes: Classes including background.
        batch_dice: See :func:`soft_dice`.
        smooth: Dice smoothing.
        ignore_label: Label value excluded from both terms (or None).
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the Dice term.
    """

    def __init__(self, num_classes: int, batch_dice: bool, smooth: float = 1e-5,
                 ignore_label: int | None = None, ce_weight: float = 1.0,
                 dice_weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.ignore_label = ignore_label
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits (B, K, *S)`` against integer ``target (B, 1, *S)``."""
        logits = logits.float()
        target = target.long()
        mask = None
        if self.ignore_label is not None:
            valid = target != self.ignore_label
            mask = valid.to(logits.dtype)
            target = torch.where(valid, target, torch.zeros_like(target))
        ce = logits.new_zeros(())
        if self.ce_weight:
            ce_target = target[:, 0] if mask is None else torch.where(
                mask[:, 0] > 0, target[:, 0], torch.full_like(target[:, 0], -100))
            ce = F.cross_entropy(logits, ce_target, ignore_index=-100)
        dice = logits.new_zeros(())
        if self.dice_weight:
            probs = torch.softmax(logits, 1)
            dice = soft_dice(probs, _one_hot(target, self.num_classes, probs), self.batch_dice,
                             self.smooth, mask)
        return self.ce_weight * ce - self.dice_weight * dice


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of :class:`DiceCELoss` over deep-supervision outputs.

    Args:
        num_classes: Classes including background.
        batch_dice: Dice over the whole batch (plan's ``batch_dice``).
        weights: Per-output weights, highest resolution first (default:
            :func:`deep_supervision_weights` for however many outputs are given).
            Normalized to sum 1; outputs with weight 0 are skipped.
        smooth: Dice smoothing.
        ignore_label: Label excluded from the loss, or None.
        ce_weight: Weight of cross-entropy.
        dice_weight: Weight of Dice.
    """

    def __init__(self, num_classes: int, batch_dice: bool,
                 weights: Sequence[float] | None = None, smooth: float = 1e-5,
                 ignore_label: int | None = None, ce_weight: float = 1.0,
                 dice_weight: float = 1.0) -> None:
        super().__init__()
        self.weights = None
        if weights is not None:
            total = float(sum(weights))
            if total <= 0:
                raise ValueError(f"deep supervision weights {weights} must sum to > 0")
            self.weights = [float(w) / total for w in weights]
        self.loss = DiceCELoss(num_classes, batch_dice, smooth, ignore_label, ce_weight,
                               dice_weight)

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor],
                target: torch.Tensor) -> torch.Tensor:
        """Loss of one logits tensor or a list (highest resolution first) vs ``target``.

        Args:
            outputs: ``(B, K, *S_i)`` logits, or a list of them.
            target: ``(B, 1, *S_0)`` integer labels at the highest resolution.
        """
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        weights = self.weights or deep_supervision_weights(len(outputs))
        if len(weights) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs but {len(weights)} loss weights")
        total = None
        for w, logits in zip(weights, outputs):
            if w == 0:
                continue
            term = w * self.loss(logits, downsample_target(target, logits.shape[2:]))
            total = term if total is None else total + term
        assert total is not None  # at least one output has a weight
        return total


def soft_dice_per_class(logits: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_label: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True/false positives and false negatives per foreground class of the argmax.

    For the online pseudo-Dice: accumulate the counts over validation batches, then
    :func:`dice_from_counts`.

    Args:
        logits: ``(B, K, *S)`` (a deep-supervision list: pass its first element).
        target: ``(B, 1, *S)`` integer labels.
        num_classes: K.
        ignore_label: Voxels with this label are not counted.

    Returns:
        ``(tp, fp, fn)``, each int64 of shape ``(K-1,)`` (classes 1…K-1), summed over
        the batch.
    """
    with torch.no_grad():
        pred = logits.argmax(1)
        ref = target[:, 0].long()
        if ignore_label is not None:
            valid = ref != ignore_label
            pred = torch.where(valid, pred, torch.full_like(pred, -1))
            ref = torch.where(valid, ref, torch.full_like(ref, -1))
        classes = torch.arange(1, num_classes, device=logits.device).view(-1, 1)
        pred_flat, ref_flat = pred.reshape(1, -1), ref.reshape(1, -1)
        p = pred_flat == classes
        r = ref_flat == classes
        tp = (p & r).sum(1)
        fp = (p & ~r).sum(1)
        fn = (~p & r).sum(1)
    return tp, fp, fn


def dice_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``2tp / (2tp + fp + fn)`` per class; NaN where the class is absent from both."""
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1),
                       torch.full_like(tp, float("nan")))


__all__ = [
    "DeepSupervisionLoss",
    "DiceCELoss",
    "deep_supervision_weights",
    "dice_from_counts",
    "downsample_target",
    "soft_dice",
    "soft_dice_per_class",
]
