"""Tests of NNSegLib.planning.fingerprint: numbers on generated data, JSON, refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_dataset, write_image

from NNSegLib.cli import main
from NNSegLib.planning.fingerprint import (
    Fingerprint,
    compute_fingerprint,
    nonzero_bbox,
    run_fingerprint,
)
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.workspace import Workspace

#: Per case: (shape, spacing, nonzero box of channel 0, nonzero box of channel 1).
BOXES = [
    ((12, 20, 18), (3.0, 0.8, 0.8), ((2, 9), (3, 15), (4, 12)), ((3, 8), (5, 18), (2, 10))),
    ((10, 16, 22), (2.5, 0.7, 0.7), ((0, 10), (1, 12), (5, 20)), ((4, 6), (2, 5), (6, 8))),
    ((14, 18, 18), (3.5, 0.9, 0.9), ((1, 13), (2, 16), (2, 16)), ((5, 9), (6, 12), (6, 12))),
]


def _box_mask(shape, box) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in box)] = True
    return mask


@pytest.fixture
def boxed(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """Two channels, zero outside known boxes; label 1/2 inside channel 0's box."""
    rng = np.random.default_rng(7)
    root = tmp_path / "Dataset020_Boxes"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    foreground: list[list[np.ndarray]] = [[], []]
    for i, (shape, spacing, box0, box1) in enumerate(BOXES):
        images = []
        for c, box in enumerate((box0, box1)):
            image = rng.normal(200.0 + 300 * c, 40.0, shape).astype(np.float32)
            image[~_box_mask(shape, box)] = 0
            images.append(image)
            write_image(root / "imagesTr" / f"box_{i:03d}_{c:04d}.nii.gz", image, spacing)
        label = np.zeros(shape, np.uint8)
        inner = [(a + 1, b - 1) if b - a > 2 else (a, b) for a, b in box0]
        label[_box_mask(shape, inner)] = 1
        label[tuple(slice(a, a + 2) for a, _ in inner)] = 2
        write_image(root / "labelsTr" / f"box_{i:03d}.nii.gz", label, spacing)
        for c in range(2):
            foreground[c].append(images[c][label > 0])
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": len(BOXES), "file_ending": ".nii.gz", "name": "Boxes"}))
    return root, foreground


def _union_box(box0, box1):
    return tuple((min(a0, a1), max(b0, b1)) for (a0, b0), (a1, b1) in zip(box0, box1))


def test_nonzero_bbox() -> None:
    a = np.zeros((5, 6, 7))
    a[1:3, 2, 4:6] = 1
    b = np.zeros_like(a)
    b[4, 0, 5] = -2
    assert nonzero_bbox([a]) == [[1, 3], [2, 3], [4, 6]]
    assert nonzero_bbox([a, b]) == [[1, 5], [0, 3], [4, 6]]
    assert nonzero_bbox([np.zeros((2, 3, 4))]) == [[0, 2], [0, 3], [0, 4]]


def test_case_numbers(boxed) -> None:
    root, _ = boxed
    fp = compute_fingerprint(root, workers=1)
    assert [c.identifier for c in fp.cases] == ["box_000", "box_001", "box_002"]
    relative = []
    for case, (shape, spacing, box0, box1) in zip(fp.cases, BOXES):
        crop = tuple(b - a for a, b in _union_box(box0, box1))
        assert case.shape == shape
        assert case.spacing == pytest.approx(spacing)
        assert case.shape_after_crop == crop
        relative.append(np.prod(crop) / np.prod(shape))
    assert fp.median_relative_size_after_cropping == pytest.approx(np.median(relative))
    assert fp.channel_names == {"0": "T1", "1": "CT"}
    assert fp.labels == {"background": 0, "a": 1, "b": 2}
    assert fp.median_spacing == pytest.approx((3.0, 0.8, 0.8))


def test_intensity_statistics_exact_when_all_voxels_sampled(boxed) -> None:
    root, foreground = boxed
    fp = compute_fingerprint(root, workers=1, num_samples=10**6)
    for c, per_case in enumerate(foreground):
        values = np.concatenate(per_case).astype(np.float64)
        props = fp.intensity_properties[str(c)]
        assert props.mean == pytest.approx(values.mean(), rel=1e-9)
        assert props.std == pytest.approx(values.std(), rel=1e-9)
        assert props.median == pytest.approx(np.median(values), rel=1e-9)
        assert props.percentile_00_5 == pytest.approx(np.percentile(values, 0.5), rel=1e-9)
        assert props.percentile_99_5 == pytest.approx(np.percentile(values, 99.5), rel=1e-9)
        assert (props.min, props.max) == (values.min(), values.max())


def test_intensity_statistics_sampled(boxed) -> None:
    root, foreground = boxed
    fp = compute_fingerprint(root, workers=1, num_samples=300)
    # Channel 0 is N(200, 40) in every case: pooled statistics match the population.
    values = np.concatenate(foreground[0])
    props = fp.intensity_properties["0"]
    assert props.mean == pytest.approx(values.mean(), abs=5.0)
    assert props.std == pytest.approx(values.std(), rel=0.1)
    assert props.median == pytest.approx(np.median(values), abs=6.0)
    assert props.percentile_00_5 == pytest.approx(np.percentile(values, 0.5), abs=15.0)
    assert props.percentile_99_5 == pytest.approx(np.percentile(values, 99.5), abs=15.0)
    assert (props.min, props.max) == (values.min(), values.max())
    # Channel 1 is partly zero inside the label, differently per case: every case
    # contributes min(300, voxels) samples, so the mean weighs cases equally.
    expected = np.mean([v.mean() for v in foreground[1]])
    assert fp.intensity_properties["1"].mean == pytest.approx(expected, abs=15.0)
    assert fp.intensity_properties["1"].min == 0.0


def test_parallel_equals_serial_and_is_deterministic(boxed) -> None:
    root, _ = boxed
    serial = compute_fingerprint(root, workers=1, num_samples=200)
    assert compute_fingerprint(root, workers=2, num_samples=200) == serial
    assert compute_fingerprint(root, workers=1, num_samples=200, seed=1) != serial


def test_run_fingerprint_writes_and_round_trips(tiny_dataset: Path, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "work")
    fp = run_fingerprint(tiny_dataset, ws, workers=1)
    assert Fingerprint.load(ws.fingerprint) == fp
    assert Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict()))) == fp
    assert ws.dataset_json.read_bytes() == (tiny_dataset / "dataset.json").read_bytes()
    saved = json.loads(ws.fingerprint.read_text())
    assert saved["summary"]["num_cases"] == 6
    assert saved["summary"]["spacing_median"] == [2.0, 1.0, 1.0]
    # make_case leaves 2 zero slices at each end along z: the crop removes exactly them
    for case in fp.cases:
        assert case.shape_after_crop == (case.shape[0] - 4,) + case.shape[1:]
    assert 0.6 < fp.median_relative_size_after_cropping < 1.0


def test_refuses_broken_dataset_and_writes_nothing(tiny_dataset: Path, tmp_path: Path,
                                                   capsys) -> None:
    (tiny_dataset / "labelsTr" / "case_002.nii.gz").unlink()
    (tiny_dataset / "imagesTr" / "case_004_0000.nii.gz").write_bytes(b"garbage")
    ws = Workspace(tmp_path / "work")
    with pytest.raises(NNSegError, match="2 error") as info:
        run_fingerprint(tiny_dataset, ws, workers=1)
    assert "case_002.nii.gz" in str(info.value) and "case_004_0000.nii.gz" in str(info.value)
    assert not ws.root.exists()
    assert main(["fingerprint", str(tiny_dataset), "--work", str(ws.root), "--quiet"]) == 2
    assert "missing label" in capsys.readouterr().err
    assert not ws.root.exists()


def test_cli(tiny_dataset: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    assert main(["fingerprint", str(tiny_dataset), "--work", str(work), "--workers", "2",
                 "--quiet"]) == 0
    fp = Fingerprint.load(work / "dataset_fingerprint.json")
    assert len(fp.cases) == 6 and set(fp.intensity_properties) == {"0"}


def test_load_rejects_other_version(tmp_path: Path) -> None:
    path = tmp_path / "dataset_fingerprint.json"
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(NNSegError, match="version 99"):
        Fingerprint.load(path)


def test_multi_channel_generated(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "Dataset021_Two", num_cases=3, shape=(10, 12, 12),
                         channel_names={"0": "T1", "1": "T2"}, seed=3)
    fp = compute_fingerprint(root, workers=1)
    p0, p1 = fp.intensity_properties["0"], fp.intensity_properties["1"]
    # write_dataset's channel 1 is channel 0 times 1.5
    assert p1.mean == pytest.approx(1.5 * p0.mean, rel=1e-5)
    assert p1.percentile_99_5 == pytest.approx(1.5 * p0.percentile_99_5, rel=1e-5)


@pytest.mark.slow
def test_hippocampus_full(hippocampus: Path) -> None:
    fp = compute_fingerprint(hippocampus, workers=2)
    assert len(fp.cases) == 208
    assert fp.median_spacing == (1.0, 1.0, 1.0)
    assert fp.median_shape_after_crop == (36.0, 50.0, 35.0)
    props = fp.intensity_properties["0"]
    assert props.percentile_00_5 < props.median < props.percentile_99_5 <= props.max
