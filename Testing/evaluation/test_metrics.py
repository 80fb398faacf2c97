"""Metrics on hand-made masks with known answers (Dice, IoU, counts, volumes, HD95, NaN rules)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from NNSegLib.evaluation.metrics import (
    ClassMetrics,
    case_metrics,
    foreground_mean,
    hd95,
    mean_foreground_dice,
    mean_metrics,
    overlap_metrics,
    surface,
)


def _box(shape, *slices, value=1, into=None):
    a = np.zeros(shape, np.uint8) if into is None else into
    a[tuple(slices)] = value
    return a


def _brute_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Independent HD95: surface by explicit neighbour checks, all pairwise distances."""

    def surf(m):
        p = np.pad(m, 1)
        out = np.zeros_like(m)
        for idx in zip(*np.nonzero(m)):
            z, y, x = (i + 1 for i in idx)
            nbrs = [p[z - 1, y, x], p[z + 1, y, x], p[z, y - 1, x], p[z, y + 1, x],
                    p[z, y, x - 1], p[z, y, x + 1]]
            out[idx] = not all(nbrs)
        return out

    pa = np.argwhere(surf(a)) * np.asarray(spacing)
    pb = np.argwhere(surf(b)) * np.asarray(spacing)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


def test_shifted_cubes_exact_counts_and_volumes():
    shape = (10, 10, 12)
    ref = _box(shape, slice(2, 6), slice(2, 6), slice(2, 6))
    pred = _box(shape, slice(2, 6), slice(2, 6), slice(4, 8))
    m = case_metrics(ref, pred, [1], spacing=(2.0, 1.0, 0.5))[1]
    assert (m.tp, m.fp, m.fn) == (32, 32, 32)
    assert m.dice == pytest.approx(0.5)
    assert m.iou == pytest.approx(1 / 3)
    assert m.ref_ml == pytest.approx(64 * 1.0 / 1000)
    assert m.pred_ml == pytest.approx(64 * 1.0 / 1000)
    assert m.hd95_mm == pytest.approx(_brute_hd95(ref > 0, pred > 0, (2.0, 1.0, 0.5)))


def test_hd95_parallel_planes_known_distance():
    shape = (8, 6, 6)
    a = _box(shape, 2, slice(None), slice(None)) > 0
    b = _box(shape, 5, slice(None), slice(None)) > 0
    assert hd95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    c = _box((4, 4, 10), slice(None), slice(None), 1) > 0
    d = _box((4, 4, 10), slice(None), slice(None), 7) > 0
    assert hd95(c, d, (3.0, 3.0, 0.5)) == pytest.approx(3.0)


def test_hd95_identical_is_zero_and_empty_is_nan():
    a = _box((6, 6, 6), slice(1, 4), slice(1, 4), slice(1, 4)) > 0
    assert hd95(a, a, (1, 1, 1)) == 0.0
    assert math.isnan(hd95(a, np.zeros_like(a), (1, 1, 1)))


@pytest.mark.parametrize("method", ["edt", "kdtree", "auto"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_matches_brute_force_on_random_blobs(seed, method):
    rng = np.random.default_rng(seed)
    a = rng.random((7, 9, 8)) > 0.6
    b = rng.random((7, 9, 8)) > 0.7
    spacing = (2.5, 0.7, 1.1)
    assert hd95(a, b, spacing, method) == pytest.approx(_brute_hd95(a, b, spacing))


def test_hd95_methods_agree_on_offset_boxes():
    a = np.zeros((20, 30, 30), bool)
    a[2:15, 3:25, 4:20] = True
    b = np.zeros_like(a)
    b[4:18, 3:22, 6:26] = True
    spacing = (3.0, 0.8, 0.8)
    edt = hd95(a, b, spacing, "edt")
    assert hd95(a, b, spacing, "kdtree") == pytest.approx(edt)
    assert edt == pytest.approx(_brute_hd95(a, b, spacing))
    with pytest.raises(ValueError):
        hd95(a, b, spacing, "fast")


def test_surface_of_cube_is_its_shell():
    cube = _box((7, 7, 7), slice(1, 6), slice(1, 6), slice(1, 6)) > 0
    s = surface(cube)
    assert s.sum() == 5 ** 3 - 3 ** 3
    assert not s[3, 3, 3]


def test_nan_rules_and_means():
    shape = (6, 6, 6)
    ref = _box(shape, slice(0, 2), slice(0, 2), slice(0, 2), value=1)
    pred = ref.copy()
    pred[5, 5, 5] = 2  # class 2: empty reference, one predicted voxel
    m = case_metrics(ref, pred, [1, 2, 3], (1, 1, 1))
    assert m[1].dice == 1.0 and m[1].hd95_mm == 0.0
    assert m[2].dice == 0.0 and m[2].iou == 0.0 and math.isnan(m[2].hd95_mm)
    assert (m[2].tp, m[2].fp, m[2].fn) == (0, 1, 0)
    assert math.isnan(m[3].dice) and math.isnan(m[3].iou) and math.isnan(m[3].hd95_mm)
    missed = case_metrics(ref, np.zeros_like(ref), [1], (1, 1, 1))[1]
    assert missed.dice == 0.0 and math.isnan(missed.hd95_mm) and missed.fn == 8

    cases = [m[3], overlap_metrics(1, 1, 0, 0.001), missed]
    mean = mean_metrics(cases)
    assert mean["dice"] == pytest.approx((2 / 3 + 0.0) / 2)  # NaN case left out
    assert mean["n_cases"] == 3 and mean["n_empty_both"] == 1
    assert mean["n_pred_empty"] == 1 and mean["n_ref_empty"] == 0
    assert mean["fn"] == pytest.approx(8 / 3)  # counts over all cases


def test_foreground_mean_is_mean_of_class_means():
    nan = overlap_metrics(0, 0, 0, 1.0)
    per_case = [{1: overlap_metrics(1, 0, 0, 1.0), 2: nan},
                {1: overlap_metrics(0, 1, 1, 1.0), 2: overlap_metrics(3, 2, 0, 1.0)}]
    class_means = {k: mean_metrics([c[k] for c in per_case]) for k in (1, 2)}
    assert class_means[1]["dice"] == pytest.approx(0.5)
    assert class_means[2]["dice"] == pytest.approx(0.75)
    assert foreground_mean(class_means)["dice"] == pytest.approx(0.625)
    assert mean_foreground_dice(per_case) == pytest.approx(0.625)
    all_nan = foreground_mean({1: mean_metrics([nan])})
    assert math.isnan(all_nan["dice"])


def test_single_slice_volume_and_json_round_trip():
    ref = np.zeros((1, 8, 8), np.uint8)
    ref[0, 2:5, 2:5] = 1
    pred = np.zeros_like(ref)
    pred[0, 2:5, 3:6] = 1
    m = case_metrics(ref, pred, [1], (999.0, 0.5, 0.5))[1]
    assert m.dice == pytest.approx(2 * 6 / 18)
    assert m.hd95_mm == pytest.approx(0.5)
    nan = overlap_metrics(0, 0, 0, 1.0)
    d = nan.to_dict()
    assert d["dice"] is None and d["hd95_mm"] is None
    back = ClassMetrics.from_dict(d)
    assert math.isnan(back.dice) and back.tp == 0
    assert ClassMetrics.from_dict(m.to_dict()) == m


def test_case_metrics_only_touches_class_boxes():
    # Same numbers as a plain full-volume computation, for several classes at once.
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 4, (9, 10, 11)).astype(np.uint8)
    pred = rng.integers(0, 4, (9, 10, 11)).astype(np.uint8)
    got = case_metrics(ref, pred, [1, 2, 3], (1.0, 2.0, 0.5), compute_hd95=False)
    for k in (1, 2, 3):
        r, p = ref == k, pred == k
        tp = int((r & p).sum())
        assert (got[k].tp, got[k].fp, got[k].fn) == (tp, int(p.sum()) - tp, int(r.sum()) - tp)
        assert got[k].ref_ml == pytest.approx(r.sum() * 1e-3)
