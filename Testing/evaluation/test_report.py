"""HTML report: worst-case choice, overlay slice, files written."""

from __future__ import annotations

import numpy as np
from conftest import write_image

from NNSegLib.evaluation.evaluate import evaluate_folder
from NNSegLib.evaluation.report import median_slice, worst_cases, write_report

LABELS = {"background": 0, "a": 1, "b": 2}


def _dataset(tmp_path):
    shape = (9, 12, 12)
    for i, shift in enumerate([0, 1, 3]):
        ref = np.zeros(shape, np.uint8)
        ref[2:7, 3:8, 3:8] = 1
        ref[4, 9:11, 9:11] = 2
        pred = np.zeros(shape, np.uint8)
        pred[2:7, 3:8, 3 + shift:8 + shift] = 1
        pred[4, 9:11, 9:11] = 2
        write_image(tmp_path / "ref" / f"c{i}.nii.gz", ref, (3.0, 1.0, 1.0))
        write_image(tmp_path / "pred" / f"c{i}.nii.gz", pred, (3.0, 1.0, 1.0))
        image = np.random.default_rng(i).normal(size=shape).astype(np.float32)
        write_image(tmp_path / "img" / f"c{i}_0000.nii.gz", image, (3.0, 1.0, 1.0))
    return evaluate_folder(tmp_path / "ref", tmp_path / "pred", LABELS, workers=1)


def test_median_slice_goes_through_reference_foreground():
    ref = np.zeros((10, 4, 4), np.uint8)
    ref[2, 0, 0] = 1
    ref[6:9, 1, 1] = 2  # voxels at z = 2, 6, 7, 8 → median voxel index 2 of 4 → z = 6
    assert median_slice(ref, ref) == 6
    pred = np.zeros_like(ref)
    pred[4, 2, 2] = 1
    assert median_slice(np.zeros_like(ref), pred) == 4
    assert median_slice(np.zeros_like(ref), np.zeros_like(ref)) == 5


def test_worst_cases_and_report_files(tmp_path):
    summary = _dataset(tmp_path)
    assert worst_cases(summary, 2) == ["c2", "c1"]
    html_path = write_report(summary, tmp_path / "out" / "report.html", tmp_path / "img", 2)
    text = html_path.read_text()
    assert text.count("data:image/png;base64,") == 3  # box plot + 2 overlays
    files = sorted(p.name for p in (tmp_path / "out" / "report_files").iterdir())
    assert files == ["dice_boxplot.png", "overlay_c1.png", "overlay_c2.png"]
    assert (tmp_path / "out" / "report_files" / "overlay_c2.png").read_bytes()[:4] == b"\x89PNG"
    assert "<tr class=worst><td class=l>c2</td>" in text
    assert "foreground mean" in text
