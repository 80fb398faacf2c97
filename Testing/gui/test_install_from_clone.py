"""Installable today: a clone's ``NNSeg`` folder added to Slicer's *Additional module paths*
loads, and the module finds the clone's ``NNSegLib`` beside it (not an installed copy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import sys
# no NNSegLib but the clone's: drop the editable install's finder and path entries
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                 and "editable" not in repr(f).lower()]
repo = {repo!r}
sys.path = [p for p in sys.path if not p.startswith(repo) or "site-packages" in p]
sys.path.insert(0, {harness!r})
import importlib.util
assert importlib.util.find_spec("NNSegLib") is None, "NNSegLib importable before loading"
from harness import env
env.start({version!r})
env.load_module(__import__("pathlib").Path({clone!r}) / "NNSeg")
env.select("NNSeg")
import NNSegLib, slicer
print(NNSegLib.__file__)
widget = slicer.modules.NNSegWidget
print(widget.ui.planButton.toolTip)
from harness.pythonqt import LOG
print("PROBLEMS", LOG.problems())
"""


def test_module_from_a_clone_uses_the_clone_library(slicer_version, tmp_path):
    repo = HERE.parents[1]
    clone = tmp_path / "clone"
    for name in ("NNSeg", "NNSegLib"):
        shutil.copytree(repo / name, clone / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    code = SCRIPT.format(repo=str(repo), harness=str(HERE), version=slicer_version,
                         clone=str(clone))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert Path(lines[0]).resolve() == (clone / "NNSegLib" / "__init__.py").resolve()
    assert "export the dataset first" in lines[1]
    assert lines[-1] == "PROBLEMS []"
