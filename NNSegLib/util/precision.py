"""Which arithmetic the network runs in, decided once for every device (METHOD §4, §5).

Two steps, kept apart so the rules can be tested without the hardware:

1. :func:`device_capabilities` asks torch, once per device, what the device can do
   (:class:`DeviceCapabilities`: kind, name, native bf16, fp16 autocast, memory).
2. :func:`choose_precision` turns capabilities, the requested precision and the purpose
   (``"train"`` or ``"inference"``) into ``"fp32"``, ``"bf16"`` or ``"fp16"``. It is a pure
   function; :func:`torch_dtype` maps the answer to the autocast dtype and
   :func:`needs_grad_scaler` says whether training needs loss scaling.

``auto`` picks:

=========================  ===============================  ================================
device                     training                         inference
=========================  ===============================  ================================
CUDA, native bf16          bf16                             fp16
CUDA, no native bf16       fp16 (with a gradient scaler)    fp16
Apple MPS                  fp32                             fp16 (torch >= 2.5), else fp32
CPU with AMX/AVX512-BF16   bf16                             bf16
other CPU                  fp32                             fp32
=========================  ===============================  ================================

"CPU with AMX/AVX512-BF16" means the kernels of *this process* can use those units, not only
that the processor has them (:func:`cpu_kernel_limit`): ``ONEDNN_MAX_CPU_ISA`` (or the older
``DNNL_MAX_CPU_ISA``) below ``AVX512_CORE_BF16``, an ATen CPU capability below AVX512
(``ATEN_CPU_CAPABILITY=avx2``, read back through ``torch.backends.cpu.get_cpu_capability()``)
or a PyTorch without oneDNN (or with it switched off) leave bf16 to slow emulation, so
``auto`` is fp32 there. ``MKL_ENABLE_INSTRUCTIONS`` is not read: MKL runs no bf16 convolution.

With ``nnunet_numerics`` (reproduce nnU-Net v2) ``auto`` does what nnU-Net does: fp16 on
CUDA, fp32 everywhere else. An explicit ``fp32``/``bf16``/``fp16`` is used as asked unless
the device cannot do it: bf16 on MPS, fp16 where torch has no fp16 autocast for the device,
fp16 training on a CPU. Those raise :class:`PrecisionError` naming device and precision.
Explicit bf16 on a device without native bf16 units runs, slowly (torch emulates it).

Why: bf16 has fp32's range, so training needs no loss scaling; fp16 has three more mantissa
bits, so it is the better inference format where both are fast (and nnU-Net predicts in
fp16 on CUDA). MPS trains in fp32 as nnU-Net does: fp16 autocast there is recent, covers
fewer operations, and would need loss scaling. fp16 training on a CPU is refused: it would
need loss scaling, and almost no CPU computes fp16 faster than bf16. Only CPUs with AMX or
AVX512-BF16 run bf16 convolutions faster than fp32 (about 2×, ``bench/bench_network.py``);
elsewhere bf16 is emulated and slower.

``torch`` is imported inside the functions that need it (``util`` stays light).
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

from NNSegLib.util.errors import NNSegError

#: What the network can compute in.
PRECISIONS = ("fp32", "bf16", "fp16")
#: What a user may ask for.
REQUESTS = ("auto",) + PRECISIONS
PURPOSES = ("train", "inference")
#: Device kinds the rules know; any other kind gets fp32 for ``auto``.
KINDS = ("cuda", "mps", "cpu")
GB = 1024.0 ** 3
#: ``ONEDNN_MAX_CPU_ISA`` values that leave oneDNN without bf16 arithmetic (every other value,
#: ``AVX512_CORE_BF16`` and up, ``ALL`` or one oneDNN does not know, keeps it).
ONEDNN_ISAS_WITHOUT_BF16 = frozenset({
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_MIC", "AVX512_MIC_4OPS",
    "AVX512_CORE", "AVX512_CORE_VNNI"})
ONEDNN_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


class PrecisionError(NNSegError, ValueError):
    """A precision the device cannot run (the message names both)."""


@dataclass(frozen=True)
class DeviceCapabilities:
    """What one device can compute in (see :func:`device_capabilities`).

    Attributes:
        kind: ``"cuda"``, ``"mps"`` or ``"cpu"`` (other torch device types are allowed and
            get fp32).
        name: GPU name, ``"Apple GPU (MPS)"`` or the processor.
        bf16: bf16 arithmetic in hardware (CUDA compute capability 8+, i.e. Ampere and
            later; a CPU with AMX or AVX512-BF16 whose kernels may use them in this process,
            see :func:`cpu_kernel_limit`). Never on MPS.
        fp16_autocast: ``torch.autocast`` can run fp16 on this device type with this torch
            (always on CUDA; MPS from torch 2.5).
        memory_gb: GPU memory (CUDA); ``None`` for MPS (shares the system memory) and CPU.
    """

    kind: str
    name: str = ""
    bf16: bool = False
    fp16_autocast: bool = False
    memory_gb: float | None = None

    def describe(self) -> str:
        """``cuda (NVIDIA A100)``, ``cpu (x86_64)``: how errors name the device."""
        return f"{self.kind} ({self.name})" if self.name else self.kind


def choose_precision(caps: DeviceCapabilities, requested: str = "auto",
                     purpose: str = "train", nnunet_numerics: bool = False) -> str:
    """The precision to run in (the rules are in the module docstring).

    Args:
        caps: The device's capabilities (real ones, or made up in tests).
        requested: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        purpose: ``"train"`` or ``"inference"``.
        nnunet_numerics: Reproduce nnU-Net v2 (``auto`` → fp16 on CUDA, else fp32).

    Returns:
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Raises:
        PrecisionError: ``requested`` is impossible on this device (or not a known value).
    """
    if requested not in REQUESTS:
        raise PrecisionError(f"precision {requested!r} is not one of {', '.join(REQUESTS)}")
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    if requested == "auto":
        return _automatic(caps, purpose, nnunet_numerics)
    if requested == "bf16" and caps.kind not in ("cuda", "cpu"):
        raise PrecisionError(f"precision 'bf16' is not available on {caps.describe()}: "
                             f"use fp16 or fp32 there (or auto)")
    if requested == "fp16" and caps.kind == "cpu" and purpose == "train":
        raise PrecisionError(f"precision 'fp16' cannot train on {caps.describe()}: CPUs train "
                             f"in bf16 or fp32 (or auto)")
    if requested == "fp16" and not caps.fp16_autocast:
        raise PrecisionError(f"precision 'fp16' is not available on {caps.describe()} with "
                             f"this PyTorch (no fp16 autocast; MPS needs torch 2.5 or "
                             f"newer): use fp32 (or auto)")
    return requested


def _automatic(caps: DeviceCapabilities, purpose: str, nnunet_numerics: bool) -> str:
    if nnunet_numerics:
        return "fp16" if caps.kind == "cuda" else "fp32"
    if caps.kind == "cuda":
        return "bf16" if purpose == "train" and caps.bf16 else "fp16"
    if caps.kind == "mps":
        return "fp16" if purpose == "inference" and caps.fp16_autocast else "fp32"
    if caps.kind == "cpu":
        return "bf16" if caps.bf16 else "fp32"
    return "fp32"


def needs_grad_scaler(precision: str) -> bool:
    """Whether training in ``precision`` needs a gradient (loss) scaler: fp16 only (its
    small range underflows gradients; bf16 has fp32's range)."""
    return precision == "fp16"


def torch_dtype(precision: str) -> Any:
    """The autocast dtype of ``precision``: ``torch.bfloat16``, ``torch.float16``, or
    ``None`` for fp32 (no autocast)."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def device_capabilities(device: Any = "cpu") -> DeviceCapabilities:
    """The capabilities of ``device`` (a ``torch.device`` or its name), probed once."""
    import torch

    return _cached_capabilities(str(torch.device(device)))


@functools.cache
def _cached_capabilities(device: str) -> DeviceCapabilities:
    return probe_capabilities(device)


def probe_capabilities(device: Any = "cpu", torch: Any = None,
                       environ: Mapping[str, str] | None = None) -> DeviceCapabilities:
    """Ask ``torch`` what ``device`` can do (uncached; prefer :func:`device_capabilities`).

    Args:
        device: A ``torch.device`` or a name (``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``).
        torch: The ``torch`` module (default: imported). Tests pass stand-ins.
        environ: The process environment (default ``os.environ``), for
            :func:`cpu_kernel_limit`.
    """
    if torch is None:
        import torch
    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        props = torch.cuda.get_device_properties(int(index) if index else 0)
        return DeviceCapabilities("cuda", str(props.name), _cuda_bf16(torch), True,
                                  float(props.total_memory) / GB)
    if kind == "mps":
        return DeviceCapabilities("mps", "Apple GPU (MPS)", False, _fp16_autocast(torch, "mps"))
    if kind == "cpu":
        bf16 = _cpu_bf16(torch) and cpu_kernel_limit(torch, environ) is None
        return DeviceCapabilities("cpu", cpu_name(), bf16, _fp16_autocast(torch, "cpu"))
    return DeviceCapabilities(kind)


def _cuda_bf16(torch: Any) -> bool:
    """Native bf16 on the current CUDA device (not torch's emulation on older GPUs)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no emulation and no such argument
        return bool(torch.cuda.is_bf16_supported())


def _cpu_bf16(torch: Any) -> bool:
    """A CPU with AMX tiles or AVX512-BF16 (oneDNN then runs bf16 natively)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(getattr(torch, "cpu", None), probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # pragma: no cover - probe unavailable on this build
            continue
    return False


def cpu_kernel_limit(torch: Any = None, environ: Mapping[str, str] | None = None) -> str | None:
    """Why this process's CPU kernels cannot run bf16 natively, or ``None`` when they can
    (provided the processor has AMX or AVX512-BF16 units, which :func:`_cpu_bf16` asks).

    The processor's flags are not enough: oneDNN (the convolutions) obeys
    ``ONEDNN_MAX_CPU_ISA``, and ATen's vectorised kernels (normalisation, activations,
    element-wise work) run at ``torch.backends.cpu.get_cpu_capability()``, which
    ``ATEN_CPU_CAPABILITY`` can lower. With either below the bf16 level every bf16 operation
    is emulated, slower than fp32.

    Args:
        torch: The ``torch`` module (default: imported). Tests pass stand-ins; parts a
            stand-in lacks are not checked.
        environ: The process environment (default ``os.environ``).

    Returns:
        E.g. ``"ONEDNN_MAX_CPU_ISA=AVX2"`` or ``"ATen CPU capability AVX2"``.
    """
    if torch is None:
        import torch
    environ = os.environ if environ is None else environ
    for name in ONEDNN_ISA_VARIABLES:
        isa = environ.get(name, "").strip().upper()
        if isa in ONEDNN_ISAS_WITHOUT_BF16:
            return f"{name}={isa}"
    backends = getattr(torch, "backends", None)
    mkldnn = getattr(backends, "mkldnn", None)
    if mkldnn is not None and not (mkldnn.is_available() and getattr(mkldnn, "enabled", True)):
        return "PyTorch's oneDNN is unavailable or switched off"
    capability = getattr(getattr(backends, "cpu", None), "get_cpu_capability", None)
    if capability is not None:
        level = str(capability()).upper()
        if "AVX512" not in level:
            return f"ATen CPU capability {level}"
    return None


def _fp16_autocast(torch: Any, kind: str) -> bool:
    """Whether ``torch.autocast(kind, dtype=float16)`` is enabled with this torch (older
    versions refuse the device type, or warn and disable autocast for the dtype)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            context = torch.autocast(kind, dtype=torch.float16)
    except (RuntimeError, ValueError, AttributeError, TypeError):
        return False
    return bool(getattr(context, "_enabled", False))


def cpu_name() -> str:
    """The processor's name as the platform reports it."""
    import platform

    return platform.processor() or platform.machine() or "CPU"


__all__ = ["KINDS", "PRECISIONS", "PURPOSES", "REQUESTS", "DeviceCapabilities",
           "PrecisionError", "choose_precision", "cpu_kernel_limit", "cpu_name",
           "device_capabilities", "needs_grad_scaler", "probe_capabilities", "torch_dtype"]
