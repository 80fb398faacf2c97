"""The panels' command lines (NNSegLib.slicer.panels, segment_run, fine_tune, batch_job) parse
with the real CLI."""

from __future__ import annotations

from conftest import cascade_plans

from NNSegLib.slicer.panels.plan import plan_commands
from NNSegLib.slicer.panels.train import train_commands
from NNSegLib.slicer.segment_run import predict_commands


def _parse(cmd: list[str]):
    """Parse a command with the real CLI parser of that command (catches wrong flags)."""
    from NNSegLib.cli import _command_parser

    parser, _run = _command_parser(cmd[0])
    return parser.parse_args(cmd[1:])


def test_panel_commands_parse_with_the_real_cli(tmp_path):
    ds, work = tmp_path / "Dataset001_X", tmp_path / "work"
    fp, plan = plan_commands(ds, work, "v2", 11.5, "2d, 3d_fullres")
    a = _parse(fp)
    assert a.dataset == ds and a.work == work
    a = _parse(plan)
    assert (a.recipe, a.gpu_memory_gb, a.configurations) == ("v2", 11.5, ["2d", "3d_fullres"])
    assert "--configurations" not in plan_commands(ds, None)[1]
    pre, t0, t3 = train_commands(ds, work, "3d_fullres", "0,3", 40, "cpu", resume=True)
    assert _parse(pre).configurations == ["3d_fullres"]
    a = _parse(t3)
    assert (a.configuration, a.fold, a.epochs, a.device, a.continue_) == (
        "3d_fullres", "3", 40, "cpu", True)
    assert _parse(t0).fold == "0"
    (pred,) = predict_commands(tmp_path / "in", tmp_path / "out", tmp_path / "model",
                               "0-1", "cpu", tta=False, uncertainty=True)
    a = _parse(pred)
    assert (a.folds, a.no_tta, a.uncertainty, a.device) == (["0", "1"], True, True, "cpu")
    imp, pred2 = predict_commands("in", "out", tmp_path / "m.zip", import_dir=tmp_path / "imp")
    assert _parse(imp).dest == tmp_path / "imp"
    assert _parse(pred2).model == tmp_path / "imp" and "--folds" not in pred2


def test_cascade_training_first_trains_the_unfinished_low_res_folds(tmp_path):
    from NNSegLib.util.workspace import Workspace

    ds, work = tmp_path / "Dataset001_X", tmp_path / "work"
    ws = Workspace(work)
    cascade_plans().save(ws.plans)
    for fold in (0, 1):   # fold 0 finished, fold 1 interrupted
        ws.run_dir("3d_lowres", fold).mkdir(parents=True)
        (ws.run_dir("3d_lowres", fold) / "checkpoint_latest.pt").write_bytes(b"")
    (ws.run_dir("3d_lowres", 0) / "checkpoint_final.pt").write_bytes(b"")
    commands = train_commands(ds, work, "3d_cascade_fullres", "0", 5, "cpu")
    parsed = [_parse(c) for c in commands]
    assert [c[0] for c in commands] == ["preprocess"] + ["train"] * 4 + ["preprocess", "train"]
    assert parsed[0].configurations == ["3d_lowres"]
    low = parsed[1:5]
    assert [(a.configuration, a.fold, a.continue_, a.epochs) for a in low] == [
        ("3d_lowres", "1", True, 5), ("3d_lowres", "2", False, 5), ("3d_lowres", "3", False, 5),
        ("3d_lowres", "4", False, 5)]
    assert parsed[5].configurations == ["3d_cascade_fullres"]
    assert (parsed[6].configuration, parsed[6].fold) == ("3d_cascade_fullres", "0")
    # Not a cascade, or no plan yet: only the configuration itself.
    assert len(train_commands(ds, work, "3d_fullres", "0")) == 2
    assert len(train_commands(ds, tmp_path / "none", "3d_cascade_fullres", "0")) == 2


def test_batch_and_fine_tune_commands(tmp_path):
    import json

    import pytest

    from NNSegLib.slicer.batch_job import segment_batch_commands
    from NNSegLib.slicer.fine_tune import fine_tune_commands
    from NNSegLib.util.errors import NNSegError

    (seg,) = segment_batch_commands(tmp_path / "in", tmp_path / "b", tmp_path / "m", "0-1",
                                    "cpu", tta=False, overwrite=True)
    a = _parse(seg)
    assert (a.input, a.output, a.model, a.folds, a.no_tta, a.overwrite) == (
        [tmp_path / "in"], tmp_path / "b", tmp_path / "m", ["0", "1"], True, True)
    imp, seg2 = segment_batch_commands([tmp_path / "a", tmp_path / "c"], tmp_path / "b",
                                       tmp_path / "m.zip")
    assert _parse(imp).dest == tmp_path / "b" / "model"
    assert _parse(seg2).input == [tmp_path / "a", tmp_path / "c"]

    ds, work = tmp_path / "Dataset001_X", tmp_path / "work"
    archive, pre, t0, t2 = fine_tune_commands(ds, work, "3d_fullres", "0,2", 20, "cpu",
                                              adapt_head=True)
    assert _parse(archive).work == work and archive[0] == "archive-model"
    assert _parse(pre).configurations == ["3d_fullres"]
    a = _parse(t2)
    assert (a.fold, a.epochs, a.init_from, a.init_from_adapt_head) == (
        "2", 20, work / "model_versions" / "v1", True)
    assert _parse(t0).fold == "0"
    with pytest.raises(NNSegError, match="no fine-tune in progress"):
        fine_tune_commands(ds, work, "3d_fullres", "0", resume=True)
    # resume: fold 0 continues, fold 1 is finished, fold 2 starts from the recorded parent
    results = work / "results"
    (results / "3d_fullres" / "fold_0").mkdir(parents=True)
    (results / "3d_fullres" / "fold_0" / "checkpoint_latest.pt").write_bytes(b"")
    (results / "3d_fullres" / "fold_1").mkdir(parents=True)
    (results / "3d_fullres" / "fold_1" / "checkpoint_final.pt").write_bytes(b"")
    (results / "model_version.json").write_text(json.dumps(
        {"version": 3, "parent": {"path": str(work / "model_versions" / "v2"), "version": 2}}))
    pre, t0, t2 = fine_tune_commands(ds, work, "3d_fullres", "0-2", resume=True)
    assert _parse(t0).continue_ and _parse(t0).init_from is None
    assert _parse(t2).init_from == work / "model_versions" / "v2"
    (cascade_work := tmp_path / "cw").mkdir()
    cascade_plans().save(cascade_work / "plans.json")
    with pytest.raises(NNSegError, match="cascade"):
        fine_tune_commands(ds, cascade_work, "3d_cascade_fullres")


def test_train_for_n_minutes_and_unfinished_folds(tmp_path):
    """The Train panel's time budget reaches every `train` command (the cascade's low-res
    folds too); "Use unfinished folds" reaches predict and segment-batch."""
    from NNSegLib.slicer.batch_job import segment_batch_commands
    from NNSegLib.util.workspace import Workspace

    ds, work = tmp_path / "Dataset001_X", tmp_path / "work"
    pre, t0 = train_commands(ds, work, "3d_fullres", "0", 1000, "cpu", time_budget_minutes=90)
    assert _parse(t0).time_budget == 90.0 and "--time-budget" not in pre
    pre, t1 = train_commands(ds, work, "2d", "1", None, "cpu", True, ["--val-iterations", "2"],
                             time_budget_minutes=2.5)
    a = _parse(t1)
    assert (a.time_budget, a.continue_, a.val_iterations) == (2.5, True, 2)
    assert all("--time-budget" not in c for c in train_commands(ds, work, "2d", "0", 5))
    Workspace(work).plans.parent.mkdir(parents=True)
    cascade_plans().save(Workspace(work).plans)
    trains = [c for c in train_commands(ds, work, "3d_cascade_fullres", "0", 5, "cpu",
                                        time_budget_minutes=30) if c[0] == "train"]
    assert len(trains) == 6 and all(_parse(c).time_budget == 30.0 for c in trains)

    (pred,) = predict_commands("in", "out", tmp_path / "m", allow_unfinished=True)
    assert _parse(pred).allow_unfinished
    (pred,) = predict_commands("in", "out", tmp_path / "m")
    assert not _parse(pred).allow_unfinished
    (seg,) = segment_batch_commands("in", "b", tmp_path / "m", allow_unfinished=True)
    assert _parse(seg).allow_unfinished


def test_the_preview_command_is_predict_fast_with_one_fold(tmp_path):
    (pred,) = predict_commands("in", "out", tmp_path / "m", folds="2-4", device="cpu",
                               tta=True, uncertainty=True, postprocessing=False, fast=True)
    a = _parse(pred)
    assert a.fast and a.folds == ["2"] and a.step is None and not a.uncertainty
    assert not a.no_tta and a.no_postprocessing and a.device == "cpu"
    (pred,) = predict_commands("in", "out", tmp_path / "m", fast=True)
    a = _parse(pred)
    assert a.fast and a.folds is None   # --fast picks the lowest-numbered finished fold
    (pred,) = predict_commands("in", "out", tmp_path / "m", folds="2-4")
    assert _parse(pred).folds == ["2", "3", "4"] and not _parse(pred).fast
