"""Tests of NNSegLib.inference.cascade: training the 3d_lowres → 3d_cascade_fullres cascade."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cascade_plans, make_case, write_dataset

from NNSegLib.data.io import Geometry
from NNSegLib.inference.cascade import missing_predictions, require_previous_stage
from NNSegLib.network import checkpoint as ckpt
from NNSegLib.planning.plans import Plans
from NNSegLib.preprocessing.preprocess import preprocess_case, preprocess_labels
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import CHECKPOINT_FINAL, ModelFolder
from NNSegLib.util.workspace import Workspace

FAST = {"max_epochs": 2, "iterations_per_epoch": 3, "val_iterations": 1, "num_threads": 1,
        "device": "cpu", "batch_size": 2}


def test_preprocess_labels_matches_preprocess_case():
    rng = np.random.default_rng(3)
    image, label = make_case(rng, (20, 26, 22))
    geo = Geometry(image.shape, (1.0, 0.7, 0.7), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    plans = cascade_plans()
    for name in ("3d_fullres", "3d_lowres"):
        _, seg, props = preprocess_case(image[None], geo, plans, name, seg=label)
        only = preprocess_labels(label, image[None], geo, plans, name)
        assert only.dtype == np.int8 and only.shape == seg.shape
        assert tuple(only.shape[1:]) == tuple(props["shape_after_resample"])
        assert np.array_equal(only, seg)


def test_missing_predictions_name_the_low_res_folds(tmp_path: Path):
    config = cascade_plans().configuration("3d_cascade_fullres")
    folder = ModelFolder(tmp_path / "results").next_stage_dir(config.previous_stage, config.name)
    assert folder == tmp_path / "results/3d_lowres/predicted_next_stage/3d_cascade_fullres"
    folder.mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros((1, 2, 2, 2), np.int8))
    splits = [{"train": ["b", "c"], "val": ["a"]}, {"train": ["a", "c"], "val": ["b"]},
              {"train": ["a", "b"], "val": ["c"]}]
    assert missing_predictions(folder, ["a", "b", "c"]) == ["b", "c"]
    with pytest.raises(NNSegError, match=r"2 of 3 are missing \(b, c\).*fold\(s\) 1, 2"):
        require_previous_stage(folder, ["a", "b", "c"], config, splits)
    require_previous_stage(folder, ["a"], config, splits)   # complete: no error


def _prepared_work(tmp_path: Path) -> tuple[Path, Workspace, Plans]:
    from NNSegLib.preprocessing.preprocess import preprocess_dataset

    dataset = write_dataset(tmp_path / "Dataset001_Tiny", num_cases=6)
    ws = Workspace.for_dataset(dataset, tmp_path / "work")
    plans = cascade_plans()
    plans.save(ws.plans)
    preprocess_dataset(dataset, ws, plans, workers=1)
    return dataset, ws, plans


def _train(dataset: Path, ws: Workspace, config: str, fold, **kw):
    from NNSegLib.training.train import train_fold

    return train_fold(dataset, ws.root, config, fold, overrides=dict(FAST), **kw)


def test_cascade_trains_on_low_res_cross_validation(tmp_path: Path):
    from NNSegLib.inference.model_loader import load_model
    from NNSegLib.inference.predict import predict_case

    dataset, ws, plans = _prepared_work(tmp_path)
    cases = sorted(p.name[:-len("_seg.npy")] for p in
                   ws.preprocessed("3d_fullres").glob("*_seg.npy"))
    assert len(cases) == 6
    # Before the low-res folds exist the cascade refuses, naming what to run.
    with pytest.raises(NNSegError, match=r"3d_lowres.*fold\(s\) 0, 1, 2, 3, 4"):
        _train(dataset, ws, "3d_cascade_fullres", 0)

    for fold in range(5):
        _train(dataset, ws, "3d_lowres", fold)
    folder = ws.model.next_stage_dir("3d_lowres", "3d_cascade_fullres")
    assert sorted(p.stem for p in folder.glob("*.npy")) == cases
    splits = json.loads(ws.splits.read_text())
    for case in cases:
        prev = np.load(folder / f"{case}.npy")
        full = np.load(ws.preprocessed("3d_fullres") / f"{case}_seg.npy", mmap_mode="r")
        assert prev.dtype == np.int8 and prev.shape == full.shape
        assert prev.min() >= 0 and prev.max() < plans.num_classes
        # It is the segmentation written by the fold that validated the case.
        fold = next(i for i, s in enumerate(splits) if case in s["val"])
        val_file = ws.results / "3d_lowres" / f"fold_{fold}" / "validation" / f"{case}.nii.gz"
        assert val_file.is_file()

    result = _train(dataset, ws, "3d_cascade_fullres", 0)
    run_dir = ws.run_dir("3d_cascade_fullres", 0)
    state = ckpt.load_checkpoint(run_dir / CHECKPOINT_FINAL)
    assert state["meta"]["num_input_channels"] == 1 + 2     # image + one-hot c1, c2
    first = [v for k, v in state["network"].items() if v.ndim == 5][0]
    assert first.shape[1] == 3
    summary = json.loads((run_dir / "validation_summary.json").read_text())
    assert summary["method"] == "predict_validation"
    assert sorted(c["case"] for c in summary["cases"]) == sorted(splits[0]["val"])
    assert result.epochs == 2 and summary["foreground_mean"]["dice"] is not None

    # Inference chains both stages: the cascade network sees the low-res labels one-hot.
    model = load_model(ws.results, "3d_cascade_fullres", folds=[0], device="cpu", tta=False)
    assert model.previous_stage is not None and model.previous_stage.folds == ["0"]
    from NNSegLib.data.io import read_channels

    images, geo = read_channels([dataset / "imagesTr" / f"{cases[0]}_0000.nii.gz"])
    out = predict_case(images, geo, model)
    assert out.labels.shape == geo.shape


def test_validate_only_rewrites_next_stage_inputs(tmp_path: Path):
    dataset, ws, _ = _prepared_work(tmp_path)
    with pytest.raises(NNSegError, match="no run to validate"):
        _train(dataset, ws, "3d_lowres", 1, mode="validate")
    _train(dataset, ws, "3d_lowres", 1)
    folder = ws.model.next_stage_dir("3d_lowres", "3d_cascade_fullres")
    val = json.loads(ws.splits.read_text())[1]["val"]
    written = sorted(p.stem for p in folder.glob("*.npy"))
    assert written == sorted(val)
    for p in folder.glob("*.npy"):
        p.unlink()
    result = _train(dataset, ws, "3d_lowres", 1, mode="validate")
    assert sorted(p.stem for p in folder.glob("*.npy")) == written
    assert result.validation is not None and result.epochs == 2


def test_sampler_cuts_previous_stage_with_the_labels(tmp_path: Path):
    from conftest import write_preprocessed

    from NNSegLib.training.sampler import PatchSampler

    folder = tmp_path / "prep"
    ids = write_preprocessed(folder, num_cases=2)
    prev = tmp_path / "prev"
    prev.mkdir()
    for ident in ids:   # the "previous stage" predicted the labels exactly
        np.save(prev / f"{ident}.npy", np.load(folder / f"{ident}_seg.npy"))
    sampler = PatchSampler(folder, ids, (20, 20, 20), 4, 0.5, previous_stage=prev)
    images, seg = sampler.sample(np.random.default_rng(0))
    assert images.shape == (4, 1, 20, 20, 20) and seg.shape == (4, 2, 20, 20, 20)
    assert np.array_equal(seg[:, 0], seg[:, 1]) and (seg[:, 0] > 0).any()
    sampler2d = PatchSampler(folder, ids, (20, 20), 3, previous_stage=prev)
    _, seg2 = sampler2d.sample(np.random.default_rng(1))
    assert seg2.shape == (3, 2, 20, 20) and np.array_equal(seg2[:, 0], seg2[:, 1])
    np.save(prev / f"{ids[0]}.npy", np.zeros((1, 3, 3, 3), np.int8))
    with pytest.raises(NNSegError, match=f"{ids[0]}.npy: shape"):
        PatchSampler(folder, ids[:1], (8, 8, 8), 1, previous_stage=prev).sample(
            np.random.default_rng(0))


def test_trainer_turns_previous_stage_into_one_hot_inputs(tmp_path: Path):
    from conftest import write_preprocessed

    from NNSegLib.training.run_config import RunConfig
    from NNSegLib.training.trainer import Trainer, TrainSetup
    from NNSegLib.util.progress import Progress

    folder = tmp_path / "prep"
    ids = write_preprocessed(folder, num_cases=3)
    prev = tmp_path / "prev"
    prev.mkdir()
    for ident in ids:
        np.save(prev / f"{ident}.npy", np.load(folder / f"{ident}_seg.npy"))
    config = cascade_plans().configuration("3d_cascade_fullres")
    rc = RunConfig.for_recipe("paper", **{k: v for k, v in FAST.items() if k != "batch_size"})
    setup = TrainSetup(config, rc, tmp_path / "run", folder, tuple(ids[:2]), tuple(ids[2:]), 0,
                       3, 3, torch.device("cpu"), previous_stage=prev)
    trainer = Trainer(setup, Progress())
    images, seg = trainer.batches.load(1, 0, 0)
    assert seg.shape[1] == 2
    x, target = trainer.batches.with_previous_stage(images, seg)
    assert x.shape[1] == 3 and target.shape[1] == 1
    for k in (1, 2):   # without augmentation the extra channels are the one-hot labels
        assert torch.equal(x[:, k], (target[:, 0] == k).float())
    loss, counts = trainer.validate(0)
    assert loss is not None and np.isfinite(loss) and counts.shape == (3, 3)
