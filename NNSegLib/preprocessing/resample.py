"""Resampling to a target spacing and back (METHOD §3 step 2).

Coordinate convention (the same for every order and for numpy and torch): voxel centres
are aligned as in ``align_corners=False``: output voxel ``i`` of an axis resized from
``n`` to ``m`` samples the input at ``(i + 0.5) * n / m - 0.5``, edges replicated. Order 0
takes input index ``floor((i + 0.5) * n / m)`` (torch's ``nearest-exact``).

Images use a spline of ``order`` (3); labels are resampled class by class with ``order``
(1 = linear) followed by an argmax, or by nearest neighbour (order 0). Along an
anisotropic axis (see :func:`separate_axis`) the in-plane part is done slice by slice with
``order`` and the anisotropic axis with ``order_axis`` (0) on its own.

The numpy functions use SciPy only (preprocessing workers never import torch); the
``*_torch`` functions resample probabilities on the tensor's own device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def compute_new_shape(shape: Sequence[int], spacing: Sequence[float],
                      target_spacing: Sequence[float]) -> tuple[int, ...]:
    """Shape of an image of ``shape`` at ``spacing`` after resampling to ``target_spacing``."""
    return tuple(
        max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing)
    )


def separate_axis(original_spacing: Sequence[float], target_spacing: Sequence[float],
                  planned_axis: int | None = None, threshold: float = 3.0) -> int | None:
    """The axis to resample on its own, or ``None``.

    It is the plan's anisotropy axis if it has one, else the coarsest axis of the case's
    own spacing (or of the target) when that is at least ``threshold`` times the finest.
    """
    if planned_axis is not None:
        return planned_axis
    for spacing in (original_spacing, target_spacing):
        sp = np.asarray(spacing, dtype=np.float64)
        if sp.max() >= threshold * sp.min():
            return int(np.argmax(sp))
    return None


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def _zoom(volume: np.ndarray, new_shape: Sequence[int], order: int) -> np.ndarray:
    """Resample all axes of ``volume`` together (float32 out)."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(volume.shape) == new_shape:
        return volume.astype(np.float32, copy=False)
    if order == 0:
        index = np.ix_(*[_nearest_indices(n, m) for n, m in zip(volume.shape, new_shape)])
        return np.ascontiguousarray(volume[index], dtype=np.float32)
    from scipy import ndimage  # imported on first use: it takes seconds to import

    factors = [m / n for n, m in zip(volume.shape, new_shape)]
    out = ndimage.zoom(volume.astype(np.float32, copy=False), factors, order=order,
                       mode="nearest", grid_mode=True, prefilter=order > 1)
    if tuple(out.shape) != new_shape:  # pragma: no cover - SciPy rounding guard
        raise RuntimeError(f"resampling gave {out.shape}, expected {new_shape}")
    return out


def resample_volume(volume: np.ndarray, new_shape: Sequence[int], order: int = 3,
                    axis: int | None = None, order_axis: int = 0) -> np.ndarray:
    """Resample one spatial volume; with ``axis`` the anisotropic axis is done separately."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(volume.shape) == new_shape:
        return volume.astype(np.float32, copy=False)
    if axis is None:
        return _zoom(volume, new_shape, order)
    moved = np.moveaxis(volume, axis, 0)
    in_plane = tuple(s for a, s in enumerate(new_shape) if a != axis)
    out = np.empty((moved.shape[0],) + in_plane, dtype=np.float32)
    for i in range(moved.shape[0]):
        out[i] = _zoom(moved[i], in_plane, order)
    out = _zoom(out, (new_shape[axis],) + in_plane, order_axis)
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def resample_images(images: np.ndarray, new_shape: Sequence[int], order: int = 3,
                    axis: int | None = None, order_axis: int = 0) -> np.ndarray:
    """Resample each channel of ``images`` ``(C, *spatial)``."""
    return np.stack([resample_volume(c, new_shape, order, axis, order_axis) for c in images])


def resample_labels(labels: np.ndarray, new_shape: Sequence[int], order: int = 1,
                    axis: int | None = None, order_axis: int = 0) -> np.ndarray:
    """Resample a label map (values kept): nearest (order 0) or per-class ``order`` + argmax."""
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(labels.shape) == new_shape:
        return labels.copy()
    if order == 0 and order_axis == 0:
        return _zoom(labels, new_shape, 0).astype(labels.dtype)
    values = np.unique(labels)
    best = np.full(new_shape, -1.0, dtype=np.float32)
    out = np.zeros(new_shape, dtype=labels.dtype)
    for v in values:
        score = resample_volume((labels == v).astype(np.float32), new_shape, order, axis,
                                order_axis)
        better = score > best
        out[better] = v
        np.maximum(best, score, out=best)
    return out


# --- torch (probabilities at inference) -------------------------------------------------
def resample_torch(volume, new_shape: Sequence[int], axis: int | None = None,
                   order_axis: int = 0):
    """Linearly resample a 3D torch tensor ``(z, y, x)`` on its device (same convention).

    Along ``axis`` (if given) ``order_axis`` 0 uses nearest (``nearest-exact``), else linear.
    """
    import torch.nn.functional as F

    new_shape = tuple(int(s) for s in new_shape)
    x = volume[None, None].float()
    if tuple(volume.shape) == new_shape:
        return volume.float()
    if axis is not None and order_axis == 0:
        inter = list(new_shape)
        inter[axis] = volume.shape[axis]
        x = F.interpolate(x, size=tuple(inter), mode="trilinear", align_corners=False)
        x = F.interpolate(x, size=new_shape, mode="nearest-exact")
    else:
        x = F.interpolate(x, size=new_shape, mode="trilinear", align_corners=False)
    return x[0, 0]


__all__ = [
    "compute_new_shape",
    "resample_images",
    "resample_labels",
    "resample_torch",
    "resample_volume",
    "separate_axis",
]
