"""NNSegLib.mrml against real MRML (slicer-core, headless)."""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from NNSegLib import mrml  # noqa: E402
from NNSegLib.errors import NNSegError  # noqa: E402
from NNSegLib.io import Geometry, SimpleITKIO  # noqa: E402
from NNSegLib.terminology import TABLE  # noqa: E402

pytestmark = pytest.mark.slicer


def rotation(ax: float, az: float) -> np.ndarray:
    """A proper rotation: about x by ``ax`` then about z by ``az`` (radians)."""
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


# Rotated, anisotropic, non-zero origin; spacing in numpy order (z, y, x).
GEO = Geometry(
    shape=(7, 9, 11),
    spacing=(3.0, 0.7, 0.9),
    origin=(10.5, -20.25, 33.0),
    direction=tuple(rotation(0.3, -0.5).ravel()),
)


@pytest.fixture(scope="module")
def ctx():
    return mrml.new_scene()


def image_array(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(100, 20, GEO.shape).astype(np.float32)


def label_array() -> np.ndarray:
    labels = np.zeros(GEO.shape, np.uint8)
    labels[1:4, 2:5, 3:7] = 1
    labels[4:6, 5:8, 1:4] = 3
    labels[2, 7, 9] = 7
    return labels


def assert_geometry_close(a: Geometry, b: Geometry, tol: float = 1e-6) -> None:
    assert tuple(a.shape) == tuple(b.shape)
    np.testing.assert_allclose(a.spacing, b.spacing, atol=tol)
    np.testing.assert_allclose(a.origin, b.origin, atol=tol)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol)


NAMES = {0: "background", 1: "Liver", 3: "lesion core", 7: "Anterior"}
COLOURS = {1: (0.8, 0.1, 0.1), 3: (0.1, 0.8, 0.1), 7: (0.1, 0.1, 0.8)}


# ---------------------------------------------------------------------------- geometry
def test_ijk_to_ras_matches_lps_flip():
    m = mrml.ijk_to_ras(GEO)
    d = np.asarray(GEO.direction).reshape(3, 3)
    np.testing.assert_allclose(m[:3, 3], [-10.5, 20.25, 33.0])
    np.testing.assert_allclose(m[:3, 0], np.diag([-1, -1, 1]) @ d[:, 0] * 0.9)
    np.testing.assert_allclose(m[:3, 2], np.diag([-1, -1, 1]) @ d[:, 2] * 3.0)
    assert_geometry_close(mrml.geometry_from_ijk_to_ras(m, GEO.shape), GEO, 1e-12)


def test_volume_round_trip_exact(ctx):
    array = image_array()
    node = mrml.volume_node_from_array(ctx.scene, array, GEO, "img")
    np.testing.assert_allclose(node.GetSpacing(), (0.9, 0.7, 3.0), atol=1e-12)
    np.testing.assert_allclose(node.GetOrigin(), (-10.5, 20.25, 33.0), atol=1e-12)
    back, geo = mrml.array_from_volume_node(node)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, array)
    assert_geometry_close(geo, GEO, 1e-9)


@pytest.mark.parametrize("ending", [".nrrd", ".nii.gz"])
def test_slicer_written_file_reads_identically_in_simpleitk(ctx, tmp_path, ending):
    array = image_array(1)
    node = mrml.volume_node_from_array(ctx.scene, array, GEO, "to_file")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    path = tmp_path / f"slicer{ending}"
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    sitk_array, sitk_geo = SimpleITKIO().read(path)
    np.testing.assert_array_equal(sitk_array, array)
    assert_geometry_close(sitk_geo, GEO, 1e-5)  # NIfTI stores float32 geometry
    # and the other way round: a SimpleITK file read by Slicer's storage node
    path2 = tmp_path / f"sitk{ending}"
    SimpleITKIO().write(array, GEO, path2)
    node2 = ctx.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "from_sitk")
    storage2 = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage2.SetFileName(str(path2))
    assert storage2.ReadData(node2)
    back, geo = mrml.array_from_volume_node(node2)
    np.testing.assert_array_equal(back, array)
    assert_geometry_close(geo, GEO, 1e-5)


def test_linear_parent_transform_is_applied_and_warp_refused(ctx):
    node = mrml.volume_node_from_array(ctx.scene, image_array(), GEO, "moved")
    transform = ctx.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -2.0, 1.5]  # RAS mm
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    geo = mrml.geometry_from_volume_node(node)
    np.testing.assert_allclose(geo.origin, np.array(GEO.origin) + [-5.0, 2.0, 1.5], atol=1e-9)
    np.testing.assert_allclose(geo.direction, GEO.direction, atol=1e-12)
    warp = ctx.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(NNSegError, match="moved.*non-linear"):
        mrml.geometry_from_volume_node(node)


# ------------------------------------------------------------------- labels ⇄ segments
def test_labels_to_segments_and_back(ctx):
    labels = label_array()
    ref = mrml.volume_node_from_array(ctx.scene, image_array(), GEO, "ref")
    seg = mrml.segmentation_from_labels(
        ctx.scene, labels, GEO, NAMES, COLOURS, reference_volume=ref,
        model_info={"name": "TinyModel", "version": "0.1.0"})
    segmentation = seg.GetSegmentation()
    assert mrml.segment_names(seg) == ["Liver", "lesion core", "Anterior"]
    for i, value in enumerate([1, 3, 7]):
        s = segmentation.GetNthSegment(i)
        assert s.GetLabelValue() == value
        np.testing.assert_allclose(s.GetColor(), COLOURS[value])
        assert not s.GetNameAutoGenerated() and not s.GetColorAutoGenerated()
        assert mrml.segment_tag(s, mrml.TAG_LABEL_VALUE) == str(value)
        assert mrml.segment_tag(s, mrml.TAG_MODEL) == "TinyModel"
        assert mrml.segment_tag(s, mrml.TAG_MODEL_VERSION) == "0.1.0"
    liver = segmentation.GetNthSegment(0)
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(
        liver.GetTerminology(), entry)
    assert entry.GetTypeObject().GetCodeValue() == TABLE["liver"].type[1] == "10200004"
    assert entry.GetCategoryObject().GetCodeValue() == "123037004"
    # "lesion core" / "Anterior" are not in the table: no terminology type
    assert "10200004" not in (segmentation.GetNthSegment(2).GetTerminology() or "")
    assert seg.GetAttribute(mrml.TAG_MODEL) == "TinyModel"
    # reference geometry is the input volume's
    assert seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()) is ref
    # temporary nodes were removed
    assert ctx.scene.GetFirstNodeByName("NNSegLabelmap") is None
    back, geo = mrml.labels_from_segmentation(
        ctx.scene, seg, {"Liver": 1, "lesion core": 3, "Anterior": 7}, reference_volume=ref)
    np.testing.assert_array_equal(back, labels)
    assert_geometry_close(geo, GEO, 1e-9)
    # and with other values (a renumbering is honoured)
    back2, _ = mrml.labels_from_segmentation(
        ctx.scene, seg, {"liver": 2, "ANTERIOR": 5}, reference_volume=ref)
    expected = np.where(labels == 1, 2, np.where(labels == 7, 5, 0))
    np.testing.assert_array_equal(back2, expected)


def test_empty_labels_become_empty_segments_and_node_is_reused(ctx):
    labels = np.zeros(GEO.shape, np.uint8)
    labels[0, 0, 0] = 2
    names = {0: "background", 1: "spleen", 2: "kidney_left"}
    seg = mrml.segmentation_from_labels(ctx.scene, labels, GEO, names)
    assert mrml.segment_names(seg) == ["spleen", "kidney_left"]
    kidney = seg.GetSegmentation().GetNthSegment(1)
    assert "64033007" in kidney.GetTerminology() and "7771000" in kidney.GetTerminology()
    # colours are distinct
    c = [tuple(seg.GetSegmentation().GetNthSegment(i).GetColor()) for i in range(2)]
    assert c[0] != c[1]
    # reuse: segments are replaced, not appended
    seg2 = mrml.segmentation_from_labels(ctx.scene, label_array(), GEO, NAMES, node=seg)
    assert seg2 is seg and mrml.segment_names(seg) == ["Liver", "lesion core", "Anterior"]
    with pytest.raises(NNSegError, match="label values \\[2\\]"):
        mrml.segmentation_from_labels(ctx.scene, labels, GEO, {0: "bg", 1: "a"})


def test_seg_nrrd_round_trip(ctx, tmp_path):
    labels = label_array()
    ref = mrml.volume_node_from_array(ctx.scene, image_array(), GEO, "ref2")
    seg = mrml.segmentation_from_labels(ctx.scene, labels, GEO, NAMES, COLOURS,
                                        reference_volume=ref,
                                        model_info={"name": "M", "version": "3"})
    path = mrml.write_segmentation(seg, tmp_path / "result.seg.nrrd")
    assert path.is_file() and not list(tmp_path.glob(".*"))  # no temporary left over
    loaded = mrml.read_segmentation(ctx.scene, path)
    assert loaded.GetName() == "result"
    assert mrml.segment_names(loaded) == ["Liver", "lesion core", "Anterior"]
    for i, value in enumerate([1, 3, 7]):
        s = loaded.GetSegmentation().GetNthSegment(i)
        np.testing.assert_allclose(s.GetColor(), COLOURS[value], atol=1e-6)
        assert mrml.segment_tag(s, mrml.TAG_LABEL_VALUE) == str(value)
        assert mrml.segment_tag(s, mrml.TAG_MODEL) == "M"
    back, geo = mrml.labels_from_segmentation(
        ctx.scene, loaded, {"Liver": 1, "lesion core": 3, "Anterior": 7}, reference_volume=ref)
    np.testing.assert_array_equal(back, labels)
    assert_geometry_close(geo, GEO, 1e-6)
    with pytest.raises(NNSegError, match="missing.seg.nrrd"):
        mrml.read_segmentation(ctx.scene, tmp_path / "missing.seg.nrrd")


# ------------------------------------------------------------------------ training data
def _case(ctx, seed: int, names: list[str], channels: int = 1, name: str = "case"):
    rng = np.random.default_rng(seed)
    vols = [mrml.volume_node_from_array(
        ctx.scene, rng.normal(0, 1, GEO.shape).astype(np.float32) + 10 * c, GEO,
        f"{name}_ch{c}") for c in range(channels)]
    labels = np.zeros(GEO.shape, np.uint8)
    for k in range(len(names)):
        labels[k + 1: k + 3, 2:6, 2 + 2 * k: 4 + 2 * k] = k + 1
    seg = mrml.segmentation_from_labels(
        ctx.scene, labels, GEO, {0: "bg", **{k + 1: n for k, n in enumerate(names)}},
        reference_volume=vols[0], name=name)
    return vols, seg, labels


def test_collect_unifies_names_across_cases(ctx):
    a = _case(ctx, 1, ["Liver", "tumor"], name="A")
    b = _case(ctx, 2, ["tumor", "liver ", "cyst"], name="B")
    ts = mrml.collect_training_pairs(ctx.scene, [(a[0], a[1]), (b[0], b[1])])
    assert ts.ok, ts.problems
    assert ts.labels == {"background": 0, "Liver": 1, "tumor": 2, "cyst": 3}
    assert any("'liver '" in w and "'Liver'" in w for w in ts.warnings)
    assert any("'A'" in w and "cyst" in w for w in ts.warnings)
    assert [p.name for p in ts.pairs] == ["A", "B"]
    # fixed label list: an unknown name is a problem naming it
    ts2 = mrml.collect_training_pairs(ctx.scene, [(a[0], a[1]), (b[0], b[1])],
                                      {"background": 0, "liver": 1, "tumor": 2})
    assert not ts2.ok and any("'cyst'" in p for p in ts2.problems)


def test_collect_reports_duplicates_channels_and_geometry(ctx):
    a = _case(ctx, 3, ["x", "X"], name="dup")
    b = _case(ctx, 4, ["x"], channels=2, name="two")
    odd = mrml.volume_node_from_array(
        ctx.scene, np.zeros((7, 9, 10), np.float32),
        Geometry((7, 9, 10), GEO.spacing, GEO.origin, GEO.direction), "odd")
    ts = mrml.collect_training_pairs(
        ctx.scene, [(a[0], a[1]), (b[0], b[1]), ([b[0][0], odd], b[1])])
    text = "\n".join(ts.problems)
    assert "two segments named 'X'" in text
    assert "different numbers of channels: [1, 2]" in text
    assert "'odd'" in text and "shape" in text
    assert mrml.collect_training_pairs(ctx.scene, [([None], a[1])]).problems == [
        "case 1: missing volume or segmentation node"]


def test_export_dataset_equals_scene(ctx, tmp_path):
    a = _case(ctx, 5, ["Liver", "tumor"], channels=2, name="Patient 1")
    b = _case(ctx, 6, ["tumor"], channels=2, name="Patient 2")
    out = mrml.export_dataset(ctx.scene, [(a[0], a[1]), (b[0], b[1])],
                              tmp_path / "Dataset010_Scene", ["CT", "PET"])
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "Liver": 1, "tumor": 2}
    assert meta["channel_names"] == {"0": "CT", "1": "PET"}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    io = SimpleITKIO()
    for (vols, _seg, labels), case in ((a, "Patient_1"), (b, "Patient_2")):
        for c, v in enumerate(vols):
            arr, geo = io.read(out / "imagesTr" / f"{case}_{c:04d}.nii.gz")
            expected, _ = mrml.array_from_volume_node(v)
            np.testing.assert_array_equal(arr, expected)
            assert_geometry_close(geo, GEO, 1e-5)
        lab, geo = io.read(out / "labelsTr" / f"{case}.nii.gz")
        assert_geometry_close(geo, GEO, 1e-5)
        if case == "Patient_1":
            np.testing.assert_array_equal(lab, labels)  # Liver 1, tumor 2
        else:
            np.testing.assert_array_equal(lab, np.where(labels == 1, 2, 0))  # tumor → 2
    from NNSegLib.dataset import list_cases, load_dataset_json

    spec = load_dataset_json(out)
    cases = list_cases(spec)
    assert [c.identifier for c in cases] == ["Patient_1", "Patient_2"]
    assert all(len(c.images) == 2 and c.label is not None for c in cases)
    from NNSegLib.check import check_dataset

    report = check_dataset(out, workers=1)
    assert report.ok and not report.warnings, report.format()
    assert report.num_training == 2
    with pytest.raises(NNSegError, match="1 channel names given for 2 volumes"):
        mrml.export_dataset(ctx.scene, [(a[0], a[1])], tmp_path / "bad", ["CT"])


# --------------------------------------------------------------------------- prediction
def test_uncertainty_from_probabilities():
    p = np.zeros((2, 1, 1, 3))
    p[:, 0, 0, 0] = [1.0, 0.0]
    p[:, 0, 0, 1] = [0.5, 0.5]
    p[:, 0, 0, 2] = [0.9, 0.1]
    u = mrml.uncertainty_from_probabilities(p)
    h = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)) / np.log(2)
    np.testing.assert_allclose(u[0, 0], [0.0, 1.0, h], atol=1e-6)


def test_predict_volumes_with_stub_predictor(ctx):
    vols, _seg, _ = _case(ctx, 7, ["a"], channels=2, name="pred_in")
    seen = {}

    def predictor(images, geometry):
        seen["shape"], seen["geometry"] = images.shape, geometry
        labels = (images[0] > 0).astype(np.uint8) + (images[1] > 10.5).astype(np.uint8)
        probs = np.stack([labels == k for k in range(3)]).astype(np.float32)
        return labels, probs

    seg, unc = mrml.predict_volumes(ctx.scene, vols, predictor,
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
    network = pytest.importorskip("NNSegLib.network", reason="NNSegLib.network not written yet")
    torch = pytest.importorskip("torch")
    from NNSegLib.plans import ConfigurationPlan

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
    seg, unc = mrml.predict_volumes(ctx.scene, vols, predictor,
                                    {0: "background", 1: "one", 2: "two"}, uncertainty=True)
    labels, probs = predictor(mrml.array_from_volume_node(vols[0])[0][None], GEO)
    back, _ = mrml.labels_from_segmentation(ctx.scene, seg, {"one": 1, "two": 2},
                                            reference_volume=vols[0])
    np.testing.assert_array_equal(back, labels)
    u, _ = mrml.array_from_volume_node(unc)
    np.testing.assert_allclose(u, mrml.uncertainty_from_probabilities(probs), atol=1e-6)


def test_training_chart_table_and_series(ctx):
    records = [
        {"epoch": 1, "train_loss": 0.8, "val_loss": 0.9, "mean_pseudo_dice": 0.2,
         "ema_pseudo_dice": 0.1},
        {"epoch": 0, "train_loss": 1.0, "val_loss": None, "mean_pseudo_dice": None,
         "ema_pseudo_dice": None},
    ]
    chart = mrml.training_chart(ctx.scene, records)
    table = ctx.scene.GetNodeByID(chart.GetAttribute("NNSeg.Table")).GetTable()
    assert table.GetNumberOfRows() == 2
    assert [table.GetValueByName(i, "epoch").ToDouble() for i in range(2)] == [0.0, 1.0]
    assert table.GetValueByName(1, "train_loss").ToDouble() == pytest.approx(0.8)
    assert np.isnan(table.GetValueByName(0, "val_loss").ToDouble())
    assert chart.GetNumberOfPlotSeriesNodes() == len(mrml.CHART_SERIES)
    # a second call with one more epoch reuses the nodes
    n_nodes = ctx.scene.GetNumberOfNodes()
    chart2 = mrml.training_chart(ctx.scene, records + [{"epoch": 2, "train_loss": 0.5}], chart)
    assert chart2 is chart and ctx.scene.GetNumberOfNodes() == n_nodes
    assert table.GetNumberOfRows() == 3
    assert table.GetValueByName(2, "train_loss").ToDouble() == pytest.approx(0.5)
