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
    from harness.dialogs import DIALOGS
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


@pytest.fixture(scope="session")
def trained_work(tmp_path_factory):
    """A dataset with the labels of :func:`moduleutil.add_case` and a 3d_fullres fold-0
    model trained for one tiny epoch by the ``nnseg`` CLI (shared by the tests; copy it)."""
    import json
    import subprocess

    from moduleutil import write_scene_like_dataset

    root = tmp_path_factory.mktemp("trained")
    dataset, work = write_scene_like_dataset(root / "Dataset004_Gui"), root / "work"
    cli = [sys.executable, "-m", "NNSegLib"]
    for args in (["fingerprint", str(dataset), "--work", str(work)],
                 ["plan", str(dataset), "--work", str(work), "--configurations", "3d_fullres"],
                 ["preprocess", str(dataset), "--work", str(work)],
                 ["train", str(dataset), "3d_fullres", "0", "--work", str(work), "--epochs", "1",
                  "--iterations-per-epoch", "3", "--val-iterations", "1", "--device", "cpu"]):
        subprocess.run(cli + args + ["--quiet"], check=True, capture_output=True)
    assert json.loads((dataset / "dataset.json").read_text())["labels"]["a"] == 1
    return dataset, work
