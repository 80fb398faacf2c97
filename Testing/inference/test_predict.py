from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image

from NNSegLib.data.io import Geometry, SimpleITKIO
from NNSegLib.inference.loaded_model import LoadedModel
from NNSegLib.inference.predict import (
    collect_cases,
    predict_array,
    predict_case,
    predict_files,
)
from NNSegLib.inference.sliding_window import SlidingWindowSettings
from NNSegLib.inference.uncertainty import normalized_entropy
from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Cancelled, Progress

PATCH = (8, 16, 16)
ROTATED = (0.0, -1.0, 0.0, 0.866025403784, 0.0, -0.5, 0.5, 0.0, 0.866025403784)


class IdentityPipeline:
    """No crop or resampling: network input is the image itself."""

    output = "softmax"

    def preprocess(self, images, geometry, seg=None):
        return np.asarray(images, np.float32), seg, {"shape": tuple(geometry.shape)}

    def restore_probabilities(self, scores, properties):
        assert tuple(scores.shape[1:]) == properties["shape"]
        return scores.numpy()

    def restore_labels(self, scores, properties):
        return scores.numpy().argmax(0)


class Threshold(torch.nn.Module):
    """Class logits linear in the intensity: class k wins around intensity 100·k."""

    def __init__(self, classes: int = 3, scale: float = 1.0) -> None:
        super().__init__()
        self.classes, self.scale = classes, scale

    def forward(self, x):
        k = torch.arange(self.classes, dtype=x.dtype).view(1, -1, *([1] * (x.ndim - 2)))
        return -self.scale * (x[:, :1] / 100.0 - k) ** 2


class Constant(torch.nn.Module):
    def __init__(self, logits) -> None:
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        shape = (x.shape[0], len(self.logits), *x.shape[2:])
        return self.logits.view(1, -1, *([1] * (x.ndim - 2))).expand(shape).clone()


def _plans() -> Plans:
    cfg = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres",
        spacing=(1.0, 1.0, 1.0), median_shape=(16, 24, 24), patch_size=PATCH,
        batch_size=2, strides=((1, 1, 1), (2, 2, 2)), kernel_sizes=((3, 3, 3),) * 2,
        features_per_stage=(4, 8))
    return Plans(dataset_name="T", recipe="v2", memory_budget_gb=1.0,
                 channel_names={"0": "MRI"}, labels={"background": 0, "a": 1, "b": 2},
                 intensity_properties={"0": IntensityProperties(0, 1, 0, 1)},
                 configurations={"3d_fullres": cfg})


def make_model(networks, tta=True, postprocessing=None) -> LoadedModel:
    plans = _plans()
    settings = SlidingWindowSettings(PATCH, precision="fp32", mirror_axes=(0, 1, 2) if tta else ())
    return LoadedModel(Path("."), plans, "3d_fullres", plans.configurations["3d_fullres"],
                       dict(plans.labels), [(str(i), n.eval()) for i, n in enumerate(networks)],
                       torch.device("cpu"), settings, IdentityPipeline(), 1, postprocessing)


def _image(shape=(13, 21, 18), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    image[3:8, 4:12, 5:10] = 100
    image[8:12, 10:18, 9:16] = 200
    return image + rng.normal(0, 5, shape).astype(np.float32)


def test_labels_follow_intensity_and_geometry():
    image = _image()
    geo = Geometry(image.shape, (3.0, 0.7, 0.9), (10.0, -5.0, 2.0), ROTATED)
    labels, probs = predict_array(image[None], geo, make_model([Threshold()]),
                                  return_probabilities=True)
    expected = np.zeros(image.shape, np.uint8)
    expected[3:8, 4:12, 5:10] = 1
    expected[8:12, 10:18, 9:16] = 2
    assert labels.dtype == np.uint8 and labels.shape == image.shape
    assert np.array_equal(labels, expected)
    assert probs.shape == (3, *image.shape)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_ensemble_is_mean_of_fold_softmaxes():
    a, b = [2.0, 0.0, -1.0], [-1.0, 3.0, 0.5]
    image = np.zeros((1, 10, 20, 20), np.float32)
    geo = Geometry((10, 20, 20), (1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    labels, probs = predict_array(image, geo, make_model([Constant(a), Constant(b)]),
                                  return_probabilities=True)
    expected = (torch.softmax(torch.tensor(a), 0) + torch.softmax(torch.tensor(b), 0)) / 2
    np.testing.assert_allclose(probs[:, 5, 7, 3], expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(probs, np.broadcast_to(expected.numpy()[:, None, None, None],
                                                      probs.shape), atol=1e-5)
    assert np.all(labels == int(expected.argmax()))   # 1 here, although fold a says 0


def test_uncertainty_is_normalized_entropy():
    p = np.array([[1.0, 0.5, 1 / 3, 0.9], [0.0, 0.5, 1 / 3, 0.1], [0.0, 0.0, 1 / 3, 0.0]],
                 np.float32)
    h = normalized_entropy(p)
    two = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)) / np.log(3)
    np.testing.assert_allclose(h, [0.0, np.log(2) / np.log(3), 1.0, two], atol=1e-5)
    image = np.zeros((1, 8, 16, 16), np.float32)
    geo = Geometry((8, 16, 16), (1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    model = make_model([Constant([0.0, 0.0, 0.0])])
    result = predict_case(image, geo, model, uncertainty=True)
    np.testing.assert_allclose(result.uncertainty, 1.0, atol=1e-5)
    assert result.probabilities is None


def test_channel_count_is_checked():
    geo = Geometry((8, 16, 16), (1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(NNSegError, match="channel"):
        predict_array(np.zeros((2, 8, 16, 16), np.float32), geo, make_model([Threshold()]))


def test_predict_array_cancel():
    progress = Progress()
    progress.cancel_token.cancel("user")
    geo = Geometry((8, 16, 16), (1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(Cancelled):
        predict_array(np.zeros((1, 8, 16, 16), np.float32), geo, make_model([Threshold()]),
                      progress=progress)


def test_predict_array_reports_patches_and_tta_switch():
    events = []
    geo = Geometry((8, 16, 32), (1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    model = make_model([Threshold()])
    predict_array(np.zeros((1, 8, 16, 32), np.float32), geo, model, tta=False, step=0.5,
                  progress=Progress(listeners=[events.append]))
    done = [e for e in events if e["event"] == "progress"]
    assert done[-1]["current"] == done[-1]["total"] == 3
    assert model.settings.mirror_axes == (0, 1, 2)   # the loaded model is not changed


def test_postprocessing_applied():
    from NNSegLib.postprocessing.postprocess import PostprocessingRules

    image = np.zeros((10, 20, 20), np.float32)
    image[2:6, 2:8, 2:8] = 100
    image[7:9, 15:18, 15:18] = 100   # small second component of class 1
    geo = Geometry(image.shape, (1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    rules = PostprocessingRules(((1,),))
    plain, _ = predict_array(image[None], geo, make_model([Threshold()], postprocessing=rules),
                             postprocess=False)
    assert (plain[7:9, 15:18, 15:18] == 1).all()
    pp, _ = predict_array(image[None], geo, make_model([Threshold()], postprocessing=rules))
    assert (pp[7:9, 15:18, 15:18] == 0).all() and (pp[2:6, 2:8, 2:8] == 1).all()


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_files_round_trip_geometry_exactly(tmp_path: Path, ending: str):
    image = _image((11, 19, 23), seed=1)
    spacing, origin = (3.3, 0.71, 0.93), (12.5, -40.25, 7.125)
    src = tmp_path / "in"
    write_image(src / f"caseA_0000{ending}", image, spacing, origin, ROTATED)
    cases = collect_cases([src], 1)
    assert [c.identifier for c in cases] == ["caseA"]
    written = predict_files(cases, tmp_path / "out", make_model([Threshold()], tta=False),
                            probabilities=True, uncertainty=True)
    names = sorted(p.name for p in written)
    assert names == sorted([f"caseA{ending}", "caseA_probabilities.npz",
                            f"caseA_uncertainty{ending}"])
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(src / f"caseA_0000{ending}"))
    for name in (f"caseA{ending}", f"caseA_uncertainty{ending}"):
        out = sitk.ReadImage(str(tmp_path / "out" / name))
        assert out.GetSize() == ref.GetSize()
        assert out.GetSpacing() == ref.GetSpacing()
        assert out.GetOrigin() == ref.GetOrigin()
        assert out.GetDirection() == ref.GetDirection()
    labels, _ = SimpleITKIO().read(tmp_path / "out" / f"caseA{ending}")
    assert labels.shape == image.shape and set(np.unique(labels)) == {0, 1, 2}
    with np.load(tmp_path / "out" / "caseA_probabilities.npz", allow_pickle=False) as f:
        probs = f["probabilities"]
    assert probs.dtype == np.float16 and probs.shape == (3, *image.shape)
    assert np.array_equal(probs.astype(np.float32).argmax(0), labels)


def test_collect_cases_groups_channels_and_checks(tmp_path: Path):
    for name in ["a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz"]:
        write_image(tmp_path / name, np.zeros((2, 3, 4), np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    cases = collect_cases([tmp_path], 2)
    assert [(c.identifier, [p.name for p in c.images]) for c in cases] == [
        ("a", ["a_0000.nii.gz", "a_0001.nii.gz"]), ("b", ["b_0000.nii.gz", "b_0001.nii.gz"])]
    with pytest.raises(NNSegError, match="needs 0..2"):
        collect_cases([tmp_path], 3)
    with pytest.raises(NNSegError, match="missing.nii.gz: does not exist"):
        collect_cases([tmp_path / "missing.nii.gz"], 1)
    single = collect_cases([tmp_path / "a_0000.nii.gz"], 1)
    assert single[0].identifier == "a"
    plain = tmp_path / "plain"
    write_image(plain / "scan.nrrd", np.zeros((2, 3, 4), np.float32))
    assert collect_cases([plain], 1)[0].identifier == "scan"
    assert json.dumps([str(p) for p in cases[0].images])
