"""NNSegLib.util.model_folder: the one place that knows a model folder's file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import CHECKPOINT_PREFERENCE, ModelFolder
from NNSegLib.util.workspace import Workspace


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_runs_checkpoints_and_trained_folds(tmp_path: Path):
    folder = ModelFolder(tmp_path)
    _touch(folder.run("3d_fullres", 1).final)
    _touch(folder.run("3d_fullres", 0).latest)
    _touch(folder.run("3d_fullres", "all").best)
    (tmp_path / "3d_fullres" / "fold_3").mkdir()   # started, nothing saved yet
    assert [r.fold for r in folder.runs("3d_fullres")] == ["0", "1", "3", "all"]
    assert folder.trained_folds("3d_fullres") == ["0", "1", "all"]
    assert folder.trained_folds("3d_fullres", names=CHECKPOINT_PREFERENCE[:1]) == ["1"]
    run = folder.run("3d_fullres", 0)
    assert run.checkpoint() == run.latest and not run.is_finished
    assert run.fold == "0" and run.configuration == "3d_fullres"
    _touch(run.best)
    assert run.checkpoint() == run.best   # final > best > latest
    assert folder.trained_configurations() == ["3d_fullres"]
    assert folder.next_stage_dir("3d_lowres", "3d_cascade_fullres") == (
        tmp_path / "3d_lowres" / "predicted_next_stage" / "3d_cascade_fullres")


def test_default_and_best_configuration(tmp_path: Path):
    folder = ModelFolder(tmp_path)
    with pytest.raises(NNSegError, match="no trained configuration"):
        folder.default_configuration()
    _touch(folder.run("2d", 0).final)
    assert folder.default_configuration() == "2d"
    _touch(folder.run("3d_fullres", 0).final)
    assert folder.default_configuration() == "3d_fullres"
    folder.best_configuration_file.write_text(json.dumps({"configurations": ["2d", "3d_lowres"]}))
    assert folder.best_configurations() == ["2d", "3d_lowres"]
    assert folder.default_configuration() == "2d"
    folder.best_configuration_file.write_text("[]")
    with pytest.raises(NNSegError, match="best_configuration.json: expected a JSON object"):
        folder.best_configurations()


def test_adopt_copies_plans_and_dataset_once(tmp_path: Path):
    ws = Workspace(tmp_path / "work")
    _touch(ws.plans).write_text("plans-1")
    source = _touch(tmp_path / "raw" / "dataset.json")
    source.write_text("dataset-1")
    ws.model.adopt(ws.plans, [ws.dataset_json, source])   # work copy absent: raw one used
    assert ws.model.plans.read_text() == "plans-1"
    assert ws.model.dataset_json.read_text() == "dataset-1"
    ws.plans.write_text("plans-2")
    ws.model.adopt(ws.plans, [source])
    assert ws.model.plans.read_text() == "plans-1"   # a trained model keeps its plan
    assert ws.run_dir("2d", 4) == ws.results / "2d" / "fold_4"


def test_progress_text_counts_steps_when_epochs_end_early(tmp_path: Path):
    from NNSegLib.util.model_folder import RunFolder

    run = RunFolder(tmp_path / "fold_0")
    run.path.mkdir()
    (run.path / "run_config.json").write_text(json.dumps({"max_epochs": 10}))
    assert run.progress_text() == "epoch 0/10"
    run.log.write_text(json.dumps({"epoch": 0}) + "\n" + json.dumps({"epoch": 1}) + "\n")
    assert run.progress_text() == "epoch 2/10"   # a log of the earlier layout
    # a slow machine: 13 short epochs of a 10-epoch run, 240 of its 250 steps done
    records = [{"epoch": e, "step": 20 * (e + 1), "planned_steps": 250} for e in range(12)]
    records.append({"epoch": 12, "step": 240, "planned_steps": 250})
    run.log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run.progress_text() == "epoch 13, step 240/250"
    assert "stopped before finishing (epoch 13, step 240/250;" in run.status()
