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
from NNSegLib.slicer.scene import mrml  # imports slicer only when used

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
    widget.logic.lib.dataset.add_case(widget.caseNode(), [extra[0]], extra[1])
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
            from NNSegLib.jobs.base import JobStatus

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

    monkeypatch.setattr(widget.logic.lib, "start_jobs", Done)
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

    from NNSegLib.jobs.base import CommandStep
    from NNSegLib.jobs.detached import start_file_job
    from NNSegLib.slicer.requests import TrainContext

    widget, scene, record, module = app
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "fakennseg.py").write_text(textwrap.dedent(FAKE))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mod"))
    work = tmp_path / "work"
    out = work / "results" / "3d_fullres" / "fold_0"
    out.mkdir(parents=True)
    # the typed context is stored with the job: re-attaching reads it, not the argv
    step = CommandStep(["train", "D", "3d_fullres", "0", "--epochs", "7", "--fake-out", str(out),
                        "--fake-epochs", "1000"],
                       TrainContext("train", "3d_fullres", "0", 7).to_json())
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
    """Dataset → Plan → Train (1 short epoch) → Segment → Fine-tune, as NNSegTest.test_ClickPath
    does in Slicer (and more), here headless."""
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
    # fine-tune v1 → v2 for one short epoch with the real commands, then "did it help?"
    p.fineTuneEpochs = 1
    widget.updateGui()
    assert ui.fineTuneButton.enabled and "New fine-tune" in ui.fineTuneButton.toolTip, (
        ui.fineTuneButton.toolTip)
    ui.fineTuneButton.click()
    _wait(widget, "finetune", timeout=900)
    assert ui.fineTuneStatusLabel.text.startswith("Fine-tuning completed"), (
        ui.fineTuneStatusLabel.text, record.errors)
    assert ui.fineTuneSummaryLabel.text.startswith("CV Dice v1 "), ui.fineTuneSummaryLabel.text
    assert ui.fineTuneTableWidget.header[2:4] == ["v1", "v2"]
    assert (p.workFolder / "model_versions" / "v1" / "3d_fullres" / "fold_0").is_dir()
    assert record.errors == []


class _DoneJob:
    """A background job that has already succeeded; ``effect(steps)`` writes its files."""

    def __init__(self, steps, effect=None):
        from NNSegLib.jobs.base import JobStatus

        self.steps = steps
        self.status, self.elapsed, self.finished = JobStatus.OK, 1.0, True
        self.cancel_requested, self.detached = False, False
        if effect is not None:
            effect(steps)

    def poll(self):
        return []

    def error_message(self):
        return None

    def cancel(self, grace=10.0):
        return self.status

    def request_stop(self):
        pass


def _ready_work(tmp_path):
    """A dataset and a planned work folder (no training needed for the Train rules)."""
    from conftest import cascade_plans

    from NNSegLib.util.workspace import Workspace

    dataset, work = tmp_path / "Dataset006_W", tmp_path / "work"
    dataset.mkdir()
    (dataset / "dataset.json").write_text("{}")
    cascade_plans().save(Workspace(work).plans)
    return dataset, work


def _fold(model: Path, fold: str, checkpoint: str, dice: float | None = None) -> None:
    import json

    run = model / "3d_fullres" / f"fold_{fold}"
    run.mkdir(parents=True, exist_ok=True)
    (run / checkpoint).write_bytes(b"")
    if dice is not None:
        (run / "validation_summary.json").write_text(json.dumps(
            {"foreground_mean": {"dice": dice}, "cases": [{"case": "c1"}]}))


def test_train_for_n_minutes(app, tmp_path, monkeypatch):
    widget, _scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    p.datasetFolder, p.workFolder = _ready_work(tmp_path)
    assert not p.timeBudget and not ui.timeBudgetSpinBox.enabled  # off: minutes greyed out
    p.timeBudget, p.timeBudgetMinutes, p.maxEpochs, p.device = True, 2, 1000, "cpu"
    assert ui.timeBudgetSpinBox.enabled
    if widget.deviceInfo.is_cpu:
        assert "stops each fold after 2 min" in ui.trainWarningLabel.text
    started = []
    monkeypatch.setattr(widget.logic.lib, "start_training",
                        lambda steps, work, detached, kind="train": started.append(
                            (steps, kind)) or _DoneJob(steps))
    assert ui.trainButton.enabled, ui.trainButton.toolTip
    ui.trainButton.click()
    [(steps, kind)] = started
    assert kind == "train" and steps[-1][-2:] == ["--time-budget", "2"]
    assert "--epochs" in steps[-1]
    _wait(widget, "train")
    assert ui.trainStatusLabel.text.startswith("Training completed"), record.errors
    widget.board.start("train", _DoneJob([]), {})  # while training runs: budget locked
    widget.updateGui()
    assert not ui.timeBudgetCheckBox.enabled and not ui.timeBudgetSpinBox.enabled
    _wait(widget, "train")
    p.timeBudget = False
    ui.trainButton.click()  # fold 0 has no run in this fake: Train is enabled again
    assert all("--time-budget" not in c for c in started[-1][0])
    _wait(widget, "train")


def test_segment_panel_says_when_only_unfinished_folds_exist(app, tmp_path):
    widget, scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    model = make_model_folder(tmp_path / "model", folds=("0",), checkpoint="checkpoint_best.pt")
    volume, _seg = _case(scene, "patient", 2)
    p.modelPath, p.inputVolume = model, volume
    widget.onModelChanged(str(model))
    assert not ui.segmentButton.enabled
    assert 'no finished fold: fold 0 stopped before finishing' in ui.segmentButton.toolTip
    assert 'Check "Use unfinished folds"' in ui.modelFoldsLabel.text
    p.allowUnfinished = True
    assert ui.segmentButton.enabled, ui.segmentButton.toolTip
    assert "used with its best checkpoint" in ui.modelFoldsLabel.text
    ui.segmentButton.click()
    assert not ui.allowUnfinishedCheckBox.enabled  # captured and locked while it runs
    assert "--allow-unfinished" in widget.board.get("segment").context["run"].steps[-1]
    _wait(widget, "segment")
    assert ui.segmentStatusLabel.text.startswith("Segmentation completed"), (
        ui.segmentStatusLabel.text, record.errors)
    assert ui.allowUnfinishedCheckBox.enabled and record.errors == []


def _segmentation_names(scene) -> list[str]:
    return [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode").GetName()
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]


def _wait_for_preview(widget, scene, timeout: float = 240.0) -> list[str]:
    """Poll until the preview is in the scene; returns the segmentation names then."""
    deadline = time.monotonic() + timeout
    while not any(n.endswith("(preview)") for n in _segmentation_names(scene)):
        assert widget.board.get("segment") is not None, "the job ended without a preview"
        assert time.monotonic() < deadline, "no preview"
        widget.onTimer()
        time.sleep(0.05)
    return _segmentation_names(scene)


def test_segment_preview_first_then_full_quality_and_expected_times(app, tmp_path):
    widget, scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    model = make_model_folder(tmp_path / "model", folds=("0", "1"))
    volume, _seg = _case(scene, "patient", 3)
    p.modelPath, p.inputVolume, p.predictDevice = model, volume, "cpu"
    widget.onModelChanged(str(model))
    assert ui.segmentTimeLabel.text == (
        "Expected time on the CPU: unknown until the first case is segmented (the preview "
        "runs about 128× fewer network passes than the full result).")
    p.previewFirst = True
    ui.segmentButton.click()
    assert not ui.previewFirstCheckBox.enabled   # captured and locked while it runs
    run = widget.board.get("segment").context["run"]
    assert "--fast" in run.preview_steps[-1] and "--fast" not in run.steps[-1]
    names = _wait_for_preview(widget, scene)
    assert names == ["patient seg", "patient segmentation (preview)"]
    assert ui.segmentStatusLabel.text.startswith(
        "Preview in 'patient segmentation (preview)' after"), record.errors
    _wait(widget, "segment")
    assert ui.segmentStatusLabel.text.startswith("Segmentation completed"), (
        ui.segmentStatusLabel.text, record.errors)
    assert _segmentation_names(scene) == ["patient seg", "patient segmentation"]
    assert ui.previewFirstCheckBox.enabled and record.errors == []
    # both modes were measured on this model and device: the line shows both times
    times = slicer_stubs.QSettings.store["NNSeg/SegmentTimes"]
    assert '"mode": "fast"' in times and '"mode": "full"' in times
    widget.updateGui()
    text = ui.segmentTimeLabel.text
    assert text.startswith("Expected on the CPU for this volume (0.0246 Mvoxels): preview ≈ ")
    assert "full quality ≈ " in text and "rough" not in text

    # cancelling the full phase keeps the preview and says so
    ui.segmentButton.click()
    _wait_for_preview(widget, scene)
    ui.segmentButton.click()   # Cancel
    _wait(widget, "segment")
    kept = _segmentation_names(scene)[-1]
    assert kept.startswith("patient segmentation") and kept.endswith(" (preview)")
    assert ui.segmentStatusLabel.text.startswith(
        f"Cancelled: the preview is kept in '{kept}'"), (ui.segmentStatusLabel.text,
                                                         record.errors)
    assert len(_segmentation_names(scene)) == 3 and record.errors == []


def test_batch_review_and_add(app, tmp_path):
    """Segment two scene volumes in one job, review the least certain first, mark, correct,
    add to the dataset; the queue is there again after a restart."""
    import json

    from conftest import write_dataset

    from NNSegLib.inference import review_queue as rq

    widget, scene, record, module = app
    ui, p = widget.ui, widget._parameterNode
    model = make_model_folder(tmp_path / "model", folds=("0",))
    volumes = [_case(scene, f"scan{i}", 10 + i)[0] for i in range(2)]
    home = tmp_path / "home" / "NNSeg"
    assert p.batchFolder == home / "batches" / "batch_001"    # a default, never "."
    p.modelPath, p.predictDevice, p.tta, p.predictFolds = model, "cpu", False, "0"
    widget.onModelChanged(str(model))
    assert "Choose the input folder" in ui.batchButton.toolTip
    assert not ui.batchVolumesSelector.enabled and ui.batchInputFolderPathLineEdit.enabled
    p.batchSource = "scene volumes"
    assert ui.batchVolumesSelector.enabled and not ui.batchInputFolderPathLineEdit.enabled
    assert "Check the scene volumes" in ui.batchButton.toolTip
    ui.batchVolumesSelector.checked_nodes = volumes
    ui.batchVolumesSelector.emit("checkedNodesChanged()")
    p.batchFolder = tmp_path / "batch"
    assert ui.batchButton.enabled, ui.batchButton.toolTip
    assert "No review queue" in ui.batchInfoLabel.text
    ui.batchButton.click()
    assert ui.batchButton.text == "Cancel" and ui.batchButton.enabled
    assert not ui.batchFolderPathLineEdit.enabled and not ui.modelPathLineEdit.enabled
    _wait(widget, "batch")
    assert ui.batchStatusLabel.text.startswith("Batch completed"), (ui.batchStatusLabel.text,
                                                                   record.errors)
    assert ui.batchProgressBar.maximum == 2 and ui.batchProgressBar.value == 2
    table = ui.reviewTableWidget
    assert table.rows == 2 and table.header[:3] == ["#", "case", "state"]
    ranked = [e.case for e in rq.ranked_entries(tmp_path / "batch")]
    assert [table.cells[(r, 1)] for r in range(2)] == ranked     # least certain first
    assert ui.batchInfoLabel.text.startswith("2 case(s) by model v1: 2 pending")

    # review: nothing selected yet, then the first row
    assert not ui.acceptButton.enabled and "Click a case" in ui.acceptButton.toolTip
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    before = scene.GetNumberOfNodes()
    table.emit("cellClicked(int,int)", 0, 1)
    assert scene.GetNumberOfNodes() > before and record.errors == []
    assert ui.reviewCaseLabel.text.startswith(f"{ranked[0]}: pending; mean entropy")
    assert composite.GetBackgroundVolumeID() in {v.GetID() for v in volumes}  # scene volume
    assert composite.GetForegroundOpacity() == pytest.approx(0.5)
    ui.overlayOpacitySliderWidget.emit("valueChanged(double)", 0.7)
    assert composite.GetForegroundOpacity() == pytest.approx(0.7)
    ui.acceptButton.click()
    assert table.cells[(0, 2)] == "accepted" and "accepted" in ui.reviewCaseLabel.text
    ui.needsCorrectionButton.click()
    assert table.cells[(0, 2)] == "needs_correction"

    # add to dataset: needs the dataset; the name is suggested
    assert "dataset" in ui.addToDatasetButton.toolTip and not ui.addToDatasetButton.enabled
    ds = write_dataset(tmp_path / "Dataset007_Rev", num_cases=1, shape=GEO.shape,
                       spacing=GEO.spacing)
    spec = json.loads((ds / "dataset.json").read_text())
    spec["labels"] = {"background": 0, "a": 1, "b": 2}
    (ds / "dataset.json").write_text(json.dumps(spec))
    p.datasetFolder = ds
    table.emit("cellClicked(int,int)", 0, 0)   # same case: shown again, not loaded again
    assert ui.datasetCaseNameLineEdit.text == ranked[0]
    ui.datasetCaseNameLineEdit.emit("textChanged(QString)", ranked[0])
    assert ui.addToDatasetButton.enabled, ui.addToDatasetButton.toolTip
    ui.addToDatasetButton.click()
    assert ui.reviewStatusLabel.text == f"Added as '{ranked[0]}' (2 training case(s) now).", \
        record.errors
    assert (ds / "labelsTr" / f"{ranked[0]}.nii.gz").is_file()
    assert ui.reviewCaseLabel.text.endswith(f"added to the dataset as '{ranked[0]}'.")
    assert table.cells[(0, table.header.index("added"))] == ranked[0]
    record.answer = False        # adding again asks before replacing; "no" writes nothing
    ui.addToDatasetButton.click()
    assert "already has a case" in record.questions[-1]
    assert ui.reviewStatusLabel.text.startswith("Added as")
    record.answer = True
    ui.datasetCaseNameLineEdit.text = "x_0001"
    ui.addToDatasetButton.click()
    assert "ends like a channel suffix" in record.errors[-1]
    record.errors.clear()

    # restart in a new scene: the remembered batch folder brings the queue back
    assert slicer_stubs.QSettings.store["NNSeg/BatchFolder"] == str(tmp_path / "batch")
    p.batchFolder = Path(".")
    again = module.NNSegWidget()
    again.setup()
    assert again._parameterNode.batchFolder == tmp_path / "batch"
    assert again.ui.reviewTableWidget.rows == 2
    assert again.ui.reviewTableWidget.cells[(0, 2)] == "needs_correction"
    assert not again.ui.acceptButton.enabled   # nothing under review in the new session
    again.cleanup()
    assert record.errors == []


def test_fine_tune_from_the_panel_then_did_it_help(app, tmp_path, monkeypatch):
    """Fine-tune: a new one archives v1; an interrupted one is continued; the comparison
    shows afterwards (the jobs are stand-ins that write what the commands would)."""
    import json
    import shutil

    widget, _scene, record, _module = app
    ui, p = widget.ui, widget._parameterNode
    dataset, work = _ready_work(tmp_path)
    p.datasetFolder, p.workFolder, p.folds = dataset, work, "0"
    assert "Nothing trained" in ui.fineTuneButton.toolTip and not ui.fineTuneButton.enabled
    results = work / "results"
    _fold(results, "0", "checkpoint_final.pt", dice=0.8)
    widget.updateGui()
    assert ui.fineTuneButton.enabled and ui.fineTuneInfoLabel.text.startswith("New fine-tune")
    started = []

    def finish(steps):   # what archive-model + train --init-from write
        shutil.move(str(results), str(work / "model_versions" / "v1"))
        _fold(results, "0", "checkpoint_latest.pt")
        (results / "model_version.json").write_text(json.dumps(
            {"version": 2, "parent": {"path": str(work / "model_versions" / "v1"),
                                      "version": 1}}))

    effects = [finish]
    monkeypatch.setattr(widget.logic.lib, "start_training",
                        lambda steps, work_, detached, kind="train": started.append(
                            (steps, kind)) or _DoneJob(steps, effects.pop(0)))
    p.fineTuneEpochs = 3
    ui.fineTuneButton.click()
    [(steps, kind)] = started
    assert kind == "finetune" and [s[0] for s in steps] == ["archive-model", "preprocess", "train"]
    assert steps[-1][steps[-1].index("--init-from") + 1] == str(work / "model_versions" / "v1")
    assert steps[-1][steps[-1].index("--epochs") + 1] == "3"
    assert widget.board.get("finetune").context["maxEpochs"] == 3
    assert ui.fineTuneButton.text == "Cancel" and not ui.trainButton.enabled
    assert "Fine-tuning runs" in ui.fineTuneInfoLabel.text
    _wait(widget, "finetune")
    assert ui.fineTuneStatusLabel.text.startswith("Fine-tuning completed"), record.errors
    # the fold did not finish (cancelled, say): the next click continues it
    assert ui.fineTuneInfoLabel.text.startswith("Continues the fine-tune in progress (v2)")
    assert ui.fineTuneSummaryLabel.text.startswith("No fold validated by both v1 and v2")

    def complete(steps):
        _fold(results, "0", "checkpoint_final.pt", dice=0.85)

    effects.append(complete)
    ui.fineTuneButton.click()
    steps, kind = started[-1]
    assert [s[0] for s in steps] == ["preprocess", "train"] and "--continue" in steps[-1]
    _wait(widget, "finetune")
    assert ui.fineTuneSummaryLabel.text == "CV Dice v1 0.800 → v2 0.850 (+0.050; fold(s) 0)"
    assert ui.fineTuneTableWidget.header == ["fold", "label", "v1", "v2", "change"]
    assert ui.fineTuneTableWidget.cells[(0, 4)] == "+0.050"
    assert ui.fineTuneInfoLabel.text.startswith("New fine-tune: the current model (v2)")
    assert record.errors == []


@pytest.mark.slow
def test_nnsegtest_clinician_loop_headless(app, monkeypatch):
    """NNSegTest.test_ClinicianLoop, the in-Slicer self-test of issue 12, run on the stubbed
    application: the loop walk on the "application" scene, then the Batch and review panel."""
    import types

    import slicer

    widget, scene, record, module = app
    ns = types.SimpleNamespace
    monkeypatch.setattr(slicer, "app", ns(testingEnabled=lambda: True, processEvents=lambda: None,
                                          applicationLogic=lambda: None), raising=False)
    monkeypatch.setattr(slicer.modules, "segmentations", ns(logic=lambda: None), raising=False)
    monkeypatch.setattr(slicer.modules, "nnseg", ns(widgetRepresentation=lambda: ns(
        self=lambda: widget)), raising=False)
    monkeypatch.setattr(slicer.util, "selectModule", lambda name: None, raising=False)
    module.NNSegTest().test_ClinicianLoop()
    assert record.errors == []
