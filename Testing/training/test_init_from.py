"""Fine-tuning: --init-from weight matching, model versions, archive, fine-tune defaults."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import tiny_plans, write_preprocessed

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.network.network import build_network
from NNSegLib.training.init_from import (
    InitSource,
    load_initial_weights,
    resolve_init_source,
)
from NNSegLib.training.model_versions import archive_model, next_archive
from NNSegLib.training.run_config import RunConfig, fine_tune_defaults
from NNSegLib.training.train import train_fold
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import ModelFolder
from NNSegLib.util.workspace import Workspace

LABELS = {"background": 0, "c1": 1, "c2": 2}
FAST = {"max_epochs": 1, "iterations_per_epoch": 2, "val_iterations": 1, "num_threads": 1,
        "device": "cpu", "amp": "off"}


def _work(tmp_path, num_cases=5):
    ws = Workspace(tmp_path / "work")
    tiny_plans().save(ws.plans)
    write_preprocessed(ws.preprocessed("3d_fullres"), num_cases=num_cases)
    ws.dataset_json.write_text(json.dumps({"labels": LABELS, "channel_names": {"0": "MRI"},
                                           "file_ending": ".nii.gz", "numTraining": num_cases}))
    return ws


def _net(classes=3, channels=1, features=(4, 8, 16)):
    cfg = dataclasses.replace(tiny_plans().configuration("3d_fullres"),
                              features_per_stage=features)
    torch.manual_seed(classes + channels + sum(features))
    return build_network(cfg, channels, classes)


def _checkpoint(tmp_path, net, labels=LABELS, channels=1, fold="0"):
    model = tmp_path / "old_model"
    path = model / "3d_fullres" / f"fold_{fold}" / "checkpoint_final.pt"
    ckpt.save_checkpoint(path, {"network": net.state_dict(), "meta": ckpt.make_meta(
        "3d_fullres", fold, channels, max(labels.values()) + 1, 3)})
    tiny_plans().save(model / "plans.json")
    (model / "dataset.json").write_text(json.dumps({"labels": labels}))
    return model


def test_resolve_init_source(tmp_path):
    model = _checkpoint(tmp_path, _net())
    source = resolve_init_source(model, "3d_fullres", 0)
    assert source.checkpoint.name == "checkpoint_final.pt" and source.model_dir == model
    assert source.labels == LABELS
    assert resolve_init_source(model / "3d_fullres" / "fold_0", "x", 3).checkpoint == \
        source.checkpoint
    assert resolve_init_source(source.checkpoint, "3d_fullres", 4).model_dir == model
    with pytest.raises(NNSegError, match="fold 1.*trained 3d_fullres folds there: \\['0'\\]"):
        resolve_init_source(model, "3d_fullres", 1)
    with pytest.raises(NNSegError, match="no such checkpoint"):
        resolve_init_source(tmp_path / "nothing", "3d_fullres", 0)


def test_same_labels_load_everything(tmp_path):
    old = _net()
    source = resolve_init_source(_checkpoint(tmp_path, old), "3d_fullres", 0)
    new = build_network(tiny_plans().configuration("3d_fullres"), 1, 3)
    report = load_initial_weights(new, source, {"Background": 0, " C1": 1, "c2": 2}, 1)
    assert report.loaded == len(new.state_dict()) and not report.adapted
    for k, v in old.state_dict().items():
        assert torch.equal(new.state_dict()[k], v), k
    assert "tensors loaded" in report.describe()
    # a lone checkpoint without dataset.json: same class count is assumed, and said so
    lone = InitSource(source.checkpoint, None, None)
    assert load_initial_weights(new, lone, LABELS, 1).labels_assumed


def test_refusals_are_explicit(tmp_path):
    cfg = tiny_plans().configuration("3d_fullres")
    source = resolve_init_source(_checkpoint(tmp_path, _net()), "3d_fullres", 0)
    with pytest.raises(NNSegError, match="1 input channel.*this run has 2"):
        load_initial_weights(build_network(cfg, 2, 3), source, LABELS, 2)
    other = build_network(dataclasses.replace(cfg, features_per_stage=(4, 8, 32)), 1, 3)
    with pytest.raises(NNSegError, match="does not match this plan's.*different shapes"):
        load_initial_weights(other, source, LABELS, 1)
    with pytest.raises(NNSegError, match="--init-from-adapt-head"):
        load_initial_weights(build_network(cfg, 1, 4), source, {**LABELS, "c3": 3}, 1)
    with pytest.raises(NNSegError, match="--init-from-adapt-head"):   # same count, other names
        load_initial_weights(build_network(cfg, 1, 3), source,
                             {"background": 0, "c2": 1, "c1": 2}, 1)


def test_adapt_head_keeps_shared_labels_rows(tmp_path):
    cfg = tiny_plans().configuration("3d_fullres")
    old = _net()
    source = resolve_init_source(_checkpoint(tmp_path, old), "3d_fullres", 0)
    new = build_network(cfg, 1, 4)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    labels = {"background": 0, "c2": 1, "new": 2, "c1": 3}
    report = load_initial_weights(new, source, labels, 1, adapt_head=True)
    assert report.carried_labels == ("c1", "c2") and report.new_labels == ("new",)
    state, before = new.state_dict(), old.state_dict()
    for k, v in state.items():
        if not k.startswith("decoder.seg_layers."):
            assert torch.equal(v, before[k]), k
        else:
            assert torch.equal(v[0], before[k][0]) and torch.equal(v[1], before[k][2])
            assert torch.equal(v[3], before[k][1]) and torch.equal(v[2], fresh[k][2])
    assert report.adapted and "labels kept: c1, c2; new: new" in report.describe()


def test_fine_tune_run_archive_versions_and_splits(tmp_path):
    ws = _work(tmp_path)
    train_fold(None, ws.root, "3d_fullres", 0, overrides=FAST)
    with pytest.raises(NNSegError, match="archive-model"):
        train_fold(None, ws.root, "3d_fullres", 0, overrides=FAST, mode="fresh",
                   init_from=ws.results)
    assert next_archive(ws.root) == ws.archived_model(1)
    archived = archive_model(ws.root)
    assert archived == ws.root / "model_versions" / "v1" and not ws.results.exists()
    with pytest.raises(NNSegError, match="no trained model"):
        archive_model(ws.root)
    # a case added since the splits were made joins fold 0's training set
    write_preprocessed(ws.preprocessed("3d_fullres") / "tmp", num_cases=1, seed=5)
    for f in (ws.preprocessed("3d_fullres") / "tmp").iterdir():
        f.rename(ws.preprocessed("3d_fullres") / f.name.replace("case_000", "zz_new"))
    messages = []
    from NNSegLib.util.progress import Progress

    def listen(e):
        if e["event"] == "message":
            messages.append(e["text"])

    result = train_fold(None, ws.root, "3d_fullres", 0, init_from=archived,
                        overrides=FAST,
                        progress=Progress(listeners=[listen]))
    rc = RunConfig.load(result.run_dir / "run_config.json")
    assert rc.lr == pytest.approx(3e-5) and rc.final_phase    # fine-tuning defaults
    assert rc.max_epochs == 1                                 # the user's value wins
    assert any("initial weights from" in m for m in messages)
    assert any("zz_new" in m and "training set of every fold" in m for m in messages)
    splits = json.loads(ws.splits.read_text())
    assert all("zz_new" in f["train"] and "zz_new" not in f["val"] for f in splits)
    init = json.loads((result.run_dir / "init_from.json").read_text())
    assert init["checkpoint"].endswith("v1/3d_fullres/fold_0/checkpoint_final.pt")
    folder = ModelFolder(ws.results)
    assert folder.version == 2 and folder.identity()["version"] == "v2"
    assert folder.parent == archived.resolve()
    version = json.loads(folder.version_file.read_text())
    assert version["parent"]["version"] == 1 and "3d_fullres/fold_0" in version["init_from"]
    with pytest.raises(NNSegError, match="cannot be combined with continue"):
        train_fold(None, ws.root, "3d_fullres", 0, mode="continue", init_from=archived)
    with pytest.raises(NNSegError, match="needs --init-from"):
        train_fold(None, ws.root, "3d_fullres", 1, adapt_head=True)
    assert archive_model(ws.root) == ws.archived_model(2)


def test_fine_tune_defaults():
    assert fine_tune_defaults("paper") == {"max_epochs": 50, "lr": pytest.approx(3e-5),
                                           "final_phase": True}
    assert fine_tune_defaults("v2")["lr"] == pytest.approx(1e-3)
    with pytest.raises(NNSegError, match="unknown recipe"):
        fine_tune_defaults("x")
