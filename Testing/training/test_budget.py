"""NNSegLib.training.budget: how many iterations fit a wall-clock budget."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import tiny_plans, write_preprocessed

from NNSegLib.training import trainer as trainer_module
from NNSegLib.training.budget import (
    TimeBudget,
    cpu_budget_batch,
    final_validation_seconds,
    fitted_iterations,
    refitted_iterations,
    validation_windows,
    windows_per_case,
)
from NNSegLib.training.train import train_fold
from NNSegLib.util.progress import Progress
from NNSegLib.util.workspace import Workspace


def test_windows_and_final_validation_estimate(tmp_path):
    assert windows_per_case((36, 50, 35), (40, 56, 40)) == 1
    assert windows_per_case((100, 100), (40, 40)) == 4 * 4   # step 20: 0, 20, 40, 60
    assert windows_per_case((12, 100, 100), (40, 40)) == 12 * 4 * 4   # 2D: every slice
    # 42 windows (one per case) × 8 mirrors × 0.4 · 2.4 s / 7, + 0.5 s per case
    assert final_validation_seconds(42, 42, 7, 2.4, 8) == (
        pytest.approx(42 * (8 * 0.4 * 2.4 / 7 + 0.5)))
    # a measured forward pass per sample replaces the 0.4 share of a step
    assert final_validation_seconds(42, 42, 7, 2.4, 8, 0.1) == pytest.approx(42 * (0.8 + 0.5))
    # The cases' own shapes (file headers), not the median: 1.5 patches per axis need 8
    np.save(tmp_path / "a.npy", np.zeros((1, 36, 50, 35), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((1, 60, 84, 60), np.float32))   # 1.5 patches
    assert validation_windows(tmp_path, ["a", "b"], (40, 56, 40), (36, 50, 35)) == 1 + 8
    assert validation_windows(tmp_path, ["a", "gone"], (40, 56, 40), (36, 50, 35)) == 2


def test_fitted_iterations_reserve_validation_and_checkpoints():
    # 600 s budget, 60 s gone, 10 done, 2 s/it, 50 it/epoch, 5 val batches, 100 s final
    per_it = 2.0 + (0.4 * 2.0 * 5 + 1.0) / 50
    assert fitted_iterations(600, 60, 10, 2.0, 50, 5, 100) == 10 + int(440 // per_it)
    assert fitted_iterations(100, 99, 7, 2.0, 50, 5, 100) == 8   # over budget: one more


def test_refitted_iterations_use_the_all_in_cost():
    # 600 s budget, 300 s gone, 100 done, 2.5 s/it all in, 50 s final: 100 + 250 // 2.5
    assert refitted_iterations(600, 300, 100, 2.5, 50) == 200
    assert refitted_iterations(600, 599, 100, 2.5, 0) == 100   # no time left: end now


class FakeClock:
    """``time.monotonic`` that moves ``tick`` s per call (``slow_tick`` after ``slow_after``)."""

    def __init__(self, tick: float = 0.5, slow_after: int | None = None,
                 slow_tick: float = 0.5) -> None:
        self._calls = itertools.count()
        self.now = 0.0
        self.tick, self.slow_after, self.slow_tick = tick, slow_after, slow_tick

    def monotonic(self) -> float:
        call = next(self._calls)
        slow = self.slow_after is not None and call >= self.slow_after
        self.now += self.slow_tick if slow else self.tick
        return self.now

    def __getattr__(self, name):
        import time

        return getattr(time, name)


def _budget_run(tmp_path, monkeypatch, clock, plan_batch=2, **overrides):
    ws = Workspace(tmp_path / "work")
    tiny_plans(recipe="v2", batch_size=plan_batch).save(ws.plans)
    write_preprocessed(ws.preprocessed("3d_fullres"), num_cases=6)
    monkeypatch.setattr(trainer_module, "time", clock)
    messages = []
    progress = Progress(listeners=[lambda e: messages.append(e)])
    result = train_fold(None, ws.root, "3d_fullres", 0, time_budget_minutes=0.5,
                        progress=progress,
                        overrides={"max_epochs": 1000, "iterations_per_epoch": 6,
                                   "val_iterations": 1, "num_threads": 1, "device": "cpu",
                                   "budget_probe_iterations": 4, "final_validation": False,
                                   "epoch_minutes": 0.5, **overrides})
    texts = [m["text"] for m in messages if m["event"] == "message"
             and m["text"].startswith("time budget:")]
    iterations = sum(1 for m in messages if m["event"] == "progress" and "loss" in m)
    return ws, result, texts, iterations


def test_budget_run_ends_with_the_fitted_schedule(tmp_path, monkeypatch):
    ws, result, texts, iterations = _budget_run(tmp_path, monkeypatch, FakeClock())
    assert "so the run ends after" in texts[0]   # the first fit, after the probe
    assert "fitted to the time budget" in result.stop_reason   # not the hard stop
    last = _log(ws)[-1]["fitted_iterations"]   # re-fitted after every epoch
    # 30 s at 0.5 s per step (one clock read), less each epoch's validation and checks
    assert iterations == last and 20 <= iterations <= 60
    lrs = [record["lr"] for record in _log(ws)]   # the lr of each epoch's last iteration
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-2 * 0.3   # decays toward 0


def test_budget_refit_keeps_a_run_that_slows_down_within_budget(tmp_path, monkeypatch):
    # Steps cost twice as much once the probe is over: the first fit is far too long.
    clock = FakeClock(tick=0.3, slow_after=40, slow_tick=0.6)
    ws, result, texts, iterations = _budget_run(tmp_path, monkeypatch, clock)
    first = int(texts[0].split("ends after ")[1].split()[0])
    assert any("re-fitted" in t for t in texts[1:]), texts
    assert iterations < first   # the schedule was shortened ...
    assert "fitted to the time budget" in result.stop_reason   # ... not the hard stop
    assert iterations == _log(ws)[-1]["fitted_iterations"]
    assert clock.now <= 30.0 + 3 * 0.6   # within the budget (a few clock reads of slack)
    assert _log(ws)[-1]["lr"] < 1e-2 * 0.3   # the decay still reached its end


def _log(ws):
    import json

    return [json.loads(line) for line in
            (ws.run_dir("3d_fullres", 0) / "log.jsonl").read_text().splitlines()]


def test_cpu_budget_batch_only_for_3d_runs_on_a_cpu():
    from NNSegLib.planning.cpu_budget import budget_note

    assert cpu_budget_batch(7, 3, "cpu") == 2
    assert cpu_budget_batch(2, 3, "cpu") is None   # already the floor
    assert cpu_budget_batch(7, 3, "cuda") is None and cpu_budget_batch(7, 3, "mps") is None
    assert cpu_budget_batch(40, 2, "cpu") is None   # 2D batches stay as planned
    plans = tiny_plans(batch_size=2).configurations
    assert budget_note(plans) is None   # nothing to change: no line in the plan table


def test_a_cpu_budget_run_trains_batch_2_and_keeps_it(tmp_path, monkeypatch):
    from NNSegLib.training.run_config import RunConfig

    seen = []
    real = trainer_module.Trainer.__init__

    def spy(self, setup, *args, **kwargs):
        seen.append(setup.config.batch_size)
        real(self, setup, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", spy)
    ws, _result, _texts, _its = _budget_run(tmp_path, monkeypatch, FakeClock(), plan_batch=4)
    assert seen == [2]
    run = ws.run("3d_fullres", 0)
    assert RunConfig.load(run.run_config).batch_size == 2   # --continue trains the same
    seen.clear()   # --batch-size wins over the budget's choice
    _budget_run(tmp_path / "b", monkeypatch, FakeClock(), plan_batch=4, batch_size=3)
    assert seen == [3]


def test_budget_epochs_leave_room_for_a_point_every_interval():
    budget = TimeBudget(1500.0, 1500.0, 8, lambda per_it, window: 180.0, lambda: 0.0)
    assert budget.epoch_seconds(180.0) == pytest.approx(1500.0 / 9)   # before the first fit
    budget.final_s = 180.0   # the fit's estimate of the final validation
    # 25 minutes hold 9 intervals of 3 minutes: 9 epochs in the 1320 s before the final one
    assert budget.epoch_seconds(180.0) == pytest.approx(1320.0 / 9)
    long = TimeBudget(3600.0, 3600.0, 8, lambda per_it, window: 0.0, lambda: 0.0)
    assert long.epoch_seconds(180.0) == 180.0   # nothing reserved: 20 intervals of 3 minutes
    tiny = TimeBudget(180.0, 180.0, 8, lambda per_it, window: 0.0, lambda: 0.0)
    tiny.final_s = 170.0
    assert tiny.epoch_seconds(180.0) == 30.0   # never shorter than MIN_EPOCH_SECONDS


def test_an_ended_schedule_is_not_extended_by_a_few_steps():
    """A refit at the fitted end that finds time for a few more steps leaves the run ended
    (it would otherwise add tiny epochs at the lowest lr: seen on the clinician profile)."""
    now = [0.0]
    fits = []
    budget = TimeBudget(1000.0, 1000.0, 2, lambda per_it, window: 0.0, lambda: now[0],
                        fit=lambda total: fits.append(total) or total)
    for step in range(1, 5):   # the probe: 1 s per step, then the first fit
        now[0] = float(step)
        budget.after_step(now[0], step)
    assert fits and fits[-1] > 4
    now[0] = 990.0   # the schedule's fitted end is reached at 990 s, 10 s are left
    budget.after_epoch(now[0], 990, fitted_before=990)
    assert fits[-1] != 990 + 10 and len(fits) == 1   # not extended: the run ends here
    budget.after_epoch(now[0], 500, fitted_before=990)   # mid-run: re-fitted as before
    assert len(fits) == 2
