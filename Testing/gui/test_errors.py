"""An error in one step of a handler is shown to the user once and the handler goes on
(Slicer's tryWithErrorDisplay shows the error, then re-raises it: uncaught, the rest of the
handler is skipped and a traceback lands in the Python console)."""

from __future__ import annotations

import shutil
import sys

import pytest
from moduleutil import add_case, open_module

pytestmark = pytest.mark.gui


def test_device_detection_failure_does_not_stop_the_startup(harness, tmp_path, trained_work,
                                                             monkeypatch):
    import qt
    import slicer
    from harness.dialogs import DIALOGS
    from harness.pythonqt import LOG

    from NNSegLib.slicer import devices

    def broken(requested="auto"):
        raise RuntimeError("no driver")

    monkeypatch.setattr(devices, "detect_device", broken)
    dataset = shutil.copytree(trained_work[0], tmp_path / trained_work[0].name)
    work = shutil.copytree(trained_work[1], tmp_path / "work" / dataset.name)
    settings = qt.QSettings()  # the folders of the last session
    settings.setValue("NNSeg/DatasetFolder", str(dataset))
    settings.setValue("NNSeg/WorkFolder", str(work))
    DIALOGS.expect(int(qt.QMessageBox.Ok))
    widget = open_module(harness)
    slicer.app.processEvents()  # onStartup (a zero-delay single shot after setup)
    assert any("Could not inspect the device." in t for t in DIALOGS.shown), DIALOGS.shown
    assert widget.ui.runsListWidget.count == 1  # the rest of the startup still ran
    assert "3d_fullres fold 0: finished" in widget.ui.runsListWidget.item(0).text()
    assert LOG.problems() == [], LOG.problems()


def test_a_result_that_cannot_be_loaded_says_so(harness, tmp_path, trained_work, monkeypatch):
    import qt
    from harness.dialogs import DIALOGS
    from harness.pythonqt import LOG
    from test_click_path import wait

    from NNSegLib.slicer.panels import segment

    def broken(scene, run):
        raise OSError("disk full")

    _dataset, work = (shutil.copytree(p, tmp_path / p.name) for p in trained_work)
    widget = open_module(harness)
    widget.logic.python = sys.executable
    ui = widget.ui
    ui.workFolderPathLineEdit.currentPath = str(work)
    ui.useTrainedModelButton.click()
    volume, _seg = add_case(harness.scene(), "case0", 0)
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.predictDeviceComboBox.currentIndex = ui.predictDeviceComboBox.findText("cpu")
    monkeypatch.setattr(segment, "deliver_results", broken)
    DIALOGS.expect(int(qt.QMessageBox.Ok))
    ui.segmentButton.click()
    wait(widget, "segment")
    assert any("Loading the result failed." in t and "disk full" in t for t in DIALOGS.shown)
    assert ui.segmentStatusLabel.text.startswith("Loading the result failed."), \
        ui.segmentStatusLabel.text
    assert ui.segmentButton.text == "Segment" and ui.segmentButton.enabled
    assert LOG.problems() == [], LOG.problems()
