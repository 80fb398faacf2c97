"""Fitting a training run to a wall-clock budget (``nnseg train --time-budget MINUTES``).

After ``RunConfig.budget_probe_iterations`` timed iterations the trainer knows what an
iteration costs here; :func:`fitted_iterations` turns the rest of the budget into a number of
iterations, after reserving what else the run will spend: each epoch's validation batches
and checkpoints, and the full-image validation of the fold at the end
(:func:`final_validation_seconds`). The schedule is then fitted to that number
(:meth:`NNSegLib.training.schedule.Schedule.fit_iterations`), so its decay or final low-lr
phase ends when the budget does, instead of being cut off in the middle.
"""

from __future__ import annotations

import math
from typing import Sequence

#: A forward pass (no augmentation, no backward) costs about this share of a training step.
FORWARD_SHARE = 0.4
#: Seconds per saved checkpoint (latest, sometimes best), a generous CPU figure.
CHECKPOINT_SECONDS = 1.0
#: Seconds per validation case besides the network (reading, resampling, writing).
CASE_OVERHEAD_SECONDS = 0.5


def windows_per_case(shape: Sequence[int], patch: Sequence[int], step: float = 0.5) -> int:
    """Sliding-window positions for an image of ``shape`` (the plan's median shape)."""
    n = 1
    for s, p in zip(shape, patch):
        n *= math.ceil((max(s, p) - p) / max(1.0, p * step)) + 1
    return n


def final_validation_seconds(num_cases: int, shape: Sequence[int], patch: Sequence[int],
                             batch_size: int, seconds_per_iteration: float,
                             mirrors: int) -> float:
    """Estimated wall time of segmenting ``num_cases`` validation cases at the end."""
    per_window = FORWARD_SHARE * seconds_per_iteration / max(1, batch_size)
    windows = windows_per_case(shape, patch)
    return num_cases * (windows * mirrors * per_window + CASE_OVERHEAD_SECONDS)


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


__all__ = ["final_validation_seconds", "fitted_iterations", "refitted_iterations",
           "windows_per_case"]
