"""NNSegLib.slicer.fine_tune: new fine-tune or resume, decided from the work folder."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cascade_plans

from NNSegLib.slicer.fine_tune import did_it_help, fine_tune_plan, fine_tune_steps
from NNSegLib.util.workspace import Workspace


def _run(model: Path, fold: str, *checkpoints: str, dice: float | None = None) -> None:
    run = model / "3d_fullres" / f"fold_{fold}"
    run.mkdir(parents=True, exist_ok=True)
    for name in checkpoints:
        (run / name).write_bytes(b"")
    if dice is not None:
        (run / "validation_summary.json").write_text(json.dumps({
            "foreground_mean": {"dice": dice}, "labels": {"background": 0, "liver": 1},
            "mean": {"1": {"dice": dice}}, "cases": [{"case": "c1"}]}))


def _parse(cmd: list[str]):
    from NNSegLib.cli import _command_parser

    parser, _run_fn = _command_parser(cmd[0])
    return parser.parse_args(cmd[1:])


def test_nothing_to_fine_tune_yet(tmp_path):
    work = tmp_path / "work"
    assert "work folder" in fine_tune_plan(".", "3d_fullres", "0").problem
    assert "click Plan first" in fine_tune_plan(work, "3d_fullres", "0").problem
    cascade_plans().save(Workspace(work).plans)
    assert "Nothing trained" in fine_tune_plan(work, "3d_fullres", "0").problem
    assert "cascade stage" in fine_tune_plan(work, "3d_cascade_fullres", "0").problem
    assert "has no 2d" in fine_tune_plan(work, "2d", "0").problem
    assert fine_tune_plan(work, "3d_fullres", "0, x").problem


def test_new_fine_tune_then_resume_then_new_again(tmp_path):
    ds, work = tmp_path / "Dataset001_X", tmp_path / "work"
    ws = Workspace(work)
    cascade_plans().save(ws.plans)
    _run(ws.results, "0", "checkpoint_final.pt", dice=0.8)
    # v1 trained: a new fine-tune starts from it
    plan = fine_tune_plan(work, "3d_fullres", "0")
    assert not plan.resume and plan.problem is None
    assert "model_versions/v1" in plan.text and "new v2" in plan.text
    # a fold of v1 that did not finish cannot be a starting point
    _run(ws.results, "1", "checkpoint_latest.pt")
    plan = fine_tune_plan(work, "3d_fullres", "0-1")
    assert "fold 1: stopped before finishing" in plan.problem and "Train or resume" in plan.problem
    job = fine_tune_steps(ds, work, "3d_fullres", "0", 0, "cpu", False, ["--val-iterations", "1"])
    assert [s[0] for s in job.steps] == ["archive-model", "preprocess", "train"]
    a = _parse(job.steps[-1])
    assert a.init_from == work / "model_versions" / "v1" and a.epochs is None
    assert a.val_iterations == 1 and job.epochs == 50 and not job.plan.resume
    assert "--val-iterations" not in job.steps[0]

    # the fine-tune was cancelled after fold 0 started (v2 records its parent)
    (work / "model_versions").mkdir()
    ws.results.rename(work / "model_versions" / "v1")
    _run(ws.results, "0", "checkpoint_latest.pt")
    (ws.results / "model_version.json").write_text(json.dumps(
        {"version": 2, "parent": {"path": str(work / "model_versions" / "v1"), "version": 1}}))
    plan = fine_tune_plan(work, "3d_fullres", "0")
    assert plan.resume and plan.problem is None
    assert "in progress (v2): fold(s) 0 resume from their latest checkpoint" in plan.text
    # fold 1 has no finished run in v1 to start from
    plan = fine_tune_plan(work, "3d_fullres", "0-1")
    assert plan.resume and "no finished 3d_fullres fold 1" in plan.problem
    (work / "model_versions" / "v1" / "3d_fullres" / "fold_1" / "checkpoint_final.pt"
     ).write_bytes(b"")
    plan = fine_tune_plan(work, "3d_fullres", "0-1")
    assert plan.problem is None and "fold(s) 1 start from" in plan.text
    job = fine_tune_steps(ds, work, "3d_fullres", "0-1", 5, "cpu")
    assert [s[0] for s in job.steps] == ["preprocess", "train", "train"]   # nothing archived
    t0, t1 = (_parse(s) for s in job.steps[1:])
    assert t0.continue_ and t0.init_from is None and t0.epochs == 5
    assert t1.init_from == work / "model_versions" / "v1" and job.epochs == 5

    # v2 finished: the next click starts v3 from v2
    _run(ws.results, "0", "checkpoint_final.pt", dice=0.85)
    plan = fine_tune_plan(work, "3d_fullres", "0")
    assert not plan.resume and "model_versions/v2" in plan.text and "new v3" in plan.text
    (work / "model_versions" / "v2").mkdir()
    assert "already exists" in fine_tune_plan(work, "3d_fullres", "0").problem
    # the parent was deleted meanwhile
    _run(ws.results, "1", "checkpoint_latest.pt")
    (ws.results / "model_version.json").write_text(json.dumps(
        {"version": 2, "parent": {"path": str(tmp_path / "gone"), "version": 1}}))
    assert "no longer exists" in fine_tune_plan(work, "3d_fullres", "1").problem


def test_did_it_help(tmp_path):
    work = tmp_path / "work"
    ws = Workspace(work)
    assert did_it_help(work, "3d_fullres") == ("", [], [])
    _run(ws.results, "0", "checkpoint_final.pt", dice=0.8)
    assert did_it_help(work, "3d_fullres") == ("", [], [])     # not a fine-tune
    (work / "model_versions").mkdir()
    ws.results.rename(work / "model_versions" / "v1")
    _run(ws.results, "0", "checkpoint_latest.pt")
    (ws.results / "model_version.json").write_text(json.dumps(
        {"version": 2, "parent": {"path": str(work / "model_versions" / "v1"), "version": 1}}))
    text, header, rows = did_it_help(work, "3d_fullres")
    assert text.startswith("No fold validated by both v1 and v2") and header
    _run(ws.results, "0", "checkpoint_final.pt", dice=0.86)
    text, header, rows = did_it_help(work, "3d_fullres")
    assert text == "CV Dice v1 0.800 → v2 0.860 (+0.060; fold(s) 0)"
    assert header == ["fold", "label", "v1", "v2", "change"]
    assert rows[0] == ["0", "mean", "0.800", "0.860", "+0.060"]
    assert rows[1][:2] == ["0", "liver"]
    text, header, rows = did_it_help(work, "2d")
    assert text.startswith("No comparison yet") and rows == []
    assert did_it_help(".", "3d_fullres") == ("", [], [])
