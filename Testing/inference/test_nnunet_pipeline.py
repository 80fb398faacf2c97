from __future__ import annotations

import numpy as np

from NNSegLib.inference.nnunet_pipeline import (
    resample_like_nnunet,
    resize_segmentation,
    separate_z_axis,
)


def test_separate_z_axis_rules():
    assert separate_z_axis((3.0, 1.0, 1.0), (3.0, 1.0, 1.0)) is None     # ratio 3 is not > 3
    assert separate_z_axis((5.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == 0
    assert separate_z_axis((1.0, 1.0, 1.0), (1.0, 0.8, 4.0)) == 2
    assert separate_z_axis((5.0, 5.0, 1.0), (1.0, 1.0, 1.0)) is None     # two low-res axes
    assert separate_z_axis((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), force=True) is None


def test_resampling_properties():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 6, 10, 9)).astype(np.float32)
    assert resample_like_nnunet(data, (6, 10, 9), (1, 1, 1), (1, 1, 1)) is data
    out = resample_like_nnunet(data, (12, 15, 9), (1, 1, 1), (0.5, 0.66, 1))
    assert out.shape == (2, 12, 15, 9) and out.dtype == np.float32
    assert out.min() >= data.min() - 1e-6 and out.max() <= data.max() + 1e-6   # clipped
    # linear ramp along x survives order-1 resampling in the interior (voxel centres aligned)
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32), (1, 4, 5, 8)).copy()
    up = resample_like_nnunet(ramp, (4, 5, 16), (1, 1, 1), (1, 1, 0.5), order=1)
    np.testing.assert_allclose(up[0, 0, 0, 1:-1], (np.arange(1, 15) + 0.5) / 2 - 0.5, atol=1e-5)
    # anisotropic: z resampled with order 0 separately (values along z are copies)
    aniso = resample_like_nnunet(data, (12, 10, 9), (5, 1, 1), (2.5, 1, 1))
    np.testing.assert_array_equal(aniso[:, ::2], data)
    np.testing.assert_array_equal(aniso[:, 1::2], data)


def test_resize_segmentation_keeps_labels():
    seg = np.zeros((4, 8, 8), np.int16)
    seg[1:3, 2:6, 2:6] = 2
    seg[0] = -1
    out = resize_segmentation(seg, (8, 16, 16))
    assert set(np.unique(out)) == {-1, 0, 2}
    assert (out[3:5, 5:11, 5:11] == 2).all() and (out[:, 0, 0] != 2).all()
