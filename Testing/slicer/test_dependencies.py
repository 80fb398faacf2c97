"""NNSegLib.slicer.dependencies: what still needs installing or upgrading, and restarts."""

from __future__ import annotations

import pytest

from NNSegLib.slicer.dependencies import (
    IMPORT_NAMES,
    TORCH_REQUIREMENT,
    install_message,
    missing_requirements,
    parse_requirement,
    restart_needed,
    satisfies,
    torch_problem,
    unmet_requirements,
    version_tuple,
)


def test_missing_requirements(tmp_path, monkeypatch):
    import importlib.util

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# installed on first use\n"
        "\n"
        "numpy>=1.20  # shipped by Slicer: skipped\n"
        "pytest>=7\n"
        "nnseg-surely-missing-package==1.0\n"
        "scikit-image<1\n"
        "PyYAML>=6\n"
        "Torch\n")
    seen = []
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        seen.append(name)
        return None if name in ("skimage", "yaml") else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert missing_requirements(requirements, skip=("numpy", "torch")) == [
        "nnseg-surely-missing-package==1.0", "scikit-image<1", "PyYAML>=6"]
    # distribution names map to import names (dashes become underscores)
    assert seen == ["pytest", "nnseg_surely_missing_package", "skimage", "yaml"]
    assert IMPORT_NAMES["scikit-image"] == "skimage"
    seen.clear()
    missing_requirements(str(requirements))  # no skip list: every line is looked up
    assert seen == ["numpy", "pytest", "nnseg_surely_missing_package", "skimage", "yaml",
                    "torch"]


@pytest.mark.parametrize("version,spec,ok", [
    ("1.9.0", ">=1.9", True), ("1.8.9", ">=1.9", False), ("2.13.0+cpu", ">=2.1", True),
    ("2.0", ">=2.1", False), ("1.10", ">1.9", True), ("1.9", ">1.9", False),
    ("5.8.0", "==5.8", True), ("5.8.1", "==5.8", False), ("3.5.2", ">=3.5,<4", True),
    ("4.0", ">=3.5,<4", False), ("1.4.2", "~=1.4", True), ("2.0", "~=1.4", False),
    ("1.4.5", "~=1.4.2", True), ("1.5.0", "~=1.4.2", False), ("1.0", "!=1.0", False),
    ("2.1.0rc1", ">=2.1", True),
])
def test_version_comparison(version, spec, ok):
    req = parse_requirement("x" + spec)
    assert satisfies(version, req.constraints) is ok


def test_parse_requirement_and_version_tuple():
    req = parse_requirement("SciPy[extra] >= 1.9, <2  # comment")
    assert req.name == "scipy" and req.constraints == ((">=", "1.9"), ("<", "2"))
    assert req.specifier == ">=1.9,<2" and req.import_name == "scipy"
    assert parse_requirement("  # only a comment") is None
    assert parse_requirement("psutil").constraints == ()
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("1.26.4") == (1, 26, 4)
    assert parse_requirement(TORCH_REQUIREMENT).specifier == ">=2.1"


def test_unmet_requirements_reports_missing_and_too_old(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scipy>=1.9\ntqdm>=4.60\npsutil>=5.8\nnumpy>=99\n"
                            "nnseg-surely-missing-package>=1\n")
    installed = {"scipy": "1.7.3", "tqdm": "4.66.1", "psutil": "5.9.8", "numpy": "1.0"}
    unmet = unmet_requirements(requirements, skip=("numpy",), version_of=installed.get)
    assert unmet == [("scipy>=1.9", "1.7.3"), ("nnseg-surely-missing-package>=1", None)]
    message = install_message(unmet)
    assert "scipy>=1.9 (installed: 1.7.3)" in message
    assert "nnseg-surely-missing-package>=1" in message.splitlines()[1]
    # the real environment of the tests meets the module's real requirements
    from pathlib import Path

    real = Path(__file__).resolve().parents[2] / "NNSeg" / "Resources" / "requirements.txt"
    assert unmet_requirements(real, skip=("numpy", "simpleitk", "vtk", "torch")) == []


def test_torch_problem_and_restart():
    assert torch_problem(version_of=lambda name: None) == "PyTorch is not installed"
    assert torch_problem(version_of=lambda name: "2.0.1") == (
        "PyTorch 2.0.1 is installed; NNSeg needs >=2.1")
    assert torch_problem(version_of=lambda name: "2.13.0+cpu") is None
    # an imported package can only be replaced by restarting Slicer
    assert restart_needed(["scipy>=1.9", "tqdm>=4", "nnseg-x>=1"],
                          modules=["scipy", "scipy.ndimage", "os"]) == ["scipy"]
    assert restart_needed([TORCH_REQUIREMENT], modules=["torch"]) == ["torch"]
    assert restart_needed([TORCH_REQUIREMENT], modules=[]) == []
