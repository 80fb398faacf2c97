"""NNSegLib.slicer.review_panel on real MRML: batch inputs, review table, review session."""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from conftest import make_model_folder, write_dataset  # noqa: E402
from scene.test_ras_geometry import GEO  # noqa: E402

from NNSegLib.data.io import SimpleITKIO  # noqa: E402
from NNSegLib.inference import review_queue as rq  # noqa: E402
from NNSegLib.inference.batch import batch_inputs, segment_batch  # noqa: E402
from NNSegLib.inference.model_loader import load_model  # noqa: E402
from NNSegLib.slicer import batch_job, review_panel  # noqa: E402
from NNSegLib.slicer.scene import mrml  # noqa: E402
from NNSegLib.util.errors import NNSegError  # noqa: E402

pytestmark = pytest.mark.slicer


@pytest.fixture(scope="module")
def made(ctx, tmp_path_factory):
    """A two-case batch segmented by a tiny model (random weights), and the model."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("review")
    rng = np.random.default_rng(5)
    for name in ("pat1", "pat2"):
        SimpleITKIO().write(rng.normal(100, 30, GEO.shape).astype(np.float32), GEO,
                            root / "in" / f"{name}_0000.nii.gz")
    model_dir = make_model_folder(root / "model", folds=("0",))
    model = load_model(model_dir, folds=["0"], device="cpu", tta=False)
    segment_batch(batch_inputs([root / "in"], 1), root / "batch", model, model_dir,
                  write_labels=batch_job.seg_nrrd_writer(ctx))
    return root, root / "batch", model_dir


def _ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def test_batch_inputs_and_folder(ctx, made, tmp_path):
    root, batch, model = made
    problem = review_panel.batch_input_problem
    assert problem("folder", ".", [], 1) == "Choose the input folder."
    assert "does not exist" in problem("folder", tmp_path / "none", [], 1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    assert "has no images" in problem("folder", tmp_path / "empty", [], 1)
    assert problem("folder", root / "in", [], 1) is None
    assert problem("scene volumes", None, [], 1) == "Check the scene volumes to segment."
    volume = mrml.volume_node_from_array(ctx.scene, np.zeros(GEO.shape, np.float32), GEO, "v")
    assert problem("scene volumes", None, [volume], 1) is None
    assert "needs 2 channels per case" in problem("scene volumes", None, [volume], 2)
    with pytest.raises(NNSegError, match="2 channels"):
        review_panel.scene_cases([volume, volume], 2)
    assert review_panel.scene_cases([volume, None], 1) == [[volume]]
    mrml.remove_node(ctx.scene, volume)

    folder = review_panel.batch_folder_problem
    assert folder(".", model) == "Choose the batch folder."
    assert folder(tmp_path / "new", model) is None
    assert folder(batch, model) is None            # the same model continues its batch
    other = make_model_folder(tmp_path / "other", folds=("0",))
    text = folder(batch, other)
    assert "segmented by model v1" in text and str(model.resolve()) in text
    (model / "model_version.json").write_text(json.dumps({"version": 2}))
    try:
        assert "segmented by model v1" in folder(batch, model)   # same folder, newer version
    finally:
        (model / "model_version.json").unlink()
    assert "segmented by" in folder(batch, tmp_path / "m.zip")   # imported to batch/model

    assert review_panel.describe_batch(".") == ""
    assert "No review queue" in review_panel.describe_batch(tmp_path)
    assert review_panel.describe_batch(batch).startswith("2 case(s) by model v1: 2 pending")


def test_review_table_and_adding_a_reviewed_case(ctx, made, tmp_path):
    _root, batch, _model = made
    assert review_panel.review_table(tmp_path).cases == []
    table = review_panel.review_table(batch)
    assert sorted(table.cases) == ["pat1", "pat2"] and table.header[:3] == ["#", "case", "state"]
    assert [r[1] for r in table.rows] == table.cases
    assert table.cases == [e.case for e in rq.ranked_entries(batch)]

    ds = write_dataset(tmp_path / "Dataset004_Review", num_cases=1, shape=GEO.shape)
    spec = json.loads((ds / "dataset.json").read_text())
    spec["labels"] = {"background": 0, "a": 1, "b": 2}
    (ds / "dataset.json").write_text(json.dumps(spec))
    entry = rq.get_entry(batch, "pat1")
    assert review_panel.suggest_dataset_name(ds, entry) == "pat1"
    assert review_panel.suggest_dataset_name(tmp_path / "none", entry) == "pat1"
    assert review_panel.add_decision(ds, "pat1").action == "add"
    assert review_panel.add_decision(ds, "case_000").action == "ask"
    assert "already has a case 'case_000'" in review_panel.add_decision(ds, "case_000").reason
    assert review_panel.add_decision(ds, "x_0001").action == "refuse"
    assert review_panel.add_decision(ds, "").action == "refuse"

    session = review_panel.ReviewSession()
    session.open(ctx.scene, batch, "pat1")
    added = session.add(ctx.scene, ds, "pat1")
    assert added.identifier == "pat1" and (ds / "labelsTr" / "pat1.nii.gz").is_file()
    entry = rq.get_entry(batch, "pat1")
    # added before: the same name again (adding replaces it, after asking)
    assert review_panel.suggest_dataset_name(ds, entry) == "pat1"
    assert review_panel.add_decision(ds, "pat1").action == "ask"
    other = write_dataset(tmp_path / "Dataset005_Other", num_cases=1, shape=GEO.shape)
    assert review_panel.suggest_dataset_name(other, entry) == "pat1"
    (other / "labelsTr" / "pat1.nii.gz").write_bytes(b"")
    assert review_panel.suggest_dataset_name(other, entry) == "pat1_2"
    with pytest.raises(NNSegError, match="exists"):
        session.add(ctx.scene, ds, "pat1")
    assert session.add(ctx.scene, ds, "pat1", replace=True).identifier == "pat1"
    session.close(ctx.scene)


def test_session_shows_switches_and_keeps_edits(ctx, made):
    _root, batch, _model = made
    scene = ctx.scene
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    slice_node.SetOrientationToAxial()
    before = _ids(scene)
    session = review_panel.ReviewSession()
    assert session.current_case(scene) is None
    rc = session.open(scene, batch, "pat1", opacity=0.3)
    assert session.current_case(scene) == "pat1"
    assert composite.GetBackgroundVolumeID() == rc.volumes[0].GetID()
    assert composite.GetForegroundVolumeID() == rc.uncertainty.GetID()
    assert composite.GetForegroundOpacity() == pytest.approx(0.3)
    region = rc.entry.stats.region
    assert region is not None     # random weights: uncertain nearly everywhere
    assert slice_node.GetSliceToRAS().GetElement(2, 3) == pytest.approx(region.center_ras[2])
    session.set_opacity(scene, 0.8)
    assert composite.GetForegroundOpacity() == pytest.approx(0.8)
    loaded = _ids(scene)
    assert session.open(scene, batch, "pat1").segmentation is rc.segmentation  # no reload
    assert _ids(scene) == loaded
    assert session.mark(rq.ACCEPTED).state == "accepted"
    assert rq.get_entry(batch, "pat1").state == "accepted"

    # unedited: switching to another case removes the first one's nodes
    rc2 = session.open(scene, batch, "pat2")
    assert scene.GetNodeByID(rc.segmentation.GetID()) is None
    assert scene.GetNodeByID(rc.volumes[0].GetID()) is None
    # edited and not added: the nodes stay, and opening the case again shows them
    labels, _ = mrml.labels_from_segmentation(scene, rc2.segmentation, {"a": 1, "b": 2},
                                              rc2.volumes[0])
    labels[0:2, 0:3, 0:3] = 2
    mrml.segmentation_from_labels(scene, labels, GEO, {0: "bg", 1: "a", 2: "b"},
                                  node=rc2.segmentation, reference_volume=rc2.volumes[0])
    session.open(scene, batch, "pat1")
    assert scene.GetNodeByID(rc2.segmentation.GetID()) is rc2.segmentation
    again = session.open(scene, batch, "pat2")
    assert again.segmentation is rc2.segmentation and again.volumes[0] is rc2.volumes[0]
    session.close(scene)
    assert scene.GetNodeByID(rc2.segmentation.GetID()) is rc2.segmentation   # still edited
    session.reset()
    assert session.current_case(scene) is None and session.kept == {}
    for node in (rc2.segmentation, rc2.uncertainty, *rc2.volumes):
        mrml.remove_node(scene, node)
    assert _ids(scene) == before


def test_session_reuses_scene_volumes_of_a_scene_batch(ctx, tmp_path):
    """A batch of scene volumes: reviewing a case shows (and never removes) its volume."""
    import torch

    torch.set_num_threads(1)
    scene = ctx.scene
    rng = np.random.default_rng(1)
    volume = mrml.volume_node_from_array(scene, rng.normal(100, 30, GEO.shape)
                                         .astype(np.float32), GEO, "Scan A")
    model_dir = make_model_folder(tmp_path / "model", folds=("0",))
    session = review_panel.ReviewSession()
    job = review_panel.start_batch(session, "scene volumes", None, [volume], tmp_path / "b",
                                   model_dir, "0", "cpu", False)
    assert job["cases"] == ["Scan_A"] and job["steps"][-1][0] == "segment-batch"
    model = load_model(model_dir, folds=["0"], device="cpu", tta=False)
    segment_batch(batch_inputs([tmp_path / "b" / "images"], 1), tmp_path / "b", model,
                  model_dir, write_labels=batch_job.seg_nrrd_writer(ctx))
    rc = session.open(scene, tmp_path / "b", "Scan_A")
    assert rc.volumes == [volume]
    session.open(scene, tmp_path / "b", "Scan_A")
    session.close(scene)
    assert scene.GetNodeByID(volume.GetID()) is volume
    assert scene.GetNodeByID(rc.segmentation.GetID()) is None
    folder_job = review_panel.start_batch(session, "folder", tmp_path / "b" / "images", [],
                                          tmp_path / "c", model_dir, allow_unfinished=True)
    assert "--allow-unfinished" in folder_job["steps"][-1]
    mrml.remove_node(scene, volume)
