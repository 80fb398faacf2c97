from __future__ import annotations

import copy
import io
import json
import pickle
import sys
from pathlib import Path

import nnunet_fixture
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from NNSegLib.inference.nnunet_model import (
    load_nnunet_checkpoint,
    resolved_configuration,
    to_configuration_plan,
    to_plans,
)
from NNSegLib.util.errors import NNSegError

ARCH = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2]],
        "n_conv_per_stage": [2, 2], "n_conv_per_stage_decoder": [2], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}}}
RAW_PLANS = {
    "dataset_name": "X", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "foreground_intensity_properties_per_channel": {"0": {
        "mean": 10.0, "std": 2.0, "percentile_00_5": 1.0, "percentile_99_5": 20.0,
        "min": 0.0, "max": 30.0, "median": 9.0}},
    "configurations": {
        "3d_fullres": {"data_identifier": "d", "patch_size": [8, 16, 16], "spacing": [3, 1, 1],
                       "normalization_schemes": ["CTNormalization"],
                       "use_mask_for_norm": [False], "architecture": ARCH, "batch_size": 2},
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
    }}
DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
           "file_ending": ".nii.gz", "numTraining": 3}


def test_plan_mapping():
    path = Path("plans.json")
    cfg = to_configuration_plan("3d_fullres", RAW_PLANS["configurations"]["3d_fullres"], path)
    assert cfg.patch_size == (8, 16, 16) and cfg.strides == ((1, 1, 1), (1, 2, 2))
    assert cfg.kernel_sizes[0] == (1, 3, 3) and cfg.features_per_stage == (4, 8)
    assert cfg.n_conv_per_stage == 2 and cfg.spacing == (3.0, 1.0, 1.0)
    cascade = resolved_configuration(RAW_PLANS, "3d_cascade_fullres", path)
    assert cascade["patch_size"] == [8, 16, 16] and cascade["previous_stage"] == "3d_lowres"
    plans = to_plans(RAW_PLANS, DATASET, ["3d_fullres", "3d_cascade_fullres"], path)
    assert plans.num_classes == 3 and plans.intensity_properties["0"].percentile_99_5 == 20.0
    assert plans.configurations["3d_cascade_fullres"].previous_stage == "3d_lowres"


@pytest.mark.parametrize("change,message", [
    ({"network_class_name": "dynamic_network_architectures.architectures.unet."
                            "ResidualEncoderUNet"}, "ResEnc"),
    ({"arch_kwargs": {**ARCH["arch_kwargs"], "n_conv_per_stage": [1, 2]}}, "varies per stage"),
    ({"arch_kwargs": {**ARCH["arch_kwargs"], "norm_op": "torch.nn.BatchNorm3d"}}, "norm"),
    ({"arch_kwargs": {**ARCH["arch_kwargs"], "nonlin": "torch.nn.ReLU"}}, "nonlinearity"),
])
def test_unsupported_architectures_are_refused(change, message):
    cfg = copy.deepcopy(RAW_PLANS["configurations"]["3d_fullres"])
    cfg["architecture"] = {**cfg["architecture"], **change}
    with pytest.raises(NNSegError, match=message):
        to_configuration_plan("3d_fullres", cfg, Path("plans.json"))


def test_region_labels_are_refused():
    regions = {**DATASET, "labels": {"background": 0, "whole": [1, 2], "core": 2}}
    with pytest.raises(NNSegError, match="region-based"):
        to_plans(RAW_PLANS, regions, ["3d_fullres"], Path("dataset.json"))


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_checkpoint_allow_list(tmp_path: Path, capsys):
    good = {"network_weights": {"w": torch.zeros(2)}, "logging": {"loss": [np.float64(0.5)]},
            "init_args": {"device": torch.device("cpu")}, "dtype": np.dtype("float32")}
    torch.save(good, tmp_path / "good.pth")
    with pytest.raises(pickle.UnpicklingError):   # plain weights_only refuses numpy...
        torch.load(tmp_path / "good.pth", weights_only=True)
    loaded = load_nnunet_checkpoint(tmp_path / "good.pth")   # ...the allow-list admits them
    assert float(loaded["logging"]["loss"][0]) == 0.5
    torch.save({"network_weights": {}, "trainer": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(NNSegError, match="unpickling"):
        load_nnunet_checkpoint(tmp_path / "evil.pth")
    assert "unpickled!" not in capsys.readouterr().out
    buffer = io.BytesIO(b"not a checkpoint")
    (tmp_path / "junk.pth").write_bytes(buffer.getvalue())
    with pytest.raises(NNSegError):
        load_nnunet_checkpoint(tmp_path / "junk.pth")


# --- against a real (tiny) nnU-Net v2 model ------------------------------------------------

def _fixture_root(build: bool) -> Path:
    reason = nnunet_fixture.available()
    if reason:
        pytest.skip(reason)
    if not build and not (nnunet_fixture.CACHE / "done.json").is_file():
        pytest.skip(f"nnU-Net fixture not built yet at {nnunet_fixture.CACHE}; "
                    "`pytest -m slow Testing/test_nnunet_compat.py` builds it (minutes)")
    return nnunet_fixture.build()


def _compare(root: Path, cfg: str, folds: list[str], tta: bool, tmp_path: Path) -> list[float]:
    from NNSegLib.cli import main

    model = nnunet_fixture.model_folder(root, cfg)
    images = root / "raw" / nnunet_fixture.DATASET / "imagesTs"
    out = tmp_path / f"ours_{cfg}"
    argv = ["predict", "-i", str(images), "-o", str(out), "-m", str(model), "--folds", *folds,
            "--device", "cpu", "--save-probabilities", "--quiet"]
    assert main(argv + ([] if tta else ["--no-tta"])) == 0
    theirs = root / "predictions" / f"{cfg}_f{''.join(folds)}{'' if tta else '_notta'}"
    agreement = []
    for name, *_ in nnunet_fixture.TEST_CASES:
        ref_img = sitk.ReadImage(str(theirs / f"{name}.nii.gz"))
        our_img = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert our_img.GetSize() == ref_img.GetSize()
        assert our_img.GetSpacing() == ref_img.GetSpacing()
        assert our_img.GetOrigin() == ref_img.GetOrigin()
        assert our_img.GetDirection() == ref_img.GetDirection()
        a, b = sitk.GetArrayFromImage(our_img), sitk.GetArrayFromImage(ref_img)
        agreement.append(float((a == b).mean()))
        with np.load(theirs / f"{name}.npz", allow_pickle=False) as f:
            ref_p = f["probabilities"]
        with np.load(out / f"{name}_probabilities.npz", allow_pickle=False) as f:
            our_p = f["probabilities"].astype(np.float32)
        assert our_p.shape == ref_p.shape
        assert np.abs(our_p - ref_p).mean() < 2e-3
    return agreement


def test_cached_nnunet_model_matches_without_tta(tmp_path: Path):
    root = _fixture_root(build=False)
    agreement = _compare(root, "3d_fullres", ["0"], False, tmp_path)
    assert min(agreement) >= 0.999, agreement
    assert "nnunetv2" not in sys.modules


@pytest.mark.slow
@pytest.mark.parametrize("cfg,folds", [("3d_fullres", ["0", "1"]), ("2d", ["0"])])
def test_nnunet_model_matches_nnunet_predict(tmp_path: Path, cfg: str, folds: list[str]):
    root = _fixture_root(build=True)
    agreement = _compare(root, cfg, folds, True, tmp_path)
    print(f"{cfg} folds {folds}: voxel agreement {agreement}")
    assert min(agreement) >= 0.999, agreement
    assert json.loads((root / "done.json").read_text())["trainer"] == nnunet_fixture.TRAINER
