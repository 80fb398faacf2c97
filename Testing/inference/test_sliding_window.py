from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from NNSegLib.inference.sliding_window import (
    SlidingWindowSettings,
    gaussian_importance_map,
    mirror_combinations,
    pad_to_window,
    patch_slices,
    predict_sliding_window,
    window_starts,
)
from NNSegLib.util.progress import Cancelled, Progress

#: The arithmetic tests check the window/mirror bookkeeping exactly: plain fp32.
Fp32Settings = functools.partial(SlidingWindowSettings, precision="fp32")


class Identity(torch.nn.Module):
    """1x1 conv with identity weights: output logits == input channels."""

    def __init__(self, channels: int, dims: int = 3) -> None:
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.conv = conv(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(channels):
                self.conv.weight[(c, c) + (0,) * dims] = 1.0
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.conv(x)


class Asymmetric(torch.nn.Module):
    """A fixed random 3x3x3 conv: not mirror-equivariant by itself."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x)


def test_gaussian_map_properties():
    g = gaussian_importance_map((40, 56, 41))
    assert g.shape == (40, 56, 41) and g.dtype == torch.float32
    assert float(g.max()) == pytest.approx(1.0, abs=1e-6)
    assert float(g[20, 28, 20]) == pytest.approx(1.0, abs=1e-6)   # odd axis: exact centre
    assert float(g.min()) > 0
    # symmetric under mirroring of every axis
    for axis in range(3):
        assert torch.allclose(g, g.flip(axis))
    # sigma = patch/8 along each axis: one sigma (10 voxels for 80) from the centre is exp(-1/2)
    one_d = gaussian_importance_map((80,))
    assert float(one_d[49]) == pytest.approx(
        np.exp(-0.5 * (9.5 / 10) ** 2) / np.exp(-0.5 * (0.5 / 10) ** 2), rel=1e-5)
    assert float(one_d[30]) == float(one_d[49])
    # separable: product of 1D maps
    gy, gx = gaussian_importance_map((16,)), gaussian_importance_map((24,))
    assert torch.allclose(gaussian_importance_map((16, 24)), gy[:, None] * gx[None], atol=1e-7)


def test_window_starts_cover_with_half_overlap():
    assert window_starts(40, 40, 0.5) == [0]
    assert window_starts(100, 40, 0.5) == [0, 20, 40, 60]
    starts = window_starts(97, 40, 0.5)
    assert starts[0] == 0 and starts[-1] == 57 and len(starts) == 4
    assert max(np.diff(starts)) <= 20
    with pytest.raises(ValueError):
        window_starts(10, 40, 0.5)
    assert len(patch_slices((100, 40, 60), (40, 40, 40), 0.5)) == 4 * 1 * 2


def test_mirror_combinations():
    combos = mirror_combinations((0, 1, 2))
    assert len(combos) == 8 and combos[0] == () and (0, 1, 2) in combos
    assert mirror_combinations(()) == [()]


def test_pad_to_window_centres_the_data():
    x = torch.arange(2 * 3 * 10 * 5, dtype=torch.float32).reshape(2, 3, 10, 5)
    padded, crop = pad_to_window(x, (8, 8, 8))
    assert padded.shape == (2, 8, 10, 8)
    assert torch.equal(padded[(slice(None),) + crop], x)
    assert crop[0] == slice(2, 5) and crop[2] == slice(1, 6)


@pytest.mark.parametrize("mirror", [(), (0, 1, 2)])
def test_identity_net_reproduces_input_logits(mirror):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 23, 37, 30)).astype(np.float32)   # one axis < patch
    net = Identity(3).eval()
    settings = Fp32Settings((16, 40, 16), mirror_axes=mirror, output="logits")
    out = predict_sliding_window(net, data, 3, settings)
    assert out.shape == data.shape
    np.testing.assert_allclose(out.numpy(), data, atol=1e-5)


def test_softmax_output_sums_to_one_and_matches():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, 20, 20, 20)).astype(np.float32)
    settings = Fp32Settings((12, 12, 12), mirror_axes=(0,), output="softmax")
    out = predict_sliding_window(Identity(2).eval(), data, 2, settings)
    np.testing.assert_allclose(out.sum(0).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), torch.softmax(torch.from_numpy(data), 0).numpy(),
                               atol=1e-5)


def test_2d_configuration_runs_slice_by_slice():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(2, 5, 30, 21)).astype(np.float32)
    net = Identity(2, dims=2).eval()
    settings = Fp32Settings((16, 16), mirror_axes=(0, 1), output="logits")
    out = predict_sliding_window(net, data, 2, settings)
    np.testing.assert_allclose(out.numpy(), data, atol=1e-5)


def test_tta_symmetry():
    """With all mirrors, predicting a flipped image gives the flipped prediction."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(1, 24, 24, 24)).astype(np.float32)
    net = Asymmetric().eval()
    settings = Fp32Settings((16, 16, 16), mirror_axes=(0, 1, 2), output="softmax")
    out = predict_sliding_window(net, data, 3, settings)
    out_flipped = predict_sliding_window(net, data[:, ::-1, :, ::-1].copy(), 3, settings)
    np.testing.assert_allclose(out_flipped.numpy(), out.numpy()[:, ::-1, :, ::-1], atol=1e-5)
    # without TTA the asymmetric net is not symmetric: the test above can fail
    plain = Fp32Settings((16, 16, 16), output="softmax")
    a = predict_sliding_window(net, data, 3, plain).numpy()
    b = predict_sliding_window(net, data[:, ::-1, :, ::-1].copy(), 3, plain).numpy()
    assert np.abs(b - a[:, ::-1, :, ::-1]).max() > 1e-3


def test_mirrors_share_a_batch():
    data = np.zeros((1, 16, 16, 32), np.float32)
    net = Identity(1).eval()
    settings = Fp32Settings((16, 16, 16), mirror_axes=(0, 1, 2), output="logits")
    predict_sliding_window(net, data, 1, settings)
    assert net.calls == [3 * 8]   # 3 windows × 8 mirrors in one call
    net.calls.clear()
    small = Fp32Settings((16, 16, 16), mirror_axes=(0, 1, 2), output="logits",
                         max_batch_voxels=16**3 * 4)
    predict_sliding_window(net, data, 1, small)
    assert net.calls == [4, 4, 4, 4, 4, 4]


def test_progress_and_cancel():
    events = []
    progress = Progress(listeners=[events.append])
    data = np.zeros((1, 16, 16, 40), np.float32)
    settings = Fp32Settings((16, 16, 16), output="logits", max_batch_voxels=16**3)
    predict_sliding_window(Identity(1).eval(), data, 1, settings, progress=progress)
    steps = [e for e in events if e["event"] == "progress"]
    assert [e["current"] for e in steps] == [1, 2, 3, 4]
    progress.cancel_token.cancel("test")
    with pytest.raises(Cancelled):
        predict_sliding_window(Identity(1).eval(), data, 1, settings, progress=progress)


def test_settings_validation_and_round_trip():
    s = SlidingWindowSettings((8, 8, 8), mirror_axes=(0, 2), step=0.25)
    assert SlidingWindowSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError):
        SlidingWindowSettings((8, 8), mirror_axes=(2,))
    with pytest.raises(ValueError):
        SlidingWindowSettings((8, 8, 8), step=0)


def test_nnunet_numerics_gaussian_and_half_accumulation():
    from NNSegLib.inference.sliding_window import nnunet_style_gaussian

    g = nnunet_style_gaussian((8, 16, 17))
    assert g.dtype == torch.float16
    assert float(g[4, 8, 8]) == 10.0 and float(g.max()) == 10.0   # centre s // 2
    assert float(g.min()) > 0
    rng = np.random.default_rng(5)
    data = rng.normal(size=(2, 10, 20, 20)).astype(np.float32)
    settings = SlidingWindowSettings((8, 16, 16), output="logits", nnunet_numerics=True)
    out = predict_sliding_window(Identity(2).eval(), data, 2, settings)
    assert out.dtype == torch.float16
    inner = (slice(None), slice(2, 8), slice(4, 16), slice(4, 16))
    np.testing.assert_allclose(out.float().numpy()[inner], data[inner], atol=1e-2)
    # like nnU-Net, corners (tiny float16 weights) lose precision: that is reproduced
    assert np.abs(out.float().numpy() - data).max() > 0.05


def test_precision_choice_follows_the_device():
    import torch

    from NNSegLib.inference.sliding_window import autocast_dtype
    from NNSegLib.network.network import fast_bf16_available

    cpu = torch.device("cpu")
    auto = SlidingWindowSettings((8, 8, 8))
    expected = torch.bfloat16 if fast_bf16_available(cpu) else None
    assert autocast_dtype(auto, cpu) == expected
    # nnU-Net models keep nnU-Net's own CPU arithmetic (fp32) for voxel-exact agreement
    assert autocast_dtype(SlidingWindowSettings((8, 8, 8), nnunet_numerics=True), cpu) is None
    assert autocast_dtype(SlidingWindowSettings((8, 8, 8), precision="fp32"), cpu) is None
    assert autocast_dtype(SlidingWindowSettings((8, 8, 8), precision="bf16"), cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        SlidingWindowSettings((8, 8, 8), precision="int8")


@pytest.mark.parametrize("kind, bf16, auto, nnunet", [
    ("cuda", True, "float16", "float16"),   # inference prefers fp16 even where bf16 is native
    ("cuda", False, "float16", "float16"),
    ("mps", False, "float16", None),        # nnU-Net predicts in fp32 on MPS
])
def test_precision_choice_on_gpus_uses_the_shared_rules(monkeypatch, kind, bf16, auto, nnunet):
    """The predictor asks NNSegLib.util.precision (faked here: this machine has no GPU)."""
    import torch

    from NNSegLib.inference import sliding_window
    from NNSegLib.util import precision

    caps = precision.DeviceCapabilities(kind, "fake", bf16=bf16, fp16_autocast=True)
    monkeypatch.setattr(precision, "device_capabilities", lambda device: caps)
    cpu = torch.device("cpu")
    dtype = sliding_window.autocast_dtype(SlidingWindowSettings((8, 8, 8)), cpu)
    assert dtype == getattr(torch, auto)
    numerics = SlidingWindowSettings((8, 8, 8), nnunet_numerics=True)
    assert sliding_window.autocast_dtype(numerics, cpu) == (nnunet and getattr(torch, nnunet))
    if kind == "mps":
        with pytest.raises(precision.PrecisionError, match="'bf16' is not available on mps"):
            sliding_window.autocast_dtype(SlidingWindowSettings((8, 8, 8), precision="bf16"),
                                          cpu)
