from __future__ import annotations

import numpy as np
import pytest

from NNSegLib.planning.plans import IntensityProperties
from NNSegLib.preprocessing.normalize import normalize
from NNSegLib.util.errors import NNSegError


def _image(seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((20, 24, 24), np.float32)
    image[4:16, 5:20, 3:21] = rng.normal(1.2e6, 3e4, (12, 15, 18))  # huge MR values
    return image


def test_zscore_inside_mask():
    image = _image()
    mask = image != 0
    out = normalize(image[None], ["zscore"], [True], {}, mask)[0]
    assert out.dtype == np.float32
    assert abs(float(out[mask].mean())) < 1e-3
    assert float(out[mask].std()) == pytest.approx(1.0, abs=1e-3)
    assert np.all(out[~mask] == 0)


def test_zscore_whole_image():
    image = _image(1)
    out = normalize(image[None], ["zscore"], [False], {})[0]
    assert abs(float(out.mean())) < 1e-3
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)
    assert np.all(out[image == 0] < 0)  # zeros are below the mean, not forced to 0


def test_ct_clips_and_uses_dataset_statistics():
    image = np.linspace(-1000, 2000, 3000, dtype=np.float32).reshape(10, 15, 20)
    props = {"0": IntensityProperties(mean=50.0, std=100.0, percentile_00_5=-100.0,
                                      percentile_99_5=300.0)}
    out = normalize(image[None], ["ct"], [False], props)[0]
    assert float(out.min()) == pytest.approx((-100 - 50) / 100)
    assert float(out.max()) == pytest.approx((300 - 50) / 100)
    inside = (image > -100) & (image < 300)
    np.testing.assert_allclose(out[inside], (image[inside] - 50) / 100, rtol=1e-5, atol=1e-5)


def test_per_channel_schemes_and_errors():
    image = _image()
    stack = np.stack([image, image * 2])
    props = {"1": IntensityProperties(0.0, 1.0, -1e9, 1e9)}
    out = normalize(stack, ["zscore", "none"], [False, False], props)
    np.testing.assert_array_equal(out[1], stack[1])
    with pytest.raises(NNSegError, match="unknown normalization"):
        normalize(stack, ["bogus"], [False], props)
    with pytest.raises(NNSegError, match="mask"):
        normalize(stack, ["zscore"], [True], props, None)
