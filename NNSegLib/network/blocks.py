"""Building blocks of the U-Net: conv → instance norm → leaky ReLU, and stacks of them.

The instance norm and the activation live in one module (:class:`InstanceNormAct`, stored
as ``norm`` so that its ``weight``/``bias`` line up with nnU-Net's ``norm`` parameters); how
it is computed is chosen from :data:`NORM_ACT_IMPLS`:

- ``"torch"``: ``F.instance_norm`` then an in-place ``leaky_relu_`` (the reference).
- ``"group"``: ``F.group_norm`` with one channel per group, which *is* instance
  norm, then ``leaky_relu_``. PyTorch's instance norm runs batch norm on a reshaped copy;
  its group-norm kernels are ~2.5x faster on CPU for the same result. Under autocast the
  low-precision input is normalized as is (float32 accumulation inside the kernel).
- ``"fused"``: a custom autograd function: statistics with one ``var_mean``, a single
  affine pass, in-place activation, and a backward that needs only the *output* (the
  pre-activation is recovered from it, as in in-place activated batch norm). It keeps one
  activation tensor per block alive instead of two, which halves activation memory
  (slower than ``"group"`` on CPU in eager mode: more passes over memory).
- ``"gemm"``: the group-norm forward kernel, and a backward of three elementwise passes
  whose per-channel sums (``Σ dz`` and ``Σ dz·x``) are matrix products (a row of ones, and
  the diagonal of a Gram product) that oneDNN runs at GEMM speed, accumulating in float32.
  Made for channels-last tensors, where PyTorch's own group-norm backward is slow on CPU
  (6x slower in bf16 than this for a 32-channel full-resolution block; ``bench/``).
- ``"auto"`` (default): ``"gemm"`` for channels-last tensors, ``"group"`` for the others,
  decided per call.

All implementations are numerically equivalent (same forward, gradients within float
rounding) and run on any device and memory format.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_SLOPE = 0.01
NORM_EPS = 1e-5

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def conv_class(spatial_dims: int) -> type:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return _CONV[spatial_dims]


def transposed_conv_class(spatial_dims: int) -> type:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    return _TRANSPOSED[spatial_dims]


# --- instance norm + leaky ReLU implementations ------------------------------------------
def _norm_act_torch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float, slope: float) -> torch.Tensor:
    y = F.instance_norm(x, weight=weight, bias=bias, use_input_stats=True, eps=eps)
    return F.leaky_relu(y, slope, inplace=True)


def _norm_act_group(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float, slope: float) -> torch.Tensor:
    # Instance norm == group norm with one channel per group; PyTorch's group-norm kernels
    # are much faster than its instance norm (which goes through batch norm on a reshaped
    # copy). Under autocast the input keeps its (low) precision: statistics are still
    # accumulated in float32 inside the kernel.
    if x.dtype != weight.dtype:
        weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    with _no_autocast(x):
        y = F.group_norm(x, x.shape[1], weight, bias, eps)
    return F.leaky_relu(y, slope, inplace=True)


def _no_autocast(x: torch.Tensor):
    """Autocast off for a low-precision ``x`` (CUDA autocast would upcast group norm)."""
    if x.dtype not in (torch.float16, torch.bfloat16):
        return contextlib.nullcontext()
    try:
        return torch.autocast(x.device.type, enabled=False)
    except (RuntimeError, ValueError):  # device type without autocast support
        return contextlib.nullcontext()


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.view((1, -1) + (1,) * (ndim - 2))


class _FusedNormAct(torch.autograd.Function):
    """Instance norm + affine + leaky ReLU whose backward uses only the output ``y``.

    With ``z`` the pre-activation, ``z = y`` where ``y > 0`` and ``y / slope`` elsewhere, and
    ``dz * z = dy * y`` on both branches, so the two per-channel sums the backward needs are
    ``sum(dz)`` and ``sum(dy * y)``; ``x̂ = (z - β) / γ`` (``γ`` kept away from 0).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, slope):  # noqa: D102
        dims = tuple(range(2, x.ndim))
        var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        rstd = torch.rsqrt(var + eps)
        scale = rstd * _channel_view(weight, x.ndim)
        shift = _channel_view(bias, x.ndim) - mean * scale
        y = torch.addcmul(shift, x, scale)
        y = F.leaky_relu(y, slope, inplace=True)
        ctx.save_for_backward(y, rstd, weight, bias)
        ctx.slope = slope
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        y, rstd, weight, bias = ctx.saved_tensors
        slope = ctx.slope
        dims = tuple(range(2, y.ndim))
        n = y[0, 0].numel()
        dz = torch.ops.aten.leaky_relu_backward(dy, y, slope, True)
        sum_dz = dz.sum(dim=dims, keepdim=True)
        sum_dyy = (dy * y).sum(dim=dims, keepdim=True)
        w = _channel_view(weight, y.ndim)
        safe_w = torch.where(w.abs() < 1e-6, torch.full_like(w, 1e-6), w)
        b = _channel_view(bias, y.ndim)
        sum_dz_xhat = (sum_dyy - b * sum_dz) / safe_w
        grad_bias = sum_dz.sum(dim=0).flatten()
        grad_weight = sum_dz_xhat.sum(dim=0).flatten()
        # dx = γ·rstd·(dz − mean(dz)) − rstd·(z − β)·mean(dz·x̂), z recovered from y.
        m2 = sum_dz_xhat / n
        z = torch.where(y > 0, y, y * (1.0 / slope))
        dx = dz.sub_(sum_dz / n).mul_(w * rstd)
        dx.addcmul_(z.sub_(b), rstd * m2, value=-1.0)
        return dx, grad_weight, grad_bias, None, None


def _norm_act_fused(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                    eps: float, slope: float) -> torch.Tensor:
    return _FusedNormAct.apply(x, weight, bias, eps, slope)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` (N, C, *spatial) is stored channels-last (and not also contiguous)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    fmt = formats.get(x.dim())
    return (fmt is not None and x.shape[1] > 1 and x.is_contiguous(memory_format=fmt)
            and not x.is_contiguous())


def _spatial_view(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``(N, S, C)`` view of a channels-last ``t``, ``(N, C, S)`` of a contiguous one."""
    n, c = t.shape[:2]
    if channels_last:
        return t.permute((0, *range(2, t.dim()), 1)).reshape(n, -1, c)
    return t.reshape(n, c, -1)


def _stats_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 for float64 tensors, else float32: the precision of per-channel statistics."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _channel_sums(t3: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Per-channel sums over space, ``(N, C)``, as a product with a row of ones."""
    if channels_last:
        sums = torch.bmm(t3.new_ones(t3.shape[0], 1, t3.shape[1]), t3)[:, 0]
    else:
        sums = torch.bmm(t3, t3.new_ones(t3.shape[0], t3.shape[2], 1))[..., 0]
    return sums.to(_stats_dtype(t3))


def _channel_dots(a3: torch.Tensor, b3: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Per-channel ``Σ a·b`` over space, ``(N, C)``: a Gram product's diagonal.

    The Gram product costs ``2·C²·S`` FLOPs, 1/27 of a 3³ convolution of the same block.
    """
    gram = (torch.bmm(a3.transpose(1, 2), b3) if channels_last
            else torch.bmm(a3, b3.transpose(1, 2)))
    return torch.diagonal(gram, dim1=1, dim2=2).to(_stats_dtype(a3))


class _GemmNormAct(torch.autograd.Function):
    """Instance norm + affine + leaky ReLU; the backward's reductions are matrix products.

    With ``z`` the pre-activation, ``x̂ = (x - μ)·r`` (``r`` = 1/σ) and ``dz`` the gradient
    through the activation: ``dx = w·r·(dz - mean(dz) - x̂·mean(dz·x̂))``, which is
    ``a·dz + b·x + c`` with per-(sample, channel) ``a, b, c``: two ``addcmul`` passes.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, slope):  # noqa: D102
        n, c = x.shape[:2]
        w = weight.to(x.dtype) if weight.dtype != x.dtype else weight
        b = bias.to(x.dtype) if bias.dtype != x.dtype else bias
        with _no_autocast(x):
            y, mean, rstd = torch.ops.aten.native_group_norm(x, w, b, n, c, x[0, 0].numel(),
                                                             c, eps)
        y = F.leaky_relu_(y, slope)
        ctx.save_for_backward(x, y, mean, rstd, weight)
        ctx.slope = slope
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        x, y, mean, rstd, weight = ctx.saved_tensors
        n, c = x.shape[:2]
        last = is_channels_last(x)
        # Written straight into y's layout: a channel slice of a concatenation's gradient
        # (the skip connections) needs no copy first.
        dz = torch.empty_like(y)
        torch.ops.aten.leaky_relu_backward.grad_input(dy, y, ctx.slope, True, grad_input=dz)
        dz3, x3 = _spatial_view(dz, last), _spatial_view(x, last)
        size = x[0, 0].numel()
        sum_dz = _channel_sums(dz3, last)
        acc = sum_dz.dtype
        mean, rstd = mean.to(acc).view(n, c), rstd.to(acc).view(n, c)
        sum_dz_xhat = rstd * (_channel_dots(dz3, x3, last) - mean * sum_dz)
        a = weight.to(acc).view(1, c) * rstd
        b = -a * rstd * sum_dz_xhat / size
        const = -a * sum_dz / size - b * mean
        shape = (n, 1, c) if last else (n, c, 1)
        dx3 = torch.addcmul(const.view(shape).to(dz.dtype), dz3, a.view(shape).to(dz.dtype))
        dx3.addcmul_(x3, b.view(shape).to(dz.dtype))
        if last:
            dx = dx3.view(n, *x.shape[2:], c).permute((0, x.dim() - 1, *range(1, x.dim() - 1)))
        else:
            dx = dx3.view(x.shape)
        return (dx, sum_dz_xhat.sum(0).to(weight.dtype), sum_dz.sum(0).to(weight.dtype),
                None, None)


def _norm_act_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float, slope: float) -> torch.Tensor:
    return _GemmNormAct.apply(x, weight, bias, eps, slope)


def _norm_act_auto(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float, slope: float) -> torch.Tensor:
    if is_channels_last(x) and x.device.type == "cpu":
        return _norm_act_gemm(x, weight, bias, eps, slope)
    return _norm_act_group(x, weight, bias, eps, slope)


NORM_ACT_IMPLS: dict[str, Callable[..., torch.Tensor]] = {
    "torch": _norm_act_torch,
    "group": _norm_act_group,
    "fused": _norm_act_fused,
    "gemm": _norm_act_gemm,
    "auto": _norm_act_auto,
}


class InstanceNormAct(nn.Module):
    """Instance norm (affine, per sample and channel) followed by leaky ReLU.

    Args:
        num_features: Channels.
        impl: Key of :data:`NORM_ACT_IMPLS`.
        eps: Variance epsilon.
        negative_slope: Leaky ReLU slope.
    """

    def __init__(self, num_features: int, impl: str = "torch", eps: float = NORM_EPS,
                 negative_slope: float = NEGATIVE_SLOPE) -> None:
        super().__init__()
        if impl not in NORM_ACT_IMPLS:
            raise ValueError(f"unknown norm implementation {impl!r}; known: "
                             f"{sorted(NORM_ACT_IMPLS)}")
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.impl = impl
        self.eps = eps
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return NORM_ACT_IMPLS[self.impl](x, self.weight, self.bias, self.eps, self.negative_slope)

    def extra_repr(self) -> str:  # noqa: D102
        return f"{self.weight.numel()}, impl={self.impl!r}, eps={self.eps}"


class ConvNormAct(nn.Module):
    """``conv`` → ``norm`` (instance norm + leaky ReLU); 'same' padding."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: Sequence[int], stride: Sequence[int], conv_bias: bool = False,
                 norm_impl: str = "torch") -> None:
        super().__init__()
        padding = tuple((k - 1) // 2 for k in kernel_size)
        self.conv = conv_class(spatial_dims)(in_channels, out_channels, tuple(kernel_size),
                                             tuple(stride), padding=padding, bias=conv_bias)
        self.norm = InstanceNormAct(out_channels, impl=norm_impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.norm(self.conv(x))


class StackedConvs(nn.Module):
    """``n`` :class:`ConvNormAct` blocks in ``self.convs``; the first one carries the stride."""

    def __init__(self, n: int, spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: Sequence[int], first_stride: Sequence[int],
                 conv_bias: bool = False, norm_impl: str = "torch") -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"a stage needs at least one convolution, got {n}")
        ones = (1,) * spatial_dims
        self.convs = nn.Sequential(*[
            ConvNormAct(spatial_dims, in_channels if i == 0 else out_channels, out_channels,
                        kernel_size, first_stride if i == 0 else ones, conv_bias, norm_impl)
            for i in range(n)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.convs(x)


def set_norm_impl(module: nn.Module, impl: str) -> None:
    """Switch every :class:`InstanceNormAct` inside ``module`` to implementation ``impl``."""
    if impl not in NORM_ACT_IMPLS:
        raise ValueError(f"unknown norm implementation {impl!r}; known: {sorted(NORM_ACT_IMPLS)}")
    for m in module.modules():
        if isinstance(m, InstanceNormAct):
            m.impl = impl


__all__ = [
    "NEGATIVE_SLOPE",
    "NORM_ACT_IMPLS",
    "NORM_EPS",
    "ConvNormAct",
    "InstanceNormAct",
    "StackedConvs",
    "conv_class",
    "is_channels_last",
    "set_norm_impl",
    "transposed_conv_class",
]
