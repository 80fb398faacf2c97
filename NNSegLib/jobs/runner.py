"""The process that runs a background job's commands and records how it went.

``python -m NNSegLib.jobs.runner RECORD_DIR`` runs the ``nnseg`` commands listed in
``RECORD_DIR/job.json`` one after the other (see :mod:`NNSegLib.jobs.detached`,
which starts it and reads its files). Everything it knows goes to files, so a Slicer
session that did not start it (or a restarted one) can follow it:

* ``job.json`` — the record: commands, current step, process ids, exit codes, final
  ``status`` (``ok``, ``cancelled``, ``failed``, ``bad input``), times;
* ``events.jsonl`` — the commands' progress events (``--progress-json``) plus one
  ``{"event": "step", ...}`` line before each command;
* ``output.log`` — the commands' stdout/stderr (tracebacks, warnings);
* ``stop`` — created by whoever wants the job to stop: every command runs with
  ``--stop-file`` on it and stops cleanly (training writes its checkpoint); no later
  command starts.

An *attached* job (``parent_pid`` set) stops the same way when the Slicer process that
started it ends, also after a crash; a *detached* one keeps running. Standard library,
psutil and ``NNSegLib.util`` only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
OUTPUT_FILE = "output.log"
STOP_FILE = "stop"
#: Final states of ``job.json``'s ``status`` (``JobStatus`` values, plus ``lost``).
FINAL_STATES = ("ok", "cancelled", "failed", "bad input", "lost")


def read_record(folder: Path) -> dict[str, Any]:
    """``job.json`` of a record folder (``{}`` while it is being replaced or is broken)."""
    try:
        data = json.loads((Path(folder) / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Replace ``job.json`` atomically (retrying while a reader holds it open on Windows)."""
    from NNSegLib.util.atomic import write_json

    for attempt in range(20):
        try:
            write_json(Path(folder) / JOB_FILE, record)
            return
        except PermissionError:  # pragma: no cover - Windows: file open in another process
            time.sleep(0.05 * (attempt + 1))
    write_json(Path(folder) / JOB_FILE, record)


def append_event(folder: Path, event: dict[str, Any]) -> None:
    """Append one event line to ``events.jsonl`` (only while no command is writing)."""
    with open(Path(folder) / EVENTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")


def process_alive(pid: int | None, create_time: float | None = None) -> bool:
    """Whether ``pid`` runs (and is the process started at ``create_time``, if given)."""
    import psutil

    if not pid:
        return False
    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(p.create_time() - float(create_time)) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def final_status(returncodes: list[int], stopped: bool) -> str:
    """The record's ``status`` from the commands' exit codes (last one decides)."""
    from NNSegLib.jobs.base import JobStatus

    if returncodes and all(c == 0 for c in returncodes) and not stopped:
        return JobStatus.OK.value
    if not returncodes or stopped:
        return JobStatus.CANCELLED.value
    return JobStatus.from_returncode(returncodes[-1]).value


def run(folder: Path, poll_interval: float = 0.5) -> int:
    """Run the record's commands; returns the exit code of the last one run."""
    from NNSegLib.jobs.process import library_root, popen_options
    from NNSegLib.util.command_line import common_argv

    folder = Path(folder)
    record = read_record(folder)
    stop = folder / STOP_FILE
    record.update(status="running", runner_pid=os.getpid(), started=time.time(),
                  returncodes=[])
    write_record(folder, record)

    def request_stop(signum: int, frame: Any) -> None:
        stop.touch()

    for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGBREAK", None)):
        if signum is not None:
            signal.signal(signum, request_stop)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(library_root())] + [p for p in [env.get("PYTHONPATH", "")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    python = record.get("python") or sys.executable
    steps = record.get("steps", [])
    code = 0
    with open(folder / OUTPUT_FILE, "a", encoding="utf-8") as log:
        for index, step in enumerate(steps):
            if stop.exists():
                break
            append_event(folder, {"event": "step", "step": index, "of": len(steps),
                                  "args": step})
            command = [python, "-m", record.get("module") or "NNSegLib", *[str(a) for a in step],
                       *common_argv(folder / EVENTS_FILE, stop, quiet=True)]
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=record.get("cwd") or None,
                                     env=env, **popen_options())
            record.update(step=index, child_pid=child.pid)
            write_record(folder, record)
            while child.poll() is None:
                if not stop.exists() and not _parent_alive(record):
                    stop.write_text("the Slicer session that started this job ended\n")
                time.sleep(poll_interval)
            code = child.returncode
            record["returncodes"].append(code)
            write_record(folder, record)
            if code != 0:
                break
    record.update(status=final_status(record["returncodes"], stop.exists()), ended=time.time(),
                  child_pid=None)
    write_record(folder, record)
    append_event(folder, {"event": "job_end", "status": record["status"]})
    return code


def _parent_alive(record: dict[str, Any]) -> bool:
    """An attached job's parent (the Slicer session) still runs; always true if detached."""
    if not record.get("parent_pid"):
        return True
    return process_alive(record["parent_pid"], record.get("parent_create_time"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m NNSegLib.jobs.runner RECORD_DIR", file=sys.stderr)
        return 2
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
