"""The ``qt`` module as Slicer's Python sees it: PyQt5 classes under PythonQt's rules.

Each ``qt.<Class>`` derives from PyQt5's class *and* from ``qt.<its base>``, so the class
tree is Qt's (``isinstance(checkBox, qt.QWidget)`` holds, ``findChildren(qt.QWidget)``
finds every widget). Classes in ``api_facts.json`` are strict (only what PythonQt
exposes); other Qt classes keep their PyQt API; value classes (QSize, QIcon,
QTableWidgetItem...) are PyQt's own.
"""

from __future__ import annotations

import types

from PyQt5 import QtCore, QtGui, QtWidgets

from .facts import ClassFacts, class_facts, raw_facts, split_signature
from .pythonqt import PythonQtObject, python_qt_class

_SOURCES = (QtWidgets, QtGui, QtCore)
_BUILT: dict[str, type] = {}


def _pyqt(name: str):
    for source in _SOURCES:
        if hasattr(source, name):
            return getattr(source, name)
    return None


def permissive_facts(name: str, base) -> ClassFacts:
    info = ClassFacts(name, qt_class=True)
    mo = base.staticMetaObject
    for i in range(mo.propertyCount()):
        info.properties.add(mo.property(i).name())
    for i in range(mo.methodCount()):
        m = mo.method(i)
        sig = bytes(m.methodSignature()).decode()
        if m.methodType() == QtCore.QMetaMethod.Signal:
            n, args = split_signature(sig)
            info.signals.setdefault(n, []).append(args)
        else:
            info.slots.add(split_signature(sig)[0])
            info.slot_signatures.add(sig)
    return info


def qt_class(name: str):
    """``qt.<name>`` (built once)."""
    if name in _BUILT:
        return _BUILT[name]
    base = _pyqt(name)
    if base is None:
        raise AttributeError(f"module 'qt' has no attribute '{name}'")
    if not (isinstance(base, type) and issubclass(base, QtCore.QObject)):
        _BUILT[name] = base
        return base
    strict = name in raw_facts() and not name.startswith("_")
    info = class_facts(name) if strict else permissive_facts(name, base)
    parent_name = raw_facts()[name].get("base") if strict else None
    if parent_name is None and base is not QtCore.QObject:
        parent_name = base.__bases__[0].__name__
    parent = qt_class(parent_name) if parent_name else None
    if parent is not None and isinstance(parent, type) and issubclass(parent, PythonQtObject):
        cls = type(name, (base, parent), {"_pq": info, "_pq_strict": strict,
                                          "__module__": "qt"})
    else:
        cls = python_qt_class(name, base, info, strict)
    if name == "QFileDialog":
        _answer_file_dialogs(cls)
    _BUILT[name] = cls
    return cls


def _answer_file_dialogs(cls) -> None:
    """QFileDialog's static getters run a modal dialog (nothing would close it offscreen):
    they return the answer the test queued in ``dialogs.DIALOGS.files``; an unexpected one is a
    problem, as a dialog the user never asked for would be."""
    def ask(*args, **kwargs):
        from .dialogs import DIALOGS

        return DIALOGS.file_answer(str(args[1] if len(args) > 1 else kwargs.get("caption")))

    def ask_name(*args, **kwargs):
        return (ask(*args, **kwargs), "")

    cls.getExistingDirectory = staticmethod(ask)
    cls.getOpenFileName = staticmethod(ask_name)
    cls.getSaveFileName = staticmethod(ask_name)


def module() -> types.ModuleType:
    qt = types.ModuleType("qt")
    qt.__getattr__ = qt_class  # type: ignore[attr-defined]
    qt.Qt = QtCore.Qt
    return qt
