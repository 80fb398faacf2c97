"""``qt.QUiLoader`` as Slicer's (QFormBuilder): a .ui file becomes real widgets.

QFormBuilder (Qt 5.15 tools/uilib/abstractformbuilder.cpp) creates each ``<widget>`` by its
class name (custom widgets through the plugins Slicer registers: here the CTK and qMRML
look-alikes), applies the ``<property>`` elements in file order with
``QObject::setProperty`` and makes the ``<connections>`` by signature. It is strict where
Slicer's loader is silent: an unknown class, or a property without ``stdset="0"`` that is
not a real Q_PROPERTY (QFormBuilder would quietly make it a dynamic property that nothing
reads), is an error naming the widget.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from PyQt5 import QtCore, QtWidgets


class UiError(RuntimeError):
    pass


def _enum(text: str, classes: dict) -> int:
    scope, _, name = text.partition("::")
    holder = classes.get(scope) or getattr(QtWidgets, scope, None) or getattr(QtCore, scope, None)
    if holder is None or not hasattr(holder, name):
        raise UiError(f"unknown enum value {text}")
    return int(getattr(holder, name))


def property_value(element, classes: dict):
    value = list(element)[0]
    tag = value.tag
    if tag == "string":
        return value.text or ""
    if tag == "bool":
        return value.text == "true"
    if tag == "number":
        return int(value.text)
    if tag == "double":
        return float(value.text)
    if tag == "enum":
        return _enum(value.text, classes)
    if tag == "set":
        result = 0
        for part in value.text.split("|"):
            result |= _enum(part.strip(), classes)
        return result
    if tag == "stringlist":
        return [s.text or "" for s in value.findall("string")]
    if tag == "size":
        return QtCore.QSize(int(value.findtext("width")), int(value.findtext("height")))
    raise UiError(f"property type <{tag}> not supported")


def _is_real_property(obj, name: str) -> bool:
    return QtCore.QObject.metaObject(obj).indexOfProperty(name) >= 0


class Builder:
    def __init__(self, classes: dict) -> None:
        self.classes = classes
        self.objects: dict[str, QtCore.QObject] = {}

    def create(self, cls: str, parent):
        factory = self.classes.get(cls)
        if factory is None:
            raise UiError(f"no class {cls} (not a Qt class and no plugin provides it)")
        return factory(parent) if parent is not None else factory()

    def apply(self, obj, element) -> None:
        for prop in element.findall("property"):
            name = prop.get("name")
            value = property_value(prop, self.classes)
            if prop.get("stdset") == "0":
                QtCore.QObject.setProperty(obj, name, value)
                continue
            label = f"{QtCore.QObject.objectName(obj)} ({type(obj).__name__})"
            if not _is_real_property(obj, name):
                raise UiError(f"{label}: '{name}' is not a property of the class; mark "
                              "dynamic properties stdset=\"0\"")
            if not QtCore.QObject.setProperty(obj, name, value):
                raise UiError(f"{label}: property '{name}' refused {value!r}")

    def widget(self, element, parent):
        w = self.create(element.get("class"), parent)
        QtCore.QObject.setObjectName(w, element.get("name", ""))
        self.objects[element.get("name", "")] = w
        self.apply(w, element)
        for child in element:
            if child.tag == "layout":
                QtWidgets.QWidget.setLayout(w, self.layout(child, w))
            elif child.tag == "widget":
                self.widget(child, w)
            elif child.tag == "item" and isinstance(w, (QtWidgets.QComboBox,
                                                        QtWidgets.QListWidget)):
                text = property_value(child.find("property"), self.classes)
                w.addItem(text)
        return w

    def layout(self, element, parent_widget):
        layout = self.create(element.get("class"), None)
        QtCore.QObject.setObjectName(layout, element.get("name", ""))
        self.apply(layout, element)
        for item in element.findall("item"):
            child = list(item)[0]
            row, col = int(item.get("row", -1)), int(item.get("column", -1))
            span_r, span_c = int(item.get("rowspan", 1)), int(item.get("colspan", 1))
            if child.tag == "widget":
                thing = self.widget(child, parent_widget)
            elif child.tag == "layout":
                thing = self.layout(child, parent_widget)
            elif child.tag == "spacer":
                orientation = child.find("property[@name='orientation']")
                vertical = orientation is not None and "Vertical" in (
                    orientation.findtext("enum") or "")
                policy = QtWidgets.QSizePolicy
                thing = QtWidgets.QSpacerItem(
                    0, 0, policy.Minimum if vertical else policy.Expanding,
                    policy.Expanding if vertical else policy.Minimum)
            else:
                raise UiError(f"layout item <{child.tag}> not supported")
            self._add(layout, thing, row, col, span_r, span_c)
        return layout

    @staticmethod
    def _add(layout, thing, row, col, span_r, span_c) -> None:
        if isinstance(layout, QtWidgets.QFormLayout):
            role = (QtWidgets.QFormLayout.SpanningRole if span_c > 1 else
                    QtWidgets.QFormLayout.LabelRole if col == 0 else
                    QtWidgets.QFormLayout.FieldRole)
            if isinstance(thing, QtWidgets.QLayout):
                layout.setLayout(row, role, thing)
            elif isinstance(thing, QtWidgets.QSpacerItem):
                layout.setItem(row, role, thing)
            else:
                layout.setWidget(row, role, thing)
        elif isinstance(layout, QtWidgets.QGridLayout):
            if isinstance(thing, QtWidgets.QLayout):
                layout.addLayout(thing, row, col, span_r, span_c)
            elif isinstance(thing, QtWidgets.QSpacerItem):
                layout.addItem(thing, row, col, span_r, span_c)
            else:
                layout.addWidget(thing, row, col, span_r, span_c)
        else:
            if isinstance(thing, QtWidgets.QLayout):
                layout.addLayout(thing)
            elif isinstance(thing, QtWidgets.QSpacerItem):
                layout.addItem(thing)
            else:
                layout.addWidget(thing)

    def connections(self, root) -> None:
        for c in root.findall("connections/connection"):
            sender = self.objects[c.findtext("sender")]
            receiver = self.objects[c.findtext("receiver")]
            signal, slot = c.findtext("signal"), c.findtext("slot")
            receiver_facts = type(receiver)._pq
            from .facts import normalize

            if normalize(slot) not in receiver_facts.slot_signatures:
                raise UiError(f"{c.findtext('receiver')} has no slot {slot}")
            sender.connect(signal, getattr(receiver, slot.partition("(")[0]))


def load(path: str, classes: dict):
    root = ET.parse(path).getroot()
    builder = Builder(classes)
    widget = builder.widget(root.find("widget"), None)
    builder.connections(root)
    return widget
