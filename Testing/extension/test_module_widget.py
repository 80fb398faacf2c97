"""NNSeg.py's Widget, driven by clicks, headless: real MRML, real ``nnseg`` jobs.

The Qt side is replaced by the stand-ins of ``slicer_stubs`` (widgets that record what is
shown and call their connected slots on ``click()``). What is tested is the wiring: which
button is enabled and why, what a click starts, what arrives where, what happens when the
scene closes or Slicer restarts during a job.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import slicer_stubs
from conftest import make_model_folder

from NNSegLib.data.io import Geometry
from NNSegLib.slicer import mrml  # imports slicer only when used

# No `import slicer` at module level: slicer-core's meta-package adds every "slicer" folder
# on sys.path to itself and imports its modules, Testing/slicer/test_*.py included; done
# while collecting this folder (before Testing/slicer is importable) it breaks `slicer`.

pytestmark = pytest.mark.slicer
GEO = Geometry((24, 32, 32), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


@pytest.fixture
def app(monkeypatch, tmp_path):
    """The module's widget set up in a fake application; ``HOME`` is a temporary folder."""
    pytest.importorskip("slicer", reason="needs slicer-core for real MRML nodes")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    slicer_stubs.QSettings.store = {}
    scene = mrml.new_scene().scene
    record, qt = slicer_stubs.install(monkeypatch, scene)
    module = slicer_stubs.load_module()
    widget = module.NNSegWidget()
    widget.setup()
    widget.logic.python = sys.executable
    yield widget, scene, record, module
    widget.cleanup()


def _case(scene, name: str, seed: int):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 10, GEO.shape).astype(np.float32)
    labels = np.zeros(GEO.shape, np.uint8)
    labels[6:14, 8:20, 8:20] = 1
    labels[14:18, 10:16, 18:26] = 2
    image[labels == 1] += 60
    image[labels == 2] += 120
    volume = mrml.volume_node_from_array(scene, image, GEO, name)
    seg = mrml.segmentation_from_labels(scene, labels, GEO, {0: "bg", 1: "a", 2: "b"},
                                        reference_volume=volume, name=f"{name} seg")
    return volume, seg


def _wait(widget, key: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while widget.board.get(key) is not None:
        assert time.monotonic() < deadline, f"{key} job still running"
        widget.onTimer()
        time.sleep(0.1)


def test_dataset_and_plan_panels(app, tmp_path):
    widget, scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    home = tmp_path / "home" / "NNSeg"
    # default folders under the per-user NNSeg folder, never "."
    assert p.datasetFolder == home / "datasets" / "Dataset001_Slicer"
    assert p.workFolder == home / "work" / "Dataset001_Slicer"
    assert not ui.addPairButton.enabled and "Select a volume" in ui.addPairButton.toolTip
    assert not ui.exportDatasetButton.enabled
    assert "Add at least one" in ui.exportDatasetButton.toolTip
    assert not ui.planButton.enabled and "export the dataset first" in ui.planButton.toolTip
    assert not ui.addAllButton.enabled
    assert ui.deviceInfoLabel.text.startswith(("CPU", "GPU"))
    assert p.memoryBudgetAuto and ui.memoryBudgetSpinBox.enabled is False

    cases = [_case(scene, f"case{i}", i) for i in range(4)]
    assert ui.addAllButton.enabled
    ui.addAllButton.click()
    assert ui.pairsTableWidget.rows == 4 and ui.pairsTableWidget.cells[(0, 2)] == "a, b"
    assert ui.labelsStatusLabel.text.startswith("4 case(s); labels 0: background, 1: a, 2: b")
    p.trainingVolume, p.trainingSegmentation = cases[0]
    widget.updateGui()
    assert not ui.addPairButton.enabled and "already" in ui.addPairButton.toolTip
    # a deleted volume leaves its case marked, export waits for it to be removed
    extra = _case(scene, "extra", 9)
    widget.logic.addCase(widget.caseNode(), [extra[0]], extra[1])
    scene.RemoveNode(extra[0])
    assert ui.pairsTableWidget.cells[(4, 0)] == "(deleted)"
    assert not ui.exportDatasetButton.enabled and "deleted" in ui.exportDatasetButton.toolTip
    ui.pairsTableWidget.selected = [4]
    ui.removePairButton.click()
    assert ui.pairsTableWidget.rows == 4 and ui.exportDatasetButton.enabled

    p.channelNames = "MR"
    p.datasetFolder = tmp_path / "data" / "Dataset002_Test"
    assert p.workFolder == home / "work" / "Dataset002_Test"  # the default follows the dataset
    ui.exportDatasetButton.click()
    assert ui.checkResultsTextEdit.toPlainText().splitlines()[-1].startswith("OK:"), record.errors
    assert slicer_stubs.QSettings.store["NNSeg/DatasetFolder"] == str(p.datasetFolder)

    assert ui.planButton.enabled and not ui.trainButton.enabled
    p.configurations = "3d_fullres"
    ui.planButton.click()
    assert ui.planButton.text == "Cancel" and ui.planButton.enabled
    assert not ui.datasetFolderPathLineEdit.enabled and not ui.exportDatasetButton.enabled
    _wait(widget, "plan")
    assert ui.planStatusLabel.text.startswith("Planning completed"), (ui.planStatusLabel.text,
                                                                      record.errors)
    assert ui.planButton.text == "Plan" and ui.datasetFolderPathLineEdit.enabled
    assert ui.plansTableWidget.header == ["3d_fullres"]
    assert ui.trainButton.enabled, ui.trainButton.toolTip
    if widget.deviceInfo.is_cpu:
        assert "Training will run on the CPU" in ui.trainWarningLabel.text
        assert "Rough estimate" in ui.trainWarningLabel.text
    assert not ui.resumeButton.enabled and "No interrupted training" in ui.resumeButton.toolTip
    assert record.errors == []


def test_segment_panel_new_nodes_overwrite_rules_and_scene_close(app, tmp_path):
    widget, scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    model = make_model_folder(tmp_path / "model", folds=("0",))
    volume, _seg = _case(scene, "patient", 1)
    assert not ui.segmentButton.enabled and "Choose a model" in ui.segmentButton.toolTip
    p.modelPath = model
    widget.onModelChanged(str(model))  # Slicer's path widget emits this when the path changes
    assert slicer_stubs.QSettings.store["NNSeg/ModelPath"] == str(model)  # remembered
    assert ui.modelInfoLabel.text.startswith(f"{model.name}: channels ['MRI']")
    assert "No postprocessing chosen" in ui.postprocessingInfoLabel.text
    p.inputVolume = None
    widget.updateGui()
    assert not ui.segmentButton.enabled and "Select an input volume" in ui.segmentButton.toolTip
    p.inputVolume = volume
    widget.updateGui()
    assert ui.segmentButton.enabled, ui.segmentButton.toolTip

    results = []
    for _ in range(2):  # a second Segment makes a second node: the first one is kept
        before = {scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode").GetID()
                  for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))}
        ui.segmentButton.click()
        assert ui.segmentButton.text == "Cancel" and not ui.inputVolumeSelector.enabled
        _wait(widget, "segment")
        assert ui.segmentStatusLabel.text.startswith("Segmentation completed"), (
            ui.segmentStatusLabel.text, record.errors)
        new = [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
               for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
        [made] = [n for n in new if n.GetID() not in before]
        results.append(made)
        assert p.outputSegmentation is None  # the selector stays on "(create new)"
    assert ui.inputVolumeSelector.enabled and results[0].GetAttribute(mrml.TAG_MODEL)
    assert mrml.segment_names(results[0]) == ["a", "b"]

    # overwriting an edited result asks first; "no" starts nothing
    p.outputSegmentation = results[0]
    segmentation = results[0].GetSegmentation()
    segmentation.RemoveSegment(segmentation.GetNthSegmentID(1))  # an edit
    record.answer = False
    ui.segmentButton.click()
    assert "was edited since NNSeg wrote it" in record.questions[-1]
    assert widget.board.get("segment") is None
    record.answer = True

    # the scene closes while segmenting: the job is cancelled, nothing raises or arrives
    p.outputSegmentation = None
    ui.segmentButton.click()
    assert widget.board.get("segment") is not None
    scene.Clear(0)
    _wait(widget, "segment")
    assert ui.segmentStatusLabel.text == "Cancelled: the scene was closed."
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert record.errors == []


def test_find_best_then_report_then_open(app, tmp_path, monkeypatch):
    widget, scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    dataset, work = tmp_path / "Dataset003_B", tmp_path / "work"
    dataset.mkdir()
    (dataset / "dataset.json").write_text("{}")
    p.datasetFolder, p.workFolder = dataset, work
    run = work / "results" / "3d_fullres" / "fold_0"
    (run / "validation").mkdir(parents=True)
    (run / "checkpoint_final.pt").write_bytes(b"x")
    (run / "validation" / "c1.nii.gz").write_bytes(b"x")
    widget.updateGui()
    assert ui.findBestButton.enabled, ui.findBestButton.toolTip
    assert not ui.openReportButton.enabled
    started = []

    class Done:
        """A job that has already succeeded and wrote what its command would write."""

        status_ok = True

        def __init__(self, steps):
            from NNSegLib.slicer.jobs import JobStatus

            started.append(steps)
            self.status, self.elapsed, self.finished = JobStatus.OK, 1.0, True
            self.cancel_requested = False
            if steps[0][0] == "find-best":
                (work / "results" / "best_configuration.json").write_text(
                    '{"configurations": ["3d_fullres"], "cv_dice": {"3d_fullres": 0.9},'
                    ' "cv_dice_postprocessed": 0.91, "postprocessing": {"decisions": []}}')
            else:
                out = Path(steps[0][steps[0].index("-o") + 1])
                out.mkdir(parents=True)
                (out / "report.html").write_text("<html/>")

        def poll(self):
            return []

        def error_message(self):
            return None

    monkeypatch.setattr(widget.logic, "startJobs", Done)
    ui.findBestButton.click()
    _wait(widget, "findbest")
    assert [s[0][0] for s in started] == ["find-best", "evaluate"]
    assert "3d_fullres" in ui.findBestResultTextEdit.toPlainText()
    assert ui.openReportButton.enabled
    ui.openReportButton.click()
    assert record.opened == [str(work / "evaluation" / "cross_validation" / "report.html")]


def test_restart_reattaches_to_a_running_training_and_cancel_asks(app, tmp_path, monkeypatch):
    """A training started before (detached) is found, followed and cancelled after asking."""
    import textwrap

    from conftest import FAKE_NNSEG as FAKE

    from NNSegLib.slicer.background_jobs import start_file_job

    widget, scene, record, module = app
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "fakennseg.py").write_text(textwrap.dedent(FAKE))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mod"))
    work = tmp_path / "work"
    out = work / "results" / "3d_fullres" / "fold_0"
    out.mkdir(parents=True)
    step = ["train", "D", "3d_fullres", "0", "--epochs", "7", "--fake-out", str(out),
            "--fake-epochs", "1000"]
    job = start_file_job([step], work, "train", python=sys.executable, detached=True,
                         module="fakennseg")
    try:
        deadline = time.monotonic() + 30
        while not any(e["event"] == "epoch" for e in job.poll()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # "restart": a new widget on the same work folder
        widget._parameterNode.workFolder = work
        again = module.NNSegWidget()
        again.setup()
        entry = again.board.get("train")
        assert entry is not None and entry.job.folder == job.folder
        assert entry.context["maxEpochs"] == 7 and again.ui.trainButton.text == "Cancel"
        deadline = time.monotonic() + 30
        while not again.epochRecords:
            assert time.monotonic() < deadline
            again.onTimer()
            time.sleep(0.05)
        assert again.ui.trainStatusLabel.text.startswith("epoch ")
        record.answer = False
        again.ui.trainButton.click()
        assert "checkpoint is kept" in record.questions[-1]
        assert again.board.get("train") is not None and not entry.cancelling
        record.answer = True
        again.ui.trainButton.click()
        _wait(again, "train", timeout=90)
        assert again.ui.trainStatusLabel.text.startswith("Training cancelled")
        assert (out / "checkpoint_train").is_file()  # stopped cleanly
        again.cleanup()
    finally:
        job.request_stop()
        if job.process is not None:
            job.process.wait(timeout=60)


@pytest.mark.slow
def test_whole_click_path_with_one_short_training_epoch(app, tmp_path):
    """Dataset → Plan → Train (1 short epoch) → Segment, as NNSegTest.test_ClickPath does in
    Slicer, here headless."""
    widget, scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    for i in range(5):
        _case(scene, f"case{i}", i)
    ui.addAllButton.click()
    p.channelNames, p.configurations = "MR", "3d_fullres"
    ui.exportDatasetButton.click()
    ui.planButton.click()
    _wait(widget, "plan")
    p.folds, p.maxEpochs, p.device = "0", 1, "cpu"
    widget.trainOptions = ["--iterations-per-epoch", "3", "--val-iterations", "1"]
    widget.updateGui()
    ui.trainButton.click()
    _wait(widget, "train", timeout=900)
    assert ui.trainStatusLabel.text.startswith("Training completed"), (
        ui.trainStatusLabel.text, record.errors)
    assert any("3d_fullres fold 0: finished, epoch 1/1" in t for t in ui.runsListWidget.items)
    assert ui.cvSummaryLabel.text.startswith("CV Dice")
    ui.useTrainedModelButton.click()
    widget.onModelChanged(str(p.modelPath))
    p.inputVolume = scene.GetFirstNodeByName("case0")
    widget.updateGui()
    ui.segmentButton.click()
    _wait(widget, "segment", timeout=300)
    assert ui.segmentStatusLabel.text.startswith("Segmentation completed"), record.errors
    assert record.errors == []
