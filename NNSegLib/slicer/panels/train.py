"""(3) Train: train folds (resume, re-attach), find the best configuration, its report.

Each ``train`` step carries its :class:`~NNSegLib.slicer.requests.TrainContext`, so a later
session re-attaches to a running training without parsing its command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.data.splits import parse_folds
from NNSegLib.jobs.base import CommandStep
from NNSegLib.slicer import cv_report, training_runs
from NNSegLib.slicer.folder_memo import FolderMemo
from NNSegLib.slicer.folders import is_unset, work_arg
from NNSegLib.slicer.panels.common import (
    TRAINING,
    WORK_JOBS,
    Rule,
    Shared,
    View,
    dataset_problem,
    folder_problem,
    plan_configurations,
)
from NNSegLib.slicer.requests import DEFAULT_MAX_EPOCHS, TrainContext, TrainRequest
from NNSegLib.slicer.scene import training_chart
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.i18n import tr
from NNSegLib.util.json_files import read_json
from NNSegLib.util.workspace import Workspace

#: Widgets (``NNSeg.ui`` object names) a running training or *Find best* locks.
LOCKS = {
    "train": ["datasetFolderPathLineEdit", "workFolderPathLineEdit",
              "trainConfigurationComboBox", "foldsLineEdit", "maxEpochsSpinBox",
              "deviceComboBox", "detachTrainingCheckBox", "exportDatasetButton",
              "timeBudgetCheckBox", "timeBudgetSpinBox"],
    "findbest": ["datasetFolderPathLineEdit", "workFolderPathLineEdit", "exportDatasetButton"],
}


@dataclass
class TrainState:
    """What the Train panel's rules look at (besides :class:`~.common.Shared`)."""

    train_configuration: str = "3d_fullres"
    folds: str = "0"
    resumable_folds: Sequence[str] = ()
    started_folds: Sequence[str] = ()
    report: str | None = None
    time_budget: bool = False


def report_path(work: Any) -> Path | None:
    """The cross-validation report, if *Find best* made one."""
    return None if is_unset(work) else cv_report.report_path(work)


def state(params: Any, runs: Sequence[Any]) -> TrainState:
    """The panel's state from the parameter node and the work folder's runs."""
    configuration = str(params.trainConfiguration)
    report = report_path(params.workFolder)
    return TrainState(
        train_configuration=configuration, folds=str(params.folds),
        resumable_folds=training_runs.resume_choice(runs, configuration),
        started_folds=training_runs.started_folds(runs, configuration),
        report=str(report) if report else None, time_budget=bool(params.timeBudget))


def rule_train(s: TrainState, shared: Shared) -> Rule:
    if "train" in shared.running:
        return Rule(True, tr("Cancel training (asks first; the checkpoint is kept)."))
    if shared.running & {"plan", "findbest", "finetune"}:
        return Rule(False, tr("Wait for the running job to finish."))
    problem = dataset_problem(shared) or folder_problem(shared.work_folder, tr("work folder"))
    if problem:
        return Rule(False, problem)
    configurations = plan_configurations(shared.work_folder)
    if configurations is None:
        return Rule(False, tr("No plan in the work folder: click Plan first."))
    if s.train_configuration not in configurations:
        return Rule(False, tr("The plan has no {configuration} (planned: {planned}).",
            configuration=s.train_configuration, planned=", ".join(configurations)))
    try:
        folds = [str(f) for f in parse_folds(s.folds)] or ["0"]
    except (NNSegError, ValueError) as e:
        return Rule(False, str(e))
    started = [f for f in folds if f in set(s.started_folds)]
    if started:  # `nnseg train` refuses to overwrite a run; Resume continues it
        return Rule(False, tr("Fold(s) {folds} of {configuration} already have a run: Resume "
                              "continues an interrupted one; choose other folds for a new run.",
                              folds=", ".join(started), configuration=s.train_configuration))
    return Rule(True)


def rule_resume(s: TrainState, shared: Shared) -> Rule:
    if shared.running & WORK_JOBS:
        return Rule(False, tr("Wait for the running job to finish."))
    if not s.resumable_folds:
        return Rule(False, tr("No interrupted training of {configuration} to resume.",
            configuration=s.train_configuration))
    return Rule(True, tr("Continue fold(s) {folds} from their latest checkpoint.",
                         folds=", ".join(s.resumable_folds)))


def rule_find_best(shared: Shared) -> Rule:
    if "findbest" in shared.running:
        return Rule(True, tr("Cancel."))
    if shared.running & (TRAINING | {"plan"}):
        return Rule(False, tr("Wait for the training to finish."))
    problem = dataset_problem(shared) or folder_problem(shared.work_folder, tr("work folder"))
    if problem:
        return Rule(False, problem)
    if not Workspace(Path(shared.work_folder)).model.trained_configurations():
        return Rule(False, tr("Train at least one configuration first."))
    return Rule(True)


def view(s: TrainState, shared: Shared) -> View:
    """The panel's button rules; the minutes are typed only for a time budget."""
    return View(rules={
        "trainButton": rule_train(s, shared),
        "resumeButton": rule_resume(s, shared),
        "findBestButton": rule_find_best(shared),
        "openReportButton": Rule(bool(s.report), s.report or tr(
            "No evaluation report yet: click Find best configuration.")),
    }, inputs={"timeBudgetSpinBox": s.time_budget})


def train_request(params: Any, folds: str | None = None, resume: bool = False,
                  extra: Sequence[str] = ()) -> TrainRequest:
    """The :class:`~NNSegLib.slicer.requests.TrainRequest` of the panel's values."""
    return TrainRequest.from_parameters(params, folds, resume, extra)


def train_commands(dataset: Path | str, work: Path | str | None, configuration: str,
                   folds: str = "0", max_epochs: int | None = None, device: str = "auto",
                   resume: bool = False, extra_args: Sequence[str] = (),
                   time_budget_minutes: float | None = None) -> list[CommandStep]:
    """:func:`train_request_commands` of the panel's loose values."""
    return train_request_commands(TrainRequest(
        Path(str(dataset)), work_arg(work), configuration, folds, max_epochs or None, device,
        resume, tuple(str(a) for a in extra_args),
        float(time_budget_minutes) if time_budget_minutes else None))


def train_request_commands(request: TrainRequest) -> list[CommandStep]:
    """Preprocess the configuration, then train each fold (``--continue`` to resume).

    ``request.extra`` goes to every ``train`` command (e.g. ``--iterations-per-epoch 10`` in
    the module's self-test). ``request.time_budget_minutes`` (the Train panel's "Train for N
    minutes") gives every ``train`` command ``--time-budget``: each fold fits its schedule to
    that many minutes and stops cleanly when they are over. Each ``train`` step carries its
    :class:`~NNSegLib.slicer.requests.TrainContext`.

    A cascade stage (its plan names a ``previous_stage``) first gets the previous stage's
    cross-validation folds that have not finished (resumed where a checkpoint exists): the cascade
    trains on their cross-validation segmentations.
    """
    from NNSegLib.preprocessing.preprocess import preprocess_argv

    r = request
    commands = []
    previous = training_runs.previous_stage(r.dataset, r.work, r.configuration)
    if previous is not None:
        name, runs = previous
        commands.append(CommandStep(preprocess_argv(r.dataset, r.work, [name])))
        for fold, run in enumerate(runs):
            if not run.is_finished:
                commands.append(_train_step(r, name, str(fold), run.latest.is_file()))
    commands.append(CommandStep(preprocess_argv(r.dataset, r.work, [r.configuration])))
    for name in [str(f) for f in parse_folds(r.folds)] or ["0"]:
        commands.append(_train_step(r, r.configuration, name, r.resume))
    return commands


def _train_step(r: TrainRequest, configuration: str, fold: str, resume: bool) -> CommandStep:
    from NNSegLib.training.train_cli import train_argv

    argv = train_argv(r.dataset, configuration, fold, r.work, r.device, r.max_epochs,
                      resume=resume, extra=r.extra, time_budget=r.time_budget_minutes)
    context = TrainContext("train", configuration, fold, r.max_epochs or DEFAULT_MAX_EPOCHS)
    return CommandStep(argv, context.to_json())


def find_best_folds(dataset: Path | str, work: Path | str | None) -> list[int]:
    """The folds *Find best* cross-validates: ``[]`` (every fold of the split, the method's
    default) once a configuration has every fold's validation predictions; before that, the
    most folds one configuration has complete, so that a fold 0 trained alone (the Train
    panel's default) gets a result, which names its folds. ``[]`` when no configuration has
    a complete fold: the command then says what is missing."""
    from NNSegLib.postprocessing.find_best import complete_folds

    ws = Workspace.for_dataset(dataset, work_arg(work))
    done = complete_folds(ws, dataset)
    splits = len(read_json(ws.splits, expect=list)) if ws.splits.is_file() else 0
    most = max(done.values(), key=len, default=[])
    return [] if len(most) == splits else most


def find_best_commands(dataset: Path | str, work: Path | str | None) -> list[list[str]]:
    """Choose the configuration (or ensemble) and postprocessing on cross-validation."""
    from NNSegLib.postprocessing.find_best import find_best_argv

    return [find_best_argv(dataset, work_arg(work), folds=find_best_folds(dataset, work))]


def cross_validation_summary(work: Path | str, configuration: str) -> str:
    """Mean foreground Dice of each fold's final validation, and their mean.

    Reads ``results/<configuration>/fold_*/validation_summary.json`` of the work folder,
    e.g. ``"CV Dice 0.850 (fold_0: 0.800, fold_1: 0.900)"``.
    """
    dice = {}
    for run in Workspace(Path(work)).model.runs(configuration):
        if not run.validation_summary.is_file():
            continue
        summary = read_json(run.validation_summary, expect=dict)
        value = summary.get("foreground_mean", {}).get("dice")
        if value is not None:
            dice[run.path.name] = value
    if not dice:
        return tr("No cross-validation results yet.")
    per_fold = ", ".join(f"{k}: {v:.3f}" for k, v in dice.items())
    return f"CV Dice {sum(dice.values()) / len(dice):.3f} ({per_fold})"


def training_time_warning(info: Any, work: Path | str, configuration: str, folds: str,
                          epochs: int, budget_minutes: float | None = None) -> str | None:
    """The CPU warning of :func:`NNSegLib.slicer.devices.cpu_training_warning`, with the
    configuration's plan when the work folder has one, and what a time budget (the Train
    panel's "Train for N minutes") makes of it."""
    from NNSegLib.planning.cpu_budget import cpu_budget_batch
    from NNSegLib.planning.plans import Plans
    from NNSegLib.slicer.devices import cpu_training_warning, format_duration

    plan = None
    plans_path = Workspace(Path(str(work))).plans
    if plans_path.is_file():
        try:
            plan = Plans.load(plans_path).configurations.get(configuration)
        except NNSegError:
            plan = None
    try:
        n_folds = max(1, len(parse_folds(folds)))
    except (NNSegError, ValueError):
        n_folds = 1
    warning = cpu_training_warning(info, plan, int(epochs), n_folds)
    if warning and budget_minutes:
        warning += " " + tr("The time budget stops each fold after {minutes} ({total} for "
                            "{folds} fold(s)); its schedule is fitted to that time.",
                            minutes=format_duration(60.0 * budget_minutes),
                            total=format_duration(60.0 * budget_minutes * n_folds),
                            folds=n_folds)
        batch = (None if plan is None
                 else cpu_budget_batch(plan.batch_size, plan.spatial_dims, "cpu"))
        if plan is not None and batch is not None:
            warning += " " + tr("On a CPU it trains batch {batch} instead of the plan's "
                                "{planned}: more steps in the minutes given.", batch=batch,
                                planned=plan.batch_size)
    return warning


def cpu_time_warning(memo: FolderMemo, info: Any, params: Any) -> str | None:
    """:func:`training_time_warning` for the panel's values (``None`` without a device or
    on a GPU), read from the work folder again only when it changed."""
    if info is None:
        return None
    p = params
    budget = p.timeBudgetMinutes if p.timeBudget else None
    key = ("time warning", repr(info), str(p.workFolder), p.trainConfiguration, p.folds,
           p.maxEpochs, budget)
    return memo.get(key, [(p.workFolder, 1)], lambda: training_time_warning(
        info, p.workFolder, p.trainConfiguration, p.folds, p.maxEpochs, budget))


def reattach(job: Any, work: Any) -> tuple[Any, dict, list]:
    """``(job, context, chart records)`` to follow a training started earlier, from the
    :class:`~NNSegLib.slicer.requests.TrainContext` stored with the job's current step."""
    stored = job.context
    if stored is None:   # a step that trains nothing, or a record without contexts
        from NNSegLib.training.run_config import FINE_TUNE_EPOCHS

        default = FINE_TUNE_EPOCHS if job.kind == "finetune" else DEFAULT_MAX_EPOCHS
        context = TrainContext(job.kind, "?", "?", default)
    else:
        context = TrainContext.from_json(stored)
    records = training_runs.chart_records(
        Workspace(Path(str(work))).run(context.configuration, str(context.fold)))
    job.poll()  # skip the events already in the chart's log
    return job, {"work": work, "configuration": context.configuration,
                 "folds": context.fold, "maxEpochs": context.max_epochs}, records


def run_lines(runs: Sequence[Any]) -> list[str]:
    """The run list's lines (a hint when there is no run)."""
    return [r.describe() for r in runs] or [training_runs.describe_runs([])]


#: Run discovery and the evaluation report, as the panel calls them.
find_runs = training_runs.find_runs
resumable_folds = training_runs.resume_choice
chart_records = training_runs.chart_records
describe_best = cv_report.describe_best
report_commands = cv_report.report_commands
#: The loss and Dice curves in the scene's chart node.
show_chart = training_chart.training_chart

__all__ = ["LOCKS", "TrainState", "chart_records", "cpu_time_warning", "cross_validation_summary",
           "describe_best", "find_best_commands", "find_best_folds", "find_runs", "reattach",
           "report_commands", "report_path", "resumable_folds", "rule_find_best", "rule_resume",
           "rule_train", "run_lines", "show_chart", "state", "train_commands", "train_request",
           "train_request_commands", "training_time_warning", "view"]
