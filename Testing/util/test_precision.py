"""NNSegLib.util.precision: the precision rules on made-up devices, and the probes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from NNSegLib.util.errors import NNSegError
from NNSegLib.util.precision import (
    DeviceCapabilities,
    PrecisionError,
    choose_precision,
    cpu_kernel_limit,
    device_capabilities,
    needs_grad_scaler,
    probe_capabilities,
    torch_dtype,
)

CUDA_BF16 = DeviceCapabilities("cuda", "NVIDIA A100", bf16=True, fp16_autocast=True,
                               memory_gb=40.0)
CUDA_OLD = DeviceCapabilities("cuda", "Tesla V100", bf16=False, fp16_autocast=True,
                              memory_gb=16.0)
MPS = DeviceCapabilities("mps", "Apple GPU (MPS)", bf16=False, fp16_autocast=True)
MPS_OLD_TORCH = DeviceCapabilities("mps", "Apple GPU (MPS)", bf16=False, fp16_autocast=False)
CPU_AMX = DeviceCapabilities("cpu", "Xeon Sapphire Rapids", bf16=True, fp16_autocast=True)
CPU_AVX2 = DeviceCapabilities("cpu", "Core i7", bf16=False, fp16_autocast=True)

#: device → (auto train, auto inference, auto with nnunet_numerics: train, inference)
AUTO = [
    (CUDA_BF16, "bf16", "fp16", "fp16", "fp16"),
    (CUDA_OLD, "fp16", "fp16", "fp16", "fp16"),
    (MPS, "fp32", "fp16", "fp32", "fp32"),
    (MPS_OLD_TORCH, "fp32", "fp32", "fp32", "fp32"),
    (CPU_AMX, "bf16", "bf16", "fp32", "fp32"),
    (CPU_AVX2, "fp32", "fp32", "fp32", "fp32"),
    (DeviceCapabilities("xpu"), "fp32", "fp32", "fp32", "fp32"),
]


@pytest.mark.parametrize("caps, train, inference, nn_train, nn_inference", AUTO,
                         ids=lambda v: v.name or v.kind if isinstance(v, DeviceCapabilities)
                         else None)
def test_auto_per_device_and_purpose(caps, train, inference, nn_train, nn_inference):
    assert choose_precision(caps, "auto", "train") == train
    assert choose_precision(caps, "auto", "inference") == inference
    assert choose_precision(caps, "auto", "train", nnunet_numerics=True) == nn_train
    assert choose_precision(caps, "auto", "inference", nnunet_numerics=True) == nn_inference
    assert choose_precision(caps) == train  # defaults: auto, train


def test_only_fp16_training_needs_a_grad_scaler():
    assert choose_precision(CUDA_OLD, "auto", "train") == "fp16"
    assert needs_grad_scaler("fp16")
    assert not needs_grad_scaler("bf16") and not needs_grad_scaler("fp32")


@pytest.mark.parametrize("caps", [CUDA_BF16, CUDA_OLD, MPS, CPU_AMX, CPU_AVX2])
@pytest.mark.parametrize("purpose", ["train", "inference"])
def test_fp32_is_always_honoured(caps, purpose):
    assert choose_precision(caps, "fp32", purpose) == "fp32"
    assert choose_precision(caps, "fp32", purpose, nnunet_numerics=True) == "fp32"


def test_possible_explicit_requests_are_honoured():
    for purpose in ("train", "inference"):
        assert choose_precision(CUDA_BF16, "fp16", purpose) == "fp16"
        assert choose_precision(CUDA_OLD, "bf16", purpose) == "bf16"  # emulated, slow
        assert choose_precision(MPS, "fp16", purpose) == "fp16"
        assert choose_precision(CPU_AVX2, "bf16", purpose) == "bf16"  # emulated, slow
        assert choose_precision(CPU_AMX, "bf16", purpose, nnunet_numerics=True) == "bf16"
    assert choose_precision(CPU_AMX, "fp16", "inference") == "fp16"


@pytest.mark.parametrize("caps, requested, purpose, words", [
    (MPS, "bf16", "train", ["'bf16'", "mps (Apple GPU (MPS))"]),
    (MPS, "bf16", "inference", ["'bf16'", "mps"]),
    (CPU_AMX, "fp16", "train", ["'fp16'", "cpu (Xeon Sapphire Rapids)", "bf16 or fp32"]),
    (CPU_AVX2, "fp16", "train", ["'fp16'", "cpu (Core i7)"]),
    (MPS_OLD_TORCH, "fp16", "inference", ["'fp16'", "mps", "torch 2.5"]),
    (MPS_OLD_TORCH, "fp16", "train", ["'fp16'", "mps"]),
    (DeviceCapabilities("cpu", "old", fp16_autocast=False), "fp16", "inference",
     ["'fp16'", "cpu (old)"]),
])
def test_impossible_requests_name_device_and_precision(caps, requested, purpose, words):
    with pytest.raises(PrecisionError) as info:
        choose_precision(caps, requested, purpose)
    assert isinstance(info.value, NNSegError) and isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_unknown_values_are_refused():
    with pytest.raises(PrecisionError, match="'fp8' is not one of auto, fp32, bf16, fp16"):
        choose_precision(CPU_AMX, "fp8")
    with pytest.raises(ValueError, match="purpose"):
        choose_precision(CPU_AMX, "auto", "validate")


def test_torch_dtype():
    assert torch_dtype("fp32") is None
    assert torch_dtype("bf16") is torch.bfloat16
    assert torch_dtype("fp16") is torch.float16
    with pytest.raises(ValueError):
        torch_dtype("auto")


def _fake_torch(bf16_native=True, emulation_argument=True, amx=False, avx512_bf16=False,
                autocast=None):
    props = SimpleNamespace(name="NVIDIA T4", total_memory=16 * 1024 ** 3)

    if emulation_argument:
        def is_bf16_supported(including_emulation=True):
            return bf16_native or including_emulation
    else:
        def is_bf16_supported():
            return bf16_native

    return SimpleNamespace(
        cuda=SimpleNamespace(get_device_properties=lambda i: props,
                             is_bf16_supported=is_bf16_supported),
        cpu=SimpleNamespace(_is_amx_tile_supported=lambda: amx,
                            _is_avx512_bf16_supported=lambda: avx512_bf16),
        float16=torch.float16,
        autocast=autocast)


def test_probe_cuda_asks_for_native_bf16_only():
    caps = probe_capabilities("cuda", _fake_torch(bf16_native=False))
    assert caps == DeviceCapabilities("cuda", "NVIDIA T4", False, True, 16.0)
    assert probe_capabilities("cuda:0", _fake_torch(bf16_native=True)).bf16
    old_torch = _fake_torch(bf16_native=False, emulation_argument=False)
    assert not probe_capabilities("cuda", old_torch).bf16


def test_probe_cpu_and_mps():
    enabled = lambda kind, dtype: SimpleNamespace(_enabled=True)  # noqa: E731

    def refused(kind, dtype):
        raise RuntimeError(f"User specified an unsupported autocast device_type '{kind}'")

    amx = probe_capabilities("cpu", _fake_torch(amx=True, autocast=enabled))
    assert amx.kind == "cpu" and amx.bf16 and amx.fp16_autocast and amx.memory_gb is None
    avx512 = probe_capabilities("cpu", _fake_torch(avx512_bf16=True, autocast=refused))
    assert avx512.bf16 and not avx512.fp16_autocast
    assert not probe_capabilities("cpu", _fake_torch()).bf16
    mps = probe_capabilities("mps", _fake_torch(amx=True, autocast=enabled))
    assert mps == DeviceCapabilities("mps", "Apple GPU (MPS)", False, True, None)
    assert not probe_capabilities("mps", _fake_torch(autocast=refused)).fp16_autocast
    disabled = lambda kind, dtype: SimpleNamespace(_enabled=False)  # noqa: E731  # warned
    assert not probe_capabilities("mps", _fake_torch(autocast=disabled)).fp16_autocast
    assert probe_capabilities("meta") == DeviceCapabilities("meta")


def _kernel_torch(capability="AVX512", mkldnn=True, enabled=True):
    return SimpleNamespace(backends=SimpleNamespace(
        cpu=SimpleNamespace(get_cpu_capability=lambda: capability),
        mkldnn=SimpleNamespace(is_available=lambda: mkldnn, enabled=enabled)))


@pytest.mark.parametrize("environ, torch_kw, limit", [
    ({}, {}, None),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, {}, "ONEDNN_MAX_CPU_ISA=AVX2"),
    ({"ONEDNN_MAX_CPU_ISA": " avx512_core "}, {}, "ONEDNN_MAX_CPU_ISA=AVX512_CORE"),
    ({"DNNL_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, {}, "DNNL_MAX_CPU_ISA=AVX512_CORE_VNNI"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, {}, None),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, {}, None),
    ({"ONEDNN_MAX_CPU_ISA": "ALL"}, {}, None),
    ({}, {"capability": "AVX2"}, "ATen CPU capability AVX2"),
    ({}, {"capability": "DEFAULT"}, "ATen CPU capability DEFAULT"),
    ({}, {"mkldnn": False}, "PyTorch's oneDNN is unavailable or switched off"),
    ({}, {"enabled": False}, "PyTorch's oneDNN is unavailable or switched off"),
])
def test_cpu_kernel_limit_reads_onednn_and_aten(environ, torch_kw, limit):
    assert cpu_kernel_limit(_kernel_torch(**torch_kw), environ) == limit


def test_probe_cpu_with_bf16_units_but_limited_kernels_is_fp32():
    fake = _fake_torch(avx512_bf16=True, autocast=lambda kind, dtype: None)
    fake.backends = _kernel_torch().backends
    assert probe_capabilities("cpu", fake, {}).bf16
    limited = probe_capabilities("cpu", fake, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert not limited.bf16 and choose_precision(limited, "auto", "train") == "fp32"
    fake.backends = _kernel_torch(capability="AVX2").backends
    assert not probe_capabilities("cpu", fake, {}).bf16


def test_this_machine_is_probed_once_and_keeps_its_behaviour():
    caps = device_capabilities("cpu")
    assert device_capabilities(torch.device("cpu")) is caps  # cached
    native = ((torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
              and cpu_kernel_limit() is None)
    assert caps.kind == "cpu" and caps.bf16 == native
    expected = "bf16" if native else "fp32"
    assert choose_precision(caps, "auto", "train") == expected
    assert choose_precision(caps, "auto", "inference") == expected
    assert choose_precision(caps, "auto", "inference", nnunet_numerics=True) == "fp32"


#: The clinician's CPU profile (issue 25): oneDNN and ATen held to AVX2, as on a CPU without
#: AVX-512 (``bench/cpu_profiles.py``).
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

#: Every place an unchosen precision is decided: training ``--amp auto``, inference
#: (predict, segment-batch and the fold's final validation: ``autocast_dtype`` of the default
#: settings), the network's own check and the Slicer panels' device line.
_EVERY_AUTO = """
import json, torch
from NNSegLib.inference.sliding_window import SlidingWindowSettings, autocast_dtype
from NNSegLib.network.network import fast_bf16_available
from NNSegLib.slicer.devices import detect_device
from NNSegLib.training.mixed_precision import amp_precision
from NNSegLib.training.run_config import RunConfig
cpu = torch.device("cpu")
info = detect_device("cpu")
inference = autocast_dtype(SlidingWindowSettings((8, 8, 8)), cpu)
print(json.dumps({
    "train": amp_precision(RunConfig(), cpu),
    "inference": {None: "fp32", torch.bfloat16: "bf16"}[inference],
    "slicer train": info.precision("train"), "slicer inference": info.precision("inference"),
    "network": "bf16" if fast_bf16_available(cpu) else "fp32"}))
"""


def _choices(extra_env: dict[str, str]) -> dict[str, str]:
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in AVX2_ONLY and k not in ("DNNL_MAX_CPU_ISA",)}
    done = subprocess.run([sys.executable, "-c", _EVERY_AUTO], env={**env, **extra_env},
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpu_flags() -> set[str]:
    from pathlib import Path

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags")
            for flag in line.split(":", 1)[1].split()}


def test_every_auto_is_fp32_when_the_kernels_are_held_to_avx2():
    choices = _choices(AVX2_ONLY)
    assert set(choices.values()) == {"fp32"}, choices
    # Either variable alone is enough: each leaves part of the network without bf16 kernels.
    assert set(_choices({"ONEDNN_MAX_CPU_ISA": "AVX2"}).values()) == {"fp32"}
    assert set(_choices({"ATEN_CPU_CAPABILITY": "avx2"}).values()) == {"fp32"}


def test_every_auto_is_bf16_on_a_bf16_cpu_without_the_variables():
    flags = _cpu_flags()
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    choices = _choices({})
    assert set(choices.values()) == {"bf16" if native else "fp32"}, (choices, native)
