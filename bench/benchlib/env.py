"""Where things are and the environments the tools run in: the bench's paths and cache, the
nnU-Net and NNSeg environment dicts, the dataset link and id, and fresh run folders.

nnU-Net's environment variables are set only in :func:`nnunet_env`; NNSeg's subprocesses get
none of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
OUT = BENCH / "results" / "runs"
RESULTS_MD = BENCH / "RESULTS.md"
CACHE = Path(os.environ.get("NNSEG_BENCH_CACHE", Path.home() / ".cache" / "nnseg-bench"))
NNUNET_VENV = CACHE / "nnunet-venv"
NNSEG_BIN = Path(os.environ.get("NNSEG_BIN", REPO / ".venv" / "bin" / "nnseg"))
NNSEG_PY = NNSEG_BIN.parent / "python"
TRAINER_DIR = BENCH / "nnunet_trainer"
TRAINER_NAME = "nnsegBenchTrainer"
#: the hippocampus dataset beside the repository: <repo>/../shared/data/Dataset004_Hippocampus
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"


def nnunet_bin(name: str) -> str:
    p = NNUNET_VENV / "bin" / name
    if not p.exists():
        raise SystemExit(f"{p} missing: run bench/setup_nnunet.sh first")
    return str(p)


def nnunet_env(root: Path, *, n_proc_da: int | None = None, extra: dict | None = None) -> dict:
    """Environment for an nnU-Net v2 subprocess whose raw/preprocessed/results live in root."""
    env = dict(os.environ)
    env.update(
        {
            "nnUNet_raw": str(root / "raw"),
            "nnUNet_preprocessed": str(root / "preprocessed"),
            "nnUNet_results": str(root / "results"),
            "nnUNet_compile": "f",
            "nnUNet_def_n_proc": "2",
            "nnUNet_extTrainer": str(TRAINER_DIR),
            "PATH": f"{NNUNET_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    if n_proc_da is not None:
        env["nnUNet_n_proc_DA"] = str(n_proc_da)
    env.pop("VIRTUAL_ENV", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def nnseg_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.pop("VIRTUAL_ENV", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def link_raw_dataset(dataset: Path, root: Path) -> Path:
    """nnU-Net wants nnUNet_raw/DatasetXXX_Name: symlink the dataset there."""
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    name = dataset.resolve().name
    if not re.match(r"Dataset\d{3}_", name):
        raise SystemExit(f"dataset folder {name} is not named DatasetXXX_Name")
    link = raw / name
    if not link.exists():
        link.symlink_to(dataset.resolve(), target_is_directory=True)
    return link


def dataset_id(dataset: Path) -> int:
    return int(re.match(r"Dataset(\d{3})_", dataset.resolve().name).group(1))


def nnseg_help(command: str) -> str | None:
    """``nnseg COMMAND --help`` text, or None if the command does not work yet."""
    if not NNSEG_BIN.exists():
        return None
    r = subprocess.run(
        [str(NNSEG_BIN), command, "--help"],
        capture_output=True,
        text=True,
        env=nnseg_env(),
        timeout=120,
    )
    return r.stdout if r.returncode == 0 else None



def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path

