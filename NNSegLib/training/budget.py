"""Training against the clock: a wall-clock budget and epochs of bounded length.

:class:`TimeBudget` (``nnseg train --time-budget MINUTES``) carries the deadline. After
``RunConfig.budget_probe_iterations`` timed iterations it knows what an iteration costs
here; :func:`fitted_iterations` turns the rest of the budget into a number of iterations,
after reserving what else the run will spend: each epoch's validation batches and
checkpoints, and the full-image validation of the fold at the end
(:func:`final_validation_seconds`). The trainer fits the schedule to that number
(:meth:`NNSegLib.training.schedule.Schedule.fit_iterations`), so its decay or final low-lr
phase ends when the budget does, instead of being cut off in the middle; after every epoch
:func:`refitted_iterations` corrects the number with what an iteration has really cost.

The budget is saved in the checkpoints (:meth:`TimeBudget.state_dict`): ``--continue``
without ``--time-budget`` gives the resumed run what was left when its last checkpoint was
written (the minutes since then were lost with the interruption), probes the speed again and
re-fits; ``--continue --time-budget M`` gives it ``M`` minutes from now instead.

:class:`EpochClock` ends an epoch early when one more iteration, the epoch's validation and
its checkpoint would take it past ``RunConfig.epoch_minutes``, so a validation point and a
checkpoint come at least that often on any device.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:   # pragma: no cover
    from NNSegLib.training.train_setup import TrainSetup
    from NNSegLib.util.progress import Progress

#: A forward pass (no augmentation, no backward) costs about this share of a training step.
FORWARD_SHARE = 0.4
#: Seconds per saved checkpoint (latest, sometimes best), a generous CPU figure.
CHECKPOINT_SECONDS = 1.0
#: Seconds per validation case besides the network (reading, resampling, writing).
CASE_OVERHEAD_SECONDS = 0.5
#: The shortest epoch a budget makes of a longer ``epoch_minutes`` (its validation and
#: checkpoint must stay a small part of it).
MIN_EPOCH_SECONDS = 30.0


def windows_per_case(shape: Sequence[int], patch: Sequence[int], step: float = 0.5) -> int:
    """Sliding-window positions for an image of ``shape`` (a 2D ``patch``: per axis-0 slice
    of a 3D ``shape``, times its slices)."""
    slices = 1
    if len(shape) == len(patch) + 1:
        slices, shape = int(shape[0]), shape[1:]
    n = 1
    for s, p in zip(shape, patch):
        n *= math.ceil((max(s, p) - p) / max(1.0, p * step)) + 1
    return slices * n


def validation_windows(folder: Path, case_ids: Sequence[str], patch: Sequence[int],
                       fallback_shape: Sequence[int]) -> int:
    """Sliding-window positions over the validation cases, from the shapes of their
    preprocessed arrays (read from the file headers; ``fallback_shape`` for an unreadable
    one). Cases larger than the patch need several windows each: the plan's median shape
    alone underestimates them."""
    total = 0
    for case in case_ids:
        try:
            shape: Sequence[int] = np.load(Path(folder) / f"{case}.npy", mmap_mode="r",
                                           allow_pickle=False).shape[1:]
        except (OSError, ValueError):
            shape = fallback_shape
        total += windows_per_case(shape, patch)
    return total


def final_validation_seconds(windows: int, num_cases: int, batch_size: int,
                             seconds_per_iteration: float, mirrors: int,
                             window_seconds: float | None = None) -> float:
    """Estimated wall time of segmenting the validation cases at the end: ``windows``
    sliding-window positions in all (:func:`validation_windows`) over ``num_cases``.

    A window costs ``window_seconds`` when measured (an epoch's validation batches: the
    same forward pass, per sample), else :data:`FORWARD_SHARE` of a training step per
    sample.
    """
    per_window = (FORWARD_SHARE * seconds_per_iteration / max(1, batch_size)
                  if window_seconds is None else window_seconds)
    return windows * mirrors * per_window + num_cases * CASE_OVERHEAD_SECONDS


def fitted_iterations(budget_s: float, elapsed_s: float, done: int, seconds_per_iteration: float,
                      iterations_per_epoch: int, val_iterations: int,
                      final_validation_s: float) -> int:
    """Total iterations (``done`` included) that fit the budget with everything else reserved.

    Never fewer than ``done + 1``: a run fitted too tightly still ends with one more step.
    """
    per_epoch_extra = (FORWARD_SHARE * seconds_per_iteration * val_iterations
                       + CHECKPOINT_SECONDS)
    per_iteration = seconds_per_iteration + per_epoch_extra / max(1, iterations_per_epoch)
    left = budget_s - elapsed_s - final_validation_s
    return done + max(1, int(left // per_iteration))


def refitted_iterations(budget_s: float, elapsed_s: float, done: int,
                        all_in_seconds_per_iteration: float, final_validation_s: float) -> int:
    """Total iterations that fit, from the measured all-in cost of an iteration.

    ``all_in_seconds_per_iteration`` already includes each epoch's validation and checkpoints.
    Returns ``done`` (end now) when not even one more iteration fits.
    """
    left = budget_s - elapsed_s - final_validation_s
    return done + max(0, int(left // max(all_in_seconds_per_iteration, 1e-9)))


def minimum_budget_minutes(epoch_minutes: float) -> float:
    """The smallest ``--time-budget``: one validation interval (``RunConfig.epoch_minutes``),
    so the run has a validation point and a checkpoint before its end."""
    return float(epoch_minutes)


def budget_problem(minutes: float, epoch_minutes: float,
                   option: str = "--time-budget") -> str | None:
    """Why ``minutes`` is not a usable budget (one line naming ``option`` and the minimum),
    or ``None``."""
    low = minimum_budget_minutes(epoch_minutes)
    if isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes >= low:
        return None
    return (f"{option} {minutes:g}: must be at least {low:g} minutes, one validation interval "
            f"(run config epoch_minutes={epoch_minutes:g}; --set epoch_minutes=M lowers it)")


def cpu_budget_batch(plan_batch: int, spatial_dims: int, device_type: str,
                     progress: Progress | None = None) -> int | None:
    """:func:`NNSegLib.planning.cpu_budget.cpu_budget_batch` for a new time-budgeted run;
    ``progress`` is told which batch and why."""
    from NNSegLib.planning.cpu_budget import cpu_budget_batch as rule

    batch = rule(plan_batch, spatial_dims, device_type)
    if batch is not None and progress is not None:
        progress.message(f"time budget on a CPU: batch {batch} instead of the plan's "
                         f"{plan_batch}, for more steps in the minutes given "
                         "(--batch-size N chooses)")
    return batch


def _median_gap(times: Sequence[float]) -> float:
    gaps = [b - a for a, b in zip(times[:-1], times[1:])]
    gaps.sort()
    n = len(gaps)
    return (gaps[n // 2] if n % 2 else 0.5 * (gaps[n // 2 - 1] + gaps[n // 2])) if n else 0.0


class TimeBudget:
    """A run's wall-clock budget: its deadline, the probe of the speed, the (re-)fits.

    The trainer tells it about every step (:meth:`after_step`) and every epoch's end
    (:meth:`after_epoch`), and asks it whether time is up (:meth:`expired`); the budget
    decides when and to how many iterations the schedule is fitted, through ``fit``.

    Args:
        total_s: The budget (seconds) this run was given.
        left_s: Seconds left of it now (less than ``total_s`` when set-up or an earlier
            invocation has used some).
        probe_iterations: Timed iterations before the first fit.
        final_validation: Estimated seconds of the final validation, given the seconds of a
            training iteration and (when measured) of one window's forward pass.
        clock: ``time.monotonic`` (tests pass a fake one).
        fit: Fits the schedule to a number of iterations; returns the number it used
            (default: only returns it).
        report: Shows a message to the user (default: none).
        epoch: ``(iterations_per_epoch, val_iterations)`` of the run.
    """

    def __init__(self, total_s: float, left_s: float, probe_iterations: int,
                 final_validation: Callable[[float, float | None], float],
                 clock: Callable[[], float],
                 fit: Callable[[int], int] | None = None,
                 report: Callable[[str], Any] | None = None,
                 epoch: tuple[int, int] = (250, 50)) -> None:
        self.total_s = float(total_s)
        self.clock = clock
        self.deadline = clock() + float(left_s)
        self.probe_iterations = int(probe_iterations)
        self.final_validation = final_validation
        self._fit: Callable[[int], int] = fit or (lambda total: total)
        self._report: Callable[[str], Any] = report or (lambda text: None)
        self.iterations_per_epoch, self.val_iterations = epoch
        #: The latest time the trainer told the budget about (steps, epoch ends, checks).
        self._seen: float | None = None
        #: Measured seconds of one sample's forward pass (the epochs' validation batches).
        self.window_s: float | None = None
        #: Step end times of this invocation (the first one pays for start-up).
        self._step_times: deque[float] = deque(maxlen=max(200, probe_iterations + 2))
        #: (time, iterations done) at the first step of this invocation: the origin of the
        #: all-in cost per iteration used by :meth:`refit`.
        self._rate_origin: tuple[float, int] | None = None
        self.fit_pending = True
        #: The latest estimate of the final validation's seconds (0 before the first fit).
        self.final_s = 0.0

    @classmethod
    def for_run(cls, setup: TrainSetup, fit: Callable[[int], int],
                report: Callable[[str], Any], clock: Callable[[], float]) -> TimeBudget | None:
        """The budget of a trainer built from ``setup`` (``None`` without one)."""
        if setup.time_budget_s is None:
            return None
        rc, config = setup.run_config, setup.config
        total = (setup.time_budget_s if setup.time_budget_total_s is None
                 else setup.time_budget_total_s)
        cases = setup.val_cases if rc.final_validation else ()
        windows = (validation_windows(setup.preprocessed, cases, config.patch_size,
                                      config.median_shape) if cases else 0)

        def final_validation(per_iteration: float, window_s: float | None) -> float:
            if not cases:
                return 0.0
            return final_validation_seconds(windows, len(cases), config.batch_size,
                                            per_iteration, 2 ** config.spatial_dims, window_s)

        return cls(total, setup.time_budget_s, rc.budget_probe_iterations, final_validation,
                   clock, fit, report, (rc.iterations_per_epoch, rc.val_iterations))

    # --- the deadline ----------------------------------------------------------------
    def left(self, now: float | None = None) -> float:
        """Seconds to the deadline."""
        if now is None:
            now = self.clock()
        self._seen = now
        return self.deadline - now

    def expired(self, now: float | None = None) -> bool:
        return self.left(now) <= 0

    def state_dict(self) -> dict[str, float]:
        """What a checkpoint keeps: the budget and how much of it is spent (as of the
        latest step, epoch end or check the trainer reported)."""
        spent = self.total_s - (self.left() if self._seen is None else self.left(self._seen))
        return {"total_s": self.total_s, "spent_s": spent}

    @staticmethod
    def left_after_resume(state: dict[str, Any] | None) -> tuple[float, float] | None:
        """``(total_s, left_s)`` a resumed run gets from a checkpoint's budget state
        (``None``: the run had no budget)."""
        if not state:
            return None
        total = float(state["total_s"])
        return total, max(0.0, total - float(state["spent_s"]))

    # --- probing and fitting -----------------------------------------------------------
    def record_step(self, now: float, done: int) -> None:
        """A training step ended at ``now`` with ``done`` iterations of the run done."""
        self._step_times.append(now)
        self._seen = now
        if self._rate_origin is None:
            self._rate_origin = (now, done)

    def ready_to_fit(self) -> bool:
        """The probe is over and the first fit of this invocation is due."""
        return self.fit_pending and len(self._step_times) >= self.probe_iterations + 1

    def after_step(self, now: float, done: int) -> None:
        """A training step ended: time it; after the probe, fit the schedule."""
        self.record_step(now, done)
        if not self.ready_to_fit():
            return
        fitted, per_iteration, final = self.fit(now, done, self.iterations_per_epoch,
                                                self.val_iterations)
        total = self._fit(fitted)
        self._report(
            f"time budget: {per_iteration:.2f} s per iteration here, so the run ends after "
            f"{total} iterations ({total - done} more; {final:.0f} s kept for the final "
            f"validation)")

    def after_epoch(self, now: float, done: int, fitted_before: int | None,
                    window_s: float | None = None) -> None:
        """At an epoch's end: re-fit the schedule with what an iteration has really cost.

        The probe only times training steps; an epoch also pays for its validation batches,
        its checkpoints and any slow-down since the probe. The cost per iteration measured
        over this invocation includes all of that, so the schedule (and its decay or final
        low-lr phase) still ends when the budget does. No time left: the run ends now.
        ``window_s``: the epoch's validation time per sample, which then prices the final
        validation's windows.
        """
        if window_s is not None and window_s > 0:
            self.window_s = window_s
        refit = self.refit(now, done)
        if refit is None:   # not fitted after the probe yet
            return
        fitted, all_in, final = refit
        if fitted_before is not None and done >= fitted_before and fitted > done:
            return   # the schedule has ended: a few more steps would only add tiny epochs
        total = self._fit(fitted)
        if total != fitted_before:
            self._report(
                f"time budget: re-fitted to {total} iterations ({all_in:.2f} s per iteration "
                f"with validation and checkpoints; {final:.0f} s kept for the final validation)")

    def epoch_seconds(self, epoch_s: float) -> float:
        """The longest epoch of a budget run: ``epoch_s`` (``RunConfig.epoch_minutes``), or
        less, so that the training part of the budget (all but the final validation) holds
        a validation point for every ``epoch_s`` of the whole budget: a 25-minute budget with
        3-minute intervals has 9 of them, not 7 (the last 3 minutes validate the fold)."""
        points = max(1, math.ceil(self.total_s / epoch_s - 1e-9))
        training = self.total_s - self.final_s
        return min(epoch_s, max(MIN_EPOCH_SECONDS, training / points))

    def step_seconds(self) -> float:
        """Median wall time of the recent steps (the first one pays for start-up)."""
        return _median_gap(list(self._step_times)[1:])

    def fit(self, now: float, done: int, iterations_per_epoch: int,
            val_iterations: int) -> tuple[int, float, float]:
        """The first fit after the probe: ``(total iterations, s per iteration, final s)``."""
        per_iteration = self.step_seconds()
        final = self.final_s = self.final_validation(per_iteration, self.window_s)
        self.fit_pending = False
        total = fitted_iterations(self.total_s, self.total_s - self.left(now), done,
                                  per_iteration, iterations_per_epoch, val_iterations, final)
        return total, per_iteration, final

    def refit(self, now: float, done: int) -> tuple[int, float, float] | None:
        """At an epoch's end: ``(total, all-in s per iteration, final s)`` from what an
        iteration has really cost since this invocation's first step (validation,
        checkpoints and any slow-down included); ``None`` before the first fit."""
        if self.fit_pending or self._rate_origin is None:
            return None
        origin_time, origin_done = self._rate_origin
        if done <= origin_done:
            return None
        all_in = (now - origin_time) / (done - origin_done)
        final = self.final_s = self.final_validation(self.step_seconds(), self.window_s)
        total = refitted_iterations(self.total_s, self.total_s - self.left(now), done,
                                    all_in, final)
        return total, all_in, final


class EpochClock:
    """Ends an epoch early so that validation points and checkpoints come every
    ``limit_s`` seconds at the latest (``RunConfig.epoch_minutes``).

    After each step :meth:`should_end` projects the epoch's length if it took one more step:
    the time so far, one step (the median of the recent ones), the validation batches of an
    epoch that long (:meth:`validation_batches`, at the last measured cost per batch, else
    :data:`FORWARD_SHARE` of a step) and the rest of the last epoch's end (log, plot,
    checkpoints, re-fit: the time from its last step to the next epoch's start, less its
    validation). A 5 % margin absorbs the noise of a busy machine.
    """

    #: Share of ``limit_s`` the projection may reach.
    SAFETY = 0.95

    def __init__(self, limit_s: float, val_iterations: int, iterations_per_epoch: int,
                 clock: Callable[[], float]) -> None:
        self.limit_s = float(limit_s)
        self.val_iterations = int(val_iterations)
        self.iterations_per_epoch = int(iterations_per_epoch)
        self.clock = clock
        self.started = clock()
        self._last = self.started
        self._steps: deque[float] = deque(maxlen=9)
        #: Measured seconds per validation batch (``None`` until measured) and of the rest
        #: of an epoch's end (log, plot, checkpoints).
        self.val_batch_s: float | None = None
        self.fixed_s: float = 2 * CHECKPOINT_SECONDS
        self._val_s = 0.0
        self._last_step: float | None = None   # of the epoch that just ended

    def start(self, now: float) -> None:
        """An epoch (or the rest of one, after a resume) starts at ``now``."""
        if self._last_step is not None:   # the whole end of the last epoch, measured
            self.fixed_s = max(self.fixed_s, now - self._last_step - self._val_s)
            self._last_step = None
        self.started = self._last = now

    def step(self, now: float) -> None:
        self._steps.append(now - self._last)
        self._last = now

    def validation_batches(self, iterations: int) -> int:
        """Validation batches after an epoch of ``iterations``: ``val_iterations`` for a full
        epoch, the same share for a shorter one, at least one (0 stays 0)."""
        if self.val_iterations <= 0:
            return 0
        share = math.ceil(self.val_iterations * iterations / self.iterations_per_epoch)
        return max(1, min(self.val_iterations, share))

    def measured(self, val_batches: int, val_s: float, record_s: float) -> None:
        """What the epoch that just ended spent on validation and on its log, plot and
        checkpoints (the next :meth:`start` adds what else its end cost)."""
        if val_batches > 0:
            self.val_batch_s = val_s / val_batches
        self.fixed_s, self._val_s, self._last_step = record_s, val_s, self._last

    def should_end(self, now: float, iterations: int) -> bool:
        """Whether the epoch, ``iterations`` long so far, must end now."""
        if not self._steps or not math.isfinite(self.limit_s):
            return False
        steps = sorted(self._steps)
        step = steps[len(steps) // 2]
        per_batch = FORWARD_SHARE * step if self.val_batch_s is None else self.val_batch_s
        projected = (now - self.started + step + self.fixed_s
                     + self.validation_batches(iterations + 1) * per_batch)
        return projected > self.SAFETY * self.limit_s


__all__ = ["EpochClock", "TimeBudget", "budget_problem",
           "cpu_budget_batch", "final_validation_seconds", "fitted_iterations",
           "minimum_budget_minutes", "refitted_iterations", "validation_windows",
           "windows_per_case"]
