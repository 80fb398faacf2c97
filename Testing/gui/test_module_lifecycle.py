"""NNSeg driven as Slicer drives a scripted module, in real Qt, on 5.10.0 and 5.12.3."""

from __future__ import annotations

from pathlib import Path

import pytest
from moduleutil import REPO, add_case, bound_widgets, open_module, other_module

pytestmark = pytest.mark.gui

#: A GUI value per parameter (a value the widget accepts and differs from the default).
GUI_VALUES = {
    "channelNames": "T1, T2", "recipe": "v2", "memoryBudgetAuto": False,
    "memoryBudgetGB": 12.5, "configurations": "3d_fullres", "trainConfiguration": "2d",
    "folds": "0-4", "maxEpochs": 7, "device": "cpu", "detachTraining": True,
    "timeBudget": True, "timeBudgetMinutes": 25, "predictDevice": "cpu", "predictFolds": "0",
    "tta": False, "uncertainty": True, "postprocessing": False, "show3D": True,
    "allowUnfinished": True, "previewFirst": True, "batchSource": "scene volumes",
    "overlayOpacity": 0.25, "fineTuneEpochs": 30, "fineTuneAdaptHead": True,
}


def _all_values(scene, tmp_path) -> dict:
    """A value for every bound parameter: GUI_VALUES, nodes of a case and folders."""
    volume, seg = add_case(scene, "case0", 0)
    values = dict(GUI_VALUES)
    values.update(trainingVolume=volume, trainingSegmentation=seg, inputVolume=volume,
                  outputSegmentation=seg, datasetFolder=tmp_path / "Dataset002_X",
                  workFolder=tmp_path / "work", modelPath=tmp_path / "model",
                  batchInputFolder=tmp_path / "in", batchFolder=tmp_path / "batch")
    for path in ("model", "in", "batch"):
        (tmp_path / path).mkdir()
    return values


def _set_gui(w, value) -> None:
    import ctk
    import qt
    import slicer

    if isinstance(w, qt.QAbstractButton):
        w.checked = value
    elif isinstance(w, qt.QComboBox):
        w.currentIndex = w.findText(value)
    elif isinstance(w, (qt.QSpinBox, qt.QDoubleSpinBox, ctk.ctkSliderWidget)):
        w.value = value
    elif isinstance(w, qt.QLineEdit):
        w.text = value
    elif isinstance(w, ctk.ctkPathLineEdit):
        w.currentPath = str(value)
    elif isinstance(w, slicer.qMRMLNodeComboBox):
        w.setCurrentNode(value)
    else:
        raise AssertionError(f"no way to set {type(w).__name__}")


def _read_gui(w):
    import ctk
    import qt
    import slicer

    if isinstance(w, qt.QAbstractButton):
        return w.checked
    if isinstance(w, qt.QComboBox):
        return w.currentText
    if isinstance(w, (qt.QSpinBox, qt.QDoubleSpinBox, ctk.ctkSliderWidget)):
        return w.value
    if isinstance(w, qt.QLineEdit):
        return w.text
    if isinstance(w, ctk.ctkPathLineEdit):
        return w.currentPath
    if isinstance(w, slicer.qMRMLNodeComboBox):
        return w.currentNode()
    raise AssertionError(type(w).__name__)


def test_module_loads_from_its_folder_sets_up_and_enters(harness):
    from harness.pythonqt import LOG

    widget = open_module(harness)
    assert widget.parent.isEntered
    assert widget.ui.planButton.toolTip  # buttons carry the reason they are disabled
    assert not widget.ui.planButton.enabled
    other_module(harness)
    assert not widget.parent.isEntered
    open_module(harness)  # loaded again (as after Reload) and shown
    assert LOG.problems() == []


def test_ui_values_survive_loading(harness):
    """Every spin box keeps the value the .ui gives it (properties apply in file order)."""
    import xml.etree.ElementTree as ET

    widget = open_module(harness)
    root = ET.parse(REPO / "NNSeg" / "Resources" / "UI" / "NNSeg.ui").getroot()
    checked = 0
    for element in root.iter("widget"):
        prop = element.find("property[@name='value']")
        if prop is None:
            continue
        expected = float(list(prop)[0].text)
        w = getattr(widget.ui, element.get("name"))
        assert w.value == pytest.approx(expected), element.get("name")
        checked += 1
    assert checked >= 5


def test_every_binding_round_trips(harness, tmp_path):
    """GUI → parameter node → GUI for every bound widget, also after exit()/enter() and
    after the scene is saved and loaded again."""
    from harness.pythonqt import LOG

    widget = open_module(harness)
    values = _all_values(harness.scene(), tmp_path)
    widgets = bound_widgets(widget)
    assert set(widgets) == set(values), set(widgets) ^ set(values)
    p = widget._parameterNode
    for name, value in values.items():
        _set_gui(widgets[name], value)
        assert getattr(p, name) == value, f"{name}: GUI → parameter lost"
    other_module(harness)
    open_module(harness)
    widget = harness.module_widget()
    for name, value in values.items():
        assert getattr(widget._parameterNode, name) == value, f"{name} after exit/enter"
        shown = _read_gui(bound_widgets(widget)[name])
        assert shown == (str(value) if isinstance(value, Path) else value), name
    assert LOG.problems() == []


def test_unchosen_model_and_input_folder_show_empty_fields(harness, tmp_path):
    """The model and the batch's input folder start unset (None) and show an empty field, not
    the "." that Slicer's Path connector shows for pathlib.Path(); no path field shows "."."""
    import ctk
    from harness.pythonqt import LOG

    widget = open_module(harness)
    p, widgets = widget._parameterNode, bound_widgets(widget)
    shown = {name: w.currentPath for name, w in widgets.items()
             if isinstance(w, ctk.ctkPathLineEdit)}
    assert len(shown) == 5 and "." not in shown.values(), shown
    for name in ("modelPath", "batchInputFolder"):
        assert getattr(p, name) is None and shown[name] == "", name
        _set_gui(widgets[name], tmp_path)
        assert getattr(p, name) == tmp_path, name
        setattr(p, name, None)  # as a script or a scene without the field
        assert widgets[name].currentPath == "" and getattr(p, name) is None, name
    assert "Choose" in widget.ui.segmentButton.toolTip, widget.ui.segmentButton.toolTip
    assert LOG.problems() == []


def test_settings_survive_saving_and_loading_the_scene(harness, tmp_path):
    """The panels' settings are saved with the scene: after File → Save and loading the
    scene again (a new session), the GUI shows them."""
    import slicer

    widget = open_module(harness)
    scene = harness.scene()
    values = _all_values(scene, tmp_path)
    widgets = bound_widgets(widget)
    for name, value in values.items():
        _set_gui(widgets[name], value)
    volume, seg = values["trainingVolume"], values["trainingSegmentation"]
    path = tmp_path / "scene" / "saved.mrml"
    path.parent.mkdir()
    for node in (volume, seg):  # data files next to the scene, as Save does
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
        storage.SetFileName(str(path.parent / f"{node.GetName()}.nrrd"))
        assert storage.WriteData(node)
    scene.SetURL(str(path))
    assert scene.Commit()
    harness.unload_all()
    harness.reset_scene()
    scene.SetURL(str(path))
    assert scene.Import()
    widget = open_module(harness)
    p, widgets = widget._parameterNode, bound_widgets(widget)
    for name, value in values.items():
        if hasattr(value, "GetID"):  # nodes: the same node (by ID) after loading
            assert getattr(p, name).GetID() == value.GetID(), name
            assert widgets[name].currentNode().GetID() == value.GetID(), name
            continue
        assert getattr(p, name) == value, name
        shown = _read_gui(widgets[name])
        assert shown == (str(value) if isinstance(value, Path) else value), name
    assert slicer.mrmlScene is scene


def test_closing_the_scene_during_a_job_cancels_it(harness, tmp_path, trained_work):
    """A segmentation running when the scene closes is cancelled and says so."""
    import shutil
    import sys

    from harness.pythonqt import LOG

    dataset, work = (shutil.copytree(p, tmp_path / p.name) for p in trained_work)
    widget = open_module(harness)
    widget.logic.python = sys.executable
    ui, scene = widget.ui, harness.scene()
    ui.workFolderPathLineEdit.currentPath = str(work)
    ui.useTrainedModelButton.click()
    volume, _seg = add_case(scene, "case0", 0)
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.predictDeviceComboBox.currentIndex = ui.predictDeviceComboBox.findText("cpu")
    assert ui.segmentButton.enabled, ui.segmentButton.toolTip
    ui.segmentButton.click()
    assert widget.board.get("segment") is not None
    scene.Clear(0)  # File → Close scene
    assert widget.board.get("segment").cancelling
    assert ui.segmentStatusLabel.text == "Cancelled: the scene was closed."
    from test_click_path import wait

    wait(widget, "segment")  # the process stops; nothing is loaded into the new scene
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert "ancel" in ui.segmentStatusLabel.text, ui.segmentStatusLabel.text
    assert LOG.problems() == [], LOG.problems()


def test_reload_as_slicer_does(harness):
    """Slicer's own reloadScriptedModule: the old widget is cleaned up, the new one set up on
    the same parameter node."""
    import slicer
    from harness.pythonqt import LOG

    old = open_module(harness)
    old.ui.foldsLineEdit.text = "0-2"
    reloaded = slicer.util.reloadScriptedModule("NNSeg")
    new = harness.module_widget()
    assert new is not old and reloaded.NNSegWidget is type(new)
    assert new.ui.foldsLineEdit.text == "0-2" and new._parameterNode.folds == "0-2"
    add_case(harness.scene(), "after", 3)  # only the new widget follows the scene
    new.ui.foldsLineEdit.text = "1"
    assert new._parameterNode.folds == "1"
    assert LOG.problems() == [], LOG.problems()


def test_leaving_the_module_before_its_startup_ran(harness):
    """The widget's start-up (a zero-delay single shot after setup) runs after the user
    already switched to another module: nothing fails."""
    import slicer
    from harness.pythonqt import LOG

    harness.load_module(REPO / "NNSeg")
    harness.select("NNSeg")
    other_module(harness)  # exit() before the event loop ran the start-up
    slicer.app.processEvents()
    assert LOG.problems() == [], LOG.problems()


def test_time_budget_below_one_validation_interval_cannot_be_chosen(harness):
    """The panel's minutes spin box stops at the minimum `nnseg train --time-budget`
    accepts (one validation interval, RunConfig.epoch_minutes): a smaller value is clamped
    by the spin box, never sent to a job that would refuse it."""
    from NNSegLib.training.run_config import RunConfig

    widget = open_module(harness)
    spin = widget.ui.timeBudgetSpinBox
    widget.ui.timeBudgetCheckBox.checked = True
    spin.value = 1
    assert spin.value == RunConfig.epoch_minutes == widget._parameterNode.timeBudgetMinutes
