"""Intensity normalization per channel (METHOD §3 step 3); registry :data:`NORMALIZERS`.

* ``ct``: clip to the dataset's foreground 0.5–99.5 percentiles, then z-score with the
  dataset's foreground mean and standard deviation.
* ``zscore``: z-score with the case's own mean and standard deviation.
* ``none``: leave the values as they are (cast to float32).

With ``use_mask`` the statistics come from the nonzero mask only, and voxels outside the
mask are set to 0. Statistics are accumulated in float64 (MR intensities reach 1e6).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from NNSegLib.planning.plans import IntensityProperties
from NNSegLib.util.errors import NNSegError

EPS = 1e-8

Normalizer = Callable[[np.ndarray, "np.ndarray | None", "IntensityProperties | None"], np.ndarray]


def zscore(image: np.ndarray, mask: np.ndarray | None,
           props: IntensityProperties | None = None) -> np.ndarray:
    """Per-case z-score (inside ``mask`` if given; 0 outside)."""
    values = image[mask] if mask is not None else image
    if values.size == 0:
        return np.zeros_like(image, dtype=np.float32)
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    out = ((image - mean) / max(std, EPS)).astype(np.float32, copy=False)
    if mask is not None:
        out[~mask] = 0
    return out


def ct(image: np.ndarray, mask: np.ndarray | None,
       props: IntensityProperties | None = None) -> np.ndarray:
    """Clip to the dataset foreground percentiles, z-score with the dataset statistics."""
    if props is None:
        raise NNSegError("CT normalization needs the dataset's foreground intensity statistics")
    out = np.clip(image, props.percentile_00_5, props.percentile_99_5).astype(np.float32)
    out -= np.float32(props.mean)
    out /= np.float32(max(props.std, EPS))
    if mask is not None:
        out[~mask] = 0
    return out


def no_normalization(image: np.ndarray, mask: np.ndarray | None,
                     props: IntensityProperties | None = None) -> np.ndarray:
    """Leave intensities unchanged."""
    return image.astype(np.float32, copy=False)


NORMALIZERS: dict[str, Normalizer] = {"ct": ct, "zscore": zscore, "none": no_normalization}


def normalize(
    images: np.ndarray,
    schemes: Sequence[str],
    use_mask: Sequence[bool],
    intensity_properties: dict[str, IntensityProperties],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Normalize each channel of ``images`` ``(C, *spatial)``; returns a new float32 array.

    Args:
        images: Channels first.
        schemes: Per channel a key of :data:`NORMALIZERS` (one value applies to all).
        use_mask: Per channel whether to normalize inside ``mask`` only.
        intensity_properties: Per channel (index as string) dataset statistics.
        mask: The nonzero mask (needed when any ``use_mask`` is true).
    """
    out = np.empty(images.shape, dtype=np.float32)
    for c in range(images.shape[0]):
        scheme = schemes[c] if len(schemes) > 1 else schemes[0]
        masked = bool(use_mask[c] if len(use_mask) > 1 else use_mask[0])
        try:
            fn = NORMALIZERS[scheme]
        except KeyError:
            raise NNSegError(
                f"unknown normalization {scheme!r}; choose from {sorted(NORMALIZERS)}"
            ) from None
        if masked and mask is None:
            raise NNSegError("use_mask_for_norm is set but no nonzero mask was given")
        out[c] = fn(images[c], mask if masked else None, intensity_properties.get(str(c)))
    return out


__all__ = ["NORMALIZERS", "ct", "no_normalization", "normalize", "zscore"]
