"""find-best: configuration or ensemble choice and component rules on hand-made CV folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image

from NNSegLib.cli import main
from NNSegLib.postprocessing.find_best import find_best, summary_table
from NNSegLib.postprocessing.postprocess import PostprocessingRules
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.workspace import Workspace

SHAPE = (16, 16, 16)
CASES = ["case_0", "case_1", "case_2", "case_3"]
SPLITS = [{"train": CASES[2:], "val": CASES[:2]}, {"train": CASES[:2], "val": CASES[2:]}]


def _setup(tmp_path: Path, labels: dict[str, int], refs: dict[str, np.ndarray]):
    ds = tmp_path / "Dataset001_X"
    for case, ref in refs.items():
        write_image(ds / "labelsTr" / f"{case}.nii.gz", ref)
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": labels, "numTraining": len(refs),
        "file_ending": ".nii.gz"}))
    ws = Workspace(tmp_path / "work")
    ws.root.mkdir(parents=True)
    ws.splits.write_text(json.dumps(SPLITS))
    return ds, ws


def _write_cv(ws: Workspace, config: str, preds: dict[str, np.ndarray],
              probs: dict[str, np.ndarray] | None = None) -> None:
    for fold, split in enumerate(SPLITS):
        for case in split["val"]:
            folder = ws.run_dir(config, fold) / "validation"
            write_image(folder / f"{case}.nii.gz", preds[case])
            if probs is not None:
                np.savez(folder / f"{case}_probabilities.npz",
                         probabilities=probs[case].astype(np.float16))


def _cube(arr, z, y, x, size, value=1):
    arr[z:z + size, y:y + size, x:x + size] = value
    return arr


def test_spurious_components_rule_kept(tmp_path):
    refs = {c: _cube(np.zeros(SHAPE, np.uint8), 4, 4, 4, 6) for c in CASES}
    ds, ws = _setup(tmp_path, {"background": 0, "organ": 1}, refs)
    preds = {}
    for c in CASES:
        p = refs[c].copy()
        p[0, 0, 0] = p[15, 15, 15] = 1  # two isolated false voxels
        preds[c] = p
    _write_cv(ws, "3d_fullres", preds)
    result = find_best(ws, ds, workers=1)
    dice_raw = 2 * 216 / (2 * 216 + 2)
    assert result["configurations"] == ["3d_fullres"]
    assert result["cv_dice"]["3d_fullres"] == pytest.approx(dice_raw)
    assert result["cv_dice_postprocessed"] == pytest.approx(1.0)
    rules = PostprocessingRules.load(ws.results / "postprocessing.json")
    assert rules.largest_component_groups == ((1,),)
    (decision,) = rules.decisions  # one class: no per-class step
    assert decision["kept"] and decision["before"] == pytest.approx(dice_raw)
    saved = json.loads((ws.results / "best_configuration.json").read_text())
    assert saved["folds"] == [0, 1] and saved["postprocessing"]["largest_component_groups"] == [[1]]
    assert (ws.results / "3d_fullres" / "cv_summary.json").is_file()
    assert "kept" in summary_table(result)


def test_real_second_component_rule_rejected_and_per_class_choice(tmp_path):
    # class 1: two real cubes A and B; class 2: cube C touching A.
    # prediction: exact, plus one false class-2 voxel touching B (joins B in the foreground).
    refs, preds = {}, {}
    for c in CASES:
        r = np.zeros(SHAPE, np.uint8)
        _cube(r, 2, 2, 2, 4, 1)
        _cube(r, 10, 10, 10, 4, 1)
        r[2:6, 2:6, 6:9] = 2
        p = r.copy()
        p[12, 12, 9] = 2
        refs[c], preds[c] = r, p
    ds, ws = _setup(tmp_path, {"background": 0, "one": 1, "two": 2}, refs)
    _write_cv(ws, "3d_fullres", preds)
    result = find_best(ws, ds, workers=1)
    rules = PostprocessingRules.load(ws.results / "postprocessing.json")
    assert rules.largest_component_groups == ((2,),)
    fg, one, two = rules.decisions
    assert not fg["kept"]
    assert fg["before"] == pytest.approx((1 + 96 / 97) / 2)
    assert fg["after"] == pytest.approx((128 / 192 + 1) / 2)
    assert not one["kept"] and one["after"] == pytest.approx(128 / 192)
    assert two["kept"] and two["before"] == pytest.approx(96 / 97) and two["after"] == 1.0
    assert result["cv_dice_postprocessed"] == pytest.approx(1.0)


def test_ensemble_wins_when_averaging_removes_each_members_errors(tmp_path):
    refs = {c: _cube(np.zeros(SHAPE, np.uint8), 4, 4, 4, 6) for c in CASES}
    ds, ws = _setup(tmp_path, {"background": 0, "organ": 1}, refs)
    for config, (strong, weak) in {"2d": ((10, 4, 4), (10, 4, 5)),
                                   "3d_fullres": ((10, 4, 5), (10, 4, 4))}.items():
        probs, preds = {}, {}
        for c in CASES:
            fg = np.where(refs[c] > 0, 0.6, 0.0)
            fg[strong] = 0.6  # a false voxel next to the cube, believed by this member only
            fg[weak] = 0.2
            probs[c] = np.stack([1 - fg, fg])
            preds[c] = np.argmax(probs[c], axis=0).astype(np.uint8)
        _write_cv(ws, config, preds, probs)
    (ws.results / "plans.json").write_text(json.dumps({"configurations": {
        "2d": {}, "3d_fullres": {}, "3d_lowres": {}}}))
    result = find_best(ws, ds, workers=1)
    single = 2 * 216 / (2 * 216 + 1)
    assert result["cv_dice"]["2d"] == pytest.approx(single)
    assert result["cv_dice"]["3d_fullres"] == pytest.approx(single)
    assert result["cv_dice"]["2d__3d_fullres"] == pytest.approx(1.0)
    assert result["configurations"] == ["2d", "3d_fullres"]
    ens = ws.results / "ensembles" / "2d__3d_fullres"
    assert sorted(p.name for p in ens.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in CASES]
    assert result["predictions"] == str(ens)


def test_missing_folds_are_named(tmp_path):
    refs = {c: _cube(np.zeros(SHAPE, np.uint8), 4, 4, 4, 6) for c in CASES}
    ds, ws = _setup(tmp_path, {"background": 0, "organ": 1}, refs)
    _write_cv(ws, "3d_fullres", refs)
    _write_cv(ws, "2d", refs)
    (ws.run_dir("2d", 1) / "validation" / "case_3.nii.gz").unlink()
    with pytest.raises(NNSegError, match=r"fold_1/validation: 1 of 2 .*case_3\.nii\.gz"):
        find_best(ws, ds, configurations=["2d", "3d_fullres"], workers=1)
    result = find_best(ws, ds, workers=1)  # default: the incomplete one is skipped
    assert result["configurations"] == ["3d_fullres"] and "2d" not in result["cv_dice"]
    # only fold 0 asked for: 2d is complete there
    result = find_best(ws, ds, configurations=["2d"], folds=[0], workers=1, ensembles=False)
    assert result["folds"] == [0] and result["cv_dice"]["2d"] == 1.0


def test_cli(tmp_path, capsys):
    refs = {c: _cube(np.zeros(SHAPE, np.uint8), 4, 4, 4, 6) for c in CASES}
    ds, ws = _setup(tmp_path, {"background": 0, "organ": 1}, refs)
    code = main(["find-best", str(ds), "--work", str(ws.root), "--quiet", "--workers", "1"])
    assert code == 2 and "no configuration" in capsys.readouterr().err
    _write_cv(ws, "3d_fullres", refs)
    code = main(["find-best", str(ds), "--work", str(ws.root), "--quiet", "--workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "3d_fullres" in out and "<- best" in out and "rejected" in out


def test_complete_folds_and_the_panels_fold_choice(tmp_path):
    """The Train panel's Find best runs on every fold once a configuration has them all; with
    fold 0 alone validated (its default), on fold 0, and the result names its folds."""
    from NNSegLib.postprocessing.find_best import complete_folds
    from NNSegLib.slicer.cv_report import gather_predictions
    from NNSegLib.slicer.panels.train import find_best_commands, find_best_folds

    refs = {c: _cube(np.zeros(SHAPE, np.uint8), 4, 4, 4, 6) for c in CASES}
    ds, ws = _setup(tmp_path, {"background": 0, "organ": 1}, refs)
    assert complete_folds(ws, ds) == {} and find_best_folds(ds, ws.root) == []
    _write_cv(ws, "2d", refs)
    (ws.run_dir("2d", 1) / "validation" / "case_3.nii.gz").unlink()
    assert complete_folds(ws, ds) == {"2d": [0]}
    assert find_best_folds(ds, ws.root) == [0]
    argv = find_best_commands(ds, ws.root)[0]
    assert argv[argv.index("--folds"):] == ["--folds", "0"]
    assert main([*argv, "--quiet", "--workers", "1"]) == 0
    best = json.loads(ws.model.best_configuration_file.read_text())
    assert best["folds"] == [0] and best["cv_dice"] == {"2d": 1.0}
    assert summary_table(best).endswith("validation cases of fold(s) 0")
    # the report evaluates the scored fold's cases only, not fold 1's leftover case_2
    assert sorted(f.name for f in gather_predictions(ws.root).iterdir()) == [
        "case_0.nii.gz", "case_1.nii.gz"]
    _write_cv(ws, "3d_fullres", refs)
    assert complete_folds(ws, ds) == {"2d": [0], "3d_fullres": [0, 1]}
    assert find_best_folds(ds, ws.root) == []
    assert "--folds" not in find_best_commands(ds, ws.root)[0]
