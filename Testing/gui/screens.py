"""Pictures of the five panels, drawn by real Qt from the module as a clinician uses it.

``python Resources/Screenshots/make_panel_screenshots.py`` calls :func:`make_panel_screenshots`
(needs ``../shared/slicer``, PyQt5 and slicer-core, as the GUI tests): the harness of
Slicer 5.12.3 loads NNSeg from its folder, five sample cases are added and exported, the
plan and a three-epoch training run as real background jobs, a volume is segmented, a batch
of two is segmented and its least certain case clicked. Each panel is then grabbed at the
width of Slicer's module panel. The training chart lives in Slicer's plot view, not in the
panel: it is drawn (matplotlib) from the chart's own table node under the Train panel.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

#: Width of Slicer's module panel in a default 1920-pixel-wide main window.
PANEL_WIDTH = 460
PANELS = {"dataset": "datasetCollapsibleButton", "plan": "planCollapsibleButton",
          "train": "trainCollapsibleButton", "segment": "segmentCollapsibleButton",
          "review": "reviewCollapsibleButton"}


def _wait(widget, key: str, timeout: float = 600.0) -> None:
    import slicer

    deadline = time.monotonic() + timeout
    while widget.board.get(key) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(key)
        slicer.app.processEvents()
        time.sleep(0.05)
    slicer.app.processEvents()


def _fill(widget, env, root: Path) -> None:
    import qt
    from harness.dialogs import DIALOGS
    from moduleutil import add_case

    ui, scene = widget.ui, env.scene()
    widget.logic.python = sys.executable
    cases = [add_case(scene, f"case{i}", i) for i in range(5)]
    for volume, seg in cases:
        ui.pairVolumeSelector.setCurrentNode(volume)
        ui.pairSegmentationSelector.setCurrentNode(seg)
        ui.addPairButton.click()
    ui.channelNamesLineEdit.text = "MR"
    ui.datasetFolderPathLineEdit.currentPath = str(root / "Dataset005_Sample")
    ui.workFolderPathLineEdit.currentPath = str(root / "work")
    ui.exportDatasetButton.click()
    ui.configurationsLineEdit.text = "3d_fullres"
    ui.planButton.click()
    _wait(widget, "plan")
    widget.trainOptions = ["--iterations-per-epoch", "4", "--val-iterations", "1"]
    ui.maxEpochsSpinBox.value = 3
    ui.deviceComboBox.currentIndex = ui.deviceComboBox.findText("cpu")
    DIALOGS.expect(int(qt.QMessageBox.Ok))
    ui.trainButton.click()
    _wait(widget, "train")
    ui.useTrainedModelButton.click()
    ui.inputVolumeSelector.setCurrentNode(cases[0][0])
    ui.predictDeviceComboBox.currentIndex = ui.predictDeviceComboBox.findText("cpu")
    ui.ttaCheckBox.checked = False
    ui.segmentButton.click()
    _wait(widget, "segment")
    new = [add_case(scene, f"new{i}", 10 + i)[0] for i in range(2)]
    ui.batchSourceComboBox.currentIndex = ui.batchSourceComboBox.findText("scene volumes")
    for volume in new:
        ui.batchVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    ui.batchFolderPathLineEdit.currentPath = str(root / "batch")
    ui.batchButton.click()
    _wait(widget, "batch")
    from test_click_path import _click_cell

    _click_cell(ui.reviewTableWidget, 0, 1)


def _chart_png(widget) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import slicer

    chart = widget.chartNode
    table = slicer.mrmlScene.GetNodeByID(chart.GetAttribute("NNSeg.Table")).GetTable()
    columns = {table.GetColumn(c).GetName(): [table.GetValue(r, c).ToDouble()
                                              for r in range(table.GetNumberOfRows())]
               for c in range(table.GetNumberOfColumns())}
    fig, ax = plt.subplots(figsize=(PANEL_WIDTH / 100, 2.6), dpi=100)
    for name, values in columns.items():
        if name != "epoch":
            ax.plot(columns["epoch"], values, marker="o", label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(chart.GetXAxisTitle())
    ax.set_ylabel(chart.GetYAxisTitle())
    ax.set_title(f"{chart.GetTitle()} (Slicer's plot view, from the chart's table node)",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _grab(widget, name: str, below: bytes | None = None):
    from PyQt5 import QtCore, QtGui

    panel = getattr(widget.ui, PANELS[name])
    for other in PANELS.values():
        getattr(widget.ui, other).collapsed = other != PANELS[name]
    module_panel = widget.parent
    module_panel.resize(PANEL_WIDTH, 2000)
    module_panel.show()
    for _ in range(5):
        QtCore.QCoreApplication.processEvents()
    module_panel.resize(PANEL_WIDTH, module_panel.sizeHint.height())
    QtCore.QCoreApplication.processEvents()
    image = panel.grab().toImage()
    if below is None:
        return image
    chart = QtGui.QImage.fromData(below)
    out = QtGui.QImage(max(image.width(), chart.width()), image.height() + chart.height(),
                       QtGui.QImage.Format_ARGB32)
    out.fill(QtGui.QColor("white"))
    painter = QtGui.QPainter(out)
    painter.drawImage(0, 0, image)
    painter.drawImage(0, image.height(), chart)
    painter.end()
    return out


def make_panel_screenshots(out_dir: Path, version: str = "5.12.3") -> list[Path]:
    """Write ``NNSeg_panel_<name>.png`` for the five panels; returns their paths."""
    from harness import env
    from moduleutil import REPO, open_module
    from PyQt5 import QtCore

    env.start(version)
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    with tempfile.TemporaryDirectory(prefix="nnseg_screens_") as tmp:
        QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, tmp)
        env.reset_scene()
        widget = open_module(env)
        _fill(widget, env, Path(tmp))
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in PANELS:
            image = _grab(widget, name, _chart_png(widget) if name == "train" else None)
            path = out_dir / f"NNSeg_panel_{name}.png"
            if not image.save(str(path)):
                raise OSError(f"could not write {path}")
            written.append(path)
        env.unload_all()
        env.reset_scene()
    del REPO
    return written
