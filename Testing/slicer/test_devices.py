"""NNSegLib.slicer.devices: the detected device in words, the plan budget, the CPU warning."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from NNSegLib.planning.plans import ConfigurationPlan
from NNSegLib.slicer.devices import (
    DeviceInfo,
    cpu_training_warning,
    describe_device,
    detect_device,
    format_duration,
    memory_budget_gb,
    seconds_per_iteration_on_cpu,
)

GB = 1024 ** 3


def fake_torch(cuda=False, mps=False, name="NVIDIA RTX A4000", memory_gb=16.0, bf16=True,
               cpu_bf16=False):
    props = SimpleNamespace(name=name, total_memory=int(memory_gb * GB))
    return SimpleNamespace(
        __version__="2.13.0",
        cuda=SimpleNamespace(is_available=lambda: cuda, get_device_properties=lambda i: props,
                             is_bf16_supported=lambda: bf16),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
        cpu=SimpleNamespace(_is_amx_tile_supported=lambda: cpu_bf16,
                            _is_avx512_bf16_supported=lambda: False))


def test_cuda_gpu_is_named_and_sets_the_budget():
    info = detect_device("auto", fake_torch(cuda=True))
    assert info.kind == "cuda" and info.name == "NVIDIA RTX A4000" and info.bf16
    assert info.memory_gb == pytest.approx(16.0)
    assert describe_device(info) == "GPU (CUDA): NVIDIA RTX A4000, 16.0 GB"
    assert memory_budget_gb(info) == 13.5  # 85 % of 16 GB, rounded down to 0.5 GB
    assert memory_budget_gb(DeviceInfo("cuda", "big", 80.0)) == 68.0
    assert cpu_training_warning(info, None, 1000) is None


def test_auto_falls_back_to_cpu_and_says_so():
    info = detect_device("auto", fake_torch(cuda=False, cpu_bf16=True))
    assert info.kind == "cpu" and info.bf16 and info.cores >= 1 and info.problem is None
    text = describe_device(info)
    assert text.startswith(f"CPU: {info.cores} cores") and "bf16 supported" in text
    asked = detect_device("cuda", fake_torch(cuda=False))
    assert asked.kind == "cpu" and "CUDA was requested but is not available" in describe_device(
        asked)
    assert detect_device("cpu", fake_torch(cuda=True)).kind == "cpu"
    assert detect_device("auto", fake_torch(mps=True)).kind == "mps"
    # without fast bf16 (none, or held back by ONEDNN_MAX_CPU_ISA) the line says fp32
    plain = DeviceInfo("cpu", cores=2, ram_gb=16.0, bf16=False)
    assert describe_device(plain) == "CPU: 2 cores, 16 GB RAM, fp32 (no fast bf16 here)"


def test_budget_on_cpu_and_mps():
    assert memory_budget_gb(DeviceInfo("cpu", cores=8, ram_gb=64.0)) == 8.0
    assert memory_budget_gb(DeviceInfo("cpu", cores=2, ram_gb=6.0)) == 3.0  # half the RAM
    assert memory_budget_gb(DeviceInfo("mps", ram_gb=64.0)) == 16.0
    assert memory_budget_gb(DeviceInfo("cpu")) == 8.0
    assert memory_budget_gb(DeviceInfo("cpu", ram_gb=1.0)) == 1.0


def test_real_torch_on_this_machine():
    info = detect_device("auto")
    assert info.kind in ("cpu", "cuda", "mps") and info.torch_version
    assert describe_device(info)


def test_cpu_warning_estimates_the_time_from_the_plan():
    plan = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="d", spacing=(1.0, 1.0, 1.0),
        median_shape=(36, 50, 35), patch_size=(36, 52, 36), batch_size=9,
        strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)), kernel_sizes=((3, 3, 3),) * 3,
        features_per_stage=(30, 60, 120))
    # the benchmark this is calibrated on: 3.6-4.5 s per iteration on 2 bf16 cores
    per_iteration = seconds_per_iteration_on_cpu(plan.patch_size, 9, 30, 2, True)
    assert 3.0 < per_iteration < 5.0
    assert seconds_per_iteration_on_cpu(plan.patch_size, 9, 30, 2, False) > 2 * per_iteration
    info = DeviceInfo("cpu", cores=2, bf16=True)
    text = cpu_training_warning(info, plan, 1000, folds=5)
    assert text.startswith("Training will run on the CPU (2 cores)")
    assert "days for 1000 epoch(s) × 5 fold(s)" in text
    assert cpu_training_warning(info, None, 10).endswith("very slow.")
    assert format_duration(90) == "2 min" and format_duration(7200) == "2.0 h"
    assert format_duration(200000) == "2.3 days"


def test_detected_devices_carry_the_shared_precision_rules():
    """The panel's device and the trainer/predictor decide precision with the same rules
    (NNSegLib.util.precision), from one probe."""
    cuda = detect_device("auto", fake_torch(cuda=True, bf16=True))
    assert cuda.capabilities is not None and cuda.capabilities.memory_gb == pytest.approx(16.0)
    assert (cuda.precision("train"), cuda.precision("inference")) == ("bf16", "fp16")
    old_gpu = detect_device("cuda", fake_torch(cuda=True, bf16=False))
    assert not old_gpu.bf16 and old_gpu.precision("train") == "fp16"
    mps = detect_device("mps", fake_torch(mps=True, cpu_bf16=True))
    assert mps.kind == "mps" and not mps.bf16 and mps.precision("train") == "fp32"
    cpu = detect_device("auto", fake_torch(cpu_bf16=True))
    assert cpu.precision("train") == cpu.precision("inference") == "bf16"
    assert detect_device("cpu", fake_torch()).precision("train") == "fp32"
    # built by hand (as the panels' tests do): the fields stand in for the probe
    assert DeviceInfo("cpu", cores=2, bf16=True).precision() == "bf16"
    assert DeviceInfo("cuda", "GPU", 24.0).precision("inference") == "fp16"
