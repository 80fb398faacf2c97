"""Training cases in the scene ⇄ an nnU-Net v2 raw dataset on disk.

Pairs of (channel volumes, segmentation) become cases with unified label values, unique
file-safe names and every problem found at once (:func:`collect_training_pairs`), then a
raw dataset (:func:`export_dataset`); :func:`load_cases_from_folder` goes the other way.
Never imports ``slicer``: nodes are converted by :mod:`NNSegLib.slicer.scene.mrml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from NNSegLib.slicer.scene import mrml
from NNSegLib.util.errors import NNSegError


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
        for name in mrml.segment_names(pair.segmentation):
            key = name.strip().lower()
            if key in seen_here:
                problems.append(f"{mrml.node_label(pair.segmentation)}: two segments named "
                                f"'{name}'; rename one")
                continue
            seen_here.add(key)
            if key not in canonical:
                canonical[key] = name.strip()
                order.append(canonical[key])
            elif canonical[key] != name:
                warnings.append(f"{mrml.node_label(pair.segmentation)}: segment '{name}' "
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
        keys = {n.strip().lower() for n in mrml.segment_names(pair.segmentation)}
        missing = [n for n in labels if n != "background" and n.strip().lower() not in keys]
        if missing:
            warnings.append(f"{mrml.node_label(pair.segmentation)}: no segment for "
                            f"{missing} (treated as absent in this case)")
    _name_cases(resolved)
    return TrainingSet(resolved, labels, problems, warnings)


def _check_pair_geometry(pairs: list[TrainingPair], problems: list[str],
                         warnings: list[str]) -> None:
    for pair in pairs:
        try:
            first = mrml.geometry_from_volume_node(pair.volumes[0])
            for v in pair.volumes[1:]:
                problem = first.mismatch(mrml.geometry_from_volume_node(v))
                if problem:
                    problems.append(f"{mrml.node_label(v)}: geometry differs from "
                                    f"{mrml.node_label(pair.volumes[0])}: {problem}")
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
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.util.atomic import write_json

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
            array, geometry = mrml.array_from_volume_node(volume)
            io.write(array, geometry, out / "imagesTr" / f"{pair.name}_{c:04d}{file_ending}")
        labels, geometry = mrml.labels_from_segmentation(
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


def load_cases_from_folder(
    scene: Any,
    folder: Path | str,
    load_volume: Callable[[str], Any],
) -> list[tuple[list[Any], Any]]:
    """Load a folder's cases into the scene as ``([volume], segmentation)`` pairs.

    The folder is an nnU-Net raw dataset (``dataset.json``, ``imagesTr``, ``labelsTr``:
    one volume per channel, the label map becomes a segmentation named
    ``<case> segmentation``) or holds ``<case>.seg.nrrd`` files, each with an image
    ``<case>.nrrd`` / ``.nii`` / ``.nii.gz`` / ``.mha`` next to it.

    Args:
        scene: The MRML scene the segmentations are added to.
        folder: The folder.
        load_volume: Loads an image file as a volume node (``slicer.util.loadVolume`` in
            the Slicer application).

    Returns:
        The pairs, in case order; dataset cases without a label map are left out.
    """
    from NNSegLib.data.dataset import list_cases, load_dataset_json
    from NNSegLib.data.io import SimpleITKIO

    folder = Path(folder)
    out = []
    if (folder / "dataset.json").is_file():
        spec = load_dataset_json(folder)
        for case in list_cases(spec):
            vols = [load_volume(str(p)) for p in case.images]
            if case.label is None:
                continue
            labels, geometry = SimpleITKIO().read(case.label)
            seg = mrml.segmentation_from_labels(scene, labels.astype("int32"), geometry,
                                                spec.label_names, reference_volume=vols[0],
                                                name=f"{case.identifier} segmentation")
            out.append((vols, seg))
        return out
    for seg_path in sorted(folder.glob("*.seg.nrrd")):
        stem = seg_path.name[: -len(".seg.nrrd")]
        images = [p for p in folder.iterdir() if p.name.startswith(stem + ".")
                  and p != seg_path and p.suffix in (".nrrd", ".gz", ".nii", ".mha")]
        if images:
            vol = load_volume(str(images[0]))
            out.append(([vol], mrml.read_segmentation(scene, seg_path)))
    return out


__all__ = ["TrainingPair", "TrainingSet", "collect_training_pairs", "export_dataset",
           "load_cases_from_folder"]
