"""Faults that need real processes: kill -9, orphaned workers, locks across processes, a
real write limit. Each row of the catalogue without a ``setup`` names one of these tests.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from world import dead_pid, temp_leftovers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "PYTHONUNBUFFERED": "1"}
TRAIN = ["--device", "cpu", "--num-threads", "1", "--val-iterations", "1",
         "--no-final-validation", "--progress-json", "-"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="kill -9, rlimits and process trees as on Linux")


def _nnseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "NNSegLib", *args]


def _work(tmp_path: Path):
    from conftest import tiny_plans, write_preprocessed

    from NNSegLib.util.workspace import Workspace

    ws = Workspace(tmp_path / "work")
    tiny_plans().save(ws.plans)
    write_preprocessed(ws.preprocessed("3d_fullres"), num_cases=5)
    return ws


def _gone(pid: int, timeout: float) -> bool:
    import psutil

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_kill_9_during_training_then_continue(tmp_path: Path) -> None:
    """kill -9 mid-training: a second run is refused while the first lives (naming its PID),
    the lock dies with the process, the stale temporary file goes, --continue finishes."""
    ws = _work(tmp_path)
    raw = str(tmp_path / "raw")
    first = subprocess.Popen(
        _nnseg("train", raw, "3d_fullres", "0", "--work", str(ws.root), "--epochs", "40",
               "--iterations-per-epoch", "3", *TRAIN),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert first.stdout is not None
        for line in first.stdout:
            event = json.loads(line)
            if event["event"] == "epoch" and event["epoch"] >= 1:
                break
        else:
            pytest.fail(first.communicate()[1])
        second = subprocess.run(
            _nnseg("train", raw, "3d_fullres", "0", "--work", str(ws.root), "--continue",
                   "--quiet"), capture_output=True, text=True, env=ENV, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"fold_0: in use by process {first.pid} (nnseg train 3d_fullres fold 0)" in \
            second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()   # SIGKILL: no handler runs, nothing is cleaned up
        first.communicate(timeout=60)
    run = ws.run("3d_fullres", 0)
    assert run.latest.is_file() and not run.is_finished
    stale = run.path / f".checkpoint_latest.pt.nnseg-tmp-{dead_pid()}-x.pt"
    stale.write_bytes(b"half a checkpoint")
    done = subprocess.run(
        _nnseg("train", raw, "3d_fullres", "0", "--work", str(ws.root), "--continue",
               "--epochs", "3", "--iterations-per-epoch", "3", *TRAIN),
        capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming 3d_fullres fold 0 at epoch" in done.stderr
    assert run.is_finished and not stale.exists() and not temp_leftovers(ws.root)


_POOL_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from NNSegLib.util.parallel import map_ordered
    from NNSegLib.util.progress import CancelToken, install_signal_handlers

    def job(i):
        time.sleep(120)
        return i

    if __name__ == "__main__":
        install_signal_handlers(CancelToken())   # as the nnseg command does
        print(os.getpid(), flush=True)
        try:
            map_ordered(job, [(i,) for i in range(4)], workers=2)
        except Exception as e:
            print(type(e).__name__, e, flush=True)
            sys.exit(2)
""")


def _pool(tmp_path: Path):
    import psutil

    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=ENV)
    assert proc.stdout is not None
    parent = psutil.Process(int(proc.stdout.readline()))
    end = time.monotonic() + 30
    while len(parent.children()) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    workers = parent.children()
    assert len(workers) == 2
    time.sleep(0.3)   # the workers have run their initializer and started a job
    return proc, [w.pid for w in workers]


def test_workers_die_with_parent(tmp_path: Path) -> None:
    proc, workers = _pool(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    for pid in workers:
        assert _gone(pid, timeout=10), f"worker {pid} outlived its parent"


def test_workers_obey_sigterm(tmp_path: Path) -> None:
    """A worker does not inherit the parent's cancel handler: SIGTERM ends it, and the parent
    reports the dead worker instead of waiting for it."""
    proc, workers = _pool(tmp_path)
    try:
        os.kill(workers[0], signal.SIGTERM)
        assert _gone(workers[0], timeout=10)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 2 and "WorkerDied" in out and "a worker process died" in out
    finally:
        proc.kill()
        for pid in workers:
            _gone(pid, timeout=10)


def test_watchdog_ends_an_orphan(tmp_path: Path) -> None:
    """Without a parent-death signal (not Linux), the watchdog ends an orphaned worker."""
    script = tmp_path / "orphan.py"
    script.write_text(textwrap.dedent("""
        import os, threading, time
        from NNSegLib.util.parallel import _watch_parent

        parent = os.getpid()
        child = os.fork()
        if child == 0:
            threading.Thread(target=_watch_parent, args=(parent, 0.05), daemon=True).start()
            time.sleep(120)
            os._exit(0)
        print(child, flush=True)
        os._exit(0)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=ENV, timeout=60).stdout
    assert _gone(int(out.split()[0]), timeout=10)


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a failing write, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.slow
def test_real_write_failure_keeps_the_checkpoint(tmp_path: Path) -> None:
    """The OS refuses the checkpoint write (file size limit, like a full disk): one line
    naming the file, exit 2, and the checkpoints of before unchanged."""
    from NNSegLib.training.train import train_fold

    ws = _work(tmp_path)
    train_fold(None, ws.root, "3d_fullres", 0, overrides={
        "max_epochs": 1, "iterations_per_epoch": 2, "val_iterations": 1, "num_threads": 1,
        "device": "cpu", "final_validation": False})
    run = ws.run("3d_fullres", 0)
    before = {p.name: p.read_bytes() for p in (run.latest, run.best, run.final)}
    assert min(len(b) for b in before.values()) > 200_000   # the limit below stops them
    result = subprocess.run(
        _nnseg("train", str(tmp_path / "raw"), "3d_fullres", "0", "--work", str(ws.root),
               "--extend", "1", "--iterations-per-epoch", "2", *TRAIN[:-2], "--quiet"),
        capture_output=True, text=True, env=ENV, timeout=300,
        preexec_fn=_limit_file_size(200_000))
    assert result.returncode == 2, result.stderr
    assert (f"{run.latest}: file too large (the file size limit was reached); free some space"
            in result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in (run.latest, run.best, run.final)} == before
    assert not temp_leftovers(ws.root)


@pytest.mark.slow
def test_kill_9_during_preprocess_then_rerun(tmp_path: Path) -> None:
    """The real command: kill -9 of ``nnseg preprocess`` takes its workers along; the next run
    removes the dead process's temporary files and finishes what is missing."""
    import psutil
    from conftest import tiny_plans, write_dataset

    from NNSegLib.util.workspace import Workspace

    ds = write_dataset(tmp_path / "Dataset003_Big", num_cases=6, shape=(48, 160, 160))
    ws = Workspace(tmp_path / "work")
    tiny_plans().save(ws.plans)
    cmd = _nnseg("preprocess", str(ds), "--work", str(ws.root), "--workers", "2", "--quiet")
    proc = subprocess.Popen(cmd, env=ENV)
    parent = psutil.Process(proc.pid)
    end = time.monotonic() + 60
    while len(parent.children()) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    workers = [w.pid for w in parent.children()]
    assert len(workers) == 2
    time.sleep(1.0)
    proc.kill()
    proc.wait(timeout=30)
    for pid in workers:
        assert _gone(pid, timeout=10), f"worker {pid} outlived its parent"
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    folder = ws.preprocessed("3d_fullres")
    assert len(list(folder.glob("case_*_seg.npy"))) == 6 and not temp_leftovers(ws.root)
