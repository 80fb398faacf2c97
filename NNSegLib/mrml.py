"""Bridge between MRML nodes (3D Slicer) and NNSegLib's arrays, geometry and files.

The only NNSegLib module that imports ``slicer`` — always lazily, inside functions, so the
library imports without Slicer. Nothing here reaches for ``slicer.mrmlScene``: the scene
is an argument, so the same code runs in the Slicer application and headless with the
``slicer-core`` package (see :func:`new_scene`).

Conventions: arrays are numpy ``(z, y, x)`` = Slicer's ``(k, j, i)``; :class:`~NNSegLib.io.
Geometry` is ITK/LPS. Slicer is RAS: the x and y rows of the origin and of the direction
matrix change sign; the array is the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from NNSegLib.errors import NNSegError
from NNSegLib.io import Geometry

#: Segment tags written on predicted segments (and the segmentation node attributes).
TAG_MODEL = "NNSeg.Model"
TAG_MODEL_VERSION = "NNSeg.ModelVersion"
TAG_LABEL_VALUE = "NNSeg.LabelValue"
_LPS_RAS = np.diag([-1.0, -1.0, 1.0])


# ----------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------
@dataclass
class SceneContext:
    """A scene with the logics NNSeg uses (headless or the application's)."""

    scene: Any
    app_logic: Any = None
    segmentations_logic: Any = None


def new_scene() -> SceneContext:
    """A fresh headless scene with application, colour and segmentations logics."""
    import slicer

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    if colors is not None:
        colors.SetMRMLScene(scene)
        colors.AddDefaultColorNodes()
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    seg_logic.SetMRMLScene(scene)
    seg_logic.SetMRMLApplicationLogic(app)
    app.SetModuleLogic("Segmentations", seg_logic)
    return SceneContext(scene, app, seg_logic)


def _node_label(node: Any) -> str:
    return f"{node.GetClassName()} '{node.GetName()}'" if node is not None else "None"


# ----------------------------------------------------------------------------------------
# Geometry and volumes
# ----------------------------------------------------------------------------------------
def ijk_to_ras(geometry: Geometry) -> np.ndarray:
    """The 4×4 IJK→RAS matrix of an NNSegLib (LPS) geometry."""
    direction_lps = np.asarray(geometry.direction, float).reshape(3, 3)
    spacing_xyz = np.asarray(geometry.spacing, float)[::-1]
    m = np.eye(4)
    m[:3, :3] = _LPS_RAS @ direction_lps @ np.diag(spacing_xyz)
    m[:3, 3] = _LPS_RAS @ np.asarray(geometry.origin, float)
    return m


def geometry_from_ijk_to_ras(matrix: np.ndarray, shape: Sequence[int]) -> Geometry:
    """Geometry (LPS) of a ``(z, y, x)`` array whose voxels map to RAS by ``matrix``."""
    matrix = np.asarray(matrix, float)
    columns = matrix[:3, :3]
    spacing_xyz = np.linalg.norm(columns, axis=0)
    direction_ras = columns / spacing_xyz
    direction_lps = _LPS_RAS @ direction_ras
    origin_lps = _LPS_RAS @ matrix[:3, 3]
    return Geometry(
        shape=tuple(int(s) for s in shape),
        spacing=tuple(float(s) for s in spacing_xyz[::-1]),
        origin=tuple(float(o) for o in origin_lps),
        direction=tuple(float(d) for d in direction_lps.ravel()),
    )


def _world_ijk_to_ras(node: Any) -> np.ndarray:
    """IJK→RAS of ``node`` including a linear parent transform (refuses warping ones)."""
    import slicer
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    matrix = slicer.util.arrayFromVTKMatrix(m)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise NNSegError(
                f"{_node_label(node)}: under a non-linear transform "
                f"'{parent.GetName()}'; harden it first (Data module → Harden transform)"
            )
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        matrix = slicer.util.arrayFromVTKMatrix(to_world) @ matrix
    return matrix


def geometry_from_volume_node(node: Any) -> Geometry:
    """The (LPS) geometry of a scalar volume or label map node, in world coordinates."""
    image = node.GetImageData() if node is not None else None
    if image is None:
        raise NNSegError(f"{_node_label(node)}: has no image data")
    ni, nj, nk = image.GetDimensions()
    return geometry_from_ijk_to_ras(_world_ijk_to_ras(node), (nk, nj, ni))


def array_from_volume_node(node: Any) -> tuple[np.ndarray, Geometry]:
    """Copy a volume node's voxels to a ``(z, y, x)`` array plus its geometry.

    Raises:
        NNSegError: naming the node when it has no image, several components, or a
            non-linear transform.
    """
    import slicer

    geometry = geometry_from_volume_node(node)
    image = node.GetImageData()
    if image.GetNumberOfScalarComponents() != 1:
        raise NNSegError(
            f"{_node_label(node)}: {image.GetNumberOfScalarComponents()}-component image; "
            "only scalar volumes can be segmented (split the channels first)"
        )
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    return array, geometry


def volume_node_from_array(
    scene: Any,
    array: np.ndarray,
    geometry: Geometry,
    name: str = "volume",
    node: Any = None,
    labelmap: bool = False,
) -> Any:
    """Create (or update) a scalar volume / label map node from a ``(z, y, x)`` array."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.int64:
        array = array.astype(np.int32)
    if array.ndim != 3:
        raise NNSegError(f"{name}: expected a 3D (z, y, x) array, got shape {array.shape}")
    if tuple(array.shape) != tuple(geometry.shape):
        raise NNSegError(f"{name}: array shape {array.shape} != geometry {geometry.shape}")
    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, name)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtk_array = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(vtk_array)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras(geometry)))
    if node.GetDisplayNode() is None and not labelmap:
        node.CreateDefaultDisplayNodes()
    return node


# ----------------------------------------------------------------------------------------
# Label maps ⇄ segmentations
# ----------------------------------------------------------------------------------------
def _color_table(
    scene: Any,
    label_names: dict[int, str],
    colours: dict[int, tuple[float, float, float]] | None,
    name: str = "NNSegLabels",
) -> Any:
    from NNSegLib.terminology import label_colour

    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", scene.GenerateUniqueName(name))
    table.SetTypeToUser()
    table.SetHideFromEditors(True)
    table.SetNumberOfColors(max(label_names) + 1 if label_names else 1)
    for value in range(table.GetNumberOfColors()):
        table.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
        table.SetColorDefined(value, False)
    for value, label in sorted(label_names.items()):
        r, g, b = (colours or {}).get(value) or label_colour(value, label)
        table.SetColor(value, label, r, g, b, 0.0 if value == 0 else 1.0)
    return table


def _temporary_labelmap(scene: Any, labels: np.ndarray, geometry: Geometry, table: Any) -> Any:
    display = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeDisplayNode")
    display.SetAndObserveColorNodeID(table.GetID())
    node = volume_node_from_array(
        scene, labels.astype(np.int16 if labels.max(initial=0) < 32768 else np.int32),
        geometry, scene.GenerateUniqueName("NNSegLabelmap"), labelmap=True)
    node.SetAndObserveDisplayNodeID(display.GetID())
    return node


def segmentation_from_labels(
    scene: Any,
    labels: np.ndarray,
    geometry: Geometry,
    label_names: dict[int, str],
    colours: dict[int, tuple[float, float, float]] | None = None,
    reference_volume: Any = None,
    model_info: dict[str, str] | None = None,
    node: Any = None,
    name: str = "Segmentation",
    terminology: bool = True,
    include_empty: bool = True,
) -> Any:
    """Turn a label map into a segmentation node: one segment per foreground label.

    Segments keep the label value (``segment.GetLabelValue()`` and the
    ``NNSeg.LabelValue`` tag), take their name from ``label_names`` and a distinct colour
    (``colours``, else :func:`NNSegLib.terminology.distinct_colours`), carry a
    terminology when the name is in NNSeg's table and the model name/version tags.

    Args:
        scene: The MRML scene.
        labels: Integer ``(z, y, x)`` label map.
        geometry: Its geometry (LPS).
        label_names: ``{value: name}``; value 0 (background) is skipped.
        colours: Optional ``{value: (r, g, b)}``.
        reference_volume: Volume whose geometry becomes the segmentation's reference
            (usually the input image).
        model_info: ``{"name": ..., "version": ...}`` written as tags.
        node: Existing segmentation node to replace the segments of; new if ``None``.
        name: Name of a new node.
        terminology: Attach terminology entries for known names.
        include_empty: Also create (empty) segments for labels absent from ``labels``.

    Returns:
        The segmentation node.
    """
    import slicer

    from NNSegLib.terminology import distinct_colours, lookup

    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise NNSegError(f"{name}: label map must be integer, got {labels.dtype}")
    present = {int(v) for v in np.unique(labels)} - {0}
    unknown = present - set(label_names)
    if unknown:
        raise NNSegError(f"{name}: label values {sorted(unknown)} have no name in the labels")
    foreground = {v: n for v, n in label_names.items() if v > 0}
    colours = {**distinct_colours(foreground), **(colours or {})}
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    if reference_volume is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)

    table = _color_table(scene, label_names, colours)
    labelmap = _temporary_labelmap(scene, labels, geometry, table)
    try:
        importer = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode
        if present and not importer(labelmap, node):
            raise NNSegError(f"{_node_label(node)}: importing the label map failed")
    finally:
        _remove_nodes(scene, [labelmap, labelmap.GetDisplayNode(), table])

    by_value: dict[int, str] = {}
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        by_value[segmentation.GetSegment(sid).GetLabelValue()] = sid
    ordered = []
    for value, label in sorted(foreground.items()):
        sid = by_value.get(value)
        if sid is None:
            if not include_empty:
                continue
            sid = segmentation.AddEmptySegment(
                segmentation.GenerateUniqueSegmentID(label), label, colours[value])
            segmentation.GetSegment(sid).SetLabelValue(value)
        ordered.append(sid)
        _describe_segment(segmentation.GetSegment(sid), value, label, colours[value],
                          lookup(label) if terminology else None, model_info)
    for index, sid in enumerate(ordered):  # label order, whatever the import order was
        segmentation.SetSegmentIndex(sid, index)
    for key, tag in (("name", TAG_MODEL), ("version", TAG_MODEL_VERSION)):
        if model_info and model_info.get(key) is not None:
            node.SetAttribute(tag, str(model_info[key]))
    return node


def _describe_segment(segment, value, label, colour, term, model_info) -> None:
    segment.SetName(label)
    segment.SetNameAutoGenerated(False)
    segment.SetColor(*colour)
    segment.SetColorAutoGenerated(False)
    segment.SetLabelValue(value)
    segment.SetTag(TAG_LABEL_VALUE, str(value))
    if term is not None:
        segment.SetTerminology(term.serialize())
    for key, tag in (("name", TAG_MODEL), ("version", TAG_MODEL_VERSION)):
        if model_info and model_info.get(key) is not None:
            segment.SetTag(tag, str(model_info[key]))


def segment_tag(segment: Any, key: str) -> str | None:
    """A segment's tag value, or ``None`` when it has no such tag."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(key, value) else None


def _remove_nodes(scene: Any, nodes: Sequence[Any]) -> None:
    for n in nodes:
        if n is not None and scene.IsNodePresent(n):
            scene.RemoveNode(n)


def segment_names(segmentation_node: Any) -> list[str]:
    """Names of the segments in display order."""
    seg = segmentation_node.GetSegmentation()
    return [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]


def labels_from_segmentation(
    scene: Any,
    segmentation_node: Any,
    label_values: dict[str, int],
    reference_volume: Any = None,
) -> tuple[np.ndarray, Geometry]:
    """Rasterize segments into one label map, each segment with its name's value.

    Args:
        scene: The MRML scene.
        segmentation_node: Source segmentation.
        label_values: ``{segment name: label value}`` (names compared ignoring case and
            surrounding spaces); segments whose name is missing are left out.
        reference_volume: Grid of the result (the case's image); the segmentation's own
            reference geometry when ``None``.

    Returns:
        ``(labels (z, y, x) uint8/int16, geometry)``. Where segments overlap, the one
        later in the segment list wins.
    """
    import slicer
    import vtk

    segmentation = segmentation_node.GetSegmentation()
    by_key = {k.strip().lower(): v for k, v in label_values.items()}
    ids = vtk.vtkStringArray()
    names = {0: "background"}
    for i in range(segmentation.GetNumberOfSegments()):
        segment_name = segmentation.GetNthSegment(i).GetName()
        value = by_key.get(segment_name.strip().lower())
        if value is None or value == 0 or value in names:
            continue  # not a label, or a second segment for a value already taken
        names[value] = segment_name  # the table maps this segment's own spelling
        ids.InsertNextValue(segmentation.GetNthSegmentID(i))
    table = _color_table(scene, names, None, "NNSegExport")
    out = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName("tmp"))
    try:
        extent = slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        if ids.GetNumberOfValues() == 0:
            if reference_volume is None:
                raise NNSegError(f"{_node_label(segmentation_node)}: no segment to export "
                                 "and no reference volume")
            geometry = geometry_from_volume_node(reference_volume)
            return np.zeros(geometry.shape, np.uint8), geometry
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, out, reference_volume, extent, table)
        if not ok:
            raise NNSegError(f"{_node_label(segmentation_node)}: export to label map failed")
        labels, geometry = array_from_volume_node(out)
    finally:
        _remove_nodes(scene, [out, out.GetDisplayNode(), table])
    dtype = np.uint8 if max(label_values.values(), default=0) < 256 else np.int16
    return labels.astype(dtype), geometry


# ----------------------------------------------------------------------------------------
# .seg.nrrd files
# ----------------------------------------------------------------------------------------
def write_segmentation(segmentation_node: Any, path: Path | str) -> Path:
    """Write a segmentation node to ``.seg.nrrd`` atomically (names, colours, tags kept)."""
    import slicer

    from NNSegLib.atomic import atomic_path

    path = Path(path)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    with atomic_path(path, suffix=".seg.nrrd") as tmp:
        storage.SetFileName(str(tmp))
        if not storage.WriteData(segmentation_node):
            raise NNSegError(f"{path}: writing {_node_label(segmentation_node)} failed")
    return path


def read_segmentation(scene: Any, path: Path | str, name: str | None = None) -> Any:
    """Load a ``.seg.nrrd`` file into a new segmentation node."""
    import slicer

    path = Path(path)
    if not path.is_file():
        raise NNSegError(f"{path}: segmentation file not found")
    node = scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", name or path.name.replace(".seg.nrrd", ""))
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        _remove_nodes(scene, [node, storage])
        raise NNSegError(f"{path}: not a readable segmentation file")
    node.CreateDefaultDisplayNodes()
    return node


# ----------------------------------------------------------------------------------------
# Training data from the scene
# ----------------------------------------------------------------------------------------
@dataclass
class TrainingPair:
    """One case in the scene: its channel volumes and its segmentation."""

    volumes: list[Any]
    segmentation: Any
    name: str = ""


@dataclass
class TrainingSet:
    """Cases ready to export, with unified labels and every problem found.

    Attributes:
        pairs: The cases (with unique, file-safe names).
        labels: ``{name: value}`` including ``background: 0``.
        problems: Errors that block the export (missing nodes, channel counts, geometry).
        warnings: Conflicts that were resolved (names unified by case, missing labels).
    """

    pairs: list[TrainingPair]
    labels: dict[str, int]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _safe_name(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_") or "case"
    if re.search(r"_\d{4}$", text):  # would read as a channel suffix
        text += "x"
    return text


def _as_pair(item: Any) -> TrainingPair:
    if isinstance(item, TrainingPair):
        return item
    volumes, segmentation = item
    if not isinstance(volumes, (list, tuple)):
        volumes = [volumes]
    return TrainingPair(list(volumes), segmentation)


def collect_training_pairs(
    scene: Any,
    pairs: Sequence[Any],
    label_names: dict[str, int] | None = None,
) -> TrainingSet:
    """Check (volumes, segmentation) pairs and unify segment names into label values.

    The same segment name means the same label in every case. Names that differ only in
    case or surrounding spaces are unified to the first spelling seen (a warning). Without
    ``label_names``, values are given in order of first appearance (1, 2, ...).

    Args:
        scene: The MRML scene (nodes may be given as node IDs).
        pairs: ``TrainingPair`` or ``(volume or [volumes per channel], segmentation)``.
        label_names: Fixed ``{name: value}``; segments with other names are reported.

    Returns:
        A :class:`TrainingSet` (check ``.problems`` before exporting).
    """
    problems: list[str] = []
    warnings: list[str] = []
    resolved: list[TrainingPair] = []
    for i, item in enumerate(pairs):
        pair = _as_pair(item)
        vols = [scene.GetNodeByID(v) if isinstance(v, str) else v for v in pair.volumes]
        seg = (scene.GetNodeByID(pair.segmentation)
               if isinstance(pair.segmentation, str) else pair.segmentation)
        resolved.append(TrainingPair(vols, seg, pair.name or (seg.GetName() if seg else "")))
        if seg is None or any(v is None for v in vols) or not vols:
            problems.append(f"case {i + 1}: missing volume or segmentation node")
    if problems:
        return TrainingSet(resolved, {"background": 0}, problems, warnings)

    channels = {len(p.volumes) for p in resolved}
    if len(channels) > 1:
        problems.append(f"cases have different numbers of channels: {sorted(channels)}")
    _check_pair_geometry(resolved, problems, warnings)

    fixed = dict(label_names or {})
    canonical: dict[str, str] = {}  # lower-case name → first spelling
    order: list[str] = []
    for pair in resolved:
        seen_here: set[str] = set()
        for name in segment_names(pair.segmentation):
            key = name.strip().lower()
            if key in seen_here:
                problems.append(f"{_node_label(pair.segmentation)}: two segments named "
                                f"'{name}'; rename one")
                continue
            seen_here.add(key)
            if key not in canonical:
                canonical[key] = name.strip()
                order.append(canonical[key])
            elif canonical[key] != name:
                warnings.append(f"{_node_label(pair.segmentation)}: segment '{name}' "
                                f"treated as '{canonical[key]}'")
    if fixed:
        fixed_keys = {k.strip().lower(): k for k in fixed}
        for key, name in canonical.items():
            if key not in fixed_keys:
                problems.append(f"segment '{name}' is not in the label list "
                                f"{sorted(fixed)}; add it or rename the segment")
        labels = {"background": 0, **{k: v for k, v in fixed.items() if v != 0}}
    else:
        labels = {"background": 0, **{name: i + 1 for i, name in enumerate(order)}}
    for pair in resolved:
        keys = {n.strip().lower() for n in segment_names(pair.segmentation)}
        missing = [n for n in labels if n != "background" and n.strip().lower() not in keys]
        if missing:
            warnings.append(f"{_node_label(pair.segmentation)}: no segment for "
                            f"{missing} (treated as absent in this case)")
    _name_cases(resolved)
    return TrainingSet(resolved, labels, problems, warnings)


def _check_pair_geometry(pairs: list[TrainingPair], problems: list[str],
                         warnings: list[str]) -> None:
    for pair in pairs:
        try:
            first = geometry_from_volume_node(pair.volumes[0])
            for v in pair.volumes[1:]:
                problem = first.mismatch(geometry_from_volume_node(v))
                if problem:
                    problems.append(f"{_node_label(v)}: geometry differs from "
                                    f"{_node_label(pair.volumes[0])}: {problem}")
        except NNSegError as e:
            problems.append(str(e))


def _name_cases(pairs: list[TrainingPair]) -> None:
    used: set[str] = set()
    for i, pair in enumerate(pairs):
        base = _safe_name(pair.name or f"case_{i:03d}")
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        pair.name = name


def export_dataset(
    scene: Any,
    pairs: Sequence[Any] | TrainingSet,
    out_dir: Path | str,
    channel_names: dict[int, str] | Sequence[str],
    label_names: dict[str, int] | None = None,
    file_ending: str = ".nii.gz",
    dataset_name: str | None = None,
) -> Path:
    """Write scene cases as an nnU-Net v2 raw dataset (``imagesTr``, ``labelsTr``, json).

    Each case's label map is rasterized on its channel-0 volume's grid with the unified
    label values; images keep their voxel values and geometry.

    Raises:
        NNSegError: listing every problem of the pairs when they cannot be exported.
    """
    from NNSegLib.atomic import write_json
    from NNSegLib.io import SimpleITKIO

    training = pairs if isinstance(pairs, TrainingSet) else collect_training_pairs(
        scene, pairs, label_names)
    if not training.ok:
        raise NNSegError("cannot export the dataset:\n  " + "\n  ".join(training.problems))
    if not isinstance(channel_names, dict):
        channel_names = dict(enumerate(channel_names))
    num_channels = len(training.pairs[0].volumes) if training.pairs else 0
    if len(channel_names) != num_channels:
        raise NNSegError(f"{len(channel_names)} channel names given for "
                         f"{num_channels} volumes per case")
    out = Path(out_dir)
    io = SimpleITKIO()
    for pair in training.pairs:
        for c, volume in enumerate(pair.volumes):
            array, geometry = array_from_volume_node(volume)
            io.write(array, geometry, out / "imagesTr" / f"{pair.name}_{c:04d}{file_ending}")
        labels, geometry = labels_from_segmentation(
            scene, pair.segmentation, training.labels, reference_volume=pair.volumes[0])
        io.write(labels, geometry, out / "labelsTr" / f"{pair.name}{file_ending}")
    write_json(out / "dataset.json", {
        "name": dataset_name or out.name,
        "channel_names": {str(k): v for k, v in sorted(channel_names.items())},
        "labels": training.labels,
        "numTraining": len(training.pairs),
        "file_ending": file_ending,
        "description": "exported from 3D Slicer by NNSeg",
    })
    return out


# ----------------------------------------------------------------------------------------
# Prediction into the scene
# ----------------------------------------------------------------------------------------
def uncertainty_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Normalized entropy (0 = certain, 1 = uniform) of ``(K, z, y, x)`` class probabilities."""
    p = np.clip(np.asarray(probabilities, np.float64), 0.0, 1.0)
    k = p.shape[0]
    if k < 2:
        return np.zeros(p.shape[1:], np.float32)
    plogp = np.zeros_like(p)
    np.multiply(p, np.log(p, where=p > 0, out=np.zeros_like(p)), out=plogp)
    entropy = -plogp.sum(axis=0) / np.log(k)
    return np.clip(entropy, 0.0, 1.0).astype(np.float32)


def predict_volumes(
    scene: Any,
    volumes: Sequence[Any],
    predictor: Callable[[np.ndarray, Geometry], tuple[np.ndarray, np.ndarray | None]],
    label_names: dict[int, str],
    model_info: dict[str, str] | None = None,
    node: Any = None,
    uncertainty: bool = False,
    name: str | None = None,
) -> tuple[Any, Any]:
    """Segment channel volumes in-process and put the result in a segmentation node.

    Args:
        scene: The MRML scene.
        volumes: One volume node per channel (same geometry).
        predictor: ``f(images (C, z, y, x) float32, geometry) -> (labels, probabilities)``
            such as ``functools.partial(NNSegLib.predict.predict_array, model=...)``.
        label_names: ``{value: name}`` of the model.
        model_info: Tags (``name``, ``version``).
        node: Segmentation node to fill, new if ``None``.
        uncertainty: Also create a normalized-entropy volume from the probabilities.
        name: Name of a new segmentation node.

    Returns:
        ``(segmentation node, uncertainty volume node or None)``.
    """
    arrays = []
    geometry = None
    for v in volumes:
        array, geo = array_from_volume_node(v)
        if geometry is not None and geometry.mismatch(geo):
            raise NNSegError(f"{_node_label(v)}: geometry differs from the first channel: "
                             f"{geometry.mismatch(geo)}")
        geometry = geometry or geo
        arrays.append(array.astype(np.float32, copy=False))
    if geometry is None:
        raise NNSegError("no input volume given")
    labels, probabilities = predictor(np.stack(arrays), geometry)
    base = name or f"{volumes[0].GetName()} segmentation"
    seg = segmentation_from_labels(scene, np.asarray(labels), geometry, label_names,
                                   reference_volume=volumes[0], model_info=model_info,
                                   node=node, name=base)
    unc = None
    if uncertainty and probabilities is not None:
        unc = volume_node_from_array(scene, uncertainty_from_probabilities(probabilities),
                                     geometry, f"{base} uncertainty")
    return seg, unc


# ----------------------------------------------------------------------------------------
# Training chart
# ----------------------------------------------------------------------------------------
#: Epoch-record keys plotted by :func:`training_chart` → series titles.
CHART_SERIES = {
    "train_loss": "train loss",
    "val_loss": "validation loss",
    "mean_pseudo_dice": "pseudo Dice",
    "ema_pseudo_dice": "pseudo Dice (EMA)",
}


def training_chart(scene: Any, records: Sequence[dict], chart: Any = None,
                   name: str = "NNSeg training") -> Any:
    """Fill a table node and a plot chart node with per-epoch loss and Dice curves.

    Args:
        scene: The MRML scene.
        records: ``epoch`` events (or ``log.jsonl`` records) in any order; one row per
            epoch (a later record for the same epoch replaces the earlier one).
        chart: A chart made by an earlier call (its table and series are reused).
        name: Base name of new nodes.

    Returns:
        The ``vtkMRMLPlotChartNode`` (its table: ``chart.GetAttribute("NNSeg.Table")``).
    """
    import vtk

    rows = {int(r["epoch"]): r for r in records if "epoch" in r}
    epochs = sorted(rows)
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
        chart.SetTitle("Training")
        chart.SetXAxisTitle("epoch")
        chart.SetYAxisTitle("loss / Dice")
    table_id = chart.GetAttribute("NNSeg.Table")
    table = scene.GetNodeByID(table_id) if table_id else None
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
        chart.SetAttribute("NNSeg.Table", table.GetID())
    vtk_table = table.GetTable()
    vtk_table.Initialize()
    columns = {"epoch": vtk.vtkDoubleArray()}
    columns.update({k: vtk.vtkDoubleArray() for k in CHART_SERIES})
    for key, array in columns.items():
        array.SetName(key)
        for e in epochs:
            value = e if key == "epoch" else rows[e].get(key)
            array.InsertNextValue(float("nan") if value is None else float(value))
        vtk_table.AddColumn(array)
    table.Modified()
    for key, title in CHART_SERIES.items():
        series_id = chart.GetAttribute(f"NNSeg.Series.{key}")
        series = scene.GetNodeByID(series_id) if series_id else None
        if series is None:
            series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", title)
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName("epoch")
            series.SetYColumnName(key)
            series.SetPlotType(series.PlotTypeScatter)
            series.SetMarkerStyle(series.MarkerStyleNone)
            series.SetUniqueColor()
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
            chart.SetAttribute(f"NNSeg.Series.{key}", series.GetID())
    return chart
