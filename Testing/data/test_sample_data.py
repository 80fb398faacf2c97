"""Tests of NNSegLib.data.sample_data: determinism, layout, geometry, intensities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from NNSegLib.cli import main
from NNSegLib.data.check import check_dataset
from NNSegLib.data.io import SimpleITKIO
from NNSegLib.data.sample_data import LABELS, generate_case, generate_sample_dataset
from NNSegLib.util.errors import NNSegError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.nii.gz"))}


@pytest.fixture(scope="module")
def mr(tmp_path_factory) -> Path:
    return generate_sample_dataset(tmp_path_factory.mktemp("s") / "Dataset900_Sample", "mr")


def test_layout_and_dataset_json(mr: Path) -> None:
    spec = json.loads((mr / "dataset.json").read_text())
    assert spec["channel_names"] == {"0": "MRI"}
    assert spec["labels"] == {"background": 0, "organ": 1, "lesion": 2, "vessel": 3}
    assert spec["numTraining"] == 20 and spec["file_ending"] == ".nii.gz"
    assert len(list((mr / "imagesTr").iterdir())) == 20
    assert len(list((mr / "labelsTr").iterdir())) == 20
    report = check_dataset(mr, workers=1)
    assert report.ok and report.problems == (), report.format()


def test_geometry_and_classes(mr: Path) -> None:
    io = SimpleITKIO()
    rotated = 0
    spacings_z = set()
    for label_path in sorted((mr / "labelsTr").iterdir()):
        label, geo = io.read(label_path)
        image, image_geo = io.read(mr / "imagesTr" / label_path.name.replace(".nii", "_0000.nii"))
        assert image_geo.mismatch(geo) is None
        assert 32 <= geo.shape[0] <= 48 and all(64 <= s <= 80 for s in geo.shape[1:])
        assert 2.5 <= geo.spacing[0] <= 4.0
        assert 0.6 <= geo.spacing[1] == geo.spacing[2] <= 0.9
        assert geo.spacing[0] / geo.spacing[1] > 2.5
        assert any(abs(o) > 1 for o in geo.origin)
        assert np.allclose(np.reshape(geo.direction, (3, 3)) @ np.reshape(geo.direction, (3, 3)).T,
                           np.eye(3), atol=1e-6)
        rotated += not np.allclose(geo.direction, np.eye(3).ravel())
        spacings_z.add(geo.spacing[0])
        counts = np.bincount(label.ravel(), minlength=4)
        assert len(counts) == 4 and (counts[1:] > 20).all(), (label_path.name, counts)
        assert image.dtype == np.float32
        # MR: zero outside the body, so cropping to nonzero shrinks the volume
        assert (image == 0).mean() > 0.1 and (image[label > 0] > 0).all()
    assert 5 <= rotated <= 8
    assert len(spacings_z) > 10


def test_mr_intensities_vary_in_scale(mr: Path) -> None:
    io = SimpleITKIO()
    organ_means = []
    for i in range(4):
        image, _ = io.read(mr / "imagesTr" / f"sample_{i:03d}_0000.nii.gz")
        label, _ = io.read(mr / "labelsTr" / f"sample_{i:03d}.nii.gz")
        means = [image[label == k].mean() for k in (1, 2, 3)]
        assert means[0] < means[1] < means[2]  # organ < lesion < vessel
        organ_means.append(means[0])
    assert max(organ_means) / min(organ_means) > 2.0


def test_same_seed_identical_files_different_seed_differs(tmp_path: Path) -> None:
    a = generate_sample_dataset(tmp_path / "a", "ct", num_cases=3, seed=5)
    b = generate_sample_dataset(tmp_path / "b", "ct", num_cases=3, seed=5)
    c = generate_sample_dataset(tmp_path / "c", "ct", num_cases=3, seed=6)
    assert _files(a) == _files(b)
    files_c = _files(c)
    assert set(files_c) == set(_files(a))
    assert all(files_c[k] != v for k, v in _files(a).items())
    # the first cases do not depend on how many are generated
    image_a, _, geo_a = generate_case(1, "ct", seed=5)
    image_2, _, geo_2 = generate_case(1, "ct", seed=5)
    assert np.array_equal(image_a, image_2) and geo_a == geo_2


def test_ct_hounsfield_units() -> None:
    image, label, geo = generate_case(0, "ct", seed=0)
    assert image.dtype == np.int16 and label.dtype == np.uint8 and image.shape == geo.shape
    corner = image[:, :3, :3]
    assert corner.mean() == pytest.approx(-1000, abs=5)
    for k, hu in ((1, 60), (2, 100), (3, 160)):
        inner = label == k
        assert np.median(image[inner]) == pytest.approx(hu, abs=15), k
    assert image.max() > 500  # bone


def test_refuses_foreign_folder_and_regenerates_own(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(NNSegError, match="not an NNSeg sample dataset"):
        generate_sample_dataset(foreign, num_cases=1)
    assert (foreign / "keep.txt").read_text() == "x"
    out = generate_sample_dataset(tmp_path / "s", num_cases=3)
    generate_sample_dataset(out, num_cases=2, seed=1)
    assert len(list((out / "imagesTr").iterdir())) == 2
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "Dataset901_CT"
    assert main(["sample-data", str(out), "--kind", "ct", "--cases", "2", "--seed", "3",
                 "--quiet"]) == 0
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [
        "sample_000.nii.gz", "sample_001.nii.gz"]
    assert main(["sample-data", str(tmp_path / "x"), "--cases", "0", "--quiet"]) == 2
    assert set(LABELS.values()) == {0, 1, 2, 3}


@pytest.mark.slow
def test_large_case() -> None:
    image, label, geo = generate_case(0, "ct", seed=0, size="large")
    assert image.shape[1:] == (512, 512) and 280 <= image.shape[0] <= 320
    assert 1.0 <= geo.spacing[0] <= 1.5
    assert set(np.unique(label[::4, ::4, ::4]).tolist()) == {0, 1, 2, 3}
