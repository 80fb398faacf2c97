"""Run ``python -m NNSegLib <command> … --progress-json -`` as a background job.

The Slicer module must never block its GUI: long stages (fingerprint, plan, train,
predict) run in a child process whose stdout carries one JSON event per line (see
:mod:`NNSegLib.util.progress`). A reader thread turns those lines into dictionaries on a queue;
the GUI drains it with :meth:`ProcessJob.poll` from a timer. Lines that are not JSON (library
warnings, tracebacks) become ``{"event": "log", "text": ...}`` events so nothing is lost.

:meth:`ProcessJob.cancel` stops the whole process tree gracefully first, the same way on every
platform: the job's *stop file* is created (``--stop-file``, watched by the CLI) and the
process is signalled (SIGTERM on Linux/macOS; ``CTRL_BREAK_EVENT`` to its process group on
Windows, where children start in a new process group with no console window,
:func:`popen_options`). The CLI turns either into a cancel request, so training writes its
checkpoint. Whatever still lives after a grace period is killed.

No ``qt`` here: the same class runs headless and in tests.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Sequence

from NNSegLib.jobs.base import JobStatus, parse_line
from NNSegLib.util.command_line import common_argv, has_progress_json, has_stop_file
from NNSegLib.util.errors import EXIT_OK


def library_root() -> Path:
    """The folder that contains the ``NNSegLib`` package (put on the child's PYTHONPATH)."""
    return Path(__file__).resolve().parents[2]


#: Windows process-creation flags (numeric, so they can be computed and tested anywhere).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
#: ``signal.CTRL_BREAK_EVENT`` (defined on Windows only).
CTRL_BREAK_EVENT = 1


def popen_options(os_name: str = os.name, detached: bool = False) -> dict:
    """Extra :class:`subprocess.Popen` arguments for a background ``NNSegLib`` process.

    Windows: no console window (``CREATE_NO_WINDOW`` plus a hidden ``STARTUPINFO``) and a
    new process group, so :func:`graceful_stop` can send it ``CTRL_BREAK_EVENT`` without
    hitting Slicer. Linux/macOS: nothing, or a new session for a ``detached`` process (it
    then ignores the terminal's Ctrl-C and the end of Slicer's process group).
    """
    if os_name == "nt":
        options: dict = {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
        startupinfo_class = getattr(subprocess, "STARTUPINFO", None)
        if startupinfo_class is not None:  # pragma: no cover - Windows only
            info = startupinfo_class()
            info.dwFlags |= getattr(subprocess, "STARTF_USESHOWWINDOW", 1)
            info.wShowWindow = 0  # SW_HIDE
            options["startupinfo"] = info
        return options
    return {"start_new_session": True} if detached else {}


def graceful_stop(pid: int, stop_file: Path | None = None, os_name: str = os.name,
                  kill=os.kill) -> list[str]:
    """Ask a process to stop cleanly; returns what was done (for logs and tests).

    Creates ``stop_file`` (watched by ``nnseg --stop-file``), then signals ``pid``: SIGTERM
    on Linux/macOS, ``CTRL_BREAK_EVENT`` to its process group on Windows (only reaches
    processes sharing a console with the sender; the stop file covers the other cases).
    Errors (process gone, no console) are ignored.
    """
    done = []
    if stop_file is not None:
        try:
            Path(stop_file).parent.mkdir(parents=True, exist_ok=True)
            Path(stop_file).touch()
            done.append("stop file")
        except OSError:
            pass
    sig = CTRL_BREAK_EVENT if os_name == "nt" else signal.SIGTERM
    try:
        kill(pid, sig)
        done.append("CTRL_BREAK_EVENT" if os_name == "nt" else "SIGTERM")
    except (OSError, ValueError):
        pass
    return done


def stop_tree(process: subprocess.Popen | None, pid: int, stop_file: Path | None,
              grace: float, os_name: str = os.name) -> None:
    """Stop ``pid`` and its descendants: gracefully first, killed after ``grace`` seconds.

    ``process`` (our own child, or ``None`` for a process started by an earlier Slicer
    session) is waited for through :class:`subprocess.Popen` so its exit code is kept.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    graceful_stop(pid, stop_file, os_name)
    if os_name != "nt":  # Windows: CTRL_BREAK_EVENT went to the whole process group
        for p in descendants:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
    deadline = time.monotonic() + grace
    if process is not None:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    else:
        _, alive = psutil.wait_procs([root], timeout=grace)
        for p in alive:
            _kill(p)
    _, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    for p in alive:
        _kill(p)
    psutil.wait_procs(alive, timeout=5)


def _kill(p) -> None:
    import psutil

    try:
        p.kill()
    except psutil.NoSuchProcess:
        pass


class ProcessJob:
    """One ``python -m NNSegLib`` child process with parsed progress events.

    Args:
        args: Command and arguments after ``-m NNSegLib``, e.g. ``["plan", "/data/D1"]``.
            ``--progress-json -`` is appended unless already present.
        python: Interpreter to run (in Slicer: ``PythonSlicer``).
        cwd: Working folder of the child.
        env: Extra environment variables for the child.
        module: Module run with ``-m``; tests may point it at a stand-in script by passing
            ``module=None`` and the script path as ``args[0]``.
        stop_file: File whose creation asks the command to stop (``--stop-file``); a new
            one in a temporary folder by default when running ``NNSegLib``.

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
        stop_file: Path | None = None,
    ) -> None:
        args = [str(a) for a in args]
        if module is not None and not has_progress_json(args):
            args += common_argv(progress_json="-")
        self._own_stop_dir: Path | None = None
        if module == "NNSegLib" and stop_file is None and not has_stop_file(args):
            self._own_stop_dir = Path(tempfile.mkdtemp(prefix="nnseg_job_"))
            stop_file = self._own_stop_dir / "stop"
        if stop_file is not None and not has_stop_file(args):
            args += common_argv(stop_file=stop_file)
        self.stop_file = stop_file
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
        kwargs = popen_options()
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
            if self._own_stop_dir is not None:  # the stop file's folder is ours to remove
                shutil.rmtree(self._own_stop_dir, ignore_errors=True)
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

    def log_tail(self, n: int = 50) -> list[str]:
        """The last ``n`` non-JSON output lines (tracebacks, warnings)."""
        return self.log[-n:]

    def wait(self, timeout: float | None = None) -> list[dict]:
        """Block until the job ends (tests, scripts); return all its events."""
        self.process.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=5)
        self.poll()
        return self.events

    # -- cancelling ---------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the command to stop cleanly and return at once (stop file + signal)."""
        self.cancel_requested = True
        if self.process.poll() is None:
            graceful_stop(self.process.pid, self.stop_file)

    def cancel(self, grace: float = 10.0) -> int | None:
        """Stop the process and all its descendants (see :func:`stop_tree`).

        The stop file and SIGTERM (``CTRL_BREAK_EVENT`` on Windows) come first: training
        saves its checkpoint and exits with 130; whatever still lives after ``grace``
        seconds is killed.

        Returns:
            The exit code of the main process.
        """
        self.cancel_requested = True
        if self.process.poll() is not None:
            return self.process.returncode
        stop_tree(self.process, self.process.pid, self.stop_file, grace)
        return self.process.returncode


class JobChain:
    """Several ``NNSegLib`` commands run one after the other (e.g. fingerprint → plan).

    The next command starts from :meth:`poll` once the previous one ended with exit code
    0; a failure or :meth:`cancel` stops the chain. Events are tagged with ``"step"``
    (index of the command).

    Args:
        steps: Argument lists, one per command (as for :class:`ProcessJob`).
        **job_kwargs: Passed to every :class:`ProcessJob` (``python``, ``cwd``, ``env``, ...).
    """

    def __init__(self, steps: Sequence[Sequence[str]], **job_kwargs) -> None:
        if not steps:
            raise ValueError("JobChain needs at least one command")
        self.steps = [list(s) for s in steps]
        self.job_kwargs = job_kwargs
        self.index = 0
        self.jobs: list[ProcessJob] = [ProcessJob(self.steps[0], **job_kwargs)]
        self.started_at = self.jobs[0].started_at
        self._cancelled = False

    @property
    def current(self) -> ProcessJob:
        return self.jobs[-1]

    @property
    def cancel_requested(self) -> bool:
        return self._cancelled

    def poll(self) -> list[dict]:
        """Events since the last call; starts the next command when one succeeds."""
        events = [dict(e, step=self.index) for e in self.current.poll()]
        if (self.current.finished and self.current.status is JobStatus.OK
                and not self._cancelled and self.index + 1 < len(self.steps)):
            self.index += 1
            self.jobs.append(ProcessJob(self.steps[self.index], **self.job_kwargs))
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

    def log_tail(self, n: int = 50) -> list[str]:
        return self.current.log_tail(n)

    def wait(self, timeout: float | None = None) -> list[dict]:
        """Block until the chain ends; returns every event of every command."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.current.wait(remaining)
            self.poll()
            if self.finished:
                return [dict(e, step=i) for i, job in enumerate(self.jobs) for e in job.events]

    def request_stop(self) -> None:
        """Ask the running command to stop cleanly (returns at once); no further one starts."""
        self._cancelled = True
        self.current.request_stop()

    def cancel(self, grace: float = 10.0) -> int | None:
        """Cancel the running command; no further command starts."""
        self._cancelled = True
        return self.current.cancel(grace)
