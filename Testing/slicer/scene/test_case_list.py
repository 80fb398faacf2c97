"""NNSegLib.slicer.scene.case_list: the Dataset panel's cases in the parameter node (real MRML)."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from test_ras_geometry import GEO  # noqa: E402

from NNSegLib.data.io import Geometry  # noqa: E402
from NNSegLib.slicer.scene import case_list, mrml  # noqa: E402

pytestmark = pytest.mark.slicer


@pytest.fixture
def scene():
    return mrml.new_scene().scene


def _volume(scene, name, geometry=GEO, seed=0):
    rng = np.random.default_rng(seed)
    return mrml.volume_node_from_array(scene, rng.normal(0, 1, geometry.shape).astype(np.float32),
                                       geometry, name)


def _segmentation(scene, name, geometry=GEO, reference=None, model=None):
    labels = np.zeros(geometry.shape, np.uint8)
    labels[2:4, 2:5, 2:5] = 1
    return mrml.segmentation_from_labels(scene, labels, geometry, {0: "bg", 1: "organ"},
                                         reference_volume=reference, name=name,
                                         model_info={"name": model} if model else None)


def _param(scene):
    return scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "NNSeg")


def test_cases_live_in_the_parameter_node_and_survive_save_and_reload(scene, tmp_path):
    node = _param(scene)
    v1, v2 = _volume(scene, "A"), _volume(scene, "A_T2", seed=1)
    s1 = _segmentation(scene, "A seg", reference=v1)
    b, sb = _volume(scene, "B", seed=2), None
    sb = _segmentation(scene, "B seg", reference=b)
    case_list.add_case(node, [v1, v2], s1)
    case_list.add_case(node, [b], sb)
    with pytest.raises(ValueError, match="already in the list"):
        case_list.add_case(node, [b], sb)
    with pytest.raises(ValueError, match="Select a volume"):
        case_list.add_case(node, [None], sb)
    cases = case_list.list_cases(node)
    assert [c.cells() for c in cases] == [["A, A_T2", "A seg", "organ"], ["B", "B seg", "organ"]]
    assert len(case_list.case_pairs(node)) == 2
    # the scene is saved and loaded again: same cases, nodes resolved by the new scene
    path = tmp_path / "scene.mrml"
    scene.SetURL(str(path))
    assert scene.Commit()
    again = slicer.vtkMRMLScene()
    again.SetURL(str(path))
    assert again.Connect()
    reloaded = case_list.list_cases(again.GetFirstNodeByName("NNSeg"))
    assert [c.cells()[:2] for c in reloaded] == [["A, A_T2", "A seg"], ["B", "B seg"]]
    assert reloaded[0].volumes[1].GetScene() is again


def test_deleted_nodes_leave_their_case_incomplete_without_shifting_others(scene):
    node = _param(scene)
    cases = []
    for i in range(3):
        v = _volume(scene, f"V{i}", seed=i)
        cases.append(case_list.add_case(node, [v], _segmentation(scene, f"S{i}", reference=v)))
    scene.RemoveNode(cases[1].volumes[0])
    listed = case_list.list_cases(node)
    assert [c.complete for c in listed] == [True, False, True]
    assert listed[1].cells()[:2] == ["(deleted)", "S1"]
    assert [p[1].GetName() for p in case_list.case_pairs(node)] == ["S0", "S2"]
    case_list.remove_cases(node, [1])
    assert [c.segmentation.GetName() for c in case_list.list_cases(node)] == ["S0", "S2"]
    assert node.GetNodeReference("NNSegCase2Segmentation") is None  # its references are gone
    case_list.clear_cases(node)
    assert case_list.list_cases(node) == [] and node.GetNodeReference(
        "NNSegCase1Segmentation") is None


def test_add_all_pairs_each_segmentation_with_its_reference_volume(scene):
    node = _param(scene)
    other = Geometry((5, 6, 7), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    a = _volume(scene, "A")
    _segmentation(scene, "A seg", reference=a)                       # node reference
    lone = _volume(scene, "Lone", other)
    seg_geo = _segmentation(scene, "Lone seg", other)                 # same geometry only
    seg_geo.SetReferenceImageGeometryParameterFromVolumeNode(lone)
    seg_geo.RemoveNodeReferenceIDs(seg_geo.GetReferenceImageGeometryReferenceRole())
    _segmentation(scene, "Prediction", reference=a, model="Dataset001")  # NNSeg's own
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Empty")
    assert empty.GetSegmentation().GetNumberOfSegments() == 0
    added, skipped = case_list.add_all_cases(scene, node)
    assert [(c.volumes[0].GetName(), c.segmentation.GetName()) for c in added] == [
        ("A", "A seg"), ("Lone", "Lone seg")]
    assert any(s.startswith("Prediction: made by NNSeg") for s in skipped)
    assert "Empty: no segments" in skipped
    assert case_list.add_all_cases(scene, node) == ([], skipped)  # listed ones are skipped


def test_two_volumes_with_the_same_geometry_are_told_apart_by_the_study(scene):
    node = _param(scene)
    t1, t2 = _volume(scene, "T1"), _volume(scene, "T2", seed=5)
    seg = _segmentation(scene, "lesions")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(t1)
    seg.RemoveNodeReferenceIDs(seg.GetReferenceImageGeometryReferenceRole())
    volume, reason = case_list.reference_volume(scene, seg)
    assert volume is None and "2 volumes share its geometry" in reason
    sh = scene.GetSubjectHierarchyNode()
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "P")
    study, other = sh.CreateStudyItem(patient, "S1"), sh.CreateStudyItem(patient, "S2")
    sh.CreateItem(study, t2)
    sh.CreateItem(other, t1)
    sh.CreateItem(study, seg)
    volume, reason = case_list.reference_volume(scene, seg)
    assert volume is t2 and reason == "same study and geometry"
    assert case_list.same_geometry(seg, t1) and case_list.same_geometry(seg, t2)
    assert [c.volumes[0].GetName() for c in case_list.add_all_cases(scene, node)[0]] == ["T2"]
