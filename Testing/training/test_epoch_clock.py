"""Epochs of bounded wall time (RunConfig.epoch_minutes) and the budget across a resume."""

from __future__ import annotations

import json
import math
from itertools import accumulate

import pytest
import torch
from conftest import tiny_plans, write_preprocessed
from test_budget import FakeClock

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.training import trainer as trainer_module
from NNSegLib.training.budget import EpochClock, TimeBudget, budget_problem
from NNSegLib.training.train import train_fold
from NNSegLib.util.model_folder import CHECKPOINT_FINAL, CHECKPOINT_LATEST
from NNSegLib.util.progress import Cancelled, CancelToken, Progress
from NNSegLib.util.workspace import Workspace


def test_validation_batches_follow_the_epoch_length():
    clock = EpochClock(180.0, 50, 250, lambda: 0.0)
    assert [clock.validation_batches(n) for n in (250, 100, 25, 1)] == [50, 20, 5, 1]
    assert EpochClock(180.0, 0, 250, lambda: 0.0).validation_batches(100) == 0


def _steps_until_end(clock: EpochClock, step_s: float, t: float = 0.0) -> tuple[int, float]:
    n = 0
    clock.start(t)
    while True:
        t += step_s
        n += 1
        clock.step(t)
        if clock.should_end(t, n):
            return n, t


def test_epoch_clock_ends_the_epoch_so_validation_and_checkpoint_fit():
    # 60 s; steps of 2 s; before any measurement a validation batch is estimated at 0.4 of
    # a step and the checkpoints at 2 s. After n steps it ends when one more step would
    # project past 57 s: 2(n + 1) + 2 + 0.8 ceil((n + 1) / 5) > 57, i.e. at n = 25.
    clock = EpochClock(60.0, 50, 250, lambda: 0.0)
    n, t = _steps_until_end(clock, 2.0)
    assert n == 25
    assert 2.0 * n + 0.8 * clock.validation_batches(n) + 2.0 <= 60.0
    # Measured: 5 validation batches took 10 s, log and checkpoints 3 s, and the whole end
    # of the epoch 15 s (a re-fit, a slow disk): 5 s besides validation.
    clock.measured(5, 10.0, 3.0)
    n, t = _steps_until_end(clock, 2.0, t + 15.0)
    assert clock.fixed_s == pytest.approx(5.0)
    # 2(n + 1) + 5 + 2 ceil((n + 1) / 5) > 57 first at n = 21
    assert n == 21 and 2.0 * n + 2.0 * clock.validation_batches(n) + 5.0 <= 60.0
    assert not EpochClock(math.inf, 50, 250, lambda: 0.0).should_end(1e9, 10)


def test_time_budget_state_resumes_with_what_was_left():
    t = [100.0]
    budget = TimeBudget(600.0, 590.0, 3, lambda s, w: 0.0, lambda: t[0])   # 10 s of set-up
    t[0] += 100.0
    assert budget.left() == pytest.approx(490.0)
    state = budget.state_dict()
    assert state == {"total_s": 600.0, "spent_s": pytest.approx(110.0)}
    assert TimeBudget.left_after_resume(state) == (600.0, pytest.approx(490.0))
    assert TimeBudget.left_after_resume(None) is None
    assert TimeBudget.left_after_resume({"total_s": 60.0, "spent_s": 75.0}) == (60.0, 0.0)


def test_time_budget_fits_after_the_probe_and_refits_at_epoch_ends():
    t = [0.0]
    fits, messages = [], []
    windows = []

    def final(step_s, window_s):   # 10 s, or 40 windows at the measured cost
        windows.append(window_s)
        return 10.0 if window_s is None else 40 * window_s

    budget = TimeBudget(100.0, 100.0, 3, final, lambda: t[0], fit=lambda n:
                        fits.append(n) or n, report=messages.append, epoch=(50, 0))
    for done in range(1, 4):   # the first step pays for start-up, then the probe
        t[0] += 2.0
        budget.after_step(t[0], done)
    assert not fits
    t[0] += 2.0
    budget.after_step(t[0], 4)   # 8 s gone, 10 s kept: 82 s at 2 s (+ 1 s / 50 checkpoint)
    assert fits == [4 + int(82 // (2.0 + 1.0 / 50))]
    assert "2.00 s per iteration here" in messages[0]
    t[0] += 30.0   # an epoch end that cost a lot: all-in 38 s / 3 iterations since the first
    budget.after_epoch(t[0], 4, fits[0])
    assert fits[1] == 4 + int((100.0 - 38.0 - 10.0) // (36.0 / 3))
    assert "re-fitted" in messages[1]
    budget.after_epoch(t[0], 4, fits[1], window_s=0.05)   # measured: 40 × 0.05 s = 2 s
    assert windows[-1] == 0.05 and fits[2] == 4 + int((100.0 - 38.0 - 2.0) // (36.0 / 3))


@pytest.mark.parametrize("minutes", [0.0, -1.0, math.nan, -math.inf, 2.5])
def test_budget_problem_names_the_option_and_the_minimum(minutes):
    text = budget_problem(minutes, 3.0)
    assert text is not None and text.startswith(f"--time-budget {minutes:g}: must be at least 3 "
                                                "minutes, one validation interval")
    assert budget_problem(3.0, 3.0) is None and budget_problem(0.5, 0.25) is None


def _work(tmp_path):
    ws = Workspace(tmp_path / "work")
    tiny_plans(recipe="v2").save(ws.plans)
    write_preprocessed(ws.preprocessed("3d_fullres"), num_cases=6)
    return ws


FAST = {"iterations_per_epoch": 20, "val_iterations": 2, "num_threads": 1, "device": "cpu",
        "budget_probe_iterations": 4, "final_validation": False}


def _saves(monkeypatch, clock):
    """Record the fake time of every checkpoint_latest.pt written."""
    times = []
    save = ckpt.save_checkpoint

    def recording(path, state):
        if path.name == CHECKPOINT_LATEST:
            times.append(clock.now)
        return save(path, state)

    monkeypatch.setattr(ckpt, "save_checkpoint", recording)
    return times


def _log(ws):
    return [json.loads(line) for line in
            (ws.run_dir("3d_fullres", 0) / "log.jsonl").read_text().splitlines()]


def test_budget_run_checkpoints_at_least_every_epoch_minutes(tmp_path, monkeypatch):
    ws = _work(tmp_path)
    clock = FakeClock(tick=0.5)
    monkeypatch.setattr(trainer_module, "time", clock)
    saves = _saves(monkeypatch, clock)
    # 1 minute; epochs of at most 0.1 min = 6 s (12 clock ticks), far below 20 iterations
    result = train_fold(None, ws.root, "3d_fullres", 0, time_budget_minutes=1.0,
                        overrides={**FAST, "epoch_minutes": 0.1, "max_epochs": 1000})
    log = _log(ws)
    assert "fitted to the time budget" in result.stop_reason   # the schedule ended it
    gaps = [b - a for a, b in zip([0.0, *saves[:-1]], saves)]
    assert max(gaps) <= 6.0 and len(log) >= 9, (gaps, len(log))
    assert all(r["iterations"] < 20 for r in log)   # every epoch ended by the clock
    assert [r["step"] for r in log] == list(accumulate(r["iterations"] for r in log))
    assert all(r["val_batches"] == 1 for r in log)   # 2 × (under 20 of 20), at least 1
    assert log[-1]["step"] == log[-1]["fitted_iterations"]
    assert log[-1]["lr"] < 1e-2 * 0.3 and clock.now <= 60.0 + 3 * 0.5


def test_continue_keeps_what_was_left_of_the_budget(tmp_path, monkeypatch):
    ws = _work(tmp_path)
    clock = FakeClock(tick=0.5)
    monkeypatch.setattr(trainer_module, "time", clock)
    saves = _saves(monkeypatch, clock)
    overrides = {**FAST, "epoch_minutes": 0.1, "max_epochs": 1000}
    token = CancelToken()
    steps = []

    def cancel_late(event):   # a crash after the 30th iteration of the run
        if event["event"] == "progress" and "loss" in event:
            steps.append(1)
            if len(steps) == 30:
                token.cancel("test")

    with pytest.raises(Cancelled):
        train_fold(None, ws.root, "3d_fullres", 0, time_budget_minutes=1.0,
                   overrides=overrides, progress=Progress(token, [cancel_late]))
    saved = ckpt.load_checkpoint(ws.run_dir("3d_fullres", 0) / CHECKPOINT_LATEST)
    spent = saved["time_budget"]["spent_s"]
    assert saved["time_budget"]["total_s"] == 60.0 and 10.0 < spent < 30.0
    clock.now += 1000.0   # the machine was off for a while: that time is not counted
    resumed_at = clock.now
    messages = []
    result = train_fold(None, ws.root, "3d_fullres", 0, mode="continue",
                        progress=Progress(listeners=[messages.append]))
    texts = [m["text"] for m in messages if m["event"] == "message"]
    assert any(f"{(60.0 - spent) / 60:.1f} of its 1 minutes were left" in t for t in texts)
    assert any(t.startswith("time budget: ") and "so the run ends after" in t for t in texts)
    assert "fitted to the time budget" in result.stop_reason   # the re-fit ended it
    assert clock.now - resumed_at <= 60.0 - spent + 3 * 0.5   # within what was left
    final = ckpt.load_checkpoint(ws.run_dir("3d_fullres", 0) / CHECKPOINT_FINAL)
    assert final["time_budget"]["spent_s"] <= 60.0 + 3 * 0.5
    assert max(b - a for a, b in zip(saves[:-1], saves) if b - a < 500) <= 6.0
    assert _log(ws)[-1]["lr"] < 1e-2 * 0.3   # the decay still reached its end


def test_where_the_clock_ends_epochs_does_not_change_the_training(tmp_path, monkeypatch):
    """The same iterations in full epochs and in epochs cut by time: the same network."""
    overrides = {**FAST, "max_epochs": 2, "iterations_per_epoch": 10}
    full = _work(tmp_path / "full")
    train_fold(None, full.root, "3d_fullres", 0, overrides={**overrides, "epoch_minutes": 1e3})
    cut = _work(tmp_path / "cut")
    monkeypatch.setattr(trainer_module, "time", FakeClock(tick=0.5))
    train_fold(None, cut.root, "3d_fullres", 0, overrides={**overrides, "epoch_minutes": 0.05})
    assert [r["iterations"] for r in _log(full)] == [10, 10]
    assert len(_log(cut)) > 2 and sum(r["iterations"] for r in _log(cut)) == 20
    a = ckpt.load_checkpoint(full.run_dir("3d_fullres", 0) / CHECKPOINT_FINAL)["network"]
    b = ckpt.load_checkpoint(cut.run_dir("3d_fullres", 0) / CHECKPOINT_FINAL)["network"]
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
