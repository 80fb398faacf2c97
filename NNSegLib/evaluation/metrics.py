"""Overlap, volume and surface-distance metrics of one case, and their means over cases.

Everything here works on numpy label maps in numpy axis order ``(z, y, x)`` with the voxel
spacing in mm in the same order (see :mod:`NNSegLib.data.io`). Files, folders and reports are
in :mod:`NNSegLib.evaluation.evaluate`.

Per case and foreground class ``k`` (reference ``R = ref == k``, prediction
``P = pred == k``):

- ``tp = |R ∩ P|``, ``fp = |P \\ R|``, ``fn = |R \\ P|`` (voxels).
- ``dice = 2 tp / (2 tp + fp + fn)``, ``iou = tp / (tp + fp + fn)``.
- ``ref_ml``, ``pred_ml``: ``|R|`` and ``|P|`` times the voxel volume (mm³ / 1000).
- ``hd95_mm``: symmetric 95th-percentile Hausdorff distance between the *surfaces* of R
  and P. A surface voxel is a voxel of the mask with at least one of its 6 face
  neighbours outside the mask (outside the image counts as outside). For each surface
  voxel of R the distance in mm to the nearest surface voxel of P is taken (Euclidean,
  spacing-aware, voxel centres), and vice versa; ``hd95_mm`` is the larger of the two
  directed 95th percentiles (numpy's linear interpolation). It is computed on the
  bounding box of ``R ∪ P`` only, which gives the same numbers as the whole image because
  every surface voxel lies inside it: with ``scipy.ndimage.distance_transform_edt``, or,
  for boxes over :data:`KDTREE_MIN_VOXELS` voxels, with a k-d tree of the surface points
  (exact too, and its cost grows with the surface area instead of the volume).

Rules for empty masks (:data:`NAN_RULES`, also written into ``summary.json``):

- R and P both empty: ``dice``, ``iou`` and ``hd95_mm`` are NaN; the case is left out of
  the class's Dice/IoU means and counted in ``n_empty_both``.
- R empty, P not empty (false-positive case): ``dice = iou = 0``; ``hd95_mm`` NaN;
  counted in ``n_ref_empty``.
- R not empty, P empty (missed structure): ``dice = iou = 0``; ``hd95_mm`` NaN; counted
  in ``n_pred_empty``.
- Means skip NaN values: the HD95 mean is over cases where both masks are non-empty
  (``n_hd95``). Counts and volumes are defined for every case and averaged over all.
- The foreground mean of a metric is the mean over foreground classes of the per-class
  means (classes whose mean is NaN are skipped); it is NaN when no class has a value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

NAN_RULES: dict[str, str] = {
    "empty_reference_and_prediction": (
        "dice, iou, hd95_mm = NaN (null in JSON); left out of means; counted in n_empty_both"),
    "empty_reference_nonempty_prediction": (
        "dice = iou = 0; hd95_mm = NaN; counted in n_ref_empty"),
    "nonempty_reference_empty_prediction": (
        "dice = iou = 0; hd95_mm = NaN; counted in n_pred_empty"),
    "means": (
        "NaN values are skipped; hd95 mean over cases with both masks non-empty (n_hd95)"),
    "foreground_mean": "mean over foreground classes of the per-class means (NaN classes skipped)",
    "hd95": (
        "max of the two directed 95th percentiles of surface-to-surface distances in mm "
        "(surface: voxels with a 6-neighbour outside the mask)"),
}

#: Metrics averaged over cases (in this order in tables and CSV files).
MEAN_KEYS = ("dice", "iou", "hd95_mm", "tp", "fp", "fn", "ref_ml", "pred_ml")


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one foreground class in one case (see the module docstring)."""

    tp: int
    fp: int
    fn: int
    dice: float
    iou: float
    ref_ml: float
    pred_ml: float
    hd95_mm: float = math.nan

    @property
    def n_ref(self) -> int:
        return self.tp + self.fn

    @property
    def n_pred(self) -> int:
        return self.tp + self.fp

    def to_dict(self) -> dict:
        """Plain dict with NaN written as ``None`` (valid JSON)."""
        return {k: _nan_to_none(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> ClassMetrics:
        return cls(
            tp=int(d["tp"]), fp=int(d["fp"]), fn=int(d["fn"]),
            dice=_none_to_nan(d["dice"]), iou=_none_to_nan(d["iou"]),
            ref_ml=float(d["ref_ml"]), pred_ml=float(d["pred_ml"]),
            hd95_mm=_none_to_nan(d.get("hd95_mm")),
        )


def overlap_metrics(tp: int, fp: int, fn: int, voxel_ml: float) -> ClassMetrics:
    """Dice, IoU and volumes from voxel counts (HD95 left NaN)."""
    union = tp + fp + fn
    if union == 0:
        dice = iou = math.nan
    else:
        dice = 2.0 * tp / (2 * tp + fp + fn)
        iou = tp / union
    return ClassMetrics(int(tp), int(fp), int(fn), dice, iou,
                        (tp + fn) * voxel_ml, (tp + fp) * voxel_ml)


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the image border is outside)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"surface() needs a 3D mask, got shape {mask.shape}")
    padded = np.pad(mask, 1)
    interior = mask.copy()
    for axis in range(3):
        for start in (0, 2):
            window = [slice(1, -1)] * 3
            window[axis] = slice(start, start + mask.shape[axis])
            interior &= padded[tuple(window)]
    return mask & ~interior


def directed_surface_distances(
    from_surface: np.ndarray, to_surface: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Distance in mm from every voxel of ``from_surface`` to the nearest of ``to_surface``.

    Uses ``scipy.ndimage.distance_transform_edt`` over the whole array.
    """
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(~to_surface, sampling=tuple(float(s) for s in spacing))
    return dist[from_surface]


def _kdtree_distances(from_surface: np.ndarray, to_surface: np.ndarray,
                      spacing: Sequence[float]) -> np.ndarray:
    """Same numbers as :func:`directed_surface_distances`, via a k-d tree of surface points."""
    from scipy.spatial import cKDTree

    scale = np.asarray(spacing, dtype=np.float64)
    targets = np.argwhere(to_surface) * scale
    queries = np.argwhere(from_surface & ~to_surface) * scale  # shared voxels are at 0 mm
    shared = int(np.count_nonzero(from_surface & to_surface))
    far = cKDTree(targets).query(queries, workers=-1)[0] if len(queries) else np.zeros(0)
    return np.concatenate([np.zeros(shared), far])


#: Above this many voxels in the bounding box, :func:`hd95` uses a k-d tree of surface
#: points instead of distance transforms (cost grows with the surface, not the volume;
#: about 5x faster on a 200x300x320 box).
KDTREE_MIN_VOXELS = 2_000_000

HD95_METHODS = ("auto", "edt", "kdtree")


def hd95(ref: np.ndarray, pred: np.ndarray, spacing: Sequence[float],
         method: str = "auto") -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between two boolean masks.

    Computed on the bounding box of ``ref | pred`` (padded by one voxel so that the
    surface at the box edge is found). Returns NaN when either mask is empty.

    Args:
        ref: Reference mask.
        pred: Predicted mask of the same shape.
        spacing: Voxel size in mm, numpy order.
        method: ``"edt"`` (distance transforms), ``"kdtree"`` (nearest surface points) or
            ``"auto"`` (k-d tree when the box has more than :data:`KDTREE_MIN_VOXELS`).
            All give the same numbers.
    """
    if method not in HD95_METHODS:
        raise ValueError(f"unknown hd95 method {method!r}; choose from {HD95_METHODS}")
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if ref.shape != pred.shape:
        raise ValueError(f"hd95: shapes differ {ref.shape} vs {pred.shape}")
    if not ref.any() or not pred.any():
        return math.nan
    box = bounding_box(ref | pred)
    ref_c = np.pad(ref[box], 1)
    pred_c = np.pad(pred[box], 1)
    s_ref, s_pred = surface(ref_c), surface(pred_c)
    if method == "auto":
        method = "kdtree" if ref_c.size > KDTREE_MIN_VOXELS else "edt"
    directed = _kdtree_distances if method == "kdtree" else directed_surface_distances
    d_rp = directed(s_ref, s_pred, spacing)
    d_pr = directed(s_pred, s_ref, spacing)
    return float(max(np.percentile(d_rp, 95), np.percentile(d_pr, 95)))


def bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Tight bounding box of the non-zero voxels as slices (the whole array if empty)."""
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return tuple(slice(0, s) for s in mask.shape)
        slices.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(slices)


def _union_box(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None
               ) -> tuple[slice, ...] | None:
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def case_metrics(
    ref: np.ndarray,
    pred: np.ndarray,
    classes: Sequence[int],
    spacing: Sequence[float],
    compute_hd95: bool = True,
) -> dict[int, ClassMetrics]:
    """Metrics of every class in ``classes`` for one case.

    Work per class is limited to the bounding box of that class in ``ref`` or ``pred``
    (found for all classes in one pass with ``scipy.ndimage.find_objects``).

    Args:
        ref: Reference label map (non-negative integers).
        pred: Predicted label map, same shape.
        classes: Foreground label values to evaluate.
        spacing: Voxel size in mm, numpy order.
        compute_hd95: Also compute the (slower) HD95.

    Returns:
        Label value → :class:`ClassMetrics`.
    """
    from scipy import ndimage

    if ref.shape != pred.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, prediction {pred.shape}")
    if any(int(k) <= 0 for k in classes):
        raise ValueError(f"classes must be foreground label values (> 0), got {list(classes)}")
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    max_k = max(classes) if classes else 0
    ref_boxes = ndimage.find_objects(ref, max_label=max_k)
    pred_boxes = ndimage.find_objects(pred, max_label=max_k)
    out: dict[int, ClassMetrics] = {}
    for k in classes:
        box = _union_box(ref_boxes[k - 1], pred_boxes[k - 1])
        if box is None:
            out[k] = overlap_metrics(0, 0, 0, voxel_ml)
            continue
        r, p = ref[box] == k, pred[box] == k
        tp = int(np.count_nonzero(r & p))
        m = overlap_metrics(tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(r)) - tp,
                            voxel_ml)
        if compute_hd95 and m.n_ref and m.n_pred:
            m = ClassMetrics(**{**asdict(m), "hd95_mm": hd95(r, p, spacing)})
        out[k] = m
    return out


def mean_metrics(per_case: Iterable[ClassMetrics]) -> dict[str, float]:
    """Means over cases of one class's metrics, with the counts of the NaN rules."""
    items = list(per_case)
    out: dict[str, float] = {}
    for key in MEAN_KEYS:
        values = [float(getattr(m, key)) for m in items]
        finite = [v for v in values if not math.isnan(v)]
        out[key] = float(np.mean(finite)) if finite else math.nan
    out["n_cases"] = len(items)
    out["n_empty_both"] = sum(1 for m in items if m.n_ref == 0 and m.n_pred == 0)
    out["n_ref_empty"] = sum(1 for m in items if m.n_ref == 0 and m.n_pred > 0)
    out["n_pred_empty"] = sum(1 for m in items if m.n_ref > 0 and m.n_pred == 0)
    out["n_hd95"] = sum(1 for m in items if not math.isnan(m.hd95_mm))
    return out


def foreground_mean(class_means: dict[int, dict[str, float]]) -> dict[str, float]:
    """Mean over classes of the per-class means of each metric in :data:`MEAN_KEYS`."""
    out: dict[str, float] = {}
    for key in MEAN_KEYS:
        vals = [m[key] for m in class_means.values() if not math.isnan(m[key])]
        out[key] = float(np.mean(vals)) if vals else math.nan
    return out


def mean_foreground_dice(per_case: Iterable[dict[int, ClassMetrics]]) -> float:
    """The mean foreground Dice (mean over classes of the class's mean Dice over cases)."""
    per_class: dict[int, list[ClassMetrics]] = {}
    for case in per_case:
        for k, m in case.items():
            per_class.setdefault(k, []).append(m)
    means = {k: mean_metrics(v) for k, v in per_class.items()}
    return foreground_mean(means)["dice"]


def _nan_to_none(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _none_to_nan(v) -> float:
    return math.nan if v is None else float(v)


__all__ = [
    "HD95_METHODS",
    "KDTREE_MIN_VOXELS",
    "MEAN_KEYS",
    "NAN_RULES",
    "ClassMetrics",
    "bounding_box",
    "case_metrics",
    "directed_surface_distances",
    "foreground_mean",
    "hd95",
    "mean_foreground_dice",
    "mean_metrics",
    "overlap_metrics",
    "surface",
]
