"""The Slicer module's logic without ``qt``: the five panels put together.

``NNSeg.py``'s ``NNSegLogic.lib`` is a :class:`ModuleLogic` (imported on first use, because
the Slicer module loads before NNSegLib's dependencies are installed). A panel's controller
calls its own panel module through it (``lib.train.train_request_commands(request)``,
``lib.segment.capture_segment(…)``); what needs the module's state lives here: the
interpreter background jobs run, the folder memo, and the whole module's view (every
button's rule, the inputs that apply, the locks of the running jobs). None of the modules
imported here imports torch, SimpleITK or MRML when imported, so importing this is cheap.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from NNSegLib.jobs import board, process, texts
from NNSegLib.jobs import detached as file_jobs
from NNSegLib.jobs.base import CommandStep
from NNSegLib.slicer import devices, folder_memo, folders, segment_sequence
from NNSegLib.slicer.panels import common, dataset, plan, review, segment, train

#: Widgets (``NNSeg.ui`` object names) each running job locks.
LOCKS: dict[str, list[str]] = {**plan.LOCKS, **train.LOCKS, **segment.LOCKS, **review.LOCKS}
#: Every widget some job locks.
LOCKABLE = frozenset(name for names in LOCKS.values() for name in names)


@dataclass
class ModuleState:
    """Every panel's state: what the whole module's rules look at."""

    shared: common.Shared = field(default_factory=common.Shared)
    dataset: dataset.DatasetState = field(default_factory=dataset.DatasetState)
    plan: plan.PlanState = field(default_factory=plan.PlanState)
    train: train.TrainState = field(default_factory=train.TrainState)
    segment: segment.SegmentState = field(default_factory=segment.SegmentState)
    review: review.ReviewState = field(default_factory=review.ReviewState)


def module_view(state: ModuleState) -> common.View:
    """The five panels' views in one: every rule-driven button, input and text."""
    s, out = state, common.View()
    for part in (dataset.view(s.dataset, s.shared), plan.view(s.plan, s.shared),
                 train.view(s.train, s.shared), segment.view(s.segment, s.shared),
                 review.view(s.review, s.shared)):
        out.rules.update(part.rules)
        out.inputs.update(part.inputs)
        out.texts.update(part.texts)
    return out


def locked_widgets(running: Iterable[str]) -> set[str]:
    """Object names of the widgets to disable while the ``running`` jobs run."""
    return common.locked_widgets(LOCKS, running)


class ModuleLogic:
    """The panels' logic: one NNSegLib module per panel, plus what needs state.

    Args:
        python: The interpreter background jobs run (``PythonSlicer`` in Slicer).
    """

    dataset, plan, train, segment, review = dataset, plan, train, segment, review
    #: What the panels share: device detection, folder defaults, job status texts.
    devices, folders, texts, board = devices, folders, texts, board

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        #: What the panels read from folders, until a folder changes or a job ends.
        self.memo = folder_memo.FolderMemo()

    def forget_folders(self) -> None:
        """A job ended: read the folders again on the next update."""
        self.memo.clear()

    # -- jobs ----------------------------------------------------------------------------
    def start_jobs(self, steps: Sequence[Sequence[str]] | Sequence[CommandStep],
                   cwd: str | None = None) -> process.JobChain:
        return process.JobChain(steps, python=self.python, cwd=cwd)

    def start_training(self, steps: Sequence[CommandStep], work: Any, detached: bool,
                       kind: str = "train") -> Any:
        """Training (``kind`` ``train`` or ``finetune``) runs through a job record in the work
        folder, so a later session re-attaches to it."""
        return file_jobs.start_file_job(steps, work, kind, python=self.python, detached=detached)

    @staticmethod
    def live_training_jobs(work: Any) -> list:
        return [j for j in file_jobs.live_jobs(work) if j.kind in board.TRAINING_KEYS]

    def start_segment_job(self, run: Any) -> segment_sequence.SegmentSequence:
        """The Segment job: the preview first when the run has one, then the full result."""
        return segment_sequence.SegmentSequence(run, self.start_jobs)

    # -- the whole module's view ---------------------------------------------------------
    def state(self, scene: Any, params: Any, segment_volumes: Sequence[Any],
              model_channels: Sequence[str] | None, runs: Sequence[Any], running: Iterable[str],
              batch_volumes: Sequence[Any] = (), review_session: Any = None,
              dataset_case_name: str = "") -> ModuleState:
        """Every panel's state from the scene, the parameter node (``NNSegParameterNode``)
        and what the module holds (the model's channels, the runs, the jobs, the case under
        review); folders are read again only when they changed (:attr:`memo`)."""
        channels = len(model_channels) if model_channels else None
        case = review_session.current_case(scene) if review_session is not None else None
        return ModuleState(
            shared=common.shared_state(params, running, channels, self.memo),
            dataset=dataset.state(scene, params), plan=plan.state(params),
            train=train.state(params, runs),
            segment=segment.SegmentState(list(segment_volumes)),
            review=review.state(params, batch_volumes, channels, case, dataset_case_name,
                                self.memo))

    State = ModuleState
    view = staticmethod(module_view)
    locked = staticmethod(locked_widgets)
    lockable = LOCKABLE


__all__ = ["LOCKABLE", "LOCKS", "ModuleLogic", "ModuleState", "locked_widgets", "module_view"]
