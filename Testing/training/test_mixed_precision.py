"""NNSegLib.training.mixed_precision: the run's precision, the gradient scaler path on CPU."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_plans

from NNSegLib.training.mixed_precision import (
    amp_dtype,
    amp_precision,
    grad_scaler,
    optimizer_step,
)
from NNSegLib.training.run_config import RunConfig
from NNSegLib.training.train import train_fold
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.precision import device_capabilities
from NNSegLib.util.workspace import Workspace

CPU = torch.device("cpu")


def test_amp_modes_on_this_cpu():
    native = device_capabilities(CPU).bf16
    assert amp_precision(RunConfig(amp="auto"), CPU) == ("bf16" if native else "fp32")
    assert amp_dtype(RunConfig(amp="auto"), CPU) == (torch.bfloat16 if native else None)
    assert amp_precision(RunConfig(amp="off"), CPU) == "fp32"
    assert amp_dtype(RunConfig(amp="off"), CPU) is None
    assert amp_dtype(RunConfig(amp="bf16"), CPU) is torch.bfloat16
    with pytest.raises(NNSegError, match="'fp16' cannot train on cpu"):
        amp_precision(RunConfig(amp="fp16"), CPU)


@pytest.mark.parametrize("kind, bf16, auto", [
    ("cuda", True, "bf16"), ("cuda", False, "fp16"), ("mps", False, "fp32")])
def test_amp_on_gpus_uses_the_shared_rules(monkeypatch, kind, bf16, auto):
    """The trainer asks NNSegLib.util.precision (faked here: this machine has no GPU)."""
    from NNSegLib.training import mixed_precision
    from NNSegLib.util.precision import DeviceCapabilities

    caps = DeviceCapabilities(kind, "fake", bf16=bf16, fp16_autocast=True)
    monkeypatch.setattr(mixed_precision, "device_capabilities", lambda device: caps)
    assert amp_precision(RunConfig(amp="auto"), CPU) == auto
    assert amp_precision(RunConfig(amp="fp16"), CPU) == "fp16"  # with a scaler: see below
    if kind == "mps":
        with pytest.raises(NNSegError, match="'bf16' is not available on mps"):
            amp_precision(RunConfig(amp="bf16"), CPU)


def test_fp16_training_on_cpu_is_refused_before_any_file(tmp_path):
    ws = Workspace(tmp_path / "work")
    tiny_plans().save(ws.plans)
    with pytest.raises(NNSegError, match="precision 'fp16' cannot train on cpu"):
        train_fold(None, ws.root, "3d_fullres", 0,
                   overrides={"device": "cpu", "amp": "fp16", "num_threads": 1})
    assert not ws.run_dir("3d_fullres", 0).exists()


def test_only_fp16_gets_an_enabled_scaler():
    assert not grad_scaler("fp32", CPU).is_enabled()
    assert not grad_scaler("bf16", CPU).is_enabled()
    scaler = grad_scaler("fp16", CPU)
    assert scaler.is_enabled() and scaler.state_dict()["scale"] > 1


def _model_and_data():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    return net, torch.randn(16, 6), torch.randn(16, 1)


def _fp16_loss(net, x, y, factor=1.0):
    with torch.autocast("cpu", dtype=torch.float16):
        out = net(x)
    return ((out.float() - y) ** 2).mean() * factor


def test_scaled_fp16_step_equals_the_unscaled_one_and_clips_true_gradients():
    """The path CUDA/MPS fp16 training takes, run on the CPU: with loss scaling (2^12) and a
    clip that is active, the update equals the one without scaling (the gradients are
    unscaled before they are clipped)."""
    net, x, y = _model_and_data()
    plain = copy.deepcopy(net)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    unscaled = torch.amp.GradScaler("cpu", enabled=False)
    for model, sc in ((net, scaler), (plain, unscaled)):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        optimizer_step(_fp16_loss(model, x, y), opt, sc, model.parameters(), grad_clip=0.05)
    moved = [(a - b).abs().max().item() for a, b in zip(net.parameters(),
                                                        _model_and_data()[0].parameters())]
    assert max(moved) > 1e-3  # the step happened
    for a, b in zip(net.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    assert scaler.get_scale() == 2.0 ** 12  # no overflow, scale kept


def test_overflowing_fp16_step_is_skipped_and_the_scale_lowered():
    net, x, y = _model_and_data()
    before = copy.deepcopy(net)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    optimizer_step(_fp16_loss(net, x, y, factor=float("inf")), opt, scaler, net.parameters(),
                   grad_clip=12.0)
    for a, b in zip(net.parameters(), before.parameters()):
        assert torch.equal(a, b)
    assert scaler.get_scale() == 2.0 ** 11
