"""``nnseg train DATASET CONFIG FOLD|all``: one training run (METHOD §4), start to finish.

This module resolves *what* to train (plan, splits, run config, device, resume state) and
hands it to :class:`NNSegLib.training.trainer.Trainer`; the command line's options are
:mod:`NNSegLib.training.train_cli`. The fold folder
``Workspace.run_dir(config, fold)`` ends up holding ``run_config.json``,
``checkpoint_latest.pt`` / ``checkpoint_best.pt`` / ``checkpoint_final.pt``, ``log.jsonl``,
``progress.png`` and, after the full-image validation of the fold's validation cases,
``validation/`` and ``validation_summary.json``.

``--init-from MODEL`` starts a new run from trained weights (fine-tuning, METHOD §8;
:mod:`NNSegLib.training.init_from`) with the fine-tuning defaults of
:func:`~NNSegLib.training.run_config.fine_tune_defaults`, and records the new model's version
(:mod:`NNSegLib.training.model_versions`).

Modes: a new run (refused if the folder already has one, unless ``--fresh``);
``--continue`` resumes from ``checkpoint_latest.pt`` exactly where it stopped (a run with a
time budget keeps what was left of it, :mod:`NNSegLib.training.budget`);
``--extend N`` adds N epochs to a finished (or early-stopped) run; ``--validate-only``
re-runs the final validation of a finished run.

A cascade stage (``3d_cascade_fullres``) trains on the previous stage's cross-validation
segmentations (:mod:`NNSegLib.inference.cascade`): train the five ``3d_lowres`` folds first.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.planning.plans import ConfigurationPlan, Plans
from NNSegLib.training import distributed as dist
from NNSegLib.training.run_config import RunConfig, fine_tune_defaults
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import CHECKPOINT_FINAL, DATASET_JSON, RunFolder
from NNSegLib.util.progress import Progress
from NNSegLib.util.workspace import Workspace

TRAINING_SUMMARY = "training_summary.json"
MODES = ("new", "fresh", "continue", "extend", "validate")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_fold`."""

    run_dir: Path
    epochs: int
    stop_reason: str
    best_ema_pseudo_dice: float | None
    validation: dict | None = None


def resolve_configuration(plans: Plans, name: str, rc: RunConfig) -> ConfigurationPlan:
    """The plan's configuration with the run's batch/patch overrides applied."""
    try:
        config = plans.configuration(name)
    except KeyError as e:
        raise NNSegError(str(e.args[0])) from None
    changes: dict[str, Any] = {}
    if rc.batch_size is not None:
        changes["batch_size"] = rc.batch_size
    if rc.patch_size is not None:
        if len(rc.patch_size) != config.spatial_dims:
            raise NNSegError(f"patch size {rc.patch_size} has {len(rc.patch_size)} values; "
                             f"{name} is {config.spatial_dims}D")
        changes["patch_size"] = tuple(rc.patch_size)
    resolved = replace(config, **changes)
    problems = resolved.problems()
    if problems and changes:
        given = ", ".join(f"{k} {list(v) if isinstance(v, tuple) else v}"
                          for k, v in changes.items())
        raise NNSegError(f"--patch-size/--batch-size ({given}) do not fit {name}: "
                         + "; ".join(problems))
    return resolved


def resolve_run_config(run: RunFolder, plans: Plans, mode: str, overrides: dict[str, Any],
                       fine_tune: bool = False) -> RunConfig:
    """A new run's config (recipe defaults + overrides) or the saved one (+ overrides).

    With ``fine_tune`` a new run starts from the recipe's fine-tuning defaults
    (:func:`~NNSegLib.training.run_config.fine_tune_defaults`) instead.
    """
    saved = run.run_config
    overrides = dict(overrides)
    if mode in ("continue", "extend", "validate"):
        if not saved.is_file():
            raise NNSegError(f"{saved}: missing; there is no run to {mode}")
        overrides.pop("recipe", None)
        return RunConfig.load(saved).replace(**overrides) if overrides else RunConfig.load(saved)
    if mode == "new" and run.latest.is_file():
        raise NNSegError(f"{run.path}: already holds a training run; use --continue, "
                         "--extend N, or --fresh to start over")
    recipe = overrides.pop("recipe", None) or plans.recipe
    if fine_tune:
        overrides = {**fine_tune_defaults(recipe), **overrides}
    return RunConfig.for_recipe(recipe, **overrides)


def _fold_split(ws: Workspace, config: ConfigurationPlan, fold: int | str,
                ctx: dist.DistContext, progress: Progress
                ) -> tuple[Path, list[str], list[str]]:
    from NNSegLib.data.splits import (
        extend_splits,
        fold_cases,
        load_or_create_splits,
        load_splits,
        make_splits,
    )
    from NNSegLib.training.sampler import list_preprocessed_cases
    from NNSegLib.util.atomic import write_json
    from NNSegLib.util.locking import lock_owner

    folder = ws.preprocessed(config.data_identifier)
    owner = lock_owner(folder)
    if owner is not None:
        raise NNSegError(f"{folder}: being preprocessed by process {owner.get('pid', '?')}; "
                         "train once `nnseg preprocess` has finished")
    case_ids = list_preprocessed_cases(folder)
    if not case_ids:
        raise NNSegError(f"{folder}: no preprocessed cases; run `nnseg preprocess` first")
    if fold == "all":
        return folder, case_ids, []
    if ctx.is_main:
        splits = load_or_create_splits(ws.splits, case_ids)
    else:  # only rank 0 writes; the splits are deterministic
        splits = load_splits(ws.splits) if ws.splits.is_file() else make_splits(case_ids)
    splits, added = extend_splits(splits, case_ids)   # cases added since (METHOD §8)
    if added and ctx.is_main:
        write_json(ws.splits, splits)
        progress.message(f"{ws.splits}: {len(added)} new case(s) {added[:5]} join the training "
                         "set of every fold (validation sets unchanged; delete the file to "
                         "re-split from scratch)")
    train, val = fold_cases(splits, fold, case_ids)
    return folder, train, val


def _previous_stage(ws: Workspace, plans: Plans, config: ConfigurationPlan,
                    cases: list[str]) -> Path:
    """A cascade stage's folder of previous-stage segmentations, checked to be complete."""
    from NNSegLib.data.splits import load_splits
    from NNSegLib.inference.cascade import require_previous_stage

    prev = config.previous_stage
    if prev not in plans.configurations or plans.configurations[prev].next_stage != config.name:
        raise NNSegError(f"{ws.plans}: {config.name} needs {prev!r} with next_stage "
                         f"{config.name!r} in the plan; re-run `nnseg plan`")
    folder = ws.model.next_stage_dir(prev, config.name)
    splits = load_splits(ws.splits) if ws.splits.is_file() else None
    require_previous_stage(folder, cases, config, splits)
    return folder


def _device_and_threads(rc: RunConfig) -> tuple[Any, dist.DistContext]:
    import os

    from NNSegLib.util import host_memory
    from NNSegLib.util.device import configure_threads, pick_device

    try:
        device = pick_device(rc.device)
    except RuntimeError as e:
        raise NNSegError(str(e)) from e
    ctx, device = dist.init_distributed(device)
    threads = rc.num_threads
    if threads <= 0 and ctx.enabled and device.type == "cpu":
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
        threads = max(1, len(os.sched_getaffinity(0)) // per_node)
    configure_threads(threads)
    host_memory.apply_setting(rc.host_memory, device.type)
    return device, ctx


def train_fold(dataset: Path | str | None, work: Path | str | None, configuration: str,
               fold: int | str, *, overrides: dict[str, Any] | None = None, mode: str = "new",
               extend_epochs: int = 0, time_budget_minutes: float | None = None,
               init_from: Path | str | None = None, adapt_head: bool = False,
               progress: Progress | None = None) -> TrainResult:
    """Train (or resume/extend) one configuration and fold.

    Args:
        dataset: Raw dataset folder (for ``dataset.json`` and the final validation).
        work: Work folder (default ``./nnseg_work/<dataset name>``).
        configuration: Configuration name in the plan.
        fold: Fold index or ``"all"``.
        overrides: :class:`RunConfig` field values (``recipe`` included).
        mode: ``new``, ``fresh`` (overwrite an existing run), ``continue``, ``extend`` or
            ``validate`` (final validation of a finished run only).
        extend_epochs: Epochs to add in mode ``extend``.
        time_budget_minutes: Wall-clock minutes for this call, counted from its start: the
            schedule is fitted so that training and the final validation end within them.
            At least one validation interval (``RunConfig.epoch_minutes``). ``None`` with
            ``continue``: a run started with a budget keeps what was left of it at its last
            checkpoint.
        init_from: Start a new run (``new``/``fresh``) from these weights: a model folder
            (same configuration and fold), a fold folder or a checkpoint file.
        adapt_head: With ``init_from``, start new segmentation heads when the label sets
            differ (instead of refusing).
        progress: Progress sink (cancellation via its token).

    Raises:
        NNSegError: for missing inputs or an impossible request.
        Cancelled: when cancelled (``checkpoint_latest.pt`` is written first).
    """
    from NNSegLib.data.splits import parse_fold

    started = time.monotonic()
    if mode not in MODES:
        raise NNSegError(f"mode {mode!r} not in {MODES}")
    if adapt_head and init_from is None:
        raise NNSegError("--init-from-adapt-head needs --init-from")
    progress = progress or Progress()
    fold = parse_fold(fold)
    ws = Workspace.for_dataset(dataset or ".", work)
    run = ws.run(configuration, fold)
    if time_budget_minutes is not None and mode != "validate":
        _check_time_budget(time_budget_minutes, run, mode, overrides or {})
    plans = Plans.load(ws.plans, hint="nnseg plan")
    resolve_configuration(plans, configuration, RunConfig())   # unknown: before any folder
    budget = _Budget(started, time_budget_minutes)
    with _run_lock(run, f"nnseg train {configuration} fold {fold}"):
        return _train(ws, plans, run, dataset, configuration, fold, overrides or {}, mode,
                      extend_epochs, budget, init_from, adapt_head, progress)


@dataclass(frozen=True)
class _Budget:
    """When this call started (``time.monotonic()``) and its ``--time-budget``."""

    started: float
    minutes: float | None

    def for_trainer(self, mode: str, state: dict | None,
                    progress: Progress) -> tuple[float | None, float | None]:
        """``(seconds left now, the run's whole budget in seconds)`` for the trainer.

        A ``--time-budget`` counts from the start of this call. Without one, ``--continue``
        of a budget run gets what was left of its budget at its last checkpoint.
        """
        from NNSegLib.training.budget import TimeBudget

        used = time.monotonic() - self.started
        if self.minutes is not None:
            return 60.0 * self.minutes - used, 60.0 * self.minutes
        if mode != "continue" or state is None:
            return None, None
        resumed = TimeBudget.left_after_resume(state.get("time_budget"))
        if resumed is None:
            return None, None
        total, left = resumed
        progress.message(f"time budget: {left / 60:.1f} of its {total / 60:g} minutes were "
                         "left at the last checkpoint; the run goes on with them")
        return left - used, total


def _check_time_budget(minutes: float, run: RunFolder, mode: str,
                       overrides: dict[str, Any]) -> None:
    """Refuse a ``--time-budget`` below one validation interval (before any file is written)."""
    from NNSegLib.training.budget import budget_problem

    epoch_minutes = overrides.get("epoch_minutes")
    if epoch_minutes is None and mode in ("continue", "extend") and run.run_config.is_file():
        epoch_minutes = RunConfig.load(run.run_config).epoch_minutes
    if epoch_minutes is None:
        epoch_minutes = RunConfig.epoch_minutes
    problem = budget_problem(minutes, float(epoch_minutes))
    if problem:
        raise NNSegError(problem)


@contextmanager
def _run_lock(run: RunFolder, what: str) -> Iterator[None]:
    """Hold the run folder's lock (rank 0 of a distributed run only) and tidy the folder."""
    from NNSegLib.util.atomic import clean_stale_temps
    from NNSegLib.util.locking import folder_lock

    if dist.launched_by_torchrun() and int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with folder_lock(run.path, what, remove_if_unused=True):
        clean_stale_temps(run.path)
        clean_stale_temps(run.validation)
        yield


def _train(ws: Workspace, plans: Plans, run: RunFolder, dataset: Path | str | None,
           configuration: str, fold: int | str, overrides: dict[str, Any], mode: str,
           extend_epochs: int, budget: _Budget,
           init_from: Path | str | None, adapt_head: bool,
           progress: Progress) -> TrainResult:
    """:func:`train_fold` once the run folder is locked."""
    from NNSegLib.training.budget import cpu_budget_batch
    from NNSegLib.training.mixed_precision import amp_precision
    from NNSegLib.training.trainer import Trainer, TrainSetup

    run_dir = run.path
    source = _init_source(init_from, mode, ws, configuration, fold)
    rc = resolve_run_config(run, plans, mode, overrides, fine_tune=source is not None)
    config = resolve_configuration(plans, configuration, rc)
    device, ctx = _device_and_threads(rc)
    if (budget.minutes is not None and mode in ("new", "fresh") and rc.batch_size is None
            and not ctx.enabled):   # one process: a torchrun job shares its batch out
        batch = cpu_budget_batch(config.batch_size, config.spatial_dims, device.type, progress)
        if batch is not None:   # saved in the run config: --continue keeps it
            rc = rc.replace(batch_size=batch)
            config = resolve_configuration(plans, configuration, rc)
    try:
        # An impossible --amp (bf16 on MPS, fp16 on a CPU) fails here, before any file.
        precision = amp_precision(rc, device)
        if mode != "validate":
            progress.message(f"training on {device} in {precision} (amp={rc.amp})")
        folder, train_cases, val_cases = _fold_split(ws, config, fold, ctx, progress)
        in_channels, previous = plans.num_channels, None
        if config.is_cascade:
            previous = _previous_stage(ws, plans, config, train_cases + val_cases)
            in_channels += plans.num_classes - 1
        state = _load_state(run, mode)
        if mode == "extend" and state is not None:
            rc = rc.replace(max_epochs=_epochs_done(state, rc) + extend_epochs)
        if ctx.is_main and mode != "validate":
            if mode == "fresh":
                _clear_run(run)
            run_dir.mkdir(parents=True, exist_ok=True)
            ws.model.adopt(ws.plans, [ws.dataset_json,
                                      Path(dataset) / DATASET_JSON if dataset else None])
            rc.save(run.run_config)
        left, total = budget.for_trainer(mode, state, progress)
        setup = TrainSetup(config, rc, run_dir, folder, tuple(train_cases), tuple(val_cases),
                           fold, in_channels, plans.num_classes, device, ctx, left, previous,
                           total)
        trainer = Trainer(setup, progress if ctx.is_main else Progress(progress.cancel_token))
        if mode == "validate" and state is not None:
            return _validate_only(trainer, state, ws, dataset, configuration, fold, progress)
        if state is not None:
            _resume(trainer, state, run, configuration, fold, mode, extend_epochs, progress)
        elif source is not None:
            _start_from(trainer, source, plans, ws, run, adapt_head, progress)
        else:
            heads = trainer.initialise_heads()
            if heads is not None:
                freqs = ", ".join(f"{f:.4f}" for f in heads["class_frequencies"])
                progress.message(f"segmentation heads start at the class prior [{freqs}] "
                                 f"({heads['head_init']})")
        reason = trainer.run()
        return _finish(trainer, ws, dataset, configuration, fold, reason, progress)
    finally:
        dist.shutdown(ctx)


def _epochs_done(state: dict, rc: RunConfig) -> int:
    """Epochs of ``iterations_per_epoch`` a checkpoint's run has done (begun ones count)."""
    t = state["trainer"]
    ipe = rc.iterations_per_epoch
    step = int(t.get("step", int(t["epoch"]) * ipe + int(t["iteration"])))
    return -(-step // ipe)


def _init_source(init_from: Path | str | None, mode: str, ws: Workspace, configuration: str,
                 fold: int | str) -> Any:
    """Resolve ``--init-from`` before anything is written (or refuse it)."""
    if init_from is None:
        return None
    from NNSegLib.training.init_from import resolve_init_source

    if mode not in ("new", "fresh"):
        raise NNSegError(f"--init-from starts a new run; it cannot be combined with {mode} "
                         "(the run's own checkpoint is used)")
    source = resolve_init_source(init_from, configuration, fold)
    results = ws.results.resolve()
    if source.checkpoint == results or results in source.checkpoint.parents:
        raise NNSegError(f"--init-from {init_from}: that is the model this run writes "
                         f"({ws.results}); move it aside first with `nnseg archive-model` "
                         "and start from the archived version")
    return source


def _start_from(trainer: Any, source: Any, plans: Plans, ws: Workspace, run: RunFolder,
                adapt_head: bool, progress: Progress) -> None:
    """Load a fine-tune's initial weights; record them (run folder, model version)."""
    from NNSegLib.training.init_from import load_initial_weights, model_labels
    from NNSegLib.training.model_versions import record_fine_tune
    from NNSegLib.util.atomic import write_json

    setup = trainer.setup
    labels = model_labels(ws.results) or plans.labels   # what the new model will name
    report = load_initial_weights(trainer.network, source, labels, setup.num_input_channels,
                                  adapt_head)
    progress.message(report.describe())
    if setup.run_config.head_init != "he":
        progress.message(f"head_init {setup.run_config.head_init!r} ignored: the segmentation "
                         "heads come from --init-from")
    if setup.ctx.is_main:
        write_json(run.init_from, {**report.to_dict(), "model": str(source.model_dir or "")})
        version = record_fine_tune(ws.results, f"{run.configuration}/{run.path.name}",
                                   source.checkpoint, source.model_dir)
        progress.message(f"{ws.results}: model version v{version['version']} (fine-tuned "
                         f"from v{version['parent']['version']})")


def _load_state(run: RunFolder, mode: str) -> dict | None:
    if mode in ("continue", "extend"):
        return ckpt.load_checkpoint(run.latest)
    if mode == "validate":
        if not run.final.is_file():
            raise NNSegError(f"{run.final}: missing; the run has not finished "
                             "(resume it with --continue)")
        return ckpt.load_checkpoint(run.final)
    return None


def _validate_only(trainer: Any, state: dict, ws: Workspace, dataset: Path | str | None,
                   configuration: str, fold: int | str, progress: Progress) -> TrainResult:
    """Re-run the final validation of a finished run (``--validate-only``)."""
    from NNSegLib.training.fold_validation import validate_fold

    if not trainer.setup.val_cases:
        raise NNSegError(f"fold {fold} has no validation cases")
    trainer.network.load_state_dict(state["network"])
    validation = None
    if trainer.setup.ctx.is_main:
        validation = validate_fold(trainer, ws, dataset, configuration, fold, progress)
    t = state["trainer"]
    return TrainResult(trainer.setup.run_dir, int(t["epoch"]), str(t["stop_reason"]),
                       _finite(t["best_ema_dice"]), validation)


def _clear_run(run: RunFolder) -> None:
    """Remove the files of an earlier run (``--fresh``)."""
    from NNSegLib.training.training_log import PLOT_NAME

    for path in (run.latest, run.best, run.final, run.log, run.path / PLOT_NAME,
                 run.validation_summary, run.path / TRAINING_SUMMARY, run.init_from):
        path.unlink(missing_ok=True)


def _resume(trainer: Any, state: dict, run: RunFolder, configuration: str, fold: int | str,
            mode: str, extend_epochs: int, progress: Progress) -> None:
    meta = state["meta"]
    if meta.get("configuration") != configuration or str(meta.get("fold")) != str(fold):
        raise NNSegError(f"{run.latest}: belongs to {meta.get('configuration')} "
                         f"fold {meta.get('fold')}, not {configuration} fold {fold}")
    trainer.load_state_dict(state)
    trainer.schedule.max_epochs = trainer.rc.max_epochs  # --epochs may change on --continue
    if mode == "extend":
        if extend_epochs < 1:
            raise NNSegError("--extend needs a positive number of epochs")
        trainer.extend(extend_epochs)
    elif trainer.state.finished:
        raise NNSegError(f"{run.path}: training already finished "
                         f"({trainer.state.stop_reason}); use --extend N to train longer")
    progress.message(f"resuming {configuration} fold {fold} at epoch {trainer.state.epoch}, "
                     f"iteration {trainer.state.iteration}")


def _finish(trainer: Any, ws: Workspace, dataset: Path | str | None, configuration: str,
            fold: int | str, reason: str, progress: Progress) -> TrainResult:
    """Final checkpoint, DDP consistency check, full-image validation."""
    setup = trainer.setup
    ctx = setup.ctx
    checksums = dist.gather_floats(dist.parameter_checksum(trainer.network), ctx)
    if ctx.enabled and len(set(checksums)) != 1:
        raise NNSegError(f"ranks ended with different weights (checksums {checksums})")
    if trainer.state.finished:
        trainer.save(CHECKPOINT_FINAL)
    validation = None
    if ctx.is_main:
        from NNSegLib.util.atomic import write_json

        write_json(setup.run_dir / TRAINING_SUMMARY, {
            "epochs": trainer.state.epoch, "stop_reason": reason,
            "finished": trainer.state.finished, "best_ema_pseudo_dice": _finite(
                trainer.state.best_ema_dice), "world_size": ctx.world_size,
            "rank_parameter_checksums": checksums})
        progress.message(f"{configuration} fold {fold}: stopped after "
                         f"{trainer.state.epoch} epochs ({reason})")
        if setup.run_config.final_validation and setup.val_cases:
            from NNSegLib.training.fold_validation import validate_fold

            validation = validate_fold(trainer, ws, dataset, configuration, fold, progress)
    return TrainResult(setup.run_dir, trainer.state.epoch, reason,
                       _finite(trainer.state.best_ema_dice), validation)


def _finite(v: float) -> float | None:
    return None if v is None or v == float("-inf") else float(v)


__all__ = ["TrainResult", "resolve_configuration", "resolve_run_config", "train_fold"]
