"""A model whose plan transposes the axes, segmenting a volume of the scene (real MRML).

The Slicer side needs no change for transposed plans: inference returns labels on the
volume's own grid. This checks it through ``segment_in_process``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from scene.test_dataset import _case  # noqa: E402
from scene.test_ras_geometry import GEO, assert_geometry_close  # noqa: E402

from NNSegLib.slicer.scene import mrml  # noqa: E402
from NNSegLib.slicer.scene import prediction as scene_predict  # noqa: E402

pytestmark = pytest.mark.slicer


def _transposed_model(root):
    import torch

    from NNSegLib.network.checkpoint import make_meta, save_checkpoint
    from NNSegLib.network.network import build_network
    from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans

    cfg = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres",
        spacing=(0.7, 3.0, 0.9), median_shape=(9, 7, 11), patch_size=(8, 4, 8), batch_size=2,
        strides=((1, 1, 1), (2, 1, 2)), kernel_sizes=((3, 1, 3), (3, 3, 3)),
        features_per_stage=(4, 8))
    labels = {"background": 0, "one": 1, "two": 2}
    plans = Plans(dataset_name="T", recipe="v2", memory_budget_gb=1.0,
                  channel_names={"0": "MRI"}, labels=labels,
                  intensity_properties={"0": IntensityProperties(0, 1, -3, 3)},
                  configurations={"3d_fullres": cfg}, transpose_forward=(1, 0, 2))
    root.mkdir(parents=True)
    plans.save(root / "plans.json")
    (root / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": 2,
         "file_ending": ".nii.gz"}))
    torch.manual_seed(3)
    net = build_network(cfg, 1, 3)
    save_checkpoint(root / "3d_fullres" / "fold_0" / "checkpoint_final.pt",
                    {"network": net.state_dict(), "meta": make_meta("3d_fullres", 0, 1, 3, 1),
                     "optimizer": {}})
    return root


def test_segmentation_of_a_transposed_model_lands_on_the_volume(ctx, tmp_path):
    from NNSegLib.inference.model_loader import load_model
    from NNSegLib.inference.predict import predict_array

    model_dir = _transposed_model(tmp_path / "Transposed")
    vols, _seg, _ = _case(ctx, 21, ["one"], name="tin")
    seg, _unc = scene_predict.segment_in_process(ctx.scene, vols, model_dir, device="cpu",
                                                 tta=False)
    image, geo = mrml.array_from_volume_node(vols[0])
    assert_geometry_close(geo, GEO, 1e-9)
    expected, _ = predict_array(image[None], geo, load_model(model_dir, device="cpu",
                                                             tta=False), tta=False)
    assert expected.shape == GEO.shape and len(np.unique(expected)) > 1
    back, back_geo = mrml.labels_from_segmentation(ctx.scene, seg, {"one": 1, "two": 2},
                                                   reference_volume=vols[0])
    assert_geometry_close(back_geo, GEO, 1e-9)
    np.testing.assert_array_equal(back, expected)
