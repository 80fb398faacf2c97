"""Just enough of the Slicer application to run NNSeg.py's Widget and Logic headless.

slicer-core gives real MRML (scene, nodes, segmentations) but no application: no ``qt``, no
``slicer.app``, no ``ScriptedLoadableModule``, no ``parameterNodeWrapper``. These stand-ins
replace exactly those, so the module's wiring (which button calls what, what the panels
show, how jobs are followed) runs against real MRML and real ``nnseg`` subprocesses:

* :class:`FakeWidget` — any Qt widget: attributes, ``connect(signal, slot)``, ``click()``;
* :func:`fake_parameter_node_wrapper` — typed fields stored in a real
  ``vtkMRMLScriptedModuleNode`` (nodes as node references, like Slicer's wrapper);
* :func:`load_module` — imports ``NNSeg/NNSeg.py`` with these in place.

The real bindings between ``.ui`` widgets and parameters are checked statically in
``test_slicer_module.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import pathlib
import sys
import types
import typing
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "NNSeg" / "NNSeg.py"
UI = REPO / "NNSeg" / "Resources" / "UI" / "NNSeg.ui"


class FakeWidget:
    """A stand-in for any Qt/CTK/MRML widget."""

    def __init__(self, name: str = "", cls: str = "QWidget") -> None:
        self.objectName, self.className = name, cls
        self.text, self.toolTip, self.enabled, self.checked = "", "", True, False
        self.value, self.maximum, self.currentPath = 0, 100, ""
        self.slots: dict[str, list] = {}
        self.items: list[Any] = []
        self.cells: dict[tuple[int, int], str] = {}
        self.rows = self.columns = 0
        self.plain = ""
        self.node = None
        self.added_rows: list[tuple[str, Any]] = []

    # signals
    def connect(self, signal: str, slot) -> None:
        self.slots.setdefault(signal, []).append(slot)

    def emit(self, signal: str, *args) -> None:
        for slot in self.slots.get(signal, []):
            slot(*args)

    def click(self) -> None:
        if self.enabled:
            self.emit("clicked(bool)")

    # the methods NNSeg.py calls
    def horizontalHeader(self) -> FakeWidget:
        return self.__dict__.setdefault("_hheader", FakeWidget(self.objectName + ".hheader"))

    def verticalHeader(self) -> FakeWidget:
        return self.__dict__.setdefault("_vheader", FakeWidget(self.objectName + ".vheader"))

    def setSectionResizeMode(self, mode) -> None:
        self.resize_mode = mode

    def setVisible(self, visible: bool) -> None:
        self.visible = visible

    def setMRMLScene(self, scene) -> None:
        self.scene = scene

    def setHorizontalHeaderLabels(self, labels) -> None:
        self.header = list(labels)

    def setVerticalHeaderLabels(self, labels) -> None:
        self.vheader = list(labels)

    def setRowCount(self, n: int) -> None:
        self.rows = n

    def setColumnCount(self, n: int) -> None:
        self.columns = n

    @property
    def columnCount(self) -> int:
        return self.columns

    @property
    def rowCount(self) -> int:
        return self.rows

    def item(self, row: int, col: int):
        return types.SimpleNamespace(text=lambda: self.cells.get((row, col), ""))

    def setItem(self, row: int, col: int, item) -> None:
        self.cells[(row, col)] = item.text

    def selectedIndexes(self):
        return [types.SimpleNamespace(row=lambda r=r: r) for r in getattr(self, "selected", [])]

    def setPlainText(self, text: str) -> None:
        self.plain = text

    def toPlainText(self) -> str:
        return self.plain

    def clear(self) -> None:
        self.items = []

    def addItem(self, text: str) -> None:
        self.items.append(text)

    def layout(self):
        return self

    def removeWidget(self, widget) -> None:
        pass

    def addRow(self, label: str, widget) -> None:
        self.added_rows.append((label, widget))

    def deleteLater(self) -> None:
        pass

    def checkedNodes(self):
        return getattr(self, "checked_nodes", [])

    def currentNode(self):
        return self.node

    def addWidget(self, widget) -> None:
        pass


class QSettings:
    store: dict[str, Any] = {}

    def value(self, key: str, default: Any = None) -> Any:
        return self.store.get(key, default)

    def setValue(self, key: str, value: Any) -> None:
        self.store[key] = value


class QTimer:
    def __init__(self) -> None:
        self.active = False

    def setInterval(self, ms: int) -> None:
        self.interval = ms

    def connect(self, signal: str, slot) -> None:
        self.slot = slot

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    @staticmethod
    def singleShot(ms: int, fn) -> None:
        fn()


def fake_qt(opened: list) -> types.ModuleType:
    qt = types.ModuleType("qt")
    qt.QTimer, qt.QSettings = QTimer, QSettings
    qt.QHeaderView = types.SimpleNamespace(ResizeToContents=3)
    qt.QTableWidgetItem = lambda text: types.SimpleNamespace(text=text)
    qt.QFileDialog = types.SimpleNamespace(getExistingDirectory=lambda *a: qt.chosen_folder)
    qt.QDesktopServices = types.SimpleNamespace(openUrl=opened.append)
    qt.QUrl = types.SimpleNamespace(fromLocalFile=lambda path: path)
    qt.chosen_folder = ""
    return qt


def fake_parameter_node_wrapper(cls):
    """Typed properties over a real scripted module node (nodes as references)."""
    hints = typing.get_type_hints(cls, include_extras=True)

    def base_type(hint):
        return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint

    optional_path = typing.Optional[pathlib.Path]

    def make(name: str, typ, default):
        def read(self):
            node = self.parameterNode
            if hasattr(typ, "GetClassName") or getattr(typ, "__name__", "").startswith("vtkMRML"):
                return node.GetNodeReference(name)
            if name not in node.GetParameterNames():
                return default
            text = node.GetParameter(name)
            if typ is bool:
                return text == "true"
            if typ is pathlib.Path or typ == optional_path:
                return pathlib.Path(text)
            return typ(text)

        def write(self, value):
            node = self.parameterNode
            if hasattr(typ, "GetClassName") or getattr(typ, "__name__", "").startswith("vtkMRML"):
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            elif typ == optional_path and value is None:
                node.UnsetParameter(name)
            elif typ == optional_path and not isinstance(value, pathlib.Path):
                raise TypeError(f"{name}: {value!r} is not a pathlib.Path or None")
            elif typ is bool:
                node.SetParameter(name, "true" if value else "false")
            else:
                node.SetParameter(name, str(value))
        return property(read, write)

    defaults = {}
    for name, hint in hints.items():
        typ = base_type(hint)
        default = getattr(cls, name, pathlib.Path() if typ is pathlib.Path else None)
        defaults[name] = (typ, default)

    def init(self, node):
        self.parameterNode = node
        for name, (_typ, default) in defaults.items():
            if default is not None and name not in node.GetParameterNames():
                setattr(self, name, default)

    attrs = {"__init__": init, "connectGui": lambda self, gui: 1,
             "disconnectGui": lambda self, tag: None}
    for name, (typ, default) in defaults.items():
        attrs[name] = make(name, typ, default)
    return type(cls.__name__, (), attrs)


class GuiConnector:
    """slicer.parameterNodeWrapper.GuiConnector's constructor (the fake wrapper binds no
    widget: its connectGui connects nothing, so no connector is ever created)."""

    def __init__(self) -> None:
        self._callback = None


#: The GUI connectors the module registered (``parameterNodeGuiConnector``).
CONNECTORS: list[type] = []


def register_connector(cls: type) -> type:
    if not issubclass(cls, GuiConnector):
        raise TypeError("Must be a GuiConnector subclass")  # as Slicer's decorator
    CONNECTORS.append(cls)
    return cls


class Recorder:
    """What the fake application showed the user."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.infos: list[str] = []
        self.questions: list[str] = []
        self.answer = True
        self.opened: list[Any] = []
        self.layers: list[Any] = []


def install(monkeypatch, scene) -> tuple[Recorder, types.ModuleType]:
    """Put the stand-ins in place (``slicer`` is the real slicer-core package)."""
    import slicer
    import slicer.util

    record = Recorder()
    qt = fake_qt(record.opened)
    monkeypatch.setitem(sys.modules, "qt", qt)
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = fake_parameter_node_wrapper
    pnw.Choice = pnw.WithinRange = lambda *a, **k: None
    pnw.GuiConnector = GuiConnector
    pnw.parameterNodeGuiConnector = register_connector
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", pnw)
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class Module:
        def __init__(self, parent) -> None:
            self.parent = parent

    class Logic:
        def __init__(self) -> None:
            pass

        def getParameterNode(self):
            node = scene.GetFirstNodeByName("NNSeg")
            return node or scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "NNSeg")

    class Widget:
        def __init__(self, parent=None) -> None:
            self.parent = types.SimpleNamespace(isEntered=True)
            self.layout = FakeWidget("layout")

        def setup(self) -> None:
            pass

        def resourcePath(self, rel: str) -> str:
            return str(MODULE.parent / "Resources" / rel)

    class Test(unittest.TestCase):
        def delayDisplay(self, text: str) -> None:
            pass

    slm.ScriptedLoadableModule, slm.ScriptedLoadableModuleLogic = Module, Logic
    slm.ScriptedLoadableModuleWidget, slm.ScriptedLoadableModuleTest = Widget, Test
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)

    names = [(w.get("name"), w.get("class")) for w in ET.parse(UI).getroot().iter("widget")]

    def load_ui(path):
        root = FakeWidget("NNSeg", "qMRMLWidget")
        root.children = {n: FakeWidget(n, c) for n, c in names}
        return root

    @contextlib.contextmanager
    def try_with_error_display(message="", waitCursor=False):
        try:
            yield
        except Exception as e:  # Slicer shows the error, then re-raises it (util.py 5.12.3)
            record.errors.append(f"{message} {e}")
            raise

    def confirm(text, *args, **kwargs):
        record.questions.append(text)
        return record.answer

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(testingEnabled=lambda: False),
                        raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(plots=types.SimpleNamespace(
        logic=lambda: types.SimpleNamespace(ShowChartInLayout=lambda chart: None))),
        raising=False)
    monkeypatch.setattr(slicer, "qMRMLNodeComboBox", lambda: FakeWidget("combo"), raising=False)
    for name, fn in (
            ("loadUI", load_ui),
            ("childWidgetVariables", lambda root: types.SimpleNamespace(**root.children)),
            ("tryWithErrorDisplay", try_with_error_display),
            ("errorDisplay", lambda text, **k: record.errors.append(text)),
            ("infoDisplay", lambda text, **k: record.infos.append(text)),
            ("warningDisplay", lambda text, **k: record.infos.append(text)),
            ("confirmOkCancelDisplay", confirm), ("confirmYesNoDisplay", confirm),
            ("setSliceViewerLayers", lambda **k: record.layers.append(k)),
            ("loadVolume", lambda path: _load_volume(scene, path))):
        monkeypatch.setattr(slicer.util, name, fn, raising=False)
    return record, qt


def _load_volume(scene, path):
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.slicer.scene import mrml

    array, geometry = SimpleITKIO().read(path)
    name = Path(path).name.split(".")[0]
    return mrml.volume_node_from_array(scene, array, geometry, name)


def load_module():
    """Import NNSeg/NNSeg.py (after :func:`install`), its folder on ``sys.path`` as Slicer
    puts it (for its ``NNSegPanels``)."""
    if str(MODULE.parent) not in sys.path:
        sys.path.insert(0, str(MODULE.parent))
    for name, module in list(sys.modules.items()):  # NNSegPanels, imported again (new stubs)
        file = getattr(module, "__file__", None)
        if file and MODULE.parent.resolve() in Path(file).resolve().parents:
            del sys.modules[name]
    spec = importlib.util.spec_from_file_location("NNSeg", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
