"""Jobs whose state lives in files: they can outlive Slicer and be re-attached later.

Training can take days. :func:`start_file_job` starts :mod:`NNSegLib.jobs.runner` in
its own process with a *record folder* under the work folder (``WORK/jobs/<id>/``), and
returns a :class:`FileJob` that follows it by reading the record's files. A later Slicer
session finds the same jobs with :func:`list_jobs` and follows them the same way
(re-attach), or stops them (:meth:`FileJob.cancel` creates the stop file, which the running
command watches; no signal to a process it did not start is needed).

* attached (default): the runner stops the job cleanly (checkpoint written) when the
  Slicer process that started it ends;
* detached: the job keeps running after Slicer closes (new session on Linux/macOS; on
  Windows a process without a console window, which Windows does not end with its parent).

:class:`FileJob` has the interface of :class:`~NNSegLib.jobs.process.JobChain` that the module
uses (``poll``, ``finished``, ``status``, ``elapsed``, ``error_message``, ``log_tail``,
``cancel``). No ``qt``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.jobs.base import JobStatus, parse_line, step_context
from NNSegLib.jobs.process import library_root, popen_options
from NNSegLib.jobs.runner import (
    EVENTS_FILE,
    FINAL_STATES,
    OUTPUT_FILE,
    STOP_FILE,
    process_alive,
    read_record,
    write_record,
)

#: Finished records kept per work folder (older ones are removed when a job starts).
KEEP_FINISHED = 20


def jobs_folder(work: Path | str) -> Path:
    """Where the record folders of a work folder's background jobs are."""
    from NNSegLib.util.workspace import Workspace

    return Workspace(Path(work)).jobs


def start_file_job(steps: Sequence[Sequence[str]], work: Path | str, kind: str,
                   python: str = sys.executable, detached: bool = False,
                   parent_pid: int | None = None, cwd: Path | str | None = None,
                   module: str = "NNSegLib") -> FileJob:
    """Write a record folder and start the runner on it.

    Args:
        steps: ``nnseg`` argument lists, run one after the other; the context a
            :class:`~NNSegLib.jobs.process.CommandStep` carries is stored with it.
        work: The work folder (records go to ``WORK/jobs/``).
        kind: What the job does (``train``), part of the folder name.
        python: Interpreter (``PythonSlicer`` in Slicer).
        detached: Keep running when the starting process ends.
        parent_pid: The process whose end stops an attached job (default: this one).
        cwd: Working folder of the commands.
        module: What the commands run as ``python -m MODULE`` (tests use a stand-in).
    """
    import psutil

    root = jobs_folder(work)
    prune_records(root)
    folder = _new_folder(root, kind)
    parent = None if detached else (parent_pid or os.getpid())
    record = {
        "kind": kind, "steps": [[str(a) for a in s] for s in steps],
        "contexts": [step_context(s) for s in steps], "detached": detached,
        "python": str(python), "module": module, "cwd": str(cwd) if cwd else None,
        "status": "starting",
        "created": time.time(), "parent_pid": parent,
        "parent_create_time": psutil.Process(parent).create_time() if parent else None,
    }
    write_record(folder, record)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(library_root())] + [p for p in [env.get("PYTHONPATH", "")] if p])
    with open(folder / "runner.log", "a", encoding="utf-8") as log:
        process = subprocess.Popen(
            [str(python), "-m", "NNSegLib.jobs.runner", str(folder)], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            **popen_options(detached=detached))
    record["runner_pid"] = process.pid
    record["runner_create_time"] = _create_time(process.pid)
    _merge_record(folder, record)
    return FileJob(folder, process)


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def _merge_record(folder: Path, started: dict[str, Any]) -> None:
    """Add the runner's pid unless the runner already rewrote the record itself."""
    current = read_record(folder)
    if current.get("status") in (None, "starting"):
        write_record(folder, {**current, **started})


def _new_folder(root: Path, kind: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = root / (f"{stamp}-{kind}" + (f"-{n}" if n else ""))
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"{root}: cannot create a job folder")


def list_jobs(work: Path | str) -> list[FileJob]:
    """Every recorded job of a work folder, oldest first (running or finished)."""
    root = jobs_folder(work)
    if not root.is_dir():
        return []
    return [FileJob(p) for p in sorted(root.iterdir()) if (p / "job.json").is_file()]


def live_jobs(work: Path | str) -> list[FileJob]:
    """The recorded jobs of a work folder that are still running (to re-attach to)."""
    return [job for job in list_jobs(work) if job.alive]


def prune_records(root: Path, keep: int = KEEP_FINISHED) -> None:
    """Remove the oldest finished record folders beyond ``keep``."""
    if not root.is_dir():
        return
    finished = [p for p in sorted(root.iterdir())
                if read_record(p).get("status") in FINAL_STATES]
    for p in finished[:-keep] if keep else finished:
        shutil.rmtree(p, ignore_errors=True)


class FileJob:
    """Follows a job through its record folder (see the module doc).

    Args:
        folder: The record folder.
        process: The runner's :class:`subprocess.Popen` when this process started it
            (reaped through it), else ``None``.
    """

    def __init__(self, folder: Path | str, process: subprocess.Popen | None = None) -> None:
        self.folder = Path(folder)
        self.process = process
        self.events: list[dict] = []
        self.cancel_requested = False
        self._offset = 0
        self._partial = ""
        self._step = 0
        self._lost = False

    # -- the record ---------------------------------------------------------------------
    @property
    def record(self) -> dict[str, Any]:
        return read_record(self.folder)

    @property
    def steps(self) -> list[list[str]]:
        return self.record.get("steps", [])

    @property
    def context(self) -> dict[str, Any] | None:
        """The stored context of the current step (what it was asked), if it has one."""
        contexts = self.record.get("contexts") or []
        step = self.current_step
        return contexts[step] if 0 <= step < len(contexts) else None

    @property
    def detached(self) -> bool:
        return bool(self.record.get("detached"))

    @property
    def kind(self) -> str:
        return str(self.record.get("kind", ""))

    @property
    def alive(self) -> bool:
        """The runner process still runs."""
        if self.process is not None:
            return self.process.poll() is None
        record = self.record
        if record.get("status") in FINAL_STATES:
            return False
        return process_alive(record.get("runner_pid"), record.get("runner_create_time"))

    @property
    def current_step(self) -> int:
        return int(self.record.get("step", self._step) or 0)

    # -- events -------------------------------------------------------------------------
    def poll(self) -> list[dict]:
        """Events appended since the last call (complete lines only; never blocks)."""
        path = self.folder / EVENTS_FILE
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except OSError:
            chunk = ""
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            event = parse_line(line)
            if event is None:
                continue
            if event.get("event") == "step":
                self._step = int(event.get("step", 0))
            event = dict(event, step=self._step)
            self.events.append(event)
            out.append(event)
        return out

    @property
    def finished(self) -> bool:
        """True once the record has a final status (or its runner vanished without one)."""
        status = self.record.get("status")
        if status in FINAL_STATES:
            return True
        if status in ("starting", None) and time.time() - self.record.get("created", 0) < 30:
            return False
        if not self.alive:
            self._lost = True
            return True
        return False

    @property
    def status(self) -> JobStatus:
        if not self.finished:
            return JobStatus.RUNNING
        status = self.record.get("status")
        if self.cancel_requested and status != JobStatus.OK.value:
            return JobStatus.CANCELLED
        if status not in FINAL_STATES:  # the runner vanished without a final status
            return JobStatus.FAILED
        for s in JobStatus:
            if s.value == status:
                return s
        return JobStatus.FAILED

    @property
    def elapsed(self) -> float:
        record = self.record
        start = record.get("started") or record.get("created") or time.time()
        return float((record.get("ended") or time.time()) - start)

    def error_message(self) -> str | None:
        """The last ``error`` event, or why the job ended without a final status."""
        for event in reversed(self.events):
            if event.get("event") == "error":
                return str(event.get("message", ""))
        if self._lost and self.record.get("status") not in FINAL_STATES:
            return "the job's process ended without recording how (killed or crashed)"
        if self.status in (JobStatus.FAILED, JobStatus.BAD_INPUT):
            tail = self.log_tail(1)
            return tail[-1] if tail else None
        return None

    def log_tail(self, n: int = 50) -> list[str]:
        """The last ``n`` lines of the commands' output."""
        try:
            lines = (self.folder / OUTPUT_FILE).read_text(
                encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return lines[-n:]

    def wait(self, timeout: float | None = None, interval: float = 0.2) -> list[dict]:
        """Block until the job ends (tests, scripts); return all its events."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.folder}: still running after {timeout} s")
            self.poll()
            time.sleep(interval)
        if self.process is not None:
            self.process.wait(timeout=30)
        self.poll()
        return self.events

    # -- stopping -----------------------------------------------------------------------
    def request_stop(self, reason: str = "cancelled from Slicer") -> None:
        """Create the stop file: the running command stops cleanly, no next one starts."""
        self.cancel_requested = True
        (self.folder / STOP_FILE).write_text(reason + "\n", encoding="utf-8")

    def cancel(self, grace: float = 60.0) -> JobStatus:
        """Stop the job cleanly; kill its processes if still there after ``grace`` s."""
        from NNSegLib.jobs.process import stop_tree

        self.request_stop()
        deadline = time.monotonic() + grace
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.alive:
            pid = self.record.get("runner_pid")
            if pid:
                stop_tree(self.process, int(pid), self.folder / STOP_FILE, grace=5.0)
        if self.process is not None:
            self.process.wait(timeout=30)
        return self.status


__all__ = ["FileJob", "KEEP_FINISHED", "jobs_folder", "list_jobs", "live_jobs",
           "prune_records", "start_file_job"]
