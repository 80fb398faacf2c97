"""The ``nnseg`` command lines the Slicer module's panels run (built here, tested headless).

Each function returns the argument lists of one panel action, built with the command
modules' ``*_argv`` builders (no flag is spelled here); the module runs them one after the
other with :class:`~NNSegLib.jobs.process.JobChain`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from NNSegLib.data.splits import parse_folds
from NNSegLib.jobs.base import CommandStep
from NNSegLib.slicer.batch_job import segment_batch_commands
from NNSegLib.slicer.requests import DEFAULT_MAX_EPOCHS, TrainContext, TrainRequest
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import RunFolder


def _work(work: Path | str | None) -> Path | None:
    return Path(str(work)) if work is not None and str(work) not in ("", ".") else None


def plan_commands(dataset: Path | str, work: Path | str | None = None, recipe: str = "paper",
                  memory_gb: float = 8.0, configurations: str = "") -> list[list[str]]:
    """Fingerprint, then plan with the panel's overrides."""
    from NNSegLib.planning.fingerprint import fingerprint_argv
    from NNSegLib.planning.planner import plan_argv

    w = _work(work)
    configs = configurations.replace(",", " ").split()
    return [fingerprint_argv(dataset, w),
            plan_argv(dataset, w, recipe, float(memory_gb), configurations=configs)]


def train_commands(dataset: Path | str, work: Path | str | None, configuration: str,
                   folds: str = "0", max_epochs: int | None = None, device: str = "auto",
                   resume: bool = False, extra_args: Sequence[str] = (),
                   time_budget_minutes: float | None = None) -> list[CommandStep]:
    """:func:`train_request_commands` of the panel's loose values."""
    return train_request_commands(TrainRequest(
        Path(str(dataset)), _work(work), configuration, folds, max_epochs or None, device,
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
    previous = _previous_stage(r.dataset, r.work, r.configuration)
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


def _previous_stage(dataset: Path | str, work: Path | str | None, configuration: str
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


def predict_commands(input_dir: Path | str, output_dir: Path | str, model: Path | str,
                     folds: str = "", device: str = "auto", tta: bool = True,
                     uncertainty: bool = False, import_dir: Path | str | None = None,
                     postprocessing: bool = True, allow_unfinished: bool = False,
                     fast: bool = False) -> list[list[str]]:
    """Predict a folder of ``<case>_XXXX`` files; a ``.zip`` model is imported first.

    ``postprocessing=False`` skips the model's connected-component rules
    (``--no-postprocessing``); ``allow_unfinished`` also uses folds whose training has not
    finished (``--allow-unfinished``: their best checkpoint). ``fast`` is the preview
    (``--fast``: one fold, no TTA, step 1.0, no uncertainty map): of the panel's folds only
    the first is passed on (explicit ``--folds`` would win over ``--fast``'s one fold).
    """
    from NNSegLib.inference.model_package import import_model_argv
    from NNSegLib.inference.predict_options import predict_argv

    commands = []
    model = Path(model)
    if model.suffix.lower() == ".zip":
        if import_dir is None:
            raise ValueError(f"{model}: a model package needs a folder to import it to")
        commands.append(import_model_argv(model, import_dir))
        model = Path(import_dir)
    fold_list = [str(f) for f in parse_folds(folds)][:1 if fast else None]
    commands.append(predict_argv(
        [input_dir], output_dir, model, fold_list, device=device, fast=fast,
        tta=tta or fast, uncertainty=uncertainty and not fast, postprocessing=postprocessing,
        allow_unfinished=allow_unfinished))
    return commands


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
    from NNSegLib.util.workspace import Workspace

    if _previous_stage(dataset, work, configuration) is not None:
        raise NNSegError(f"{configuration} is a cascade stage; fine-tuning a cascade is not "
                         "supported (fine-tune 3d_fullres or 3d_lowres instead)")
    ws = Workspace.for_dataset(dataset, work if work not in ("", None) else None)
    w = _work(work)
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
    for fold in [str(f) for f in parse_folds(folds)] or ["0"]:
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


def find_best_commands(dataset: Path | str, work: Path | str | None) -> list[list[str]]:
    """Choose the configuration (or ensemble) and postprocessing on cross-validation."""
    from NNSegLib.postprocessing.find_best import find_best_argv

    return [find_best_argv(dataset, _work(work))]


__all__ = ["find_best_commands", "fine_tune_commands", "plan_commands", "predict_commands",
           "segment_batch_commands", "train_commands", "train_request_commands"]
