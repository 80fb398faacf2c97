"""Resources/Screenshots/make_screenshots.py: the README's pictures can be remade headless."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "Resources" / "Screenshots" / "make_screenshots.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _demo_folder(root: Path) -> Path:
    """What `nnseg demo` leaves: a test dataset and predictions (here: the references)."""
    from NNSegLib.data.io import Geometry, SimpleITKIO

    geo = Geometry((12, 24, 24), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    labels = np.zeros(geo.shape, np.uint8)
    labels[3:9, 6:16, 6:16] = 1
    labels[5:7, 9:12, 9:12] = 2
    image = np.where(labels > 0, 200.0, 100.0).astype(np.float32)
    test = root / "Dataset901_SampleTest"
    SimpleITKIO().write(image, geo, test / "imagesTr" / "c1_0000.nii.gz")
    SimpleITKIO().write(labels, geo, test / "labelsTr" / "c1.nii.gz")
    SimpleITKIO().write(labels, geo, root / "predictions" / "c1.nii.gz")
    (test / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "organ": 1, "lesion": 2}}))
    return root


def test_pictures_are_made_offscreen(tmp_path):
    pytest.importorskip("slicer", reason="needs slicer-core")
    script = _script()
    demo = _demo_folder(tmp_path / "demo")
    try:
        script.main([str(demo), "--case", "c1", "--out", str(tmp_path / "out")])
    except RuntimeError as e:  # no offscreen OpenGL on this machine
        pytest.skip(f"offscreen rendering unavailable: {e}")
    for name, (w, h) in (("NNSeg_segmentation_3d.png", (900, 640)),
                         ("NNSeg_segmentation_slices.png", (1050, 390))):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (w, h)
    assert script.best_slices(np.zeros((10, 4, 4), int), np.zeros((10, 4, 4), int),
                              {0: "bg", 1: "a"}) == [5, 6, 7]
