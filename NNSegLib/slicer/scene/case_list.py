"""The Dataset panel's training cases, kept in the module's parameter node.

Each case is a segmentation plus one volume per channel. They are stored as MRML node
references of the parameter node (roles ``NNSegCase<k>Segmentation`` and
``NNSegCase<k>Channel<c>``) with the case keys in the parameter ``NNSeg.TrainingCases``, so
the list is saved with the scene, survives a module reload and follows node renames; a
deleted node leaves its case marked incomplete instead of shifting the others.

:func:`add_all_cases` pairs every segmentation of the scene with its reference volume:
the volume it was made on (the segmentation's reference geometry node reference), else
the one volume in the same subject-hierarchy folder or study with the same geometry, else
the one volume of the scene with that geometry.

Works on any ``vtkMRMLNode`` parameter node (headless with slicer-core, and in Slicer on
the node behind the module's ``parameterNodeWrapper``). No ``qt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from NNSegLib.slicer.scene import mrml
from NNSegLib.util.i18n import tr

CASES_PARAMETER = "NNSeg.TrainingCases"


def _role(key: int, what: str) -> str:
    return f"NNSegCase{key}{what}"


@dataclass
class TrainingCase:
    """One case of the list: its key, volumes (``None`` where deleted) and segmentation."""

    key: int
    volumes: list[Any]
    segmentation: Any

    @property
    def complete(self) -> bool:
        return self.segmentation is not None and all(v is not None for v in self.volumes)

    def cells(self) -> list[str]:
        """Table row: volume names, segmentation name, segment names."""
        deleted = tr("(deleted)")
        vols = ", ".join(v.GetName() if v is not None else deleted for v in self.volumes)
        seg = self.segmentation
        return [vols, seg.GetName() if seg is not None else deleted,
                ", ".join(mrml.segment_names(seg)) if seg is not None else ""]


def _entries(node: Any) -> list[dict[str, int]]:
    text = node.GetParameter(CASES_PARAMETER) if node is not None else ""
    try:
        data = json.loads(text) if text else []
    except ValueError:
        return []
    return [e for e in data if isinstance(e, dict) and "key" in e] if isinstance(data, list) \
        else []


def _save(node: Any, entries: list[dict[str, int]]) -> None:
    node.SetParameter(CASES_PARAMETER, json.dumps(entries))


def list_cases(node: Any) -> list[TrainingCase]:
    """The cases in the order they were added."""
    out = []
    for e in _entries(node):
        key, channels = int(e["key"]), int(e.get("channels", 1))
        out.append(TrainingCase(
            key, [node.GetNodeReference(_role(key, f"Channel{c}")) for c in range(channels)],
            node.GetNodeReference(_role(key, "Segmentation"))))
    return out


def case_pairs(node: Any) -> list[tuple[list[Any], Any]]:
    """``(volumes, segmentation)`` of every complete case (what export and checks use)."""
    return [(c.volumes, c.segmentation) for c in list_cases(node) if c.complete]


def add_case(node: Any, volumes: Sequence[Any], segmentation: Any) -> TrainingCase:
    """Append a case; the same segmentation twice is refused.

    Raises:
        ValueError: with the reason (shown to the user) when the case cannot be added.
    """
    if segmentation is None or not volumes or any(v is None for v in volumes):
        raise ValueError(tr("Select a volume and its segmentation first."))
    for case in list_cases(node):
        if case.segmentation is not None and case.segmentation.GetID() == segmentation.GetID():
            raise ValueError(tr("'{name}' is already in the list.",
                name=segmentation.GetName()))
    entries = _entries(node)
    key = max((int(e["key"]) for e in entries), default=0) + 1
    wasModifying = node.StartModify()
    try:
        node.SetNodeReferenceID(_role(key, "Segmentation"), segmentation.GetID())
        for c, volume in enumerate(volumes):
            node.SetNodeReferenceID(_role(key, f"Channel{c}"), volume.GetID())
        _save(node, entries + [{"key": key, "channels": len(volumes)}])
    finally:
        node.EndModify(wasModifying)
    return TrainingCase(key, list(volumes), segmentation)


def remove_cases(node: Any, rows: Sequence[int]) -> None:
    """Remove the cases at these positions of :func:`list_cases`."""
    entries = _entries(node)
    drop = {r for r in rows if 0 <= r < len(entries)}
    wasModifying = node.StartModify()
    try:
        for r in drop:
            _clear_references(node, entries[r])
        _save(node, [e for i, e in enumerate(entries) if i not in drop])
    finally:
        node.EndModify(wasModifying)


def clear_cases(node: Any) -> None:
    remove_cases(node, range(len(_entries(node))))


def _clear_references(node: Any, entry: dict[str, int]) -> None:
    key = int(entry["key"])
    node.RemoveNodeReferenceIDs(_role(key, "Segmentation"))
    for c in range(int(entry.get("channels", 1))):
        node.RemoveNodeReferenceIDs(_role(key, f"Channel{c}"))


# ----------------------------------------------------------------------------------------
# Pairing a segmentation with its volume
# ----------------------------------------------------------------------------------------
def _geometry_numbers(text: str) -> list[float] | None:
    try:
        values = [float(v) for v in text.strip().strip(";").split(";")]
    except ValueError:
        return None
    return values if len(values) == 22 else None


def _volume_geometry_numbers(volume: Any) -> list[float] | None:
    import vtk

    image = volume.GetImageData()
    if image is None:
        return None
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    ni, nj, nk = image.GetDimensions()
    return ([m.GetElement(r, c) for r in range(4) for c in range(4)]
            + [0.0, ni - 1.0, 0.0, nj - 1.0, 0.0, nk - 1.0])


def same_geometry(segmentation: Any, volume: Any, tol: float = 1e-4) -> bool:
    """The segmentation's reference image geometry is the volume's grid."""
    ref = _geometry_numbers(segmentation.GetSegmentation().GetConversionParameter(
        "Reference image geometry") or "")
    vol = _volume_geometry_numbers(volume)
    return ref is not None and vol is not None and all(
        abs(a - b) <= tol * max(1.0, abs(b)) for a, b in zip(ref, vol))


def _volumes(scene: Any) -> list[Any]:
    return [n for n in _nodes(scene, "vtkMRMLScalarVolumeNode")
            if n.GetClassName() == "vtkMRMLScalarVolumeNode" and n.GetImageData() is not None]


def _nodes(scene: Any, cls: str) -> list[Any]:
    return [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]


def reference_volume(scene: Any, segmentation: Any) -> tuple[Any, str]:
    """The volume a segmentation was drawn on, and how it was found (or why not).

    Returns:
        ``(volume or None, reason)``.
    """
    ref = segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())
    if ref is not None and ref.IsA("vtkMRMLScalarVolumeNode") \
            and not ref.IsA("vtkMRMLLabelMapVolumeNode"):
        return ref, tr("reference geometry")
    candidates = [v for v in _volumes(scene) if same_geometry(segmentation, v)]
    sh = scene.GetSubjectHierarchyNode()
    if sh is not None and len(candidates) > 1:
        parent = sh.GetItemParent(sh.GetItemByDataNode(segmentation))
        near = [v for v in candidates if parent and parent != sh.GetSceneItemID()
                and sh.GetItemParent(sh.GetItemByDataNode(v)) == parent]
        if len(near) == 1:
            return near[0], tr("same study and geometry")
    if len(candidates) == 1:
        return candidates[0], tr("same geometry")
    if candidates:
        return None, tr("{n} volumes share its geometry; add it with Add case",
            n=len(candidates))
    return None, tr("no volume with its geometry")


def add_all_cases(scene: Any, node: Any) -> tuple[list[TrainingCase], list[str]]:
    """Add every segmentation of the scene with its reference volume (one channel).

    Segmentations already listed and NNSeg's own predictions (they carry the model tag;
    training on them would teach the model its own mistakes) are skipped.

    Returns:
        ``(cases added, one line per segmentation skipped and why)``.
    """
    listed = {c.segmentation.GetID() for c in list_cases(node) if c.segmentation is not None}
    added, skipped = [], []
    for seg in _nodes(scene, "vtkMRMLSegmentationNode"):
        if seg.GetID() in listed:
            continue
        if seg.GetAttribute(mrml.TAG_MODEL):
            skipped.append(tr("{name}: made by NNSeg (a prediction), not a reference",
                name=seg.GetName()))
            continue
        if seg.GetSegmentation().GetNumberOfSegments() == 0:
            skipped.append(tr("{name}: no segments", name=seg.GetName()))
            continue
        volume, reason = reference_volume(scene, seg)
        if volume is None:
            skipped.append(f"{seg.GetName()}: {reason}")
            continue
        added.append(add_case(node, [volume], seg))
    return added, skipped


__all__ = ["CASES_PARAMETER", "TrainingCase", "add_all_cases", "add_case", "case_pairs",
           "clear_cases", "list_cases", "reference_volume", "remove_cases", "same_geometry"]
