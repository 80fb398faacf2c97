"""NNSegLib.slicer.model_folds: the Segment panel says when a model's folds are unfinished."""

from __future__ import annotations

import shutil

import pytest
from conftest import make_model_folder

from NNSegLib.inference.nnseg_model import usable_folds
from NNSegLib.slicer.model_folds import FoldCheck, check_folds
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import ModelFolder


def _refused(model, folds: str, allow: bool) -> bool:
    """Would `nnseg predict` refuse these choices? (the loader's own fold rule)"""
    try:
        usable_folds(ModelFolder(model), "3d_fullres", folds.split(",") if folds else None,
                     allow)
    except NNSegError:
        return True
    return False


def test_a_model_with_only_unfinished_folds(tmp_path):
    model = make_model_folder(tmp_path / "m", folds=("0",), checkpoint="checkpoint_best.pt")
    check = check_folds(model)
    assert check.unfinished_only and check.text == check.problem
    assert "3d_fullres has no finished fold: fold 0 stopped before finishing" in check.problem
    assert 'Check "Use unfinished folds"' in check.problem
    assert "nnseg train" not in check.problem   # the CLI hint is left out in the panel
    used = check_folds(model, allow_unfinished=True)
    assert used.problem is None and "fold 0 stopped before finishing" in used.note
    assert "used with its best checkpoint" in used.note
    assert _refused(model, "", False) and not _refused(model, "", True)


def test_finished_and_unfinished_folds(tmp_path):
    model = make_model_folder(tmp_path / "m", folds=("0", "1"))
    (model / "3d_fullres" / "fold_1" / "checkpoint_final.pt").rename(
        model / "3d_fullres" / "fold_1" / "checkpoint_latest.pt")
    cases = {("", False): (None, "left out"), ("1", False): ("unfinished folds", ""),
             ("0", False): (None, ""), ("1", True): (None, "used with its best checkpoint"),
             ("0,1", True): (None, "fold 1"), ("0,3", False): ("no trained fold 3", "")}
    for (folds, allow), (problem, note) in cases.items():
        check = check_folds(model, folds, allow)
        assert (check.problem is None) == (problem is None), (folds, allow, check)
        assert problem is None or problem in check.problem, (folds, allow, check)
        assert note in check.note and not check.unfinished_only, (folds, allow, check)
        # the panel refuses exactly what `nnseg predict` would refuse
        assert (check.problem is not None) == _refused(model, folds, allow), (folds, allow)


def test_nothing_to_say(tmp_path):
    model = make_model_folder(tmp_path / "m", folds=("0",))
    assert check_folds(model) == FoldCheck() and check_folds(model).text == ""
    assert check_folds(tmp_path / "model.zip") == FoldCheck()
    assert check_folds(tmp_path / "missing") == FoldCheck()
    assert "fold" in check_folds(model, "0, x").problem.lower()
    shutil.rmtree(model / "3d_fullres")
    with pytest.raises(NNSegError):
        ModelFolder(model).default_configuration()
    assert "no trained configuration" in check_folds(model).problem
