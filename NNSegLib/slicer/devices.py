"""Which device training and inference would use, in words, and what follows from it.

"auto" picks CUDA, then Apple MPS, then the CPU (:func:`NNSegLib.util.device.pick_device`).
The Train and Segment panels show the result (:func:`describe_device`), the Plan panel
takes its memory budget from it (:func:`memory_budget_gb`), and a training that would run
on the CPU gets a warning with a rough time (:func:`cpu_training_warning`). ``torch`` is
passed in (or imported only when already installed), so the module never triggers an
installation by asking.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from NNSegLib.util.i18n import tr
from NNSegLib.util.precision import DeviceCapabilities, choose_precision, probe_capabilities

GB = 1024.0 ** 3
#: Plan budget when nothing better is known (nnU-Net's reference GPU).
DEFAULT_BUDGET_GB = 8.0
#: Share of a GPU's memory the plan may use (the rest: CUDA context, cuDNN workspace).
GPU_SHARE = 0.85
#: Training throughput per CPU core in sample-voxels per second, measured on this project's
#: benchmark machine (bench/RESULTS.md: Hippocampus 3d_fullres, patch 36×52×36, batch 9,
#: 30 base features: 3.6-4.5 s per iteration on 2 cores with bf16; fp32 about 2.2× slower).
CPU_VOXELS_PER_CORE_S = {"bf16": 75_000.0, "fp32": 34_000.0}


@dataclass(frozen=True)
class DeviceInfo:
    """The device "auto" (or the requested device) resolves to.

    ``capabilities`` is what :func:`NNSegLib.util.precision.probe_capabilities` found
    (``None`` when built by hand; :attr:`device_capabilities` then derives it from the
    fields).
    """

    kind: str                      # "cuda", "mps" or "cpu"
    name: str = ""                 # GPU name, or the processor
    memory_gb: float | None = None  # GPU memory (CUDA), else None
    cores: int = 1
    ram_gb: float | None = None
    bf16: bool = False             # native bf16 arithmetic on this device
    torch_version: str | None = None
    problem: str | None = None     # why the requested device is not used
    capabilities: DeviceCapabilities | None = None

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    @property
    def device_capabilities(self) -> DeviceCapabilities:
        if self.capabilities is not None:
            return self.capabilities
        return DeviceCapabilities(self.kind, self.name, self.bf16, self.kind == "cuda",
                                  self.memory_gb)

    def precision(self, purpose: str = "train") -> str:
        """What ``auto`` precision means here for ``purpose`` (``train``/``inference``)."""
        return choose_precision(self.device_capabilities, "auto", purpose)


def usable_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def system_ram_gb() -> float | None:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a requirement of the module
        return None
    return float(psutil.virtual_memory().total) / GB


def import_torch_if_installed() -> Any:
    """``torch`` when it is installed, else ``None`` (never installs anything)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch


def detect_device(requested: str = "auto", torch: Any = None) -> DeviceInfo:
    """What ``requested`` (``auto``, ``cpu``, ``cuda``, ``mps``) means on this computer.

    Args:
        requested: The panel's device choice.
        torch: The ``torch`` module (default: imported when installed). Tests pass stand-ins.
    """
    torch = import_torch_if_installed() if torch is None else torch
    cores, ram = usable_cores(), system_ram_gb()
    if torch is None:
        return DeviceInfo("cpu", cores=cores, ram_gb=ram,
                          problem=tr("PyTorch is not installed yet"))
    version = str(getattr(torch, "__version__", ""))
    requested = (requested or "auto").lower()
    cuda = bool(torch.cuda.is_available())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    problem = None
    if requested.startswith("cuda") and not cuda:
        problem = tr("CUDA was requested but is not available")
    if requested == "mps" and not mps:
        problem = tr("MPS was requested but is not available")
    if requested.startswith("cuda") and cuda or requested == "auto" and cuda:
        device = requested if requested.startswith("cuda") else "cuda"
    elif (requested == "mps" or requested == "auto") and mps:
        device = "mps"
    else:
        device = "cpu"
    caps = probe_capabilities(device, torch)
    return DeviceInfo(caps.kind, caps.name, caps.memory_gb, cores, ram, caps.bf16, version,
                      problem, caps)


def describe_device(info: DeviceInfo) -> str:
    """One line for the panels, e.g. ``GPU: NVIDIA RTX 4090, 24.0 GB`` or
    ``CPU: 8 cores, 32 GB RAM, bf16 supported — training will be slow``."""
    if info.kind == "cuda":
        text = tr("GPU (CUDA): {name}, {memory:.1f} GB", name=info.name,
                  memory=info.memory_gb or 0.0)
    elif info.kind == "mps":
        text = tr("GPU (Apple MPS), {ram:.0f} GB shared memory", ram=info.ram_gb or 0.0)
    else:
        text = tr("CPU: {cores} cores", cores=info.cores)
        if info.ram_gb:
            text += tr(", {ram:.0f} GB RAM", ram=info.ram_gb)
        text += tr(", bf16 supported") if info.bf16 else tr(", fp32 (no fast bf16 here)")
    if info.problem:
        text += " — " + info.problem
    return text


def memory_budget_gb(info: DeviceInfo) -> float:
    """The plan's memory budget for ``info`` (what patch and batch size are fitted to).

    CUDA: 85 % of the GPU's memory, rounded down to 0.5 GB. MPS shares the system memory:
    half of it, at most 8 GB more than the default. CPU: the default 8 GB, or half the RAM
    when that is less (the CPU trains in the same memory).
    """
    if info.kind == "cuda" and info.memory_gb:
        budget = int(info.memory_gb * GPU_SHARE * 2) / 2.0
    elif info.ram_gb:
        limit = DEFAULT_BUDGET_GB * 2 if info.kind == "mps" else DEFAULT_BUDGET_GB
        budget = min(limit, int(info.ram_gb) / 2.0)
    else:
        budget = DEFAULT_BUDGET_GB
    return float(min(200.0, max(1.0, budget)))


def seconds_per_iteration_on_cpu(patch_size: tuple[int, ...], batch_size: int,
                                 base_features: int, cores: int, bf16: bool) -> float:
    """A rough time for one training iteration on the CPU (see
    :data:`CPU_VOXELS_PER_CORE_S`); scales with batch × patch voxels × base features."""
    voxels = float(batch_size)
    for s in patch_size:
        voxels *= s
    rate = CPU_VOXELS_PER_CORE_S["bf16" if bf16 else "fp32"] * max(1, cores)
    return voxels * (max(1, base_features) / 30.0) / rate


def cpu_training_warning(info: DeviceInfo, plan: Any, epochs: int, folds: int = 1,
                         iterations_per_epoch: int = 250) -> str | None:
    """A warning with the estimated time when training would run on the CPU, else ``None``.

    Args:
        info: The detected device.
        plan: The configuration's plan (``patch_size``, ``batch_size``,
            ``features_per_stage``), or ``None`` before planning.
        epochs: Epochs per fold.
        folds: Folds to train.
        iterations_per_epoch: Iterations per epoch (250 by default).
    """
    if not info.is_cpu:
        return None
    text = tr("Training will run on the CPU ({cores} cores): expect it to be very slow.",
              cores=info.cores)
    if plan is None:
        return text
    per_iteration = seconds_per_iteration_on_cpu(
        tuple(plan.patch_size), int(plan.batch_size), int(plan.features_per_stage[0]),
        info.cores, info.precision("train") == "bf16")
    total = per_iteration * iterations_per_epoch * epochs * folds
    return text + " " + tr("Rough estimate: {time} for {epochs} epoch(s) × {folds} fold(s) "
                           "({seconds:.1f} s per iteration).", time=format_duration(total),
                           epochs=epochs, folds=folds, seconds=per_iteration)


def format_duration(seconds: float) -> str:
    """``90`` → ``"2 min"``, ``7200`` → ``"2.0 h"``, ``200000`` → ``"2.3 days"``."""
    if seconds < 3600:
        return tr("{n} min", n=max(1, int(round(seconds / 60))))
    if seconds < 48 * 3600:
        return tr("{n:.1f} h", n=seconds / 3600)
    return tr("{n:.1f} days", n=seconds / 86400)


__all__ = ["DEFAULT_BUDGET_GB", "DeviceInfo", "cpu_training_warning", "describe_device",
           "detect_device", "format_duration", "import_torch_if_installed", "memory_budget_gb",
           "seconds_per_iteration_on_cpu"]
