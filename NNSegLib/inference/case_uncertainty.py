"""How unsure a whole case's prediction is, and where (METHOD §8, the review queue).

From a case's label map and its normalized-entropy map (:mod:`.uncertainty`, 0 = certain,
1 = uniform over the classes), :func:`summarize_uncertainty` computes what the review queue
ranks and shows:

* ``mean_entropy_foreground``: mean entropy over the voxels predicted as foreground (the
  structures a reviewer checks). ``None`` when nothing was predicted.
* ``uncertain_fraction``: ``|U| / |F ∪ U|`` with ``U`` the voxels whose entropy is at least
  ``threshold`` (default 0.5) and ``F`` the predicted foreground: the share of the region of
  interest the model hesitates about, in ``[0, 1]`` whatever the structure's size.
* ``volumes_ml``: predicted volume per label.
* ``region``: the most uncertain region, to jump to: the connected part of ``U`` with the
  largest summed entropy, its bounding box and, as centre, its voxel with the highest entropy
  averaged over a ~``window_mm`` box; without uncertain voxels the voxel of highest entropy.

:attr:`CaseUncertainty.score` orders the queue (highest first): the mean foreground entropy;
for an empty prediction 1.0 when the model hesitated somewhere (it predicted nothing but was
unsure: look first) and 0.0 when it was confident everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from NNSegLib.data.io import Geometry

DEFAULT_THRESHOLD = 0.5
DEFAULT_WINDOW_MM = 10.0


@dataclass(frozen=True)
class Region:
    """Where a case is most uncertain.

    Attributes:
        center_ijk: Centre voxel, numpy order ``(z, y, x)``.
        center_lps: Its physical position (ITK/LPS, mm, ``(x, y, z)``).
        box_ijk: Bounding box ``[[z0, z1], [y0, y1], [x0, x1]]`` (half-open).
        mean_uncertainty: Mean entropy inside the region.
    """

    center_ijk: tuple[int, ...]
    center_lps: tuple[float, ...]
    box_ijk: tuple[tuple[int, int], ...]
    mean_uncertainty: float

    @property
    def center_ras(self) -> tuple[float, ...]:
        """The centre in Slicer's RAS coordinates (jump the slice views there)."""
        x, y, z = self.center_lps
        return (-x, -y, z)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["center_ras"] = list(self.center_ras)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Region:
        return cls(tuple(int(v) for v in d["center_ijk"]),
                   tuple(float(v) for v in d["center_lps"]),
                   tuple((int(a), int(b)) for a, b in d["box_ijk"]),
                   float(d["mean_uncertainty"]))


@dataclass(frozen=True)
class CaseUncertainty:
    """A case's uncertainty summary (see the module doc)."""

    mean_entropy_foreground: float | None
    mean_entropy: float
    uncertain_fraction: float
    foreground_voxels: int
    uncertain_voxels: int
    volumes_ml: dict[str, float] = field(default_factory=dict)
    region: Region | None = None
    threshold: float = DEFAULT_THRESHOLD

    @property
    def score(self) -> float:
        """Ranking score, highest = review first (module doc)."""
        if self.mean_entropy_foreground is not None:
            return self.mean_entropy_foreground
        return 1.0 if self.uncertain_voxels else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["region"] = self.region.to_dict() if self.region is not None else None
        d["score"] = self.score
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseUncertainty:
        region = Region.from_dict(d["region"]) if d.get("region") else None
        mean_fg = d.get("mean_entropy_foreground")
        return cls(None if mean_fg is None else float(mean_fg), float(d["mean_entropy"]),
                   float(d["uncertain_fraction"]), int(d["foreground_voxels"]),
                   int(d["uncertain_voxels"]),
                   {str(k): float(v) for k, v in d.get("volumes_ml", {}).items()}, region,
                   float(d.get("threshold", DEFAULT_THRESHOLD)))


def index_to_lps(index_zyx: Any, geometry: Geometry) -> tuple[float, ...]:
    """Physical (LPS) position of a voxel index given in numpy order."""
    ijk = np.asarray(index_zyx, dtype=np.float64)[::-1]
    spacing = np.asarray(geometry.spacing, dtype=np.float64)[::-1]
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    point = np.asarray(geometry.origin, dtype=np.float64) + direction @ (spacing * ijk)
    return tuple(float(v) for v in point)


def label_volumes(labels: np.ndarray, geometry: Geometry, label_names: dict[int, str]
                  ) -> dict[str, float]:
    """Predicted volume in ml per foreground label (every named label, 0 when absent)."""
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64),
                         minlength=max(label_names, default=0) + 1)
    return {name: float(counts[value]) * voxel_ml
            for value, name in sorted(label_names.items()) if value > 0}


def most_uncertain_region(uncertainty: np.ndarray, geometry: Geometry,
                          threshold: float = DEFAULT_THRESHOLD,
                          window_mm: float = DEFAULT_WINDOW_MM) -> Region | None:
    """The most uncertain region (module doc); ``None`` when the map is 0 everywhere."""
    from scipy import ndimage

    u = np.asarray(uncertainty, dtype=np.float32)
    if u.size == 0 or float(u.max()) <= 0.0:
        return None
    window = tuple(max(1, int(round(window_mm / s))) for s in geometry.spacing)
    uncertain = u >= threshold
    if not uncertain.any():
        center = np.unravel_index(int(np.argmax(u)), u.shape)
        box = tuple((max(0, int(c) - w // 2), min(n, int(c) + w // 2 + 1))
                    for c, w, n in zip(center, window, u.shape))
    else:
        (zs, ys, xs), = ndimage.find_objects(uncertain.astype(np.int8))
        crop = (zs, ys, xs)
        components, n = ndimage.label(uncertain[crop], structure=np.ones((3, 3, 3)))
        sums = ndimage.sum(u[crop], components, index=np.arange(1, n + 1))
        best = int(np.argmax(sums)) + 1
        inside = components == best
        (bz, by, bx), = ndimage.find_objects(inside.astype(np.int8))
        smooth = ndimage.uniform_filter(u[crop], size=window, mode="nearest")
        smooth[~inside] = -1.0
        local = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        center = tuple(int(c) + sl.start for c, sl in zip(local, crop))
        box = tuple((b.start + sl.start, b.stop + sl.start)
                    for b, sl in zip((bz, by, bx), crop))
    region = tuple(slice(a, b) for a, b in box)
    return Region(tuple(int(c) for c in center), index_to_lps(center, geometry),
                  tuple((int(a), int(b)) for a, b in box), float(u[region].mean()))


def summarize_uncertainty(labels: np.ndarray, uncertainty: np.ndarray, geometry: Geometry,
                          label_names: dict[int, str], threshold: float = DEFAULT_THRESHOLD,
                          window_mm: float = DEFAULT_WINDOW_MM) -> CaseUncertainty:
    """Summarize a case's prediction for the review queue (see the module doc).

    Args:
        labels: ``(z, y, x)`` predicted label map.
        uncertainty: ``(z, y, x)`` normalized entropy in ``[0, 1]``.
        geometry: Their geometry (spacing for volumes, physical position of the region).
        label_names: ``{value: name}`` of the model's labels.
        threshold: Entropy from which a voxel counts as uncertain.
        window_mm: Size of the box averaged to find the region's centre.
    """
    labels = np.asarray(labels)
    u = np.asarray(uncertainty, dtype=np.float32)
    if labels.shape != u.shape:
        raise ValueError(f"labels {labels.shape} and uncertainty {u.shape} differ in shape")
    foreground = labels > 0
    uncertain = u >= threshold
    n_fg, n_unc = int(foreground.sum()), int(uncertain.sum())
    roi = int(np.count_nonzero(foreground | uncertain))
    return CaseUncertainty(
        mean_entropy_foreground=float(u[foreground].mean()) if n_fg else None,
        mean_entropy=float(u.mean()) if u.size else 0.0,
        uncertain_fraction=n_unc / roi if roi else 0.0,
        foreground_voxels=n_fg, uncertain_voxels=n_unc,
        volumes_ml=label_volumes(labels, geometry, label_names),
        region=most_uncertain_region(u, geometry, threshold, window_mm),
        threshold=float(threshold))


__all__ = ["CaseUncertainty", "DEFAULT_THRESHOLD", "DEFAULT_WINDOW_MM", "Region",
           "index_to_lps", "label_volumes", "most_uncertain_region", "summarize_uncertainty"]
