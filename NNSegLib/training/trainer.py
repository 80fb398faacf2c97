"""The training loop of one fold (METHOD §4): epochs of sampled, augmented batches.

:class:`Trainer` owns the network, optimizer, loss, schedule, samplers and bookkeeping; its
:meth:`Trainer.state_dict` is everything a resumed run needs to continue *exactly* (every
batch is drawn from a generator derived from ``(seed, epoch, iteration, rank)``, so the
position inside an epoch is enough to reproduce the remaining batches). Patch extraction runs
on background threads (:class:`~NNSegLib.training.sampler.Prefetcher`); augmentation runs on the
training device, on the whole batch, in the main thread.

Per epoch: ``iterations_per_epoch`` training steps, ``val_iterations`` validation batches
(loss and pseudo-Dice: Dice of the summed TP/FP/FN over all validation patches), the
schedule's decision, one ``log.jsonl`` record, ``progress.png``, ``checkpoint_latest.pt``
and (when the EMA pseudo-Dice improves) ``checkpoint_best.pt``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.planning.plans import ConfigurationPlan
from NNSegLib.training import distributed as dist
from NNSegLib.training.mixed_precision import (
    amp_dtype,
    amp_precision,
    grad_scaler,
    optimizer_step,
)
from NNSegLib.training.run_config import RunConfig
from NNSegLib.training.sampler import TRAIN_STREAM, VAL_STREAM, PatchSampler, Prefetcher, batch_rng
from NNSegLib.training.schedule import EMA, build_schedule
from NNSegLib.training.training_log import TrainingLog
from NNSegLib.util.host_memory import release_freed_memory
from NNSegLib.util.model_folder import CHECKPOINT_BEST, CHECKPOINT_FINAL, CHECKPOINT_LATEST
from NNSegLib.util.precision import torch_dtype
from NNSegLib.util.progress import Cancelled, Progress

AUG_STREAM = 2


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


@dataclass
class LoopState:
    """Where the run is and what it has seen (plain values, saved in checkpoints)."""

    epoch: int = 0
    iteration: int = 0
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


def confusion_counts(logits: torch.Tensor, target: torch.Tensor, num_classes: int
                     ) -> torch.Tensor:
    """Per class ``[tp, fp, fn]`` (``(K, 3)`` int64) of ``argmax(logits)`` against ``target``."""
    pred = logits.argmax(1).flatten().long()
    ref = target[:, 0].flatten().long().clamp(0, num_classes - 1)
    cm = torch.bincount(ref * num_classes + pred, minlength=num_classes ** 2)
    cm = cm.reshape(num_classes, num_classes).cpu()
    tp = cm.diagonal()
    return torch.stack([tp, cm.sum(0) - tp, cm.sum(1) - tp], dim=1)


def dice_from_counts(counts: np.ndarray) -> list[float | None]:
    """Foreground classes' Dice from ``(K, 3)`` counts (``None`` where undefined)."""
    out: list[float | None] = []
    for tp, fp, fn in counts[1:]:
        denom = 2 * tp + fp + fn
        out.append(float(2 * tp / denom) if denom > 0 else None)
    return out


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
        self.augment = self._build_augmenter()
        self.train_sampler, self.val_sampler = self._build_samplers()
        self.state = LoopState()
        self.log = TrainingLog(setup.run_dir)
        self.dice_ema = EMA(rc.dice_ema_alpha)
        self._started = time.monotonic()
        self._step_times: list[float] = []
        #: (time, iterations done) after the first step of this invocation: the origin of
        #: the all-in cost per iteration that re-fits the budget after every epoch.
        self._rate_origin: tuple[float, int] | None = None
        self._fit_pending = setup.time_budget_s is not None

    # --- construction ---------------------------------------------------------------
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

    def _build_augmenter(self) -> Any:
        """The recipe's augmenter; it crops the (larger) sampled patch to the plan's patch."""
        from NNSegLib.training.augment import AugmentationConfig, Augmenter, input_patch_size

        cfg = self.setup.config
        patch = tuple(cfg.patch_size)
        # Axis 0 much coarser than the others (patch much shorter there): in-plane spatial
        # augmentation only, as nnU-Net does for such plans.
        anisotropic = cfg.spatial_dims == 3 and max(patch) / patch[0] > 3
        aug = AugmentationConfig.for_recipe(self.rc.recipe)
        axis0, _other = aug.rotation_limits(patch, anisotropic)
        rotates = aug.p_rotation > 0
        self.sample_patch = input_patch_size(
            patch, axis0 if rotates else 0.0, anisotropic,
            aug.rotation_deg_out_of_plane_anisotropic if rotates else 0.0,
            max(aug.scale_range) if aug.p_scale > 0 else 1.0) \
            if rotates or aug.p_scale > 0 or aug.p_elastic > 0 else patch
        return Augmenter(aug, cfg.spatial_dims, patch, anisotropic)

    def _build_samplers(self) -> tuple[PatchSampler, PatchSampler]:
        """Training patches at the augmenter's input size, validation at the plan's patch."""
        s, rc = self.setup, self.rc
        batch = dist.local_batch_size(s.config.batch_size, s.ctx)
        train = PatchSampler(s.preprocessed, s.train_cases, self.sample_patch, batch,
                             rc.oversample_foreground, s.previous_stage,
                             rc.foreground_placement)
        val = PatchSampler(s.preprocessed, s.val_cases or s.train_cases, s.config.patch_size,
                           batch, rc.oversample_foreground, s.previous_stage)
        return train, val

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
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "trainer": {
                "epoch": st.epoch, "iteration": st.iteration,
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
        self.state = LoopState(
            epoch=int(t["epoch"]), iteration=int(t["iteration"]),
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
        done = self.state.epoch
        self.schedule.extend(done, extra_epochs)
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
        while not self.state.finished:
            if not self._train_epoch():
                break
            self._end_epoch()
            if not self.state.finished and self._interrupt():
                break
        return self.state.stop_reason

    def _should_stop_now(self) -> tuple[bool, bool]:
        """(cancelled, out of time), agreed between ranks."""
        ctx = self.setup.ctx
        budget = self.setup.time_budget_s
        out_of_time = budget is not None and time.monotonic() - self._started >= budget
        cancelled = self.progress.cancel_token.cancelled
        if ctx.enabled:
            flags = dist.all_reduce_sum([float(cancelled), float(out_of_time)], ctx)
            return flags[0] > 0, flags[1] > 0
        return cancelled, out_of_time

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch's iterations; False if interrupted."""
        st, rc = self.state, self.rc
        count = self.schedule.iterations_in_epoch(st.epoch)
        self.progress.start("train", count, epoch=st.epoch)
        if st.iteration:
            self.progress.advance(st.iteration)
        self.model.train()
        t0 = time.perf_counter()
        loader = Prefetcher(lambda i: self._load_batch(TRAIN_STREAM, st.epoch, i),
                            st.iteration, count, rc.loader_threads, rc.prefetch)
        try:
            for images, seg in loader:
                lr = self.schedule.lr_at(st.epoch, st.iteration)
                self._set_lr(lr * self._warmup_factor() if rc.warmup_iterations else lr)
                st.epoch_losses.append(self._train_step(images, seg))
                st.iteration += 1
                self.progress.advance(1, loss=st.epoch_losses[-1])
                if self.setup.time_budget_s is not None:
                    self._step_times.append(time.monotonic())
                    if self._rate_origin is None:
                        self._rate_origin = (self._step_times[0], self._done())
                    if self.schedule.total_iterations is None or self._fit_pending:
                        self._maybe_fit_budget()
                    count = min(count, self.schedule.iterations_in_epoch(st.epoch))
                if st.iteration >= count:
                    break
                if self._interrupt():
                    return False
        finally:
            st.epoch_wait += loader.wait_seconds
            st.epoch_seconds += time.perf_counter() - t0
            loader.close()
        return True

    def _done(self) -> int:
        """Iterations done since the start of the run (earlier invocations included)."""
        return self.state.epoch * self.rc.iterations_per_epoch + self.state.iteration

    def _step_seconds(self) -> float:
        """Median wall time of the recent training steps (the first one pays for start-up)."""
        return float(np.median(np.diff(self._step_times[1:][-200:])))

    def _final_validation_seconds(self, per_iteration: float) -> float:
        from NNSegLib.training.budget import final_validation_seconds

        s = self.setup
        if not (self.rc.final_validation and s.val_cases):
            return 0.0
        return final_validation_seconds(len(s.val_cases), s.config.median_shape,
                                        s.config.patch_size, s.config.batch_size,
                                        per_iteration, 2 ** s.config.spatial_dims)

    def _fit_to_budget(self, total: int) -> int:
        """Fit the schedule to ``total`` iterations (the same on every rank); returns it."""
        s = self.setup
        if s.ctx.enabled:   # every rank must stop after the same iteration
            total = int(min(dist.gather_floats(float(total), s.ctx)))
        total = min(total, self.rc.max_epochs * self.rc.iterations_per_epoch)
        self.schedule.fit_iterations(total)
        return self.schedule.total_iterations or total

    def _maybe_fit_budget(self) -> None:
        """After the probe iterations, fit the schedule to the rest of the time budget."""
        from NNSegLib.training.budget import fitted_iterations

        s, rc = self.setup, self.rc
        if len(self._step_times) < rc.budget_probe_iterations + 1 or s.time_budget_s is None:
            return
        per_iteration = self._step_seconds()
        final = self._final_validation_seconds(per_iteration)
        total = self._fit_to_budget(fitted_iterations(
            s.time_budget_s, time.monotonic() - self._started, self._done(), per_iteration,
            rc.iterations_per_epoch, rc.val_iterations, final))
        self._fit_pending = False
        self.progress.message(
            f"time budget: {per_iteration:.2f} s per iteration here, so the run ends after "
            f"{total} iterations ({self.schedule.max_epochs} epochs; "
            f"{final:.0f} s kept for the final validation)")

    def _refit_budget(self) -> None:
        """At an epoch's end: re-fit the schedule with what an iteration has really cost.

        The probe only times training steps; an epoch also pays for its validation batches,
        its checkpoints and any slow-down since the probe. The cost per iteration measured
        over the whole run so far includes all of that, so the schedule (and its decay or
        final low-lr phase) still ends when the budget does. No time left: the run ends now.
        """
        from NNSegLib.training.budget import refitted_iterations

        s = self.setup
        if s.time_budget_s is None or self._fit_pending:   # not fitted after the probe yet
            return
        assert self._rate_origin is not None   # set at the first step, before the probe fit
        now, done = time.monotonic(), self._done()
        origin_time, origin_done = self._rate_origin
        all_in = (now - origin_time) / (done - origin_done)
        final = self._final_validation_seconds(self._step_seconds())
        before = self.schedule.total_iterations
        total = self._fit_to_budget(refitted_iterations(
            s.time_budget_s, now - self._started, done, all_in, final))
        if total != before:
            self.progress.message(
                f"time budget: re-fitted to {total} iterations ({all_in:.2f} s per iteration "
                f"with validation and checkpoints; {final:.0f} s kept for the final validation)")

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _warmup_factor(self) -> float:
        """``(step + 1) / warmup_iterations`` during the warm-up, then 1."""
        step = self.state.epoch * self.rc.iterations_per_epoch + self.state.iteration
        return min(1.0, (step + 1) / self.rc.warmup_iterations)

    def initialise_heads(self) -> dict[str, Any] | None:
        """A new run's segmentation heads per ``RunConfig.head_init`` (before any step).

        Returns:
            What was done (``{"head_init", "class_frequencies"}``) or ``None`` for ``he``.
        """
        if self.rc.head_init == "he":
            return None
        from NNSegLib.training.augment import _center_crop
        from NNSegLib.training.initialisation import (
            class_frequencies,
            initialise_heads,
            mean_head_logits,
            sample_batches,
        )

        freqs = class_frequencies(self.train_sampler, self.setup.num_classes, self.rc.seed)
        means = None
        if self.rc.head_init == "calibrated":
            patch = tuple(self.setup.config.patch_size)
            inputs = []
            for images, seg in sample_batches(self.train_sampler, self.rc.seed):
                images, seg = self._to_device(_center_crop(images, patch),
                                              _center_crop(seg, patch))
                inputs.append(self._with_previous_stage(images, seg)[0])
            means = mean_head_logits(self.network, inputs)
        initialise_heads(self.network, freqs, zero_weights=self.rc.head_init == "prior_zero",
                         mean_logits=means)
        return {"head_init": self.rc.head_init, "class_frequencies": freqs.tolist()}

    def _interrupt(self) -> bool:
        """Handle cancellation (raises) and the time budget (returns True) between steps."""
        cancelled, out_of_time = self._should_stop_now()
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

    def _load_batch(self, stream: int, epoch: int, iteration: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Background thread: sample a batch, as (pinned) tensors."""
        sampler = self.train_sampler if stream == TRAIN_STREAM else self.val_sampler
        rng = batch_rng(self.rc.seed, stream, epoch, iteration, self.setup.ctx.rank)
        images, seg = sampler.sample(rng)
        images_t, seg_t = torch.from_numpy(images), torch.from_numpy(seg.astype(np.float32))
        if self.device.type == "cuda":
            images_t, seg_t = images_t.pin_memory(), seg_t.pin_memory()
        return images_t, seg_t

    def _to_device(self, images: torch.Tensor, seg: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        seg = seg.to(self.device, non_blocking=True)
        return images, seg

    def _augment(self, images: torch.Tensor, seg: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        st, rank = self.state, self.setup.ctx.rank
        seed = int(batch_rng(self.rc.seed, AUG_STREAM, st.epoch, st.iteration, rank)
                   .integers(2 ** 62))
        gen = torch.Generator(device=self.device).manual_seed(seed)
        images, seg = self.augment(images, seg, gen)
        return self._with_previous_stage(images, seg, gen)

    def _with_previous_stage(self, images: torch.Tensor, seg: torch.Tensor,
                             gen: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cascade: label channel 1 (previous stage) → one-hot input channels.

        With ``gen`` (training) the one-hot channels get nnU-Net's cascade augmentation
        (:mod:`NNSegLib.training.cascade_augment`) after the spatial and intensity transforms, which
        only touched the image channels.
        """
        if seg.shape[1] == 1:
            return images, seg
        from NNSegLib.inference.cascade import one_hot_foreground
        from NNSegLib.training.cascade_augment import (
            CascadeAugmentationConfig,
            augment_previous_stage,
        )

        onehot = one_hot_foreground(seg[:, 1:], self.setup.num_classes)
        if gen is not None:
            onehot = augment_previous_stage(onehot, CascadeAugmentationConfig(), gen)
        return torch.cat([images, onehot.to(images.dtype)], 1), seg[:, :1]

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
        images, seg = self._augment(*self._to_device(images, seg))
        self.state.epoch_augment += time.perf_counter() - t0
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self._forward_loss(self.model, images, seg)
        optimizer_step(loss, self.optimizer, self.scaler, self.network.parameters(),
                       self.rc.grad_clip)
        return float(loss.detach())

    def validate(self, epoch: int) -> tuple[float | None, np.ndarray]:
        """Validation loss and ``(K, 3)`` TP/FP/FN over ``val_iterations`` batches."""
        k = self.setup.num_classes
        counts = torch.zeros((k, 3), dtype=torch.int64)
        n = self.rc.val_iterations
        if n == 0:
            return None, counts.numpy()
        losses = []
        # Instance norm has no running statistics: train mode keeps the deep-supervision
        # outputs for the loss and computes the same as eval mode.
        self.network.train()
        loader = Prefetcher(lambda i: self._load_batch(VAL_STREAM, epoch, i), 0, n,
                            self.rc.loader_threads, self.rc.prefetch)
        with torch.no_grad(), loader:
            for images, seg in loader:
                images, seg = self._with_previous_stage(*self._to_device(images, seg))
                loss, outputs = self._forward_loss(self.network, images, seg)
                losses.append(float(loss))
                counts += confusion_counts(outputs[0].float(), seg, k)
        ctx = self.setup.ctx
        val_loss = dist.all_reduce_mean([float(np.mean(losses))], ctx)[0]
        counts_np = np.asarray(dist.all_reduce_sum(counts.flatten().tolist(), ctx),
                               dtype=np.int64).reshape(k, 3)
        return val_loss, counts_np

    def _end_epoch(self) -> None:
        st, ctx = self.state, self.setup.ctx
        mean_loss = float(np.mean(st.epoch_losses)) if st.epoch_losses else math.nan
        train_loss = dist.all_reduce_mean([mean_loss], ctx)[0]
        wait_share = st.epoch_wait / max(st.epoch_seconds, 1e-9)
        t0 = time.perf_counter()
        val_loss, counts = self.validate(st.epoch)
        val_seconds = time.perf_counter() - t0
        self._refit_budget()
        dice = dice_from_counts(counts)
        defined = [d for d in dice if d is not None]
        mean_dice = float(np.mean(defined)) if defined else None
        if mean_dice is not None:
            st.ema_dice = self.dice_ema.update(mean_dice)
        lr = self.optimizer.param_groups[0]["lr"]
        decision = self.schedule.end_epoch(st.epoch, train_loss,
                                           val_loss if self.setup.val_cases else None)
        record = {
            "epoch": st.epoch, "train_loss": train_loss, "val_loss": val_loss,
            "pseudo_dice": dice, "mean_pseudo_dice": mean_dice, "ema_pseudo_dice": st.ema_dice,
            "lr": lr, "epoch_time": st.epoch_seconds + val_seconds,
            "train_time": st.epoch_seconds, "val_time": val_seconds,
            "seconds_per_iteration": st.epoch_seconds / max(len(st.epoch_losses), 1),
            "data_wait_share": wait_share,
            "augment_share": st.epoch_augment / max(st.epoch_seconds, 1e-9),
            "lr_reduced": decision.lr_changed,
        }
        if self.setup.time_budget_s is not None:
            record["fitted_iterations"] = self.schedule.total_iterations
        improved = st.ema_dice is not None and st.ema_dice > st.best_ema_dice
        if st.ema_dice is not None and improved:
            st.best_ema_dice = st.ema_dice
        st.epoch += 1
        st.iteration, st.epoch_losses = 0, []
        st.epoch_wait = st.epoch_augment = st.epoch_seconds = 0.0
        st.finished, st.stop_reason = decision.stop, decision.reason
        self._record(record, improved)
        release_freed_memory()

    def _record(self, record: dict[str, Any], improved: bool) -> None:
        """Log, plot, checkpoint and report one finished epoch (files on rank 0 only)."""
        record["eta_seconds"] = record["epoch_time"] * max(
            self.schedule.max_epochs - self.state.epoch, 0) if not self.state.finished else 0.0
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
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val loss {val}, "
            f"pseudo Dice [{dice}], lr {record['lr']:.3g}, {record['epoch_time']:.1f} s "
            f"({record['data_wait_share']:.0%} waiting for data)")


__all__ = ["LoopState", "TrainSetup", "Trainer", "amp_dtype", "build_optimizer",
           "confusion_counts", "dice_from_counts"]
