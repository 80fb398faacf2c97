"""Every panel clicked in the order a clinician would, with real background jobs.

Dataset (add cases, export) → Plan → Train one short epoch (the chart gains points) →
Segment (preview first; a second run cancelled mid-job) → Batch → review row click,
Accept, Add to dataset → Fine-tune. Checked at each step: enabled states and tooltips,
and that no exception and no Qt warning reached the log.
"""

from __future__ import annotations

import sys
import time

import pytest
from moduleutil import add_case, assert_columns_fit, open_module

pytestmark = pytest.mark.gui


def wait(widget, key: str, timeout: float = 300.0) -> None:
    """Let Slicer's event loop run (the panel's QTimer polls the job) until it ended."""
    import slicer

    deadline = time.monotonic() + timeout
    while widget.board.get(key) is not None:
        assert time.monotonic() < deadline, f"{key} job still running"
        slicer.app.processEvents()
        time.sleep(0.05)
    slicer.app.processEvents()


def test_click_path(harness, tmp_path):
    import slicer
    from harness.dialogs import DIALOGS
    from harness.pythonqt import LOG

    widget = open_module(harness)
    widget.logic.python = sys.executable
    ui, p, scene = widget.ui, widget._parameterNode, harness.scene()
    cases = [add_case(scene, f"case{i}", i) for i in range(5)]
    # (1) Dataset: the selectors follow the scene; Add case per pair
    assert ui.pairVolumeSelector.currentNode() is not None
    for volume, seg in cases:
        ui.pairVolumeSelector.setCurrentNode(volume)
        ui.pairSegmentationSelector.setCurrentNode(seg)
        assert ui.addPairButton.enabled, ui.addPairButton.toolTip
        ui.addPairButton.click()
    assert ui.pairsTableWidget.rowCount == 5
    assert ui.pairsTableWidget.item(0, 2).text() == "a, b"
    ui.channelNamesLineEdit.text = "MR"
    ui.datasetFolderPathLineEdit.currentPath = str(tmp_path / "Dataset002_Test")
    assert str(p.datasetFolder) == str(tmp_path / "Dataset002_Test")
    ui.workFolderPathLineEdit.currentPath = str(tmp_path / "work")
    assert ui.exportDatasetButton.enabled, ui.exportDatasetButton.toolTip
    ui.exportDatasetButton.click()
    assert ui.checkResultsTextEdit.toPlainText().splitlines()[-1].startswith("OK:")
    # (2) Plan
    assert ui.planButton.enabled, ui.planButton.toolTip
    ui.configurationsLineEdit.text = "3d_fullres"
    ui.planButton.click()
    assert ui.planButton.text == "Cancel" and not ui.exportDatasetButton.enabled
    wait(widget, "plan")
    assert ui.planStatusLabel.text.startswith("Planning completed"), ui.planStatusLabel.text
    assert ui.plansTableWidget.columnCount == 1 and ui.plansTableWidget.rowCount > 3
    assert_columns_fit(ui.plansTableWidget)
    assert_columns_fit(ui.pairsTableWidget)
    # (3) Train one short epoch: CPU warning asked, chart gains points
    widget.trainOptions = ["--iterations-per-epoch", "3", "--val-iterations", "1"]
    ui.maxEpochsSpinBox.value = 2
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    assert ui.trainButton.enabled, ui.trainButton.toolTip
    DIALOGS.expect(int(_qt().QMessageBox.Ok))  # "Training will run on the CPU ... anyway?"
    ui.trainButton.click()
    wait(widget, "train")
    assert ui.trainStatusLabel.text.startswith("Training completed"), ui.trainStatusLabel.text
    table = widget.chartNode and slicer.mrmlScene.GetNodesByClass("vtkMRMLTableNode")
    assert table is not None and widget.epochRecords and len(widget.epochRecords) == 2
    assert ui.runsListWidget.count == 1
    # (4) Segment, preview first
    ui.useTrainedModelButton.click()
    assert ui.modelInfoLabel.text, "the chosen model is described"
    ui.inputVolumeSelector.setCurrentNode(cases[0][0])
    ui.previewFirstCheckBox.checked = True
    ui.predictDeviceComboBox.currentIndex = ui.predictDeviceComboBox.findText("cpu")
    before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    assert ui.segmentButton.enabled, ui.segmentButton.toolTip
    ui.segmentButton.click()
    wait(widget, "segment")
    assert ui.segmentStatusLabel.text.startswith("Segmentation completed"), \
        ui.segmentStatusLabel.text
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before + 1
    #    a second run, cancelled at once: the button reads Cancel and asks first
    ui.previewFirstCheckBox.checked = False
    ui.segmentButton.click()
    assert ui.segmentButton.text == "Cancel"
    DIALOGS.expect(int(_qt().QMessageBox.Ok))
    ui.segmentButton.click()
    wait(widget, "segment")
    assert "ancel" in ui.segmentStatusLabel.text, ui.segmentStatusLabel.text
    assert LOG.problems() == [], LOG.problems()


def _qt():
    import qt

    return qt


def test_batch_review_add_and_fine_tune(harness, tmp_path, trained_work):
    """Batch and review panel: segment checked scene volumes, click the least certain row,
    Accept, Add to dataset, then Fine-tune one epoch from the panel."""
    import shutil

    import qt
    from harness.pythonqt import LOG

    dataset, work = (shutil.copytree(p, tmp_path / p.name) for p in trained_work)
    widget = open_module(harness)
    widget.logic.python = sys.executable
    widget.trainOptions = ["--iterations-per-epoch", "3", "--val-iterations", "1"]
    ui, scene = widget.ui, harness.scene()
    ui.datasetFolderPathLineEdit.currentPath = str(dataset)
    ui.workFolderPathLineEdit.currentPath = str(work)
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    assert ui.runsListWidget.count == 1  # the work folder's finished run is listed
    ui.useTrainedModelButton.click()
    ui.predictDeviceComboBox.currentIndex = ui.predictDeviceComboBox.findText("cpu")
    ui.ttaCheckBox.checked = False
    # (5) batch of two checked scene volumes
    new = [add_case(scene, f"new{i}", 10 + i)[0] for i in range(2)]
    ui.batchSourceComboBox.currentIndex = ui.batchSourceComboBox.findText("scene volumes")
    assert ui.batchVolumesSelector.enabled and not ui.batchInputFolderPathLineEdit.enabled
    for volume in new:
        ui.batchVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    assert len(ui.batchVolumesSelector.checkedNodes()) == 2
    ui.batchFolderPathLineEdit.currentPath = str(tmp_path / "batch")
    assert ui.batchButton.enabled, ui.batchButton.toolTip
    ui.batchButton.click()
    wait(widget, "batch")
    assert ui.batchStatusLabel.text.startswith("Batch completed"), ui.batchStatusLabel.text
    table = ui.reviewTableWidget
    assert table.rowCount == 2
    assert_columns_fit(table)
    assert not ui.acceptButton.enabled and ui.acceptButton.toolTip
    # the least certain case: a click on its row shows it, Accept stores the state
    _click_cell(table, 0, 1)
    assert ui.reviewCaseLabel.text.split(":")[0] == table.item(0, 1).text()
    assert ui.acceptButton.enabled, ui.acceptButton.toolTip
    ui.acceptButton.click()
    assert table.item(0, 2).text() == "accepted"
    # add the reviewed case to the dataset (its suggested name)
    assert ui.datasetCaseNameLineEdit.text == table.item(0, 1).text()
    assert ui.addToDatasetButton.enabled, ui.addToDatasetButton.toolTip
    ui.addToDatasetButton.click()
    assert ui.reviewStatusLabel.text.startswith("Added as"), ui.reviewStatusLabel.text
    # (6) fine-tune one epoch from the current model
    ui.fineTuneEpochsSpinBox.value = 1
    assert ui.fineTuneButton.enabled, ui.fineTuneButton.toolTip
    ui.fineTuneButton.click()
    wait(widget, "finetune")
    assert ui.fineTuneStatusLabel.text.startswith("Fine-tuning completed"), \
        ui.fineTuneStatusLabel.text
    assert ui.fineTuneSummaryLabel.text.startswith("CV Dice v1 "), ui.fineTuneSummaryLabel.text
    assert LOG.problems() == [], LOG.problems()


def _click_cell(table, row: int, column: int) -> None:
    """A user's click on a cell: Qt emits cellClicked(int,int) from the view's viewport."""
    from PyQt5 import QtCore
    from PyQt5.QtTest import QTest

    rect = table.visualItemRect(table.item(row, column))
    QTest.mouseClick(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier,
                     rect.center())


def test_add_from_folder_loads_an_nnunet_dataset(harness, tmp_path):
    """*Add from folder…*: the folder dialog, then each case's images and label map loaded
    through Slicer's readers and added as a case."""
    from harness.dialogs import DIALOGS
    from harness.pythonqt import LOG
    from moduleutil import write_scene_like_dataset

    dataset = write_scene_like_dataset(tmp_path / "Dataset006_Folder", num_cases=3)
    widget = open_module(harness)
    ui = widget.ui
    DIALOGS.files.append(str(dataset))
    ui.addFromFolderButton.click()
    assert "Folder of images and segmentations" in DIALOGS.shown
    assert ui.pairsTableWidget.rowCount == 3
    assert ui.pairsTableWidget.item(0, 2).text() == "a, b"
    assert ui.labelsStatusLabel.text.startswith("3 case(s); labels 0: background, 1: a, 2: b")
    assert harness.scene().GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 3
    assert LOG.problems() == [], LOG.problems()


def test_find_best_on_the_trained_fold_then_open_the_report(harness, tmp_path, trained_work):
    """Train panel after fold 0 alone (the panel's default folds): *Find best configuration*
    cross-validates fold 0 and says so, the evaluation report follows, *Open report* opens
    it (caught by a file-URL handler instead of a browser)."""
    import shutil

    from harness.pythonqt import LOG
    from PyQt5 import QtCore, QtGui

    dataset, work = (shutil.copytree(p, tmp_path / p.name) for p in trained_work)
    widget = open_module(harness)
    widget.logic.python = sys.executable
    ui = widget.ui
    ui.datasetFolderPathLineEdit.currentPath = str(dataset)
    ui.workFolderPathLineEdit.currentPath = str(work)
    assert not ui.openReportButton.enabled and "Find best" in ui.openReportButton.toolTip
    assert ui.findBestButton.enabled, ui.findBestButton.toolTip
    ui.findBestButton.click()
    wait(widget, "findbest")
    text = ui.findBestResultTextEdit.toPlainText()
    assert "3d_fullres" in text and "<- best" in text, text
    assert text.endswith("validation cases of fold(s) 0"), text

    class Browser(QtCore.QObject):
        opened: list[str] = []

        @QtCore.pyqtSlot(QtCore.QUrl)
        def open(self, url) -> None:
            self.opened.append(url.toLocalFile())

    browser = Browser()
    QtGui.QDesktopServices.setUrlHandler("file", browser, "open")
    try:
        assert ui.openReportButton.enabled, ui.openReportButton.toolTip
        ui.openReportButton.click()
    finally:
        QtGui.QDesktopServices.unsetUrlHandler("file")
    report = work / "evaluation" / "cross_validation" / "report.html"
    assert browser.opened == [str(report)] and report.is_file()
    assert LOG.problems() == [], LOG.problems()
