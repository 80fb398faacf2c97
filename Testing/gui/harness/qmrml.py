"""qMRML widgets the module uses, as real QWidgets following a real (slicer-core) scene.

Behaviour from ``../shared/slicer/reference/5.12.3/Slicer/`` (file:line):

* qMRMLNodeComboBox: a real QComboBox over the scene's nodes of ``nodeTypes``; "None" first
  when ``noneEnabled`` (cxx:238-256), action items after the nodes (cxx:265-333); the
  combo box's ``currentTextChanged`` drives ``currentNodeChanged`` (cxx:1195, 719-745):
  a missing node with ``noneEnabled`` off selects the last node. Without a scene nothing
  is listed and the widget is disabled (cxx:790-867, ``setEnabled(scene != nullptr)``);
  a node set before the scene is remembered and applied with it (cxx:870-901).
* Node filtering as qMRMLSortFilterProxyModel: class (``IsA`` or exact class when
  ``showChildNodeTypes`` is off), ``HideFromEditors`` unless ``showHidden``, attributes.
* qMRMLCheckableNodeComboBox: checkable items; ``checkedNodesChanged()`` follows the check
  states (qMRMLCheckableNodeComboBox.cxx: constructor, checkedNodes).
"""

from __future__ import annotations

from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import pyqtProperty, pyqtSignal, pyqtSlot

from .facts import class_facts
from .qtmodule import qt_class

NODE_ID = QtCore.Qt.UserRole + 1


class qMRMLWidget(qt_class("QWidget")):
    _pq = class_facts("qMRMLWidget")
    mrmlSceneChanged = pyqtSignal(object)
    _pq_signal_types = {("mrmlSceneChanged", ("vtkMRMLScene*",)): object}

    def __init__(self, parent=None) -> None:
        QtWidgets.QWidget.__init__(self, parent)
        self._scene = None

    @pyqtSlot(object)
    def setMRMLScene(self, scene) -> None:
        if scene is self._scene:
            return
        self._scene = scene
        self._signal("mrmlSceneChanged").emit(scene)

    @pyqtSlot(result=object)
    def mrmlScene(self):
        return self._scene

    @pyqtSlot()
    def preInitializeApplication(self) -> None:
        pass

    @pyqtSlot()
    def postInitializeApplication(self) -> None:
        pass

    @pyqtSlot(QtGui.QIcon, result=QtGui.QPixmap)
    def pixmapFromIcon(self, icon):
        return icon.pixmap(16, 16)


_NODE_SIGNALS = ("currentNodeChanged", "nodeActivated", "nodeAdded", "nodeAddedByUser",
                 "nodeAboutToBeRemoved", "nodeAboutToBeEdited", "nodeAddedByUserAction")


class qMRMLNodeComboBox(qt_class("QWidget")):
    _pq = class_facts("qMRMLNodeComboBox")
    currentNodeChanged = pyqtSignal([object], [bool])
    currentNodeIDChanged = pyqtSignal(str)
    nodeActivated = pyqtSignal(object)
    nodeAdded = pyqtSignal(object)
    nodeAddedByUser = pyqtSignal(object)
    nodeAddedByUserAction = pyqtSignal(object)
    nodeAboutToBeRemoved = pyqtSignal(object)
    currentNodeRenamed = pyqtSignal(str)
    nodeAboutToBeEdited = pyqtSignal(object)
    _pq_signal_types = {(n, ("vtkMRMLNode*",)): object for n in _NODE_SIGNALS}
    _pq_signal_types.update({("currentNodeChanged", ("bool",)): bool,
                             ("currentNodeIDChanged", ("QString",)): str,
                             ("currentNodeRenamed", ("QString",)): str})
    _checkable = False

    def __init__(self, parent=None) -> None:
        QtWidgets.QWidget.__init__(self, parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._combo = QtWidgets.QComboBox(self)
        self._model = QtGui.QStandardItemModel(self)
        self._combo.setModel(self._model)
        layout.addWidget(self._combo)
        self._scene, self._requested = None, None
        self._nodeTypes: list[str] = []
        self._attributes: dict[str, tuple[str, object]] = {}
        self._showHidden, self._showChild, self._hideChild = False, True, []
        self._none, self._noneDisplay = False, "None"
        self._add, self._remove, self._edit, self._rename = True, True, False, False
        self._baseName, self._singleton, self._selectUpon = "", "", True
        self._switching = False
        self._combo.currentTextChanged.connect(self._emitCurrentNodeChanged)
        observers = self._observers = []  # removed with the widget, as the C++ model does
        self._signal("destroyed").connect(
            lambda *_: [scene.RemoveObserver(tag) for scene, tag in observers])
        self.setEnabled(False)  # no scene yet (cxx:866)

    # -- model ---------------------------------------------------------------------------
    def _accepts(self, node) -> bool:
        if node is None or not self._nodeTypes:
            return False
        if node.GetHideFromEditors() and not self._showHidden:
            return False
        if any(node.IsA(t) for t in self._hideChild):
            return False
        for node_type in self._nodeTypes:
            matches = node.IsA(node_type) if self._showChild else node.GetClassName() == node_type
            if matches:
                attribute = self._attributes.get(node_type)
                if attribute and node.GetAttribute(attribute[0]) != str(attribute[1]):
                    return False
                return True
        return False

    def _nodeRows(self) -> list[int]:
        return [r for r in range(self._model.rowCount())
                if self._model.item(r).data(NODE_ID)]

    def _extraItems(self) -> tuple[list[str], list[str]]:
        label = self._nodeTypes[0].replace("vtkMRML", "").replace("Node", "") \
            if len(self._nodeTypes) == 1 else "node"
        pre = [self._noneDisplay] if self._none else []
        post = []
        if self._scene is not None:
            if self._rename:
                post.append(f"Rename current {label}")
            if self._edit:
                post.append(f"Edit current {label}")
            if self._add:
                post += [f"Create new {label}" for _t in self._nodeTypes]
            if self._remove:
                post.append(f"Delete current {label}")
        return pre, post

    def _rebuild(self) -> None:
        """All rows again, keeping the current node (setMRMLScene / filter changes)."""
        current = self._currentID()
        self._switching = True
        self._model.clear()
        pre, post = self._extraItems()
        for text in pre:
            self._model.appendRow(QtGui.QStandardItem(text))
        if self._scene is not None:
            for i in range(self._scene.GetNumberOfNodes()):
                node = self._scene.GetNthNode(i)
                if self._accepts(node):
                    self._model.appendRow(self._item(node))
        for text in post:
            self._model.appendRow(QtGui.QStandardItem(text))
        self._combo.setCurrentIndex(-1)
        self._switching = False
        self._setCurrentID(current)

    def _item(self, node) -> QtGui.QStandardItem:
        item = QtGui.QStandardItem(node.GetName() or "")
        item.setData(node.GetID(), NODE_ID)
        if self._checkable:
            item.setFlags(item.flags() | QtCore.Qt.ItemIsUserCheckable)
            item.setData(QtCore.Qt.Unchecked, QtCore.Qt.CheckStateRole)
        return item

    def _onNodeAdded(self, scene, event, node=None) -> None:
        node = node if node is not None else getattr(self, "_last", None)
        if not self._accepts(node):
            return
        pre, post = self._extraItems()
        row = self._model.rowCount() - len(post)
        # QComboBox itself selects the row when it was empty (no None, no action items):
        # Qt 5.15 QComboBoxPrivate::_q_rowsInserted
        self._model.insertRow(row, self._item(node))
        self._signal("nodeAdded")[object].emit(node)

    def _onNodeRemoved(self, scene, event, node=None) -> None:
        if node is None:
            return
        for r in self._nodeRows():
            if self._model.item(r).data(NODE_ID) == node.GetID():
                self._signal("nodeAboutToBeRemoved")[object].emit(node)
                self._model.removeRow(r)
                return

    def _observe(self, scene) -> None:
        import vtk

        for obs in self._observers:
            obs[0].RemoveObserver(obs[1])
        self._observers.clear()
        if scene is None:
            return

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def added(caller, event, calldata):
            self._onNodeAdded(caller, event, calldata)

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def removed(caller, event, calldata):
            self._onNodeRemoved(caller, event, calldata)

        self._observers += [(scene, scene.AddObserver(scene.NodeAddedEvent, added)),
                            (scene, scene.AddObserver(scene.NodeRemovedEvent, removed))]
        self._callbacks = (added, removed)

    # -- current node --------------------------------------------------------------------
    def _currentID(self):
        index = self._combo.currentIndex()
        if index < 0:
            return None
        return self._model.item(index).data(NODE_ID) if self._model.item(index) else None

    def _setCurrentID(self, node_id) -> None:
        for r in self._nodeRows():
            if node_id and self._model.item(r).data(NODE_ID) == node_id:
                self._combo.setCurrentIndex(r)
                return
        self._combo.setCurrentIndex(0 if self._none else -1)  # cxx:917-926

    def _node(self, node_id):
        return self._scene.GetNodeByID(node_id) if node_id and self._scene else None

    def _emitCurrentNodeChanged(self, _text=None) -> None:
        if self._switching:
            return
        index = self._combo.currentIndex()
        node = self._node(self._currentID())
        if node is None and ((not self._none and index != -1) or (self._none and index != 0)):
            rows = self._nodeRows()
            if rows:
                self._combo.setCurrentIndex(rows[-1])
            return
        self._signal("currentNodeChanged")[object].emit(node)
        self._signal("currentNodeChanged")[bool].emit(node is not None)
        self._signal("currentNodeIDChanged").emit(node.GetID() if node else "")

    # -- slots and invokables (api_facts) --------------------------------------------------
    @pyqtSlot(object)
    def setMRMLScene(self, scene) -> None:
        if scene is self._scene:
            return
        previous = self._currentID()
        self._scene = scene
        self._observe(scene)
        self._switching = True
        self._rebuild()
        self._switching = False
        wanted = previous
        if self._requested is not None:
            wanted = self._requested
        self._requested = None
        self._setCurrentID(wanted)
        self._emitCurrentNodeChanged()
        self.setEnabled(scene is not None)

    @pyqtSlot(object)
    def setCurrentNode(self, node) -> None:
        node_id = node.GetID() if node is not None and not isinstance(node, str) else node
        if self._scene is None:
            self._requested = node_id
        self._setCurrentID(node_id)

    @pyqtSlot(str)
    def setCurrentNodeID(self, node_id: str) -> None:
        self.setCurrentNode(node_id or None)

    @pyqtSlot(int)
    def setCurrentNodeIndex(self, index: int) -> None:
        rows = self._nodeRows()
        self._combo.setCurrentIndex(rows[index] if 0 <= index < len(rows) else
                                    (0 if self._none else -1))

    @pyqtSlot()
    def addNode(self, node_type: str = ""):
        node = self._scene.AddNewNodeByClass(node_type or self._nodeTypes[0])
        self._signal("nodeAddedByUser")[object].emit(node)
        if self._selectUpon:
            self.setCurrentNode(node)
        return node

    @pyqtSlot()
    def removeCurrentNode(self) -> None:
        self._scene.RemoveNode(self.currentNode())

    @pyqtSlot()
    def editCurrentNode(self) -> None:
        self._signal("nodeAboutToBeEdited")[object].emit(self.currentNode())

    @pyqtSlot()
    def renameCurrentNode(self) -> None:
        pass

    @pyqtSlot(result=object)
    def mrmlScene(self):
        return self._scene

    @pyqtSlot(result=object)
    def currentNode(self):
        return self._node(self._currentID())

    @pyqtSlot(result=str, name="currentNodeId")
    def _currentNodeIdSlot(self) -> str:
        return self._currentID() or ""

    @pyqtSlot(result=int)
    def nodeCount(self) -> int:
        return len(self._nodeRows()) if self._scene is not None else 0

    @pyqtSlot(int, result=object)
    def nodeFromIndex(self, index: int):
        rows = self._nodeRows()
        return self._node(self._model.item(rows[index]).data(NODE_ID)) \
            if 0 <= index < len(rows) else None

    @pyqtSlot(str, str, "QVariant")
    def addAttribute(self, node_type: str, name: str, value=None) -> None:
        self._attributes[node_type] = (name, value)
        self._rebuild()

    @pyqtSlot(str, str)
    def removeAttribute(self, node_type: str, name: str) -> None:
        self._attributes.pop(node_type, None)
        self._rebuild()

    @pyqtSlot(str, str)
    def setNodeTypeLabel(self, label: str, node_type: str) -> None:
        pass

    @pyqtSlot(str, result=str)
    def nodeTypeLabel(self, node_type: str) -> str:
        return node_type.replace("vtkMRML", "").replace("Node", "")

    @pyqtSlot(result=QtCore.QObject)
    def sortFilterProxyModel(self):
        return self._model

    @pyqtSlot(QtWidgets.QAction)
    def addMenuAction(self, action) -> None:
        pass

    # -- properties ------------------------------------------------------------------------
    def _setter(attr: str, rebuild: bool = True):  # noqa: N805 - class-body helper
        def set_(self, value) -> None:
            setattr(self, attr, list(value) if isinstance(value, (list, tuple)) else value)
            if rebuild:
                self._rebuild()
        return set_

    currentNodeID = pyqtProperty(str, lambda s: s._currentID() or "", setCurrentNodeID)
    currentNodeId = pyqtProperty(str, lambda s: s._currentID() or "", setCurrentNodeID)
    nodeTypes = pyqtProperty("QStringList", lambda s: s._nodeTypes, _setter("_nodeTypes"))
    showHidden = pyqtProperty(bool, lambda s: s._showHidden, _setter("_showHidden"))
    showChildNodeTypes = pyqtProperty(bool, lambda s: s._showChild, _setter("_showChild"))
    hideChildNodeTypes = pyqtProperty("QStringList", lambda s: s._hideChild,
                                      _setter("_hideChild"))
    baseName = pyqtProperty(str, lambda s: s._baseName, _setter("_baseName", False))
    noneEnabled = pyqtProperty(bool, lambda s: s._none, _setter("_none"))
    addEnabled = pyqtProperty(bool, lambda s: s._add, _setter("_add"))
    removeEnabled = pyqtProperty(bool, lambda s: s._remove, _setter("_remove"))
    editEnabled = pyqtProperty(bool, lambda s: s._edit, _setter("_edit"))
    renameEnabled = pyqtProperty(bool, lambda s: s._rename, _setter("_rename"))
    interactionNodeSingletonTag = pyqtProperty(str, lambda s: s._singleton,
                                               _setter("_singleton", False))
    selectNodeUponCreation = pyqtProperty(bool, lambda s: s._selectUpon,
                                          _setter("_selectUpon", False))
    noneDisplay = pyqtProperty(str, lambda s: s._noneDisplay, _setter("_noneDisplay"))
    sizeAdjustPolicy = pyqtProperty(int, lambda s: int(s._combo.sizeAdjustPolicy()),
                                    lambda s, v: s._combo.setSizeAdjustPolicy(v))


class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):
    _pq = class_facts("qMRMLCheckableNodeComboBox")
    checkedNodesChanged = pyqtSignal()
    _checkable = True

    def __init__(self, parent=None) -> None:
        qMRMLNodeComboBox.__init__(self, parent)
        # the C++ init turns the actions off (qMRMLCheckableNodeComboBox.cxx init)
        self._add = self._remove = self._edit = self._rename = False
        self._model.itemChanged.connect(self._checksChanged)
        self._showChecked()

    def _onNodeAdded(self, scene, event, node=None) -> None:
        qMRMLNodeComboBox._onNodeAdded(self, scene, event, node)
        self._showChecked()

    def _checksChanged(self, _item=None) -> None:
        self._showChecked()
        self._signal("checkedNodesChanged").emit()

    def _showChecked(self) -> None:
        """ctkCheckableComboBox shows the checked items' names, not a current item."""
        names = [n.GetName() for n in self._nodes(QtCore.Qt.Checked) if n is not None]
        if not self._combo.isEditable():
            self._combo.setEditable(True)
            self._combo.lineEdit().setReadOnly(True)
        self._combo.setCurrentIndex(-1)
        self._combo.lineEdit().setText(", ".join(names))

    def _nodes(self, state) -> list:
        return [self._node(self._model.item(r).data(NODE_ID)) for r in self._nodeRows()
                if self._model.item(r).checkState() == state]

    @pyqtSlot(result="QVariantList")
    def checkedNodes(self) -> list:
        return self._nodes(QtCore.Qt.Checked)

    @pyqtSlot(result="QVariantList")
    def uncheckedNodes(self) -> list:
        return self._nodes(QtCore.Qt.Unchecked)

    @pyqtSlot(result=bool)
    def allChecked(self) -> bool:
        return not self.uncheckedNodes()

    @pyqtSlot(result=bool)
    def noneChecked(self) -> bool:
        return not self.checkedNodes()

    @pyqtSlot(object, result=int)
    def checkState(self, node) -> int:
        for r in self._nodeRows():
            if node is not None and self._model.item(r).data(NODE_ID) == node.GetID():
                return int(self._model.item(r).checkState())
        return int(QtCore.Qt.Unchecked)

    @pyqtSlot(object, int)
    def setCheckState(self, node, state) -> None:
        for r in self._nodeRows():
            if node is not None and self._model.item(r).data(NODE_ID) == node.GetID():
                self._model.item(r).setCheckState(QtCore.Qt.CheckState(state))

    @pyqtSlot(object)
    def check(self, node) -> None:
        self.setCheckState(node, QtCore.Qt.Checked)

    @pyqtSlot(object)
    def uncheck(self, node) -> None:
        self.setCheckState(node, QtCore.Qt.Unchecked)

    @pyqtSlot(object, bool)
    def setUserCheckable(self, node, checkable: bool) -> None:
        pass


CLASSES = {c.__name__: c for c in (qMRMLWidget, qMRMLNodeComboBox, qMRMLCheckableNodeComboBox)}
