"""CTK widgets the module uses, as real QWidgets with the behaviour of their C++.

Each class exposes exactly the properties, signals, slots and invokables of
``api_facts.json`` (``test_facts.py`` compares them both ways). Behaviour is reproduced from
``../shared/slicer/reference/<version>/CTK/`` (cited as file:line, 5.12.3's copy); the
internal editors are the real Qt widgets the C++ builds (a QComboBox line edit, a
QDoubleSpinBox and QSlider), so values are rounded, clamped and validated by Qt itself.
"""

from __future__ import annotations

import re

from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import pyqtProperty, pyqtSignal, pyqtSlot

from .dialogs import DIALOGS
from .facts import class_facts
from .pythonqt import LOG
from .qtmodule import qt_class


def CtkWidget(qt_base: str):  # noqa: N802 - reads as a base class
    """The ``qt.<qt_base>`` a look-alike derives from (Qt's class tree)."""
    return qt_class(qt_base)


def _facts(name: str):
    return class_facts(name)


# -- ctkCollapsibleButton --------------------------------------------------------------------
class ctkCollapsibleButton(CtkWidget("QAbstractButton")):
    """A checkable header whose children hide when it is collapsed
    (ctkCollapsibleButton.cpp:223-231 setCollapsed = setChecked(!c); 272-328 onToggled →
    collapse: each child widget hidden or shown, then contentsCollapsed(bool))."""

    _pq = _facts("ctkCollapsibleButton")
    contentsCollapsed = pyqtSignal(bool)
    _pq_signal_types = {("contentsCollapsed", ("bool",)): bool}
    HEADER = 22

    def __init__(self, parent=None) -> None:
        QtWidgets.QAbstractButton.__init__(self, parent)
        self._collapsed = False
        self._forcing, self._stateCreated = False, False
        self._collapsedHeight = 14
        self._flat = False
        self._frameShape = QtWidgets.QFrame.NoFrame
        self._frameShadow = QtWidgets.QFrame.Plain
        self._lineWidth, self._midLineWidth = 1, 0
        self._textAlign = int(QtCore.Qt.AlignLeft | QtCore.Qt.AlignVCenter)
        self._indicatorAlign = int(QtCore.Qt.AlignLeft | QtCore.Qt.AlignVCenter)
        self.setCheckable(True)
        self.setChecked(True)  # ctkCollapsibleButton.cpp:90
        self._signal("toggled").connect(self._onToggled)
        self.setContentsMargins(0, self.HEADER, 0, 0)
        self.setSizePolicy(QtWidgets.QSizePolicy.Minimum, QtWidgets.QSizePolicy.Preferred)

    def _onToggled(self, checked: bool) -> None:
        if self.isCheckable():
            self._collapse(not checked)

    def _collapse(self, collapsed: bool) -> None:
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        for child in QtCore.QObject.children(self):
            if isinstance(child, QtWidgets.QWidget):
                self._setChildVisibility(child)
        self.updateGeometry()
        self._signal("contentsCollapsed").emit(collapsed)

    def _setChildVisibility(self, child) -> None:
        """ctkCollapsibleButton.cpp:121-158: a child the code hid itself
        (``visibilityToParent`` false) stays hidden when the button expands."""
        if not self.testAttribute(QtCore.Qt.WA_WState_Created):
            return
        self._forcing = True
        visible = not self._collapsed
        marked = child.property("visibilityToParent")
        if marked is not None and not marked:
            visible = False
        if child.testAttribute(QtCore.Qt.WA_WState_Created) or not visible:
            child.setVisible(visible)
        if marked is None or marked:
            child.setAttribute(QtCore.Qt.WA_WState_ExplicitShowHide, False)
        self._forcing = False

    def childEvent(self, event) -> None:  # cpp:681-702
        child = event.child()
        if event.type() == QtCore.QEvent.ChildAdded and isinstance(child, QtWidgets.QWidget):
            if (child.testAttribute(QtCore.Qt.WA_WState_ExplicitShowHide)
                    and child.testAttribute(QtCore.Qt.WA_WState_Hidden)):
                child.setProperty("visibilityToParent", False)
            child.installEventFilter(self)
            self._setChildVisibility(child)
        QtWidgets.QAbstractButton.childEvent(self, event)

    def setVisible(self, show: bool) -> None:  # cpp:708-733
        self._forcing = True
        QtWidgets.QWidget.setVisible(self, show)
        self._forcing = False
        if not self._stateCreated and self.testAttribute(QtCore.Qt.WA_WState_Created):
            self._stateCreated = True
            for child in QtCore.QObject.children(self):
                if isinstance(child, QtWidgets.QWidget):
                    self._setChildVisibility(child)

    def eventFilter(self, child, event) -> bool:  # cpp:736-770
        if self._forcing:
            return False
        if event.type() == QtCore.QEvent.ShowToParent:
            child.setProperty("visibilityToParent", True)
            self._setChildVisibility(child)  # hidden again while collapsed
        elif event.type() == QtCore.QEvent.HideToParent:
            child.setProperty("visibilityToParent", False)
        return False

    def sizeHint(self) -> QtCore.QSize:
        label = QtWidgets.QAbstractButton.text(self)
        text = self.fontMetrics().size(QtCore.Qt.TextShowMnemonic, label)
        header = QtCore.QSize(text.width() + 40, self.HEADER)
        layout = QtWidgets.QAbstractButton.layout(self)
        if self._collapsed or layout is None:
            return header
        body = layout.sizeHint()
        return QtCore.QSize(max(header.width(), body.width()), self.HEADER + body.height())

    def minimumSizeHint(self) -> QtCore.QSize:
        layout = QtWidgets.QAbstractButton.layout(self)
        if self._collapsed or layout is None:
            return QtCore.QSize(40, self.HEADER)
        body = layout.minimumSize()
        return QtCore.QSize(body.width(), self.HEADER + body.height())

    def hitButton(self, pos) -> bool:
        return pos.y() < self.HEADER

    def paintEvent(self, event) -> None:
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionButton()
        option.initFrom(self)
        option.rect = QtCore.QRect(0, 0, QtWidgets.QWidget.width(self), self.HEADER)
        painter.drawControl(QtWidgets.QStyle.CE_PushButtonBevel, option)
        arrow = QtWidgets.QStyleOption()
        arrow.initFrom(self)
        arrow.rect = QtCore.QRect(6, 5, 12, 12)
        primitive = (QtWidgets.QStyle.PE_IndicatorArrowRight if self._collapsed
                     else QtWidgets.QStyle.PE_IndicatorArrowDown)
        painter.drawPrimitive(primitive, arrow)
        painter.drawText(QtCore.QRect(24, 0, QtWidgets.QWidget.width(self) - 28, self.HEADER),
                         int(QtCore.Qt.AlignLeft | QtCore.Qt.AlignVCenter),
                         QtWidgets.QAbstractButton.text(self))

    def _get_collapsed(self) -> bool:
        return self._collapsed

    def _set_collapsed(self, c: bool) -> None:
        self.setChecked(not c)  # ctkCollapsibleButton.cpp:231

    collapsed = pyqtProperty(bool, _get_collapsed, _set_collapsed)
    collapsedHeight = pyqtProperty(int, lambda s: s._collapsedHeight,
                                   lambda s, v: setattr(s, "_collapsedHeight", v))
    flat = pyqtProperty(bool, lambda s: s._flat, lambda s, v: setattr(s, "_flat", v))
    contentsFrameShape = pyqtProperty(int, lambda s: s._frameShape,
                                      lambda s, v: setattr(s, "_frameShape", v))
    contentsFrameShadow = pyqtProperty(int, lambda s: s._frameShadow,
                                       lambda s, v: setattr(s, "_frameShadow", v))
    contentsLineWidth = pyqtProperty(int, lambda s: s._lineWidth,
                                     lambda s, v: setattr(s, "_lineWidth", v))
    contentsMidLineWidth = pyqtProperty(int, lambda s: s._midLineWidth,
                                        lambda s, v: setattr(s, "_midLineWidth", v))
    buttonTextAlignment = pyqtProperty(int, lambda s: s._textAlign,
                                       lambda s, v: setattr(s, "_textAlign", v))
    indicatorAlignment = pyqtProperty(int, lambda s: s._indicatorAlign,
                                      lambda s, v: setattr(s, "_indicatorAlign", v))


# -- ctkPathLineEdit ---------------------------------------------------------------------------
_NAME_FILTER = re.compile(r"^(.*)\(([a-zA-Z0-9_.*? +;#\-\[\]@\{\}/!<>\$%&=^~:\|]*)\)$")
_WILDCARD = re.compile(r"^[\w\s\.\*\_\~\$\[\]]+$")


def name_filters_pattern(name_filters: list[str]) -> str:
    """ctk::nameFiltersToRegularExpression (CTK Libs/Core/ctkUtils.cpp @5056664): each
    ``*.ext`` of each filter becomes ``.*\\.ext?$``; no extension at all: ``.+``."""
    parts = []
    for name_filter in name_filters:
        m = _NAME_FILTER.match(name_filter)
        if m:
            extensions = m.group(2).split()
        else:
            extensions = [name_filter] if _WILDCARD.match(name_filter) else []
        for ext in extensions:
            e = re.match(r"\*\.(\w+)", ext)
            if e:
                parts.append(".*\\." + e.group(1) + "?$")
    return "(" + "|".join(parts) + ")" if parts else ".+"


class ctkPathLineEdit(CtkWidget("QWidget")):
    """An editable combo box + browse button (ctkPathLineEdit.cpp:230-300). The line edit's
    QRegularExpressionValidator comes from ``nameFilters`` (ctkPathLineEdit.cpp:388-394);
    ``currentPathChanged`` is emitted only for acceptable input (ctkPathLineEdit.cpp:730-750)."""

    _pq = _facts("ctkPathLineEdit")
    Dirs, Files, Drives, NoSymLinks, Readable, Writable, Executable = (
        0x001, 0x002, 0x004, 0x008, 0x010, 0x020, 0x040)
    Hidden, System, AllDirs, NoDotAndDotDot, NoDot, NoDotDot = (
        0x100, 0x200, 0x400, 0x1000, 0x2000, 0x4000)
    AllEntries = Dirs | Files | Drives
    validInputChanged = pyqtSignal(bool)
    currentPathChanged = pyqtSignal(str)
    _pq_signal_types = {("validInputChanged", ("bool",)): bool,
                        ("currentPathChanged", ("QString",)): str}
    browse_answer: str | None = None  # what the harness's file dialog returns

    def __init__(self, parent=None) -> None:
        QtWidgets.QWidget.__init__(self, parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self._combo = QtWidgets.QComboBox(self)
        self._combo.setEditable(True)
        self._combo.setInsertPolicy(QtWidgets.QComboBox.NoInsert)
        self._line = self._combo.lineEdit()
        self._validator = QtGui.QRegularExpressionValidator(self)
        self._line.setValidator(self._validator)
        layout.addWidget(self._combo)
        self._button = QtWidgets.QToolButton(self)
        self._button.setText("...")
        self._button.clicked.connect(self.browse)
        layout.addWidget(self._button)
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Fixed)
        self._label, self._nameFilters, self._settingKey = "", [], ""
        self._filters = self.AllEntries | self.NoDotAndDotDot | self.Readable
        self._options, self._sizeAdjust, self._minLength = 0, 0, 0
        self._valid = False
        self._updateFilter()
        self._line.textChanged.connect(self._updateHasValidInput)

    def _updateFilter(self) -> None:
        pattern = QtCore.QRegularExpression(name_filters_pattern(self._nameFilters))
        self._validator.setRegularExpression(pattern)

    def _updateHasValidInput(self) -> None:
        old, self._valid = self._valid, self._line.hasAcceptableInput()
        if self._valid:
            self._signal("currentPathChanged").emit(self._line.text())
        if self._valid != old:
            self._signal("validInputChanged").emit(self._valid)

    @pyqtSlot(str)
    def setCurrentPath(self, path: str) -> None:
        self._line.setText(path)

    @pyqtSlot()
    def browse(self) -> None:
        if ctkPathLineEdit.browse_answer is None:
            LOG.errors.append(f"unexpected file dialog from {self.objectName()}")
            return
        self.setCurrentPath(ctkPathLineEdit.browse_answer)

    @pyqtSlot()
    def retrieveHistory(self) -> None:
        pass

    @pyqtSlot()
    def addCurrentPathToHistory(self) -> None:
        if self._combo.findText(self._line.text()) < 0:
            self._combo.addItem(self._line.text())

    @pyqtSlot(result=QtCore.QObject)
    def comboBox(self):
        return self._combo

    def _set_nameFilters(self, filters) -> None:
        self._nameFilters = list(filters)
        self._updateFilter()

    label = pyqtProperty(str, lambda s: s._label, lambda s, v: setattr(s, "_label", v))
    filters = pyqtProperty(int, lambda s: s._filters, lambda s, v: setattr(s, "_filters", v))
    currentPath = pyqtProperty(str, lambda s: s._line.text(), setCurrentPath)
    options = pyqtProperty(int, lambda s: s._options, lambda s, v: setattr(s, "_options", v))
    settingKey = pyqtProperty(str, lambda s: s._settingKey,
                              lambda s, v: setattr(s, "_settingKey", v))
    showBrowseButton = pyqtProperty(bool, lambda s: not s._button.isHidden(),
                                    lambda s, v: s._button.setVisible(v))
    showHistoryButton = pyqtProperty(bool, lambda s: True, lambda s, v: None)
    sizeAdjustPolicy = pyqtProperty(int, lambda s: s._sizeAdjust,
                                    lambda s, v: setattr(s, "_sizeAdjust", v))
    minimumContentsLength = pyqtProperty(int, lambda s: s._minLength,
                                         lambda s, v: setattr(s, "_minLength", v))
    nameFilters = pyqtProperty("QStringList", lambda s: s._nameFilters, _set_nameFilters)


# -- ctkSliderWidget ---------------------------------------------------------------------------
class ctkSliderWidget(CtkWidget("QWidget")):
    """A slider beside a spin box sharing one value (ctkSliderWidget.cpp:220-380): the spin
    box rounds to ``decimals`` and clamps to the range; ``valueChanged(double)`` follows the
    spin box's value (setSpinBoxValue, :362-380)."""

    _pq = _facts("ctkSliderWidget")
    valueChanged = pyqtSignal(float)
    valueIsChanging = pyqtSignal(float)
    decimalsChanged = pyqtSignal(int)
    _pq_signal_types = {("valueChanged", ("double",)): float,
                        ("valueIsChanging", ("double",)): float,
                        ("decimalsChanged", ("int",)): int}
    _SCALE = 1000

    def __init__(self, parent=None) -> None:
        QtWidgets.QWidget.__init__(self, parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._slider = QtWidgets.QSlider(QtCore.Qt.Horizontal, self)
        self._spin = QtWidgets.QDoubleSpinBox(self)
        self._spin.setRange(0.0, 99.0)  # ctkDoubleSpinBox / ctkDoubleSlider defaults
        layout.addWidget(self._slider)
        layout.addWidget(self._spin)
        self._tracking, self._synchronize, self._popup = True, 0, False
        self._tick = 0.0
        self._spin.valueChanged.connect(self._spinChanged)
        self._slider.valueChanged.connect(
            lambda v: self._spin.setValue(v / self._SCALE))
        self._syncSlider()

    def _syncSlider(self) -> None:
        self._slider.blockSignals(True)
        self._slider.setRange(round(self._spin.minimum() * self._SCALE),
                              round(self._spin.maximum() * self._SCALE))
        self._slider.setValue(round(self._spin.value() * self._SCALE))
        self._slider.blockSignals(False)

    def _spinChanged(self, value: float) -> None:
        self._syncSlider()
        self._signal("valueChanged").emit(value)

    @pyqtSlot()
    def reset(self) -> None:
        self.setValue(0.0)

    @pyqtSlot(float)
    def setValue(self, value: float) -> None:
        self._spin.setValue(value)

    @pyqtSlot(bool)
    def setSpinBoxVisible(self, visible: bool) -> None:
        self._spin.setVisible(visible)

    @pyqtSlot(int)
    def setDecimals(self, decimals: int) -> None:
        self._spin.setDecimals(decimals)
        self._syncSlider()
        self._signal("decimalsChanged").emit(self._spin.decimals())

    def _set_min(self, v: float) -> None:
        self._spin.setMinimum(v)
        self._syncSlider()

    def _set_max(self, v: float) -> None:
        self._spin.setMaximum(v)
        self._syncSlider()

    decimals = pyqtProperty(int, lambda s: s._spin.decimals(), setDecimals)
    singleStep = pyqtProperty(float, lambda s: s._spin.singleStep(),
                              lambda s, v: s._spin.setSingleStep(v))
    pageStep = pyqtProperty(float, lambda s: s._slider.pageStep() / s._SCALE,
                            lambda s, v: s._slider.setPageStep(round(v * s._SCALE)))
    minimum = pyqtProperty(float, lambda s: s._spin.minimum(), _set_min)
    maximum = pyqtProperty(float, lambda s: s._spin.maximum(), _set_max)
    value = pyqtProperty(float, lambda s: s._spin.value(), setValue)
    prefix = pyqtProperty(str, lambda s: s._spin.prefix(), lambda s, v: s._spin.setPrefix(v))
    suffix = pyqtProperty(str, lambda s: s._spin.suffix(), lambda s, v: s._spin.setSuffix(v))
    tickInterval = pyqtProperty(float, lambda s: s._tick, lambda s, v: setattr(s, "_tick", v))
    tickPosition = pyqtProperty(int, lambda s: int(s._slider.tickPosition()),
                                lambda s, v: s._slider.setTickPosition(v))
    synchronizeSiblings = pyqtProperty(int, lambda s: s._synchronize,
                                       lambda s, v: setattr(s, "_synchronize", v))
    spinBoxAlignment = pyqtProperty(int, lambda s: int(s._spin.alignment()),
                                    lambda s, v: s._spin.setAlignment(QtCore.Qt.Alignment(v)))
    tracking = pyqtProperty(bool, lambda s: s._tracking, lambda s, v: setattr(s, "_tracking", v))
    spinBoxVisible = pyqtProperty(bool, lambda s: not s._spin.isHidden(), setSpinBoxVisible)
    popupSlider = pyqtProperty(bool, lambda s: s._popup, lambda s, v: setattr(s, "_popup", v))
    invertedAppearance = pyqtProperty(bool, lambda s: s._slider.invertedAppearance(),
                                      lambda s, v: s._slider.setInvertedAppearance(v))
    invertedControls = pyqtProperty(bool, lambda s: s._slider.invertedControls(),
                                    lambda s, v: s._slider.setInvertedControls(v))


# -- ctkMessageBox -------------------------------------------------------------------------------
class ctkMessageBox(CtkWidget("QMessageBox")):
    """slicer.util.messageBox's dialog. ``exec_`` does not block: it records the text and
    returns the answer the test queued (:data:`DIALOGS`); an unexpected dialog is a problem."""

    _pq = _facts("ctkMessageBox")

    def __init__(self, parent=None) -> None:
        QtWidgets.QMessageBox.__init__(self, parent)
        self._dontShowAgain, self._settingsKey = False, ""
        self._dontShowVisible, self._roles = False, []

    @pyqtSlot(bool)
    def setDontShowAgain(self, dont: bool) -> None:
        self._dontShowAgain = dont

    @pyqtSlot(int)
    def addDontShowAgainButtonRole(self, role: int) -> None:
        self._roles.append(role)

    @pyqtSlot(int)
    def onFinished(self, result: int) -> None:
        pass

    def exec_(self) -> int:
        return DIALOGS.answer(QtWidgets.QMessageBox.text(self),
                              int(QtWidgets.QMessageBox.standardButtons(self)))

    def exec(self) -> int:  # noqa: A003 - Qt's name
        return self.exec_()

    dontShowAgain = pyqtProperty(bool, lambda s: s._dontShowAgain,
                                 lambda s, v: setattr(s, "_dontShowAgain", v))
    dontShowAgainSettingsKey = pyqtProperty(str, lambda s: s._settingsKey,
                                            lambda s, v: setattr(s, "_settingsKey", v))
    dontShowAgainButtonRoles = pyqtProperty("QVariantList", lambda s: s._roles,
                                            lambda s, v: setattr(s, "_roles", list(v)))
    dontShowAgainVisible = pyqtProperty(bool, lambda s: s._dontShowVisible,
                                        lambda s, v: setattr(s, "_dontShowVisible", v))



CLASSES = {c.__name__: c for c in (ctkCollapsibleButton, ctkPathLineEdit, ctkSliderWidget,
                                    ctkMessageBox)}
