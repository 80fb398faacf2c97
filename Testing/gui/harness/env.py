"""Assemble what Slicer's Python sees: ``qt``, ``ctk`` and ``slicer`` for one release.

* ``qt``: the PyQt5 classes (real Qt 5.15, offscreen) with PythonQt's attribute rules; the
  classes of ``api_facts.json`` are strict, others keep their PyQt API.
* ``ctk``, ``slicer.qMRML*``: the look-alikes of :mod:`.ctk` and :mod:`.qmrml`.
* ``slicer``: slicer-core's real MRML, plus Slicer's own Python layer of the chosen release
  (``../shared/slicer/python/<version>/slicer``: util, parameterNodeWrapper,
  ScriptedLoadableModule, i18n), imported unchanged, plus ``slicer.app``, ``mrmlScene``
  and ``modules``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

from . import application, ctk, qmrml
from .facts import SHARED, class_facts, raw_facts
from .pythonqt import LOG, install_handlers

_STATE: dict = {}
LAYER = ("i18n", "util", "parameterNodeWrapper", "ScriptedLoadableModule")


def _qt_module():
    from . import qtmodule

    qt = qtmodule.module()
    qt.QUiLoader = UiLoader
    qt._make = qtmodule.qt_class
    return qt


class UiLoader:
    """``qt.QUiLoader``: Slicer's form builder with its widget plugins."""

    def load(self, qfile):
        from . import uiloader

        return uiloader.load(qfile.fileName(), _STATE["classes"])


def _application_class(qt):
    from PyQt5 import QtWidgets
    from PyQt5.QtCore import pyqtSlot

    class qSlicerApplication(qt.QApplication):
        _pq = class_facts("qSlicerApplication")

        @pyqtSlot(result=object)
        def mrmlScene(self):
            return _STATE["context"].scene

        @pyqtSlot(result=object)
        def applicationLogic(self):
            return _STATE["context"].app_logic

        @pyqtSlot(result=object)
        def moduleManager(self):
            return self._module_manager

        @pyqtSlot(str, result=object)
        def moduleLogic(self, name):
            return self._module_logics.get(name)

        @pyqtSlot(result=object)
        def coreIOManager(self):
            return self._io_manager

        @pyqtSlot(result=object)
        def layoutManager(self):
            return None

        @pyqtSlot(result=object)
        def settings(self):
            return qt.QSettings()

        @pyqtSlot(result=object)
        def userSettings(self):
            return qt.QSettings()

        @staticmethod
        def testingEnabled() -> bool:
            return _STATE.get("testing", False)

        def processEvents(self, *args) -> None:
            QtWidgets.QApplication.processEvents(*args)

    qSlicerApplication._pq.wrapped |= {"processEvents", "testingEnabled"}
    return qSlicerApplication


def _load_file(name: str, path: Path, package: bool = False):
    spec = importlib.util.spec_from_file_location(
        name, path / "__init__.py" if package else path,
        submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def start(version: str):
    """The application for ``version`` (created once per process; the layer is swapped)."""
    if SHARED is None:
        raise RuntimeError("../shared/slicer is not here")
    if _STATE.get("version") == version:
        return _STATE["app"]
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if "XDG_RUNTIME_DIR" not in os.environ:  # Qt warns without one (a desktop session has it)
        import tempfile

        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="xdg-")
    if "app" not in _STATE:
        _first_start()
    import slicer

    folder = SHARED / "python" / version / "slicer"
    for name in list(sys.modules):
        if name.startswith(tuple(f"slicer.{n}" for n in LAYER)):
            del sys.modules[name]
    for name in LAYER:
        package = (folder / name).is_dir()
        module = _load_file(f"slicer.{name}", folder / name if package else folder / f"{name}.py",
                            package)
        setattr(slicer, name, module)
    for cls in list(ctk.CLASSES.values()) + list(qmrml.CLASSES.values()):
        cls._pq = class_facts(cls.__name__, version)  # 5.12.3-only API only on 5.12.3
    _STATE["version"] = version
    return _STATE["app"]


def _first_start() -> None:
    install_handlers()
    qt = _qt_module()
    sys.modules["qt"] = qt
    ctk_module = types.ModuleType("ctk")
    for name, cls in ctk.CLASSES.items():
        setattr(ctk_module, name, cls)
    ctk_module.__getattr__ = _absent_factory("ctk")  # type: ignore[attr-defined]
    sys.modules["ctk"] = ctk_module
    import slicer  # slicer-core: real MRML
    import vtk  # noqa: F401

    app_class = _application_class(qt)
    app = app_class(["NNSegHarness"])
    app.setApplicationName("Slicer")
    app.setOrganizationName("NA-MIC")
    app.setOrganizationDomain("www.na-mic.org")
    _STATE.update(app=app, context=_application_scene())
    plots = slicer.vtkSlicerPlotsLogic()
    plots.SetMRMLScene(_STATE["context"].scene)
    plots.SetMRMLApplicationLogic(_STATE["context"].app_logic)
    app._module_manager = application.ModuleManager()
    app._io_manager = application.CoreIOManager(_STATE["context"].scene,
                                                _STATE["context"].segmentations_logic)
    app._module_logics = {"Segmentations": _STATE["context"].segmentations_logic, "Plots": plots}
    slicer.app = app
    slicer.mrmlScene = _STATE["context"].scene
    slicer.modules = types.SimpleNamespace(
        segmentations=application.LogicModule(_STATE["context"].segmentations_logic),
        plots=application.LogicModule(plots))
    for name, cls in qmrml.CLASSES.items():
        setattr(slicer, name, cls)
    for name in ("qSlicerScriptedLoadableModuleWidget", "qSlicerScriptedLoadableModule"):
        setattr(slicer, name, getattr(application, name))
    for missing in ("qMRMLSubjectHierarchyComboBox", "qMRMLSubjectHierarchyTreeView",
                    "qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget",
                    "qMRMLSegmentSelectorWidget", "qMRMLSubjectHierarchyModel"):
        if not hasattr(slicer, missing):
            setattr(slicer, missing, _absent(missing))
    classes = {}
    for name in raw_facts():
        if name.startswith("Q") and not name.startswith("_"):
            try:
                classes[name] = qt._make(name)
            except AttributeError:
                pass
    for name in ("QVBoxLayout", "QHBoxLayout", "QGridLayout", "QFormLayout", "QWidget",
                 "QGroupBox", "QToolButton", "QRadioButton", "QSlider", "QTextEdit"):
        classes[name] = qt._make(name)
    classes.update(ctk.CLASSES)
    classes.update(qmrml.CLASSES)
    _STATE["classes"] = classes
    window = application.MainWindow(app)
    _STATE["window"] = window
    app.module_manager = app._module_manager
    app.create_widget = application.create_widget


def _application_scene():
    """The scene and module logics qSlicerCoreApplication sets up (colours, segmentations);
    the harness does not rely on NNSegLib for it."""
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(scene)
    segmentations.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic("Segmentations", segmentations)
    return types.SimpleNamespace(scene=scene, app_logic=app_logic,
                                 segmentations_logic=segmentations)


def _absent_factory(prefix: str):
    cache: dict[str, type] = {}

    def get(name: str):
        if not name.startswith(prefix):
            raise AttributeError(name)
        return cache.setdefault(name, _absent(name))

    return get


def _absent(name: str):
    def create(*args, **kwargs):
        raise NotImplementedError(f"{name} is not part of the harness (NNSeg does not use it)")

    return type(name, (), {"__new__": lambda cls, *a, **k: create()})


def scene():
    return _STATE["context"].scene


def load_module(folder: Path, name: str = "NNSeg"):
    """The module as Slicer loads it from *Additional module paths* (its folder)."""
    return application.load_scripted_module(_STATE["app"], folder, name)


def select(name: str) -> None:
    _STATE["window"].moduleSelector().selectModule(name)


def set_testing(enabled: bool) -> None:
    _STATE["testing"] = enabled


__all__ = ["LOG", "load_module", "scene", "select", "set_testing", "start"]


def unload_all() -> None:
    """Slicer exiting: ``moduleAboutToBeUnloaded`` for each module (its widget's cleanup)."""
    from PyQt5 import QtWidgets

    app = _STATE["app"]
    QtWidgets.QApplication.processEvents()  # pending single shots run in their own session
    panel = _STATE["window"].moduleSelector()
    if panel.current is not None and panel.current._widget is not None:
        panel.current._widget.exit()
    panel.current = None
    for name in list(app._module_manager.modules):
        app._module_manager.moduleAboutToBeUnloaded.emit(name)
    app._module_manager.modules.clear()


def module_widget(name: str = "NNSeg"):
    import slicer

    return getattr(slicer.modules, name + "Widget")


def reset_scene() -> None:
    """An empty scene, parameter nodes included (Clear(0) keeps singletons), while the
    widgets observing them are still alive; then Qt's deferred deletions run."""
    from PyQt5 import QtCore, QtWidgets

    scene = _STATE["context"].scene
    for node in list(_nodes(scene, "vtkMRMLScriptedModuleNode")):
        scene.RemoveNode(node)
    scene.Clear(0)
    _add_views(scene)
    QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)


def _add_views(scene) -> None:
    """The three slice views' nodes that Slicer's layout manager keeps in every scene
    (singletons named by layout: they survive Clear(0))."""
    for name in ("Red", "Yellow", "Green"):
        for cls in ("vtkMRMLSliceNode", "vtkMRMLSliceCompositeNode"):
            if scene.GetSingletonNode(name, cls) is None:
                node = scene.CreateNodeByClass(cls)
                node.SetSingletonTag(name)
                node.SetLayoutName(name)
                scene.AddNode(node)


def _nodes(scene, cls: str):
    return [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]
