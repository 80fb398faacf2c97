"""The *Batch and review* panel (METHOD §8): batch job, review table, review session, add.

Everything the panel decides, without ``qt``:

* :func:`start_batch` — the batch job's command lines for a folder or for the checked
  scene volumes (one case per volume), remembering which scene volumes became which case;
* :func:`batch_input_problem`, :func:`batch_folder_problem` — why *Segment batch* is
  disabled (no inputs; a batch folder another model made, which ``nnseg segment-batch``
  would refuse);
* :func:`review_table` — the ranked queue (``review_queue.json``: it survives restarts);
* :class:`ReviewSession` — the case being reviewed: clicking a row loads it (segmentation,
  uncertainty overlay, slice views on the most uncertain region); switching to another case
  removes the previous case's nodes unless its segmentation was edited and not added since;
* :func:`suggest_dataset_name`, :func:`add_decision` — the name a reviewed case gets in the
  training dataset, and whether adding it would replace a case (asked first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.slicer.folders import is_unset
from NNSegLib.slicer.scene import mrml
from NNSegLib.util.i18n import tr

#: The panel's input choices (``batchSource`` of the parameter node).
SOURCES = ("folder", "scene volumes")


@dataclass
class ReviewTable:
    """The queue as the panel's table shows it: ``cases[row]`` is the row's case."""

    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)


def review_table(batch: Path | str | None) -> ReviewTable:
    """The ranked queue of a batch folder (empty when it has none yet)."""
    from NNSegLib.inference.review_queue import queue_path, queue_table

    if is_unset(batch) or not queue_path(Path(str(batch))).is_file():
        return ReviewTable()
    header, rows = queue_table(Path(str(batch)))
    return ReviewTable(header, rows, [r[1] for r in rows])


# ----------------------------------------------------------------------------------------
# The batch job
# ----------------------------------------------------------------------------------------
def scene_cases(volumes: Sequence[Any], channels: int | None) -> list[list[Any]]:
    """Checked scene volumes as cases: one single-channel case per volume.

    Raises:
        NNSegError: for a multi-channel model (which volumes belong together is not known).
    """
    from NNSegLib.util.errors import NNSegError

    if (channels or 1) > 1:
        raise NNSegError(tr(
            "This model needs {n} channels per case: segment a folder of <case>_0000, "
            "<case>_0001 … files instead of scene volumes.", n=channels))
    return [[v] for v in volumes if v is not None]


def batch_input_problem(source: str, input_folder: Path | str | None, volumes: Sequence[Any],
                        channels: int | None) -> str | None:
    """Why the batch has no valid input yet (``None`` when it has)."""
    from NNSegLib.data.io import SUPPORTED_ENDINGS, file_ending
    from NNSegLib.util.errors import NNSegError

    if source == SOURCES[1]:
        try:
            cases = scene_cases(volumes, channels)
        except NNSegError as e:
            return str(e)
        return None if cases else tr("Check the scene volumes to segment.")
    if is_unset(input_folder):
        return tr("Choose the input folder.")
    folder = Path(str(input_folder))
    if not folder.is_dir():
        return tr("The input folder {folder} does not exist.", folder=folder)
    if not any(p.is_file() and file_ending(p) in SUPPORTED_ENDINGS for p in folder.iterdir()):
        return tr("The input folder has no images ({endings}).",
                  endings=", ".join(sorted(SUPPORTED_ENDINGS)))
    return None


def _queue_model(batch: Path) -> dict[str, Any] | None:
    from NNSegLib.inference.review_queue import read_document
    from NNSegLib.util.errors import NNSegError

    try:
        data = read_document(batch, missing_ok=True)
    except NNSegError:
        return None
    return None if data is None else dict(data.get("model") or {})


def batch_folder_problem(batch: Path | str | None, model_path: Path | str | None) -> str | None:
    """Why the batch folder cannot take this model's batch (``None`` when it can).

    A batch folder holds the cases of one model: continuing it with another model folder or
    version is refused by ``nnseg segment-batch`` (it would mix two models in one queue).
    """
    from NNSegLib.util.model_folder import ModelFolder

    if is_unset(batch):
        return tr("Choose the batch folder.")
    batch = Path(str(batch))
    recorded = _queue_model(batch)
    if not recorded or is_unset(model_path):
        return None
    model = Path(str(model_path))
    model = batch / "model" if model.suffix.lower() == ".zip" else model
    version = ModelFolder(model).identity()["version"] if model.is_dir() else None
    same = str(model.resolve()) == recorded.get("path") and version in (None,
                                                                        recorded.get("version"))
    if same:
        return None
    return tr("This batch folder was segmented by {name} {version} ({path}); choose another "
              "(or a new) batch folder for this model.", name=recorded.get("name", "?"),
              version=recorded.get("version", "?"), path=recorded.get("path", "?"))


def describe_batch(batch: Path | str | None) -> str:
    """One line on the batch folder's queue: cases, states, model."""
    from collections import Counter

    from NNSegLib.inference.review_queue import load_entries

    if is_unset(batch):
        return ""
    batch = Path(str(batch))
    model = _queue_model(batch)
    if model is None:
        return tr("No review queue in this folder yet: Segment batch starts one.")
    entries = load_entries(batch)
    states = Counter(e.state for e in entries)
    added = sum(1 for e in entries if e.added_to_dataset)
    return tr("{n} case(s) by {name} {version}: {pending} pending, {accepted} accepted, "
              "{corrections} need correction, {added} added to a dataset.", n=len(entries),
              name=model.get("name", "?"), version=model.get("version", "?"),
              pending=states["pending"], accepted=states["accepted"],
              corrections=states["needs_correction"], added=added)


def start_batch(session: ReviewSession, source: str, input_folder: Path | str | None,
                volumes: Sequence[Any], batch_dir: Path | str, model_path: Path | str,
                folds: str = "", device: str = "auto", tta: bool = True,
                allow_unfinished: bool = False, channels: int | None = 1) -> dict[str, Any]:
    """Build the batch job (scene volumes are written into ``<batch>/images`` now).

    Returns:
        :func:`~NNSegLib.slicer.batch_job.folder_batch`'s or
        :func:`~NNSegLib.slicer.batch_job.prepare_scene_batch`'s result (``batch``,
        ``steps``).
    """
    from NNSegLib.slicer import batch_job

    if source == SOURCES[1]:
        cases = scene_cases(volumes, channels)
        job = batch_job.prepare_scene_batch(cases, batch_dir, model_path, folds, device, tta,
                                            allow_unfinished=allow_unfinished)
        session.remember_scene_volumes(job["batch"], job["cases"], cases)
        return job
    return batch_job.folder_batch(Path(str(input_folder)), batch_dir, model_path, folds, device,
                                  tta, allow_unfinished=allow_unfinished)


# ----------------------------------------------------------------------------------------
# Adding a reviewed case to the dataset
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddDecision:
    """``add`` (a new case), ``ask`` (it would replace a case: the question) or ``refuse``."""

    action: str
    reason: str = ""


def suggest_dataset_name(dataset: Path | str | None, entry: Any) -> str:
    """The case's name in the dataset: the one it was added under before (adding again
    replaces it, after asking), else the batch's name made free in the dataset."""
    from NNSegLib.data.add_case import free_case_name

    if is_unset(dataset) or not (Path(str(dataset)) / "dataset.json").is_file():
        return entry.case
    added = entry.added_to_dataset or {}
    if added.get("case") and added.get("dataset") == str(Path(str(dataset)).resolve()):
        return str(added["case"])
    return free_case_name(Path(str(dataset)), entry.case)


def add_decision(dataset: Path | str, identifier: str) -> AddDecision:
    """May the reviewed case be written as ``identifier`` without asking?"""
    from NNSegLib.data.add_case import check_case_name, existing_case_files
    from NNSegLib.data.dataset import load_dataset_json
    from NNSegLib.util.errors import NNSegError

    try:
        check_case_name(identifier)
        files = existing_case_files(load_dataset_json(Path(str(dataset))), identifier)
    except NNSegError as e:
        return AddDecision("refuse", str(e))
    if files:
        return AddDecision("ask", tr(
            "The dataset already has a case '{name}' ({n} file(s)). Replace it with this "
            "segmentation?", name=identifier, n=len(files)))
    return AddDecision("add")


# ----------------------------------------------------------------------------------------
# The case under review
# ----------------------------------------------------------------------------------------
def _alive(scene: Any, node: Any) -> bool:
    return node is not None and scene.GetNodeByID(node.GetID()) is node


@dataclass
class _Loaded:
    case: Any                      # scene_review.ReviewCase
    loaded_volumes: bool           # the volumes were read from the batch's files
    fingerprint: str               # of the segmentation as loaded
    added_fingerprint: str | None = None


class ReviewSession:
    """The review panel's state in the scene: which batch case is shown."""

    def __init__(self) -> None:
        self.batch: Path | None = None
        self.current: _Loaded | None = None
        self.kept: dict[tuple[str, str], _Loaded] = {}
        self.scene_volumes: dict[tuple[str, str], list[str]] = {}

    def remember_scene_volumes(self, batch: Path | str, cases: Sequence[str],
                               volumes: Sequence[Sequence[Any]]) -> None:
        """Cases made from scene volumes: reviewing them shows those volumes."""
        for case, channels in zip(cases, volumes):
            self.scene_volumes[(str(Path(batch).resolve()), case)] = [v.GetID()
                                                                       for v in channels]

    def current_case(self, scene: Any) -> str | None:
        """The case shown, while its segmentation node is still in the scene."""
        if self.current is None or not _alive(scene, self.current.case.segmentation):
            return None
        return str(self.current.case.entry.case)

    def open(self, scene: Any, batch: Path | str, case: str, opacity: float = 0.5) -> Any:
        """Show a queue case: segmentation, uncertainty overlay, views on its most uncertain
        region. Returns its :class:`~NNSegLib.slicer.scene.review.ReviewCase`."""
        from NNSegLib.slicer.scene.review import jump_to_region, load_review_case
        from NNSegLib.slicer.segment_run import content_fingerprint

        batch = Path(str(batch))
        if self.current is not None and (self.batch != batch
                                         or self.current.case.entry.case != case):
            self.close(scene)
        self.batch = batch
        loaded = self.current or self.kept.pop((str(batch), case), None)
        if loaded is None or not _alive(scene, loaded.case.segmentation):
            ids = self.scene_volumes.get((str(batch.resolve()), case), [])
            volumes = [scene.GetNodeByID(i) for i in ids]
            volumes_ok = bool(volumes) and all(v is not None for v in volumes)
            rc = load_review_case(scene, batch, case, volumes if volumes_ok else None)
            loaded = _Loaded(rc, not volumes_ok, content_fingerprint(scene, rc.segmentation))
        self.current = loaded
        self.set_opacity(scene, opacity)
        stats = loaded.case.entry.stats
        jump_to_region(scene, stats.region if stats is not None else None)
        return loaded.case

    def set_opacity(self, scene: Any, opacity: float) -> None:
        """The uncertainty overlay's opacity (the panel's slider)."""
        from NNSegLib.slicer.scene.review import show_uncertainty_overlay

        if self.current is not None and _alive(scene, self.current.case.volumes[0]):
            rc = self.current.case
            unc = rc.uncertainty if _alive(scene, rc.uncertainty) else None
            show_uncertainty_overlay(scene, rc.volumes[0], unc, opacity)

    def mark(self, state: str) -> Any:
        """Set the current case's review state in the queue file."""
        from NNSegLib.inference.review_queue import mark_case

        assert self.current is not None and self.batch is not None
        self.current.case.entry = mark_case(self.batch, self.current.case.entry.case, state)
        return self.current.case.entry

    def add(self, scene: Any, dataset: Path | str, identifier: str, replace: bool = False
            ) -> Any:
        """Write the current case, as edited, into the training dataset.

        Raises:
            NNSegError: with the message to show (unknown segment names, a failed check, an
                existing case without ``replace`` …); nothing is written then.
        """
        from NNSegLib.inference.review_queue import get_entry
        from NNSegLib.slicer.scene.review import add_corrected_case
        from NNSegLib.slicer.segment_run import content_fingerprint

        assert self.current is not None and self.batch is not None
        rc = self.current.case
        added = add_corrected_case(scene, self.batch, rc.entry.case, rc.segmentation,
                                   Path(str(dataset)), volumes=rc.volumes,
                                   identifier=identifier, replace=replace)
        self.current.added_fingerprint = content_fingerprint(scene, rc.segmentation)
        rc.entry = get_entry(self.batch, rc.entry.case)
        return added

    def close(self, scene: Any) -> None:
        """Leave the current case: its nodes go unless the segmentation holds edits that were
        not added to the dataset (then they stay, and reopening the case shows them)."""
        from NNSegLib.slicer.segment_run import content_fingerprint

        loaded, self.current = self.current, None
        if loaded is None or not _alive(scene, loaded.case.segmentation):
            return
        rc = loaded.case
        now = content_fingerprint(scene, rc.segmentation)
        if now not in (loaded.fingerprint, loaded.added_fingerprint):
            self.kept[(str(self.batch), str(rc.entry.case))] = loaded
            return
        nodes = [rc.segmentation, rc.uncertainty] + (rc.volumes if loaded.loaded_volumes else [])
        for node in nodes:
            if _alive(scene, node):
                mrml.remove_node(scene, node)

    def reset(self) -> None:
        """The scene was closed: forget every node."""
        self.current, self.kept, self.scene_volumes = None, {}, {}


__all__ = ["AddDecision", "ReviewSession", "ReviewTable", "SOURCES", "add_decision",
           "batch_folder_problem", "batch_input_problem", "describe_batch", "review_table",
           "scene_cases", "start_batch", "suggest_dataset_name"]
