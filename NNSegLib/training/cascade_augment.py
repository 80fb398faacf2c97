"""Augmentation of the previous-stage segmentation fed to a cascade's full-resolution stage.

The ``3d_cascade_fullres`` network receives, besides the image, the upsampled prediction of
the ``3d_lowres`` stage as one-hot foreground channels ``(B, K-1, *S)``. In training those
channels are the low-res stage's cross-validation predictions; nnU-Net corrupts them
further so the network learns to correct, not copy, them (v2: ``MoveSegAsOneHotToData``,
then ``ApplyRandomBinaryOperatorTransform`` with ``p_per_sample=0.4, strel_size=(1, 8),
p_per_label=0.5`` and
``RemoveRandomConnectedComponentFromOneHotEncodingTransform`` with ``p_per_sample=0.2,
fill_with_other_class_p=0, dont_do_if_covers_more_than_x_percent=0.15, p_per_label=0.5``
— the values of nnU-Net v2.8). This module does
the same on torch tensors: :func:`~NNSegLib.inference.cascade.one_hot_foreground` (shared with
inference) and :func:`augment_previous_stage`.

Differences from nnU-Net:

* Morphology runs in torch on the tensor's device. The ball of radius ``r`` (skimage
  ``ball`` in nnU-Net, float radius) is approximated by ``r`` radius-1 dilations (integer
  ``r``): about 60 % with the face cross (6-neighbourhood in 3D), the rest with the
  18-neighbourhood (3 x 3 squares in the axis planes) and one cube (26-neighbourhood) per
  ~10 voxels of radius. Each step is a max of shifted copies, so the cost is linear in
  ``r``, not ``r^3``. Dilating a large sphere by ``r`` gives a volume within ~5 % of the
  ball of radius ``R + r``; in 2D the same recipe gives an octagon.
* Borders: for dilation the outside of the patch is background; erosion is the dual,
  ``not dilate(not x)``, so for erosion the outside counts as foreground: objects cut by
  the patch border are not eroded from the (artificial) border side (as skimage does).
* Connected components use full connectivity (26-neighbourhood in 3D, 8 in 2D), as
  skimage's ``label`` default in nnU-Net; labelling is done with scipy on a CPU copy.

Randomness comes only from the ``generator`` argument (drawn on its device).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy import ndimage

__all__ = ["CascadeAugmentationConfig", "augment_previous_stage"]


@dataclass(frozen=True)
class CascadeAugmentationConfig:
    """Probabilities and ranges of the previous-stage augmentation (nnU-Net v2 defaults)."""

    p_binary_operator: float = 0.4  # per sample
    strel_radius: tuple[int, int] = (1, 8)  # inclusive range of the structuring-element radius
    p_remove_component: float = 0.2  # per sample
    max_component_fraction: float = 0.15  # of the patch voxels; larger components are kept
    p_per_label: float = 0.5  # each foreground channel of a chosen sample (nnU-Net v2.8)

    def __post_init__(self) -> None:
        for name in ("p_binary_operator", "p_remove_component", "max_component_fraction",
                     "p_per_label"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        lo, hi = self.strel_radius
        if not 1 <= lo <= hi:
            raise ValueError(f"strel_radius must be 1 <= lo <= hi, got {self.strel_radius}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CascadeAugmentationConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown cascade augmentation fields {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**values)

    @classmethod
    def identity(cls) -> CascadeAugmentationConfig:
        """Every probability 0: the channels pass through unchanged."""
        return cls(p_binary_operator=0.0, p_remove_component=0.0)


def _or_shifted(dst: torch.Tensor, src: torch.Tensor, axis: int) -> None:
    """In place: ``dst |= src`` shifted by -1 and by +1 along ``axis`` (outside is False)."""
    n = src.shape[axis]
    if n > 1:
        dst.narrow(axis, 1, n - 1).logical_or_(src.narrow(axis, 0, n - 1))
        dst.narrow(axis, 0, n - 1).logical_or_(src.narrow(axis, 1, n - 1))


def _grow(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """Dilate bool ``x`` by the segment ``[-1, 1]`` along each of ``axes`` in turn (a box)."""
    for a in axes:
        y = x.clone()
        _or_shifted(y, x, a)
        x = y
    return x


def _dilate(x: torch.Tensor, r: int) -> torch.Tensor:
    """Dilate bool ``x`` (spatial dims only) by the approximate ball of radius ``r``."""
    axes = tuple(range(x.dim()))
    n_cross = max(1, math.floor(0.6 * r + 0.5))
    n_cube = min(r - n_cross, math.floor(0.1 * r + 0.4))
    pairs = [(a, b) for i, a in enumerate(axes) for b in axes[i + 1:]]
    for step in range(r):
        if step < n_cross:  # face cross: union of the 1D segments
            y = x.clone()
            for a in axes:
                _or_shifted(y, x, a)
        elif step < r - n_cube:  # union of the squares in the axis planes (the square in 2D)
            y = _grow(x, pairs[0])
            for p in pairs[1:]:
                y |= _grow(x, p)
        else:  # full cube
            y = _grow(x, axes)
        x = y
    return x


def _erode(x: torch.Tensor, r: int) -> torch.Tensor:
    """Dual of :func:`_dilate`; the outside of the patch counts as foreground."""
    return ~_dilate(~x, r)


_OPERATORS: tuple[Callable[[torch.Tensor, int], torch.Tensor], ...] = (
    _dilate,
    _erode,
    lambda x, r: _erode(_dilate(x, r), r),  # closing
    lambda x, r: _dilate(_erode(x, r), r),  # opening
)


def _randint(gen: torch.Generator, lo: int, hi: int, n: int = 1) -> list[int]:
    """``n`` integers uniform in ``[lo, hi)``."""
    return torch.randint(lo, hi, (n,), generator=gen, device=gen.device).tolist()


def _chosen(gen: torch.Generator, n: int, p: float) -> list[bool]:
    """``n`` independent draws with probability ``p`` (always drawn: stable random stream)."""
    return (torch.rand(n, generator=gen, device=gen.device) < p).tolist()


def augment_previous_stage(onehot: torch.Tensor, config: CascadeAugmentationConfig,
                           generator: torch.Generator) -> torch.Tensor:
    """Randomly apply morphology and remove small components, per sample.

    Args:
        onehot: ``(B, K-1, *S)`` 0/1 foreground channels, 2D or 3D spatial, at most one 1
            per voxel (e.g. from :func:`~NNSegLib.inference.cascade.one_hot_foreground`).
        config: Probabilities and ranges.
        generator: The only source of randomness.

    Returns:
        A new float32 tensor of the same shape, still one-hot (channel sum <= 1).
    """
    if onehot.dim() not in (4, 5):
        raise ValueError(f"onehot must be (B, K-1, y, x) or (B, K-1, z, y, x), "
                         f"got {tuple(onehot.shape)}")
    out = onehot.to(torch.float32, copy=True)
    batch, channels = out.shape[:2]
    dev = generator.device
    apply_op = (torch.rand(batch, generator=generator, device=dev)
                < config.p_binary_operator).tolist()
    apply_rm = (torch.rand(batch, generator=generator, device=dev)
                < config.p_remove_component).tolist()
    lo, hi = config.strel_radius
    structure = ndimage.generate_binary_structure(out.dim() - 2, out.dim() - 2)
    limit = config.max_component_fraction * math.prod(out.shape[2:])
    for b in range(batch):
        sample = out[b]  # view: writes go to ``out``
        if apply_op[b]:
            order = torch.randperm(channels, generator=generator, device=dev).tolist()
            ops = _randint(generator, 0, len(_OPERATORS), channels)
            radii = _randint(generator, lo, hi + 1, channels)
            picked = _chosen(generator, channels, config.p_per_label)
            for c, op, r, use in zip(order, ops, radii, picked):
                if not use:
                    continue
                before = sample[c] > 0.5
                after = _OPERATORS[op](before, r)
                gained = after & ~before
                sample.masked_fill_(gained, 0.0)  # taken from every other channel
                sample[c] = after.to(torch.float32)
        if apply_rm[b]:
            order = torch.randperm(channels, generator=generator, device=dev).tolist()
            picked = _chosen(generator, channels, config.p_per_label)
            for c, use in zip(order, picked):
                if not use:
                    continue
                comp, _ = ndimage.label(sample[c].cpu().numpy() > 0.5, structure)
                sizes = np.bincount(comp.ravel())
                valid = np.flatnonzero(sizes[1:] < limit) + 1
                if valid.size == 0:
                    continue
                chosen = int(valid[_randint(generator, 0, valid.size)[0]])
                sample[c].masked_fill_(torch.from_numpy(comp == chosen).to(out.device), 0.0)
    return out
