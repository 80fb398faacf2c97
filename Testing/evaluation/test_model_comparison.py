"""NNSegLib.evaluation.model_comparison: did the fine-tune help?"""

from __future__ import annotations

import json

import pytest

from NNSegLib.evaluation.model_comparison import compare_models
from NNSegLib.util.errors import NNSegError


def _summary(folder, fold, dice, per_label, cases, config="3d_fullres"):
    run = folder / config / f"fold_{fold}"
    run.mkdir(parents=True, exist_ok=True)
    (run / "checkpoint_final.pt").write_bytes(b"")
    (run / "validation_summary.json").write_text(json.dumps({
        "method": "predict_validation", "labels": {"liver": 1, "tumor": 2},
        "foreground_mean": {"dice": dice},
        "mean": {"1": {"dice": per_label[0]}, "2": {"dice": per_label[1]}},
        "cases": [{"case": c} for c in cases]}))


def test_folds_are_paired_and_means_taken_over_shared_folds(tmp_path, capsys):
    old, new = tmp_path / "v1", tmp_path / "results"
    _summary(old, 0, 0.80, (0.9, 0.7), ["a", "b"])
    _summary(old, 1, 0.70, (0.8, 0.6), ["c"])
    _summary(new, 0, 0.86, (0.92, 0.8), ["a", "b"])
    _summary(new, 1, 0.74, (0.8, None), ["c", "d"])
    _summary(new, 2, 0.50, (0.5, 0.5), ["e"])      # only the new model has fold 2
    (new / "model_version.json").write_text(json.dumps({"version": 2}))
    comparison = compare_models(old, new)
    assert [f.fold for f in comparison.folds] == ["0", "1", "2"]
    assert [f.fold for f in comparison.paired_folds] == ["0", "1"]
    assert comparison.old_mean == pytest.approx(0.75)
    assert comparison.new_mean == pytest.approx(0.80)
    assert comparison.delta == pytest.approx(0.05)
    assert comparison.folds[0].same_cases is True and comparison.folds[1].same_cases is False
    assert comparison.folds[0].new_labels == {"liver": 0.92, "tumor": 0.8}
    assert (comparison.old_version, comparison.new_version) == ("v1", "v2")
    line = comparison.summary_line()
    assert line.startswith("CV Dice v1 0.750 → v2 0.800 (+0.050; fold(s) 0, 1")
    assert "validation cases differ" in line
    header, rows = comparison.table()
    assert header == ["fold", "label", "v1", "v2", "change"]
    assert rows[0] == ["0", "mean", "0.800", "0.860", "+0.060"]
    assert ["1", "tumor", "0.600", "–", "–"] in rows
    assert ["2", "mean", "–", "0.500", "–"] in rows
    assert comparison.to_dict()["delta"] == pytest.approx(0.05)

    from NNSegLib.cli import main

    assert main(["compare-models", str(old), str(new), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "CV Dice v1 0.750 → v2 0.800" in out and "tumor" in out


def test_nothing_to_compare(tmp_path):
    old, new = tmp_path / "v1", tmp_path / "v2"
    _summary(old, 0, 0.8, (0.8, 0.8), ["a"])
    (new / "3d_fullres" / "fold_0").mkdir(parents=True)
    (new / "3d_fullres" / "fold_0" / "checkpoint_final.pt").write_bytes(b"")
    comparison = compare_models(old, new)
    assert comparison.delta is None and "No fold validated by both" in comparison.summary_line()
    with pytest.raises(NNSegError, match="neither"):
        compare_models(old, new, "2d")
    with pytest.raises(NNSegError, match="not found"):
        compare_models(tmp_path / "missing", new)
