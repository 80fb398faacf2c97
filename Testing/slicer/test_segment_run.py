"""NNSegLib.slicer.segment_run: captured inputs, safe delivery, overwrite rules (real MRML)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from scene.test_ras_geometry import GEO  # noqa: E402

from NNSegLib.data.io import SimpleITKIO  # noqa: E402
from NNSegLib.slicer import segment_run  # noqa: E402
from NNSegLib.slicer.scene import mrml  # noqa: E402

pytestmark = pytest.mark.slicer
LABELS = {0: "bg", 1: "organ", 2: "lesion"}


@pytest.fixture
def scene():
    return mrml.new_scene().scene


def _labels(shift: int = 0) -> np.ndarray:
    labels = np.zeros(GEO.shape, np.uint8)
    labels[1:4, 2 + shift:6 + shift, 2:6] = 1
    labels[4:6, 5:8, 1:4] = 2
    return labels


def _volume(scene, name="CT"):
    rng = np.random.default_rng(0)
    return mrml.volume_node_from_array(scene, rng.normal(0, 1, GEO.shape).astype(np.float32),
                                       GEO, name)


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps({
        "name": "Dataset012_Job", "channel_names": {"0": "CT"},
        "labels": {"background": 0, "organ": 1, "lesion": 2}}))
    return folder


def _finish_job(run: segment_run.SegmentRun, shift: int = 0) -> None:
    """Write what `nnseg predict` would write for every case of the run."""
    for case in run.cases:
        SimpleITKIO().write(_labels(shift), GEO, run.tmp / "output" / f"{case.name}.nii.gz")
        SimpleITKIO().write(np.full(GEO.shape, 0.5, np.float32), GEO,
                            run.tmp / "output" / f"{case.name}_uncertainty.nii.gz")


def _paint(segmentation, segment_name: str, value: int = 1) -> None:
    """Change one voxel of a segment's binary labelmap in place (like a paint stroke)."""
    from vtk.util import numpy_support

    seg = segmentation.GetSegmentation()
    segment = seg.GetSegment(seg.GetSegmentIdBySegmentName(segment_name))
    image = segment.GetRepresentation("Binary labelmap")
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    array[0] = value if array[0] == 0 else 0
    image.GetPointData().GetScalars().Modified()
    image.Modified()
    segmentation.Modified()


def test_capture_writes_inputs_now_and_builds_the_commands(scene, tmp_path):
    ct = _volume(scene)
    run = segment_run.capture_segment_run(scene, [[ct], [ct]], [None, None], tmp_path / "m.zip",
                                          folds="0-1", device="cpu", tta=False,
                                          postprocessing=False)
    try:
        assert [c.name for c in run.cases] == ["case000", "case001"]
        assert run.cases[0].volume_ids == [ct.GetID()] and run.cases[0].volume_name == "CT"
        written, _geo = SimpleITKIO().read(run.tmp / "input" / "case001_0000.nii.gz")
        np.testing.assert_array_equal(written, mrml.array_from_volume_node(ct)[0])
        assert run.steps[0][0] == "import-model" and run.model == run.tmp / "model"
        predict = run.steps[-1]
        assert "--no-postprocessing" in predict and "--no-tta" in predict
        assert predict[-3:] == ["--folds", "0", "1"]
    finally:
        run.cleanup()
    assert not run.tmp.exists()


def test_results_go_to_new_nodes_in_the_study_and_never_overwrite(scene, tmp_path):
    ct = _volume(scene)
    sh = scene.GetSubjectHierarchyNode()
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient"), "Study")
    sh.CreateItem(study, ct)
    model = _model(tmp_path / "model")
    results = []
    for _ in range(2):  # the second Segment makes a second node: the first one is kept
        run = segment_run.capture_segment_run(scene, [[ct]], [None], model, uncertainty=True,
                                              show_3d=True)
        _finish_job(run)
        [result] = segment_run.deliver_results(scene, run)
        run.cleanup()
        results.append(result)
    first, second = (r.segmentation for r in results)
    assert first is not second and first.GetName() != second.GetName()
    assert mrml.segment_names(first) == ["organ", "lesion"] == mrml.segment_names(second)
    assert sh.GetItemParent(sh.GetItemByDataNode(first)) == study
    assert sh.GetItemParent(sh.GetItemByDataNode(results[0].uncertainty)) == study
    assert first.GetDisplayNode().GetVisibility3D()
    assert first.GetSegmentation().ContainsRepresentation("Closed surface")
    assert first.GetAttribute(mrml.TAG_MODEL) == "Dataset012_Job"
    assert first.GetAttribute(segment_run.TAG_FINGERPRINT) == segment_run.content_fingerprint(
        scene, first)
    assert results[0].notes == []


def test_overwrite_rules_and_edit_detection(scene, tmp_path):
    ct = _volume(scene)
    model = _model(tmp_path / "model")
    assert segment_run.overwrite_decision(scene, None).action == "new"
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    assert segment_run.overwrite_decision(scene, empty).action == "overwrite"
    manual = mrml.segmentation_from_labels(scene, _labels(), GEO, LABELS, reference_volume=ct,
                                           name="manual")
    decision = segment_run.overwrite_decision(scene, manual)
    assert decision.action == "ask" and "NNSeg did not write" in decision.reason
    run = segment_run.capture_segment_run(scene, [[ct]], [None], model)
    _finish_job(run)
    result = segment_run.deliver_results(scene, run)[0].segmentation
    run.cleanup()
    assert segment_run.overwrite_decision(scene, result).action == "overwrite"  # untouched
    _paint(result, "organ")
    decision = segment_run.overwrite_decision(scene, result)
    assert decision.action == "ask" and "was edited since NNSeg wrote it" in decision.reason
    # the same content read back from a file has the same fingerprint (saved scenes)
    path = mrml.write_segmentation(result, tmp_path / "r.seg.nrrd")
    reread = mrml.read_segmentation(scene, path)
    assert segment_run.content_fingerprint(scene, reread) == segment_run.content_fingerprint(
        scene, result)
    renamed = result.GetSegmentation().GetSegment(
        result.GetSegmentation().GetSegmentIdBySegmentName("lesion"))
    before = segment_run.content_fingerprint(scene, result)
    renamed.SetName("lesion 2")
    assert segment_run.content_fingerprint(scene, result) != before


def test_overwriting_a_chosen_node_and_what_happens_when_nodes_change_mid_run(scene, tmp_path):
    ct = _volume(scene)
    model = _model(tmp_path / "model")
    target = mrml.segmentation_from_labels(scene, _labels(), GEO, LABELS, reference_volume=ct,
                                           name="target")
    run = segment_run.capture_segment_run(scene, [[ct]], [target], model)
    _finish_job(run, shift=1)
    [res] = segment_run.deliver_results(scene, run)
    assert res.segmentation is target and res.notes == []        # overwritten as allowed
    back, _ = mrml.labels_from_segmentation(scene, target, {"organ": 1, "lesion": 2}, ct)
    np.testing.assert_array_equal(back, _labels(1))
    run.cleanup()

    # the chosen node was edited while the job ran: the edit is kept, result goes elsewhere
    run = segment_run.capture_segment_run(scene, [[ct]], [target], model)
    _paint(target, "lesion")
    _finish_job(run)
    [res] = segment_run.deliver_results(scene, run)
    assert res.segmentation is not target and "was edited while segmenting" in res.notes[0]
    run.cleanup()

    # the chosen node and the input volume were deleted while the job ran
    run = segment_run.capture_segment_run(scene, [[ct]], [target], model)
    scene.RemoveNode(target)
    scene.RemoveNode(ct)
    _finish_job(run)
    [res] = segment_run.deliver_results(scene, run)
    assert len(res.notes) == 2 and "input volume 'CT' was deleted" in res.notes[0]
    assert "output segmentation was deleted" in res.notes[1]
    assert res.segmentation.GetName().startswith("CT segmentation")
    assert mrml.segment_names(res.segmentation) == ["organ", "lesion"]
    run.cleanup()


def test_a_job_without_output_raises_a_clear_error(scene, tmp_path):
    ct = _volume(scene)
    run = segment_run.capture_segment_run(scene, [[ct]], [None], _model(tmp_path / "model"))
    with pytest.raises(RuntimeError, match="wrote no label map for case000"):
        segment_run.deliver_results(scene, run)
    run.cleanup()


def test_describe_postprocessing(tmp_path):
    model = _model(tmp_path / "model")
    assert "No postprocessing chosen" in segment_run.describe_postprocessing(model)
    (model / "postprocessing.json").write_text(json.dumps(
        {"version": 1, "largest_component_groups": [[1, 2], [2]], "decisions": []}))
    (model / "best_configuration.json").write_text(json.dumps({"configuration": "3d_fullres"}))
    assert segment_run.describe_postprocessing(model) == (
        "Chosen on cross-validation of 3d_fullres: keep only the largest connected component "
        "of label(s) 1+2; 2.")
    (model / "postprocessing.json").write_text(json.dumps(
        {"version": 1, "largest_component_groups": [], "decisions": []}))
    assert "kept no postprocessing" in segment_run.describe_postprocessing(model)
    assert "package" in segment_run.describe_postprocessing(tmp_path / "m.zip")
