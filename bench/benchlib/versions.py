"""Which code a benchmark ran: the machine and the tools' versions, where a python imports
NNSegLib from and which commit that is."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path

import cpu_profiles
import psutil

from .env import NNSEG_PY, NNUNET_VENV, REPO, nnseg_env


def _version_of(python: Path, module: str) -> str:
    code = (
        f"from importlib.metadata import version\n"
        f"try:\n print(version('{module}'))\nexcept Exception:\n print('n/a')"
    )
    try:
        return (
            subprocess.run(
                [str(python), "-c", code], capture_output=True, text=True, timeout=60
            ).stdout.strip()
            or "n/a"
        )
    except Exception:  # noqa: BLE001
        return "n/a"


def machine_info(nnseg_python: Path | None = None) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nnunet_py = NNUNET_VENV / "bin" / "python"
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu,
        "mem_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_profile": cpu_profiles.active(),
        "versions": {
            "nnseg": _version_of(nnseg_python or NNSEG_PY, "NNSegLib"),
            "nnseg_torch": _version_of(nnseg_python or NNSEG_PY, "torch"),
            "nnunetv2": _version_of(nnunet_py, "nnunetv2"),
            "nnunet_torch": _version_of(nnunet_py, "torch"),
        },
    }


def nnseg_code_info(python: Path) -> dict:
    """Where ``python`` imports NNSegLib from and which commit that is.

    A tree made by ``setup_nnseg_pinned.sh`` names its commit in ``.nnseg_commit``; a git
    work tree is asked read-only (``rev-parse``, ``--no-optional-locks status``), and
    ``dirty`` says whether its NNSegLib differs from that commit."""
    code = "import NNSegLib, os; print(os.path.dirname(os.path.dirname(NNSegLib.__file__)))"
    r = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        env=nnseg_env(),
        cwd=str(Path(python).resolve().parent),  # not the repository: cwd is first on sys.path
        timeout=120,
    )
    if r.returncode != 0:
        raise SystemExit(f"{python} cannot import NNSegLib:\n{r.stderr}")
    src = Path(r.stdout.strip())
    info: dict = {"python": str(python), "source": str(src), "commit": None, "dirty": None}
    marker = src / ".nnseg_commit"
    if marker.is_file():
        info.update(commit=marker.read_text().strip(), dirty=False, pinned=True)
        return info
    git = ["git", "--no-optional-locks", "-C", str(src)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        st = subprocess.run(
            [*git, "status", "--porcelain", "--", "NNSegLib"], capture_output=True, text=True
        )
        info.update(commit=head.stdout.strip(), dirty=bool(st.stdout.strip()), pinned=False)
    return info


def repo_code_version() -> str:
    """This checkout's short commit, ``+dirty`` when its NNSegLib differs from it (what the
    NNSeg-only benchmarks that import NNSegLib from here record)."""
    git = ["git", "--no-optional-locks", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "NNSegLib"], capture_output=True,
                           text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")
