"""Jobs run as the phases of one job: each phase starts when the one before succeeded.

:class:`JobSequence` is one :class:`~NNSegLib.jobs.base.Job` for the job board. With more than
one phase its events carry ``"phase"``; after each phase that succeeded it adds a
``phase_done`` event (with what :meth:`JobSequence.phase_report` adds) and starts the next
phase, unless cancelled. Cancelling, or a failure, stops the sequence; the phases that
completed are kept in :attr:`JobSequence.completed`. Jobs are started by an injected
function (a :class:`~NNSegLib.jobs.process.JobChain` in the module; tests pass a fake).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from NNSegLib.jobs.base import JobStatus


@dataclass(frozen=True)
class Phase:
    """One job of the sequence: its name and ``nnseg`` commands."""

    name: str
    steps: list[list[str]]


class JobSequence:
    """Run phases one after the other (see the module doc).

    Args:
        phases: The phases, in order (at least one).
        start: Starts a job for a list of commands and returns it (``poll``, ``finished``,
            ``status``, ``elapsed``, ``cancel``, ``request_stop``, ``error_message``,
            ``log_tail``).

    Attributes:
        completed: Phases that finished successfully, in order.
    """

    def __init__(self, phases: Sequence[Phase], start: Callable[[list[list[str]]], Any]) -> None:
        self.phases = list(phases)
        self._start = start
        self._lock = threading.Lock()
        self._cancelled = False
        self._failure: str | None = None
        self.index = 0
        self.jobs = [start(self.phases[0].steps)]
        self.completed: list[str] = []

    # -- what a subclass may add -----------------------------------------------------------
    def phase_report(self, name: str, job: Any) -> dict[str, Any]:
        """More fields of a phase's ``phase_done`` event."""
        return {}

    def start_failure(self, error: Exception) -> str:
        """The error message when the next phase could not be started."""
        return f"could not start the {self.phases[self.index + 1].name} phase: {error}"

    def tag_events(self) -> bool:
        """Whether events carry their phase (by default: with more than one phase)."""
        return len(self.phases) > 1

    # -- state -----------------------------------------------------------------------------
    @property
    def current(self) -> Any:
        return self.jobs[-1]

    @property
    def phase(self) -> str:
        """The phase running (or the last one run)."""
        return self.phases[self.index].name

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
        if status is JobStatus.OK and self.phases[-1].name not in self.completed:
            return JobStatus.CANCELLED   # cancelled between two phases
        return status

    @property
    def elapsed(self) -> float:
        """Seconds the phases ran (until the end once finished)."""
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
        events = [dict(e, phase=name) if self.tag_events() else dict(e) for e in job.poll()]
        self.on_events(name, events)
        if job.finished and job.status is JobStatus.OK and name not in self.completed:
            self.completed.append(name)
            events.append({"event": "phase_done", "phase": name, "seconds": job.elapsed,
                           **self.phase_report(name, job)})
            self._next_phase()
        return events

    def on_events(self, name: str, events: list[dict]) -> None:
        """A phase's new events (before ``phase_done``); a subclass may keep some."""

    def _next_phase(self) -> None:
        with self._lock:
            if self._cancelled or self.index + 1 >= len(self.phases):
                return
            try:
                job = self._start(self.phases[self.index + 1].steps)
            except Exception as e:  # e.g. the interpreter cannot be started
                self._failure = self.start_failure(e)
                return
            self.index += 1
            self.jobs.append(job)

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


__all__ = ["JobSequence", "Phase"]
