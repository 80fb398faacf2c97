"""NNSegLib.slicer.cv_report: the cross-validation report after Find best."""

from __future__ import annotations

import json

import numpy as np
import pytest

from NNSegLib.slicer.cv_report import (
    describe_best,
    gather_predictions,
    report_commands,
    report_path,
)
from NNSegLib.util.errors import NNSegError


def _best(work, **extra):
    (work / "results").mkdir(parents=True, exist_ok=True)
    best = {"configurations": ["3d_fullres"], "folds": [0, 1],
            "cv_dice": {"3d_fullres": 0.81, "2d": 0.78}, "cv_dice_postprocessed": 0.82,
            "postprocessing": {"decisions": [{"rule": "largest component of 1", "before": 0.81,
                                              "after": 0.82, "kept": True}]},
            "predictions": None, **extra}
    (work / "results" / "best_configuration.json").write_text(json.dumps(best))


def test_gather_links_every_fold_validation_into_one_folder(tmp_path):
    work = tmp_path / "work"
    with pytest.raises(NNSegError, match="Find best"):
        gather_predictions(work)
    _best(work)
    with pytest.raises(NNSegError, match="no validation predictions"):
        gather_predictions(work)
    for fold, cases in ((0, ["a", "b"]), (1, ["c"])):
        val = work / "results" / "3d_fullres" / f"fold_{fold}" / "validation"
        val.mkdir(parents=True)
        for c in cases:
            (val / f"{c}.nii.gz").write_bytes(c.encode())
            np.savez(val / f"{c}_probabilities.npz", probabilities=np.zeros(1))
    out = gather_predictions(work)
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    assert (out / "c.nii.gz").read_bytes() == b"c"
    steps = report_commands(tmp_path / "Dataset001_A", work)
    assert steps == [["evaluate", str(tmp_path / "Dataset001_A" / "labelsTr"), str(out),
                      "--labels", str(tmp_path / "Dataset001_A" / "dataset.json"),
                      "--images", str(tmp_path / "Dataset001_A" / "imagesTr"),
                      "-o", str(work / "evaluation" / "cross_validation"), "--only-predicted"]]
    assert report_path(work) is None
    (work / "evaluation" / "cross_validation").mkdir(parents=True)
    (work / "evaluation" / "cross_validation" / "report.html").write_text("<html/>")
    assert report_path(work) == work / "evaluation" / "cross_validation" / "report.html"


def test_an_ensemble_uses_the_folder_find_best_wrote(tmp_path):
    work = tmp_path / "work"
    _best(work, configurations=["2d", "3d_fullres"], predictions=str(work / "ens"))
    assert gather_predictions(work) == work / "ens"


def test_describe_best(tmp_path):
    assert describe_best(tmp_path) == "No best configuration chosen yet."
    _best(tmp_path)
    text = describe_best(tmp_path)
    assert "3d_fullres" in text and "<- best" in text and "kept" in text
