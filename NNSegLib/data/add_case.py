"""METHOD §8: add one corrected case to a raw training dataset (``nnseg add-case``).

The clinician's loop corrects a model's segmentation and hands it back as training data.
:func:`add_case` writes the case into ``imagesTr``/``labelsTr`` of an nnU-Net v2 raw dataset:

* **labels by name**: the label map comes with ``{value: name}`` (a ``.seg.nrrd`` brings its
  segment names); each name becomes the value ``dataset.json`` gives it (names compared
  ignoring case and surrounding spaces). A name the dataset does not have is refused, so a
  renamed or misspelled segment never becomes background silently.
* **the checks of** ``nnseg check``: the files are written to a staging folder first and
  read back with :func:`NNSegLib.data.check.check_case` (readable, finite, channels and label
  on one geometry, declared values). Only a case without errors is moved into place.
* **never silently overwritten**: an existing case of that name is replaced only with
  ``replace=True`` (``--replace``).
* **provenance**: ``nnseg_provenance.json`` next to ``dataset.json`` records, per added case,
  where it came from (e.g. ``"origin": "corrected_prediction"`` with the model's name and
  version), when, and whether it replaced a case. nnU-Net ignores the file.
* ``numTraining`` is updated; every other ``dataset.json`` field is kept.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.data.dataset import (
    CHANNEL_RE,
    Case,
    DatasetError,
    DatasetSpec,
    list_cases,
    load_dataset_json,
)
from NNSegLib.data.io import Geometry, SimpleITKIO
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress

PROVENANCE = "nnseg_provenance.json"
PROVENANCE_FORMAT = "nnseg-case-provenance"
PROVENANCE_VERSION = 1
#: The ``origin`` recorded for a case corrected from a model's prediction.
CORRECTED_PREDICTION = "corrected_prediction"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class AddedCase:
    """What :func:`add_case` wrote.

    Attributes:
        identifier: The case name.
        images: Channel files in ``imagesTr``.
        label: The label file in ``labelsTr``.
        replaced: An existing case of that name was replaced.
        num_training: ``numTraining`` after adding.
        label_values: Source label value → dataset label value, as applied.
        warnings: Warnings of the content check.
    """

    identifier: str
    images: tuple[Path, ...]
    label: Path
    replaced: bool
    num_training: int
    label_values: dict[int, int]
    warnings: tuple[str, ...] = ()


def check_case_name(identifier: str) -> str:
    """Return ``identifier`` if it can name a case file, else raise :class:`NNSegError`."""
    if not _NAME_RE.match(identifier or "") or identifier.endswith((".nii", ".gz", ".nrrd")):
        raise NNSegError(f"case name {identifier!r}: use letters, digits, '_', '-' and '.' "
                         "(starting with a letter or digit)")
    if CHANNEL_RE.match(identifier):
        raise NNSegError(f"case name {identifier!r} ends like a channel suffix (_0000); "
                         "add a letter at the end")
    return identifier


def label_value_map(label_names: dict[int, str], dataset_labels: dict[str, int],
                    where: Path | str = "dataset.json") -> dict[int, int]:
    """Source label value → the dataset's value for the same name.

    Value 0 is background whatever its name. Names are compared ignoring case and
    surrounding spaces.

    Args:
        label_names: ``{source value: name}``.
        dataset_labels: The dataset's ``{name: value}``.
        where: The ``dataset.json`` named in errors.

    Raises:
        DatasetError: naming every label the dataset does not know.
    """
    known = {name.strip().lower(): value for name, value in dataset_labels.items()}
    mapping = {0: 0}
    unknown = []
    for value, name in sorted(label_names.items()):
        if int(value) == 0:
            continue
        target = known.get(str(name).strip().lower())
        if target is None:
            unknown.append(f"{name!r} (value {value})")
        else:
            mapping[int(value)] = target
    if unknown:
        raise DatasetError(f"{where}: label(s) {', '.join(unknown)} are not in the "
                           f"dataset's labels {sorted(dataset_labels)}; rename the segment(s) "
                           "to a dataset label or remove them")
    return mapping


def remap_labels(labels: np.ndarray, mapping: dict[int, int], what: str = "label map"
                 ) -> np.ndarray:
    """Apply ``mapping`` to an integer label map (uint8, or int16 for values > 255).

    Raises:
        NNSegError: for values the mapping lacks (a label without a name).
    """
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.rint(labels)):
            raise NNSegError(f"{what}: label values must be integers")
        labels = labels.astype(np.int64)
    present = {int(v) for v in np.unique(labels)}
    missing = sorted(present - set(mapping))
    if missing:
        raise NNSegError(f"{what}: label values {missing} have no name")
    top = max(mapping.values(), default=0)
    out = np.zeros(labels.shape, np.uint8 if top < 256 else np.int16)
    for source, target in mapping.items():
        if source in present and target:
            out[labels == source] = target
    return out


def existing_case_files(spec: DatasetSpec, identifier: str) -> list[Path]:
    """Every ``imagesTr``/``labelsTr`` file of case ``identifier`` (any channel)."""
    ending = spec.file_ending
    found = []
    image_dir = spec.root / "imagesTr"
    if image_dir.is_dir():
        found += sorted(p for p in image_dir.iterdir() if p.name.endswith(ending)
                        and (m := CHANNEL_RE.match(p.name[: -len(ending)]))
                        and m["case"] == identifier)
    label = spec.root / "labelsTr" / f"{identifier}{ending}"
    return found + ([label] if label.is_file() else [])


def free_case_name(dataset: Path | str, base: str) -> str:
    """``base`` made file-safe, with ``_2``, ``_3`` … appended while the dataset has it."""
    spec = load_dataset_json(dataset)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("_.") or "case"
    if CHANNEL_RE.match(name):
        name += "x"
    candidate, k = name, 1
    while existing_case_files(spec, candidate):
        k += 1
        candidate = f"{name}_{k}"
    return candidate


def add_case(dataset: Path | str, identifier: str, images: Sequence[np.ndarray],
             geometries: Sequence[Geometry], labels: np.ndarray, label_geometry: Geometry,
             label_names: dict[int, str], *, replace: bool = False,
             provenance: dict[str, Any] | None = None) -> AddedCase:
    """Write one case (channels + label map) into a raw dataset, checked; see module doc.

    Args:
        dataset: Raw dataset folder (with ``dataset.json``).
        identifier: Case name (file-safe, see :func:`check_case_name`).
        images: One ``(z, y, x)`` array per channel, in channel order (dtype kept).
        geometries: Their geometries.
        labels: ``(z, y, x)`` integer label map.
        label_geometry: Its geometry (must agree with the images').
        label_names: ``{value in labels: name}``.
        replace: Replace an existing case of that name.
        provenance: Recorded for the case in ``nnseg_provenance.json`` (``origin``, ``model``,
            ``batch``, ``source_images`` …).

    Raises:
        NNSegError: unknown label names, wrong channel count, an existing case without
            ``replace``, or the content check's errors (nothing is written then).
    """
    spec = load_dataset_json(dataset)
    check_case_name(identifier)
    if len(images) != spec.num_channels or len(geometries) != len(images):
        raise NNSegError(f"case {identifier}: {len(images)} image channel(s) given, the dataset "
                         f"has {spec.num_channels} ({', '.join(spec.channel_names.values())})")
    mapping = label_value_map(label_names, spec.labels, spec.root / "dataset.json")
    remapped = remap_labels(labels, mapping, f"case {identifier} label map")
    existing = existing_case_files(spec, identifier)
    if existing and not replace:
        raise NNSegError(f"case {identifier!r} already exists in {spec.root} "
                         f"({existing[0].name}); choose another name or replace it explicitly "
                         "(--replace)")
    staging = Path(tempfile.mkdtemp(prefix=f".nnseg_add_{identifier}_", dir=spec.root))
    try:
        staged = _stage(staging, spec, identifier, images, geometries, remapped, label_geometry)
        warnings = _check_staged(staging, spec, staged)
        final = _move_into_place(spec, identifier, staged, existing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    num_training = _update_dataset_json(spec)
    record = {**(provenance or {}), "added": _now(), "replaced": bool(existing),
              "label_values": {str(k): v for k, v in mapping.items() if k}}
    record_provenance(spec.root, identifier, record)
    return AddedCase(identifier, final.images, final.label or Path(), bool(existing),
                     num_training, mapping, tuple(warnings))


def _stage(staging: Path, spec: DatasetSpec, identifier: str, images: Sequence[np.ndarray],
           geometries: Sequence[Geometry], labels: np.ndarray, label_geometry: Geometry) -> Case:
    io = SimpleITKIO()
    ending = spec.file_ending
    paths = []
    for c, (array, geometry) in enumerate(zip(images, geometries)):
        paths.append(staging / "imagesTr" / f"{identifier}_{c:04d}{ending}")
        io.write(np.asarray(array), geometry, paths[-1])
    label = staging / "labelsTr" / f"{identifier}{ending}"
    io.write(labels, label_geometry, label)
    return Case(identifier, tuple(paths), label)


def _check_staged(staging: Path, spec: DatasetSpec, case: Case) -> list[str]:
    from NNSegLib.data.check import WARNING, check_case

    result = check_case(case, spec)
    text = [p.format().replace(str(staging), str(spec.root)) for p in result.problems]
    if not result.ok:
        raise NNSegError(f"case {case.identifier} was not added:\n" + "\n".join(text))
    return [t for t, p in zip(text, result.problems) if p.severity == WARNING]


def _move_into_place(spec: DatasetSpec, identifier: str, staged: Case,
                     existing: list[Path]) -> Case:
    import os

    images = []
    for path in staged.images:
        target = spec.root / "imagesTr" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        images.append(target)
    assert staged.label is not None
    label = spec.root / "labelsTr" / staged.label.name
    label.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged.label, label)
    for old in set(existing) - {*images, label}:   # e.g. channel files under another name
        old.unlink()
    return Case(identifier, tuple(images), label)


def _update_dataset_json(spec: DatasetSpec) -> int:
    from NNSegLib.util.atomic import write_json

    count = len(list_cases(spec))
    if spec.raw.get("numTraining") != count:
        write_json(spec.root / "dataset.json", {**spec.raw, "numTraining": count})
    return count


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def record_provenance(dataset: Path | str, identifier: str, record: dict[str, Any]) -> Path:
    """Set case ``identifier``'s entry of ``nnseg_provenance.json`` (atomic, versioned)."""
    from NNSegLib.util.atomic import write_json

    path = Path(dataset) / PROVENANCE
    data = read_provenance(dataset)
    data["cases"][identifier] = record
    write_json(path, data)
    return path


def read_provenance(dataset: Path | str) -> dict[str, Any]:
    """``nnseg_provenance.json`` of a dataset (an empty document when there is none)."""
    from NNSegLib.util.json_files import read_json

    path = Path(dataset) / PROVENANCE
    if not path.is_file():
        return {"format": PROVENANCE_FORMAT, "version": PROVENANCE_VERSION, "cases": {}}
    data = read_json(path, expect=dict)
    if data.get("format") != PROVENANCE_FORMAT or data.get("version") != PROVENANCE_VERSION:
        raise NNSegError(f"{path}: not an NNSeg provenance file of version "
                         f"{PROVENANCE_VERSION}")
    data.setdefault("cases", {})
    return data


# --- files ------------------------------------------------------------------------------
def read_label_file(path: Path | str, spec: DatasetSpec,
                    label_names: dict[int, str] | None = None
                    ) -> tuple[np.ndarray, Geometry, dict[int, str]]:
    """A label file with the names of its values.

    A ``.seg.nrrd`` names its values itself; any other label map uses ``label_names`` or,
    without them, the dataset's own (its values are then taken as the dataset's values).
    """
    from NNSegLib.data.seg_nrrd import is_seg_nrrd, read_seg_nrrd

    if is_seg_nrrd(path):
        return read_seg_nrrd(path)
    labels, geometry = SimpleITKIO().read(Path(path))
    return labels, geometry, dict(label_names or spec.label_names)


def add_case_files(dataset: Path | str, identifier: str, image_files: Sequence[Path | str],
                   label_file: Path | str, label_names: dict[int, str] | None = None, *,
                   replace: bool = False, provenance: dict[str, Any] | None = None
                   ) -> AddedCase:
    """:func:`add_case` from image files (one per channel) and a label file.

    See :func:`read_label_file` for where label names come from.
    """
    spec = load_dataset_json(dataset)
    io = SimpleITKIO()
    reads = [io.read(Path(p)) for p in image_files]
    labels, geometry, names = read_label_file(label_file, spec, label_names)
    record = {"source_images": [str(Path(p).resolve()) for p in image_files],
              "source_label": str(Path(label_file).resolve()), **(provenance or {})}
    return add_case(dataset, identifier, [a for a, _ in reads], [g for _, g in reads], labels,
                    geometry, names, replace=replace, provenance=record)


# --- CLI --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnseg add-case``."""
    parser.add_argument("dataset", type=Path, help="raw dataset folder (with dataset.json)")
    parser.add_argument("--images", nargs="+", required=True, type=Path,
                        help="the case's image files, one per channel, in channel order")
    parser.add_argument("--label", required=True, type=Path,
                        help="label map: a .seg.nrrd (segment names map to the dataset's "
                             "labels) or a label image with the dataset's values")
    parser.add_argument("--name", default=None,
                        help="case name (default: the label file's name)")
    parser.add_argument("--replace", action="store_true",
                        help="replace an existing case of that name")
    parser.add_argument("--origin", default="manual",
                        help=f"provenance origin (e.g. {CORRECTED_PREDICTION}; default manual)")


def run(args: argparse.Namespace, progress: Progress) -> int:
    """``nnseg add-case``."""
    from NNSegLib.data.io import file_ending

    name = args.name or args.label.name[: -len(file_ending(args.label))]
    try:
        added = add_case_files(args.dataset, name, args.images, args.label,
                               replace=args.replace, provenance={"origin": args.origin})
    finally:
        progress.close()
    for warning in added.warnings:
        progress.message(warning, level="warning")
    verb = "replaced" if added.replaced else "added"
    print(f"{added.identifier}: {verb} in {args.dataset} ({added.num_training} training cases)")
    return 0


__all__ = ["AddedCase", "CORRECTED_PREDICTION", "PROVENANCE", "add_arguments", "add_case",
           "add_case_files", "check_case_name", "existing_case_files", "free_case_name",
           "label_value_map", "read_label_file", "read_provenance", "record_provenance",
           "remap_labels", "run"]
