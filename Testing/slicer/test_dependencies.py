"""NNSegLib.slicer.dependencies: which requirement lines still need installing."""

from __future__ import annotations

from NNSegLib.slicer.dependencies import IMPORT_NAMES, missing_requirements


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
    assert seen == ["pytest", "nnseg-surely-missing-package", "skimage", "yaml"]
    assert IMPORT_NAMES["scikit-image"] == "skimage"
    seen.clear()
    missing_requirements(str(requirements))  # no skip list: every line is looked up
    assert seen == ["numpy", "pytest", "nnseg-surely-missing-package", "skimage", "yaml",
                    "torch"]
