"""Tests of NNSegLib.training.loss on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from NNSegLib.training.loss import (
    DeepSupervisionLoss,
    DiceCELoss,
    deep_supervision_weights,
    dice_from_counts,
    downsample_target,
    soft_dice,
    soft_dice_per_class,
)


def hard_logits(labels: torch.Tensor, num_classes: int, scale: float = 50.0) -> torch.Tensor:
    """Logits whose softmax is (almost exactly) the one-hot of ``labels (B, 1, *S)``."""
    onehot = F.one_hot(labels[:, 0].long(), num_classes).movedim(-1, 1).float()
    return onehot * scale


def test_weights_halve_and_lowest_is_off():
    assert deep_supervision_weights(4) == pytest.approx([4 / 7, 2 / 7, 1 / 7, 0.0])
    assert deep_supervision_weights(2) == pytest.approx([1.0, 0.0])
    assert deep_supervision_weights(1) == [1.0]


def test_perfect_prediction_gives_minus_one():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 6, 5, 4), generator=g)
    loss = DiceCELoss(3, batch_dice=False)(hard_logits(target, 3), target)
    assert loss.item() == pytest.approx(-1.0, abs=1e-6)


def test_cross_entropy_term_equals_torch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 1, 5, 6), generator=g)
    ce_only = DiceCELoss(4, batch_dice=True, dice_weight=0.0)(logits, target)
    assert ce_only.item() == pytest.approx(F.cross_entropy(logits, target[:, 0]).item(), rel=1e-6)
    both = DiceCELoss(4, batch_dice=True)(logits, target)
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(target[:, 0], 4).movedim(-1, 1).float()
    inter = (probs * onehot)[:, 1:].sum((0, 2, 3))
    den = probs[:, 1:].sum((0, 2, 3)) + onehot[:, 1:].sum((0, 2, 3))
    dice = ((2 * inter + 1e-5) / (den + 1e-5)).mean()
    assert both.item() == pytest.approx(ce_only.item() - dice.item(), rel=1e-6)


def _two_sample_case():
    """Sample 0: 4 fg voxels predicted exactly; sample 1: 1 fg voxel, 3 predicted incl. it."""
    target = torch.zeros(2, 1, 8, dtype=torch.long)
    pred = torch.zeros(2, 1, 8, dtype=torch.long)
    target[0, 0, :4] = 1
    pred[0, 0, :4] = 1
    target[1, 0, 0] = 1
    pred[1, 0, :3] = 1
    onehot = F.one_hot(pred[:, 0], 2).movedim(-1, 1).float()
    ref = F.one_hot(target[:, 0], 2).movedim(-1, 1).float()
    return onehot, ref, pred, target


def test_per_sample_vs_batch_dice_known_values():
    probs, ref, _, _ = _two_sample_case()
    per_sample = soft_dice(probs, ref, batch_dice=False, smooth=0.0)
    batch = soft_dice(probs, ref, batch_dice=True, smooth=0.0)
    assert per_sample.item() == pytest.approx((1.0 + 0.5) / 2)  # 2·1/(3+1) = 0.5
    assert batch.item() == pytest.approx(10 / 12)  # tp 5, |p| 7, |g| 5


def test_smooth_makes_empty_class_count_as_perfect():
    probs = torch.zeros(1, 2, 4)
    probs[:, 0] = 1
    ref = probs.clone()
    assert soft_dice(probs, ref, batch_dice=False).item() == pytest.approx(1.0)


def test_deep_supervision_is_weighted_sum_and_skips_lowest():
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 3, (2, 1, 8, 8, 8), generator=g)
    outs = [torch.randn(2, 3, 8, 8, 8, generator=g), torch.randn(2, 3, 4, 4, 4, generator=g),
            torch.full((2, 3, 2, 2, 2), float("nan"))]  # lowest is never evaluated
    loss_fn = DeepSupervisionLoss(3, batch_dice=False)
    single = DiceCELoss(3, batch_dice=False)
    expected = (2 / 3) * single(outs[0], target) + (1 / 3) * single(
        outs[1], target[:, :, ::2, ::2, ::2])
    got = loss_fn(outs, target)
    assert math.isfinite(got.item())
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_explicit_weights_are_normalized():
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 2, (1, 1, 4, 4), generator=g)
    outs = [torch.randn(1, 2, 4, 4, generator=g), torch.randn(1, 2, 2, 2, generator=g)]
    single = DiceCELoss(2, batch_dice=True)
    got = DeepSupervisionLoss(2, True, weights=[1.0, 3.0])(outs, target)
    expected = 0.25 * single(outs[0], target) + 0.75 * single(outs[1], target[:, :, ::2, ::2])
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError):
        DeepSupervisionLoss(2, True, weights=[1.0, 1.0, 1.0])(outs, target)


def test_downsample_target_is_strided_nearest():
    t = torch.arange(4 * 6).view(1, 1, 4, 6)
    assert downsample_target(t, (2, 3)).tolist() == [[[[0, 2, 4], [12, 14, 16]]]]
    assert downsample_target(t, (4, 6)) is t
    odd = downsample_target(t, (3, 4))  # not a divisor: nearest interpolation
    assert odd.shape == (1, 1, 3, 4) and odd.dtype == t.dtype


def test_ignore_label_voxels_do_not_matter():
    g = torch.Generator().manual_seed(4)
    target = torch.randint(0, 3, (2, 1, 6, 6), generator=g)
    target[:, :, :2] = 3  # ignore label
    logits = torch.randn(2, 3, 6, 6, generator=g)
    loss_fn = DiceCELoss(3, batch_dice=False, ignore_label=3)
    a = loss_fn(logits, target)
    logits2 = logits.clone()
    logits2[:, :, :2] = torch.randn(2, 3, 2, 6, generator=g) * 10
    assert loss_fn(logits2, target).item() == pytest.approx(a.item(), rel=1e-6)


def test_pseudo_dice_counts():
    _, _, pred, target = _two_sample_case()
    logits = F.one_hot(pred[:, 0], 3).movedim(-1, 1).float()  # class 2 never present
    tp, fp, fn = soft_dice_per_class(logits, target, 3)
    assert tp.tolist() == [5, 0] and fp.tolist() == [2, 0] and fn.tolist() == [0, 0]
    dice = dice_from_counts(tp, fp, fn)
    assert dice[0].item() == pytest.approx(10 / 12)
    assert math.isnan(dice[1].item())


def test_gradient_flows_to_all_evaluated_outputs():
    g = torch.Generator().manual_seed(5)
    target = torch.randint(0, 2, (1, 1, 4, 4, 4), generator=g)
    outs = [torch.randn(1, 2, 4, 4, 4, generator=g, requires_grad=True),
            torch.randn(1, 2, 2, 2, 2, generator=g, requires_grad=True),
            torch.randn(1, 2, 1, 1, 1, generator=g, requires_grad=True)]
    DeepSupervisionLoss(2, batch_dice=False)(outs, target).backward()
    assert outs[0].grad.abs().sum() > 0 and outs[1].grad.abs().sum() > 0
    assert outs[2].grad is None
