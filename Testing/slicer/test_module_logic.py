"""NNSegLib.slicer.module_logic with the panels' rules (NNSegLib.slicer.panels): when each button
may be clicked and why not, built from the parameter node."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from NNSegLib.slicer.fine_tune import FineTunePlan
from NNSegLib.slicer.model_folds import FoldCheck
from NNSegLib.slicer.module_logic import (
    LOCKS,
    ModuleLogic,
    ModuleState,
    locked_widgets,
    module_view,
)

#: Where each field of the panels' states lives in a ModuleState.
_PART = {f.name: part.name for part in dataclasses.fields(ModuleState)
         for f in dataclasses.fields(getattr(ModuleState(), part.name))}


def PanelState(**fields) -> ModuleState:  # noqa: N802 - reads like the state it builds
    """A ModuleState with these fields set in the panel state that holds each."""
    state = ModuleState()
    for name, value in fields.items():
        setattr(getattr(state, _PART[name]), name, value)
    return state


def button_rules(state: ModuleState) -> dict:
    return module_view(state).rules


def enabled_inputs(state: ModuleState) -> dict:
    return module_view(state).inputs


def info_texts(state: ModuleState) -> dict:
    return module_view(state).texts


def state_from_parameters(scene, params, segment_volumes, model_channels, resumable_folds,
                          running, report, started_folds=(), batch_volumes=(),
                          review_case=None, dataset_case_name=""):
    """ModuleLogic.state (no runs), with what the runs would answer set directly."""
    session = SimpleNamespace(current_case=lambda scene: review_case)
    channels = ["c"] * model_channels if model_channels else None
    state = ModuleLogic().state(scene, params, segment_volumes, channels, [], running,
                                batch_volumes, session, dataset_case_name)
    state.train.resumable_folds, state.train.started_folds = list(resumable_folds), started_folds
    state.train.report = report
    return state


UI = Path(__file__).resolve().parents[2] / "NNSeg" / "Resources" / "UI" / "NNSeg.ui"


class Node:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def GetID(self) -> str:  # noqa: N802 - MRML spelling
        return self.node_id


def _dataset(tmp_path: Path) -> Path:
    d = tmp_path / "Dataset001_A"
    d.mkdir()
    (d / "dataset.json").write_text("{}")
    return d


def _plan(work: Path, configurations=("3d_fullres",)) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "plans.json").write_text(json.dumps({"configurations": {c: {}
                                                                    for c in configurations}}))


def test_every_rule_and_lock_names_a_widget_of_the_ui():
    names = {w.get("name") for w in ET.parse(UI).getroot().iter("widget")}
    assert set(button_rules(PanelState())) <= names
    assert {n for v in LOCKS.values() for n in v} <= names


def test_nothing_runs_on_unset_folders():
    rules = button_rules(PanelState(dataset_folder=".", work_folder=""))
    for name in ("planButton", "trainButton", "findBestButton", "useTrainedModelButton"):
        assert not rules[name].enabled and rules[name].reason, name
    assert "dataset folder" in rules["planButton"].reason
    assert not rules["segmentButton"].enabled and "Choose a model" in rules["segmentButton"].reason
    assert not rules["openReportButton"].enabled


def test_dataset_panel_rules():
    vol, seg = Node("v1"), Node("s1")
    assert not button_rules(PanelState())["addPairButton"].enabled
    assert button_rules(PanelState(training_volume=vol, training_segmentation=seg)
                        )["addPairButton"].enabled
    listed = PanelState(training_volume=vol, training_segmentation=seg,
                        listed_segmentation_ids=["s1"])
    assert "already in the list" in button_rules(listed)["addPairButton"].reason
    assert not button_rules(PanelState())["addAllButton"].enabled
    assert button_rules(PanelState(scene_segmentations=2))["addAllButton"].enabled
    ready = dict(complete_cases=3, case_channels=[2, 2, 2], channel_names=["T1", "T2"],
                 dataset_folder="/d/Dataset001_A")
    assert button_rules(PanelState(**ready))["exportDatasetButton"].enabled
    for change, reason in (({"complete_cases": 0, "case_channels": []}, "Add at least one"),
                           ({"incomplete_cases": 1}, "deleted"),
                           ({"case_channels": [2, 1, 2]}, "different numbers of channels"),
                           ({"channel_names": ["T1"]}, "Enter 2 channel name(s)"),
                           ({"dataset_folder": "."}, "dataset folder"),
                           ({"running": {"train"}}, "A job is reading this dataset")):
        rule = button_rules(PanelState(**{**ready, **change}))["exportDatasetButton"]
        assert not rule.enabled and reason in rule.reason, change
    assert button_rules(PanelState(complete_cases=1))["clearPairsButton"].enabled


def test_plan_and_train_follow_the_files(tmp_path):
    dataset, work = _dataset(tmp_path), tmp_path / "work"
    state = PanelState(dataset_folder=str(tmp_path / "none"), work_folder=str(work))
    assert "export the dataset first" in button_rules(state)["planButton"].reason
    state.shared.dataset_folder = str(dataset)
    assert button_rules(state)["planButton"].enabled
    assert "click Plan first" in button_rules(state)["trainButton"].reason
    _plan(work, ["2d", "3d_fullres"])
    assert button_rules(state)["trainButton"].enabled
    state.train.train_configuration = "3d_lowres"
    assert "has no 3d_lowres (planned: 2d, 3d_fullres)" in button_rules(state)["trainButton"].reason
    state.train.train_configuration, state.train.folds = "2d", "0, x"
    assert not button_rules(state)["trainButton"].enabled
    state.train.folds = "0-4"
    assert button_rules(state)["trainButton"].enabled
    # resume only with something to resume
    assert not button_rules(state)["resumeButton"].enabled
    state.train.resumable_folds = ["1", "3"]
    assert "fold(s) 1, 3" in button_rules(state)["resumeButton"].reason
    # find best needs a trained configuration
    assert "Train at least one" in button_rules(state)["findBestButton"].reason
    run = work / "results" / "2d" / "fold_0"
    run.mkdir(parents=True)
    (run / "checkpoint_final.pt").write_bytes(b"x")
    assert button_rules(state)["findBestButton"].enabled
    assert not button_rules(state)["useTrainedModelButton"].enabled
    (work / "results" / "dataset.json").write_text("{}")
    assert button_rules(state)["useTrainedModelButton"].enabled


def test_running_jobs_turn_apply_into_cancel_and_exclude_each_other(tmp_path):
    dataset, work = _dataset(tmp_path), tmp_path / "work"
    _plan(work)
    state = PanelState(dataset_folder=str(dataset), work_folder=str(work), running={"train"})
    rules = button_rules(state)
    assert rules["trainButton"].enabled and "Cancel" in rules["trainButton"].reason
    assert not rules["planButton"].enabled and not rules["resumeButton"].enabled
    assert not rules["findBestButton"].enabled
    state.shared.running = {"plan"}
    rules = button_rules(state)
    assert rules["planButton"].enabled and not rules["trainButton"].enabled
    assert locked_widgets({"plan"}) >= {"datasetFolderPathLineEdit", "recipeComboBox"}
    assert "inputVolumeSelector" in locked_widgets({"segment"})
    assert "channelSelectorsWidget" in locked_widgets({"segment"})
    assert "trainConfigurationComboBox" in locked_widgets({"train"})
    assert locked_widgets(set()) == set()


def test_segment_rules(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    state = PanelState(model_path=str(model), model_channels=2, segment_volumes=[Node("a")])
    assert "dataset.json missing" in button_rules(state)["segmentButton"].reason
    (model / "dataset.json").write_text("{}")
    assert "each of the model's 2 channel(s)" in button_rules(state)["segmentButton"].reason
    state.segment.segment_volumes = [Node("a"), None]
    assert not button_rules(state)["segmentButton"].enabled
    state.segment.segment_volumes = [Node("a"), Node("b")]
    assert button_rules(state)["segmentButton"].enabled
    state.shared.model_path = str(tmp_path / "missing.zip")
    assert "does not exist" in button_rules(state)["segmentButton"].reason
    state.shared.running = {"segment"}
    assert button_rules(state)["segmentButton"].enabled  # it is the Cancel button now


def test_state_from_parameters_on_real_mrml():
    pytest.importorskip("slicer", reason="needs slicer-core for real MRML nodes")
    import numpy as np

    from NNSegLib.data.io import Geometry
    from NNSegLib.slicer.scene import case_list, mrml

    scene = mrml.new_scene().scene
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "NNSeg")
    geo = Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    vol = mrml.volume_node_from_array(scene, np.zeros(geo.shape, np.float32), geo, "v")
    seg = mrml.segmentation_from_labels(scene, np.ones(geo.shape, np.uint8), geo,
                                        {0: "bg", 1: "a"}, reference_volume=vol)
    case_list.add_case(node, [vol], seg)
    params = SimpleNamespace(
        parameterNode=node, trainingVolume=vol, trainingSegmentation=seg, channelNames="CT, ",
        datasetFolder=Path("."), workFolder=Path("/w"), trainConfiguration="2d", folds="0",
        modelPath=Path("."), memoryBudgetAuto=False, timeBudget=True, predictFolds="",
        allowUnfinished=False, batchSource="scene volumes", batchInputFolder=Path("."),
        batchFolder=Path("."))
    state = state_from_parameters(scene, params, [vol], 1, ["2"], set(), None,
                                  batch_volumes=[vol], review_case="c1",
                                  dataset_case_name="c1")
    assert state.dataset.complete_cases == 1 and state.dataset.incomplete_cases == 0
    assert state.dataset.listed_segmentation_ids == [seg.GetID()]
    assert state.dataset.case_channels == [1]
    assert state.dataset.channel_names == ["CT"] and state.dataset.scene_segmentations == 1
    assert state.shared.dataset_folder == "." and state.train.resumable_folds == ["2"]
    assert state.review.batch_input_problem is None
    assert "batch folder" in state.review.batch_folder_problem
    assert state.review.review_case == "c1" and "No plan" in state.review.fine_tune.problem
    rules = button_rules(state)
    assert not rules["addPairButton"].enabled  # this segmentation is listed already
    assert "dataset folder" in rules["exportDatasetButton"].reason
    assert rules["acceptButton"].enabled
    assert "dataset folder" in rules["addToDatasetButton"].reason
    assert enabled_inputs(state) == {"memoryBudgetSpinBox": True, "timeBudgetSpinBox": True,
                                     "batchInputFolderPathLineEdit": False,
                                     "batchVolumesSelector": True}


def test_train_refuses_folds_that_already_have_a_run(tmp_path):
    dataset, work = _dataset(tmp_path), tmp_path / "work"
    _plan(work)
    state = PanelState(dataset_folder=str(dataset), work_folder=str(work), folds="0-2",
                       started_folds=["1", "4"], resumable_folds=["1"])
    rule = button_rules(state)["trainButton"]
    assert not rule.enabled and "Fold(s) 1 of 3d_fullres already have a run" in rule.reason
    assert button_rules(state)["resumeButton"].enabled
    state.train.folds = "2, 3"
    assert button_rules(state)["trainButton"].enabled


def test_training_jobs_include_the_fine_tune(tmp_path):
    """A fine-tune is a training: it excludes Plan, Train, Find best and Export, and waits
    for segmentations (it moves the model they may read)."""
    dataset, work = _dataset(tmp_path), tmp_path / "work"
    _plan(work)
    ready = FineTunePlan(text="New fine-tune: …")
    state = PanelState(dataset_folder=str(dataset), work_folder=str(work), fine_tune=ready,
                       complete_cases=1, case_channels=[1], channel_names=["CT"])
    rules = button_rules(state)
    assert rules["fineTuneButton"].enabled and rules["fineTuneButton"].reason == ready.text
    state.shared.running = {"finetune"}
    rules = button_rules(state)
    assert rules["fineTuneButton"].enabled and "Cancel" in rules["fineTuneButton"].reason
    for name in ("planButton", "trainButton", "resumeButton", "findBestButton",
                 "exportDatasetButton"):
        assert not rules[name].enabled, name
    assert "Fine-tuning runs" in info_texts(state)["fineTuneInfoLabel"]
    for other in ({"train"}, {"segment"}, {"batch"}, {"plan"}):
        state.shared.running = other
        assert not button_rules(state)["fineTuneButton"].enabled, other
    state.shared.running = set()
    state.review.fine_tune = FineTunePlan(problem="No plan in the work folder: click Plan first.")
    assert button_rules(state)["fineTuneButton"].reason.startswith("No plan")
    assert info_texts(state)["fineTuneInfoLabel"].startswith("No plan")
    assert {"fineTuneEpochsSpinBox", "foldsLineEdit"} <= locked_widgets({"finetune"})
    assert {"timeBudgetCheckBox", "timeBudgetSpinBox"} <= locked_widgets({"train"})


def test_batch_and_review_rules(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "dataset.json").write_text("{}")
    state = PanelState(model_path=str(model), batch_input_problem="Choose the input folder.",
                       batch_folder_problem=None)
    assert button_rules(state)["batchButton"].reason == "Choose the input folder."
    state.review.batch_input_problem = None
    assert button_rules(state)["batchButton"].enabled
    state.shared.model_folds = FoldCheck(problem="3d_fullres has no finished fold: …")
    assert "no finished fold" in button_rules(state)["batchButton"].reason
    assert "no finished fold" in button_rules(state)["segmentButton"].reason
    state.shared.model_folds = FoldCheck()
    state.review.batch_folder_problem = "This batch folder was segmented by T v1"
    assert not button_rules(state)["batchButton"].enabled
    state.shared.running = {"batch"}
    assert button_rules(state)["batchButton"].enabled  # Cancel
    assert {"batchFolderPathLineEdit", "modelPathLineEdit", "allowUnfinishedCheckBox"} <= \
        locked_widgets({"batch"})
    # reviewing: a case must be shown; adding also needs the dataset and a name
    state.shared.running = set()
    rules = button_rules(state)
    for name in ("acceptButton", "needsCorrectionButton", "addToDatasetButton"):
        assert not rules[name].enabled and "Click a case" in rules[name].reason, name
    state.review.review_case, state.shared.dataset_folder = "pat", str(_dataset(tmp_path))
    rules = button_rules(state)
    assert rules["acceptButton"].enabled and rules["needsCorrectionButton"].enabled
    assert "Enter the case's name" in rules["addToDatasetButton"].reason
    state.review.dataset_case_name = "pat_2"
    assert "as 'pat_2'" in button_rules(state)["addToDatasetButton"].reason
    state.shared.running = {"train"}
    assert "reading this dataset" in button_rules(state)["addToDatasetButton"].reason
    assert enabled_inputs(state)["batchInputFolderPathLineEdit"]
    assert not enabled_inputs(state)["batchVolumesSelector"]
