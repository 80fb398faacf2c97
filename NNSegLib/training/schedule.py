"""Learning-rate schedules and stopping rules (METHOD §4), with plain-dict state.

Two schedules, chosen by ``RunConfig.lr_schedule`` from :data:`SCHEDULES`:

- :class:`PlateauSchedule` (recipe ``paper``): exponential moving averages of the train and
  validation loss; if the train EMA has not improved by ``threshold`` within ``lr_patience``
  epochs the learning rate is multiplied by ``lr_factor``; training stops when the
  validation EMA has not improved by ``threshold`` within ``stop_patience`` epochs or the
  learning rate falls below ``min_lr``.
- :class:`PolySchedule` (recipe ``v2``): ``lr = lr0 * (1 - epoch / max_epochs) ** 0.9``.

Both stop after ``max_epochs × iterations_per_epoch`` iterations. Call :meth:`lr_at` before
each iteration and :meth:`end_epoch` after each epoch; the returned :class:`Decision` says
whether to go on.

The schedules count *iterations* (``step``: iterations done since the start of the run),
not epochs: an epoch that the trainer ends early (``RunConfig.epoch_minutes``) moves them on
by its share of ``iterations_per_epoch``. Where a rule is written in epochs (poly's
per-epoch learning rate, the plateau patience windows, the loss moving averages) an epoch
means ``iterations_per_epoch`` iterations: a run with full epochs behaves exactly as
nnU-Net's, and one whose epochs end early by time follows the same course.

A time budget (``nnseg train --time-budget``) *shapes* the schedule instead of cutting it:
once the trainer knows how long an iteration takes it calls :meth:`Schedule.fit_iterations`
with the number of iterations that fit, and the schedule ends exactly there. Poly then
decays per iteration to 0 at that point; the plateau schedule keeps its rules and adds a
final phase (the last ``final_phase_fraction`` of the iterations) in which the learning
rate falls linearly to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from NNSegLib.training.run_config import RunConfig

#: Slack for comparing fractional epoch positions (epochs that ended early by time).
EPSILON = 1e-9


class EMA:
    """Exponential moving average ``v = alpha * v + (1 - alpha) * x`` (first ``x`` starts it)."""

    def __init__(self, alpha: float, value: float | None = None) -> None:
        self.alpha = float(alpha)
        self.value = value

    def update(self, x: float, weight: float = 1.0) -> float:
        """Add ``x``; ``weight`` < 1 counts it as a fraction of a full update
        (``alpha ** weight`` for the old value: two half updates equal one full one)."""
        x = float(x)
        alpha = self.alpha ** max(0.0, float(weight))
        self.value = x if self.value is None else alpha * self.value + (1 - alpha) * x
        return self.value


@dataclass(frozen=True)
class Decision:
    """What the schedule decided at the end of an epoch."""

    stop: bool
    reason: str = ""
    lr_changed: bool = False


class Schedule:
    """Base class: holds ``max_epochs``; subclasses set the learning rate and stop rules."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.base_lr = config.lr
        self.max_epochs = config.max_epochs
        #: Iterations the run ends after (set by :meth:`fit_iterations`), else ``None``.
        self.total_iterations: int | None = None

    def lr_at_start(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def lr_at(self, step: int) -> float:
        """Learning rate of the iteration after ``step`` iterations (0-based)."""
        return self.lr_at_start(step // self.config.iterations_per_epoch)

    @property
    def end_step(self) -> int:
        """Iterations after which the run ends: the fitted number, else ``max_epochs`` full
        epochs."""
        if self.total_iterations is not None:
            return self.total_iterations
        return self.max_epochs * self.config.iterations_per_epoch

    def fit_iterations(self, total: int) -> None:
        """End the schedule after ``total`` iterations (from the start of the run)."""
        per_epoch = self.config.iterations_per_epoch
        self.total_iterations = max(1, int(total))
        self.max_epochs = -(-self.total_iterations // per_epoch)

    def epoch_iterations(self, step: int) -> int:
        """Most iterations an epoch starting after ``step`` iterations may have
        (``iterations_per_epoch``; fewer at the end of the run)."""
        return max(0, min(self.config.iterations_per_epoch, self.end_step - step))

    def _progress(self, step: int) -> float:
        """Fraction of the fitted run done before this iteration."""
        return min(step / max(self.total_iterations or 1, 1), 1.0)

    def end_epoch(self, step: int, train_loss: float, val_loss: float | None,
                  weight: float = 1.0) -> Decision:
        """Record the epoch that ended after ``step`` iterations of the run and decide whether
        to stop. ``weight``: the epoch's iterations as a share of ``iterations_per_epoch``."""
        if step >= self.end_step:
            return Decision(True, self.end_reason())
        return Decision(False)

    def end_reason(self) -> str:
        """Why the run ends at :attr:`end_step`."""
        cap = self.config.max_epochs * self.config.iterations_per_epoch
        if self.total_iterations is not None and self.total_iterations < cap:
            return f"reached the {self.total_iterations} iterations fitted to the time budget"
        return f"reached max_epochs={self.max_epochs}"

    def extend(self, step: int, extra: int) -> None:
        """Allow ``extra`` more epochs after ``step`` iterations (clears early-stop state)."""
        self.max_epochs = -(-step // self.config.iterations_per_epoch) + extra
        self.total_iterations = None

    def _epoch_position(self, step: int) -> float:
        """The epoch that ended after ``step`` iterations, 0-based and counted in
        ``iterations_per_epoch`` (fractional when epochs end early)."""
        return step / self.config.iterations_per_epoch - 1

    def state_dict(self) -> dict[str, Any]:
        return {"max_epochs": self.max_epochs, "total_iterations": self.total_iterations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.max_epochs = int(state["max_epochs"])
        total = state.get("total_iterations")
        self.total_iterations = None if total is None else int(total)


class PolySchedule(Schedule):
    """Polynomial decay to 0 at ``max_epochs`` (nnU-Net v2's schedule)."""

    def lr_at_start(self, epoch: int) -> float:
        # After extend() the decay is stretched over the new max_epochs.
        frac = min(epoch / max(self.max_epochs, 1), 1.0)
        return self.base_lr * (1.0 - frac) ** self.config.poly_exponent

    def lr_at(self, step: int) -> float:
        """Per epoch like nnU-Net v2; per iteration once fitted to a time budget."""
        if self.total_iterations is None:
            return self.lr_at_start(step // self.config.iterations_per_epoch)
        return self.base_lr * (1.0 - self._progress(step)) ** self.config.poly_exponent


class PlateauSchedule(Schedule):
    """The 2018 paper's schedule: EMA plateaus reduce the lr and stop training."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.lr = config.lr
        self.train_ema = EMA(config.loss_ema_alpha)
        self.val_ema = EMA(config.loss_ema_alpha)
        self.best_train = math.inf
        self.best_train_epoch = -1.0
        self.best_val = math.inf
        self.best_val_epoch = -1.0

    def lr_at_start(self, epoch: int) -> float:
        return self.lr

    def lr_at(self, step: int) -> float:
        """The plateau learning rate; in a fitted run's final phase it falls linearly to 0."""
        if self.total_iterations is None:
            return self.lr
        final = self.config.final_phase_fraction
        left = 1.0 - self._progress(step)
        return self.lr * min(1.0, left / final) if final > 0 else self.lr

    def end_epoch(self, step: int, train_loss: float, val_loss: float | None,
                  weight: float = 1.0) -> Decision:
        cfg = self.config
        epoch = self._epoch_position(step)
        t = self.train_ema.update(train_loss, weight)
        v = self.val_ema.update(train_loss if val_loss is None else val_loss, weight)
        lr_changed = False
        if t < self.best_train - cfg.plateau_threshold:
            self.best_train, self.best_train_epoch = t, epoch
        elif epoch - self.best_train_epoch >= cfg.lr_patience - EPSILON:
            self.lr *= cfg.lr_factor
            lr_changed = True
            # The patience window restarts; the reference level stays the best EMA so far.
            self.best_train_epoch = epoch
        if v < self.best_val - cfg.plateau_threshold:
            self.best_val, self.best_val_epoch = v, epoch
        elif epoch - self.best_val_epoch >= cfg.stop_patience - EPSILON:
            return Decision(True, f"validation loss EMA did not improve by "
                                  f"{cfg.plateau_threshold:g} in {cfg.stop_patience} epochs",
                            lr_changed)
        if self.lr < cfg.min_lr:
            return Decision(True, f"learning rate {self.lr:.3g} fell below {cfg.min_lr:g}",
                            lr_changed)
        base = super().end_epoch(step, train_loss, val_loss, weight)
        return Decision(base.stop, base.reason, lr_changed)

    def extend(self, step: int, extra: int) -> None:
        """More epochs after an early stop: patience windows restart now, lr ≥ ``min_lr``."""
        super().extend(step, extra)
        last = self._epoch_position(step)
        self.best_train_epoch = max(self.best_train_epoch, last)
        self.best_val_epoch = max(self.best_val_epoch, last)
        self.lr = max(self.lr, self.config.min_lr)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "lr": self.lr,
            "train_ema": self.train_ema.value,
            "val_ema": self.val_ema.value,
            "best_train": self.best_train,
            "best_train_epoch": self.best_train_epoch,
            "best_val": self.best_val,
            "best_val_epoch": self.best_val_epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr = float(state["lr"])
        self.train_ema.value = state["train_ema"]
        self.val_ema.value = state["val_ema"]
        self.best_train = float(state["best_train"])
        self.best_train_epoch = float(state["best_train_epoch"])
        self.best_val = float(state["best_val"])
        self.best_val_epoch = float(state["best_val_epoch"])


#: ``RunConfig.lr_schedule`` → schedule class.
SCHEDULES: dict[str, type[Schedule]] = {
    "plateau": PlateauSchedule,
    "poly": PolySchedule,
}


def build_schedule(config: RunConfig) -> Schedule:
    """The schedule named by ``config.lr_schedule``."""
    return SCHEDULES[config.lr_schedule](config)


__all__ = ["EMA", "SCHEDULES", "Decision", "PlateauSchedule", "PolySchedule", "Schedule",
           "build_schedule"]
