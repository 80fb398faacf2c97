"""METHOD §8: segment a batch of cases for review (the engine of ``nnseg segment-batch``).

:func:`segment_batch` segments every case with one loaded model (one progress stream: a
``segment-batch`` stage per case, patch progress below it; cancellation between patches)
and writes into the batch folder, per case:

* the segmentation, through a :data:`LabelWriter`: ``<case>.seg.nrrd`` when the caller
  passes the MRML writer (:mod:`NNSegLib.slicer.batch_job` does when ``slicer-core`` is
  importable), else :func:`write_label_image`, a label map in the input's format
  (``<case><ending>``, as ``nnseg predict`` writes);
* ``<case>_uncertainty<ending>``: the normalized entropy (float32);
* its entry in ``review_queue.json`` (:mod:`.review_queue`) with the uncertainty summary,
  written as soon as the case is done.

A batch interrupted (cancelled, crashed) is continued by running the same command again:
cases whose entry and files exist are skipped. A batch folder made by another model (path,
version, configuration, folds or TTA differ) is refused unless ``overwrite``; the queue is
then started afresh.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.inference.case_uncertainty import DEFAULT_THRESHOLD, summarize_uncertainty
from NNSegLib.inference.loaded_model import LoadedModel
from NNSegLib.inference.predict import InputCase, predict_case
from NNSegLib.inference.review_queue import (
    PENDING,
    new_document,
    now,
    queue_path,
    read_document,
    stored_path,
    update_document,
)
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress, child_progress

#: ``writer(labels, geometry, label_names, batch_dir, case, ending, model) -> path written``
LabelWriter = Callable[[np.ndarray, Geometry, dict, Path, str, str, dict], Path]


def write_label_image(labels: np.ndarray, geometry: Geometry, label_names: dict[int, str],
                      batch_dir: Path, case: str, ending: str, model: dict) -> Path:
    """The default :data:`LabelWriter`: ``<case><ending>``, a label map like ``nnseg predict``."""
    from NNSegLib.data.io import SimpleITKIO

    ending = ".nii.gz" if ending in (".seg.nrrd", ".mhd") else ending
    path = Path(batch_dir) / f"{case}{ending}"
    SimpleITKIO().write(labels, geometry, path)
    return path


def model_record(model: LoadedModel, model_path: Path | str) -> dict[str, Any]:
    """What the queue records about the model (and compares before continuing a batch)."""
    from NNSegLib import __version__
    from NNSegLib.util.model_folder import ModelFolder

    identity = ModelFolder(Path(model_path)).identity()
    return {"path": str(Path(model_path).resolve()), "name": identity["name"],
            "version": identity["version"], "configurations": list(model.configurations),
            "folds": list(model.folds), "tta": bool(model.settings.mirror_axes),
            "software": __version__}


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("path", "version", "configurations", "folds", "tta")
    return all(a.get(k) == b.get(k) for k in keys)


def _start_queue(batch_dir: Path, record: dict[str, Any], label_names: dict[int, str],
                 threshold: float, overwrite: bool) -> set[str]:
    """Create or check the queue; returns the cases already done."""
    existing = read_document(batch_dir, missing_ok=True)
    if existing is not None and not overwrite:
        if not _same_model(existing.get("model", {}), record):
            old = existing.get("model", {})
            raise NNSegError(f"{queue_path(batch_dir)}: this batch was segmented by "
                             f"{old.get('name')} {old.get('version')} ({old.get('path')}); "
                             "segment into a new folder or pass --overwrite to start again")
        return {c for c, d in existing["cases"].items() if _files_exist(batch_dir, d)}

    def fresh(_data: dict[str, Any] | None) -> dict[str, Any]:
        return new_document(record, label_names, threshold)

    update_document(batch_dir, fresh)
    return set()


def _files_exist(batch_dir: Path, entry: dict[str, Any]) -> bool:
    names = [entry.get("segmentation"), entry.get("uncertainty")]
    return all(n and (Path(n) if Path(n).is_absolute() else batch_dir / n).is_file()
               for n in names)


def segment_batch(cases: Sequence[InputCase], batch_dir: Path | str, model: LoadedModel,
                  model_path: Path | str, *, write_labels: LabelWriter | None = None,
                  threshold: float = DEFAULT_THRESHOLD, overwrite: bool = False,
                  progress=None) -> list[str]:
    """Segment ``cases`` into ``batch_dir`` for review (see the module doc).

    Args:
        cases: Input cases (:func:`~NNSegLib.inference.predict.collect_cases`).
        batch_dir: Output folder (created).
        model: The loaded model.
        model_path: Its folder (recorded in the queue and the segments' tags).
        write_labels: Writes a case's segmentation; default :func:`write_label_image`.
        threshold: Entropy from which a voxel counts as uncertain.
        overwrite: Start the queue afresh even if another model made it.
        progress: Progress sink with cancellation.

    Returns:
        The cases segmented now (not those skipped).
    """
    from NNSegLib.data.io import read_channels

    batch = Path(batch_dir)
    batch.mkdir(parents=True, exist_ok=True)
    writer = write_labels or write_label_image
    record = model_record(model, model_path)
    names = {v: k for k, v in model.labels.items()}
    done = _start_queue(batch, record, names, threshold, overwrite)
    patches = _patch_progress(progress)
    if progress is not None:
        progress.start("segment-batch", len(cases))
    segmented = []
    for case in cases:
        if progress is not None:
            progress.check_cancelled()
        if case.identifier in done:
            if progress is not None:
                progress.advance(case=case.identifier, skipped=True)
            continue
        started = time.monotonic()
        images, geometry = read_channels(list(case.images))
        result = predict_case(images, geometry, model, uncertainty=True, progress=patches)
        assert result.uncertainty is not None
        seg = writer(result.labels, geometry, names, batch, case.identifier, case.ending, record)
        unc = _write_uncertainty(result.uncertainty, geometry, batch, case)
        stats = summarize_uncertainty(result.labels, result.uncertainty, geometry, names,
                                      threshold)
        _add_entry(batch, case, seg, unc, stats.to_dict(), time.monotonic() - started)
        segmented.append(case.identifier)
        if progress is not None:
            progress.advance(case=case.identifier, score=stats.score)
    if patches is not None and patches is not progress:
        patches.close()
    if progress is not None:
        progress.done(segmented=len(segmented), skipped=len(cases) - len(segmented),
                      queue=str(queue_path(batch)))
    return segmented


def _patch_progress(progress: Any) -> Any:
    """Patch progress with its own stage and counters, into the same listeners: one stream
    in which the per-case events keep their ``segment-batch`` stage and totals."""
    if progress is None:
        return None
    child = child_progress(progress)
    if child is not progress:
        return child
    return Progress(progress.cancel_token, progress.listeners)


def _write_uncertainty(uncertainty: np.ndarray, geometry: Geometry, batch: Path,
                       case: InputCase) -> Path:
    from NNSegLib.data.io import SimpleITKIO

    ending = case.ending if case.ending not in (".seg.nrrd", ".mhd") else ".nii.gz"
    path = batch / f"{case.identifier}_uncertainty{ending}"
    SimpleITKIO().write(uncertainty.astype(np.float32), geometry, path)
    return path


def _add_entry(batch: Path, case: InputCase, segmentation: Path, uncertainty: Path,
               stats: dict[str, Any], seconds: float) -> None:
    entry = {"state": PENDING, "images": [stored_path(batch, p) for p in case.images],
             "segmentation": stored_path(batch, segmentation),
             "uncertainty": stored_path(batch, uncertainty), "stats": stats,
             "seconds": round(seconds, 3), "added_to_dataset": None, "updated": now()}

    def change(data: dict[str, Any] | None) -> dict[str, Any]:
        if data is None:
            raise NNSegError(f"{queue_path(batch)}: the review queue disappeared during the "
                             "batch")
        data["cases"][case.identifier] = entry
        return data

    update_document(batch, change)


def batch_inputs(inputs: Sequence[Path | str], num_channels: int) -> list[InputCase]:
    """The input cases of a batch: :func:`~NNSegLib.inference.predict.collect_cases` over the
    inputs, leaving out segmentations and uncertainty maps a folder may also hold."""
    from NNSegLib.data.io import SUPPORTED_ENDINGS, file_ending
    from NNSegLib.data.seg_nrrd import is_seg_nrrd
    from NNSegLib.inference.predict import collect_cases

    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file()
                            and file_ending(p) in SUPPORTED_ENDINGS and not is_seg_nrrd(p)
                            and not p.name[: -len(file_ending(p))].endswith("_uncertainty"))
        else:
            files.append(item)
    if not files:
        raise NNSegError(f"no input images found in {', '.join(str(p) for p in inputs)}")
    return collect_cases(files, num_channels)


__all__ = ["LabelWriter", "batch_inputs", "model_record", "segment_batch", "write_label_image"]
