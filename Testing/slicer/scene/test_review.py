"""NNSegLib.slicer.scene.review against real MRML: load a queue case, overlay, jump, add."""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from conftest import make_model_folder, write_dataset  # noqa: E402
from test_ras_geometry import GEO, assert_geometry_close  # noqa: E402

from NNSegLib.data.io import SimpleITKIO  # noqa: E402
from NNSegLib.inference import review_queue as rq  # noqa: E402
from NNSegLib.inference.batch import batch_inputs, segment_batch  # noqa: E402
from NNSegLib.inference.model_loader import load_model  # noqa: E402
from NNSegLib.slicer import batch_job  # noqa: E402
from NNSegLib.slicer.scene import mrml  # noqa: E402
from NNSegLib.slicer.scene import review as scene_review  # noqa: E402
from NNSegLib.util.errors import NNSegError  # noqa: E402

pytestmark = pytest.mark.slicer


@pytest.fixture
def batch(ctx, tmp_path):
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    SimpleITKIO().write(rng.normal(100, 30, GEO.shape).astype(np.float32), GEO,
                        tmp_path / "in" / "pat_0000.nii.gz")
    model_dir = make_model_folder(tmp_path / "model", folds=("0",))
    model = load_model(model_dir, folds=["0"], device="cpu", tta=False)
    segment_batch(batch_inputs([tmp_path / "in"], 1), tmp_path / "batch", model, model_dir,
                  write_labels=batch_job.seg_nrrd_writer(ctx))
    return tmp_path / "batch"


def test_load_overlay_jump_and_add(ctx, batch, tmp_path):
    case = scene_review.load_review_case(ctx.scene, batch, "pat")
    assert case.volumes[0].GetName() == "pat" and case.segmentation.GetName() == "pat segmentation"
    assert_geometry_close(mrml.geometry_from_volume_node(case.volumes[0]), GEO, 1e-5)
    assert mrml.segment_names(case.segmentation) == ["a", "b"]
    again = scene_review.load_review_case(ctx.scene, batch, "pat", volumes=case.volumes)
    assert again.volumes[0] is case.volumes[0]     # channels already in the scene: reused
    for node in (again.segmentation, again.uncertainty):
        mrml.remove_node(ctx.scene, node)
    display = case.uncertainty.GetDisplayNode()
    assert display.GetColorNodeID() == scene_review.UNCERTAINTY_COLOURS
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((1.0, 0.5))
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.05)
    composite = ctx.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    assert scene_review.show_uncertainty_overlay(ctx.scene, case.volumes[0], case.uncertainty,
                                                 0.3) >= 1
    assert composite.GetForegroundVolumeID() == case.uncertainty.GetID()
    assert composite.GetForegroundOpacity() == pytest.approx(0.3)
    slice_node = ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    slice_node.SetOrientationToAxial()
    region = case.entry.stats.region
    assert scene_review.jump_to_region(ctx.scene, region) >= 1
    slice_to_ras = slice_node.GetSliceToRAS()
    assert slice_to_ras.GetElement(2, 3) == pytest.approx(region.center_ras[2])
    assert scene_review.jump_to_region(ctx.scene, None) == 0

    ds = write_dataset(tmp_path / "Dataset003_Scene", num_cases=1, shape=GEO.shape)
    spec = json.loads((ds / "dataset.json").read_text())
    spec["labels"] = {"background": 0, "a": 1, "b": 2}
    (ds / "dataset.json").write_text(json.dumps(spec))
    # a segment the dataset does not know is refused before anything is written
    segmentation = case.segmentation.GetSegmentation()
    segmentation.AddEmptySegment("extra", "Spleen")
    with pytest.raises(NNSegError, match="'Spleen'.*not in the dataset's labels"):
        scene_review.add_corrected_case(ctx.scene, batch, "pat", case.segmentation, ds,
                                        case.volumes)
    segmentation.RemoveSegment("extra")
    assert not (ds / "labelsTr" / "pat.nii.gz").exists()
    # the reviewer paints a block of label b; the volumes are read from the batch's files
    labels, _ = mrml.labels_from_segmentation(ctx.scene, case.segmentation, {"a": 1, "b": 2},
                                              case.volumes[0])
    labels[0:2, 0:3, 0:3] = 2
    mrml.segmentation_from_labels(ctx.scene, labels, GEO, {0: "bg", 1: "a", 2: "b"},
                                  node=case.segmentation, reference_volume=case.volumes[0])
    nodes = ctx.scene.GetNumberOfNodes()
    added = scene_review.add_corrected_case(ctx.scene, batch, "pat", case.segmentation, ds)
    assert ctx.scene.GetNumberOfNodes() == nodes    # temporary volumes removed again
    assert added.identifier == "pat" and added.num_training == 2
    written, geo = SimpleITKIO().read(ds / "labelsTr" / "pat.nii.gz")
    np.testing.assert_array_equal(written, labels)
    assert_geometry_close(geo, GEO, 1e-5)
    record = json.loads((ds / "nnseg_provenance.json").read_text())["cases"]["pat"]
    assert record["origin"] == "corrected_prediction" and record["changed_voxels"] > 0
    assert record["model"]["version"] == "v1" and record["source_segmentation"] == \
        "pat segmentation"
    assert rq.get_entry(batch, "pat").added_to_dataset["case"] == "pat"
