"""METHOD §0: checks across the cases of a dataset (what no single case can show).

* every case has the same dimension (a 2D image in a 3D dataset would become one slice
  with an invented spacing),
* no case's spacing is absurd next to the others': resampled to the dataset's median
  spacing (what the planner starts from) it must fit in memory; a spacing far from the
  median on some axis is a warning,
* some label map holds foreground (otherwise there is nothing to learn); a label map with
  no foreground and a declared label that never occurs are warnings.

:func:`dataset_problems` works on :class:`CaseSummary` values (a case's geometry and label
values, already read by :func:`NNSegLib.data.check.check_case`) and returns
``(path, message, severity)`` triples that :mod:`NNSegLib.data.check` turns into problems.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.util.device import case_memory_problem

ERROR = "error"
WARNING = "warning"

#: A spacing this many times finer or coarser than the dataset median (on an axis) is unusual.
SPACING_OUTLIER_FACTOR = 20.0

_AXES = ("z", "y", "x")


@dataclass(frozen=True)
class CaseSummary:
    """What the cross-case checks need of one case.

    Attributes:
        path: The case's first image file (named in problems).
        geometry: Its geometry (``None`` when unreadable).
        channels: Number of image channels.
        label_path: Its label file, if any.
        label_values: Distinct label values (``None`` when there is no usable label).
    """

    path: str
    geometry: Geometry | None
    channels: int = 1
    label_path: str | None = None
    label_values: tuple[int, ...] | None = None


def dataset_problems(cases: Sequence[CaseSummary], labels: dict[str, int], label_dir: str,
                     dataset_json: str) -> list[tuple[str, str, str]]:
    """Problems across ``cases`` (training and test): dimension, spacing, foreground."""
    read = [c for c in cases if c.geometry is not None]
    out: list[tuple[str, str, str]] = []
    if not read:
        return out
    dims = Counter(c.geometry.ndim for c in read)  # type: ignore[union-attr]
    common = max(dims, key=lambda d: (dims[d], d))
    for c in read:
        assert c.geometry is not None
        if c.geometry.ndim != common:
            out.append((c.path, f"{c.geometry.ndim}D image in a dataset of {common}D images "
                        f"({dims[common]} of {len(read)} cases); every case must have the "
                        "same dimension", ERROR))
    same = [c for c in read if c.geometry.ndim == common]  # type: ignore[union-attr]
    out += _spacing_problems(same)
    out += _foreground_problems(cases, labels, label_dir, dataset_json)
    return out


def _fmt(values: Any) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _spacing_problems(cases: Sequence[CaseSummary]) -> list[tuple[str, str, str]]:
    if len(cases) < 3:   # with two cases the median cannot tell which one is odd
        return []
    spacings = np.array([c.geometry.spacing for c in cases], dtype=np.float64)  # type: ignore
    median = np.median(spacings, axis=0)
    out = []
    for c, spacing in zip(cases, spacings):
        assert c.geometry is not None
        shape = np.maximum(np.round(np.asarray(c.geometry.shape) * spacing / median), 1)
        memory = case_memory_problem(shape, c.channels,
                                     f"resampled to the dataset's median spacing {_fmt(median)}"
                                     ", this case")
        ratio = spacing / median
        axis = int(np.argmax(np.maximum(ratio, 1 / ratio)))
        if memory:
            out.append((c.path, f"spacing {_fmt(spacing)} is {ratio[axis]:.3g}× the median on "
                        f"axis {_AXES[axis]}: {memory}; the spacing in the file header is "
                        "probably wrong", ERROR))
        elif max(ratio[axis], 1 / ratio[axis]) >= SPACING_OUTLIER_FACTOR:
            out.append((c.path, f"spacing {_fmt(spacing)} is {ratio[axis]:.3g}× the dataset's "
                        f"median {_fmt(median)} on axis {_AXES[axis]}; check the file header",
                        WARNING))
    return out


def _foreground_problems(cases: Sequence[CaseSummary], labels: dict[str, int], label_dir: str,
                         dataset_json: str) -> list[tuple[str, str, str]]:
    labelled = [c for c in cases if c.label_values is not None]
    if not labelled:
        return []
    out = []
    seen: set[int] = set()
    for c in labelled:
        values = set(c.label_values or ()) - {0}
        seen |= values
        if not values:
            out.append((c.label_path or c.path, "label map has no foreground (every voxel is "
                        "background)", WARNING))
    if not seen:
        return [(label_dir, f"no foreground in any of the {len(labelled)} label map(s): there "
                 "is nothing to learn", ERROR)]
    never = sorted((v, k) for k, v in labels.items() if v and v not in seen)
    if never:
        names = ", ".join(f"{k!r} ({v})" for v, k in never)
        out.append((dataset_json, f"label(s) {names} occur in no label map", WARNING))
    return out


__all__ = ["CaseSummary", "SPACING_OUTLIER_FACTOR", "dataset_problems"]
