"""Folder evaluation: pairing, checks, summary.json / per_case.csv numbers, CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from NNSegLib.cli import main
from NNSegLib.evaluation.evaluate import Summary, dice_table, evaluate_folder, per_case_csv
from NNSegLib.util.errors import NNSegError

LABELS = {"background": 0, "liver": 1, "tumour": 2}
SPACING = (2.0, 1.0, 0.5)  # voxel = 1 mm³ = 0.001 mL


def _write_pair(root: Path, case: str, ref: np.ndarray, pred: np.ndarray, spacing=SPACING):
    write_image(root / "ref" / f"{case}.nii.gz", ref, spacing)
    write_image(root / "pred" / f"{case}.nii.gz", pred, spacing)


def _make(root: Path) -> Path:
    shape = (8, 10, 12)
    # case_a: liver cube vs. cube shifted by 2 voxels along x (Dice 0.5); tumour empty in both.
    ref = np.zeros(shape, np.uint8)
    ref[2:6, 2:6, 2:6] = 1
    pred = np.zeros(shape, np.uint8)
    pred[2:6, 2:6, 4:8] = 1
    _write_pair(root, "case_a", ref, pred)
    # case_b: perfect liver; tumour missed (2 voxels) and one false tumour voxel elsewhere.
    ref_b = np.zeros(shape, np.uint8)
    ref_b[0:2, 0:2, 0:2] = 1
    ref_b[5, 5, 5:7] = 2
    pred_b = ref_b.copy()
    pred_b[5, 5, 5:7] = 0
    pred_b[7, 9, 11] = 2
    _write_pair(root, "case_b", ref_b, pred_b)
    return root


def test_evaluate_folder_numbers(tmp_path):
    root = _make(tmp_path)
    s = evaluate_folder(root / "ref", root / "pred", LABELS, workers=1)
    assert [c.case for c in s.cases] == ["case_a", "case_b"]
    a = s.cases[0].metrics
    assert (a[1].tp, a[1].fp, a[1].fn) == (32, 32, 32)
    assert a[1].dice == pytest.approx(0.5) and a[1].iou == pytest.approx(1 / 3)
    assert a[1].ref_ml == pytest.approx(0.064)
    assert a[1].hd95_mm > 0
    assert math.isnan(a[2].dice)
    b = s.cases[1].metrics
    assert b[1].dice == 1.0 and b[1].hd95_mm == 0.0
    assert (b[2].tp, b[2].fp, b[2].fn) == (0, 1, 2) and b[2].dice == 0.0
    assert s.means[1]["dice"] == pytest.approx(0.75)
    assert s.means[2]["dice"] == 0.0  # the NaN case is left out
    assert s.means[2]["n_empty_both"] == 1 and s.means[2]["n_cases"] == 2
    assert s.foreground_mean["dice"] == pytest.approx(0.375)
    table = dice_table(s)
    assert "liver" in table and "0.7500" in table and "0.3750" in table


def test_summary_json_and_csv(tmp_path):
    root = _make(tmp_path)
    s = evaluate_folder(root / "ref", root / "pred", LABELS, workers=1, compute_hd95=False)
    s.save(tmp_path / "summary.json")
    raw = json.loads((tmp_path / "summary.json").read_text())  # strict JSON: no NaN tokens
    assert raw["mean"]["2"]["dice"] == 0.0
    assert raw["cases"][0]["metrics"]["2"]["dice"] is None
    assert "empty_reference_and_prediction" in raw["nan_rules"]
    back = Summary.load(tmp_path / "summary.json")
    assert back.means[1]["dice"] == pytest.approx(0.75)
    rows = list(csv.DictReader(per_case_csv(s).splitlines()))
    assert len(rows) == 4
    assert rows[0]["case"] == "case_a" and rows[0]["class"] == "liver"
    assert float(rows[0]["dice"]) == pytest.approx(0.5) and rows[0]["tp"] == "32"
    assert rows[1]["dice"] == ""  # NaN → empty cell


def test_parallel_workers_give_same_numbers(tmp_path):
    root = _make(tmp_path)
    one = evaluate_folder(root / "ref", root / "pred", LABELS, workers=1)
    two = evaluate_folder(root / "ref", root / "pred", LABELS, workers=2)
    assert one.to_dict() == two.to_dict()


def test_missing_prediction_is_named(tmp_path):
    root = _make(tmp_path)
    (root / "pred" / "case_b.nii.gz").unlink()
    with pytest.raises(NNSegError, match=r"missing prediction .*case_b\.nii\.gz"):
        evaluate_folder(root / "ref", root / "pred", LABELS, workers=1)
    s = evaluate_folder(root / "ref", root / "pred", LABELS, workers=1, cases=["case_a"])
    assert len(s.cases) == 1


def test_geometry_mismatch_is_named(tmp_path):
    root = _make(tmp_path)
    ref = np.zeros((8, 10, 12), np.uint8)
    write_image(root / "pred" / "case_a.nii.gz", ref, (2.0, 1.0, 0.6))
    with pytest.raises(NNSegError, match=r"pred/case_a\.nii\.gz: geometry differs .*spacing"):
        evaluate_folder(root / "ref", root / "pred", LABELS, workers=1)
    write_image(root / "pred" / "case_a.nii.gz", np.zeros((8, 10, 11), np.uint8), SPACING)
    with pytest.raises(NNSegError, match="shape"):
        evaluate_folder(root / "ref", root / "pred", LABELS, workers=1)


def test_unknown_label_is_named(tmp_path):
    root = _make(tmp_path)
    bad = np.zeros((8, 10, 12), np.uint8)
    bad[1, 1, 1] = 5
    write_image(root / "pred" / "case_b.nii.gz", bad, SPACING)
    with pytest.raises(NNSegError, match=r"case_b\.nii\.gz: unknown label 5"):
        evaluate_folder(root / "ref", root / "pred", LABELS, workers=1)
    gap = {"background": 0, "liver": 1, "other": 3}
    bad[1, 1, 1] = 2
    write_image(root / "pred" / "case_b.nii.gz", bad, SPACING)
    with pytest.raises(NNSegError, match=r"unknown label\(s\) \[2\]"):
        evaluate_folder(root / "ref", root / "pred", gap, workers=1)


def test_cli_writes_outputs_and_exit_codes(tmp_path, capsys):
    root = _make(tmp_path)
    labels_json = root / "meta" / "labels.json"
    labels_json.parent.mkdir()
    labels_json.write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    code = main(["evaluate", str(root / "ref"), str(root / "pred"), "--labels",
                 str(labels_json), "-o", str(tmp_path / "out"), "--workers", "1",
                 "--quiet", "--worst", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "liver" in out and "0.7500" in out
    for name in ("summary.json", "per_case.csv", "report.html"):
        assert (tmp_path / "out" / name).is_file()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["foreground_mean"]["dice"] == pytest.approx(0.375)
    (root / "pred" / "case_a.nii.gz").unlink()
    code = main(["evaluate", str(root / "ref"), str(root / "pred"), "--workers", "1", "--quiet",
                 "--no-report", "--labels", str(labels_json)])
    assert code == 2
    assert "case_a.nii.gz" in capsys.readouterr().err
    code = main(["evaluate", str(root / "ref"), str(root / "pred"), "--workers", "1", "--quiet",
                 "--no-report", "--only-predicted", "--no-hd95"])
    assert code == 0  # labels inferred from the references (no dataset.json next to ref/)
    assert "label_1" in capsys.readouterr().out
