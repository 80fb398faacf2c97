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
                                 {"epoch", "iteration", "t_end", "seconds", "loss"}; "seconds" is
                                 the time since the previous iteration ended (or since the epoch
                                 started), so it includes loading + augmentation (synchronous
                                 with nnUNet_n_proc_DA=0) and the forward/backward/optimizer
                                 step; "loss" is that iteration's training loss (what nnU-Net
                                 averages into the epoch's train_loss).
    NNSEG_BENCH_CONFIG_FILE      write the training set-up as it is when training starts
                                 (optimizer, schedule, budget, batch/patch, precision) as JSON.
    NNSEG_BENCH_SKIP_FINAL_VAL   "1": skip the post-training sliding-window validation.
    NNSEG_BENCH_THREADS          torch CPU threads (``nnUNetv2_train -device cpu`` sets them
                                 to the machine's CPU count before the trainer is built;
                                 ``bench/cpu_profiles.py`` sets this to its thread count).
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
        threads = _env_int("NNSEG_BENCH_THREADS", 0)
        if threads > 0:
            torch.set_num_threads(threads)
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
        self._bench_seed = int(seed) if seed else None
        self._bench_timing_file = os.environ.get("NNSEG_BENCH_TIMING_FILE") or None
        self._bench_config_file = os.environ.get("NNSEG_BENCH_CONFIG_FILE") or None
        self._bench_last = None
        self._bench_iter = 0

    # --- the set-up actually used -----------------------------------------------------------
    def on_train_start(self):
        super().on_train_start()
        if self._bench_config_file is None:
            return
        opt = self.optimizer
        cm = self.configuration_manager
        config = {
            "optimizer": type(opt).__name__,
            "optimizer_defaults": {
                k: v for k, v in opt.defaults.items() if isinstance(v, (int, float, bool, str))
            },
            "lr_scheduler": type(self.lr_scheduler).__name__,
            "initial_lr": self.initial_lr,
            "weight_decay": self.weight_decay,
            "num_epochs": self.num_epochs,
            "num_iterations_per_epoch": self.num_iterations_per_epoch,
            "num_val_iterations_per_epoch": self.num_val_iterations_per_epoch,
            "batch_size": self.batch_size,
            "patch_size": list(cm.patch_size),
            "oversample_foreground_percent": self.oversample_foreground_percent,
            "probabilistic_oversampling": self.probabilistic_oversampling,
            "enable_deep_supervision": self.enable_deep_supervision,
            "device": str(self.device),
            # nnU-Net autocasts (and scales gradients) on CUDA only: fp32 on the CPU
            "autocast": self.device.type == "cuda",
            "precision": "amp" if self.device.type == "cuda" else "fp32",
            "compiled": bool(self._do_i_compile()),
            "torch_threads": torch.get_num_threads(),
            "seed": self._bench_seed,
        }
        with open(self._bench_config_file, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=1, default=str)

    # --- per-iteration timing and loss ------------------------------------------------------
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
                "loss": float(out["loss"]),
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
