"""NNSegLib.data.add_case and .seg_nrrd: a corrected case goes into a dataset, checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_dataset

from NNSegLib.data.add_case import (
    PROVENANCE,
    add_case,
    add_case_files,
    free_case_name,
    read_provenance,
)
from NNSegLib.data.check import check_dataset
from NNSegLib.data.io import Geometry, ImageReadError, SimpleITKIO
from NNSegLib.data.seg_nrrd import read_seg_nrrd, segment_label_names
from NNSegLib.util.errors import NNSegError

GEO = Geometry((8, 10, 12), (2.0, 1.0, 1.0), (1.0, -2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 10, GEO.shape).astype(np.float32)
    labels = np.zeros(GEO.shape, np.uint8)
    labels[2:5, 3:6, 3:7] = 5      # "class2" in the source's numbering
    labels[5:7, 1:3, 6:9] = 9      # "CLASS1 " (case and spaces ignored)
    return image, labels


def _dataset(tmp_path):
    return write_dataset(tmp_path / "Dataset001_Add", num_cases=2, shape=(8, 10, 12))


def test_add_maps_names_to_values_and_records_provenance(tmp_path):
    ds = _dataset(tmp_path)
    image, labels = _arrays()
    added = add_case(ds, "new_case", [image], [GEO], labels, GEO,
                     {0: "bg", 5: "class2", 9: "CLASS1 "},
                     provenance={"origin": "corrected_prediction", "model": {"version": "v1"}})
    assert added.label_values == {0: 0, 5: 2, 9: 1} and not added.replaced
    assert added.num_training == 3
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 3
    written, geo = SimpleITKIO().read(ds / "labelsTr" / "new_case.nii.gz")
    np.testing.assert_array_equal(written, np.where(labels == 5, 2, np.where(labels == 9, 1, 0)))
    assert geo.mismatch(GEO) is None
    img, _ = SimpleITKIO().read(ds / "imagesTr" / "new_case_0000.nii.gz")
    np.testing.assert_array_equal(img, image)
    record = read_provenance(ds)["cases"]["new_case"]
    assert record["origin"] == "corrected_prediction" and record["replaced"] is False
    assert record["model"] == {"version": "v1"} and record["label_values"] == {"5": 2, "9": 1}
    report = check_dataset(ds, workers=1)
    assert report.ok and report.num_training == 3 and not report.warnings
    assert not [p for p in ds.iterdir() if p.name.startswith(".nnseg_add")]


def test_unknown_names_wrong_channels_and_bad_names_write_nothing(tmp_path):
    ds = _dataset(tmp_path)
    before = sorted(p.name for p in ds.rglob("*"))
    image, labels = _arrays()
    with pytest.raises(NNSegError, match=r"'tumour' \(value 9\).*class1"):
        add_case(ds, "x", [image], [GEO], labels, GEO, {5: "class2", 9: "tumour"})
    with pytest.raises(NNSegError, match="value.*\\[9\\] have no name"):
        add_case(ds, "x", [image], [GEO], labels, GEO, {5: "class2"})
    with pytest.raises(NNSegError, match="2 image channel.*has 1"):
        add_case(ds, "x", [image, image], [GEO, GEO], labels, GEO, {5: "class2", 9: "class1"})
    for bad in ("", "a/b", "case_0001", "-x"):
        with pytest.raises(NNSegError, match="case name"):
            add_case(ds, bad, [image], [GEO], labels, GEO, {5: "class2", 9: "class1"})
    assert sorted(p.name for p in ds.rglob("*")) == before


def test_check_errors_refuse_the_case(tmp_path):
    ds = _dataset(tmp_path)
    image, labels = _arrays()
    shifted = Geometry(GEO.shape, GEO.spacing, (9.0, -2.0, 3.0), GEO.direction)
    with pytest.raises(NNSegError, match="(?s)not added.*geometry differs.*origin"):
        add_case(ds, "moved", [image], [GEO], labels, shifted, {5: "class2", 9: "class1"})
    image[1, 1, 1] = np.nan
    with pytest.raises(NNSegError, match="NaN"):
        add_case(ds, "nan", [image], [GEO], labels, GEO, {5: "class2", 9: "class1"})
    assert not (ds / "labelsTr" / "moved.nii.gz").exists()
    assert not (ds / "imagesTr" / "nan_0000.nii.gz").exists()
    assert not (ds / PROVENANCE).exists()
    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 2


def test_existing_case_needs_replace(tmp_path):
    ds = _dataset(tmp_path)
    image, labels = _arrays()
    names = {5: "class2", 9: "class1"}
    with pytest.raises(NNSegError, match="case_000.*already exists.*--replace"):
        add_case(ds, "case_000", [image], [GEO], labels, GEO, names)
    added = add_case(ds, "case_000", [image], [GEO], labels, GEO, names, replace=True)
    assert added.replaced and added.num_training == 2
    assert read_provenance(ds)["cases"]["case_000"]["replaced"] is True
    assert free_case_name(ds, "case 000") == "case_000_2"
    assert free_case_name(ds, "scan_0001") == "scan_0001x"
    assert check_dataset(ds, workers=1).ok


def _seg_nrrd(path, labels, segments, layers=None):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(labels.astype(np.int16))
    image.SetSpacing(tuple(reversed(GEO.spacing)))
    image.SetOrigin(GEO.origin)
    for i, (value, name) in enumerate(segments.items()):
        image.SetMetaData(f"Segment{i}_ID", f"S{i}")
        image.SetMetaData(f"Segment{i}_Name", name)
        image.SetMetaData(f"Segment{i}_LabelValue", str(value))
        image.SetMetaData(f"Segment{i}_Layer", str(layers[i] if layers else 0))
    sitk.WriteImage(image, str(path))
    return path


def test_seg_nrrd_names_and_add_from_files(tmp_path):
    ds = _dataset(tmp_path)
    image, labels = _arrays()
    seg = _seg_nrrd(tmp_path / "fixed.seg.nrrd", labels, {5: "class2", 9: "class1"})
    back, geo, names = read_seg_nrrd(seg)
    np.testing.assert_array_equal(back, labels)
    assert names == {5: "class2", 9: "class1"} and geo.mismatch(GEO) is None
    SimpleITKIO().write(image, GEO, tmp_path / "fixed_0000.nii.gz")
    added = add_case_files(ds, "fixed", [tmp_path / "fixed_0000.nii.gz"], seg,
                           provenance={"origin": "corrected_prediction"})
    assert added.label_values == {0: 0, 5: 2, 9: 1}
    record = read_provenance(ds)["cases"]["fixed"]
    assert record["source_label"].endswith("fixed.seg.nrrd")
    with pytest.raises(ImageReadError, match="overlap"):
        segment_label_names({"Segment0_Name": "a", "Segment0_Layer": "0",
                             "Segment1_Name": "b", "Segment1_Layer": "1"})
    with pytest.raises(ImageReadError, match="belong to no segment"):
        read_seg_nrrd(_seg_nrrd(tmp_path / "bad.seg.nrrd", labels, {5: "class2"}))


def test_cli_add_case(tmp_path, capsys):
    from NNSegLib.cli import main

    ds = _dataset(tmp_path)
    image, labels = _arrays()
    SimpleITKIO().write(image, GEO, tmp_path / "img.nii.gz")
    SimpleITKIO().write(np.where(labels > 0, 1, 0).astype(np.uint8), GEO, tmp_path / "lab.nii.gz")
    assert main(["add-case", str(ds), "--images", str(tmp_path / "img.nii.gz"), "--label",
                 str(tmp_path / "lab.nii.gz"), "--name", "cli_case", "--quiet"]) == 0
    assert "cli_case: added" in capsys.readouterr().out
    assert main(["add-case", str(ds), "--images", str(tmp_path / "img.nii.gz"), "--label",
                 str(tmp_path / "lab.nii.gz"), "--name", "cli_case", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
