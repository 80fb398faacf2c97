"""What the panels say about a running or finished job: status lines and progress bar values.

Plain Python from a job's progress events (no ``qt``, no MRML): the Slicer module puts these
strings into its status labels and progress bars.
"""

from __future__ import annotations

from typing import Any

from NNSegLib.jobs.base import JobStatus, estimate_eta, format_eta
from NNSegLib.jobs.board import TRAINING_KEYS
from NNSegLib.util.i18n import tr
from NNSegLib.util.model_folder import epoch_position

#: Panels whose progress bar follows one stage only (the other stages are detail below it:
#: the batch's bar counts cases, not the patches of each case).
BAR_STAGES = {"batch": "segment-batch"}


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


def describe_board_event(entry: Any, event: dict) -> str | None:
    """:func:`describe_event` for an entry of the :class:`~NNSegLib.jobs.board.JobBoard`."""
    return describe_event(entry.key, event, entry.job.elapsed, entry.context.get("maxEpochs", 0))


def _describe_event(key: str, event: dict, elapsed: float, max_epochs: int) -> str | None:
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


__all__ = ["BAR_STAGES", "describe_board_event", "describe_epoch", "describe_event",
           "finish_text", "phase_title", "progress_value"]
