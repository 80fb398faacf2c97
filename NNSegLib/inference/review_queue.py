"""METHOD §8: the review queue of a segmented batch (``review_queue.json``, ``nnseg review``).

``nnseg segment-batch`` (:mod:`.batch`) writes one entry per finished case into
``BATCH/review_queue.json``: its files, the uncertainty summary
(:class:`~.case_uncertainty.CaseUncertainty`) and a review state, ``pending``, ``accepted``
or ``needs_correction``. The file is versioned, written atomically under a lock file
(the batch job and the GUI may update it at the same time) and is the queue's only state,
so the queue survives restarts. Paths inside the batch folder are stored relative to it.

:func:`ranked_entries` orders the cases for review: highest
:attr:`~.case_uncertainty.CaseUncertainty.score` first, then the larger uncertain fraction,
then by name. ``nnseg review BATCH`` prints that table; ``--mark CASE STATE`` sets a state;
``--add CASE --dataset D`` writes the (corrected) case into a training dataset
(:func:`NNSegLib.data.add_case.add_case`) and records that in the queue.
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from NNSegLib.inference.case_uncertainty import CaseUncertainty
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress

QUEUE_FILE = "review_queue.json"
QUEUE_FORMAT = "nnseg-review-queue"
QUEUE_VERSION = 1
PENDING, ACCEPTED, NEEDS_CORRECTION = "pending", "accepted", "needs_correction"
STATES = (PENDING, ACCEPTED, NEEDS_CORRECTION)


@dataclass(frozen=True)
class QueueEntry:
    """One case of the queue, paths resolved.

    Attributes:
        case: Case name.
        state: ``pending``, ``accepted`` or ``needs_correction``.
        segmentation: The predicted segmentation (``.seg.nrrd`` or label image).
        uncertainty: The normalized-entropy map.
        images: The input channel files.
        stats: Uncertainty summary.
        added_to_dataset: Where the case was added (``dataset``, ``case``, ``time`` …), or
            ``None``.
        updated: When the entry last changed (ISO time).
    """

    case: str
    state: str
    segmentation: Path
    uncertainty: Path | None
    images: tuple[Path, ...]
    stats: CaseUncertainty | None
    added_to_dataset: dict[str, Any] | None = None
    updated: str = ""

    @property
    def sort_key(self) -> tuple:
        stats = self.stats
        score = stats.score if stats is not None else -1.0
        fraction = stats.uncertain_fraction if stats is not None else -1.0
        return (-score, -fraction, self.case)


def queue_path(batch_dir: Path | str) -> Path:
    return Path(batch_dir) / QUEUE_FILE


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def new_document(model: dict[str, Any], label_names: dict[int, str],
                 threshold: float) -> dict[str, Any]:
    """An empty queue document for a batch made by ``model``."""
    return {"format": QUEUE_FORMAT, "version": QUEUE_VERSION, "created": now(),
            "model": model, "labels": {str(k): v for k, v in sorted(label_names.items())},
            "uncertain_threshold": float(threshold), "cases": {}}


def read_document(batch_dir: Path | str, missing_ok: bool = False) -> dict[str, Any] | None:
    """The queue document of a batch folder.

    Raises:
        NNSegError: when it is missing (unless ``missing_ok``), unreadable or of another
            format or version.
    """
    from NNSegLib.util.json_files import read_json

    path = queue_path(batch_dir)
    if not path.is_file():
        if missing_ok:
            return None
        raise NNSegError(f"{path}: no review queue here; run `nnseg segment-batch -o "
                         f"{Path(batch_dir)}` first")
    data = read_json(path, expect=dict)
    if data.get("format") != QUEUE_FORMAT or data.get("version") != QUEUE_VERSION:
        raise NNSegError(f"{path}: not an NNSeg review queue of version {QUEUE_VERSION} "
                         f"(format {data.get('format')!r}, version {data.get('version')!r})")
    return data


def update_document(batch_dir: Path | str, change: Callable[[dict[str, Any] | None],
                                                           dict[str, Any]]) -> dict[str, Any]:
    """Read, change and atomically write the queue under its lock; returns the new document.

    ``change`` receives the current document (``None`` when there is none yet).
    """
    from NNSegLib.util.atomic import write_json
    from NNSegLib.util.locking import file_lock

    path = queue_path(batch_dir)
    with file_lock(path):
        data = change(read_document(batch_dir, missing_ok=True))
        write_json(path, data)
    return data


def stored_path(batch_dir: Path | str, path: Path | str) -> str:
    """``path`` relative to the batch folder when inside it, else absolute (POSIX style)."""
    path, batch = Path(path).resolve(), Path(batch_dir).resolve()
    try:
        return path.relative_to(batch).as_posix()
    except ValueError:
        return path.as_posix()


def _resolve(batch_dir: Path, text: str | None) -> Path | None:
    return None if not text else (batch_dir / text if not Path(text).is_absolute() else Path(text))


def entry_from_dict(batch_dir: Path | str, case: str, d: dict[str, Any]) -> QueueEntry:
    batch = Path(batch_dir)
    segmentation = _resolve(batch, d.get("segmentation"))
    if segmentation is None:
        raise NNSegError(f"{queue_path(batch)}: case {case!r} has no segmentation file")
    stats = CaseUncertainty.from_dict(d["stats"]) if d.get("stats") else None
    return QueueEntry(case, str(d.get("state", PENDING)), segmentation,
                      _resolve(batch, d.get("uncertainty")),
                      tuple(p for p in (_resolve(batch, t) for t in d.get("images", []))
                            if p is not None),
                      stats, d.get("added_to_dataset"), str(d.get("updated", "")))


def load_entries(batch_dir: Path | str) -> list[QueueEntry]:
    """Every case of the queue, in file order."""
    data = read_document(batch_dir)
    assert data is not None
    return [entry_from_dict(batch_dir, c, d) for c, d in data["cases"].items()]


def ranked_entries(batch_dir: Path | str) -> list[QueueEntry]:
    """The queue's cases, most uncertain first (see the module doc)."""
    return sorted(load_entries(batch_dir), key=lambda e: e.sort_key)


def get_entry(batch_dir: Path | str, case: str) -> QueueEntry:
    """One case of the queue.

    Raises:
        NNSegError: naming the cases the queue has when ``case`` is not one of them.
    """
    data = read_document(batch_dir)
    assert data is not None
    if case not in data["cases"]:
        raise NNSegError(f"{queue_path(batch_dir)}: no case {case!r}; the queue has "
                         f"{sorted(data['cases'])}")
    return entry_from_dict(batch_dir, case, data["cases"][case])


def _change_case(batch_dir: Path | str, case: str, **fields: Any) -> QueueEntry:
    def change(data: dict[str, Any] | None) -> dict[str, Any]:
        if data is None or case not in data["cases"]:
            known = sorted(data["cases"]) if data else []
            raise NNSegError(f"{queue_path(batch_dir)}: no case {case!r}; the queue has {known}")
        data["cases"][case].update(fields, updated=now())
        return data

    data = update_document(batch_dir, change)
    return entry_from_dict(batch_dir, case, data["cases"][case])


def mark_case(batch_dir: Path | str, case: str, state: str) -> QueueEntry:
    """Set a case's review state (``pending``, ``accepted`` or ``needs_correction``)."""
    if state not in STATES:
        raise NNSegError(f"review state {state!r} is not one of {', '.join(STATES)}")
    return _change_case(batch_dir, case, state=state)


def record_added(batch_dir: Path | str, case: str, record: dict[str, Any]) -> QueueEntry:
    """Note in the queue that ``case`` was added to a training dataset."""
    return _change_case(batch_dir, case, added_to_dataset={**record, "time": now()})


def queue_model(batch_dir: Path | str) -> dict[str, Any]:
    """The ``model`` block of the queue (path, name, version, folds …)."""
    data = read_document(batch_dir)
    assert data is not None
    return dict(data.get("model", {}))


def queue_label_names(batch_dir: Path | str) -> dict[int, str]:
    """``{value: name}`` of the model that segmented the batch."""
    data = read_document(batch_dir)
    assert data is not None
    return {int(k): str(v) for k, v in data.get("labels", {}).items()}


def queue_table(batch_dir: Path | str) -> tuple[list[str], list[list[str]]]:
    """The ranked queue as ``(header, rows)`` for the CLI and the Slicer panel.

    Columns: rank, case, state, score (mean foreground entropy), uncertain share, one
    volume column per label (ml), and where the case was added (if it was).
    """
    entries = ranked_entries(batch_dir)
    names = list(queue_label_names(batch_dir).values())[1:]
    header = ["#", "case", "state", "entropy (fg)", "uncertain", *[f"{n} (ml)" for n in names],
              "added"]
    rows = []
    for rank, e in enumerate(entries, 1):
        s = e.stats
        fg = "–" if s is None or s.mean_entropy_foreground is None else \
            f"{s.mean_entropy_foreground:.3f}"
        frac = "–" if s is None else f"{s.uncertain_fraction:.1%}"
        vols = [("–" if s is None else f"{s.volumes_ml.get(n, 0.0):.2f}") for n in names]
        added = (e.added_to_dataset or {}).get("case", "")
        rows.append([str(rank), e.case, e.state, fg, frac, *vols, added])
    return header, rows


def prediction_in_dataset_values(entry: QueueEntry, model_labels: dict[int, str],
                                 dataset_labels: dict[str, int]) -> np.ndarray | None:
    """The batch's prediction of ``entry`` with the dataset's label values (or ``None``
    when its labels cannot be mapped), to count the voxels a correction changed."""
    from NNSegLib.data.add_case import label_value_map, remap_labels
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.data.seg_nrrd import is_seg_nrrd, read_seg_nrrd

    if is_seg_nrrd(entry.segmentation):
        labels, _geo, names = read_seg_nrrd(entry.segmentation)
    else:
        labels, _geo = SimpleITKIO().read(entry.segmentation)
        names = model_labels
    try:
        return remap_labels(labels, label_value_map(names, dataset_labels))
    except NNSegError:
        return None


def added_case_provenance(batch_dir: Path | str, entry: QueueEntry, labels: np.ndarray,
                          dataset_labels: dict[str, int]) -> dict[str, Any]:
    """Provenance of a reviewed case for ``nnseg_provenance.json``.

    ``origin`` is ``corrected_prediction`` when ``labels`` (dataset values) differ from the
    batch's prediction, else ``accepted_prediction``; ``changed_voxels`` counts the
    difference (``None`` when the prediction's grid differs).
    """
    from NNSegLib.data.add_case import CORRECTED_PREDICTION

    predicted = prediction_in_dataset_values(entry, queue_label_names(batch_dir),
                                             dataset_labels)
    changed = None
    if predicted is not None and predicted.shape == np.shape(labels):
        changed = int(np.count_nonzero(predicted != np.asarray(labels)))
    origin = CORRECTED_PREDICTION if changed is None or changed else "accepted_prediction"
    return {"origin": origin, "changed_voxels": changed, "model": queue_model(batch_dir),
            "batch": str(Path(batch_dir).resolve()), "batch_case": entry.case,
            "review_state": entry.state}


def add_reviewed_case(batch_dir: Path | str, case: str, dataset: Path | str,
                      label_file: Path | str | None = None, identifier: str | None = None,
                      replace: bool = False) -> Any:
    """Add a reviewed case of the batch (files) to a raw dataset and note it in the queue.

    Args:
        batch_dir: The batch folder.
        case: The queue's case.
        dataset: Raw training dataset.
        label_file: The corrected label map (``.seg.nrrd`` with segment names, or a label
            image with the model's values); default: the batch's segmentation as it is.
        identifier: Case name in the dataset (default: the batch's case name).
        replace: Replace a dataset case of that name.

    Returns:
        The :class:`~NNSegLib.data.add_case.AddedCase`.
    """
    from NNSegLib.data.add_case import add_case, label_value_map, read_label_file, remap_labels
    from NNSegLib.data.dataset import load_dataset_json
    from NNSegLib.data.io import SimpleITKIO

    entry = get_entry(batch_dir, case)
    spec = load_dataset_json(dataset)
    source = Path(label_file) if label_file is not None else entry.segmentation
    labels, geometry, names = read_label_file(source, spec, queue_label_names(batch_dir))
    mapping = label_value_map(names, spec.labels, spec.root / "dataset.json")
    in_dataset = remap_labels(labels, mapping, str(source))
    reads = [SimpleITKIO().read(p) for p in entry.images]
    provenance = added_case_provenance(batch_dir, entry, in_dataset, spec.labels)
    provenance["source_label"] = str(source.resolve())
    added = add_case(dataset, identifier or entry.case, [a for a, _ in reads],
                     [g for _, g in reads], labels, geometry, names, replace=replace,
                     provenance=provenance)
    record_added(batch_dir, case, {"dataset": str(Path(dataset).resolve()),
                                   "case": added.identifier, "origin": provenance["origin"],
                                   "changed_voxels": provenance["changed_voxels"]})
    return added


# --- CLI --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnseg review``."""
    parser.add_argument("batch", type=Path, help="batch folder (written by nnseg segment-batch)")
    parser.add_argument("--mark", nargs=2, metavar=("CASE", "STATE"), default=None,
                        help=f"set a case's state: {', '.join(STATES)}")
    parser.add_argument("--add", metavar="CASE", default=None,
                        help="add CASE (images + segmentation, or --label) to --dataset")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="raw training dataset for --add")
    parser.add_argument("--label", type=Path, default=None,
                        help="--add: the corrected label map (default: the batch's "
                             "segmentation as it is)")
    parser.add_argument("--name", default=None, help="--add: case name in the dataset")
    parser.add_argument("--replace", action="store_true",
                        help="--add: replace a dataset case of that name")
    parser.add_argument("--region", metavar="CASE", default=None,
                        help="print CASE's most uncertain region (voxel, RAS, box)")


def run(args: argparse.Namespace, progress: Progress) -> int:
    """``nnseg review``: print the ranked queue (after a mark or add, if asked)."""
    import sys

    progress.close()
    out = sys.stderr if getattr(args, "progress_json", None) == "-" else sys.stdout
    if args.mark:
        entry = mark_case(args.batch, args.mark[0], args.mark[1])
        print(f"{entry.case}: {entry.state}", file=out)
    if args.add:
        if args.dataset is None:
            raise NNSegError("--add needs --dataset DATASET")
        added = add_reviewed_case(args.batch, args.add, args.dataset, args.label, args.name,
                                  args.replace)
        print(f"{args.add} → {args.dataset}: case {added.identifier} "
              f"({'replaced' if added.replaced else 'added'}; {added.num_training} training "
              "cases)", file=out)
    if args.region:
        entry = get_entry(args.batch, args.region)
        region = entry.stats.region if entry.stats else None
        if region is None:
            print(f"{entry.case}: certain everywhere", file=out)
        else:
            ras = ", ".join(f"{v:.1f}" for v in region.center_ras)
            print(f"{entry.case}: voxel (z, y, x) {region.center_ijk}, RAS ({ras}) mm, "
                  f"box {region.box_ijk}, mean entropy {region.mean_uncertainty:.3f}", file=out)
    header, rows = queue_table(args.batch)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
    progress.event("review", header=header, rows=rows)
    return 0


__all__ = ["ACCEPTED", "NEEDS_CORRECTION", "PENDING", "QUEUE_FILE", "QUEUE_FORMAT",
           "QUEUE_VERSION", "QueueEntry", "STATES", "add_arguments", "add_reviewed_case",
           "added_case_provenance", "entry_from_dict", "get_entry", "load_entries",
           "mark_case", "new_document", "prediction_in_dataset_values", "queue_label_names",
           "queue_model", "queue_path", "queue_table", "ranked_entries", "read_document",
           "record_added", "run", "stored_path", "update_document"]
