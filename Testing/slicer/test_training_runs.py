"""NNSegLib.slicer.training_runs: runs found in a work folder after a restart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

from NNSegLib.slicer.training_runs import (
    RunState,
    chart_records,
    describe_runs,
    find_runs,
    resume_choice,
)


def _run(work: Path, config: str, fold: str, epochs: int, checkpoints=(), max_epochs=1000,
         age: float = 3600.0, stop_reason: str | None = None) -> Path:
    run = work / "results" / config / f"fold_{fold}"
    run.mkdir(parents=True)
    lines = [json.dumps({"epoch": e, "train_loss": 1.0 / (e + 1), "ema_pseudo_dice": 0.1 * e,
                         "epoch_time": 10.0}) for e in range(epochs)]
    (run / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    (run / "run_config.json").write_text(json.dumps({"max_epochs": max_epochs}))
    for name in checkpoints:
        (run / name).write_bytes(b"x")
    if stop_reason:
        (run / "training_summary.json").write_text(json.dumps({"stop_reason": stop_reason}))
    old = time.time() - age
    os.utime(run / "log.jsonl", (old, old))
    return run


def test_states_of_runs_found_in_the_work_folder(tmp_path):
    _run(tmp_path, "3d_fullres", "0", 1000, ["checkpoint_final.pt", "checkpoint_latest.pt"],
         stop_reason="max_epochs")
    _run(tmp_path, "3d_fullres", "1", 12, ["checkpoint_latest.pt"])
    _run(tmp_path, "3d_fullres", "2", 3, [])
    _run(tmp_path, "2d", "0", 5, ["checkpoint_latest.pt"], age=5.0)  # written moments ago
    (tmp_path / "results" / "3d_fullres" / "fold_3").mkdir()        # no log: not listed
    runs = find_runs(tmp_path)
    states = {(r.configuration, r.fold): r.state for r in runs}
    assert states == {("2d", "0"): RunState.RUNNING, ("3d_fullres", "0"): RunState.FINISHED,
                      ("3d_fullres", "1"): RunState.INTERRUPTED,
                      ("3d_fullres", "2"): RunState.NOT_STARTED}
    by_key = {r.key: r for r in runs}
    interrupted = by_key[("3d_fullres", "1")]
    assert interrupted.epochs == 12 and interrupted.max_epochs == 1000
    assert interrupted.can_resume and not by_key[("3d_fullres", "2")].can_resume
    assert not by_key[("3d_fullres", "0")].can_resume
    assert interrupted.describe() == (
        "3d_fullres fold 1: interrupted, epoch 12/1000, loss 0.0833, pseudo Dice 1.100")
    assert by_key[("3d_fullres", "0")].describe().endswith("(max_epochs)")
    assert resume_choice(runs, "3d_fullres") == ["1"] and resume_choice(runs, "2d") == []
    assert [r["epoch"] for r in chart_records(interrupted)] == list(range(12))
    assert describe_runs(runs).count("\n") == 3
    assert describe_runs([]) == "No training runs in this work folder yet."
    assert find_runs(tmp_path / "nowhere") == []


def test_runs_of_a_live_job_are_running_or_queued(tmp_path):
    _run(tmp_path, "3d_lowres", "0", 1000, ["checkpoint_final.pt"])
    _run(tmp_path, "3d_lowres", "1", 40, ["checkpoint_latest.pt"])
    job = SimpleNamespace(folder=tmp_path / "jobs" / "x", current_step=2, steps=[
        ["preprocess", "D"], ["train", "D", "3d_lowres", "0"], ["train", "D", "3d_lowres", "1"],
        ["train", "D", "3d_lowres", "2"]])
    runs = {r.key: r for r in find_runs(tmp_path, [job])}
    assert runs[("3d_lowres", "0")].state is RunState.FINISHED   # an earlier step
    assert runs[("3d_lowres", "1")].state is RunState.RUNNING
    assert runs[("3d_lowres", "1")].job == job.folder
    assert runs[("3d_lowres", "2")].state is RunState.QUEUED      # no folder yet, but listed
    assert not runs[("3d_lowres", "1")].can_resume               # running: nothing to resume


def test_broken_files_do_not_break_the_list(tmp_path):
    run = _run(tmp_path, "3d_fullres", "0", 2, ["checkpoint_latest.pt"])
    (run / "log.jsonl").write_text("{not json\n")
    (run / "run_config.json").write_text("[")
    os.utime(run / "log.jsonl", (time.time() - 3600, time.time() - 3600))
    [found] = find_runs(tmp_path)
    assert found.state is RunState.INTERRUPTED and found.epochs == 0 and found.max_epochs is None
    assert chart_records(found) == []


def test_started_folds_are_those_with_a_checkpoint(tmp_path):
    from NNSegLib.slicer.training_runs import started_folds

    _run(tmp_path, "3d_fullres", "0", 10, ["checkpoint_final.pt"])
    _run(tmp_path, "3d_fullres", "1", 3, ["checkpoint_latest.pt"])
    _run(tmp_path, "3d_fullres", "2", 1, [])
    assert started_folds(find_runs(tmp_path), "3d_fullres") == ["0", "1"]
    assert started_folds(find_runs(tmp_path), "2d") == []
