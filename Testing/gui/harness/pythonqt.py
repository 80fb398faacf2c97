"""PythonQt's view of Qt objects, over real PyQt5 objects.

Slicer's Python sees Qt through PythonQt (commontk/PythonQt @db525af), not PyQt. The rules
reproduced here are the ones in ``../shared/slicer/api_facts.json`` ``_notes``:

* ``w.name`` resolves as a Q_PROPERTY first (read with ``QObject::property``, written with
  ``QObject::setProperty``), then a slot / Q_INVOKABLE / signal, then a wrapper method
  (PythonQtClassInfo.cpp:306-317). For CTK, qMRML and qSlicer classes only properties,
  signals, slots, invokables and decorators exist: a plain C++ method is an AttributeError,
  as in Slicer.
* ``w.connect("signal(types)", callable)`` finds the signal by its normalized signature;
  an unknown signature raises.
* A callable connected to a signal receives only as many arguments as it declares
  (PythonQtSignalReceiver.cpp:69-99); an exception in it is printed and does not reach
  the emitter. Here it is also recorded in :data:`LOG`, which the tests require empty.
"""

from __future__ import annotations

import inspect
import sys
import traceback
import weakref
from dataclasses import dataclass, field

from PyQt5 import QtCore

from .facts import STD_DECORATORS, ClassFacts, normalize, split_signature


@dataclass
class Log:
    """What reached Slicer's Python console / error log during a test."""

    errors: list[str] = field(default_factory=list)  # tracebacks of slots and hooks
    qt_messages: list[str] = field(default_factory=list)  # qWarning/qCritical from Qt

    def clear(self) -> None:
        self.errors.clear()
        self.qt_messages.clear()

    def problems(self) -> list[str]:
        return self.errors + self.qt_messages


LOG = Log()


def report_exception(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    LOG.errors.append(text)
    sys.stderr.write(text)


def _qt_message_handler(mode, context, message) -> None:
    if mode in (QtCore.QtWarningMsg, QtCore.QtCriticalMsg, QtCore.QtFatalMsg):
        LOG.qt_messages.append(message)


def install_handlers() -> None:
    """Qt's warnings and uncaught slot exceptions go to :data:`LOG` (PyQt5 would abort)."""
    QtCore.qInstallMessageHandler(_qt_message_handler)
    sys.excepthook = lambda t, v, tb: report_exception(v)


# -- signal receivers ----------------------------------------------------------------------
def declared_arguments(fn) -> int | None:
    """How many positional arguments PythonQt passes: None = all (``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class Receiver:
    """A Python callable as PythonQt calls it from a signal."""

    def __init__(self, fn) -> None:
        self.fn, self.count = fn, declared_arguments(fn)

    def __call__(self, *args) -> None:
        if self.count is not None:
            args = args[: self.count]
        try:
            self.fn(*args)
        except Exception as exc:  # PythonQt prints it; the emitter goes on
            report_exception(exc)


_CONNECTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pyqt_signal(obj, name: str, args: tuple[str, ...]):
    bound = QtCore.QObject.__getattribute__(obj, name)
    overloads = getattr(type(obj), "_pq_signal_types", {}).get((name, args))
    if overloads is not None:  # a harness widget: C++ types declared as Python types
        return bound[overloads] if overloads != () else bound
    try:
        return bound[",".join(args)] if args else bound
    except (KeyError, TypeError):
        return bound


def connect_signal(obj, signature: str, slot) -> bool:
    info: ClassFacts = type(obj)._pq
    if not info.has_signal(signature) and not _meta_has_signal(obj, signature):
        raise ValueError(f"{type(obj).__name__}.connect: no signal {signature!r}")
    name, args = split_signature(signature)
    receiver = Receiver(slot)
    _pyqt_signal(obj, name, args).connect(receiver)
    _CONNECTIONS.setdefault(obj, []).append((normalize(signature), slot, receiver))
    return True


def disconnect_signal(obj, signature: str, slot) -> bool:
    sig, kept, found = normalize(signature), [], False
    for entry in _CONNECTIONS.get(obj, []):
        if not found and entry[0] == sig and entry[1] == slot:
            name, args = split_signature(sig)
            _pyqt_signal(obj, name, args).disconnect(entry[2])
            found = True
        else:
            kept.append(entry)
    if obj in _CONNECTIONS:
        _CONNECTIONS[obj] = kept
    return found


def _meta_has_signal(obj, signature: str) -> bool:
    """A Qt class not described in the facts: its real meta-object decides."""
    if type(obj)._pq_strict:  # facts classes, their subclasses and the look-alikes
        return False
    mo = QtCore.QObject.metaObject(obj)
    sig = QtCore.QMetaObject.normalizedSignature(signature).data().decode()
    for i in range(mo.methodCount()):
        m = mo.method(i)
        signature = bytes(m.methodSignature()).decode()
        if m.methodType() == QtCore.QMetaMethod.Signal and signature == sig:
            return True
    return False


class BoundSignal:
    """``w.clicked``: PythonQt's signal object (connect / disconnect / emit)."""

    def __init__(self, obj, name: str, overloads: list[tuple[str, ...]]) -> None:
        self._obj, self._name, self._sig = obj, name, f"{name}({','.join(overloads[0])})"

    def connect(self, slot) -> bool:
        return connect_signal(self._obj, self._sig, slot)

    def disconnect(self, slot) -> bool:
        return disconnect_signal(self._obj, self._sig, slot)

    def emit(self, *args) -> None:
        name, types = split_signature(self._sig)
        _pyqt_signal(self._obj, name, types).emit(*args)


# -- the attribute rules ---------------------------------------------------------------------
_get = object.__getattribute__


class PythonQtObject:
    """Mixin placed before a PyQt5 class: attribute access as PythonQt resolves it."""

    _pq: ClassFacts
    _pq_strict = True  # False: a Qt class the facts do not list (its PyQt API is used)

    def __bool__(self) -> bool:  # PythonQt: true while the C++ object exists (not len())
        return True

    def _signal(self, name: str):
        """The PyQt signal itself (for the harness's own emits)."""
        return _get(self, name)

    def __getattribute__(self, name: str):
        if name.startswith("_"):
            return _get(self, name)
        cls = type(self)
        info: ClassFacts = cls._pq
        if name in info.properties:
            value = QtCore.QObject.property(self, name)
            return tuple(value) if isinstance(value, list) else value  # QList → tuple
        if name == "name":  # PythonQt's alias of objectName (Slicer's util relies on it)
            return QtCore.QObject.objectName(self)
        if name in info.signals:
            return BoundSignal(self, name, info.signals[name])
        if name in ("connect", "disconnect"):
            return _get(self, "_pq_" + name)
        # PythonQt appends "_" to slot names that are Python keywords (QDialog.exec → exec_)
        if name in info.callables or name.rstrip("_") in info.callables or not cls._pq_strict:
            try:
                return _get(self, name)
            except AttributeError:
                pass
        instance = _get(self, "__dict__")
        if name in instance:
            return instance[name]
        if name in cls.__dict__ and not callable(cls.__dict__[name]):
            return cls.__dict__[name]  # class constants (enums)
        if not cls._pq_strict and name in QtCore.QObject.dynamicPropertyNames(self):
            return QtCore.QObject.property(self, name)
        raise AttributeError(f"{cls.__name__} object has no attribute '{name}' "
                             "(not a property, slot, invokable, signal or wrapper of it)")

    def __setattr__(self, name: str, value) -> None:
        info: ClassFacts = type(self)._pq
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name in info.properties:
            if isinstance(value, tuple):  # PythonQt converts any sequence to a QList
                value = list(value)
            if not QtCore.QObject.setProperty(self, name, value):
                raise AttributeError(f"{type(self).__name__}.{name}: cannot set the property "
                                     f"to {value!r}")
        elif name == "name":
            QtCore.QObject.setObjectName(self, value)
        elif name in info.signals or name in info.slots or name in info.wrapped:
            raise AttributeError(f"{type(self).__name__}.{name} is a method, not assignable")
        else:
            object.__setattr__(self, name, value)

    def _pq_connect(self, signature, slot, *rest) -> bool:
        if rest:  # connect(signal, receiver, slot): Qt's own connection by signatures
            receiver, slot_sig = slot, rest[0]
            target = getattr(receiver, split_signature(slot_sig)[0])
            return connect_signal(self, signature, target)
        return connect_signal(self, signature, slot)

    def _pq_disconnect(self, signature, slot) -> bool:
        return disconnect_signal(self, signature, slot)


def python_qt_class(name: str, base: type, info: ClassFacts, strict: bool,
                    namespace: dict | None = None) -> type:
    """``qt.<name>``: the PyQt5 class with PythonQt's attribute rules."""
    attrs = {"_pq": info, "_pq_strict": strict, "__module__": "qt"}
    attrs.update(namespace or {})
    return type(name, (PythonQtObject, base), attrs)


__all__ = ["LOG", "BoundSignal", "PythonQtObject", "STD_DECORATORS", "install_handlers",
           "python_qt_class", "report_exception"]
