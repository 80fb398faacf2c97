"""NNSegLib.slicer.folder_memo: panel answers read from folders again only when they change."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import make_model_folder

from NNSegLib.slicer import model_folds
from NNSegLib.slicer.folder_memo import FolderMemo, folder_signature


def _touch_later(path: Path, text: str) -> None:
    """Write ``text`` and move the mtime 1 s on (file systems with coarse clocks)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_signature_follows_entries_sizes_and_times(tmp_path):
    assert folder_signature(None) == () and folder_signature(".") == ()
    assert folder_signature(tmp_path / "missing") == ()
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("x")
    (tmp_path / "preprocessed").mkdir()
    (tmp_path / "preprocessed" / "case.npy").write_text("x")
    first = folder_signature(tmp_path, depth=3)
    names = [e[0] for e in first]
    assert "a/b/c" in names and "a/b/c/deep.txt" not in names   # 3 levels, not 4
    assert "preprocessed" in names and "preprocessed/case.npy" not in names   # not entered
    assert folder_signature(tmp_path, depth=3) == first
    _touch_later(tmp_path / "a" / "b" / "log.jsonl", "1\n")   # a new file 3 levels down
    second = folder_signature(tmp_path, depth=3)
    assert second != first
    _touch_later(tmp_path / "a" / "b" / "log.jsonl", "1\n2\n")   # appended to
    assert folder_signature(tmp_path, depth=3) != second
    assert folder_signature(tmp_path / "a" / "b" / "log.jsonl")[0][1] == 4   # a file: itself


def test_memo_computes_again_only_after_a_change_or_clear(tmp_path):
    memo, calls = FolderMemo(), []

    def answer():
        calls.append(1)
        return len(list(tmp_path.iterdir()))

    assert memo.get("n", [(tmp_path, 1)], answer) == 0
    assert memo.get("n", [(tmp_path, 1)], answer) == 0 and len(calls) == 1
    _touch_later(tmp_path / "new.json", "{}")
    assert memo.get("n", [(tmp_path, 1)], answer) == 1 and len(calls) == 2
    assert memo.get("n", [(tmp_path, 1)], answer) == 1 and len(calls) == 2
    memo.clear()
    assert memo.get("n", [(tmp_path, 1)], answer) == 1 and len(calls) == 3
    assert memo.get("other key", [(tmp_path, 1)], answer) == 1 and len(calls) == 4
    assert memo.computed == 4


def test_the_panels_read_a_model_again_only_when_it_changed(tmp_path, monkeypatch):
    """``updateGui`` on every parameter change: the model's folds are checked once, then again
    when a fold's checkpoint appears (a training finished)."""
    pytest.importorskip("slicer", reason="needs slicer-core for real MRML nodes")
    from NNSegLib.slicer.module_logic import ModuleLogic
    from NNSegLib.slicer.scene import mrml

    model = make_model_folder(tmp_path / "m", folds=("0",), checkpoint="checkpoint_best.pt")
    calls = []
    real = model_folds.check_folds

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_folds, "check_folds", counting)
    scene = mrml.new_scene().scene
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "NNSeg")
    params = SimpleNamespace(
        parameterNode=node, trainingVolume=None, trainingSegmentation=None, channelNames="CT",
        datasetFolder=Path("."), workFolder=Path("."), trainConfiguration="3d_fullres",
        folds="0", modelPath=model, memoryBudgetAuto=False, timeBudget=False, predictFolds="",
        allowUnfinished=False, batchSource="scene volumes", batchInputFolder=Path("."),
        batchFolder=Path("."))
    logic = ModuleLogic()
    states = [logic.state(scene, params, [None], ["CT"], [], set()) for _ in range(3)]
    assert len(calls) == 1   # three updates, one read
    assert all(s.shared.model_folds == states[0].shared.model_folds for s in states)
    assert states[0].shared.model_folds.unfinished_only   # only a best checkpoint so far
    fold = model / "3d_fullres" / "fold_0"
    _touch_later(fold / "checkpoint_final.pt", "")   # the training finished
    done = logic.state(scene, params, [None], ["CT"], [], set())
    assert len(calls) == 2 and not done.shared.model_folds.unfinished_only
    logic.state(scene, params, [None], ["CT"], [], set())
    assert len(calls) == 2
    logic.forget_folders()   # a job ended
    logic.state(scene, params, [None], ["CT"], [], set())
    assert len(calls) == 3
