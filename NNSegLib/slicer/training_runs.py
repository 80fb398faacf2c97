"""Find the training runs of a work folder and say what state each is in.

After a restart of Slicer (or when a work folder is opened on another computer) the Train
panel lists every ``results/<configuration>/fold_<k>/`` that has a ``log.jsonl``: its epochs,
last loss and pseudo Dice, and whether it is

* ``running`` — a recorded background job (:mod:`NNSegLib.jobs.detached`) is
  training it now, or its log was written moments ago (a ``nnseg train`` in a terminal);
* ``queued`` — a later command of a running job;
* ``finished`` — the final checkpoint exists;
* ``interrupted`` — stopped before the end with a checkpoint to *Resume* from;
* ``not started`` — nothing to resume from.

Plain files only (no ``qt``, no MRML); the chart is drawn from :func:`chart_records`.
"""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import read_json
from NNSegLib.util.model_folder import CHECKPOINT_BEST, RunFolder
from NNSegLib.util.workspace import Workspace

#: A log written this recently (seconds, at least) counts as a run in progress elsewhere.
FRESH_LOG_SECONDS = 120.0


class RunState(enum.Enum):
    RUNNING = "running"
    QUEUED = "queued"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    NOT_STARTED = "not started"


@dataclass
class TrainingRun:
    """One fold's training as found in the work folder."""

    configuration: str
    fold: str
    path: Path
    state: RunState
    epochs: int = 0
    max_epochs: int | None = None
    last: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    job: Path | None = None

    @property
    def can_resume(self) -> bool:
        """Interrupted with a checkpoint to continue from."""
        run = RunFolder(self.path)
        return self.state is RunState.INTERRUPTED and (run.latest.is_file()
                                                       or run.best.is_file())

    @property
    def key(self) -> tuple[str, str]:
        return self.configuration, self.fold

    def describe(self) -> str:
        """One line: ``3d_fullres fold 0: interrupted at epoch 12/1000, loss …, Dice …``."""
        from NNSegLib.util.i18n import tr

        total = f"/{self.max_epochs}" if self.max_epochs else ""
        text = tr("{configuration} fold {fold}: {state}, epoch {epoch}{total}",
            configuration=self.configuration, fold=self.fold, state=tr(self.state.value),
            epoch=self.epochs, total=total)
        if self.last.get("train_loss") is not None:
            text += tr(", loss {loss:.4f}", loss=float(self.last["train_loss"]))
        dice = self.last.get("ema_pseudo_dice")
        if dice is not None:
            text += tr(", pseudo Dice {dice:.3f}", dice=float(dice))
        if self.stop_reason and self.state is not RunState.RUNNING:
            text += f" ({self.stop_reason})"
        return text


def find_runs(work: Path | str, jobs: Sequence[Any] = (), now: float | None = None
              ) -> list[TrainingRun]:
    """Every run folder of the work folder that has a training log, configurations sorted.

    Args:
        work: The work folder.
        jobs: Running background jobs (:class:`~NNSegLib.jobs.detached.FileJob`);
            the runs their commands train are ``running``/``queued``.
        now: The current time (tests).
    """
    ws = Workspace(Path(work))
    active = _runs_of_jobs(jobs)
    now = time.time() if now is None else now
    keys = set(active)
    if ws.results.is_dir():
        for config_dir in (p for p in ws.results.iterdir() if p.is_dir()):
            keys |= {(r.configuration, r.fold) for r in ws.model.runs(config_dir.name)
                     if r.log.is_file()}
    runs = [describe_run(ws.run(config, fold), active, now) for config, fold in keys]
    return sorted(runs, key=lambda r: (r.configuration, _fold_order(r.fold)))


def _fold_order(fold: str) -> tuple:
    return (not fold.isdigit(), int(fold) if fold.isdigit() else 0, fold)


def describe_run(run: RunFolder, active: dict[tuple[str, str], tuple[Path, bool]] | None = None,
                 now: float | None = None) -> TrainingRun:
    """The state of one run folder (see the module doc)."""
    from NNSegLib.training.training_log import TrainingLog
    from NNSegLib.util.errors import NNSegError

    try:
        records = TrainingLog.load(run.path).records if run.log.is_file() else []
    except NNSegError:
        records = []
    last = records[-1] if records else {}
    info = TrainingRun(run.configuration, run.fold, run.path, RunState.NOT_STARTED,
                       epochs=int(last.get("epoch", -1)) + 1 if last else 0, last=last,
                       max_epochs=_max_epochs(run), stop_reason=_stop_reason(run))
    job = (active or {}).get((run.configuration, run.fold))
    if job is not None:
        info.job = job[0]
        info.state = RunState.RUNNING if job[1] else RunState.QUEUED
    elif run.is_finished:
        info.state = RunState.FINISHED
    elif _fresh(run, last, time.time() if now is None else now):
        info.state = RunState.RUNNING
    elif run.latest.is_file() or (run.path / CHECKPOINT_BEST).is_file():
        info.state = RunState.INTERRUPTED
    return info


def _runs_of_jobs(jobs: Sequence[Any]) -> dict[tuple[str, str], tuple[Path, bool]]:
    """``(configuration, fold) → (record folder, is the current step)`` of train commands."""
    out: dict[tuple[str, str], tuple[Path, bool]] = {}
    for job in jobs:
        current = job.current_step
        for index, step in enumerate(job.steps):
            if index < current or len(step) < 4 or step[0] != "train":
                continue
            out[(str(step[2]), str(step[3]))] = (job.folder, index == current)
    return out


def _max_epochs(run: RunFolder) -> int | None:
    if not run.run_config.is_file():
        return None
    try:
        value = read_json(run.run_config, expect=dict).get("max_epochs")
    except Exception:  # a broken run config is reported by `nnseg train` itself
        return None
    return int(value) if isinstance(value, (int, float)) else None


def _stop_reason(run: RunFolder) -> str | None:
    path = run.path / "training_summary.json"
    if not path.is_file():
        return None
    try:
        reason = read_json(path, expect=dict).get("stop_reason")
    except Exception:
        return None
    return str(reason) if reason else None


def _fresh(run: RunFolder, last: dict[str, Any], now: float) -> bool:
    """The log was rewritten within ~3 epochs (at least :data:`FRESH_LOG_SECONDS`)."""
    try:
        age = now - os.path.getmtime(run.log)
    except OSError:
        return False
    epoch_time = float(last.get("epoch_time") or 0.0)
    return age < max(FRESH_LOG_SECONDS, 3 * epoch_time)


def chart_records(run: TrainingRun | RunFolder | Path) -> list[dict[str, Any]]:
    """The epoch records of a run (for the loss/Dice chart), ``[]`` when unreadable."""
    from NNSegLib.training.training_log import TrainingLog
    from NNSegLib.util.errors import NNSegError

    path = run.path if isinstance(run, (TrainingRun, RunFolder)) else Path(run)
    try:
        return TrainingLog.load(path).records
    except NNSegError:
        return []


def resume_choice(runs: Sequence[TrainingRun], configuration: str) -> list[str]:
    """Folds of ``configuration`` that *Resume* would continue, in fold order."""
    return [r.fold for r in runs if r.configuration == configuration and r.can_resume]


def started_folds(runs: Sequence[TrainingRun], configuration: str) -> list[str]:
    """Folds of ``configuration`` that hold a checkpoint (a new run there is refused)."""
    return [r.fold for r in runs if r.configuration == configuration
            and RunFolder(r.path).checkpoint() is not None]


def describe_runs(runs: Sequence[TrainingRun]) -> str:
    """The Train panel's run list: one line per run, or a hint when there is none."""
    from NNSegLib.util.i18n import tr

    if not runs:
        return tr("No training runs in this work folder yet.")
    return "\n".join(r.describe() for r in runs)


def previous_stage(dataset: Path | str, work: Path | str | None, configuration: str
                   ) -> tuple[str, list[RunFolder]] | None:
    """``(previous stage, its run folders)`` when the plan makes ``configuration`` a
    cascade stage, else ``None`` (also when there is no plan yet)."""
    from NNSegLib.data.splits import DEFAULT_FOLDS, load_splits
    from NNSegLib.planning.plans import Plans
    from NNSegLib.util.workspace import Workspace

    ws = Workspace.for_dataset(dataset, work if work not in ("", None) else None)
    if not ws.plans.is_file():
        return None
    try:
        prev = Plans.load(ws.plans).configuration(configuration).previous_stage
    except (KeyError, NNSegError):
        return None
    if not prev:
        return None
    try:
        n_folds = len(load_splits(ws.splits)) if ws.splits.is_file() else DEFAULT_FOLDS
    except NNSegError:   # a broken splits file is reported by the training command itself
        n_folds = DEFAULT_FOLDS
    return prev, [ws.run(prev, k) for k in range(n_folds)]


__all__ = ["FRESH_LOG_SECONDS", "RunState", "TrainingRun", "chart_records", "describe_run",
           "describe_runs", "find_runs", "previous_stage", "resume_choice", "started_folds"]
