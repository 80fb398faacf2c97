"""The Slicer application around a scripted module: ``slicer.app``, the main window's
module panel, ``slicer.modules`` and how a scripted module is loaded from its folder.

What Slicer's C++ does and the module relies on, reproduced (reference files, 5.12.3):
* the module panel calls the widget's ``enter()`` each time the module is shown and
  ``exit()`` each time another one is (qSlicerAbstractModuleWidget.h:52-60,
  qSlicerScriptedLoadableModuleWidget.cxx:231-245); the widget is set up the first time
  it is shown;
* a scripted module is found as ``<folder>/<Name>.py`` (Additional module paths) and its
  folder goes on ``sys.path``; the widget class is ``<Name>Widget`` instantiated with the
  qSlicerScriptedLoadableModuleWidget as parent (cxx:100-170);
* ``slicer.app.moduleManager()`` emits ``moduleAboutToBeUnloaded(QString)`` when Slicer
  exits, which calls the widget's ``cleanup()`` (ScriptedLoadableModule.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from PyQt5 import QtCore, QtWidgets
from PyQt5.QtCore import pyqtProperty, pyqtSignal, pyqtSlot

from .facts import class_facts
from .pythonqt import report_exception
from .qtmodule import qt_class


class ModuleManager(QtCore.QObject):
    moduleAboutToBeUnloaded = pyqtSignal(str)

    def __init__(self) -> None:
        QtCore.QObject.__init__(self)
        self.modules: dict[str, object] = {}

    def module(self, name: str):
        return self.modules.get(name)

    def factoryManager(self):
        return self

    def loadedModuleNames(self) -> list[str]:
        return list(self.modules)

    def connect(self, signature: str, slot) -> bool:
        from .pythonqt import Receiver

        self._receivers = getattr(self, "_receivers", {})
        receiver = Receiver(slot)
        self._receivers[(signature, slot)] = receiver
        self.moduleAboutToBeUnloaded.connect(receiver)
        return True

    def disconnect(self, signature: str, slot) -> bool:
        receiver = getattr(self, "_receivers", {}).pop((signature, slot), None)
        if receiver is not None:
            self.moduleAboutToBeUnloaded.disconnect(receiver)
        return receiver is not None


class qSlicerScriptedLoadableModuleWidget(qt_class("QWidget")):
    """The C++ parent of a scripted module's widget (``self.parent`` in Python)."""

    _pq = class_facts("qSlicerScriptedLoadableModuleWidget")

    def __init__(self, module) -> None:
        QtWidgets.QWidget.__init__(self)
        QtWidgets.QWidget.setLayout(self, QtWidgets.QVBoxLayout())
        self._module, self._self, self._entered = module, None, False

    def _call(self, method: str) -> None:
        try:
            getattr(self._self, method)()
        except Exception as exc:  # PythonQt::handleError prints it
            report_exception(exc)

    @pyqtSlot()
    def enter(self) -> None:
        self._entered = True
        self._call("enter")

    @pyqtSlot()
    def exit(self) -> None:
        self._entered = False
        self._call("exit")

    @pyqtSlot(result=object)
    def self(self):
        return self._self

    @pyqtSlot()
    def reload(self) -> None:
        """qSlicerScriptedLoadableModuleWidget.cxx:175-185: instantiate the (reloaded)
        Python class with this widget as parent again, then set it up."""
        import slicer

        name = self._module._name
        widget = getattr(sys.modules[name], name + "Widget")(self)
        self._self = widget
        setattr(slicer.modules, name + "Widget", widget)
        try:
            widget.setup()
        except Exception as exc:
            report_exception(exc)

    @pyqtSlot(object, str, str, result=bool)
    def setEditedNode(self, node, role="", context="") -> bool:
        return False

    @pyqtSlot(object, result=bool)
    def nodeEditable(self, node) -> bool:
        return False

    isEntered = pyqtProperty(bool, lambda s: s._entered)
    moduleName = pyqtProperty(str, lambda s: s._module._name)


class qSlicerScriptedLoadableModule(qt_class("QObject")):
    """The C++ module object given to ``NNSeg(parent)``: title, categories, path..."""

    _pq = class_facts("qSlicerScriptedLoadableModule")

    def __init__(self, name: str, path: Path, logic=None) -> None:
        QtCore.QObject.__init__(self)
        self._name, self._path, self._logic = name, str(path), logic
        self._values: dict[str, object] = {}
        self._widget = None

    def _prop(name: str, kind, default):  # noqa: N805 - class-body helper
        return pyqtProperty(kind, lambda s: s._values.get(name, default),
                            lambda s, v: s._values.__setitem__(name, v))

    title = _prop("title", str, "")
    categories = _prop("categories", "QStringList", [])
    contributors = _prop("contributors", "QStringList", [])
    associatedNodeTypes = _prop("associatedNodeTypes", "QStringList", [])
    helpText = _prop("helpText", str, "")
    acknowledgementText = _prop("acknowledgementText", str, "")
    extensions = _prop("extensions", "QStringList", [])
    icon = _prop("icon", "QIcon", None)
    hidden = _prop("hidden", bool, False)
    dependencies = _prop("dependencies", "QStringList", [])
    index = _prop("index", int, -1)
    slicerWikiUrl = _prop("slicerWikiUrl", str, "")
    defaultDocumentationLink = _prop("defaultDocumentationLink", str, "")
    isInstalled = _prop("isInstalled", bool, False)
    isBuiltIn = _prop("isBuiltIn", bool, False)
    widgetRepresentationCreationEnabled = _prop("wrce", bool, True)
    path = pyqtProperty(str, lambda s: s._path)
    name = pyqtProperty(str, lambda s: s._name)

    @pyqtSlot(result=object)
    def widgetRepresentation(self):
        return self._widget

    @pyqtSlot(result=object)
    def createNewWidgetRepresentation(self):
        return self._widget

    @pyqtSlot(result=object)
    def logic(self):
        return self._logic

    @pyqtSlot(result=object)
    def mrmlScene(self):
        import slicer

        return slicer.mrmlScene

    @pyqtSlot(object)
    def setMRMLScene(self, scene) -> None:
        pass


class LogicModule:
    """``slicer.modules.<name>`` of a C++ module used here only for its logic."""

    _widget = None

    def __init__(self, logic) -> None:
        self._logic = logic

    def logic(self):
        return self._logic


class ModulePanel:
    """The main window's module selector: shows one module at a time."""

    def __init__(self, app) -> None:
        self.app, self.current = app, None

    def selectModule(self, name: str) -> None:
        module = self.app.module_manager.module(name)
        if module is None:
            raise RuntimeError(f"no module {name}")
        if self.current is module:
            return
        if self.current is not None and self.current._widget is not None:
            self.current._widget.exit()
        self.current = module
        if isinstance(module, qSlicerScriptedLoadableModule):
            if module._widget is None:
                self.app.create_widget(module)
            module._widget.enter()

    @property
    def selectedModule(self) -> str:
        return self.current._name if self.current else ""


class MainWindow(qt_class("QMainWindow")):
    """qSlicerMainWindow: found by name among the top-level widgets (slicer.util.mainWindow)."""

    def __init__(self, app) -> None:
        QtWidgets.QMainWindow.__init__(self)
        QtCore.QObject.setObjectName(self, "qSlicerMainWindow")
        self._panel = ModulePanel(app)

    def moduleSelector(self):
        return self._panel


def forget_modules_of(folder: Path) -> None:
    """Drop the Python modules imported from ``folder`` (a scripted module's own package, e.g.
    NNSegPanels): a starting Slicer process has none of them, so they are imported again
    against this version's Python layer (a GUI connector registers with its
    parameterNodeWrapper)."""
    folder = folder.resolve()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and folder in Path(file).resolve().parents:
            del sys.modules[name]


def load_scripted_module(app, folder: Path, name: str) -> qSlicerScriptedLoadableModule:
    """What Slicer does at start-up with a module found in *Additional module paths*."""
    import slicer

    path = folder / f"{name}.py"
    forget_modules_of(folder)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, path)
    source = importlib.util.module_from_spec(spec)
    sys.modules[name] = source
    spec.loader.exec_module(source)
    module = qSlicerScriptedLoadableModule(name, path)
    module._source = source
    getattr(source, name)(module)  # ScriptedLoadableModule.__init__(parent)
    app.module_manager.modules[name] = module
    setattr(slicer.modules, name.lower(), module)
    return module


def create_widget(module: qSlicerScriptedLoadableModule):
    import slicer

    parent = qSlicerScriptedLoadableModuleWidget(module)
    module._widget = parent
    widget = getattr(sys.modules[module._name], module._name + "Widget")(parent)
    parent._self = widget
    setattr(slicer.modules, module._name + "Widget", widget)
    widget.setup()
    return widget


__all__ = ["LogicModule", "MainWindow", "ModuleManager", "create_widget", "load_scripted_module",
           "qSlicerScriptedLoadableModule", "qSlicerScriptedLoadableModuleWidget"]


class CoreIOManager:
    """``slicer.app.coreIOManager()`` for the two file types the module loads, through the
    same MRML logics Slicer's readers call (qSlicerVolumesReader → vtkSlicerVolumesLogic::
    AddArchetypeVolume; qSlicerSegmentationsReader → vtkSlicerSegmentationsModuleLogic::
    LoadSegmentationFromFile)."""

    SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd")

    def __init__(self, scene, segmentations_logic) -> None:
        import slicer

        self.scene, self.segmentations = scene, segmentations_logic
        self.volumes = slicer.vtkSlicerVolumesLogic()
        self.volumes.SetMRMLScene(scene)

    def fileType(self, filename) -> str:
        return "SegmentationFile" if str(filename).endswith(".seg.nrrd") else "VolumeFile"

    def _name(self, filename: str) -> str:
        name = Path(filename).name
        for suffix in self.SUFFIXES:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return Path(filename).stem

    def loadNodes(self, filetype, properties, loaded, messages) -> bool:
        filename = properties["fileName"]
        name = properties.get("name") or self._name(filename)
        if filetype == "VolumeFile":
            node = self.volumes.AddArchetypeVolume(filename, name,
                                                   1 if properties.get("labelmap") else 0)
        elif filetype == "SegmentationFile":
            node = self.segmentations.LoadSegmentationFromFile(filename, True, name)
        else:
            messages.AddMessage(0, f"no reader for {filetype}")
            return False
        if node is None:
            return False
        loaded.AddItem(node)
        return True
