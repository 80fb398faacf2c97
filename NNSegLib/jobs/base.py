"""What every job of the Slicer module is: one :class:`Job` protocol, its status and events.

A job runs ``nnseg`` commands without blocking the GUI and reports progress as events
(dictionaries, one JSON line each on the wire, :mod:`NNSegLib.util.progress`). The module's
job board (:mod:`.board`) follows any :class:`Job`: a process job (:mod:`.process`), a job
whose state lives in files and can outlive Slicer (:mod:`.detached`, run by :mod:`.runner`),
or a sequence of such jobs (:mod:`.sequence`). This floor imports only ``NNSegLib.util``.
"""

from __future__ import annotations

import enum
import json
from typing import List, Protocol, Sequence

from NNSegLib.util.errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK


class JobStatus(enum.Enum):
    """What a finished (or running) job's exit code means."""

    RUNNING = "running"
    OK = "ok"
    BAD_INPUT = "bad input"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @classmethod
    def from_returncode(cls, code: int | None) -> JobStatus:
        """Map a process exit code to a status (negative codes are deaths by signal)."""
        if code is None:
            return cls.RUNNING
        if code == EXIT_OK:
            return cls.OK
        if code == EXIT_BAD_INPUT:
            return cls.BAD_INPUT
        if code == EXIT_CANCELLED or code in (-2, -15, -9):
            return cls.CANCELLED
        return cls.FAILED


class Job(Protocol):
    """What the job board and the panels use of a running job."""

    @property
    def cancel_requested(self) -> bool: ...

    @property
    def finished(self) -> bool: ...

    @property
    def status(self) -> JobStatus: ...

    @property
    def elapsed(self) -> float: ...

    def poll(self) -> list[dict]: ...

    def error_message(self) -> str | None: ...

    def log_tail(self, n: int = 50) -> list[str]: ...

    def cancel(self, grace: float = ...) -> JobStatus: ...


class CommandStep(List[str]):
    """One command of a job (an argument list) with the typed context of what it was asked.

    ``context`` is JSON-able (e.g. :meth:`~NNSegLib.slicer.requests.TrainContext.to_json`);
    a job started in files stores it beside the command, so whoever follows the job later
    reads what was asked instead of parsing the argument list back.
    """

    def __init__(self, argv: Sequence[object] = (), context: dict | None = None) -> None:
        super().__init__(str(a) for a in argv)
        self.context = context


def step_context(step: Sequence[str]) -> dict | None:
    """The context a step carries (``None`` for a plain argument list)."""
    return getattr(step, "context", None)


def parse_line(line: str) -> dict | None:
    """Parse one stdout line as a progress event; ``None`` when it is not a JSON object."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or "event" not in event:
        return None
    return event


def format_eta(seconds: float | None) -> str:
    """``3725`` → ``"1:02:05"``; ``None`` → ``"–"``."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def estimate_eta(elapsed: float, current: float, total: float | None) -> float | None:
    """Remaining seconds assuming a constant rate, or ``None`` when unknown."""
    if not total or current <= 0 or elapsed <= 0:
        return None
    return elapsed * (total - current) / current


__all__ = ["CommandStep", "Job", "JobStatus", "estimate_eta", "format_eta", "parse_line",
           "step_context"]
