"""A short-run nnU-Net v2 trainer for NNSeg's benchmarks (our own code, not part of nnU-Net).

nnU-Net finds it by class name when ``nnUNet_extTrainer`` points at this folder:

    nnUNet_extTrainer=/work/main/bench/nnunet_trainer \
        nnUNetv2_train 4 3d_fullres 0 -device cpu -tr nnsegBenchTrainer

Environment variables (all optional, read when the trainer is constructed):

    NNSEG_BENCH_EPOCHS           number of epochs               (default 1)
    NNSEG_BENCH_ITERS            training iterations per epoch  (default 5)
    NNSEG_BENCH_VAL_ITERS        validation iterations per epoch (default 1)
    NNSEG_BENCH_SEED             seed python/numpy/torch        (default: unseeded)
    NNSEG_BENCH_TIMING_FILE      append one JSON line per training iteration:
                                 {"epoch", "iteration", "t_end", "seconds"}; "seconds" is the time
                                 since the previous iteration ended (or since the epoch started),
                                 so it includes loading + augmentation (synchronous with
                                 nnUNet_n_proc_DA=0) and the forward/backward/optimizer step.
    NNSEG_BENCH_SKIP_FINAL_VAL   "1": skip the post-training sliding-window validation.
"""

from __future__ import annotations

import json
import os
import time

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


class nnsegBenchTrainer(nnUNetTrainer):
    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = _env_int("NNSEG_BENCH_EPOCHS", 1)
        self.num_iterations_per_epoch = _env_int("NNSEG_BENCH_ITERS", 5)
        self.num_val_iterations_per_epoch = _env_int("NNSEG_BENCH_VAL_ITERS", 1)
        seed = os.environ.get("NNSEG_BENCH_SEED", "").strip()
        if seed:
            import random

            import numpy as np

            random.seed(int(seed))
            np.random.seed(int(seed))
            torch.manual_seed(int(seed))
        self._bench_timing_file = os.environ.get("NNSEG_BENCH_TIMING_FILE") or None
        self._bench_last = None
        self._bench_iter = 0

    # --- per-iteration timing -------------------------------------------------------------
    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._bench_last = time.perf_counter()
        self._bench_iter = 0

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        now = time.perf_counter()
        if self._bench_timing_file is not None and self._bench_last is not None:
            record = {
                "epoch": int(self.current_epoch),
                "iteration": self._bench_iter,
                "t_end": now,
                "seconds": now - self._bench_last,
            }
            with open(self._bench_timing_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        self._bench_last = now
        self._bench_iter += 1
        return out

    # --- optional: no final validation ----------------------------------------------------
    def perform_actual_validation(self, save_probabilities: bool = False):
        if os.environ.get("NNSEG_BENCH_SKIP_FINAL_VAL", "") == "1":
            self.print_to_log_file(
                "nnsegBenchTrainer: final validation skipped (NNSEG_BENCH_SKIP_FINAL_VAL=1)"
            )
            return
        return super().perform_actual_validation(save_probabilities)
