"""NNSegTest, what *Reload and Test* runs in Slicer, run in the harness."""

from __future__ import annotations

import sys

import pytest
from moduleutil import open_module

pytestmark = pytest.mark.gui


def _test_case(harness):
    import slicer

    open_module(harness)
    slicer.modules.NNSegWidget.logic.python = sys.executable
    case = sys.modules["NNSeg"].NNSegTest()
    case.messageDelay = 10
    return case


@pytest.mark.parametrize("name", [
    "test_ExportAndSegmentTinyCase",
    # its click path trains on the sample data (about 90 s a release): make test-all
    pytest.param("test_ClickPath", marks=pytest.mark.slow)])
def test_nnsegtest(harness, name, monkeypatch):
    import slicer
    from harness.pythonqt import LOG

    case = _test_case(harness)
    # NNSegTest's training runs `nnseg` from the module's logic: the same Python as here
    monkeypatch.setattr(sys.modules["NNSeg"].NNSegLogic, "__init__", _logic_init(sys.executable))
    case.setUp()
    getattr(case, name)()
    assert LOG.problems() == [], LOG.problems()
    assert slicer.mrmlScene.GetNumberOfNodes() > 0


@pytest.mark.slow
def test_reload_and_test_runs_the_whole_nnsegtest(harness, monkeypatch):
    """The module's own runTest, as Slicer's Reload and Test calls it (clinician's loop
    included, a few minutes on a CPU)."""
    import slicer
    from harness.pythonqt import LOG

    open_module(harness)
    monkeypatch.setattr(sys.modules["NNSeg"].NNSegLogic, "__init__", _logic_init(sys.executable))
    slicer.selfTests["NNSeg"](msec=10)
    assert LOG.problems() == [], LOG.problems()


def _logic_init(python: str):
    module = sys.modules["NNSeg"]
    original = module.NNSegLogic.__init__

    def init(self) -> None:
        original(self)
        self.python = python

    return init
