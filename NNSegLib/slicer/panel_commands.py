"""The ``nnseg`` command lines the Slicer module's panels run (built here, tested headless).

Each function returns the argument lists of one panel action; the module runs them one
after the other with :class:`~NNSegLib.slicer.jobs.JobChain`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from NNSegLib.data.splits import parse_folds
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import RunFolder


def _work_args(work: Path | str | None) -> list[str]:
    return ["--work", str(work)] if work is not None and str(work) not in ("", ".") else []


def plan_commands(dataset: Path | str, work: Path | str | None = None, recipe: str = "paper",
                  memory_gb: float = 8.0, configurations: str = "") -> list[list[str]]:
    """Fingerprint, then plan with the panel's overrides."""
    w = _work_args(work)
    plan = ["plan", str(dataset), *w, "--recipe", recipe, "--gpu-memory-gb", f"{memory_gb:g}"]
    configs = configurations.replace(",", " ").split()
    if configs:
        plan += ["--configurations", *configs]
    return [["fingerprint", str(dataset), *w], plan]


def train_commands(dataset: Path | str, work: Path | str | None, configuration: str,
                   folds: str = "0", max_epochs: int | None = None, device: str = "auto",
                   resume: bool = False, extra_args: Sequence[str] = (),
                   time_budget_minutes: float | None = None) -> list[list[str]]:
    """Preprocess the configuration, then train each fold (``--continue`` to resume).

    ``extra_args`` go to every ``train`` command (e.g. ``--iterations-per-epoch 10`` in the
    module's self-test). ``time_budget_minutes`` (the Train panel's "Train for N minutes")
    gives every ``train`` command ``--time-budget``: each fold fits its schedule to that many
    minutes and stops cleanly when they are over.

    A cascade stage (its plan names a ``previous_stage``) first gets the previous stage's
    cross-validation folds that have not finished (resumed where a checkpoint exists): the cascade
    trains on their cross-validation segmentations.
    """
    w = _work_args(work)
    extra = list(extra_args) + (["--time-budget", f"{float(time_budget_minutes):g}"]
                                if time_budget_minutes else [])
    commands = []
    previous = _previous_stage(dataset, work, configuration)
    if previous is not None:
        name, runs = previous
        commands.append(["preprocess", str(dataset), *w, "--configurations", name])
        for fold, run in enumerate(runs):
            if not run.is_finished:
                commands.append(_train_command(dataset, w, name, str(fold), max_epochs, device,
                                               run.latest.is_file()) + extra)
    commands.append(["preprocess", str(dataset), *w, "--configurations", configuration])
    for name in [str(f) for f in parse_folds(folds)] or ["0"]:
        commands.append(_train_command(dataset, w, configuration, name, max_epochs, device,
                                       resume) + extra)
    return commands


def _train_command(dataset: Path | str, w: list[str], configuration: str, fold: str,
                   max_epochs: int | None, device: str, resume: bool) -> list[str]:
    cmd = ["train", str(dataset), configuration, fold, *w, "--device", device]
    cmd += ["--epochs", str(max_epochs)] if max_epochs else []
    cmd += ["--continue"] if resume else []
    return cmd


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
    commands = []
    model = Path(model)
    if model.suffix.lower() == ".zip":
        if import_dir is None:
            raise ValueError(f"{model}: a model package needs a folder to import it to")
        commands.append(["import-model", str(model), "--dest", str(import_dir)])
        model = Path(import_dir)
    cmd = ["predict", "-i", str(input_dir), "-o", str(output_dir), "-m", str(model),
           "--device", device]
    if fast:
        cmd += ["--fast"]
    else:
        cmd += [] if tta else ["--no-tta"]
        cmd += ["--uncertainty"] if uncertainty else []
    cmd += [] if postprocessing else ["--no-postprocessing"]
    cmd += ["--allow-unfinished"] if allow_unfinished else []
    fold_list = [str(f) for f in parse_folds(folds)][:1 if fast else None]
    cmd += ["--folds", *fold_list] if fold_list else []
    commands.append(cmd)
    return commands


def segment_batch_commands(inputs: Path | str | list[Path | str], batch_dir: Path | str,
                           model: Path | str, folds: str = "", device: str = "auto",
                           tta: bool = True, import_dir: Path | str | None = None,
                           overwrite: bool = False,
                           allow_unfinished: bool = False) -> list[list[str]]:
    """Segment every case of input folders/files into a batch folder for review (METHOD §8).

    A ``.zip`` model is imported first (into ``import_dir``, default ``<batch>/model``);
    ``allow_unfinished`` also uses unfinished folds (``--allow-unfinished``).
    """
    commands = []
    model = Path(model)
    if model.suffix.lower() == ".zip":
        target = Path(import_dir) if import_dir is not None else Path(batch_dir) / "model"
        commands.append(["import-model", str(model), "--dest", str(target)])
        model = target
    items = inputs if isinstance(inputs, list) else [inputs]
    cmd = ["segment-batch", "-i", *[str(i) for i in items], "-o", str(batch_dir),
           "-m", str(model), "--device", device]
    cmd += [] if tta else ["--no-tta"]
    fold_list = [str(f) for f in parse_folds(folds)]
    cmd += ["--folds", *fold_list] if fold_list else []
    cmd += ["--overwrite"] if overwrite else []
    cmd += ["--allow-unfinished"] if allow_unfinished else []
    commands.append(cmd)
    return commands


def fine_tune_commands(dataset: Path | str, work: Path | str | None, configuration: str,
                       folds: str = "0", max_epochs: int | None = None, device: str = "auto",
                       resume: bool = False, adapt_head: bool = False) -> list[list[str]]:
    """Fine-tune the current model on the dataset as it is now (METHOD §8).

    A new fine-tune archives ``WORK/results`` (``nnseg archive-model``: it becomes
    ``WORK/model_versions/v<N>``), preprocesses the cases added since (the others are
    reused), then trains each fold from the same fold of the archived model
    (``--init-from``, fine-tuning defaults unless ``max_epochs`` is given). With ``resume``
    the fine-tune in ``WORK/results`` is continued: unfinished folds resume, folds not
    started yet start from the recorded parent model, finished folds are left alone.

    Raises:
        NNSegError: for a cascade stage (its inputs exist only for cross-validation cases),
            or ``resume`` without a fine-tune in progress.
    """
    from NNSegLib.training.model_versions import next_archive
    from NNSegLib.util.json_files import read_json
    from NNSegLib.util.workspace import Workspace

    if _previous_stage(dataset, work, configuration) is not None:
        raise NNSegError(f"{configuration} is a cascade stage; fine-tuning a cascade is not "
                         "supported (fine-tune 3d_fullres or 3d_lowres instead)")
    ws = Workspace.for_dataset(dataset, work if work not in ("", None) else None)
    w = _work_args(work)
    commands = []
    if resume:
        version = ws.model.version_file
        parent = read_json(version, expect=dict).get("parent", {}).get("path") \
            if version.is_file() else None
        if not parent:
            raise NNSegError(f"{version}: no fine-tune in progress to resume")
    else:
        parent = str(next_archive(ws.root))
        commands.append(["archive-model", str(dataset), *w])
    commands.append(["preprocess", str(dataset), *w, "--configurations", configuration])
    for fold in [str(f) for f in parse_folds(folds)] or ["0"]:
        run = ws.run(configuration, fold)
        if resume and run.is_finished:
            continue
        cmd = ["train", str(dataset), configuration, fold, *w, "--device", device]
        cmd += ["--epochs", str(max_epochs)] if max_epochs else []
        if resume and run.latest.is_file():
            cmd += ["--continue"]
        else:
            cmd += ["--init-from", parent] + (["--init-from-adapt-head"] if adapt_head else [])
        commands.append(cmd)
    return commands


def find_best_commands(dataset: Path | str, work: Path | str | None) -> list[list[str]]:
    """Choose the configuration (or ensemble) and postprocessing on cross-validation."""
    return [["find-best", str(dataset), *_work_args(work)]]


__all__ = ["find_best_commands", "fine_tune_commands", "plan_commands", "predict_commands",
           "segment_batch_commands", "train_commands"]
