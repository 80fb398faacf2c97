"""Mixed-precision training (METHOD §4): the run's precision, the gradient scaler and the
optimizer step through it.

The decision itself is :func:`NNSegLib.util.precision.choose_precision` (its module has the
table of what ``auto`` picks on CUDA, MPS and CPU); this module turns ``RunConfig.amp`` into
a request, and runs fp16 steps through a ``torch.amp.GradScaler`` (bf16 and fp32 need none).
"""

from __future__ import annotations

from typing import Any

import torch

from NNSegLib.training.run_config import RunConfig
from NNSegLib.util.precision import (
    choose_precision,
    device_capabilities,
    needs_grad_scaler,
    torch_dtype,
)


def amp_precision(rc: RunConfig, device: torch.device) -> str:
    """``rc.amp`` on ``device`` as ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``auto`` follows :func:`NNSegLib.util.precision.choose_precision` for training: bf16 on
    CUDA with native bf16 (else fp16 with a gradient scaler) and on CPUs with AMX /
    AVX512-BF16 that the kernels may use (:func:`NNSegLib.util.precision.cpu_kernel_limit`),
    fp32 on MPS and other CPUs; ``off`` is fp32.

    Raises:
        PrecisionError: ``rc.amp`` names a precision the device cannot train in.
    """
    requested = "fp32" if rc.amp == "off" else rc.amp
    return choose_precision(device_capabilities(device), requested, "train")


def amp_dtype(rc: RunConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of :func:`amp_precision` (``None``: plain fp32)."""
    return torch_dtype(amp_precision(rc, device))


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler for ``device``, enabled only when ``precision`` needs one (fp16)."""
    return torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(precision))


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, parameters: Any, grad_clip: float) -> None:
    """Backward pass and one optimizer step through ``scaler``.

    The gradients are unscaled before clipping, so ``grad_clip`` applies to the true
    gradient norm; a step whose gradients hold inf/NaN is skipped and the scale lowered
    (a disabled scaler makes this a plain backward, clip and step).
    """
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()


__all__ = ["amp_dtype", "amp_precision", "grad_scaler", "optimizer_step"]
