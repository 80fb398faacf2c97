"""Tests of NNSegLib.data.check: one small broken dataset per kind of problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_dataset, write_image

from NNSegLib.cli import main
from NNSegLib.data.check import CheckReport, Problem, check_case, check_dataset, scan_layout
from NNSegLib.data.dataset import load_dataset_json
from NNSegLib.util.errors import NNSegError

SHAPE = (10, 14, 14)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """Three clean 3-class cases."""
    return write_dataset(tmp_path / "Dataset010_Small", num_cases=3, shape=SHAPE, seed=1)


@pytest.fixture
def two_channel(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "Dataset011_Two", num_cases=3, shape=SHAPE, seed=2,
                         channel_names={"0": "T1", "1": "T2"})


def _errors(report: CheckReport) -> list[tuple[str, str]]:
    return [(Path(p.path).name, p.message) for p in report.errors]


def _only_error(report: CheckReport, name: str, fragment: str) -> Problem:
    assert not report.ok
    assert len(report.errors) == 1, report.format()
    problem = report.errors[0]
    assert Path(problem.path).name == name, report.format()
    assert fragment in problem.message, report.format()
    return problem


def _label(root: Path, case: str = "case_001") -> Path:
    return root / "labelsTr" / f"{case}.nii.gz"


def _image(root: Path, case: str = "case_001", channel: int = 0) -> Path:
    return root / "imagesTr" / f"{case}_{channel:04d}.nii.gz"


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_clean_dataset_passes(small: Path) -> None:
    report = check_dataset(small, workers=1)
    assert report.ok and report.problems == ()
    assert (report.num_training, report.num_test) == (3, 0)
    report.raise_if_errors()
    assert "OK" in report.format().splitlines()[-1]


def test_missing_channel(two_channel: Path) -> None:
    _image(two_channel, channel=1).unlink()
    _only_error(check_dataset(two_channel, workers=1), "case_001_0001.nii.gz",
                "missing channel file")


def test_undeclared_channel(small: Path) -> None:
    shutil.copy(_image(small), _image(small, channel=1))
    _only_error(check_dataset(small, workers=1), "case_001_0001.nii.gz", "not declared")


def test_label_without_image(small: Path) -> None:
    _image(small).unlink()
    _only_error(check_dataset(small, workers=1), "case_001.nii.gz", "label without image")


def test_image_without_label(small: Path) -> None:
    _label(small).unlink()
    _only_error(check_dataset(small, workers=1), "case_001.nii.gz", "missing label")


@pytest.mark.parametrize("change, fragment", [
    ({"shape": (10, 14, 13)}, "shape (10, 14, 13)"),
    ({"spacing": (2.0, 1.0, 1.5)}, "spacing (2, 1, 1.5)"),
    ({"origin": (0.0, 5.0, 0.0)}, "origin (0, 5, 0)"),
    ({"direction": (0, 1, 0, 1, 0, 0, 0, 0, 1)}, "direction"),
])
def test_label_geometry_mismatch(small: Path, change: dict, fragment: str) -> None:
    image = _read(_image(small))
    shape = change.get("shape", image.shape)
    label = np.zeros(shape, np.uint8)
    write_image(_label(small), label, spacing=change.get("spacing", (2.0, 1.0, 1.0)),
                origin=change.get("origin", (0, 0, 0)),
                direction=change.get("direction", (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    problem = _only_error(check_dataset(small, workers=1), "case_001.nii.gz", fragment)
    assert "differs from the image" in problem.message


def test_channel_geometry_mismatch(two_channel: Path) -> None:
    image = _read(_image(two_channel, channel=1))
    write_image(_image(two_channel, channel=1), image, spacing=(2.0, 1.0, 1.0),
                origin=(0.0, 0.0, 3.0))
    problem = _only_error(check_dataset(two_channel, workers=1), "case_001_0001.nii.gz",
                          "origin (0, 0, 3)")
    assert "case_001_0000.nii.gz" in problem.message


def test_undeclared_label_value(small: Path) -> None:
    label = _read(_label(small))
    label[0, 0, 0] = 5
    write_image(_label(small), label, spacing=(2.0, 1.0, 1.0))
    problem = _only_error(check_dataset(small, workers=1), "case_001.nii.gz", "[5]")
    assert "not declared" in problem.message


def test_non_integer_label(small: Path) -> None:
    label = _read(_label(small)).astype(np.float32)
    label[1, 2, 3] = 0.5
    label[1, 2, 4] = 1.25
    write_image(_label(small), label, spacing=(2.0, 1.0, 1.0))
    _only_error(check_dataset(small, workers=1), "case_001.nii.gz",
                "2 voxel(s) with non-integer")


def test_float_label_with_integer_values_passes(small: Path) -> None:
    write_image(_label(small), _read(_label(small)).astype(np.float32), spacing=(2.0, 1.0, 1.0))
    spec = load_dataset_json(small)
    case = [c for c in scan_layout(small).training if c.identifier == "case_001"][0]
    result = check_case(case, spec, keep_arrays=True)
    assert result.ok and result.label_values == (0, 1, 2)
    assert result.label.dtype == np.uint8
    assert np.array_equal(result.label, _read(_label(small)))
    assert len(result.images) == 1 and result.images[0].shape == result.geometry.shape


@pytest.mark.parametrize("bad, fragment", [(np.nan, "1 NaN and 0 infinite"),
                                           (np.inf, "0 NaN and 1 infinite")])
def test_non_finite_image(tmp_path: Path, bad: float, fragment: str) -> None:
    # ITK's NIfTI reader turns NaN/inf into 0, so use NRRD, which keeps them.
    root = write_dataset(tmp_path / "Dataset013_Nrrd", num_cases=2, shape=SHAPE, ending=".nrrd")
    path = root / "imagesTr" / "case_001_0000.nrrd"
    image = _read(path)
    image[2, 3, 4] = bad
    write_image(path, image, spacing=(2.0, 1.0, 1.0))
    _only_error(check_dataset(root, workers=1), "case_001_0000.nrrd", fragment)


def test_vector_and_4d_images(small: Path) -> None:
    import SimpleITK as sitk

    vec = sitk.GetImageFromArray(np.zeros(SHAPE + (3,), np.float32), isVector=True)
    sitk.WriteImage(vec, str(_image(small, "case_000")))
    volume = sitk.GetImageFromArray(np.zeros(SHAPE, np.float32))
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(_image(small, "case_002")))
    errors = _errors(check_dataset(small, workers=1))
    assert len(errors) == 2
    assert errors[0][0] == "case_000_0000.nii.gz" and "vector image" in errors[0][1]
    assert errors[1][0] == "case_002_0000.nii.gz" and "4D image" in errors[1][1]


def test_zero_spacing(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "Dataset012_Mha", num_cases=2, shape=SHAPE, ending=".mha")
    path = root / "imagesTr" / "case_001_0000.mha"
    data = path.read_bytes()
    header_end = data.index(b"ElementDataFile")
    header = data[:header_end].replace(b"ElementSpacing = 1 1 2", b"ElementSpacing = 0 1 2")
    assert header != data[:header_end]
    path.write_bytes(header + data[header_end:])
    _only_error(check_dataset(root, workers=1), "case_001_0000.mha", "spacing")


def test_negative_spacing_reported(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from NNSegLib.data import check
    from NNSegLib.data.io import Geometry

    real_read = check.SimpleITKIO.read

    def read(self, path):
        array, geo = real_read(self, path)
        if path.name == "case_001_0000.nii.gz":
            geo = Geometry(geo.shape, (-2.0, 1.0, 1.0), geo.origin, geo.direction)
        return array, geo

    monkeypatch.setattr(check.SimpleITKIO, "read", read)
    errors = _errors(check_dataset(small, workers=1))
    assert ("case_001_0000.nii.gz", "spacing (-2.0, 1.0, 1.0) must be positive") in errors


def test_corrupt_file(small: Path) -> None:
    _image(small).write_bytes(b"not an image at all" * 10)
    _only_error(check_dataset(small, workers=1), "case_001_0000.nii.gz", "unreadable")


def test_empty_dataset(small: Path) -> None:
    for p in (small / "imagesTr").iterdir():
        p.unlink()
    for p in (small / "labelsTr").iterdir():
        p.unlink()
    _only_error(check_dataset(small, workers=1), "imagesTr", "empty dataset")


def test_wrong_ending_and_stray_files(small: Path) -> None:
    write_image(small / "imagesTr" / "case_009_0000.nii", np.ones(SHAPE, np.float32))
    (small / "imagesTr" / "notes.txt").write_text("hello")
    (small / "imagesTr" / ".DS_Store").write_bytes(b"\0")
    report = check_dataset(small, workers=1)
    _only_error(report, "case_009_0000.nii", "file ending '.nii'")
    assert [(Path(p.path).name, p.severity) for p in report.warnings] == [("notes.txt", "warning")]


def test_bad_case_name(small: Path) -> None:
    shutil.copy(_image(small), small / "imagesTr" / "case_001.nii.gz")
    _only_error(check_dataset(small, workers=1), "case_001.nii.gz", "4-digit channel index")


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "malformed JSON"),
    (json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}), "'labels'"),
    (json.dumps({"channel_names": {"0": "CT"}, "labels": {"a": 1}, "file_ending": ".nii.gz"}),
     "background"),
])
def test_malformed_dataset_json(small: Path, text: str, fragment: str) -> None:
    (small / "dataset.json").write_text(text)
    _only_error(check_dataset(small, workers=1), "dataset.json", fragment)


def test_num_training_mismatch_is_a_warning(small: Path) -> None:
    raw = json.loads((small / "dataset.json").read_text())
    (small / "dataset.json").write_text(json.dumps({**raw, "numTraining": 7}))
    report = check_dataset(small, workers=1)
    assert report.ok
    assert [p.message for p in report.warnings] == ["numTraining is 7 but imagesTr has 3 cases"]


def test_test_images_are_checked(small: Path) -> None:
    (small / "imagesTs").mkdir()
    image = _read(_image(small)).astype(np.float32)
    write_image(small / "imagesTs" / "test_000_0000.nii.gz", image[:, :, :-1])
    write_image(small / "imagesTs" / "test_000_0001.nii.gz", image)
    report = check_dataset(small, workers=1)
    assert report.num_test == 1
    _only_error(report, "test_000_0001.nii.gz", "not declared")
    (small / "imagesTs" / "test_000_0001.nii.gz").unlink()
    (small / "labelsTs").mkdir()
    write_image(small / "labelsTs" / "test_000.nii.gz", np.zeros(image.shape, np.uint8))
    _only_error(check_dataset(small, workers=1), "test_000.nii.gz", "shape")
    assert check_dataset(small, workers=1, include_test=False).ok


def test_every_problem_at_once_in_parallel(two_channel: Path, capsys) -> None:
    _image(two_channel, "case_000", 1).unlink()
    _label(two_channel, "case_002").unlink()
    label = _read(_label(two_channel))
    label[0, 0, 0] = 9
    write_image(_label(two_channel), label, spacing=(2.0, 1.0, 1.0))
    before = sorted(p.relative_to(two_channel) for p in two_channel.rglob("*"))
    serial = check_dataset(two_channel, workers=1)
    parallel = check_dataset(two_channel, workers=2)
    assert serial == parallel
    assert sorted(name for name, _ in _errors(serial)) == [
        "case_000_0001.nii.gz", "case_001.nii.gz", "case_002.nii.gz"]
    with pytest.raises(NNSegError, match="3 error"):
        serial.raise_if_errors()
    assert main(["check", str(two_channel), "--quiet"]) == 2
    out = capsys.readouterr().out
    assert out.count("ERROR:") == 3 and "FAILED" in out
    assert sorted(p.relative_to(two_channel) for p in two_channel.rglob("*")) == before


def test_cli_exit_zero_on_clean(small: Path, capsys) -> None:
    assert main(["check", str(small), "--quiet", "--workers", "1"]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_real_hippocampus_subset_passes(hippocampus: Path, tmp_path: Path) -> None:
    root = tmp_path / "Dataset004_Hippocampus"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    cases = sorted(p.name[:-len("_0000.nii.gz")] for p in (hippocampus / "imagesTr").iterdir())
    for case in cases[:5]:
        shutil.copy(hippocampus / "imagesTr" / f"{case}_0000.nii.gz", root / "imagesTr")
        shutil.copy(hippocampus / "labelsTr" / f"{case}.nii.gz", root / "labelsTr")
    raw = json.loads((hippocampus / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**raw, "numTraining": 5}))
    report = check_dataset(root, workers=2)
    assert report.ok and report.problems == () and report.num_training == 5, report.format()
    spec = load_dataset_json(root)
    result = check_case(scan_layout(root).training[0], spec, keep_arrays=True)
    assert result.label_values == (0, 1, 2) and result.label.dtype == np.uint8


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_non_finite_values_hidden_by_the_nifti_reader(tmp_path: Path, ending: str) -> None:
    """ITK reads NaN/inf in NIfTI as 0; the check looks at the stored bytes instead."""
    root = write_dataset(tmp_path / "Dataset014_Nii", num_cases=2, shape=SHAPE, ending=ending)
    path = root / "imagesTr" / f"case_001_0000{ending}"
    image = _read(path).astype(np.float32)
    image[2, 3, 4], image[0, 0, 0], image[1, 1, 1] = np.nan, np.inf, np.nan
    write_image(path, image, spacing=(2.0, 1.0, 1.0))
    assert np.isfinite(_read(path)).all()           # what ITK hands back
    _only_error(check_dataset(root, workers=1), f"case_001_0000{ending}",
                "2 NaN and 1 infinite voxel value(s) stored in the file")
    label_path = root / "labelsTr" / f"case_000{ending}"
    label = _read(label_path).astype(np.float64)
    label[1, 2, 3] = np.nan
    write_image(label_path, label, spacing=(2.0, 1.0, 1.0))
    errors = _errors(check_dataset(root, workers=1))
    assert (f"case_000{ending}", "label map holds NaN or infinite values") in [
        (name, msg) for name, msg in errors]


def test_nifti_non_finite_counts_only_float_nifti(tmp_path: Path) -> None:
    from NNSegLib.data.io import nifti_non_finite

    values = np.zeros((3, 4, 5), np.float64)
    values[0, 1, 2] = np.nan
    values[2, 3, 4] = -np.inf
    assert nifti_non_finite(write_image(tmp_path / "a.nii.gz", values)) == (1, 1)
    assert nifti_non_finite(write_image(tmp_path / "b.nii.gz",
                                        np.zeros((3, 4, 5), np.int16))) == (0, 0)
    assert nifti_non_finite(write_image(tmp_path / "c.nrrd", values)) == (0, 0)  # not NIfTI
    big = np.zeros((9, 10, 11), np.float32)
    big[::2, ::3, ::4] = np.nan
    path = write_image(tmp_path / "d.nii", big)
    assert nifti_non_finite(path, chunk_bytes=64) == (int(np.isnan(big).sum()), 0)
