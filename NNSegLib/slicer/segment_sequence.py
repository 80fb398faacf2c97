"""A Segment job with a fast first answer: the preview, then the full-quality result.

With *Preview first* the Segment panel runs two phases on the inputs captured once
(:func:`~NNSegLib.slicer.segment_run.capture_segment_run`):

1. ``preview``: ``nnseg predict --fast`` (one fold, no test-time augmentation, windows
   without overlap; :mod:`NNSegLib.inference.fast_mode`). Its result goes into the output
   segmentation at once, named "… (preview)" and tagged
   (:func:`~NNSegLib.slicer.segment_run.mark_preview`);
2. ``full``: the prediction with the panel's options. Its result replaces the preview's
   segments and removes the mark — unless the preview was edited or deleted meanwhile
   (then the result goes into a new node and the edits are kept, as for any output).

Cancelling, or a failure, during the full phase keeps the preview and says so
(:func:`outcome_text`). Without *Preview first* the job has the full phase only and
behaves as before.

:class:`SegmentSequence` is one job for the :class:`~NNSegLib.jobs.board.JobBoard`
(``poll``, ``finished``, ``status``, ``cancel`` …). With two phases its events carry
``"phase"`` (the status line says which phase runs,
:func:`~NNSegLib.slicer.gui_summaries.phase_title`); after each phase that succeeded it adds
a ``phase_done`` event with the phase's
:class:`~NNSegLib.inference.predict_timing.Measurement` (from the prediction's ``done``
event and the phase's wall time), which the module keeps for the expected times
(:mod:`NNSegLib.slicer.segment_times`). Jobs are started by an injected function (the
module's :class:`~NNSegLib.jobs.process.JobChain`; tests pass a fake runner). No ``qt``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from NNSegLib.inference.predict_timing import Measurement, device_kind
from NNSegLib.jobs.base import JobStatus
from NNSegLib.slicer.segment_run import SegmentRun, deliver_results
from NNSegLib.util.i18n import tr

PREVIEW, FULL = "preview", "full"
#: The timing mode of each phase (:data:`NNSegLib.inference.predict_timing.MODES`).
MODE_OF_PHASE = {PREVIEW: "fast", FULL: "full"}


@dataclass(frozen=True)
class Phase:
    """One job of the sequence: its name and ``nnseg`` commands."""

    name: str
    steps: list[list[str]]


def phases_of(run: SegmentRun) -> list[Phase]:
    """The preview (when the run has its commands), then the full prediction."""
    phases = [Phase(PREVIEW, run.preview_steps)] if run.preview_steps else []
    return phases + [Phase(FULL, run.steps)]


class SegmentSequence:
    """Run a Segment job's phases one after the other (see the module doc).

    Args:
        run: The captured run (its ``preview_steps`` and ``steps``).
        start: Starts a job for a list of commands and returns it (``poll``, ``finished``,
            ``status``, ``elapsed``, ``cancel``, ``request_stop``, ``error_message``,
            ``log_tail``).

    Attributes:
        completed: Phases that finished successfully, in order.
        preview_names: Names of the nodes the preview went into (set by
            :func:`deliver_preview`).
    """

    def __init__(self, run: SegmentRun, start: Callable[[list[list[str]]], Any]) -> None:
        self.run = run
        self.phases = phases_of(run)
        self._start = start
        self._lock = threading.Lock()
        self._cancelled = False
        self._failure: str | None = None
        self.index = 0
        self.jobs = [start(self.phases[0].steps)]
        self.completed: list[str] = []
        self.preview_names: list[str] = []
        self._reports: dict[str, dict] = {}

    # -- state -----------------------------------------------------------------------------
    @property
    def current(self) -> Any:
        return self.jobs[-1]

    @property
    def phase(self) -> str:
        """The phase running (or the last one run)."""
        return self.phases[self.index].name

    @property
    def has_preview(self) -> bool:
        return self.phases[0].name == PREVIEW

    @property
    def cancel_requested(self) -> bool:
        return self._cancelled

    @property
    def detached(self) -> bool:
        return False

    @property
    def finished(self) -> bool:
        """True when the last phase ended, or a phase did not succeed, or after a cancel."""
        if self._failure is not None:
            return True
        job = self.current
        if not job.finished:
            return False
        return (job.status is not JobStatus.OK or self._cancelled
                or self.index + 1 >= len(self.phases))

    @property
    def status(self) -> JobStatus:
        if not self.finished:
            return JobStatus.RUNNING
        if self._failure is not None:
            return JobStatus.FAILED
        status = self.current.status
        if status is JobStatus.OK and FULL not in self.completed:
            return JobStatus.CANCELLED   # cancelled between the preview and the full phase
        return status

    @property
    def elapsed(self) -> float:
        """Seconds since the first phase started (until the end once finished)."""
        return float(sum(job.elapsed for job in self.jobs))

    def error_message(self) -> str | None:
        return self._failure or self.current.error_message()

    def log_tail(self, n: int = 50) -> list[str]:
        return self.current.log_tail(n)

    # -- running ---------------------------------------------------------------------------
    def poll(self) -> list[dict]:
        """Events since the last call; a successful phase adds ``phase_done`` and starts the
        next phase (unless cancelled)."""
        name, job = self.phase, self.current
        events = [dict(e, phase=name) if self.has_preview else dict(e) for e in job.poll()]
        for event in events:
            if event.get("event") == "done" and "megavoxels" in event:
                self._reports[name] = event
        if job.finished and job.status is JobStatus.OK and name not in self.completed:
            self.completed.append(name)
            measurement = self.measurement(name, job.elapsed)
            events.append({"event": "phase_done", "phase": name, "seconds": job.elapsed,
                           "model": self.run.source,
                           "measurement": measurement.to_dict() if measurement else None})
            self._next_phase()
        return events

    def _next_phase(self) -> None:
        with self._lock:
            if self._cancelled or self.index + 1 >= len(self.phases):
                return
            try:
                job = self._start(self.phases[self.index + 1].steps)
            except Exception as e:  # e.g. the interpreter cannot be started
                self._failure = tr("could not start the full-quality segmentation: {error}",
                                   error=e)
                return
            self.index += 1
            self.jobs.append(job)

    def measurement(self, phase: str, job_seconds: float) -> Measurement | None:
        """The phase's :class:`Measurement`, from its prediction's ``done`` event."""
        report = self._reports.get(phase)
        if report is None:
            return None
        try:
            return Measurement(MODE_OF_PHASE[phase], device_kind(report.get("device", "cpu")),
                               float(job_seconds), float(report["seconds"]),
                               float(report.get("network_seconds", 0.0)),
                               float(report["megavoxels"]), float(report["passes"]), time.time())
        except (KeyError, TypeError, ValueError):
            return None

    def cancel(self, grace: float = 10.0) -> Any:
        """Stop the running phase; no further phase starts."""
        with self._lock:
            self._cancelled = True
            job = self.current
        return job.cancel(grace)

    def request_stop(self) -> None:
        """Ask the running phase to stop (returns at once); no further phase starts."""
        with self._lock:
            self._cancelled = True
            job = self.current
        job.request_stop()


# ----------------------------------------------------------------------------------------
# What the panel does with the phases
# ----------------------------------------------------------------------------------------
def deliver_preview(scene: Any, sequence: SegmentSequence) -> str:
    """Put the preview into the output segmentation(s); returns the panel's status line."""
    results = deliver_results(scene, sequence.run, preview=True)
    sequence.preview_names = [r.segmentation.GetName() for r in results]
    notes = " ".join(n for r in results for n in r.notes)
    text = tr("Preview in '{names}' after {seconds:.0f} s (one fold, no test-time "
              "augmentation); the full-quality segmentation is running and will replace it.",
              names="', '".join(sequence.preview_names), seconds=sequence.elapsed)
    return f"{text} {notes}".strip()


def outcome_text(sequence: SegmentSequence, finished: str) -> str | None:
    """The status line when the full phase did not deliver but the preview did, else ``None``.

    Args:
        sequence: The ended sequence.
        finished: The usual end-of-job line (``"Segmentation cancelled: …"``).
    """
    if FULL in sequence.completed or PREVIEW not in sequence.completed:
        return None
    names = "', '".join(sequence.preview_names) or "?"
    if sequence.status is JobStatus.CANCELLED:
        return tr("Cancelled: the preview is kept in '{names}' (one fold, no test-time "
                  "augmentation); Segment again for the full-quality result.", names=names)
    return tr("{finished} The preview is kept in '{names}'.", finished=finished.rstrip(),
              names=names)


__all__ = ["FULL", "MODE_OF_PHASE", "PREVIEW", "Phase", "SegmentSequence", "deliver_preview",
           "outcome_text", "phases_of"]
