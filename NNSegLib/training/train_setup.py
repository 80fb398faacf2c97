"""What a :class:`~NNSegLib.training.trainer.Trainer` is built from (one frozen record)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from NNSegLib.planning.plans import ConfigurationPlan
from NNSegLib.training import distributed as dist
from NNSegLib.training.run_config import RunConfig


@dataclass(frozen=True)
class TrainSetup:
    """Everything a :class:`Trainer` is built from (resolved by :mod:`NNSegLib.training.train`).

    Attributes:
        config: The configuration plan with the run's patch/batch overrides applied.
        run_config: Hyperparameters.
        run_dir: Fold folder.
        preprocessed: ``preprocessed/<data_identifier>`` folder.
        train_cases: Training case ids.
        val_cases: Validation case ids (empty for fold ``all``: the training cases are
            then used for the per-epoch pseudo-Dice).
        fold: Fold index or ``"all"``.
        num_input_channels: Network input channels (a cascade stage's include the
            ``num_classes - 1`` one-hot channels of the previous stage).
        num_classes: Output classes (background included).
        device: Training device.
        ctx: Distributed context.
        time_budget_s: Wall-clock budget left for this invocation when the trainer is built
            (``None`` = unlimited); head initialisation, resuming, training and the final
            validation all count.
        time_budget_total_s: The whole budget of the run that ``time_budget_s`` is what is
            left of (``None``: the same as ``time_budget_s``); kept in the checkpoints.
        previous_stage: Cascade stage: folder of the previous stage's segmentations
            (:meth:`NNSegLib.util.model_folder.ModelFolder.next_stage_dir`).
    """

    config: ConfigurationPlan
    run_config: RunConfig
    run_dir: Path
    preprocessed: Path
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    fold: int | str
    num_input_channels: int
    num_classes: int
    device: torch.device
    ctx: dist.DistContext = field(default_factory=dist.DistContext)
    time_budget_s: float | None = None
    previous_stage: Path | None = None
    time_budget_total_s: float | None = None


__all__ = ["TrainSetup"]
