"""NNSegLib.jobs.process against real child processes (no qt)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from NNSegLib.jobs.base import JobStatus, estimate_eta, format_eta, parse_line
from NNSegLib.jobs.process import JobChain, library_root
from NNSegLib.jobs.process import ProcessJob as Job

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
    i = job.command.index("--progress-json")
    assert job.command[i + 1] == "-"
    assert job.command[job.command.index("--stop-file") + 1] == str(job.stop_file)
    assert job.stop_file.parent.is_dir()
    job.cancel(grace=0.5)
    job.wait(timeout=30)
    assert not job.stop_file.parent.exists()  # its temporary folder is removed at the end
    assert (library_root() / "NNSegLib" / "jobs" / "process.py").is_file()


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


# ------------------------------------------------------------ graceful stop, any platform
STOPPABLE = """
import json, signal, sys, time
from pathlib import Path
out, stop = Path(sys.argv[1]), Path(sys.argv[2])
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the stop file can end it cleanly
print(json.dumps({"event": "start", "stage": "train", "total": 100}), flush=True)
for epoch in range(600):
    if stop.exists():
        (out / "checkpoint").write_text("saved on stop file")
        sys.exit(130)
    print(json.dumps({"event": "epoch", "stage": "train", "epoch": epoch}), flush=True)
    time.sleep(0.1)
"""


def test_popen_options_per_platform():
    from NNSegLib.jobs.process import CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, popen_options

    windows = popen_options("nt")
    # no console window, and a process group of its own for CTRL_BREAK_EVENT
    assert windows["creationflags"] == CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
    assert windows["creationflags"] == 0x08000200
    assert popen_options("posix") == {}
    assert popen_options("posix", detached=True) == {"start_new_session": True}


def test_graceful_stop_sends_ctrl_break_on_windows_and_sigterm_elsewhere(tmp_path):
    import signal

    from NNSegLib.jobs.process import CTRL_BREAK_EVENT, graceful_stop

    sent = []
    stop = tmp_path / "job" / "stop"
    done = graceful_stop(4242, stop, os_name="nt", kill=lambda pid, sig: sent.append((pid, sig)))
    assert sent == [(4242, CTRL_BREAK_EVENT)] and CTRL_BREAK_EVENT == 1
    assert done == ["stop file", "CTRL_BREAK_EVENT"] and stop.is_file()
    sent.clear()
    graceful_stop(4242, None, os_name="posix", kill=lambda pid, sig: sent.append((pid, sig)))
    assert sent == [(4242, signal.SIGTERM)]

    def no_console(pid, sig):
        raise OSError("the handle is invalid")  # Windows sender without a console

    assert graceful_stop(4242, stop, os_name="nt", kill=no_console) == ["stop file"]


def test_sigbreak_requests_cancellation(monkeypatch):
    """Windows' CTRL_BREAK_EVENT arrives as SIGBREAK: the CLI treats it like SIGTERM
    (simulated here with SIGUSR1 standing in for SIGBREAK)."""
    import os
    import signal

    from NNSegLib.util.progress import CancelToken, install_signal_handlers

    if not hasattr(signal, "SIGUSR1"):
        pytest.skip("needs a spare POSIX signal")
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    token = CancelToken()
    try:
        install_signal_handlers(token)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert token.cancelled and "SIGUSR1" in token.reason
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def test_stop_file_cancels_the_token(tmp_path):
    from NNSegLib.util.progress import CancelToken, watch_stop_file

    token = CancelToken()
    thread = watch_stop_file(token, str(tmp_path / "stop"), interval=0.02)
    time.sleep(0.1)
    assert not token.cancelled
    (tmp_path / "stop").touch()
    thread.join(timeout=5)
    assert token.cancelled and "stop file" in token.reason


def test_cli_stop_file_stops_a_real_command(tmp_path):
    """`nnseg … --stop-file F` ends with the cancel exit code once F exists."""
    from NNSegLib.util.errors import EXIT_CANCELLED

    stop = tmp_path / "stop"
    stop.touch()  # already there: the command stops at its first cancellation check
    job = Job(["sample-data", str(tmp_path / "D"), "--cases", "3"], stop_file=stop)
    job.wait(timeout=120)
    assert job.returncode == EXIT_CANCELLED and job.status is JobStatus.CANCELLED


def test_request_stop_uses_the_stop_file(tmp_path):
    job = Job([str(_script(tmp_path, "stoppable.py", STOPPABLE)), str(tmp_path),
               str(tmp_path / "stop")], module=None, stop_file=tmp_path / "stop")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(e["event"] == "epoch" for e in job.poll()):
        time.sleep(0.05)
    chain_like = JobChain.__new__(JobChain)  # request_stop of a chain goes to its command
    chain_like.jobs, chain_like._cancelled = [job], False
    chain_like.request_stop()
    assert chain_like.cancel_requested
    job.wait(timeout=30)
    assert job.returncode == 130 and job.status is JobStatus.CANCELLED
    assert (tmp_path / "checkpoint").read_text() == "saved on stop file"
    assert job.log_tail(5) == []
