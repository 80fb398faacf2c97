from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import make_model_folder, write_image

from NNSegLib.cli import main
from NNSegLib.inference.model_loader import load_model
from NNSegLib.inference.predict import predict_array
from NNSegLib.network.checkpoint import save_checkpoint
from NNSegLib.util.atomic import write_json
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import ModelFolder

ROTATED = (0.0, -1.0, 0.0, 0.866025403784, 0.0, -0.5, 0.5, 0.0, 0.866025403784)
def test_load_model_defaults_and_weights(tmp_path: Path):
    root = make_model_folder(tmp_path / "results")
    model = load_model(root, device="cpu")
    assert model.kind == "nnseg" and model.configuration == "3d_fullres"
    assert model.folds == ["0", "1"] and model.num_classes == 3
    assert model.settings.mirror_axes == (0, 1, 2) and model.settings.output == "softmax"
    saved = torch.load(root / "3d_fullres/fold_1/checkpoint_final.pt", weights_only=True)
    loaded = dict(model.networks)["1"].state_dict()
    for k, v in saved["network"].items():
        assert torch.equal(loaded[k].contiguous(), v.contiguous()), k
    assert not dict(model.networks)["1"].training
    one = load_model(root, folds=[1], device="cpu", tta=False)
    assert one.folds == ["1"] and one.settings.mirror_axes == ()


def test_configuration_choice(tmp_path: Path):
    root = make_model_folder(tmp_path / "r", configs=("2d", "3d_fullres"))
    assert ModelFolder(root).default_configuration() == "3d_fullres"
    (root / "best_configuration.json").write_text(json.dumps({"configuration": "2d"}))
    assert ModelFolder(root).default_configuration() == "2d"
    model = load_model(root, device="cpu")
    assert model.configuration == "2d" and model.settings.patch_size == (16, 16)
    only2d = make_model_folder(tmp_path / "s", configs=("2d",))
    assert ModelFolder(only2d).default_configuration() == "2d"


def test_checkpoint_fallback_and_errors(tmp_path: Path):
    root = make_model_folder(tmp_path / "r", folds=("0",), checkpoint="checkpoint_best.pt")
    assert ModelFolder(root).trained_folds("3d_fullres") == ["0"]
    with pytest.raises(NNSegError, match="fold 0 stopped before finishing.*allow-unfinished"):
        load_model(root, device="cpu")
    with pytest.raises(NNSegError, match="fold 0 stopped before finishing"):
        load_model(root, folds=["0"], device="cpu")
    model = load_model(root, device="cpu", allow_unfinished=True)
    assert model.folds == ["0"] and "checkpoint_best.pt" in model.extra["notes"][0]
    with pytest.raises(NNSegError, match="fold"):
        load_model(root, folds=["3"], device="cpu", allow_unfinished=True)
    with pytest.raises(NNSegError, match="not in the plan"):
        load_model(root, configuration="3d_lowres", device="cpu")
    with pytest.raises(NNSegError, match="not found"):
        load_model(tmp_path / "nothing", device="cpu")
    (root / "plans.json").unlink()
    with pytest.raises(NNSegError, match="plans.json"):
        load_model(root, device="cpu")


def test_wrong_weights_are_reported(tmp_path: Path):
    root = make_model_folder(tmp_path / "r", folds=("0",))
    state = torch.load(root / "3d_fullres/fold_0/checkpoint_final.pt", weights_only=True)
    state["network"]["decoder.seg_layers.0.weight"] = torch.zeros(5, 4, 1, 1, 1)
    save_checkpoint(root / "3d_fullres/fold_0/checkpoint_final.pt", state)
    with pytest.raises(NNSegError, match="do not match"):
        load_model(root, device="cpu")


def test_postprocessing_only_for_best_configuration(tmp_path: Path):
    root = make_model_folder(tmp_path / "r", configs=("2d", "3d_fullres"))
    write_json(root / "postprocessing.json", {"version": 1, "largest_component_groups": [[1]]})
    assert load_model(root, "3d_fullres", device="cpu").postprocessing is not None
    (root / "best_configuration.json").write_text(json.dumps({"configuration": "2d"}))
    assert load_model(root, "3d_fullres", device="cpu").postprocessing is None
    assert load_model(root, "2d", device="cpu").postprocessing is not None
    assert load_model(root, "2d", device="cpu", use_postprocessing=False).postprocessing is None


def test_real_pipeline_geometry_round_trip(tmp_path: Path):
    """Anisotropic, rotated input through NNSeg's real preprocessing: exact geometry out."""
    root = make_model_folder(tmp_path / "results", folds=("0",))
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (9, 27, 22)).astype(np.float32)
    image[:, :2] = 0   # something to crop
    src = write_image(tmp_path / "in" / "scan_0000.nii.gz", image, (3.3, 0.7, 0.9),
                      (12.5, -40.25, 7.125), ROTATED)
    assert main(["predict", "-i", str(src), "-o", str(tmp_path / "out"), "-m", str(root),
                 "--device", "cpu", "--no-tta", "--uncertainty", "--quiet"]) == 0
    ref = sitk.ReadImage(str(src))
    for name in ("scan.nii.gz", "scan_uncertainty.nii.gz"):
        out = sitk.ReadImage(str(tmp_path / "out" / name))
        assert out.GetSize() == ref.GetSize() and out.GetSpacing() == ref.GetSpacing()
        assert out.GetOrigin() == ref.GetOrigin() and out.GetDirection() == ref.GetDirection()
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "scan.nii.gz")))
    assert labels.shape == image.shape and labels.max() <= 2
    assert (labels[:, :2] == 0).all()    # cropped-away region is background
    model = load_model(root, device="cpu", tta=False)
    from NNSegLib.data.io import read_channels

    arrays, geo = read_channels([src])
    again, probs = predict_array(arrays, geo, model, tta=False, return_probabilities=True)
    assert np.array_equal(again, labels)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)


def test_cli_errors_exit_2(tmp_path: Path):
    root = make_model_folder(tmp_path / "results", folds=("0",))
    write_image(tmp_path / "in" / "x_0000.nii.gz", np.zeros((4, 4, 4), np.float32))
    write_image(tmp_path / "in" / "x_0001.nii.gz", np.zeros((4, 4, 4), np.float32))
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-m",
                 str(root), "--quiet"])
    assert code == 2
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-m",
                 str(tmp_path / "none"), "--quiet"]) == 2


def test_cascade_feeds_low_resolution_prediction(tmp_path: Path, monkeypatch):
    root = make_model_folder(tmp_path / "r", folds=("0",),
                             configs=("3d_lowres", "3d_cascade_fullres"))
    model = load_model(root, "3d_cascade_fullres", device="cpu", tta=False)
    assert model.previous_stage is not None and model.previous_stage.configuration == "3d_lowres"
    assert model.previous_stage.postprocessing is None
    seen = []
    network = dict(model.networks)["0"]
    original = network.forward

    def spy(x):
        seen.append(x.detach().clone())
        return original(x)

    monkeypatch.setattr(network, "forward", spy)
    rng = np.random.default_rng(1)
    image = rng.normal(100, 10, (1, 12, 20, 18)).astype(np.float32)
    from NNSegLib.data.io import Geometry
    from NNSegLib.inference.predict import predict_case

    geo = Geometry((12, 20, 18), (1.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    low = predict_case(image, geo, model.previous_stage, postprocess=False).labels
    result = predict_case(image, geo, model)
    assert result.labels.shape == (12, 20, 18)
    x = torch.cat(seen)
    assert x.shape[1] == 3                                  # image + 2 one-hot channels
    onehot = x[:, 1:]
    assert set(torch.unique(onehot).tolist()) <= {0.0, 1.0}
    assert float(onehot.sum(1).max()) <= 1.0
    # window 0 of the z-padded (2 + 12 + 2) volume: one-hot of the low-res labels
    assert x.shape[0] == 4 and (low > 0).any()
    padded = np.pad(low, ((2, 2), (0, 0), (0, 0)))[:16, :16, :16]
    for k in (1, 2):
        assert np.array_equal(onehot[0, k - 1].numpy(), (padded == k).astype(np.float32))


def test_configuration_ensemble_averages_probabilities(tmp_path: Path):
    root = make_model_folder(tmp_path / "r", folds=("0",), configs=("2d", "3d_fullres"))
    (root / "best_configuration.json").write_text(
        json.dumps({"configurations": ["3d_fullres", "2d"]}))
    model = load_model(root, device="cpu", tta=False)
    assert model.configurations == ["3d_fullres", "2d"]
    from NNSegLib.data.io import Geometry
    from NNSegLib.inference.predict import predict_case

    rng = np.random.default_rng(2)
    image = rng.normal(100, 10, (1, 6, 18, 17)).astype(np.float32)
    geo = Geometry((6, 18, 17), (1.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    both = predict_case(image, geo, model, probabilities=True)
    parts = [predict_case(image, geo, load_model(root, c, device="cpu", tta=False),
                          probabilities=True).probabilities for c in ("3d_fullres", "2d")]
    np.testing.assert_allclose(both.probabilities, (parts[0] + parts[1]) / 2, atol=1e-6)
    assert np.array_equal(both.labels, both.probabilities.argmax(0))
    assert np.abs(parts[0] - parts[1]).max() > 1e-3   # the members really differ
    labels, _ = predict_array(image, geo, model, tta=True)   # options reach every member
    assert labels.shape == (6, 18, 17)


def test_patch_overridden_in_training_is_used_for_prediction(tmp_path: Path):
    root = make_model_folder(tmp_path / "r", folds=("0",))
    assert load_model(root, device="cpu").settings.patch_size == (16, 16, 16)
    path = root / "3d_fullres/fold_0/checkpoint_final.pt"
    state = torch.load(path, weights_only=True)
    state["meta"]["patch_size"] = [8, 16, 16]
    save_checkpoint(path, state)
    assert load_model(root, device="cpu").settings.patch_size == (8, 16, 16)
