"""(5) Batch and review: segment a batch, review the least certain cases first, add corrected
cases to the dataset and fine-tune the model on them (METHOD §8).

What the panel decides in detail lives below it: :mod:`NNSegLib.slicer.review_panel` (batch
inputs and folder, the review table, the case under review, adding it) and
:mod:`NNSegLib.slicer.fine_tune` (new fine-tune or the one in progress, did it help).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from NNSegLib.slicer import fine_tune, review_panel
from NNSegLib.slicer.fine_tune import FineTuneJob, FineTunePlan
from NNSegLib.slicer.folder_memo import FolderMemo, NoMemo
from NNSegLib.slicer.panels.common import (
    WORK_JOBS,
    Rule,
    Shared,
    View,
    dataset_problem,
    model_problem,
    work_folders,
)
from NNSegLib.slicer.requests import BatchRequest, FineTuneRequest
from NNSegLib.util.i18n import tr

#: Widgets (``NNSeg.ui`` object names) a running batch or fine-tune locks.
LOCKS = {
    "finetune": ["datasetFolderPathLineEdit", "workFolderPathLineEdit",
                 "trainConfigurationComboBox", "foldsLineEdit", "deviceComboBox",
                 "detachTrainingCheckBox", "exportDatasetButton", "fineTuneEpochsSpinBox",
                 "fineTuneAdaptHeadCheckBox"],
    "batch": ["batchSourceComboBox", "batchInputFolderPathLineEdit", "batchVolumesSelector",
              "batchFolderPathLineEdit", "modelPathLineEdit", "useTrainedModelButton",
              "predictDeviceComboBox", "predictFoldsLineEdit", "ttaCheckBox",
              "allowUnfinishedCheckBox"],
}


@dataclass
class ReviewState:
    """What the Batch and review panel's rules look at (besides :class:`~.common.Shared`)."""

    batch_source: str = "folder"
    batch_input_problem: str | None = None
    batch_folder_problem: str | None = None
    review_case: str | None = None
    dataset_case_name: str = ""
    fine_tune: FineTunePlan = field(default_factory=lambda: FineTunePlan(
        problem=tr("Choose the work folder first.")))


def state(params: Any, batch_volumes: Sequence[Any] = (), model_channels: int | None = None,
          review_case: str | None = None, dataset_case_name: str = "",
          memo: FolderMemo | None = None) -> ReviewState:
    """The panel's state from the parameter node: the batch's inputs and folder, the case
    under review and the fine-tune's plan (folders read again only when they change)."""
    memo = memo or NoMemo()
    p = params
    model, work, batch = p.modelPath, p.workFolder, p.batchFolder
    configuration, folds = str(p.trainConfiguration), str(p.folds)
    return ReviewState(
        batch_source=str(p.batchSource),
        batch_input_problem=review_panel.batch_input_problem(
            str(p.batchSource), p.batchInputFolder, list(batch_volumes), model_channels),
        batch_folder_problem=memo.get(
            ("batch folder", str(batch), str(model)), [(batch, 1), (model, 1)],
            lambda: review_panel.batch_folder_problem(batch, model)),
        review_case=review_case, dataset_case_name=str(dataset_case_name),
        fine_tune=memo.get(("fine-tune", str(work), configuration, folds), work_folders(work),
                           lambda: fine_tune.fine_tune_plan(work, configuration, folds)))


def rule_batch(s: ReviewState, shared: Shared) -> Rule:
    if "batch" in shared.running:
        return Rule(True, tr("Cancel the batch (finished cases stay; Segment batch again "
                             "continues with the rest)."))
    if "finetune" in shared.running:
        return Rule(False, tr("A fine-tune is replacing the current model; wait for it."))
    problem = model_problem(shared) or s.batch_input_problem or s.batch_folder_problem
    return Rule(problem is None, problem or "")


def rule_reviewing(s: ReviewState) -> Rule:
    if s.review_case is None:
        return Rule(False, tr("Click a case in the review table first."))
    return Rule(True)


def rule_add_to_dataset(s: ReviewState, shared: Shared) -> Rule:
    if s.review_case is None:
        return Rule(False, tr("Click a case in the review table first, correct its "
                              "segmentation in Segment Editor, then add it."))
    if shared.running & WORK_JOBS:
        return Rule(False, tr("A job is reading this dataset; wait for it or cancel it."))
    problem = dataset_problem(shared)
    if problem:
        return Rule(False, problem)
    if not s.dataset_case_name.strip():
        return Rule(False, tr("Enter the case's name in the dataset."))
    return Rule(True, tr("Write '{case}' as '{name}' into {dataset}.", case=s.review_case,
                         name=s.dataset_case_name.strip(), dataset=shared.dataset_folder))


def rule_fine_tune(s: ReviewState, shared: Shared) -> Rule:
    if "finetune" in shared.running:
        return Rule(True, tr("Cancel fine-tuning (asks first; the checkpoint is kept)."))
    if shared.running & (WORK_JOBS | {"segment", "batch"}):
        return Rule(False, tr("Wait for the running job to finish (a fine-tune moves the "
                              "current model aside)."))
    problem = dataset_problem(shared) or s.fine_tune.problem
    if problem:
        return Rule(False, problem)
    return Rule(True, s.fine_tune.text)


def view(s: ReviewState, shared: Shared) -> View:
    """The panel's button rules, its input choice and what *Fine-tune* would do."""
    scene = s.batch_source == "scene volumes"
    if "finetune" in shared.running:
        tune = tr("Fine-tuning runs; the Fine-tune button cancels it.")
    else:
        tune = s.fine_tune.problem or s.fine_tune.text
    return View(rules={"batchButton": rule_batch(s, shared),
                       "acceptButton": rule_reviewing(s),
                       "needsCorrectionButton": rule_reviewing(s),
                       "addToDatasetButton": rule_add_to_dataset(s, shared),
                       "fineTuneButton": rule_fine_tune(s, shared)},
                inputs={"batchInputFolderPathLineEdit": not scene,
                        "batchVolumesSelector": scene},
                texts={"fineTuneInfoLabel": tune})


def start_batch(session: review_panel.ReviewSession, params: Any, volumes: Sequence[Any],
                model_channels: Sequence[str] | None) -> dict[str, Any]:
    """The batch job's steps for the panel's choices (scene volumes written now), from the
    :class:`~NNSegLib.slicer.requests.BatchRequest` of the parameter node."""
    r = BatchRequest.from_parameters(params, model_channels)
    return review_panel.start_batch(
        session, r.source, r.input_folder, volumes, r.batch_folder, r.model, r.folds,
        r.device, r.tta, r.allow_unfinished, r.channels)


def open_case(session: review_panel.ReviewSession, scene: Any, batch: Any, case: str,
              opacity: float, dataset: Any) -> str:
    """Show a queue case; returns the name it would get in the dataset."""
    review = session.open(scene, batch, case, opacity)
    return review_panel.suggest_dataset_name(dataset, review.entry)


def describe_review_case(entry: Any) -> str:
    """One line on a review queue case (:class:`~NNSegLib.inference.review_queue.QueueEntry`):
    its state, uncertainty and where the slice views were centred."""
    s = entry.stats
    parts = [tr("{case}: {state}", case=entry.case, state=tr(entry.state.replace("_", " ")))]
    if s is not None:
        fg = "–" if s.mean_entropy_foreground is None else f"{s.mean_entropy_foreground:.3f}"
        parts.append(tr("mean entropy in the foreground {fg}, {fraction:.1%} uncertain",
                        fg=fg, fraction=s.uncertain_fraction))
        if s.region is not None:
            ras = ", ".join(f"{v:.1f}" for v in s.region.center_ras)
            parts.append(tr("views centred on the most uncertain region (RAS {ras})", ras=ras))
    if entry.added_to_dataset:
        parts.append(tr("added to the dataset as '{name}'",
                        name=entry.added_to_dataset.get("case", "?")))
    return "; ".join(parts) + "."


def describe_session_case(session: Any) -> str:
    """One line on the case under review (a :class:`ReviewSession` showing a case)."""
    return describe_review_case(session.current.case.entry)


def add_decision(dataset: Any, name: str) -> review_panel.AddDecision:
    """May the reviewed case be written under this name without asking?"""
    return review_panel.add_decision(dataset, name.strip())


def add_reviewed_case(session: review_panel.ReviewSession, scene: Any, dataset: Any, name: str,
                      replace: bool) -> str:
    """Write the reviewed case into the dataset; returns the line to show."""
    added = session.add(scene, dataset, name.strip(), replace)
    return tr("Added as '{name}' ({n} training case(s) now).",
              name=added.identifier, n=added.num_training)


def fine_tune_job(request: FineTuneRequest) -> FineTuneJob:
    """The :class:`~NNSegLib.slicer.fine_tune.FineTuneJob` of *Fine-tune* (resume decided
    from the work folder)."""
    r = request
    return fine_tune.fine_tune_steps(r.dataset, r.work or "", r.configuration, r.folds,
                                     r.epochs, r.device, r.adapt_head, r.extra)


#: The panel's other decisions, as it calls them.
ReviewSession = review_panel.ReviewSession
review_table = review_panel.review_table
describe_batch = review_panel.describe_batch
fine_tune_request = FineTuneRequest.from_parameters
did_it_help = fine_tune.did_it_help

__all__ = ["LOCKS", "ReviewSession", "ReviewState", "add_decision", "add_reviewed_case",
           "describe_batch", "describe_review_case", "describe_session_case", "did_it_help",
           "fine_tune_job", "fine_tune_request", "open_case", "review_table", "rule_add_to_dataset",
           "rule_batch", "rule_fine_tune", "rule_reviewing", "start_batch", "state", "view"]
