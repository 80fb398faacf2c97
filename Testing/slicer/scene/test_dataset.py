"""NNSegLib.slicer.scene.dataset against real MRML (slicer-core, headless)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from test_ras_geometry import GEO, assert_geometry_close  # noqa: E402

from NNSegLib.data.io import Geometry, SimpleITKIO  # noqa: E402
from NNSegLib.slicer.scene import dataset as scene_dataset  # noqa: E402
from NNSegLib.slicer.scene import mrml  # noqa: E402
from NNSegLib.util.errors import NNSegError  # noqa: E402

pytestmark = pytest.mark.slicer


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
    ts = scene_dataset.collect_training_pairs(ctx.scene, [(a[0], a[1]), (b[0], b[1])])
    assert ts.ok, ts.problems
    assert ts.labels == {"background": 0, "Liver": 1, "tumor": 2, "cyst": 3}
    assert any("'liver '" in w and "'Liver'" in w for w in ts.warnings)
    assert any("'A'" in w and "cyst" in w for w in ts.warnings)
    assert [p.name for p in ts.pairs] == ["A", "B"]
    # fixed label list: an unknown name is a problem naming it
    ts2 = scene_dataset.collect_training_pairs(ctx.scene, [(a[0], a[1]), (b[0], b[1])],
                                               {"background": 0, "liver": 1, "tumor": 2})
    assert not ts2.ok and any("'cyst'" in p for p in ts2.problems)


def test_collect_reports_duplicates_channels_and_geometry(ctx):
    a = _case(ctx, 3, ["x", "X"], name="dup")
    b = _case(ctx, 4, ["x"], channels=2, name="two")
    odd = mrml.volume_node_from_array(
        ctx.scene, np.zeros((7, 9, 10), np.float32),
        Geometry((7, 9, 10), GEO.spacing, GEO.origin, GEO.direction), "odd")
    ts = scene_dataset.collect_training_pairs(
        ctx.scene, [(a[0], a[1]), (b[0], b[1]), ([b[0][0], odd], b[1])])
    text = "\n".join(ts.problems)
    assert "two segments named 'X'" in text
    assert "different numbers of channels: [1, 2]" in text
    assert "'odd'" in text and "shape" in text
    assert scene_dataset.collect_training_pairs(ctx.scene, [([None], a[1])]).problems == [
        "case 1: missing volume or segmentation node"]


def test_export_dataset_equals_scene(ctx, tmp_path):
    a = _case(ctx, 5, ["Liver", "tumor"], channels=2, name="Patient 1")
    b = _case(ctx, 6, ["tumor"], channels=2, name="Patient 2")
    out = scene_dataset.export_dataset(ctx.scene, [(a[0], a[1]), (b[0], b[1])],
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
    from NNSegLib.data.dataset import list_cases, load_dataset_json

    spec = load_dataset_json(out)
    cases = list_cases(spec)
    assert [c.identifier for c in cases] == ["Patient_1", "Patient_2"]
    assert all(len(c.images) == 2 and c.label is not None for c in cases)
    from NNSegLib.data.check import check_dataset

    report = check_dataset(out, workers=1)
    assert report.ok and not report.warnings, report.format()
    assert report.num_training == 2
    with pytest.raises(NNSegError, match="1 channel names given for 2 volumes"):
        scene_dataset.export_dataset(ctx.scene, [(a[0], a[1])], tmp_path / "bad", ["CT"])



def _loader(ctx):
    """A headless stand-in for ``slicer.util.loadVolume``: file → volume node (+ log)."""
    loaded = []

    def load(path: str):
        assert isinstance(path, str)
        array, geometry = SimpleITKIO().read(path)
        loaded.append(path)
        return mrml.volume_node_from_array(ctx.scene, array, geometry, f"loaded_{len(loaded)}")

    return load, loaded


def test_load_cases_from_raw_dataset_folder(ctx, tmp_path):
    a = _case(ctx, 9, ["Liver", "tumor"], channels=2, name="L1")
    b = _case(ctx, 10, ["tumor"], channels=2, name="L2")
    out = scene_dataset.export_dataset(ctx.scene, [(a[0], a[1]), (b[0], b[1])],
                                       tmp_path / "Dataset011_Load", ["CT", "PET"])
    load, loaded = _loader(ctx)
    cases = scene_dataset.load_cases_from_folder(ctx.scene, out, load)
    assert [Path(p).name for p in loaded] == [
        "L1_0000.nii.gz", "L1_0001.nii.gz", "L2_0000.nii.gz", "L2_0001.nii.gz"]
    assert [len(vols) for vols, _seg in cases] == [2, 2]
    assert [seg.GetName() for _vols, seg in cases] == ["L1 segmentation", "L2 segmentation"]
    for (vols, seg), (orig_vols, _s, labels) in zip(cases, (a, b)):
        np.testing.assert_array_equal(mrml.array_from_volume_node(vols[1])[0],
                                      mrml.array_from_volume_node(orig_vols[1])[0])
        assert mrml.segment_names(seg) == ["Liver", "tumor"]  # every label of dataset.json
        back, _ = mrml.labels_from_segmentation(ctx.scene, seg, {"Liver": 1, "tumor": 2}, vols[0])
        np.testing.assert_array_equal(back, labels if seg.GetName() == "L1 segmentation"
                                      else np.where(labels == 1, 2, 0))


def test_load_cases_from_seg_nrrd_folder(ctx, tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    expected = {}
    for name, ending, seed in (("A", ".nrrd", 11), ("B", ".nii.gz", 12)):
        vols, seg, labels = _case(ctx, seed, ["organ"], name=f"seg_{name}")
        array, geometry = mrml.array_from_volume_node(vols[0])
        SimpleITKIO().write(array, geometry, folder / f"{name}{ending}")
        mrml.write_segmentation(seg, folder / f"{name}.seg.nrrd")
        expected[name] = (array, labels)
    _v, orphan, _l = _case(ctx, 13, ["organ"], name="orphan")
    mrml.write_segmentation(orphan, folder / "C.seg.nrrd")  # no image: left out
    (folder / "AB.nrrd").write_bytes(b"")  # another case's prefix, never read
    load, loaded = _loader(ctx)
    cases = scene_dataset.load_cases_from_folder(ctx.scene, str(folder), load)
    assert [Path(p).name for p in loaded] == ["A.nrrd", "B.nii.gz"]
    assert [seg.GetName() for _vols, seg in cases] == ["A", "B"]
    for (vols, seg), name in zip(cases, "AB"):
        array, labels = expected[name]
        assert len(vols) == 1
        np.testing.assert_array_equal(mrml.array_from_volume_node(vols[0])[0], array)
        back, geo = mrml.labels_from_segmentation(ctx.scene, seg, {"organ": 1}, vols[0])
        np.testing.assert_array_equal(back, labels)
        assert_geometry_close(geo, GEO, 1e-5)
    assert scene_dataset.load_cases_from_folder(ctx.scene, tmp_path / "empty_or_missing",
                                                load) == []
