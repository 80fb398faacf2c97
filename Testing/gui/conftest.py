"""Fixtures of the real-Qt GUI tier: one Slicer release per parameter, a fresh module each.

Needs ``../shared/slicer`` (Slicer's own Python layer and the API facts), PyQt5 and
slicer-core; without them the tier skips, as the data tests do.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness.facts import SHARED, VERSIONS  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if SHARED is None:
        return "needs ../shared/slicer (Slicer's Python layer and API facts)"
    for name in ("PyQt5", "slicer"):
        if importlib.util.find_spec(name) is None:
            return f"needs {name} (make test installs it)"
    return None


@pytest.fixture(scope="session", params=VERSIONS)
def slicer_version(request):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture
def harness(slicer_version, tmp_path, monkeypatch):
    """Slicer of ``slicer_version`` with an empty scene, fresh settings and no problems."""
    from harness import env
    from harness.ctk import DIALOGS
    from harness.pythonqt import LOG
    from PyQt5 import QtCore

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env.start(slicer_version)
    QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope,
                             str(tmp_path / "settings"))
    env.set_testing(False)
    env.reset_scene()
    LOG.clear()
    DIALOGS.clear()
    yield env
    env.unload_all()
    env.reset_scene()
