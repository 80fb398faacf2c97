"""Texts and tables the Slicer module's panels show, computed from the work folder's files.

Plain Python (no ``qt``, no MRML): the Slicer module (``NNSeg/NNSeg.py``) only puts these
strings into its labels and table widgets, so they are tested without Slicer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from NNSegLib.jobs.base import JobStatus, estimate_eta, format_eta
from NNSegLib.planning.plans import Plans
from NNSegLib.util.i18n import tr
from NNSegLib.util.json_files import read_json
from NNSegLib.util.model_folder import ModelFolder, epoch_position
from NNSegLib.util.workspace import Workspace

if TYPE_CHECKING:
    from NNSegLib.slicer.scene.dataset import TrainingSet

#: Rows of :func:`plans_table`: title → ``ConfigurationPlan`` attribute.
PLAN_FIELDS = (("spacing (mm)", "spacing"), ("median shape", "median_shape"),
               ("patch size", "patch_size"), ("batch size", "batch_size"),
               ("stages", "num_stages"), ("features", "features_per_stage"),
               ("batch Dice", "batch_dice"), ("memory (GB)", "estimated_memory_gb"))


def describe_training_set(training: TrainingSet) -> str:
    """Case count, unified labels and every warning (⚠) and problem (✖), one per line."""
    labels = ", ".join(f"{v}: {k}" for k, v in training.labels.items())
    lines = [f"{len(training.pairs)} case(s); labels {labels}"]
    lines += [f"⚠ {w}" for w in training.warnings] + [f"✖ {p}" for p in training.problems]
    return "\n".join(lines)


def _plan_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (tuple, list)):
        return "×".join(_plan_value(x) for x in v)
    return str(v)


def plans_table(work: Path | str) -> tuple[list[str], list[list[str]]]:
    """The plan of a work folder as ``(header, rows)``: one column per configuration.

    Args:
        work: The work folder (its ``plans.json`` is read).

    Returns:
        ``header`` is ``["", <configuration names>]``; each row starts with its title
        (see :data:`PLAN_FIELDS`), floats with 3 significant digits, shapes as ``40×56×40``.
    """
    plans = Plans.load(Workspace(Path(work)).plans)
    names = list(plans.configurations)
    rows = [[title] + [_plan_value(getattr(plans.configurations[n], attr, "")) for n in names]
            for title, attr in PLAN_FIELDS]
    return ["", *names], rows


def describe_epoch(event: dict, max_epochs: int) -> str:
    """One line on a training ``epoch`` event: epoch (1-based), loss, EMA pseudo Dice, ETA.

    Epochs end early to keep validation points a few minutes apart
    (``RunConfig.epoch_minutes``), so a run may have more epochs than ``max_epochs``: where
    the event says how far the run is in steps, the line counts steps instead."""
    dice = event.get("ema_pseudo_dice")
    dice_text = "–" if dice is None else f"{dice:.3f}"
    where = epoch_position(event.get("epoch", 0) + 1, event, max_epochs)
    return (f"epoch {where}, train loss "
            f"{event.get('train_loss', float('nan')):.4f}, pseudo Dice (EMA) {dice_text}, "
            f"ETA {format_eta(event.get('eta_seconds'))}")


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


def fine_tune_summary(work: Path | str, configuration: str | None = None) -> str:
    """"Did it help?": the current model's CV Dice beside the model it was fine-tuned from.

    Reads ``WORK/results/model_version.json`` for the parent and compares the folds' final
    validations (:func:`~NNSegLib.evaluation.model_comparison.compare_models`), e.g.
    ``"CV Dice v1 0.812 → v2 0.845 (+0.033; fold(s) 0)"``.
    """
    from NNSegLib.evaluation.model_comparison import compare_models
    from NNSegLib.util.errors import NNSegError

    folder = Workspace(Path(work)).model
    parent = folder.parent
    if parent is None:
        return f"The model in {folder.root} is not a fine-tune."
    try:
        return compare_models(parent, folder.root, configuration).summary_line()
    except NNSegError as e:
        return f"No comparison yet: {e}"


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


def model_info(path: Path | str) -> dict:
    """Channels, labels and a one-line description of a model folder (or zip).

    Returns:
        For a folder with ``dataset.json``: ``channels`` (names in channel order),
        ``labels`` (``{value: name}``), ``name`` and ``description``; otherwise only a
        ``description`` (a zip is read when segmenting, anything else is no model).
    """
    path = Path(str(path))
    meta = ModelFolder(path).dataset_json
    if not meta.is_file():
        return {"description": tr("Zip package: imported when segmenting.")
                if path.suffix == ".zip" else tr("No model here (dataset.json missing).")}
    raw = read_json(meta, expect=dict)
    channels = [v for _, v in sorted(raw.get("channel_names", {"0": "image"}).items(),
                                     key=lambda kv: int(kv[0]))]
    labels = {int(v): k for k, v in raw.get("labels", {}).items()}
    names = ", ".join(n for v, n in sorted(labels.items()) if v)
    return {"channels": channels, "labels": labels, "name": raw.get("name", path.name),
            "description": f"{raw.get('name', path.name)}: channels {channels}; labels {names}"}


def phase_title(phase: str) -> str:
    """A Segment job's phase in words: ``"Preview"`` or ``"Full quality"``
    (:mod:`NNSegLib.slicer.segment_sequence`)."""
    return {"preview": tr("Preview"), "full": tr("Full quality")}.get(phase, phase)


def describe_event(key: str, event: dict, elapsed: float, max_epochs: int = 0) -> str | None:
    """The status line for a job's progress event, or ``None`` to leave it as it is.

    Args:
        key: The panel (``plan``, ``train``, ``findbest``, ``segment``).
        event: The progress event; one of a job with phases (a Segment with a preview)
            names its ``phase``, which starts the line.
        elapsed: Seconds since the job started.
        max_epochs: The training's epoch limit (for ``epoch`` events).
    """
    text = _describe_event(key, event, elapsed, max_epochs)
    if text is not None and event.get("phase"):
        text = f"{phase_title(str(event['phase']))}: {text}"
    return text


def _describe_event(key: str, event: dict, elapsed: float, max_epochs: int) -> str | None:
    from NNSegLib.jobs.board import TRAINING_KEYS

    kind = event.get("event")
    if kind == "epoch":
        return describe_epoch(event, max_epochs)
    if kind == "error":
        return str(event.get("message", ""))
    if kind == "step" and event.get("args"):
        args = event["args"]
        return tr("Step {n}/{of}: {command}", n=int(event.get("step", 0)) + 1,
                  of=event.get("of", "?"), command=" ".join(str(a) for a in args[:1] + args[2:4]))
    if kind in ("start", "progress") and event.get("total") and key not in TRAINING_KEYS:
        current, total = int(event.get("current", 0)), int(event["total"])
        eta = estimate_eta(elapsed, current, total)
        return tr("{stage}: {current}/{total}, ETA {eta}", stage=event.get("stage", ""),
                  current=current, total=total, eta=format_eta(eta))
    return None


#: Panels whose progress bar follows one stage only (the other stages are detail below it:
#: the batch's bar counts cases, not the patches of each case).
BAR_STAGES = {"batch": "segment-batch"}


def progress_value(key: str, event: dict) -> tuple[int, int] | None:
    """``(current, total)`` for the panel's progress bar, or ``None`` to leave it."""
    if event.get("event") not in ("start", "progress") or not event.get("total"):
        return None
    stage = BAR_STAGES.get(key)
    if stage is not None and event.get("stage") != stage:
        return None
    return int(event.get("current") or 0), int(event["total"])


def finish_text(job: Any, what: str) -> tuple[bool, str]:
    """``(succeeded, status line)`` for a finished job, e.g. ``"Planning completed in 12 s"``."""
    if job.status is JobStatus.OK:
        return True, tr("{what} completed in {seconds:.0f} s", what=what, seconds=job.elapsed)
    message = job.error_message() or ""
    return False, tr("{what} {status}: {message}", what=what, status=tr(job.status.value),
                     message=message)


def training_time_warning(info: Any, work: Path | str, configuration: str, folds: str,
                          epochs: int, budget_minutes: float | None = None) -> str | None:
    """The CPU warning of :func:`NNSegLib.slicer.devices.cpu_training_warning`, with the
    configuration's plan when the work folder has one, and what a time budget (the Train
    panel's "Train for N minutes") makes of it."""
    from NNSegLib.data.splits import parse_folds
    from NNSegLib.slicer.devices import cpu_training_warning
    from NNSegLib.util.errors import NNSegError

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
        from NNSegLib.slicer.devices import format_duration

        warning += " " + tr("The time budget stops each fold after {minutes} ({total} for "
                            "{folds} fold(s)); its schedule is fitted to that time.",
                            minutes=format_duration(60.0 * budget_minutes),
                            total=format_duration(60.0 * budget_minutes * n_folds),
                            folds=n_folds)
        from NNSegLib.planning.cpu_budget import cpu_budget_batch

        batch = (None if plan is None
                 else cpu_budget_batch(plan.batch_size, plan.spatial_dims, "cpu"))
        if plan is not None and batch is not None:
            warning += " " + tr("On a CPU it trains batch {batch} instead of the plan's "
                                "{planned}: more steps in the minutes given.", batch=batch,
                                planned=plan.batch_size)
    return warning


__all__ = ["BAR_STAGES", "PLAN_FIELDS", "cross_validation_summary", "describe_epoch",
           "describe_event", "describe_review_case", "describe_training_set",
           "fine_tune_summary", "finish_text", "model_info", "phase_title", "plans_table",
           "progress_value", "training_time_warning"]
