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
:func:`~NNSegLib.jobs.texts.phase_title`); after each phase that succeeded it adds
a ``phase_done`` event with the phase's
:class:`~NNSegLib.inference.predict_timing.Measurement` (from the prediction's ``done``
event and the phase's wall time), which the module keeps for the expected times
(:mod:`NNSegLib.slicer.segment_times`). Jobs are started by an injected function (the
module's :class:`~NNSegLib.jobs.process.JobChain`; tests pass a fake runner). No ``qt``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from NNSegLib.inference.predict_timing import Measurement, device_kind
from NNSegLib.jobs.base import JobStatus
from NNSegLib.jobs.sequence import JobSequence, Phase
from NNSegLib.slicer.segment_run import SegmentRun, deliver_results
from NNSegLib.util.i18n import tr

PREVIEW, FULL = "preview", "full"
#: The timing mode of each phase (:data:`NNSegLib.inference.predict_timing.MODES`).
MODE_OF_PHASE = {PREVIEW: "fast", FULL: "full"}


def phases_of(run: SegmentRun) -> list[Phase]:
    """The preview (when the run has its commands), then the full prediction."""
    phases = [Phase(PREVIEW, run.preview_steps)] if run.preview_steps else []
    return phases + [Phase(FULL, run.steps)]


class SegmentSequence(JobSequence):
    """Run a Segment job's phases one after the other (see the module doc and
    :class:`~NNSegLib.jobs.sequence.JobSequence`).

    Args:
        run: The captured run (its ``preview_steps`` and ``steps``).
        start: Starts a job for a list of commands and returns it.

    Attributes:
        completed: Phases that finished successfully, in order.
        preview_names: Names of the nodes the preview went into (set by
            :func:`deliver_preview`).
    """

    def __init__(self, run: SegmentRun, start: Callable[[list[list[str]]], Any]) -> None:
        self.run = run
        self.preview_names: list[str] = []
        self._reports: dict[str, dict] = {}
        super().__init__(phases_of(run), start)

    @property
    def has_preview(self) -> bool:
        return self.phases[0].name == PREVIEW

    def tag_events(self) -> bool:
        return self.has_preview

    def on_events(self, name: str, events: list[dict]) -> None:
        for event in events:
            if event.get("event") == "done" and "megavoxels" in event:
                self._reports[name] = event

    def phase_report(self, name: str, job: Any) -> dict[str, Any]:
        measurement = self.measurement(name, job.elapsed)
        return {"model": self.run.source,
                "measurement": measurement.to_dict() if measurement else None}

    def start_failure(self, error: Exception) -> str:
        return tr("could not start the full-quality segmentation: {error}", error=error)

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
