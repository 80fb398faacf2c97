from __future__ import annotations

import numpy as np
import pytest
import torch

from NNSegLib.preprocessing.resample import (
    compute_new_shape,
    resample_images,
    resample_labels,
    resample_torch,
    resample_volume,
    separate_axis,
)


def _ball(shape, centre, radius):
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius)) <= 1


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_new_shape_and_separate_axis():
    assert compute_new_shape((10, 100, 90), (3.0, 0.5, 0.5), (1.5, 1.0, 1.0)) == (20, 50, 45)
    assert separate_axis((4.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == 0
    assert separate_axis((1.0, 1.0, 1.0), (1.0, 1.0, 3.5)) == 2
    assert separate_axis((2.0, 1.0, 1.0), (2.0, 1.0, 1.0)) is None
    assert separate_axis((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), planned_axis=1) == 1


def test_identity_and_constant():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 7, 8)).astype(np.float32)
    assert resample_volume(v, v.shape, 3) is not None
    np.testing.assert_array_equal(resample_volume(v, v.shape, 3), v)
    const = np.full((5, 6, 7), 2.5, np.float32)
    np.testing.assert_allclose(resample_volume(const, (9, 4, 11), 3), 2.5, atol=1e-5)


def test_numpy_linear_matches_torch():
    rng = np.random.default_rng(1)
    v = rng.random((7, 9, 11)).astype(np.float32)
    for axis in (None, 0):
        a = resample_volume(v, (13, 5, 17), order=1, axis=axis, order_axis=0)
        b = resample_torch(torch.from_numpy(v), (13, 5, 17), axis=axis, order_axis=0).numpy()
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_order0_along_anisotropic_axis():
    # every z slice a different constant: order 0 along z must copy whole slices
    v = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None] * 10, (6, 8, 8)).copy()
    out = resample_images(v[None], (15, 12, 12), order=3, axis=0, order_axis=0)[0]
    per_slice = out.reshape(15, -1)
    np.testing.assert_allclose(per_slice.min(1), per_slice.max(1), atol=1e-4)
    assert set(np.round(per_slice[:, 0]).astype(int)) == {0, 10, 20, 30, 40, 50}
    # without the separate axis the spline mixes neighbouring slices
    mixed = resample_volume(v, (15, 12, 12), order=3)
    assert not set(np.round(mixed[:, 0, 0], 3)) <= {0, 10, 20, 30, 40, 50}


@pytest.mark.parametrize("order", [0, 1])
def test_labels_keep_values_and_shape(order):
    shape = (20, 40, 40)
    seg = np.zeros(shape, np.int8)
    seg[_ball(shape, (10, 15, 20), (6, 10, 8))] = 3
    seg[_ball(shape, (10, 28, 20), (5, 6, 9))] = 1
    small = resample_labels(seg, (10, 30, 30), order=order)
    assert small.dtype == np.int8 and set(np.unique(small)) == {0, 1, 3}
    back = resample_labels(small, shape, order=order)
    for k in (1, 3):
        assert _dice(back == k, seg == k) > (0.9 if order else 0.85)


def test_anisotropic_label_round_trip():
    shape = (12, 48, 48)
    seg = _ball(shape, (6, 24, 22), (4.5, 16, 14)).astype(np.int8) * 2
    up = resample_labels(seg, (36, 40, 40), order=1, axis=0, order_axis=0)
    back = resample_labels(up, shape, order=1, axis=0, order_axis=0)
    # nearest along z: every upsampled slice equals an in-plane-resampled source slice
    assert _dice(back == 2, seg == 2) > 0.97
    areas = (up == 2).sum(axis=(1, 2))
    np.testing.assert_array_equal(areas[0::3], areas[1::3])
