"""Crop to the nonzero bounding box and paste back (METHOD §3 step 1).

A bounding box is ``[[z0, z1], [y0, y1], [x0, x1]]``, half-open, in the original array's
numpy order. The box of an all-zero image is the whole image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BBox = list  # [[lo, hi], ...], half-open


def nonzero_mask(images: np.ndarray) -> np.ndarray:
    """Voxels where any channel of ``images`` ``(C, *spatial)`` is nonzero."""
    mask = images[0] != 0
    for channel in images[1:]:
        mask |= channel != 0
    return mask


def bbox_of(mask: np.ndarray) -> BBox:
    """Half-open bounding box of the ``True`` voxels (the whole array if there are none)."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other) if other else mask)
        if hits.size == 0:
            return [[0, s] for s in mask.shape]
        box.append([int(hits[0]), int(hits[-1]) + 1])
    return box


def crop(array: np.ndarray, bbox: Sequence[Sequence[int]]) -> np.ndarray:
    """View of the last ``len(bbox)`` axes of ``array`` inside ``bbox``."""
    lead = (slice(None),) * (array.ndim - len(bbox))
    return array[lead + tuple(slice(lo, hi) for lo, hi in bbox)]


def paste(
    cropped: np.ndarray, bbox: Sequence[Sequence[int]], shape: Sequence[int], fill: float = 0,
) -> np.ndarray:
    """Put ``cropped`` back into a new array of spatial ``shape`` filled with ``fill``."""
    lead = cropped.shape[: cropped.ndim - len(bbox)]
    out = np.full(tuple(lead) + tuple(shape), fill, dtype=cropped.dtype)
    out[(slice(None),) * len(lead) + tuple(slice(lo, hi) for lo, hi in bbox)] = cropped
    return out


__all__ = ["bbox_of", "crop", "nonzero_mask", "paste"]
