"""The plan's axis order (``transpose_forward``) through preprocessing, inference and back.

Data whose coarse axis is y (spacing 1 × 4 × 1 mm): the plan puts y first, preprocessing
stores arrays in that order, and the restoring functions and inference give results on the
image's own grid.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from NNSegLib.data.io import Geometry
from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans
from NNSegLib.preprocessing.preprocess import (
    preprocess_case,
    preprocess_labels,
    preprocessing_key,
    restore_labels,
    restore_to_original,
)

SPACING = (1.0, 4.0, 1.0)          # image axes (z, y, x): y is coarse
SHAPE = (20, 7, 24)
ORIGIN, DIRECTION = (3.0, -2.0, 5.0), (0, 0, 1, 1, 0, 0, 0, 1, 0)


def _plans(order=(1, 0, 2), spacing=(4.0, 1.0, 1.0)) -> Plans:
    cfg = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres", spacing=spacing,
        median_shape=(7, 20, 24), patch_size=(4, 16, 16), batch_size=2,
        strides=((1, 1, 1), (1, 2, 2)), kernel_sizes=((1, 3, 3), (3, 3, 3)),
        features_per_stage=(4, 8))
    return Plans(dataset_name="T", recipe="v2", memory_budget_gb=1.0,
                 channel_names={"0": "MRI"}, labels={"background": 0, "a": 1, "b": 2},
                 intensity_properties={"0": IntensityProperties(0, 1, 0, 1)},
                 configurations={"3d_fullres": cfg}, transpose_forward=order)


def _case(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 10, SHAPE).astype(np.float32)
    image[:2] = 0                                  # a zero border to crop (image axis z)
    labels = np.zeros(SHAPE, np.int16)
    labels[4:9, 1:5, 3:11] = 1
    labels[10:16, 3:7, 12:22] = 2
    return image, labels, Geometry(SHAPE, SPACING, ORIGIN, DIRECTION)


def _one_hot(labels: np.ndarray, k: int = 3) -> np.ndarray:
    return np.stack([labels == c for c in range(k)]).astype(np.float32)


def test_preprocessing_transposes_and_restoring_goes_back():
    image, labels, geo = _case()
    plans = _plans()
    data, seg, props = preprocess_case(image, geo, plans, "3d_fullres", labels)
    # plan axes: y (coarse) first; z cropped by the zero border; no resampling at 4×1×1
    assert props["transpose_forward"] == [1, 0, 2]
    assert data.shape == (1, 7, 18, 24) and seg.shape == (1, 7, 18, 24)
    assert props["bbox"] == [[0, 7], [2, 20], [0, 24]]
    np.testing.assert_array_equal(seg[0], labels.transpose(1, 0, 2)[:, 2:])
    assert props["original_geometry"]["shape"] == list(SHAPE)
    back = restore_labels(_one_hot(seg[0]), props)
    np.testing.assert_array_equal(back, labels)
    probs = restore_to_original(torch.from_numpy(_one_hot(seg[0])), props)
    assert probs.shape == (3, *SHAPE) and probs.flags.c_contiguous
    np.testing.assert_array_equal(probs.argmax(0), labels)
    # the cascade's label path agrees with the images' path
    np.testing.assert_array_equal(preprocess_labels(labels, image, geo, plans, "3d_fullres"),
                                  seg)


def test_transposed_plan_resamples_in_plan_axes():
    image, labels, geo = _case(1)
    plans = _plans(spacing=(4.0, 2.0, 2.0))
    data, seg, props = preprocess_case(image, geo, plans, "3d_fullres", labels)
    assert data.shape == (1, 7, 9, 12) and props["shape_after_resample"] == [7, 9, 12]
    back = restore_labels(_one_hot(seg[0]), props)
    assert back.shape == SHAPE
    agree = (back == labels)[2:].mean()
    assert agree > 0.9


def test_identity_order_keeps_old_preprocessing_key():
    key = preprocessing_key(_plans(order=(0, 1, 2)), _plans().configuration("3d_fullres"))
    assert "transpose_forward" not in key
    assert preprocessing_key(_plans(), _plans().configuration("3d_fullres"))[
        "transpose_forward"] == [1, 0, 2]


def _model(plans: Plans, network) -> object:
    from NNSegLib.inference.loaded_model import LoadedModel
    from NNSegLib.inference.nnseg_model import NNSegPipeline
    from NNSegLib.inference.sliding_window import SlidingWindowSettings

    cfg = plans.configuration("3d_fullres")
    settings = SlidingWindowSettings(cfg.patch_size, precision="fp32", mirror_axes=())
    return LoadedModel(Path("."), plans, "3d_fullres", cfg, dict(plans.labels),
                       [("0", network)], torch.device("cpu"), settings,
                       NNSegPipeline(plans, cfg), 1)


def test_inference_with_a_transposed_plan_is_inference_on_the_transposed_image():
    from NNSegLib.inference.predict import predict_array
    from NNSegLib.network.network import build_network

    image, _labels, geo = _case(2)
    plans = _plans()
    torch.manual_seed(0)
    net = build_network(plans.configuration("3d_fullres"), 1, 3,
                        deep_supervision=False).eval()
    labels, probs = predict_array(image[None], geo, _model(plans, net), tta=False,
                                  return_probabilities=True)
    assert labels.shape == SHAPE and probs.shape == (3, *SHAPE)
    # the same network on the image transposed by hand, with an identity plan
    moved = Geometry(tuple(SHAPE[a] for a in (1, 0, 2)), (4.0, 1.0, 1.0), ORIGIN, DIRECTION)
    same, same_probs = predict_array(image.transpose(1, 0, 2)[None], moved,
                                     _model(_plans(order=(0, 1, 2)), net), tta=False,
                                     return_probabilities=True)
    np.testing.assert_array_equal(labels, same.transpose(1, 0, 2))
    np.testing.assert_allclose(probs, same_probs.transpose(0, 2, 1, 3), atol=1e-6)
    # and not what the network gives without the transposition (the test can fail)
    plain = dataclasses.replace(plans, transpose_forward=(0, 1, 2))
    other, _ = predict_array(image[None], geo, _model(plain, net), tta=False)
    assert other.shape == SHAPE and (other != labels).any()


@pytest.mark.parametrize("recipe", ["paper", "v2"])
def test_cli_pipeline_on_a_dataset_whose_coarse_axis_is_y(tmp_path, recipe):
    """fingerprint → plan (y first) → preprocess → train 3d and 2d → predict: the
    predictions have each input's own geometry."""
    from conftest import write_dataset

    from NNSegLib.cli import main
    from NNSegLib.data.io import SimpleITKIO

    ds = write_dataset(tmp_path / "Dataset901_Coronal", num_cases=5, shape=(16, 6, 20),
                       spacing=SPACING, seed=4)
    work = tmp_path / "work"
    common = ["--work", str(work), "--quiet"]
    assert main(["fingerprint", str(ds), "--workers", "1", *common]) == 0
    assert main(["plan", str(ds), "--recipe", recipe, "--configurations", "2d", "3d_fullres",
                 *common]) == 0
    plans = Plans.load(work / "plans.json")
    assert plans.transpose_forward == (1, 0, 2) and plans.transpose_backward == (1, 0, 2)
    full, flat = plans.configuration("3d_fullres"), plans.configuration("2d")
    assert full.spacing == pytest.approx((4.0, 1.0, 1.0))
    assert full.median_shape[0] <= 8 and flat.patch_size[0] >= 12  # 2D slices across y
    assert main(["preprocess", str(ds), "--workers", "1", *common]) == 0
    props = json.loads((work / "preprocessed" / "3d_fullres" / "case_000.json").read_text())
    assert props["transpose_forward"] == [1, 0, 2]
    stored = np.load(work / "preprocessed" / "3d_fullres" / "case_000.npy")
    assert stored.shape[1] <= 8 < stored.shape[2]
    fast = ["--epochs", "1", "--iterations-per-epoch", "1", "--val-iterations", "1",
            "--device", "cpu", "--num-threads", "1", "--batch-size", "2"]
    for config in ("3d_fullres", "2d"):
        assert main(["train", str(ds), config, "0", *fast, *common]) == 0
    images = tmp_path / "in"
    images.mkdir()
    (images / "case_001_0000.nii.gz").symlink_to(ds / "imagesTr" / "case_001_0000.nii.gz")
    io = SimpleITKIO()
    original, geo = io.read(ds / "imagesTr" / "case_001_0000.nii.gz")
    for config in ("3d_fullres", "2d"):
        out = tmp_path / f"out_{config}"
        assert main(["predict", "-i", str(images), "-o", str(out), "-m",
                     str(work / "results"), "--config", config, "--folds", "0",
                     "--device", "cpu", "--no-tta", "--quiet"]) == 0
        labels, out_geo = io.read(out / "case_001.nii.gz")
        assert labels.shape == original.shape and out_geo.mismatch(geo) is None
