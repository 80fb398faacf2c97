"""Postprocessing of label maps: keep only the largest connected component (METHOD §6).

A rule is a *group* of label values. Applying it treats the voxels of all classes in the
group as one foreground mask, keeps its largest 26-connected component and sets the
voxels of those classes outside it to background (0). Rules apply in order: the
"all foreground together" group (if any) first, then single-class groups.

Which rules to use is decided on cross-validation predictions by
:mod:`NNSegLib.postprocessing.find_best` and saved as ``postprocessing.json``
(:class:`PostprocessingRules`); prediction applies them with
:func:`apply_postprocessing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from NNSegLib.postprocessing.connected_components import largest_component
from NNSegLib.util.atomic import write_json
from NNSegLib.util.json_files import load_document

POSTPROCESSING_VERSION = 1

#: ``"foreground"`` (every non-zero label) or an explicit sequence of label values.
ClassesOrForeground = Union[str, Sequence[int]]


def class_mask(labels: np.ndarray, classes_or_foreground: ClassesOrForeground) -> np.ndarray:
    """Boolean mask of the voxels whose label is in the group (or non-zero)."""
    if isinstance(classes_or_foreground, str):
        if classes_or_foreground != "foreground":
            raise ValueError(f"unknown class group {classes_or_foreground!r}; "
                             "use 'foreground' or a list of label values")
        return labels > 0
    classes = [int(c) for c in classes_or_foreground]
    if not classes:
        raise ValueError("empty class group")
    if any(c <= 0 for c in classes):
        raise ValueError(f"class group {classes} contains background or a negative value")
    mask = labels == classes[0]
    for c in classes[1:]:
        mask |= labels == c
    return mask


def remove_all_but_largest_component(
    labels: np.ndarray, classes_or_foreground: ClassesOrForeground = "foreground",
    background: int = 0,
) -> np.ndarray:
    """Keep only the largest 26-connected component of the given classes taken together.

    Args:
        labels: Label map (any integer dtype, 2D or 3D).
        classes_or_foreground: ``"foreground"`` or label values forming one mask.
        background: Value given to the removed voxels.

    Returns:
        A new label map (the input is not changed); other classes are untouched.
    """
    labels = np.asarray(labels)
    mask = class_mask(labels, classes_or_foreground)
    out = labels.copy()
    if not mask.any():
        return out
    keep = largest_component(mask)
    out[mask & ~keep] = background
    return out


@dataclass(frozen=True)
class PostprocessingRules:
    """The chosen postprocessing: groups whose largest component alone is kept.

    Attributes:
        largest_component_groups: Label-value groups, applied in order.
        decisions: What was tried and the Dice before/after (for people; not applied).
        version: Schema version.
    """

    largest_component_groups: tuple[tuple[int, ...], ...] = ()
    decisions: tuple[dict, ...] = ()
    version: int = POSTPROCESSING_VERSION

    @property
    def is_empty(self) -> bool:
        return not self.largest_component_groups

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "largest_component_groups": [list(g) for g in self.largest_component_groups],
            "decisions": [dict(d) for d in self.decisions],
        }

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessingRules:
        version = d.get("version")
        if version != POSTPROCESSING_VERSION:
            raise ValueError(f"postprocessing version {version!r} is not supported "
                             f"(this NNSeg reads {POSTPROCESSING_VERSION})")
        groups = tuple(tuple(int(c) for c in g) for g in d.get("largest_component_groups", ()))
        for g in groups:
            if not g or any(c <= 0 for c in g):
                raise ValueError(f"invalid class group {list(g)}")
        return cls(groups, tuple(dict(x) for x in d.get("decisions", ())), int(version))

    def save(self, path: Path | str) -> None:
        """Write ``postprocessing.json`` atomically."""
        write_json(path, self.to_dict(), durable=True)

    @classmethod
    def load(cls, path: Path | str) -> PostprocessingRules:
        """Read ``postprocessing.json``.

        Raises:
            NNSegError: naming the file when it is missing or invalid.
        """
        return load_document(path, cls.from_dict, what="postprocessing file",
                             hint="nnseg find-best")


def apply_postprocessing(labels: np.ndarray, rules: PostprocessingRules) -> np.ndarray:
    """Apply every rule of ``rules`` in order; returns a new array (or the input if none)."""
    out = labels
    for group in rules.largest_component_groups:
        out = remove_all_but_largest_component(out, group)
    return out


__all__ = [
    "POSTPROCESSING_VERSION",
    "ClassesOrForeground",
    "PostprocessingRules",
    "apply_postprocessing",
    "class_mask",
    "remove_all_but_largest_component",
]
