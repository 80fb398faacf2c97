"""NNSegLib.slicer.jobs against real child processes (no qt)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from NNSegLib.slicer.jobs import (
    Job,
    JobChain,
    JobStatus,
    estimate_eta,
    format_eta,
    library_root,
    parse_line,
)

EMITTER = """
import json, sys
print(json.dumps({"event": "start", "stage": "demo", "total": 3}), flush=True)
for i in range(1, 4):
    print(json.dumps({"event": "progress", "stage": "demo", "current": i, "total": 3}),
          flush=True)
print("a plain warning line", flush=True)
print("to stderr", file=sys.stderr, flush=True)
print("{not json", flush=True)
if sys.argv[1] != "0":
    print(json.dumps({"event": "error", "message": "bad.nii.gz: broken"}), flush=True)
print(json.dumps({"event": "done", "stage": "demo"}), flush=True)
sys.exit(int(sys.argv[1]))
"""

# A parent that writes a "checkpoint" on SIGTERM and exits 130, and a grandchild that
# ignores SIGTERM (so only the SIGKILL escalation can stop it).
TREE = """
import json, signal, subprocess, sys, time
from pathlib import Path
out = Path(sys.argv[1])
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
(out / "child.pid").write_text(str(child.pid))
def on_term(signum, frame):
    (out / "checkpoint").write_text("saved")
    sys.exit(130)
signal.signal(signal.SIGTERM, on_term)
print(json.dumps({"event": "start", "stage": "train", "total": 100}), flush=True)
for epoch in range(100):
    print(json.dumps({"event": "epoch", "stage": "train", "epoch": epoch}), flush=True)
    time.sleep(0.2)
"""


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_events_and_log_lines_from_real_process(tmp_path):
    job = Job([str(_script(tmp_path, "emit.py", EMITTER)), "0"], module=None)
    events = job.wait(timeout=30)
    kinds = [e["event"] for e in events if e["event"] != "log"]
    assert kinds == ["start", "progress", "progress", "progress", "done"]
    assert [e["current"] for e in events if e["event"] == "progress"] == [1, 2, 3]
    assert sorted(job.log) == sorted(["a plain warning line", "to stderr", "{not json"])
    assert job.returncode == 0 and job.status is JobStatus.OK and job.finished
    assert job.error_message() is None
    assert job.poll() == []  # everything was delivered once


def test_bad_input_exit_code_and_error_message(tmp_path):
    job = Job([str(_script(tmp_path, "emit.py", EMITTER)), "2"], module=None)
    job.wait(timeout=30)
    assert job.returncode == 2
    assert job.status is JobStatus.BAD_INPUT
    assert job.error_message() == "bad.nii.gz: broken"


def test_failed_exit_code(tmp_path):
    job = Job(["-c", "import sys; print('Traceback: boom'); sys.exit(1)"], module=None)
    job.wait(timeout=30)
    assert job.status is JobStatus.FAILED
    assert job.error_message() == "Traceback: boom"


def test_cancel_kills_whole_tree_and_lets_parent_checkpoint(tmp_path):
    job = Job([str(_script(tmp_path, "tree.py", TREE)), str(tmp_path)], module=None)
    deadline = time.monotonic() + 30
    epochs = []
    while time.monotonic() < deadline and not (
        (tmp_path / "child.pid").exists() and len(epochs) >= 2
    ):
        epochs += [e for e in job.poll() if e["event"] == "epoch"]
        time.sleep(0.05)
    assert len(epochs) >= 2 and job.running
    child_pid = int((tmp_path / "child.pid").read_text())
    assert psutil.pid_exists(child_pid)
    t0 = time.monotonic()
    code = job.cancel(grace=1.0)
    assert time.monotonic() - t0 < 10
    assert code == 130
    assert job.status is JobStatus.CANCELLED
    assert (tmp_path / "checkpoint").read_text() == "saved"
    # The grandchild ignored SIGTERM: it must have been killed (or be a reaped zombie).
    if psutil.pid_exists(child_pid):
        assert psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE


def test_progress_json_flag_and_pythonpath(tmp_path):
    job = Job(["sample-data", str(tmp_path / "x")], python=sys.executable)
    assert job.command[:3] == [sys.executable, "-m", "NNSegLib"]
    assert job.command[-2:] == ["--progress-json", "-"]
    job.cancel(grace=0.5)
    assert (library_root() / "NNSegLib" / "slicer" / "jobs.py").is_file()


@pytest.mark.skipif(importlib.util.find_spec("NNSegLib.data.sample_data") is None,
                    reason="NNSegLib.data.sample_data not written yet")
def test_real_cli_command_runs_as_job(tmp_path):
    job = Job(["sample-data", str(tmp_path / "Dataset999_Sample"), "--cases", "2"], cwd=tmp_path)
    job.wait(timeout=120)
    assert job.status is JobStatus.OK, job.log[-5:]
    assert (tmp_path / "Dataset999_Sample" / "dataset.json").is_file()


def test_parse_line_and_formatting():
    assert parse_line('{"event": "done", "stage": "x"}') == {"event": "done", "stage": "x"}
    assert parse_line('{"no_event": 1}') is None
    assert parse_line("[1, 2]") is None
    assert parse_line("plain") is None
    assert format_eta(3725) == "1:02:05"
    assert format_eta(65.4) == "1:05"
    assert format_eta(None) == "–"
    assert estimate_eta(10.0, 2, 10) == pytest.approx(40.0)
    assert estimate_eta(10.0, 0, 10) is None
    assert JobStatus.from_returncode(-9) is JobStatus.CANCELLED
    assert JobStatus.from_returncode(None) is JobStatus.RUNNING


def test_chain_runs_steps_in_order_and_stops_on_failure(tmp_path):
    emit = str(_script(tmp_path, "emit.py", EMITTER))
    chain = JobChain([[emit, "0"], [emit, "0"]], module=None)
    events = chain.wait(timeout=60)
    assert chain.status is JobStatus.OK and chain.index == 1
    assert [e["step"] for e in events if e["event"] == "done"] == [0, 1]
    failing = JobChain([[emit, "2"], [emit, "0"]], module=None)
    failing.wait(timeout=60)
    assert failing.status is JobStatus.BAD_INPUT and len(failing.jobs) == 1
    assert failing.error_message() == "bad.nii.gz: broken"
