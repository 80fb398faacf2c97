from __future__ import annotations

import math

import pytest

from NNSegLib.training.run_config import RunConfig, parse_assignment
from NNSegLib.training.schedule import EMA, PlateauSchedule, PolySchedule, build_schedule
from NNSegLib.util.errors import NNSegError


def end(schedule, epoch, t, v):
    """End full epoch ``epoch`` (0-based): the run has done ``(epoch + 1) × ipe`` iterations."""
    return schedule.end_epoch((epoch + 1) * schedule.config.iterations_per_epoch, t, v)


def run(schedule, train, val):
    """Feed loss curves; return (lrs used per epoch, stop epoch or None, reason)."""
    lrs = []
    for epoch, (t, v) in enumerate(zip(train, val)):
        lrs.append(schedule.lr_at(epoch * schedule.config.iterations_per_epoch))
        decision = end(schedule, epoch, t, v)
        if decision.stop:
            return lrs, epoch, decision.reason
    return lrs, None, ""


def test_ema():
    e = EMA(0.9)
    assert e.update(1.0) == 1.0
    assert e.update(0.0) == pytest.approx(0.9)
    assert e.update(0.0) == pytest.approx(0.81)


def test_run_config_round_trip_and_recipes(tmp_path):
    v2 = RunConfig.for_recipe("v2", max_epochs=5, patch_size=(8, 8, 8))
    assert (v2.optimizer, v2.lr, v2.lr_schedule, v2.momentum) == ("sgd", 1e-2, "poly", 0.99)
    v2.save(tmp_path / "rc.json")
    assert RunConfig.load(tmp_path / "rc.json") == v2
    paper = RunConfig.for_recipe("paper")
    assert (paper.optimizer, paper.lr, paper.lr_schedule) == ("adam", 3e-4, "plateau")
    assert parse_assignment("lr_patience=10") == ("lr_patience", 10)
    assert parse_assignment("patch-size=[8,16]") == ("patch_size", (8, 16))
    with pytest.raises(NNSegError, match="optimizer"):
        RunConfig(optimizer="rmsprop").validated()
    with pytest.raises(NNSegError):
        parse_assignment("nope=1")


def test_plateau_reduces_lr_after_patience():
    cfg = RunConfig(loss_ema_alpha=0.0, lr_patience=30, stop_patience=60, lr=1e-3)
    s = PlateauSchedule(cfg)
    # Improves by 0.01/epoch for 10 epochs, then flat: lr drops at epoch 9 + 30 = 39.
    train = [1.0 - 0.01 * min(e, 9) for e in range(50)]
    val = [1.0 - 0.01 * e for e in range(50)]  # keeps improving: no stop
    lrs, stop, _ = run(s, train, val)
    assert stop is None
    assert lrs[39] == pytest.approx(1e-3) and lrs[40] == pytest.approx(2e-4)
    assert lrs[49] == pytest.approx(2e-4)


def test_plateau_small_improvements_do_not_count():
    cfg = RunConfig(loss_ema_alpha=0.0, lr_patience=5, stop_patience=1000, lr=1e-3)
    s = PlateauSchedule(cfg)
    train = [1.0 - 0.001 * e for e in range(12)]  # 1e-3 < 5e-3 per epoch
    lrs, _, _ = run(s, train, [1.0 - 0.01 * e for e in range(12)])
    # best fixed at epoch 0 (5 epochs accumulate 5e-3, not strictly more than threshold)
    assert lrs[5] == pytest.approx(1e-3)
    assert lrs[6] == pytest.approx(2e-4)
    assert lrs[11] == pytest.approx(2e-4)  # window restarted at epoch 5
    s2 = PlateauSchedule(cfg)
    lrs2, _, _ = run(s2, train[:7] + [0.5] * 5, [0.0] * 12)
    assert lrs2[7] == pytest.approx(2e-4) and lrs2[11] == pytest.approx(2e-4)


def test_plateau_stops_on_validation_plateau():
    cfg = RunConfig(loss_ema_alpha=0.0, stop_patience=60, lr_patience=1000)
    s = PlateauSchedule(cfg)
    train = [1.0 - 0.01 * e for e in range(200)]
    val = [1.0 - 0.02 * min(e, 20) for e in range(200)]
    _, stop, reason = run(s, train, val)
    assert stop == 80 and "validation" in reason


def test_plateau_stops_when_lr_too_small():
    cfg = RunConfig(loss_ema_alpha=0.0, lr_patience=2, stop_patience=10_000, lr=1e-4,
                    min_lr=1e-6)
    s = PlateauSchedule(cfg)
    lrs, stop, reason = run(s, [1.0] * 100, [1.0 - 0.01 * e for e in range(100)])
    # 1e-4 * 0.2**k < 1e-6 first at k=3; reductions at epochs 2, 4, 6
    assert stop == 6 and "learning rate" in reason


def test_plateau_ema_smooths_noise():
    cfg = RunConfig(loss_ema_alpha=0.93, lr_patience=30, stop_patience=60)
    s = PlateauSchedule(cfg)
    noisy = [0.5 + (0.2 if e % 2 else -0.2) for e in range(40)]
    run(s, noisy, noisy)
    assert abs(s.train_ema.value - 0.5) < 0.02


def test_max_epochs_and_state_round_trip():
    cfg = RunConfig(loss_ema_alpha=0.5, max_epochs=10)
    s = PlateauSchedule(cfg)
    _, stop, reason = run(s, [1.0 - 0.1 * e for e in range(20)], [1.0 - 0.1 * e for e in range(20)])
    assert stop == 9 and "max_epochs" in reason
    t = PlateauSchedule(cfg)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    t.extend(10 * 250, 5)
    assert t.max_epochs == 15 and not end(t, 10, 0.0, 0.0).stop


def test_extend_after_early_stop_restarts_patience():
    cfg = RunConfig(loss_ema_alpha=0.0, stop_patience=3, lr_patience=100)
    s = PlateauSchedule(cfg)
    _, stop, _ = run(s, [1.0] * 10, [1.0] * 10)
    assert stop == 3
    s.extend(4 * 250, 3)
    assert [end(s, e, 1.0, 1.0).stop for e in (4, 5, 6)] == [False, False, True]


def test_poly():
    cfg = RunConfig.for_recipe("v2", max_epochs=100)
    s = build_schedule(cfg)
    assert isinstance(s, PolySchedule)
    assert s.lr_at_start(0) == pytest.approx(1e-2)
    assert s.lr_at_start(50) == pytest.approx(1e-2 * 0.5 ** 0.9)
    assert s.lr_at_start(99) == pytest.approx(1e-2 * 0.01 ** 0.9)
    assert not end(s, 98, 1.0, 1.0).stop and end(s, 99, 1.0, 1.0).stop
    assert s.lr_at(50 * 250 + 249) == s.lr_at_start(50)   # not fitted: per (full) epoch
    assert math.isclose(build_schedule(RunConfig()).lr_at_start(0), 3e-4)


def test_fitted_poly_decays_per_iteration_to_the_budget_end():
    cfg = RunConfig.for_recipe("v2", max_epochs=1000, iterations_per_epoch=10)
    s = build_schedule(cfg)
    assert s.lr_at(37) == s.lr_at_start(3)   # not fitted: per epoch, like nnU-Net
    s.fit_iterations(25)
    assert s.max_epochs == 3 and s.total_iterations == 25 and s.end_step == 25
    assert [s.epoch_iterations(10 * e) for e in range(4)] == [10, 10, 5, 0]
    assert s.epoch_iterations(17) == 8   # an epoch after one that ended early by time
    assert s.lr_at(0) == pytest.approx(1e-2)
    assert s.lr_at(12) == pytest.approx(1e-2 * (1 - 12 / 25) ** 0.9)
    assert s.lr_at(24) == pytest.approx(1e-2 * (1 / 25) ** 0.9)
    assert not s.end_epoch(20, 1.0, 1.0).stop and s.end_epoch(25, 1.0, 1.0).stop
    assert not s.end_epoch(24, 1.0, 1.0, 0.4).stop   # where epochs end does not matter
    again = build_schedule(cfg)
    again.load_state_dict(s.state_dict())
    assert again.total_iterations == 25 and again.lr_at(12) == s.lr_at(12)
    again.extend(25, 5)   # --extend leaves the budget's fit behind: 3 begun epochs + 5
    assert again.total_iterations is None and again.max_epochs == 8


def test_fitted_plateau_ends_with_a_linear_low_lr_phase():
    cfg = RunConfig.for_recipe("paper", iterations_per_epoch=10, final_phase_fraction=0.2)
    s = build_schedule(cfg)
    s.fit_iterations(100)
    assert s.lr_at(0) == pytest.approx(3e-4) and s.lr_at(79) == pytest.approx(3e-4)
    assert s.lr_at(80) == pytest.approx(3e-4)          # 20 left of 100: phase starts
    assert s.lr_at(90) == pytest.approx(3e-4 * 0.5)    # 10 left
    assert s.lr_at(99) == pytest.approx(3e-4 * 0.05)   # 1 left


def test_ema_weighted_updates_compose():
    whole, halves = EMA(0.8), EMA(0.8)
    whole.update(1.0)
    halves.update(1.0)
    whole.update(0.0)
    halves.update(0.0, 0.5)
    halves.update(0.0, 0.5)
    assert whole.value == pytest.approx(0.8) and halves.value == pytest.approx(0.8)


def test_plateau_patience_counts_iterations_not_epochs():
    """Epochs ended early by time: the patience is the same number of iterations."""
    cfg = RunConfig(loss_ema_alpha=0.0, lr_patience=3, stop_patience=100, lr=1e-3,
                    iterations_per_epoch=10)

    def first_drop(epoch_length):
        s = PlateauSchedule(cfg)
        for step in range(epoch_length, 100, epoch_length):
            loss = 2.0 if step <= 10 else 1.0   # the last improvement: the epoch after step 10
            if s.end_epoch(step, loss, 1.0, epoch_length / 10).lr_changed:
                return step
        return None

    # 3 epochs = 30 iterations after the last improvement (step 20 and step 15), not 3 records
    assert first_drop(10) == 20 + 30 and first_drop(5) == 15 + 30
