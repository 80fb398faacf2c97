"""NNSegLib.jobs.detached + job_runner: jobs that live in files, with real processes.

A stand-in for ``python -m NNSegLib`` (``fakennseg``) writes epoch events to the
``--progress-json`` file and stops cleanly (writing a "checkpoint") once the
``--stop-file`` exists, as ``nnseg train`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import FAKE_NNSEG

from NNSegLib.jobs.base import JobStatus
from NNSegLib.jobs.detached import (
    FileJob,
    list_jobs,
    live_jobs,
    prune_records,
    start_file_job,
)
from NNSegLib.jobs.runner import final_status, read_record, write_record

FAKE = FAKE_NNSEG


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A work folder and the stand-in module on the children's PYTHONPATH."""
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "fakennseg.py").write_text(textwrap.dedent(FAKE))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mod"))
    work = tmp_path / "work"
    work.mkdir()
    return work


def _start(work, steps, **kwargs) -> FileJob:
    return start_file_job(steps, work, "train", python=sys.executable, module="fakennseg",
                          **kwargs)


def _wait_for_epochs(job: FileJob, n: int, timeout: float = 30.0) -> list[dict]:
    deadline, events = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        events += job.poll()
        if sum(e["event"] == "epoch" for e in events) >= n:
            return events
        time.sleep(0.05)
    raise AssertionError(f"no {n} epochs within {timeout} s: {events}")


def test_steps_run_in_order_and_everything_is_recorded(fake):
    job = _start(fake, [["a", str(fake), "3"], ["b", str(fake), "2"]])
    events = job.wait(timeout=60)
    assert job.status is JobStatus.OK and job.finished and not job.alive
    assert (fake / "done_a").is_file() and (fake / "done_b").is_file()
    kinds = [(e["event"], e["step"]) for e in events if e["event"] in ("step", "done")]
    assert kinds == [("step", 0), ("done", 0), ("step", 1), ("done", 1)]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [0, 1, 2, 0, 1]
    record = read_record(job.folder)
    assert record["status"] == "ok" and record["returncodes"] == [0, 0]
    assert record["parent_pid"] is not None and record["detached"] is False
    assert job.folder.parent == fake / "jobs" and job.kind == "train"
    assert [j.folder for j in list_jobs(fake)] == [job.folder] and live_jobs(fake) == []
    assert job.elapsed > 0 and job.error_message() is None
    assert any("fakennseg a" in line for line in job.log_tail())


def test_cancel_stops_cleanly_and_no_later_step_runs(fake):
    job = _start(fake, [["a", str(fake), "1000"], ["b", str(fake), "2"]])
    _wait_for_epochs(job, 3)
    assert job.alive and not job.finished and job.status is JobStatus.RUNNING
    t0 = time.monotonic()
    assert job.cancel(grace=30) is JobStatus.CANCELLED
    assert time.monotonic() - t0 < 20
    assert (fake / "checkpoint_a").is_file() and not (fake / "done_b").exists()
    record = read_record(job.folder)
    assert record["status"] == "cancelled" and record["returncodes"] == [130]


def test_failure_is_reported_and_stops_the_chain(fake):
    job = _start(fake, [["fail", str(fake)], ["b", str(fake), "2"]])
    job.wait(timeout=60)
    assert job.status is JobStatus.BAD_INPUT
    assert job.error_message() == "nnseg fail: error: broken dataset"
    assert not (fake / "done_b").exists()


def test_attached_job_stops_when_its_slicer_session_ends(fake):
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        job = _start(fake, [["a", str(fake), "1000"]], parent_pid=session.pid)
        _wait_for_epochs(job, 2)
        session.kill()
        session.wait()
        job.wait(timeout=60)
    finally:
        session.kill()
    assert job.status is JobStatus.CANCELLED
    assert (fake / "checkpoint_a").is_file()  # stopped cleanly, checkpoint written
    assert "ended" in (job.folder / "stop").read_text()


def test_detached_job_outlives_its_session_and_is_reattached_and_cancelled(fake):
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        job = _start(fake, [["a", str(fake), "1000"]], parent_pid=session.pid, detached=True)
        _wait_for_epochs(job, 2)
        session.kill()
        session.wait()
        time.sleep(1.0)  # the runner checks its parent every 0.5 s: it must not stop
        assert job.alive and not (job.folder / "stop").exists()
        assert read_record(job.folder)["detached"] is True
        runner = psutil.Process(read_record(job.folder)["runner_pid"])
        assert runner.pid == job.process.pid
        # a later Slicer session: finds it running, follows it from its files, cancels it
        [again] = live_jobs(fake)
        assert again.process is None and again.folder == job.folder and again.detached
        events = _wait_for_epochs(again, 2)
        assert events[0]["event"] == "step"  # it reads the history from the start
        assert again.cancel(grace=30) is JobStatus.CANCELLED
        assert (fake / "checkpoint_a").is_file()
        job.process.wait(timeout=30)
    finally:
        session.kill()


def test_a_runner_that_vanished_is_reported_not_followed_forever(fake):
    job = _start(fake, [["a", str(fake), "1000"]])
    _wait_for_epochs(job, 2)
    record = read_record(job.folder)
    psutil.Process(record["child_pid"]).kill()
    job.process.kill()  # killed without writing a final status
    job.process.wait()
    again = FileJob(job.folder)
    assert again.finished and again.status is JobStatus.FAILED
    assert "without recording" in again.error_message()
    assert live_jobs(fake) == []


def test_status_mapping_and_pruning(tmp_path):
    assert final_status([0, 0], False) == "ok"
    assert final_status([0, 130], True) == "cancelled"
    assert final_status([], True) == "cancelled"
    assert final_status([2], False) == "bad input"
    assert final_status([1], False) == "failed"
    root = tmp_path / "jobs"
    for i in range(5):
        write_record(root / f"2026010{i}-train", {"status": "ok" if i != 3 else "running"})
    prune_records(root, keep=2)
    assert sorted(p.name for p in root.iterdir()) == [
        "20260102-train", "20260103-train", "20260104-train"]  # running ones are never removed
    assert json.loads((root / "20260103-train" / "job.json").read_text())["status"] == "running"


def test_runner_usage(tmp_path):
    from NNSegLib.jobs.runner import main

    assert main([]) == 2
    assert isinstance(Path(__file__), Path)
