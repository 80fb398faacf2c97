"""The training loop of one fold (METHOD §4): epochs of sampled, augmented batches.

:class:`Trainer` owns the network, optimizer, loss, schedule, samplers and bookkeeping; its
:meth:`Trainer.state_dict` is everything a resumed run needs to continue *exactly* (every
batch is drawn from a generator derived from ``(seed, epoch, iteration, rank)``, so the
position inside an epoch is enough to reproduce the remaining batches). Patch extraction runs
on background threads (:class:`~NNSegLib.training.sampler.Prefetcher`); augmentation runs on the
training device, on the whole batch, in the main thread.

Per epoch: ``iterations_per_epoch`` training steps, or fewer when the epoch would otherwise
take longer than ``RunConfig.epoch_minutes`` (:class:`~NNSegLib.training.budget.EpochClock`);
``val_iterations`` validation batches, or the same share of them for a shorter epoch (loss and
pseudo-Dice: Dice of the summed TP/FP/FN over all validation patches); the schedule's
decision; one ``log.jsonl`` record, ``progress.png``, ``checkpoint_latest.pt`` and (when the
EMA pseudo-Dice improves) ``checkpoint_best.pt``. Batches are keyed by the run's iteration
count (``LoopState.step``), not by where epochs end, so where the clock ends them does not
change what the network sees. A time budget is a :class:`~NNSegLib.training.budget.TimeBudget`
the trainer asks for its deadline and its fits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.training import distributed as dist
from NNSegLib.training.batches import Batches
from NNSegLib.training.budget import EpochClock, TimeBudget
from NNSegLib.training.mixed_precision import (
    amp_dtype,
    amp_precision,
    grad_scaler,
    optimizer_step,
)
from NNSegLib.training.pseudo_dice import confusion_counts, dice_from_counts
from NNSegLib.training.run_config import RunConfig
from NNSegLib.training.sampler import TRAIN_STREAM, VAL_STREAM, Prefetcher
from NNSegLib.training.schedule import EMA, build_schedule
from NNSegLib.training.train_setup import TrainSetup
from NNSegLib.training.training_log import TrainingLog
from NNSegLib.util.host_memory import release_freed_memory
from NNSegLib.util.model_folder import CHECKPOINT_BEST, CHECKPOINT_FINAL, CHECKPOINT_LATEST
from NNSegLib.util.precision import torch_dtype
from NNSegLib.util.progress import Cancelled, Progress


@dataclass
class LoopState:
    """Where the run is and what it has seen (plain values, saved in checkpoints).

    ``epoch``: epochs finished; ``iteration``: iterations done in the current epoch;
    ``step``: iterations done since the start of the run.
    """

    epoch: int = 0
    iteration: int = 0
    step: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    epoch_wait: float = 0.0
    epoch_augment: float = 0.0
    epoch_seconds: float = 0.0
    ema_dice: float | None = None
    best_ema_dice: float = -math.inf
    finished: bool = False
    stop_reason: str = ""


def build_optimizer(rc: RunConfig, params: Any) -> torch.optim.Optimizer:
    """Adam (paper; AMSGrad variant) or SGD with Nesterov momentum (v2)."""
    if rc.optimizer == "adam":
        return torch.optim.Adam(params, lr=rc.lr, weight_decay=rc.weight_decay, amsgrad=True)
    return torch.optim.SGD(params, lr=rc.lr, momentum=rc.momentum,
                           weight_decay=rc.weight_decay, nesterov=rc.nesterov)


#: ``RunConfig.channels_last`` → ``NetworkOptions.memory_format``.
MEMORY_FORMATS = {"auto": "auto", "on": "channels_last", "off": "contiguous"}


class Trainer:
    """Trains one fold; see the module docstring."""

    def __init__(self, setup: TrainSetup, progress: Progress) -> None:
        self.setup = setup
        self.rc = rc = setup.run_config
        self.progress = progress
        self.device = setup.device
        torch.manual_seed(rc.seed)
        self.network, self.model = self._build_network()
        self.optimizer = build_optimizer(rc, self.network.parameters())
        self.schedule = build_schedule(rc)
        if rc.final_phase:
            self.schedule.fit_iterations(rc.max_epochs * rc.iterations_per_epoch)
        self.precision = amp_precision(rc, self.device)
        self.amp = torch_dtype(self.precision)
        self.scaler = grad_scaler(self.precision, self.device)
        self.loss_fn = self._build_loss()
        self.batches = Batches(setup)
        self.state = LoopState()
        self.log = TrainingLog(setup.run_dir)
        self.dice_ema = EMA(rc.dice_ema_alpha)
        self.budget = TimeBudget.for_run(setup, self._fit_to_budget, progress.message,
                                         self._now)
        self.epoch_clock = EpochClock(60.0 * rc.epoch_minutes, rc.val_iterations,
                                      rc.iterations_per_epoch, self._now)

    # --- construction ---------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _build_network(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The plain network (saved in checkpoints) and the module to call (DDP/compiled)."""
        from NNSegLib.network.network import NetworkOptions, build_network, prepare_network

        s, rc = self.setup, self.rc
        options = NetworkOptions(memory_format=MEMORY_FORMATS[rc.channels_last])
        plain = build_network(s.config, s.num_input_channels, s.num_classes,
                              deep_supervision=rc.deep_supervision, options=options)
        net = prepare_network(plain, self.device)
        # Some heads get no gradient (the lowest deep-supervision output has loss weight 0;
        # without deep supervision only the top head runs): DDP must be told.
        model = dist.wrap(net, s.ctx, self.device, find_unused=True)
        if rc.compile:
            model = torch.compile(model)  # type: ignore[assignment]  # a Module at run time
        return net, model

    def _build_loss(self) -> Any:
        from NNSegLib.training.loss import DeepSupervisionLoss

        return DeepSupervisionLoss(self.setup.num_classes, batch_dice=self.setup.config.batch_dice)

    # --- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, in checkpoint layout."""
        s = self.setup
        st = self.state
        return {
            "network": self.network.state_dict(),
            "meta": ckpt.make_meta(
                s.config.name, s.fold, s.num_input_channels, s.num_classes, st.epoch,
                patch_size=list(s.config.patch_size), spatial_dims=s.config.spatial_dims,
                iteration=st.iteration, finished=st.finished, stop_reason=st.stop_reason),
            "time_budget": None if self.budget is None else self.budget.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "trainer": {
                "epoch": st.epoch, "iteration": st.iteration, "step": st.step,
                "epoch_losses": list(st.epoch_losses), "epoch_wait": st.epoch_wait,
                "epoch_augment": st.epoch_augment,
                "epoch_seconds": st.epoch_seconds, "ema_dice": st.ema_dice,
                "best_ema_dice": st.best_ema_dice, "finished": st.finished,
                "stop_reason": st.stop_reason,
            },
            "rng": ckpt.capture_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`state_dict`."""
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        t = state["trainer"]
        ipe = self.rc.iterations_per_epoch   # checkpoints before epoch_minutes: full epochs
        self.state = LoopState(
            epoch=int(t["epoch"]), iteration=int(t["iteration"]),
            step=int(t.get("step", int(t["epoch"]) * ipe + int(t["iteration"]))),
            epoch_losses=[float(v) for v in t["epoch_losses"]],
            epoch_wait=float(t["epoch_wait"]), epoch_augment=float(t["epoch_augment"]),
            epoch_seconds=float(t["epoch_seconds"]),
            ema_dice=t["ema_dice"], best_ema_dice=float(t["best_ema_dice"]),
            finished=bool(t["finished"]), stop_reason=str(t["stop_reason"]))
        self.dice_ema.value = self.state.ema_dice
        ckpt.restore_rng_state(state["rng"])
        self.log = TrainingLog.load(self.setup.run_dir, epochs=self.state.epoch)

    def save(self, name: str) -> None:
        """Write a checkpoint into the fold folder (rank 0 only)."""
        if self.setup.ctx.is_main:
            ckpt.save_checkpoint(self.setup.run_dir / name, self.state_dict())

    def extend(self, extra_epochs: int) -> None:
        """Allow ``extra_epochs`` more epochs after the last finished one."""
        self.schedule.extend(self.state.step, extra_epochs)
        self.state.finished = False
        self.state.stop_reason = ""

    # --- the loop -------------------------------------------------------------------
    def run(self) -> str:
        """Train until the schedule stops, the time budget ends or cancellation.

        Returns:
            The reason training stopped.

        Raises:
            Cancelled: after writing ``checkpoint_latest.pt``, when cancelled.
        """
        now = self._now()
        while not self.state.finished:
            st = self.state
            if self.schedule.epoch_iterations(st.step - st.iteration) <= st.iteration:
                # nothing left (a resume with a lower --epochs): end without another epoch
                st.finished, st.stop_reason = True, self.schedule.end_reason()
                self.save(CHECKPOINT_LATEST)
                break
            if not self._train_epoch(now):
                break
            self._end_epoch()
            if self.state.finished:
                break
            now = self._now()   # after the checkpoint: the next epoch's clock starts here
            if self._interrupt(*self._stop_flags(now)[:2]):
                break
        return self.state.stop_reason

    def _stop_flags(self, now: float, iterations: int | None = None
                    ) -> tuple[bool, bool, bool]:
        """(cancelled, out of time, the epoch must end), agreed between ranks.

        ``iterations``: the current epoch's iterations so far (``None``: between epochs).
        """
        ctx = self.setup.ctx
        out_of_time = self.budget is not None and self.budget.expired(now)
        cancelled = self.progress.cancel_token.cancelled
        epoch_over = iterations is not None and self.epoch_clock.should_end(now, iterations)
        if ctx.enabled:
            flags = dist.all_reduce_sum([float(cancelled), float(out_of_time),
                                         float(epoch_over)], ctx)
            return flags[0] > 0, flags[1] > 0, flags[2] > 0
        return cancelled, out_of_time, epoch_over

    def _train_epoch(self, started: float) -> bool:
        """Run the rest of the current epoch's iterations (its clock started at ``started``);
        False if interrupted."""
        st, rc = self.state, self.rc
        first = st.step - st.iteration   # the run's iterations before this epoch
        count = self.schedule.epoch_iterations(first)
        self.progress.start("train", count, epoch=st.epoch)
        if st.iteration:
            self.progress.advance(st.iteration)
        self.model.train()
        t0 = time.perf_counter()
        self.epoch_clock.start(started)
        loader = Prefetcher(lambda i: self.batches.load(TRAIN_STREAM, first + i),
                            st.iteration, count, rc.loader_threads, rc.prefetch)
        try:
            for images, seg in loader:
                self._set_lr(self.schedule.lr_at(st.step) * self._warmup_factor())
                st.epoch_losses.append(self._train_step(images, seg))
                st.iteration += 1
                st.step += 1
                self.progress.advance(1, loss=st.epoch_losses[-1])
                now = self._now()
                self.epoch_clock.step(now)
                if self.budget is not None:
                    self.budget.after_step(now, st.step)
                    count = min(count, self.schedule.epoch_iterations(first))
                if st.iteration >= count:
                    break
                cancelled, out_of_time, epoch_over = self._stop_flags(now, st.iteration)
                if self._interrupt(cancelled, out_of_time):
                    return False
                if epoch_over:
                    break
        finally:
            st.epoch_wait += loader.wait_seconds
            st.epoch_seconds += time.perf_counter() - t0
            loader.close()
        return True

    def _fit_to_budget(self, total: int) -> int:
        """Fit the schedule to ``total`` iterations (the same on every rank); returns it."""
        s = self.setup
        if s.ctx.enabled:   # every rank must stop after the same iteration
            total = int(min(dist.gather_floats(float(total), s.ctx)))
        total = min(total, self.rc.max_epochs * self.rc.iterations_per_epoch)
        self.schedule.fit_iterations(total)
        if self.budget is not None:   # as many validation points as the budget has intervals
            self.epoch_clock.limit_s = self.budget.epoch_seconds(60.0 * self.rc.epoch_minutes)
        return self.schedule.total_iterations or total

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _warmup_factor(self) -> float:
        """``(step + 1) / warmup_iterations`` during the warm-up, then 1."""
        if not self.rc.warmup_iterations:
            return 1.0
        return min(1.0, (self.state.step + 1) / self.rc.warmup_iterations)

    def initialise_heads(self) -> dict[str, Any] | None:
        """A new run's segmentation heads per ``RunConfig.head_init`` (before any step).

        Returns:
            What was done (``{"head_init", "class_frequencies"}``) or ``None`` for ``he``.
        """
        from NNSegLib.training.initialisation import initialise_run_heads

        return initialise_run_heads(self.network, self.batches, self.rc.head_init,
                                    self.rc.seed)

    def _interrupt(self, cancelled: bool, out_of_time: bool) -> bool:
        """Handle cancellation (raises) and the time budget (returns True) between steps."""
        if cancelled:
            self.save(CHECKPOINT_LATEST)
            raise Cancelled(f"{self.progress.cancel_token.reason or 'cancelled'}; "
                            f"resume with --continue (epoch {self.state.epoch}, "
                            f"iteration {self.state.iteration} saved)")
        if out_of_time:
            self.state.stop_reason = "time budget used"
            if self.setup.ctx.is_main:
                self.log.maybe_plot(force=True)
            self.save(CHECKPOINT_LATEST)
            self.save(CHECKPOINT_FINAL)
            return True
        return False

    def _forward_loss(self, model: torch.nn.Module, images: torch.Tensor, seg: torch.Tensor
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                            enabled=self.amp is not None):
            outputs = model(images)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            loss = self.loss_fn(list(outputs), seg)
        return loss, list(outputs)

    def _train_step(self, images: torch.Tensor, seg: torch.Tensor) -> float:
        t0 = time.perf_counter()  # exact on CPU; on GPUs it times the kernel launches only
        images, seg = self.batches.augmented(*self.batches.to_device(images, seg),
                                             self.state.step)
        self.state.epoch_augment += time.perf_counter() - t0
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self._forward_loss(self.model, images, seg)
        optimizer_step(loss, self.optimizer, self.scaler, self.network.parameters(),
                       self.rc.grad_clip)
        return float(loss.detach())

    def validate(self, epoch: int, batches: int | None = None
                 ) -> tuple[float | None, np.ndarray]:
        """Validation loss and ``(K, 3)`` TP/FP/FN over ``batches`` (default
        ``val_iterations``) batches."""
        k = self.setup.num_classes
        counts = torch.zeros((k, 3), dtype=torch.int64)
        n = self.rc.val_iterations if batches is None else batches
        if n == 0:
            return None, counts.numpy()
        losses = []
        # Instance norm has no running statistics: train mode keeps the deep-supervision
        # outputs for the loss and computes the same as eval mode.
        self.network.train()
        loader = Prefetcher(lambda i: self.batches.load(VAL_STREAM, i, epoch), 0, n,
                            self.rc.loader_threads, self.rc.prefetch)
        with torch.no_grad(), loader:
            for images, seg in loader:
                images, seg = self.batches.with_previous_stage(
                    *self.batches.to_device(images, seg))
                loss, outputs = self._forward_loss(self.network, images, seg)
                losses.append(float(loss))
                counts += confusion_counts(outputs[0].float(), seg, k)
        ctx = self.setup.ctx
        val_loss = dist.all_reduce_mean([float(np.mean(losses))], ctx)[0]
        counts_np = np.asarray(dist.all_reduce_sum(counts.flatten().tolist(), ctx),
                               dtype=np.int64).reshape(k, 3)
        return val_loss, counts_np

    def _end_epoch(self) -> None:
        st, ctx, ipe = self.state, self.setup.ctx, self.rc.iterations_per_epoch
        mean_loss = float(np.mean(st.epoch_losses)) if st.epoch_losses else math.nan
        train_loss = dist.all_reduce_mean([mean_loss], ctx)[0]
        wait_share = st.epoch_wait / max(st.epoch_seconds, 1e-9)
        iterations = len(st.epoch_losses)   # this invocation's (all, unless resumed mid-epoch)
        batches = self.epoch_clock.validation_batches(st.iteration)
        t0 = time.perf_counter()
        val_loss, counts = self.validate(st.epoch, batches)
        val_seconds = time.perf_counter() - t0
        if self.budget is not None:
            per_sample = (val_seconds / batches / self.batches.val_sampler.batch_size
                          if batches else None)
            self.budget.after_epoch(self._now(), st.step, self.schedule.total_iterations,
                                    per_sample)
        dice = dice_from_counts(counts)
        defined = [d for d in dice if d is not None]
        mean_dice = float(np.mean(defined)) if defined else None
        weight = st.iteration / ipe   # the epoch's share of a full one
        if mean_dice is not None:
            st.ema_dice = self.dice_ema.update(mean_dice, weight)
        lr = self.optimizer.param_groups[0]["lr"]
        decision = self.schedule.end_epoch(st.step, train_loss,
                                           val_loss if self.setup.val_cases else None, weight)
        record = {
            "epoch": st.epoch, "iterations": st.iteration, "step": st.step,
            "planned_steps": self.schedule.end_step, "train_loss": train_loss,
            "val_loss": val_loss, "val_batches": batches,
            "pseudo_dice": dice, "mean_pseudo_dice": mean_dice, "ema_pseudo_dice": st.ema_dice,
            "lr": lr, "epoch_time": st.epoch_seconds + val_seconds,
            "train_time": st.epoch_seconds, "val_time": val_seconds,
            "seconds_per_iteration": st.epoch_seconds / max(iterations, 1),
            "data_wait_share": wait_share,
            "augment_share": st.epoch_augment / max(st.epoch_seconds, 1e-9),
            "lr_reduced": decision.lr_changed,
        }
        if self.budget is not None:
            record["fitted_iterations"] = self.schedule.total_iterations
        improved = st.ema_dice is not None and st.ema_dice > st.best_ema_dice
        if st.ema_dice is not None and improved:
            st.best_ema_dice = st.ema_dice
        st.epoch += 1
        st.iteration, st.epoch_losses = 0, []
        st.epoch_wait = st.epoch_augment = st.epoch_seconds = 0.0
        st.finished, st.stop_reason = decision.stop, decision.reason
        t1 = time.perf_counter()
        self._record(record, improved)
        release_freed_memory()
        self.epoch_clock.measured(batches, val_seconds, time.perf_counter() - t1)

    def _record(self, record: dict[str, Any], improved: bool) -> None:
        """Log, plot, checkpoint and report one finished epoch (files on rank 0 only)."""
        per_iteration = record["epoch_time"] / max(record["iterations"], 1)
        left = max(self.schedule.end_step - self.state.step, 0)
        record["eta_seconds"] = per_iteration * left if not self.state.finished else 0.0
        if self.setup.ctx.is_main:
            self.log.append(record)
            self.log.maybe_plot(force=self.state.finished)
            self.save(CHECKPOINT_LATEST)
            if improved:
                self.save(CHECKPOINT_BEST)
        self.progress.done()
        self.progress.event("epoch", **record)
        dice = ", ".join("-" if d is None else f"{d:.3f}" for d in record["pseudo_dice"])
        val = "-" if record["val_loss"] is None else f"{record['val_loss']:.4f}"
        self.progress.message(
            f"epoch {record['epoch']}: {record['iterations']} iterations, train loss "
            f"{record['train_loss']:.4f}, val loss {val}, pseudo Dice [{dice}], lr "
            f"{record['lr']:.3g}, {record['epoch_time']:.1f} s "
            f"({record['data_wait_share']:.0%} waiting for data)")


__all__ = ["LoopState", "TrainSetup", "Trainer", "amp_dtype", "build_optimizer"]
