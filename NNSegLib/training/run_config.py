"""Every hyperparameter of one training run (METHOD §4), as a versioned frozen dataclass.

A :class:`RunConfig` is written to the fold folder as ``run_config.json`` and read back on
``--continue``/``--extend``. Values come from the recipe (:data:`RECIPE_DEFAULTS`) and can be
changed from the CLI (``nnseg train --lr 1e-3`` or the generic ``--set FIELD=VALUE``).

Recipe ``paper`` (default): Adam, lr 3e-4, weight decay 3e-5, plateau schedule on exponential
moving averages of the losses. The loss EMAs use ``loss_ema_alpha`` = 0.93 (new value weighs
7 %: an average over roughly the last 14 epochs, smooth enough that 30/60-epoch patience
windows compare trends, not noise); the pseudo-Dice EMA that picks the best checkpoint uses
``dice_ema_alpha`` = 0.9. Recipe ``v2``: SGD with Nesterov momentum 0.99, lr 1e-2, weight
decay 3e-5, poly decay (exponent 0.9) over 1000 epochs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from NNSegLib.util import host_memory
from NNSegLib.util.atomic import write_json
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import load_document
from NNSegLib.util.options import coerce, parse_json_value

RUN_CONFIG_VERSION = 1

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("plateau", "poly")
AMP_MODES = ("auto", "off", "bf16", "fp16")
SWITCHES = ("auto", "on", "off")
HOST_MEMORY = host_memory.SETTINGS
HEAD_INITS = ("he", "prior", "prior_zero", "calibrated")
PLACEMENTS = ("clip", "centre")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$", re.IGNORECASE)


@dataclass(frozen=True)
class RunConfig:
    """Hyperparameters of one training run.

    Attributes:
        recipe: ``"paper"`` or ``"v2"`` (also selects the augmentation recipe).
        max_epochs: Hard cap on epochs.
        iterations_per_epoch: Training batches per epoch.
        epoch_minutes: Longest wall time from one validation point (and checkpoint) to the
            next, in minutes, on every device. An epoch ends after ``iterations_per_epoch``
            iterations or as soon as one more iteration, its validation and its checkpoint
            would take longer than this, whichever comes first; the next epoch goes on from
            there (the schedules count iterations, so the run's course does not change). So
            ``log.jsonl``, ``progress.png`` and the Slicer chart get a point at least this
            often, and a crash loses at most this much training. On a GPU (an epoch in about
            a minute) nothing changes; on a CPU an epoch is about this long. A time budget
            must be at least this long (one validation interval).
        val_iterations: Validation batches per epoch (pseudo-Dice, validation loss); an epoch
            that ends early validates on the same share of them (at least one).
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: Initial learning rate.
        weight_decay: L2 weight decay.
        momentum: SGD momentum (ignored by Adam).
        nesterov: SGD Nesterov momentum.
        lr_schedule: ``"plateau"`` (paper) or ``"poly"`` (v2).
        poly_exponent: Exponent of the poly schedule.
        loss_ema_alpha: Weight of the old value in the train/validation loss EMAs.
        dice_ema_alpha: Weight of the old value in the pseudo-Dice EMA.
        plateau_threshold: Minimum EMA improvement that counts.
        lr_patience: Epochs without train-EMA improvement before ``lr *= lr_factor``.
        lr_factor: Learning-rate multiplier on a plateau (0.2 = divide by 5).
        stop_patience: Epochs without validation-EMA improvement before stopping.
        min_lr: Stop once the learning rate falls below this.
        batch_size: Batch size; ``None`` = the plan's.
        patch_size: Patch size; ``None`` = the plan's.
        oversample_foreground: Minimum share of each batch centred on foreground.
        foreground_placement: Where a foreground-centred patch may sit: ``clip`` moves it
            back inside the allowed range (the image then sits at a fixed place when it is
            smaller than the patch); ``centre`` keeps the chosen voxel at the patch centre
            (padding where needed), which shifts the image within the patch.
        head_init: Segmentation heads at the start: ``he`` (like every conv), ``prior``
            (biases = log class frequencies of the first training batches) or
            ``prior_zero`` (the same with zero weights: every head starts at the prior) or
            ``calibrated`` (He weights, biases set so that each class's mean logit over the
            first training batches equals its log frequency).
        warmup_iterations: Learning rate ramped linearly from ``lr / N`` to ``lr`` over the
            first ``N`` iterations (0 = none).
        budget_probe_iterations: With a time budget, iterations timed before the schedule
            is fitted to the budget.
        final_phase_fraction: Share of the iterations at the end of a fitted run (a time
            budget, or ``final_phase``) in which the plateau schedule's learning rate falls
            linearly to 0.
        final_phase: Fit the schedule to ``max_epochs`` from the start, so a fixed-length
            run also ends with the final low-lr phase (poly is unaffected).
        deep_supervision: Train with deep-supervision heads.
        grad_clip: Gradient-norm clip (0 = off).
        seed: Seed of every random stream (sampling, augmentation, initialisation).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        num_threads: Torch intra-op threads (0 = all CPUs available to the process).
        compile: Wrap the network in ``torch.compile``.
        amp: Mixed precision: ``auto`` (bf16 on CUDA with native bf16, else fp16 with a
            gradient scaler; bf16 on CPUs with AMX/AVX512-BF16 that the kernels may use;
            fp32 on MPS and other CPUs:
            :func:`NNSegLib.util.precision.choose_precision`), ``off``, ``bf16``, ``fp16``.
        channels_last: Channels-last memory format: ``auto`` (the network's choice, see
            :func:`NNSegLib.network.network.resolve_memory_format`), ``on``, ``off``.
        host_memory: On the CPU, ``reuse``: keep freed host memory for the next step instead
            of having the system zero-fill it again (faster; the process holds its peak
            memory, given back after every epoch), see
            :func:`NNSegLib.util.host_memory.reuse_freed_memory`; ``system``: the C library's
            defaults.
        loader_threads: Background threads extracting patches.
        prefetch: Batches prepared ahead of the network.
        final_validation: Segment the fold's validation cases at the end.
        version: Schema version.
    """

    recipe: str = "paper"
    max_epochs: int = 1000
    iterations_per_epoch: int = 250
    epoch_minutes: float = 3.0
    val_iterations: int = 50
    optimizer: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 3e-5
    momentum: float = 0.99
    nesterov: bool = True
    lr_schedule: str = "plateau"
    poly_exponent: float = 0.9
    loss_ema_alpha: float = 0.93
    dice_ema_alpha: float = 0.9
    plateau_threshold: float = 5e-3
    lr_patience: int = 30
    lr_factor: float = 0.2
    stop_patience: int = 60
    min_lr: float = 1e-6
    batch_size: int | None = None
    patch_size: tuple[int, ...] | None = None
    oversample_foreground: float = 0.33
    foreground_placement: str = "clip"
    head_init: str = "calibrated"
    warmup_iterations: int = 0
    budget_probe_iterations: int = 8
    final_phase_fraction: float = 0.2
    final_phase: bool = False
    deep_supervision: bool = True
    grad_clip: float = 12.0
    seed: int = 12345
    device: str = "auto"
    num_threads: int = 0
    compile: bool = False
    amp: str = "auto"
    channels_last: str = "auto"
    host_memory: str = "reuse"
    loader_threads: int = 1
    prefetch: int = 3
    final_validation: bool = True
    version: int = RUN_CONFIG_VERSION

    @classmethod
    def for_recipe(cls, recipe: str, **overrides: Any) -> RunConfig:
        """The defaults of ``recipe`` with ``overrides`` applied (validated)."""
        if recipe not in RECIPE_DEFAULTS:
            raise NNSegError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPE_DEFAULTS)}")
        values = {**RECIPE_DEFAULTS[recipe], **overrides, "recipe": recipe}
        return cls(**values).validated()

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> RunConfig:
        """Return ``self`` or raise :class:`NNSegError` naming every invalid field."""
        problems = self.problems()
        if problems:
            raise NNSegError("invalid run configuration: " + "; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """Every field whose value is out of its range (empty when the config is valid)."""
        problems = []
        for name, allowed in (("recipe", tuple(RECIPE_DEFAULTS)), ("optimizer", OPTIMIZERS),
                              ("lr_schedule", LR_SCHEDULES), ("amp", AMP_MODES),
                              ("foreground_placement", PLACEMENTS), ("head_init", HEAD_INITS),
                              ("channels_last", SWITCHES), ("host_memory", HOST_MEMORY)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} {getattr(self, name)!r} not in {allowed}")
        for name in ("max_epochs", "iterations_per_epoch", "loader_threads", "prefetch",
                     "lr_patience", "stop_patience"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("val_iterations", "warmup_iterations", "num_threads", "seed",
                     "weight_decay", "plateau_threshold", "min_lr", "grad_clip"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        for name in ("oversample_foreground", "momentum"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]")
        for name in ("loss_ema_alpha", "dice_ema_alpha", "lr_factor"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1)")
        for name in ("lr", "poly_exponent", "epoch_minutes"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if self.budget_probe_iterations < 3:
            problems.append("budget_probe_iterations must be >= 3")
        if not 0.0 <= self.final_phase_fraction < 1.0:
            problems.append("final_phase_fraction must be in [0, 1)")
        if self.patch_size is not None and (len(self.patch_size) not in (2, 3)
                                            or min(self.patch_size) < 1):
            problems.append("patch_size must be 2 or 3 values >= 1")
        if not _DEVICE_RE.match(str(self.device)):
            problems.append(f"device {self.device!r} is not auto, cpu, cuda, cuda:N or mps")
        return problems

    # --- JSON round trip -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["patch_size"] is not None:
            d["patch_size"] = list(d["patch_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        version = d.get("version")
        if version != RUN_CONFIG_VERSION:
            raise NNSegError(f"run config version {version!r} is not supported "
                             f"(this NNSeg reads {RUN_CONFIG_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise NNSegError(f"unknown run config fields {unknown}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        d = {k: coerce(v, str(fields[k].type), k) for k, v in d.items()}
        return cls(**d).validated()

    def save(self, path: Path | str) -> None:
        """Write ``run_config.json`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> RunConfig:
        return load_document(path, cls.from_dict, what="NNSeg run config")


#: Recipe name → field values that differ from the dataclass defaults.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {},
    "v2": {
        "optimizer": "sgd",
        "lr": 1e-2,
        "weight_decay": 3e-5,
        "momentum": 0.99,
        "nesterov": True,
        "lr_schedule": "poly",
        "max_epochs": 1000,
    },
}


#: Fine-tuning (``nnseg train --init-from``, METHOD §8): epochs, and the learning rate as a
#: share of the recipe's.
FINE_TUNE_EPOCHS = 50
FINE_TUNE_LR_FACTOR = 0.1


def fine_tune_defaults(recipe: str) -> dict[str, Any]:
    """Run-config values a fine-tune starts from (the user's options still override them).

    A fine-tune continues from a converged model with a few more cases, so it needs a short
    run at a lower learning rate rather than the from-scratch schedule: 50 epochs (5 % of the
    1000-epoch cap), the recipe's learning rate divided by 10 (paper: Adam 3e-5; v2: SGD 1e-3)
    so the first steps do not throw away what the model learnt, and ``final_phase`` so even
    this fixed-length run ends with the learning rate falling to 0 (poly does that anyway).
    """
    if recipe not in RECIPE_DEFAULTS:
        raise NNSegError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPE_DEFAULTS)}")
    lr = float(RECIPE_DEFAULTS[recipe].get("lr", RunConfig.lr))
    return {"max_epochs": FINE_TUNE_EPOCHS, "lr": lr * FINE_TUNE_LR_FACTOR, "final_phase": True}


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse and check ``FIELD=VALUE`` for ``--set`` (VALUE as JSON, else as a string).

    The value must have the field's type and lie in its range (checked now, not when
    training starts).

    Raises:
        NNSegError: for a missing ``=``, an unknown field, or a bad value (naming them).
    """
    key, sep, value_text = text.partition("=")
    key = key.strip().replace("-", "_")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)
              if f.name not in ("version", "recipe")}
    if not sep or key not in fields:
        raise NNSegError(f"{text!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
    try:
        value = coerce(parse_json_value(value_text.strip()), str(fields[key].type), key)
    except ValueError as e:
        raise NNSegError(f"{text!r}: {e}") from None
    problems = RunConfig(**{key: value}).problems()   # the defaults are valid
    if problems:
        raise NNSegError(f"{text!r}: {'; '.join(problems)}")
    return key, value


__all__ = [
    "FINE_TUNE_EPOCHS",
    "FINE_TUNE_LR_FACTOR",
    "RECIPE_DEFAULTS",
    "RUN_CONFIG_VERSION",
    "RunConfig",
    "fine_tune_defaults",
    "parse_assignment",
]
