"""The review queue in the scene (METHOD §8): load a case, show its uncertainty, add it back.

The Slicer panel's review table comes from :func:`NNSegLib.inference.review_queue.queue_table`;
clicking a row calls :func:`load_review_case` (the case's channels, its segmentation and the
uncertainty volume with a heat colour map), :func:`show_uncertainty_overlay` (the uncertainty
over the image in every slice view, opacity adjustable) and :func:`jump_to_region` (slice
views centred on the most uncertain region). After the reviewer edits the segmentation in
Segment Editor, :func:`add_corrected_case` writes it with the case's images into the
training dataset (segment names → the dataset's label values, unknown names refused, the
checks of ``nnseg check``, provenance recorded) and notes that in the queue.

Works on any scene (headless with ``slicer-core`` too); never imports ``slicer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.inference.case_uncertainty import Region
from NNSegLib.inference.review_queue import QueueEntry
from NNSegLib.slicer.scene import mrml
from NNSegLib.util.errors import NNSegError

#: Colour map of the uncertainty volume (exists headless and in the application).
UNCERTAINTY_COLOURS = "vtkMRMLPETProceduralColorNodePET-Heat"
#: Entropy below which the overlay is transparent.
OVERLAY_LOWER_THRESHOLD = 0.05


@dataclass
class ReviewCase:
    """A batch case loaded into the scene."""

    entry: QueueEntry
    volumes: list[Any]
    segmentation: Any
    uncertainty: Any


def style_uncertainty(volume: Any, colour_node_id: str = UNCERTAINTY_COLOURS,
                      lower: float = OVERLAY_LOWER_THRESHOLD) -> Any:
    """Show an entropy volume with a heat colour map over ``[0, 1]``, transparent below
    ``lower``; returns its display node."""
    if volume.GetDisplayNode() is None:
        volume.CreateDefaultDisplayNodes()
    display = volume.GetDisplayNode()
    scene = volume.GetScene()
    if scene is not None and scene.GetNodeByID(colour_node_id) is not None:
        display.SetAndObserveColorNodeID(colour_node_id)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetThreshold(lower, 1.0)
    display.ApplyThresholdOn()
    return display


def show_uncertainty_overlay(scene: Any, background: Any, uncertainty: Any,
                             opacity: float = 0.5) -> int:
    """Put ``uncertainty`` over ``background`` in every slice view; returns the views set.

    Call again with another ``opacity`` to change it (the panel's slider).
    """
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for i in range(composites.GetNumberOfItems()):
        node = composites.GetItemAsObject(i)
        node.SetBackgroundVolumeID(background.GetID() if background is not None else None)
        node.SetForegroundVolumeID(uncertainty.GetID() if uncertainty is not None else None)
        node.SetForegroundOpacity(float(min(1.0, max(0.0, opacity))))
    return composites.GetNumberOfItems()


def jump_to_region(scene: Any, region: Region | None) -> int:
    """Centre every slice view on the region's centre (RAS); returns the views moved."""
    if region is None:
        return 0
    x, y, z = region.center_ras
    slices = scene.GetNodesByClass("vtkMRMLSliceNode")
    for i in range(slices.GetNumberOfItems()):
        slices.GetItemAsObject(i).JumpSliceByCentering(x, y, z)
    return slices.GetNumberOfItems()


def load_review_case(scene: Any, batch_dir: Path | str, case: str,
                     volumes: Sequence[Any] | None = None) -> ReviewCase:
    """Load a queue case's channels, segmentation and uncertainty into the scene.

    Nodes are named ``<case>`` (``<case>_<c>`` for further channels), ``<case>
    segmentation`` and ``<case> uncertainty``; the segmentation's reference geometry is
    channel 0. Pass ``volumes`` when the channels are in the scene already (a batch of scene
    volumes): the batch's image files are then not loaded again.
    """
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.data.seg_nrrd import is_seg_nrrd
    from NNSegLib.inference.review_queue import get_entry, queue_label_names, queue_model

    entry = get_entry(batch_dir, case)
    io = SimpleITKIO()
    if volumes is None:
        volumes = []
        for c, path in enumerate(entry.images):
            array, geometry = io.read(path)
            volumes.append(mrml.volume_node_from_array(scene, array, geometry,
                                                       case if c == 0 else f"{case}_{c}"))
    volumes = list(volumes)
    if not volumes:
        raise NNSegError(f"{batch_dir}: case {case!r} lists no image files")
    if is_seg_nrrd(entry.segmentation):
        seg = mrml.read_segmentation(scene, entry.segmentation, f"{case} segmentation")
        seg.SetReferenceImageGeometryParameterFromVolumeNode(volumes[0])
    else:
        labels, geometry = io.read(entry.segmentation)
        model = queue_model(batch_dir)
        seg = mrml.segmentation_from_labels(
            scene, labels.astype("int32"), geometry, queue_label_names(batch_dir),
            reference_volume=volumes[0], name=f"{case} segmentation",
            model_info={k: str(model[k]) for k in ("name", "version", "software") if k in model})
    unc = None
    if entry.uncertainty is not None and entry.uncertainty.is_file():
        array, geometry = io.read(entry.uncertainty)
        unc = mrml.volume_node_from_array(scene, array, geometry, f"{case} uncertainty")
        style_uncertainty(unc)
    return ReviewCase(entry, volumes, seg, unc)


def add_corrected_case(scene: Any, batch_dir: Path | str, case: str, segmentation: Any,
                       dataset: Path | str, volumes: Sequence[Any] | None = None,
                       identifier: str | None = None, replace: bool = False) -> Any:
    """Write a reviewed (corrected) case from the scene into a raw training dataset.

    Args:
        scene: The MRML scene.
        batch_dir: The batch folder the case comes from.
        case: The queue's case.
        segmentation: The (edited) segmentation node.
        dataset: Raw training dataset.
        volumes: The case's channel volumes in the scene (default: read the batch's image
            files); channel 0 is the label map's grid.
        identifier: Case name in the dataset (default: the batch's case name).
        replace: Replace a dataset case of that name.

    Returns:
        The :class:`~NNSegLib.data.add_case.AddedCase`.

    Raises:
        NNSegError: for segment names the dataset does not have (nothing is written), and
            every error of :func:`~NNSegLib.data.add_case.add_case`.
    """
    from NNSegLib.data.add_case import add_case, label_value_map
    from NNSegLib.data.dataset import load_dataset_json
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.inference.review_queue import added_case_provenance, get_entry, record_added

    entry = get_entry(batch_dir, case)
    spec = load_dataset_json(dataset)
    names = mrml.segment_names(segmentation)
    label_value_map(dict(enumerate(names, 1)), spec.labels, spec.root / "dataset.json")
    loaded = volumes is None
    if volumes is None:
        volumes = [mrml.volume_node_from_array(scene, *SimpleITKIO().read(p), name=f"{case}_{c}")
                   for c, p in enumerate(entry.images)]
    try:
        channels = [mrml.array_from_volume_node(v) for v in volumes]
        labels, geometry = mrml.labels_from_segmentation(scene, segmentation, spec.labels,
                                                         reference_volume=volumes[0])
    finally:
        if loaded:
            for v in volumes:
                mrml.remove_node(scene, v)
    provenance = added_case_provenance(batch_dir, entry, labels, spec.labels)
    provenance["source_segmentation"] = segmentation.GetName()
    added = add_case(dataset, identifier or entry.case, [a for a, _ in channels],
                     [g for _, g in channels], labels, geometry, spec.label_names,
                     replace=replace, provenance=provenance)
    record_added(batch_dir, case, {"dataset": str(Path(dataset).resolve()),
                                   "case": added.identifier, "origin": provenance["origin"],
                                   "changed_voxels": provenance["changed_voxels"]})
    return added


__all__ = ["OVERLAY_LOWER_THRESHOLD", "ReviewCase", "UNCERTAINTY_COLOURS", "add_corrected_case",
           "jump_to_region", "load_review_case", "show_uncertainty_overlay",
           "style_uncertainty"]
