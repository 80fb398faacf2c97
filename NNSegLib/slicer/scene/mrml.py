"""Bridge between MRML nodes (3D Slicer) and NNSegLib's arrays, geometry and files.

The only NNSegLib module that imports ``slicer`` — always lazily, inside functions, so the
library imports without Slicer. Nothing here reaches for ``slicer.mrmlScene``: the scene
is an argument, so the same code runs in the Slicer application and headless with the
``slicer-core`` package (see :func:`new_scene`). Work built on these conversions lives in
:mod:`NNSegLib.slicer.scene.dataset` (training cases → raw dataset) and
:mod:`NNSegLib.slicer.scene.prediction` (segmenting volumes of the scene); the training curves
chart is :mod:`NNSegLib.slicer.scene.training_chart`.

Conventions: arrays are numpy ``(z, y, x)`` = Slicer's ``(k, j, i)``; :class:`~NNSegLib.data.io.
Geometry` is ITK/LPS. Slicer is RAS: the x and y rows of the origin and of the direction
matrix change sign; the array is the same (:mod:`NNSegLib.slicer.scene.ras_geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.slicer.scene.ras_geometry import geometry_from_ijk_to_ras, ijk_to_ras
from NNSegLib.util.errors import NNSegError

#: Segment tags written on predicted segments (and the segmentation node attributes).
TAG_MODEL = "NNSeg.Model"
TAG_MODEL_VERSION = "NNSeg.ModelVersion"
TAG_SOFTWARE_VERSION = "NNSeg.SoftwareVersion"
TAG_LABEL_VALUE = "NNSeg.LabelValue"
#: ``model_info`` key → tag (values must not contain ``:`` or ``|``, the tag separators).
MODEL_TAGS = (("name", TAG_MODEL), ("version", TAG_MODEL_VERSION),
              ("software", TAG_SOFTWARE_VERSION))


# ----------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------
@dataclass
class SceneContext:
    """A scene with the logics NNSeg uses (headless or the application's)."""

    scene: Any
    app_logic: Any = None
    segmentations_logic: Any = None


def available() -> bool:
    """True when MRML can be imported (the Slicer application or ``slicer-core``)."""
    try:
        import slicer  # noqa: F401
    except ImportError:
        return False
    return True


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


def node_label(node: Any) -> str:
    """``<class> '<name>'`` of a node for messages (``"None"`` for no node)."""
    return f"{node.GetClassName()} '{node.GetName()}'" if node is not None else "None"


# ----------------------------------------------------------------------------------------
# Geometry and volumes
# ----------------------------------------------------------------------------------------
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
                f"{node_label(node)}: under a non-linear transform "
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
        raise NNSegError(f"{node_label(node)}: has no image data")
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
            f"{node_label(node)}: {image.GetNumberOfScalarComponents()}-component image; "
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
    from NNSegLib.slicer.scene.terminology import label_colour

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
    (``colours``, else :func:`NNSegLib.slicer.scene.terminology.distinct_colours`), carry a
    terminology when the name is in NNSeg's table and the model name/version tags.

    Args:
        scene: The MRML scene.
        labels: Integer ``(z, y, x)`` label map.
        geometry: Its geometry (LPS).
        label_names: ``{value: name}``; value 0 (background) is skipped.
        colours: Optional ``{value: (r, g, b)}``.
        reference_volume: Volume whose geometry becomes the segmentation's reference
            (usually the input image).
        model_info: ``{"name", "version"}`` of the model (and NNSeg's ``software``
            version), written as tags (:data:`MODEL_TAGS`).
        node: Existing segmentation node to replace the segments of; new if ``None``.
        name: Name of a new node.
        terminology: Attach terminology entries for known names.
        include_empty: Also create (empty) segments for labels absent from ``labels``.

    Returns:
        The segmentation node.
    """
    import slicer

    from NNSegLib.slicer.scene.terminology import distinct_colours

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
            raise NNSegError(f"{node_label(node)}: importing the label map failed")
    finally:
        _remove_nodes(scene, [labelmap, labelmap.GetDisplayNode(), table])

    _order_and_describe(segmentation, foreground, colours, model_info, terminology,
                        include_empty)
    for key, tag in MODEL_TAGS:
        if model_info and model_info.get(key) is not None:
            node.SetAttribute(tag, str(model_info[key]))
    return node


def _order_and_describe(segmentation: Any, foreground: dict[int, str],
                        colours: dict[int, tuple[float, float, float]],
                        model_info: dict[str, str] | None, terminology: bool,
                        include_empty: bool) -> None:
    """Name, colour and tag the imported segments (adding empty ones for absent labels when
    ``include_empty``) and put them in label order, whatever the import order was."""
    from NNSegLib.slicer.scene.terminology import lookup

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
    for index, sid in enumerate(ordered):
        segmentation.SetSegmentIndex(sid, index)


def _describe_segment(segment, value, label, colour, term, model_info) -> None:
    segment.SetName(label)
    segment.SetNameAutoGenerated(False)
    segment.SetColor(*colour)
    segment.SetColorAutoGenerated(False)
    segment.SetLabelValue(value)
    segment.SetTag(TAG_LABEL_VALUE, str(value))
    if term is not None:
        segment.SetTerminology(term.serialize())
    for key, tag in MODEL_TAGS:
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


def remove_node(scene: Any, node: Any) -> None:
    """Remove a displayable/storable node with its display and storage nodes."""
    if node is None:
        return
    extra = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())] \
        if hasattr(node, "GetNumberOfDisplayNodes") else []
    extra += [node.GetStorageNode()] if hasattr(node, "GetStorageNode") else []
    _remove_nodes(scene, [node, *extra])


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
                raise NNSegError(f"{node_label(segmentation_node)}: no segment to export "
                                 "and no reference volume")
            geometry = geometry_from_volume_node(reference_volume)
            return np.zeros(geometry.shape, np.uint8), geometry
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, out, reference_volume, extent, table)
        if not ok:
            raise NNSegError(f"{node_label(segmentation_node)}: export to label map failed")
        labels, geometry = array_from_volume_node(out)
    finally:   # the export copies the table into a new colour node: remove that too
        display = out.GetDisplayNode()
        colour = display.GetColorNode() if display is not None else None
        colour = colour if colour is not None and not colour.GetSingletonTag() else None
        _remove_nodes(scene, [out, display, table, colour])
    dtype = np.uint8 if max(label_values.values(), default=0) < 256 else np.int16
    return labels.astype(dtype), geometry


# ----------------------------------------------------------------------------------------
# .seg.nrrd files
# ----------------------------------------------------------------------------------------
def write_segmentation(segmentation_node: Any, path: Path | str) -> Path:
    """Write a segmentation node to ``.seg.nrrd`` atomically (names, colours, tags kept)."""
    import slicer

    from NNSegLib.util.atomic import atomic_path

    path = Path(path)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    with atomic_path(path, suffix=".seg.nrrd") as tmp:
        storage.SetFileName(str(tmp))
        if not storage.WriteData(segmentation_node):
            raise NNSegError(f"{path}: writing {node_label(segmentation_node)} failed")
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


__all__ = ["MODEL_TAGS", "TAG_LABEL_VALUE", "TAG_MODEL", "TAG_MODEL_VERSION",
           "TAG_SOFTWARE_VERSION", "SceneContext", "array_from_volume_node", "available",
           "geometry_from_volume_node", "labels_from_segmentation", "new_scene", "node_label",
           "read_segmentation", "remove_node", "segment_names", "segment_tag",
           "segmentation_from_labels", "volume_node_from_array",
           "write_segmentation"]
