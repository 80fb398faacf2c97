"""The *Fine-tune* button (METHOD §8): start a new fine-tune or continue the one in progress.

``WORK/results`` is the current model. A fine-tune is *in progress* when that model records
a parent (``model_version.json``, written when its first fold started from the parent's
weights) and a chosen fold of the configuration has not finished: clicking continues it
(``resume``: unfinished folds resume from their latest checkpoint, folds not started yet
start from the recorded parent, finished folds are kept). Otherwise a new fine-tune archives
the current model to ``WORK/model_versions/v<N>`` and trains each chosen fold from the same
fold of it, which must therefore be finished. :func:`fine_tune_plan` makes that decision
(and says why the button is disabled); :func:`fine_tune_steps` builds the job;
:func:`did_it_help` is the comparison the panel shows afterwards. No ``qt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from NNSegLib.data.splits import parse_folds
from NNSegLib.jobs.base import CommandStep
from NNSegLib.slicer.folders import is_unset, work_arg
from NNSegLib.slicer.requests import TrainContext
from NNSegLib.slicer.training_runs import previous_stage
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.i18n import tr
from NNSegLib.util.workspace import Workspace


@dataclass(frozen=True)
class FineTunePlan:
    """What *Fine-tune* would do now.

    Attributes:
        resume: Continue the fine-tune in progress (else start a new one).
        problem: Why it cannot start (the button's tooltip), else ``None``.
        text: What clicking does (shown above the button).
    """

    resume: bool = False
    problem: str | None = None
    text: str = ""


def _folds(folds: str) -> list[str]:
    return [str(f) for f in parse_folds(folds)] or ["0"]


def _cascade_problem(work: Path, configuration: str) -> str | None:
    from NNSegLib.planning.plans import Plans

    plans = Workspace(work).plans
    if not plans.is_file():
        return tr("No plan in the work folder: click Plan first.")
    try:
        previous = Plans.load(plans).configuration(configuration).previous_stage
    except (KeyError, NNSegError):
        return tr("The plan has no {configuration}.", configuration=configuration)
    if previous:
        return tr("{configuration} is a cascade stage; fine-tune 3d_fullres or 3d_lowres "
                  "instead.", configuration=configuration)
    return None


def fine_tune_plan(work: Path | str, configuration: str, folds: str) -> FineTunePlan:
    """Decide between a new fine-tune and continuing the one in progress (see module doc).

    Args:
        work: The work folder (its ``results`` is the current model).
        configuration: The Train panel's configuration.
        folds: The Train panel's folds (``"0"``, ``"0-4"``).
    """
    from NNSegLib.training.model_versions import next_archive
    from NNSegLib.util.model_folder import ModelFolder

    if is_unset(work):
        return FineTunePlan(problem=tr("Choose the work folder first."))
    work = Path(str(work))
    try:
        chosen = _folds(folds)
        problem = _cascade_problem(work, configuration)
        if problem:
            return FineTunePlan(problem=problem)
        model = Workspace(work).model
        runs = {f: model.run(configuration, f) for f in chosen}
        parent = model.parent
        open_folds = [f for f, r in runs.items() if not r.is_finished]
        if parent is not None and open_folds:
            return _resume_plan(model.version, ModelFolder(parent), configuration, runs,
                                open_folds)
        if not model.trained_configurations():
            archived = sorted(p.name for p in Workspace(work).root.glob("model_versions/v*"))
            hint = tr(" (the earlier models are in model_versions: {names})",
                      names=", ".join(archived)) if archived else ""
            return FineTunePlan(problem=tr("Nothing trained in the work folder's results "
                                           "yet{hint}: train a model first.", hint=hint))
        if open_folds:
            states = "; ".join(tr("fold {fold}: {status}", fold=f, status=runs[f].status()
                                  if runs[f].checkpoint() else tr("not trained"))
                               for f in open_folds)
            return FineTunePlan(problem=tr(
                "A fine-tune starts each fold from the same, finished fold of the current "
                "model; {configuration} {states}. Train or resume it first.",
                configuration=configuration, states=states))
        target = next_archive(work)
        if target.exists():
            return FineTunePlan(problem=tr(
                "{target} already exists (same version as the current model): move one of "
                "them away.", target=target))
        return FineTunePlan(False, None, tr(
            "New fine-tune: the current model (v{old}) is moved to {target}, the dataset's "
            "new cases are preprocessed and {configuration} fold(s) {folds} are trained from "
            "it into a new v{new}.", old=model.version, target=target,
            configuration=configuration, folds=", ".join(chosen), new=model.version + 1))
    except (NNSegError, ValueError) as e:
        return FineTunePlan(problem=str(e))


def _resume_plan(version: int, parent, configuration: str, runs: dict,
                 open_folds: Sequence[str]) -> FineTunePlan:
    if not parent.root.is_dir():
        return FineTunePlan(True, tr(
            "The fine-tune in progress (v{version}) started from {parent}, which no longer "
            "exists.", version=version, parent=parent.root))
    resumed = [f for f in open_folds if runs[f].latest.is_file()]
    started = [f for f in open_folds if f not in resumed]
    missing = [f for f in started if not parent.run(configuration, f).is_finished]
    if missing:
        return FineTunePlan(True, tr(
            "The fine-tune in progress (v{version}) starts each fold from {parent}, which has "
            "no finished {configuration} fold {folds}.", version=version, parent=parent.root,
            configuration=configuration, folds=", ".join(missing)))
    parts = []
    if resumed:
        parts.append(tr("fold(s) {folds} resume from their latest checkpoint",
                        folds=", ".join(resumed)))
    if started:
        parts.append(tr("fold(s) {folds} start from {parent}", folds=", ".join(started),
                        parent=parent.root))
    return FineTunePlan(True, None, tr(
        "Continues the fine-tune in progress (v{version}): {what}; finished folds are kept.",
        version=version, what="; ".join(parts)))


@dataclass(frozen=True)
class FineTuneJob:
    """The job *Fine-tune* starts: its plan, command lines and epochs per fold."""

    plan: FineTunePlan
    steps: Sequence[list[str]]
    epochs: int


def fine_tune_steps(dataset: Path | str, work: Path | str, configuration: str, folds: str,
                    epochs: int = 0, device: str = "auto", adapt_head: bool = False,
                    extra_args: Sequence[str] = ()) -> FineTuneJob:
    """The plan and the job's command lines for the panel's current choices.

    Args:
        dataset, work, configuration, folds, device: The Train panel's choices.
        epochs: Epochs per fold (0: the fine-tuning default, 50).
        adapt_head: Start new segmentation heads when the label set changed.
        extra_args: More ``nnseg train`` options (the module's self-test shortens epochs).

    Raises:
        NNSegError: when the plan has a problem (its text).
    """
    from NNSegLib.training.run_config import FINE_TUNE_EPOCHS

    plan = fine_tune_plan(work, configuration, folds)
    if plan.problem:
        raise NNSegError(plan.problem)
    steps = fine_tune_commands(dataset, work, configuration, folds, int(epochs) or None, device,
                               resume=plan.resume, adapt_head=adapt_head, extra_args=extra_args)
    return FineTuneJob(plan, steps, int(epochs) or FINE_TUNE_EPOCHS)


def did_it_help(work: Path | str, configuration: str | None = None
                ) -> tuple[str, list[str], list[list[str]]]:
    """``(summary line, header, rows)`` comparing the current model with its parent.

    Empty when the current model is not a fine-tune; the summary says why when there is
    nothing to compare yet.
    """
    from NNSegLib.evaluation.model_comparison import compare_models

    if is_unset(work):
        return "", [], []
    model = Workspace(Path(str(work))).model
    try:
        parent = model.parent
        if parent is None:
            return "", [], []
        header, rows = compare_models(parent, model.root, configuration).table()
    except NNSegError as e:
        return tr("No comparison yet: {reason}", reason=e), [], []
    return fine_tune_summary(work, configuration), header, rows


def fine_tune_summary(work: Path | str, configuration: str | None = None) -> str:
    """"Did it help?": the current model's CV Dice beside the model it was fine-tuned from.

    Reads ``WORK/results/model_version.json`` for the parent and compares the folds' final
    validations (:func:`~NNSegLib.evaluation.model_comparison.compare_models`), e.g.
    ``"CV Dice v1 0.812 → v2 0.845 (+0.033; fold(s) 0)"``.
    """
    from NNSegLib.evaluation.model_comparison import compare_models

    folder = Workspace(Path(work)).model
    parent = folder.parent
    if parent is None:
        return f"The model in {folder.root} is not a fine-tune."
    try:
        return compare_models(parent, folder.root, configuration).summary_line()
    except NNSegError as e:
        return f"No comparison yet: {e}"


def fine_tune_commands(dataset: Path | str, work: Path | str | None, configuration: str,
                       folds: str = "0", max_epochs: int | None = None, device: str = "auto",
                       resume: bool = False, adapt_head: bool = False,
                       extra_args: Sequence[str] = ()) -> list[CommandStep]:
    """Fine-tune the current model on the dataset as it is now (METHOD §8).

    A new fine-tune archives ``WORK/results`` (``nnseg archive-model``: it becomes
    ``WORK/model_versions/v<N>``), preprocesses the cases added since (the others are
    reused), then trains each fold from the same fold of the archived model
    (``--init-from``, fine-tuning defaults unless ``max_epochs`` is given). With ``resume``
    the fine-tune in ``WORK/results`` is continued: unfinished folds resume, folds not
    started yet start from the recorded parent model, finished folds are left alone.
    ``extra_args`` go to every ``train`` command; each carries its
    :class:`~NNSegLib.slicer.requests.TrainContext`.

    Raises:
        NNSegError: for a cascade stage (its inputs exist only for cross-validation cases),
            or ``resume`` without a fine-tune in progress.
    """
    from NNSegLib.preprocessing.preprocess import preprocess_argv
    from NNSegLib.training.model_versions import archive_model_argv, next_archive
    from NNSegLib.training.run_config import FINE_TUNE_EPOCHS
    from NNSegLib.training.train_cli import train_argv
    from NNSegLib.util.json_files import read_json

    if previous_stage(dataset, work, configuration) is not None:
        raise NNSegError(f"{configuration} is a cascade stage; fine-tuning a cascade is not "
                         "supported (fine-tune 3d_fullres or 3d_lowres instead)")
    ws = Workspace.for_dataset(dataset, work if work not in ("", None) else None)
    w = work_arg(work)
    commands = []
    if resume:
        version = ws.model.version_file
        parent = read_json(version, expect=dict).get("parent", {}).get("path") \
            if version.is_file() else None
        if not parent:
            raise NNSegError(f"{version}: no fine-tune in progress to resume")
    else:
        parent = str(next_archive(ws.root))
        commands.append(CommandStep(archive_model_argv(dataset, w)))
    commands.append(CommandStep(preprocess_argv(dataset, w, [configuration])))
    for fold in _folds(folds):
        run = ws.run(configuration, fold)
        if resume and run.is_finished:
            continue
        cont = bool(resume and run.latest.is_file())
        argv = train_argv(dataset, configuration, fold, w, device, max_epochs or None,
                          resume=cont, init_from=None if cont else parent,
                          adapt_head=adapt_head and not cont, extra=tuple(extra_args))
        context = TrainContext("finetune", configuration, fold, max_epochs or FINE_TUNE_EPOCHS)
        commands.append(CommandStep(argv, context.to_json()))
    return commands


__all__ = ["FineTuneJob", "FineTunePlan", "did_it_help", "fine_tune_commands", "fine_tune_plan",
           "fine_tune_steps", "fine_tune_summary"]
