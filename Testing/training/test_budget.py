"""NNSegLib.training.budget: how many iterations fit a wall-clock budget."""

from __future__ import annotations

import itertools

import pytest
from conftest import tiny_plans, write_preprocessed

from NNSegLib.training import trainer as trainer_module
from NNSegLib.training.budget import final_validation_seconds, fitted_iterations, windows_per_case
from NNSegLib.training.train import train_fold
from NNSegLib.util.progress import Progress
from NNSegLib.util.workspace import Workspace


def test_windows_and_final_validation_estimate():
    assert windows_per_case((36, 50, 35), (40, 56, 40)) == 1
    assert windows_per_case((100, 100), (40, 40)) == 4 * 4   # step 20: 0, 20, 40, 60
    # 42 cases × 1 window × 8 mirrors × 0.4 · 2.4 s / 7 + 0.5 s each
    assert final_validation_seconds(42, (36, 50, 35), (40, 56, 40), 7, 2.4, 8) == (
        pytest.approx(42 * (8 * 0.4 * 2.4 / 7 + 0.5)))


def test_fitted_iterations_reserve_validation_and_checkpoints():
    # 600 s budget, 60 s gone, 10 done, 2 s/it, 50 it/epoch, 5 val batches, 100 s final
    per_it = 2.0 + (0.4 * 2.0 * 5 + 1.0) / 50
    assert fitted_iterations(600, 60, 10, 2.0, 50, 5, 100) == 10 + int(440 // per_it)
    assert fitted_iterations(100, 99, 7, 2.0, 50, 5, 100) == 8   # over budget: one more


class FakeClock:
    """``time.monotonic`` that moves 0.5 s per call: every iteration costs the same."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def monotonic(self) -> float:
        return 0.5 * next(self._ticks)

    def __getattr__(self, name):
        import time

        return getattr(time, name)


def test_budget_run_ends_with_the_fitted_schedule(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "work")
    tiny_plans(recipe="v2").save(ws.plans)
    write_preprocessed(ws.preprocessed("3d_fullres"), num_cases=6)
    monkeypatch.setattr(trainer_module, "time", FakeClock())
    messages = []
    progress = Progress(listeners=[lambda e: messages.append(e)])
    result = train_fold(None, ws.root, "3d_fullres", 0, time_budget_minutes=0.5,
                        progress=progress,
                        overrides={"max_epochs": 1000, "iterations_per_epoch": 6,
                                   "val_iterations": 1, "num_threads": 1, "device": "cpu",
                                   "budget_probe_iterations": 4, "final_validation": False})
    fitted = [m["text"] for m in messages if m["event"] == "message"
              and m["text"].startswith("time budget:")]
    assert len(fitted) == 1, fitted
    assert "max_epochs" in result.stop_reason   # the schedule ended, not the hard stop
    iterations = sum(1 for m in messages if m["event"] == "progress" and "loss" in m)
    assert f"ends after {iterations} iterations" in fitted[0]
    assert 10 <= iterations <= 40
    lrs = [record["lr"] for record in _log(ws)]   # the lr of each epoch's last iteration
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-2 * 0.3   # decays toward 0


def _log(ws):
    import json

    return [json.loads(line) for line in
            (ws.run_dir("3d_fullres", 0) / "log.jsonl").read_text().splitlines()]
