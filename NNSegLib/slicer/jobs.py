"""Run ``python -m NNSegLib <command> … --progress-json -`` as a background job.

The Slicer module must never block its GUI: long stages (fingerprint, plan, train,
predict) run in a child process whose stdout carries one JSON event per line (see
:mod:`NNSegLib.util.progress`). A reader thread turns those lines into dictionaries on a queue;
the GUI drains it with :meth:`Job.poll` from a timer. Lines that are not JSON (library
warnings, tracebacks) become ``{"event": "log", "text": ...}`` events so nothing is lost.

:meth:`Job.cancel` stops the whole process tree: SIGTERM first (the CLI turns it into a
cancel request so training writes its checkpoint), then SIGKILL after a grace period.

No ``qt`` here: the same class runs headless and in tests.
"""

from __future__ import annotations

import enum
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Sequence

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


def library_root() -> Path:
    """The folder that contains the ``NNSegLib`` package (put on the child's PYTHONPATH)."""
    return Path(__file__).resolve().parents[2]


class Job:
    """One ``python -m NNSegLib`` child process with parsed progress events.

    Args:
        args: Command and arguments after ``-m NNSegLib``, e.g. ``["plan", "/data/D1"]``.
            ``--progress-json -`` is appended unless already present.
        python: Interpreter to run (in Slicer: ``PythonSlicer``).
        cwd: Working folder of the child.
        env: Extra environment variables for the child.
        module: Module run with ``-m``; tests may point it at a stand-in script by passing
            ``module=None`` and the script path as ``args[0]``.

    Attributes:
        command: The full command line.
        log: Every non-JSON line, in order (also delivered as ``log`` events).
        events: Every event received so far (also delivered by :meth:`poll`).
    """

    def __init__(
        self,
        args: Sequence[str],
        python: str = sys.executable,
        cwd: Path | str | None = None,
        env: dict[str, str] | None = None,
        module: str | None = "NNSegLib",
    ) -> None:
        args = [str(a) for a in args]
        if module is not None and "--progress-json" not in args:
            args += ["--progress-json", "-"]
        self.command = [str(python)] + (["-m", module] if module else []) + args
        self.log: list[str] = []
        self.events: list[dict] = []
        self.cancel_requested = False
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self._queue: queue.Queue = queue.Queue()
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join(
            [str(library_root())] + [p for p in [child_env.get("PYTHONPATH", "")] if p]
        )
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.update(env or {})
        kwargs: dict = {}
        if os.name == "nt":  # pragma: no cover - Windows only
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        try:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                cwd=str(cwd) if cwd else None,
                env=child_env,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **kwargs,
            )
        except OSError as e:
            raise RuntimeError(f"cannot start {self.command[0]!r}: {e}") from e
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, False), daemon=True),
        ]
        for t in self._readers:
            t.start()

    # -- reading ------------------------------------------------------------------------
    def _read(self, stream: IO[str], parse: bool) -> None:
        for line in iter(stream.readline, ""):
            line = line.rstrip("\r\n")
            if not line:
                continue
            event = parse_line(line) if parse else None
            if event is None:
                event = {"event": "log", "text": line, "stream": "stdout" if parse else "stderr"}
            self._queue.put(event)
        stream.close()

    def poll(self) -> list[dict]:
        """Return the events received since the last call (never blocks)."""
        out = []
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            if event.get("event") == "log":
                self.log.append(event["text"])
            self.events.append(event)
            out.append(event)
        if self.finished_at is None and self.process.poll() is not None and not any(
            t.is_alive() for t in self._readers
        ) and self._queue.empty():
            self.finished_at = time.monotonic()
        return out

    # -- state --------------------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        """Exit code, or ``None`` while running."""
        return self.process.poll()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def finished(self) -> bool:
        """True once the process ended *and* all its output was delivered by :meth:`poll`."""
        return self.finished_at is not None

    @property
    def status(self) -> JobStatus:
        code = self.returncode
        if code is not None and self.cancel_requested and code != EXIT_OK:
            return JobStatus.CANCELLED
        return JobStatus.from_returncode(code)

    @property
    def elapsed(self) -> float:
        """Seconds since start (until the end once finished)."""
        return (self.finished_at or time.monotonic()) - self.started_at

    def error_message(self) -> str | None:
        """The last ``error`` event's message, else the last log line of a failed job."""
        for event in reversed(self.events):
            if event.get("event") == "error":
                return str(event.get("message", ""))
        if self.status in (JobStatus.FAILED, JobStatus.BAD_INPUT) and self.log:
            return self.log[-1]
        return None

    def wait(self, timeout: float | None = None) -> list[dict]:
        """Block until the job ends (tests, scripts); return all its events."""
        self.process.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=5)
        self.poll()
        return self.events

    # -- cancelling ---------------------------------------------------------------------
    def cancel(self, grace: float = 10.0) -> int | None:
        """Stop the process and all its descendants.

        SIGTERM is sent to every process of the tree first (training saves its checkpoint
        and exits with 130); whatever still lives after ``grace`` seconds is killed.

        Returns:
            The exit code of the main process.
        """
        import psutil

        self.cancel_requested = True
        if self.process.poll() is not None:
            return self.process.returncode
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        # The main process is waited for through Popen (psutil.wait would reap it and
        # lose its exit code); descendants through psutil.
        for p in [psutil.Process(self.process.pid)] + descendants:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + grace
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        return self.process.returncode


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


class JobChain:
    """Several ``NNSegLib`` commands run one after the other (e.g. fingerprint → plan).

    The next command starts from :meth:`poll` once the previous one ended with exit code
    0; a failure or :meth:`cancel` stops the chain. Events are tagged with ``"step"``
    (index of the command).

    Args:
        steps: Argument lists, one per command (as for :class:`Job`).
        **job_kwargs: Passed to every :class:`Job` (``python``, ``cwd``, ``env``, ...).
    """

    def __init__(self, steps: Sequence[Sequence[str]], **job_kwargs) -> None:
        if not steps:
            raise ValueError("JobChain needs at least one command")
        self.steps = [list(s) for s in steps]
        self.job_kwargs = job_kwargs
        self.index = 0
        self.jobs: list[Job] = [Job(self.steps[0], **job_kwargs)]
        self.started_at = self.jobs[0].started_at
        self._cancelled = False

    @property
    def current(self) -> Job:
        return self.jobs[-1]

    def poll(self) -> list[dict]:
        """Events since the last call; starts the next command when one succeeds."""
        events = [dict(e, step=self.index) for e in self.current.poll()]
        if (self.current.finished and self.current.status is JobStatus.OK
                and not self._cancelled and self.index + 1 < len(self.steps)):
            self.index += 1
            self.jobs.append(Job(self.steps[self.index], **self.job_kwargs))
        return events

    @property
    def finished(self) -> bool:
        """True when the last command finished, or any command did not succeed."""
        job = self.current
        if not job.finished:
            return False
        return job.status is not JobStatus.OK or self.index + 1 >= len(self.steps)

    @property
    def status(self) -> JobStatus:
        if not self.finished:
            return JobStatus.RUNNING
        return self.current.status

    @property
    def elapsed(self) -> float:
        return self.current.elapsed + (self.current.started_at - self.started_at)

    def error_message(self) -> str | None:
        return self.current.error_message()

    def wait(self, timeout: float | None = None) -> list[dict]:
        """Block until the chain ends; returns every event of every command."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.current.wait(remaining)
            self.poll()
            if self.finished:
                return [dict(e, step=i) for i, job in enumerate(self.jobs) for e in job.events]

    def cancel(self, grace: float = 10.0) -> int | None:
        """Cancel the running command; no further command starts."""
        self._cancelled = True
        return self.current.cancel(grace)
