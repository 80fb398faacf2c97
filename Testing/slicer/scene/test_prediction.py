"""NNSegLib.slicer.scene.prediction against real MRML (slicer-core, headless)."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from test_dataset import _case  # noqa: E402
from test_ras_geometry import GEO, assert_geometry_close  # noqa: E402

from NNSegLib.inference.uncertainty import normalized_entropy  # noqa: E402
from NNSegLib.slicer.scene import mrml  # noqa: E402
from NNSegLib.slicer.scene import prediction as scene_predict  # noqa: E402

pytestmark = pytest.mark.slicer


def test_predict_volumes_with_stub_predictor(ctx):
    vols, _seg, _ = _case(ctx, 7, ["a"], channels=2, name="pred_in")
    seen = {}

    def predictor(images, geometry):
        seen["shape"], seen["geometry"] = images.shape, geometry
        labels = (images[0] > 0).astype(np.uint8) + (images[1] > 10.5).astype(np.uint8)
        probs = np.stack([labels == k for k in range(3)]).astype(np.float32)
        return labels, probs

    seg, unc = scene_predict.predict_volumes(ctx.scene, vols, predictor,
                                             {0: "background", 1: "low", 2: "high"},
                                             {"name": "stub", "version": "1"}, uncertainty=True)
    assert seen["shape"] == (2,) + GEO.shape
    assert_geometry_close(seen["geometry"], GEO, 1e-9)
    i0, _ = mrml.array_from_volume_node(vols[0])
    i1, _ = mrml.array_from_volume_node(vols[1])
    expected = (i0 > 0).astype(np.uint8) + (i1 > 10.5).astype(np.uint8)
    back, _ = mrml.labels_from_segmentation(ctx.scene, seg, {"low": 1, "high": 2},
                                            reference_volume=vols[0])
    np.testing.assert_array_equal(back, expected)
    assert seg.GetName() == "pred_in_ch0 segmentation"
    u, ugeo = mrml.array_from_volume_node(unc)
    assert u.max() == 0.0 and u.shape == GEO.shape  # one-hot → certain
    assert_geometry_close(ugeo, GEO, 1e-9)


def test_predict_volumes_with_tiny_untrained_network(ctx):
    network = pytest.importorskip("NNSegLib.network.network")
    torch = pytest.importorskip("torch")
    from NNSegLib.planning.plans import ConfigurationPlan

    config = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="x", spacing=(3.0, 0.7, 0.9),
        median_shape=GEO.shape, patch_size=(8, 8, 8), batch_size=2,
        strides=((1, 1, 1), (2, 2, 2)), kernel_sizes=((3, 3, 3), (3, 3, 3)),
        features_per_stage=(4, 8))
    torch.manual_seed(0)
    net = network.build_network(config, 1, 3, deep_supervision=False).eval()

    def predictor(images, geometry):
        pad = [(0, 8 - s % 8 if s % 8 else 0) for s in images.shape[1:]]
        x = np.pad(images, [(0, 0)] + pad)
        with torch.no_grad():
            logits = net(torch.from_numpy(x[None]))[0].numpy()
        logits = logits[:, : images.shape[1], : images.shape[2], : images.shape[3]]
        probs = np.exp(logits - logits.max(0))
        probs /= probs.sum(0)
        return probs.argmax(0).astype(np.uint8), probs

    vols, _seg, _ = _case(ctx, 8, ["a"], name="net_in")
    seg, unc = scene_predict.predict_volumes(ctx.scene, vols, predictor,
                                             {0: "background", 1: "one", 2: "two"},
                                             uncertainty=True)
    labels, probs = predictor(mrml.array_from_volume_node(vols[0])[0][None], GEO)
    back, _ = mrml.labels_from_segmentation(ctx.scene, seg, {"one": 1, "two": 2},
                                            reference_volume=vols[0])
    np.testing.assert_array_equal(back, labels)
    u, _ = mrml.array_from_volume_node(unc)
    np.testing.assert_allclose(u, normalized_entropy(probs), atol=1e-6)



def test_segment_in_process_wires_model_and_predictor(ctx, monkeypatch, tmp_path):
    import NNSegLib
    from NNSegLib.inference import model_loader as model_module
    from NNSegLib.inference import predict as predict_module

    calls = {}

    class FakeModel:
        labels = {"background": 0, "organ": 1}

    def fake_load_model(path, **kwargs):
        calls["load"] = (path, kwargs)
        return FakeModel()

    def fake_predict_array(images, geometry, model, **kwargs):
        calls["predict"] = (images.shape, type(model).__name__, kwargs)
        labels = (images[0] > 0).astype(np.uint8)
        return labels, np.stack([1 - labels, labels]).astype(np.float32)

    monkeypatch.setattr(model_module, "load_model", fake_load_model)
    monkeypatch.setattr(predict_module, "predict_array", fake_predict_array)
    vols, _seg, _ = _case(ctx, 14, ["organ"], name="inproc")
    model_dir = tmp_path / "MyModel"
    seg, unc = scene_predict.segment_in_process(ctx.scene, vols, model_dir, device="cpu",
                                                tta=False, folds="0-1,3", uncertainty=True)
    assert calls["load"] == (model_dir, {"folds": ["0", "1", "3"], "device": "cpu",
                                         "tta": False})
    assert calls["predict"] == ((1,) + GEO.shape, "FakeModel",
                                {"tta": False, "return_probabilities": True})
    assert mrml.segment_names(seg) == ["organ"]
    assert seg.GetAttribute(mrml.TAG_MODEL) == "MyModel"
    assert seg.GetAttribute(mrml.TAG_MODEL_VERSION) == "v1"   # no model_version.json
    assert seg.GetAttribute(mrml.TAG_SOFTWARE_VERSION) == NNSegLib.__version__
    image, _ = mrml.array_from_volume_node(vols[0])
    back, _ = mrml.labels_from_segmentation(ctx.scene, seg, {"organ": 1}, vols[0])
    np.testing.assert_array_equal(back, (image > 0).astype(np.uint8))
    u, _ = mrml.array_from_volume_node(unc)
    assert u.max() == 0.0  # one-hot probabilities: certain everywhere
    # no folds typed: all folds (None); no uncertainty asked: no volume
    _seg2, unc2 = scene_predict.segment_in_process(ctx.scene, vols, model_dir)
    assert calls["load"][1] == {"folds": None, "device": "auto", "tta": True}
    assert calls["predict"][2] == {"tta": True, "return_probabilities": False}
    assert unc2 is None
