"""Running a command's process tree: wall time, CPU seconds and peak memory (psutil polling),
then a clear failure with the log's tail when it did not succeed."""

from __future__ import annotations

import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def _tree_memory(proc: psutil.Process, use_pss: bool) -> tuple[int, int, int]:
    """(sum RSS, sum PSS, max single RSS) over proc and all descendants, in bytes."""
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0, 0
    rss_sum = pss_sum = rss_max = 0
    for p in procs:
        try:
            if use_pss:
                mi = p.memory_full_info()
                rss, pss = mi.rss, getattr(mi, "pss", mi.rss)
            else:
                rss = p.memory_info().rss
                pss = rss
        except psutil.Error:
            continue
        rss_sum += rss
        pss_sum += pss
        rss_max = max(rss_max, rss)
    return rss_sum, pss_sum, rss_max


def run_monitored(
    cmd: list[str],
    *,
    env: dict,
    log: Path,
    cwd: Path | None = None,
    interval: float = 0.2,
    timeout: float | None = None,
    use_pss: bool = True,
) -> dict:
    """Run cmd (stdout+stderr → log), polling the process tree's memory.

    Returns wall seconds, return code and peaks: ``peak_rss_tree_mb`` (sum of RSS over the
    tree, overcounts pages shared by forked workers), ``peak_pss_tree_mb`` (sum of PSS: shared
    pages split between sharers — the fairer total) and ``peak_rss_proc_mb`` (largest single
    process).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    peaks = [0, 0, 0]
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        proc = psutil.Process(popen.pid)
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                m = _tree_memory(proc, use_pss)
                for i in range(3):
                    peaks[i] = max(peaks[i], m[i])
                # poll fast at first (short commands, start-up spikes), then back off: reading
                # smaps of large processes costs CPU on a machine that has only 2 cores
                age = time.perf_counter() - t0
                stop.wait(interval if age < 5 else 2.5 * interval if age < 60 else 5 * interval)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        timed_out = False
        try:
            rc = popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in proc.children(recursive=True) + [proc]:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            rc = -9
            timed_out = True
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the command and every descendant it waited for: less
    # sensitive than wall time to other jobs competing for the cores
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    mb = 2**20
    return {
        "cmd": cmd,
        "returncode": rc,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 2),
        "peak_rss_tree_mb": round(peaks[0] / mb, 1),
        "peak_pss_tree_mb": round(peaks[1] / mb, 1),
        "peak_rss_proc_mb": round(peaks[2] / mb, 1),
        "log": str(log),
        "timed_out": timed_out,
    }


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def check_ok(res: dict, what: str) -> None:
    if res["returncode"] != 0:
        if res.get("timed_out"):
            what += f" timed out after {res['wall_s']:.0f} s"
        print(
            f"!! {what} failed (exit {res['returncode']}); log {res['log']}:\n{tail(res['log'])}",
            file=sys.stderr,
        )
        raise RuntimeError(f"{what} failed (exit {res['returncode']})")

