"""Every look-alike exposes exactly the API of ``api_facts.json``, both ways."""

from __future__ import annotations

import pytest
from harness.facts import SHARED, class_facts, split_signature


def _own_api(cls) -> dict[str, set[str]]:
    from PyQt5 import QtCore

    mo = cls.staticMetaObject
    parent = mo.superClass()
    props = {mo.property(i).name() for i in range(mo.propertyOffset(), mo.propertyCount())}
    signals, slots = set(), set()
    for i in range(mo.methodOffset(), mo.methodCount()):
        m = mo.method(i)
        name = bytes(m.name()).decode()
        (signals if m.methodType() == QtCore.QMetaMethod.Signal else slots).add(name)
    del parent
    return {"properties": props, "signals": signals, "slots": slots}


def _facts_own(name: str, version: str) -> dict[str, set[str]]:
    from harness.facts import _own, raw_facts

    own = _own(raw_facts()[name], version)
    return {"properties": set(own["properties"]),
            "signals": {split_signature(s)[0] for s in own["signals"]},
            "slots": {split_signature(s)[0] for s in own["slots"] + own["invokables"]}}


@pytest.mark.skipif(SHARED is None, reason="needs ../shared/slicer")
@pytest.mark.parametrize("name", ["ctkCollapsibleButton", "ctkPathLineEdit", "ctkSliderWidget",
                                  "ctkMessageBox", "qMRMLWidget", "qMRMLNodeComboBox",
                                  "qMRMLCheckableNodeComboBox"])
def test_look_alike_has_exactly_the_facts_api(slicer_version, name):
    from harness import ctk, qmrml

    cls = {**ctk.CLASSES, **qmrml.CLASSES}[name]
    own, facts = _own_api(cls), _facts_own(name, slicer_version)
    newest = _facts_own(name, "5.12.3")
    for kind in own:  # a look-alike has the newest API; PythonQt's rules hide what is newer
        assert own[kind] - facts[kind] <= newest[kind] - facts[kind], kind
        assert own[kind] >= facts[kind], kind
    assert own == newest


@pytest.mark.skipif(SHARED is None, reason="needs ../shared/slicer")
def test_plain_cpp_methods_are_not_callable_on_ctk_and_qmrml(harness):
    """PythonQt exposes no plain C++ method of CTK/qMRML classes: as in Slicer, they fail."""
    import ctk
    import slicer

    combo = slicer.qMRMLNodeComboBox()
    with pytest.raises(AttributeError):
        combo.nodes()  # a public C++ method of qMRMLNodeComboBox, not a slot
    path = ctk.ctkPathLineEdit()
    with pytest.raises(AttributeError):
        path.setFilters(1)  # C++ setter of a property: only the property is reachable
    path.filters = ctk.ctkPathLineEdit.Dirs
    assert path.filters == ctk.ctkPathLineEdit.Dirs
    with pytest.raises(ValueError):
        combo.connect("currentNodeChanged(vtkMRMLScalarVolumeNode*)", print)
    assert class_facts("qMRMLNodeComboBox").has_signal("currentNodeChanged(vtkMRMLNode*)")
