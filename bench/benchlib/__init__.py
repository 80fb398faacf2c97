"""Shared plumbing of the NNSeg vs nnU-Net v2 benchmarks (see bench/README.md), by concern:

- :mod:`benchlib.env`: paths, the cache, nnU-Net's and NNSeg's environments, dataset link/id
- :mod:`benchlib.monitor`: a command's process tree with wall time and peak memory
- :mod:`benchlib.commands`: the tools' command lines and the held-out input folder
- :mod:`benchlib.setups`: the cached nnU-Net reference and the NNSeg set-up matched to it
- :mod:`benchlib.results`: statistics, JSON run files, ``RESULTS.md`` sections, Dice
- :mod:`benchlib.versions`: machine information and which code each tool ran

Runs with NNSeg's venv python (needs psutil, numpy, SimpleITK). nnU-Net runs from its own
venv (bench/setup_nnunet.sh). The names below are re-exported so that a script can keep
``import benchlib as bl``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_BENCH))  # cpu_profiles
sys.path.insert(1, str(_BENCH.parent))  # NNSegLib's argv builders

from .commands import (  # noqa: E402
    link_cases,
    nnseg_predict_cmd,
    nnseg_prepare_steps,
    nnseg_train_cmd,
    nnunet_predict_cmd,
    nnunet_train_cmd,
)
from .env import (  # noqa: E402
    BENCH,
    CACHE,
    DEFAULT_DATASET,
    NNSEG_BIN,
    NNSEG_PY,
    NNUNET_VENV,
    OUT,
    REPO,
    RESULTS_MD,
    TRAINER_DIR,
    TRAINER_NAME,
    dataset_id,
    fresh_dir,
    link_raw_dataset,
    nnseg_env,
    nnseg_help,
    nnunet_bin,
    nnunet_env,
)
from .monitor import check_ok, run_monitored, tail  # noqa: E402
from .results import (  # noqa: E402
    BUSY_LOAD,
    dice_scores,
    fmt,
    load_note,
    machine_md,
    ratio,
    stats,
    update_results_md,
    write_json,
    write_json_atomic,
)
from .setups import (  # noqa: E402
    ensure_nnseg_matched,
    ensure_nnunet_ref,
    nnunet_3d_params,
    nnunet_ref_root,
    pinned_nnseg,
)
from .versions import machine_info, nnseg_code_info, repo_code_version  # noqa: E402

__all__ = [
    "BENCH",
    "BUSY_LOAD",
    "CACHE",
    "DEFAULT_DATASET",
    "NNSEG_BIN",
    "NNSEG_PY",
    "NNUNET_VENV",
    "OUT",
    "REPO",
    "RESULTS_MD",
    "TRAINER_DIR",
    "TRAINER_NAME",
    "check_ok",
    "dataset_id",
    "dice_scores",
    "ensure_nnseg_matched",
    "ensure_nnunet_ref",
    "fmt",
    "fresh_dir",
    "link_cases",
    "link_raw_dataset",
    "load_note",
    "machine_info",
    "machine_md",
    "nnseg_code_info",
    "nnseg_env",
    "nnseg_help",
    "nnseg_predict_cmd",
    "nnseg_prepare_steps",
    "nnseg_train_cmd",
    "nnunet_3d_params",
    "nnunet_bin",
    "nnunet_env",
    "nnunet_predict_cmd",
    "nnunet_ref_root",
    "pinned_nnseg",
    "nnunet_train_cmd",
    "ratio",
    "repo_code_version",
    "run_monitored",
    "stats",
    "tail",
    "update_results_md",
    "write_json",
    "write_json_atomic",
]
