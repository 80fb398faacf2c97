"""METHOD §5: sliding-window inference with a Gaussian importance map and mirror TTA.

One network pass covers a *batch* of patches, each in every mirror combination, so test-time
augmentation adds no extra Python loop. Per patch the (mirror-averaged) output is weighted by
a Gaussian centred on the patch (σ = ``sigma_scale`` × patch edge, default 1/8), accumulated
into a ``(K, z, y, x)`` float32 buffer (on the device when it fits) plus one ``(z, y, x)``
weight buffer, and divided by the summed weights at the end.

Arrays are in numpy order ``(C, z, y, x)``. 2D configurations (a 2-value patch) run slice by
slice along axis 0: the window is ``(1, py, px)`` and the network sees ``(B, C, py, px)``.
What is accumulated is set by :attr:`SlidingWindowSettings.output`: ``"softmax"`` (NNSeg's
method: probabilities are averaged) or ``"logits"`` (nnU-Net v2's: logits are averaged).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from NNSegLib.util.precision import REQUESTS

OUTPUTS = ("softmax", "logits")
#: What ``SlidingWindowSettings.precision`` may be.
PRECISIONS = REQUESTS


@dataclass(frozen=True)
class SlidingWindowSettings:
    """How to tile an image and combine the patches.

    Attributes:
        patch_size: The network's patch (2 values for 2D configurations, else 3).
        step: Step between windows as a fraction of the patch edge (0.5 = half a patch).
        mirror_axes: Spatial axes of the patch to mirror for TTA (all combinations are used);
            ``()`` turns TTA off.
        use_gaussian: Weight each patch by the Gaussian importance map (else uniformly).
        sigma_scale: σ of the Gaussian as a fraction of the patch edge.
        output: ``"softmax"`` or ``"logits"``: what is averaged over mirrors and patches.
        max_batch_voxels: Upper bound on voxels per network call (patches × mirrors × patch
            voxels; at least one patch per call). The default, 2^18, runs a Hippocampus
            patch (40×56×40) two mirrors at a time: on the CPU as fast as all eight at once
            and with half the peak memory (bench/RESULTS.md, inference).
        nnunet_numerics: Reproduce nnU-Net v2's numerics for agreement with
            ``nnUNetv2_predict``: float16 accumulation buffers and its Gaussian (centre at
            ``s // 2``, zero beyond 4σ then raised to the smallest non-zero value, float16).
        precision: Network arithmetic: ``"auto"`` (:func:`autocast_dtype`: fp16 on CUDA
            and MPS, bf16 on a CPU with native bf16 units, about twice as fast there, fp32
            otherwise; with ``nnunet_numerics`` fp16 on CUDA and fp32 elsewhere, as nnU-Net
            itself runs), ``"fp32"``, ``"bf16"`` or ``"fp16"``. Accumulation is float32 in
            every case (float16 with ``nnunet_numerics``).
    """

    patch_size: tuple[int, ...]
    step: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    use_gaussian: bool = True
    sigma_scale: float = 1.0 / 8.0
    output: str = "softmax"
    max_batch_voxels: int = 2**18
    nnunet_numerics: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.patch_size) not in (2, 3):
            raise ValueError(f"patch_size must have 2 or 3 values, got {self.patch_size}")
        if not 0 < self.step <= 1:
            raise ValueError(f"step must be in (0, 1], got {self.step}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        bad = [a for a in self.mirror_axes if not 0 <= a < len(self.patch_size)]
        if bad:
            raise ValueError(f"mirror axes {bad} outside the patch's {len(self.patch_size)} axes")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlidingWindowSettings:
        d = dict(d)
        d["patch_size"] = tuple(int(v) for v in d["patch_size"])
        d["mirror_axes"] = tuple(int(v) for v in d.get("mirror_axes", ()))
        return cls(**d)


@dataclass
class SlidingWindowStats:
    """Counts of what a prediction ran, accumulated over folds and cases when reused.

    Pass one to :func:`predict_sliding_window` (or ``predict_case(stats=...)``) to learn
    the cost of a setting: ``nnseg predict`` reports them per run, and the fast preview
    (``--fast``) is checked against them.

    Attributes:
        windows: Window positions predicted (once per network, i.e. per fold).
        patch_passes: Patches the network evaluated (windows × mirror combinations).
        network_calls: Forward calls (batches of patches and mirrors).
        seconds: Wall time spent in the sliding window (network and accumulation).
    """

    windows: int = 0
    patch_passes: int = 0
    network_calls: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 1.0 / 8.0,
                            floor: float = 1e-10):
    """Separable Gaussian over a patch, maximum 1 at the centre, never below ``floor``.

    The centre is the geometric middle ``(s - 1) / 2`` of each axis, so the map is
    symmetric under mirroring (TTA and flipped inputs weight patches identically).

    Returns:
        A float32 ``torch.Tensor`` of shape ``patch_size``.
    """
    import torch

    weights = torch.ones((), dtype=torch.float64)
    for size in patch_size:
        sigma = max(size * sigma_scale, 1e-6)
        pos = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
        weights = weights[..., None] * torch.exp(-0.5 * (pos / sigma) ** 2)
    weights = weights / weights.max()
    return weights.clamp_min(floor).to(torch.float32)


def nnunet_style_gaussian(patch_size: Sequence[int], sigma_scale: float = 1.0 / 8.0):
    """nnU-Net v2's importance map: centre ``s // 2``, ×10, float16, zeros raised to the minimum.

    Equal to filtering a centred delta with SciPy's truncated (4σ) Gaussian kernel.
    """
    import torch

    weights = torch.ones((), dtype=torch.float64)
    for size in patch_size:
        sigma = size * sigma_scale
        radius = int(4.0 * sigma + 0.5)
        pos = torch.arange(size, dtype=torch.float64) - size // 2
        axis = torch.exp(-0.5 * (pos / sigma) ** 2) * (pos.abs() <= radius)
        weights = weights[..., None] * axis
    weights = (weights / weights.max() * 10).to(torch.float16)
    zero = weights == 0
    if zero.any():
        weights[zero] = weights[~zero].min()
    return weights


def window_starts(image_size: int, patch: int, step: float) -> list[int]:
    """Start offsets of windows along one axis: evenly spread from 0 to ``image - patch``.

    The number of windows is the fewest that keeps consecutive windows at most
    ``step × patch`` apart. Requires ``image_size >= patch``.
    """
    if image_size < patch:
        raise ValueError(f"image size {image_size} is smaller than the patch {patch}")
    span = image_size - patch
    if span == 0:
        return [0]
    count = int(math.ceil(span / (patch * step))) + 1
    return [int(round(i * span / (count - 1))) for i in range(count)]


def patch_slices(image_shape: Sequence[int], window: Sequence[int],
                 step: float) -> list[tuple[slice, ...]]:
    """All windows (as slice tuples over the spatial axes) tiling ``image_shape``."""
    starts = [window_starts(s, w, step) for s, w in zip(image_shape, window)]
    return [tuple(slice(o, o + w) for o, w in zip(offsets, window))
            for offsets in itertools.product(*starts)]


def mirror_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` (the empty one first): the TTA mirror combinations."""
    axes = tuple(sorted(set(axes)))
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def pad_to_window(data, window: Sequence[int]):
    """Zero-pad ``data`` (C, *spatial) so each spatial axis is at least ``window``.

    Returns:
        ``(padded, crop)`` where ``padded[(slice(None),) + crop]`` is the original data.
    """
    import torch.nn.functional as F

    spatial = data.shape[1:]
    before = [max(w - s, 0) // 2 for s, w in zip(spatial, window)]
    after = [max(w - s, 0) - b for s, w, b in zip(spatial, window, before)]
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial))
    if not any(before) and not any(after):
        return data, crop
    pads = []
    for b, a in zip(reversed(before), reversed(after)):
        pads += [b, a]
    return F.pad(data, pads, mode="constant", value=0.0), crop


def _allocate(shape: Sequence[int], device, dtype) -> Any:
    """A zero buffer on ``device``; falls back to the CPU when it does not fit."""
    import torch

    if device.type != "cpu":
        try:
            return torch.zeros(tuple(shape), dtype=dtype, device=device)
        except RuntimeError:  # out of device memory
            pass
    return torch.zeros(tuple(shape), dtype=dtype)


@functools.lru_cache(maxsize=8)
def _cached_map(patch_size: tuple[int, ...], sigma_scale: float, use_gaussian: bool,
                nnunet: bool):
    import torch

    if not use_gaussian:
        return torch.ones(patch_size)
    if nnunet:
        return nnunet_style_gaussian(patch_size, sigma_scale)
    return gaussian_importance_map(patch_size, sigma_scale)


def _importance_map(settings: SlidingWindowSettings):
    """The (cached, CPU) weight map of ``settings``; reused across cases and folds."""
    return _cached_map(tuple(settings.patch_size), float(settings.sigma_scale),
                       settings.use_gaussian, settings.nnunet_numerics)


class _Runner:
    """Runs the network on batches of patches with all mirror combinations at once."""

    def __init__(self, network, settings: SlidingWindowSettings, device,
                 channels_last: bool, stats: SlidingWindowStats | None = None) -> None:
        self.network = network
        self.settings = settings
        self.device = device
        self.channels_last = channels_last
        self.is_2d = len(settings.patch_size) == 2
        self.mirrors = mirror_combinations(settings.mirror_axes)
        self.autocast = autocast_dtype(settings, device)  # an impossible one fails here
        self.stats = stats

    def __call__(self, patches):
        """``patches``: (P, C, *patch) on the device → mirror-averaged (P, K, *patch)."""
        import torch

        total = None
        count = 0
        per_call = max(1, self.settings.max_batch_voxels
                       // max(1, int(np.prod(self.settings.patch_size)) * patches.shape[0]))
        for start in range(0, len(self.mirrors), per_call):
            group = self.mirrors[start:start + per_call]
            batch = torch.cat([self._flip(patches, m) for m in group])
            out = self._forward(batch)
            for i, m in enumerate(group):
                part = self._flip(out[i * patches.shape[0]:(i + 1) * patches.shape[0]], m)
                total = part if total is None else total + part
                count += 1
        return total / count

    def _flip(self, x, axes: tuple[int, ...]):
        return x.flip([2 + a for a in axes]) if axes else x

    def _forward(self, batch):
        import torch

        if self.channels_last:
            fmt = torch.channels_last_3d if batch.ndim == 5 else torch.channels_last
            batch = batch.contiguous(memory_format=fmt)
        if self.stats is not None:
            self.stats.network_calls += 1
            self.stats.patch_passes += int(batch.shape[0])
        if self.autocast is None:
            out = self.network(batch)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast):
                out = self.network(batch)
        if isinstance(out, (list, tuple)):
            out = out[0]
        out = out.float()
        if self.settings.output == "softmax":
            out = torch.softmax(out, dim=1)
        return out


def autocast_dtype(settings: SlidingWindowSettings, device):
    """The autocast dtype for ``settings.precision`` on ``device`` (``None``: plain fp32).

    The choice is :func:`NNSegLib.util.precision.choose_precision` for inference: ``auto``
    is fp16 on CUDA and on MPS (torch >= 2.5), bf16 on CPUs with AMX/AVX512-BF16 (that the
    kernels may use), fp32 otherwise; with ``settings.nnunet_numerics`` fp16 on CUDA and fp32
    elsewhere, as nnU-Net v2 predicts.

    Raises:
        PrecisionError: ``settings.precision`` is impossible on ``device`` (bf16 on MPS).
    """
    from NNSegLib.util.precision import choose_precision, device_capabilities, torch_dtype

    precision = choose_precision(device_capabilities(device), settings.precision,
                                 "inference", settings.nnunet_numerics)
    return torch_dtype(precision)


def _split_batches(windows: list, patch_voxels: int, mirrors: int,
                   max_voxels: int) -> list[list]:
    per_batch = max(1, max_voxels // max(1, patch_voxels * mirrors))
    return [windows[i:i + per_batch] for i in range(0, len(windows), per_batch)]


def _accumulate(runner: _Runner, data, windows: list, accum, weight_sum, gauss) -> None:
    """Run one batch of windows and add their weighted outputs into the buffers."""
    import torch

    patches = torch.stack([data[(slice(None),) + w] for w in windows])
    if runner.is_2d:
        patches = patches[:, :, 0]
    out = runner(patches.to(runner.device, non_blocking=True)).to(accum.device)
    if runner.is_2d:
        out = out[:, :, None]
    for w, pred in zip(windows, out):
        accum[(slice(None),) + w] += pred * gauss
        weight_sum[w] += gauss


def predict_sliding_window(network, data, num_classes: int, settings: SlidingWindowSettings,
                           *, device=None, progress=None, channels_last: bool = False,
                           stats: SlidingWindowStats | None = None):
    """Predict a whole preprocessed case by tiling it with overlapping windows.

    Args:
        network: A ``torch.nn.Module`` in eval mode mapping ``(B, C, *patch)`` to
            ``(B, K, *patch)`` logits (or a list whose first entry is that).
        data: ``(C, z, y, x)`` float32 tensor or array (any device).
        num_classes: K, the number of output channels.
        settings: Tiling, TTA and accumulation settings.
        device: Device of the network (default: where its parameters are).
        progress: Optional :class:`~NNSegLib.util.progress.Progress` (one step per patch,
            cancellation checked between batches).
        channels_last: Feed the network channels-last tensors.
        stats: Optional counters, increased by this call (windows, patches, calls, time).

    Returns:
        ``(K, z, y, x)`` CPU tensor: Gaussian-weighted mean softmax (or logits); float32,
        or float16 with ``settings.nnunet_numerics``.
    """
    import torch

    started = time.perf_counter()
    if device is None:
        params = list(network.parameters())
        device = params[0].device if params else torch.device("cpu")
    data = torch.as_tensor(np.asarray(data) if not torch.is_tensor(data) else data)
    data = data.to(dtype=torch.float32)
    if data.ndim != 4:
        raise ValueError(f"expected (C, z, y, x) data, got shape {tuple(data.shape)}")
    is_2d = len(settings.patch_size) == 2
    window = (1, *settings.patch_size) if is_2d else tuple(settings.patch_size)
    data, crop = pad_to_window(data, window)
    spatial = tuple(data.shape[1:])
    windows = patch_slices(spatial, window, settings.step)
    dtype = torch.float16 if settings.nnunet_numerics else torch.float32
    accum = _allocate((num_classes, *spatial), device, dtype)
    weight_sum = _allocate(spatial, accum.device, dtype)
    gauss = _importance_map(settings).to(accum.device)
    gauss_window = gauss[None] if is_2d else gauss
    runner = _Runner(network, settings, device, channels_last, stats)
    batches = _split_batches(windows, int(np.prod(window)), len(runner.mirrors),
                             settings.max_batch_voxels)
    if progress is not None:
        progress.start("patches", len(windows))
    with torch.inference_mode():
        for batch_windows in batches:
            if progress is not None:
                progress.check_cancelled()
            _accumulate(runner, data, batch_windows, accum, weight_sum, gauss_window)
            if progress is not None:
                progress.advance(len(batch_windows))
        accum /= weight_sum
    if progress is not None:
        progress.done()
    out = accum[(slice(None),) + crop].cpu()
    if stats is not None:
        stats.windows += len(windows)
        stats.seconds += time.perf_counter() - started
    return out if settings.nnunet_numerics else out.float()


__all__ = [
    "OUTPUTS",
    "SlidingWindowSettings",
    "SlidingWindowStats",
    "gaussian_importance_map",
    "mirror_combinations",
    "nnunet_style_gaussian",
    "pad_to_window",
    "patch_slices",
    "predict_sliding_window",
    "window_starts",
]
