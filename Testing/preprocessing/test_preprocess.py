from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from NNSegLib.data.io import Geometry
from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans
from NNSegLib.preprocessing.preprocess import (
    preprocess_case,
    restore_labels,
    restore_to_original,
)
from NNSegLib.util.errors import NNSegError

GEOMETRY = Geometry(
    shape=(14, 44, 40), spacing=(3.0, 0.8, 0.8), origin=(12.5, -40.0, 7.25),
    direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
)


def _config(spacing=(2.0, 1.0, 1.0), normalization=("zscore",), use_mask=(False,),
            anisotropy_axis=None) -> ConfigurationPlan:
    return ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres", spacing=spacing,
        median_shape=(21, 35, 32), patch_size=(24, 32, 32), batch_size=2,
        strides=((1, 1, 1), (2, 2, 2)), kernel_sizes=((3, 3, 3), (3, 3, 3)),
        features_per_stage=(8, 16), normalization=normalization, use_mask_for_norm=use_mask,
        anisotropy_axis=anisotropy_axis,
    )


def _plans(cfg: ConfigurationPlan, channel="MRI") -> Plans:
    return Plans(
        dataset_name="T", recipe="paper", memory_budget_gb=8.0, channel_names={"0": channel},
        labels={"background": 0, "a": 1, "b": 2},
        intensity_properties={"0": IntensityProperties(200.0, 50.0, 120.0, 300.0)},
        configurations={cfg.name: cfg},
    )


def _case(seed=0):
    """Smooth two-class ellipsoids inside a nonzero box with a zero border."""
    rng = np.random.default_rng(seed)
    shape = GEOMETRY.shape
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    seg = np.zeros(shape, np.uint8)
    seg[((zz - 7) / 4.5) ** 2 + ((yy - 20) / 10) ** 2 + ((xx - 15) / 7) ** 2 <= 1] = 1
    seg[((zz - 7) / 4) ** 2 + ((yy - 22) / 9) ** 2 + ((xx - 28) / 6) ** 2 <= 1] = 2
    image = rng.normal(150.0, 10.0, shape).astype(np.float32) + 60.0 * seg
    image[:, :4], image[:, -3:], image[:, :, :2] = 0, 0, 0
    return image, seg.astype(np.float32)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_anisotropic_round_trip_geometry_and_dice():
    image, seg = _case()
    cfg = _config()
    plans = _plans(cfg)
    data, pseg, props = preprocess_case(image[None], GEOMETRY, plans, cfg, seg)
    assert props["bbox"] == [[0, 14], [4, 41], [2, 40]]
    assert props["shape_after_crop"] == [14, 37, 38]
    assert props["shape_after_resample"] == [21, 30, 30]
    assert props["separate_axis"] == 0
    assert data.shape == (1, 21, 30, 30) and data.dtype == np.float32
    assert pseg.shape == (1, 21, 30, 30) and pseg.dtype == np.int8
    assert set(np.unique(pseg)) == {0, 1, 2}
    # the JSON round trip of the properties gives back the original grid exactly
    props = json.loads(json.dumps(props))
    assert Geometry.from_dict(props["original_geometry"]) == GEOMETRY
    onehot = np.stack([(pseg[0] == k) for k in range(3)]).astype(np.float32)
    labels = restore_labels(onehot, props, cfg)
    assert labels.shape == GEOMETRY.shape
    for k in (1, 2):
        assert _dice(labels == k, seg == k) > 0.95
    assert np.all(labels[:, :4] == 0) and np.all(labels[:, -3:] == 0)


def test_restore_with_torch_matches_numpy():
    image, seg = _case(1)
    cfg = _config()
    plans = _plans(cfg)
    _, pseg, props = preprocess_case(image, GEOMETRY, plans, cfg, seg)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3,) + pseg.shape[1:]).astype(np.float32)
    logits += 4 * np.stack([(pseg[0] == k) for k in range(3)])
    probs = torch.softmax(torch.from_numpy(logits), 0)
    restored_np = restore_to_original(probs.numpy(), props, cfg)
    restored_t = restore_to_original(probs, props, cfg)
    assert restored_np.shape == (3,) + GEOMETRY.shape
    np.testing.assert_allclose(restored_np, restored_t, atol=1e-5)
    np.testing.assert_allclose(restored_np.sum(0), 1.0, atol=1e-4)
    assert np.all(restored_np[0][:, :4] == 1.0)
    labels_np = restore_labels(probs.numpy(), props, cfg)
    labels_t = restore_labels(probs, props, cfg)
    assert (labels_np == labels_t).mean() > 0.999
    np.testing.assert_array_equal(labels_np, restored_np.argmax(0))


def test_normalization_inside_mask_without_resampling():
    image, seg = _case(2)
    geo = Geometry(GEOMETRY.shape, (2.0, 1.0, 1.0), GEOMETRY.origin, GEOMETRY.direction)
    cfg = _config(use_mask=(True,))
    image[5, 10:14, 10:14] = 0  # zeros inside the box are outside the mask
    data, _, props = preprocess_case(image, geo, _plans(cfg), cfg, seg)
    assert props["separate_axis"] is None
    assert props["shape_after_resample"] == props["shape_after_crop"]
    inside = data[0] != 0
    assert inside.sum() == np.count_nonzero(image)
    assert abs(float(data[0][inside].mean())) < 1e-4
    assert float(data[0][inside].std()) == pytest.approx(1.0, abs=1e-4)


def test_ct_normalization_clips_to_dataset_percentiles():
    image, seg = _case(3)
    image[image != 0] += np.linspace(-300, 300, int(np.count_nonzero(image)), dtype=np.float32)
    geo = Geometry(GEOMETRY.shape, (2.0, 1.0, 1.0), GEOMETRY.origin, GEOMETRY.direction)
    cfg = _config(normalization=("ct",))
    data, _, _ = preprocess_case(image, geo, _plans(cfg, "CT"), cfg, seg)
    assert float(data.max()) == pytest.approx((300 - 200) / 50)
    assert float(data.min()) == pytest.approx((120 - 200) / 50)


def test_bad_labels_are_refused():
    image, seg = _case()
    seg[7, 20, 20] = 7
    cfg = _config()
    with pytest.raises(NNSegError, match="outside 0..2"):
        preprocess_case(image, GEOMETRY, _plans(cfg), cfg, seg)


def _pipeline(dataset, work, extra=(), plan_extra=()):
    from NNSegLib.cli import main
    from NNSegLib.planning.fingerprint import compute_fingerprint
    from NNSegLib.util.workspace import Workspace

    ws = Workspace(work)
    if not ws.fingerprint.is_file():
        compute_fingerprint(dataset, workers=1).save(ws.fingerprint)
    assert main(["plan", str(dataset), "--work", str(work), "--quiet", *plan_extra]) == 0
    code = main(["preprocess", str(dataset), "--work", str(work), "--quiet", *extra])
    assert code == 0
    return ws


def _inodes(folder):
    return {p.name: p.stat().st_ino for p in folder.iterdir() if p.name.startswith("case_")}


def test_dataset_on_disk_and_resume(tiny_dataset, tmp_path):
    work = tmp_path / "work"
    ws = _pipeline(tiny_dataset, work)
    plans = Plans.load(ws.plans)
    assert {c.data_identifier for c in plans.configurations.values()} == {"3d_fullres"}
    folder = ws.preprocessed("3d_fullres")
    summary = json.loads((folder / "dataset_properties.json").read_text())
    assert summary["complete"] and summary["num_cases"] == 6
    assert sorted(summary["configurations"]) == ["2d", "3d_fullres"]
    data = np.load(folder / "case_000.npy", allow_pickle=False)
    seg = np.load(folder / "case_000_seg.npy", allow_pickle=False)
    props = json.loads((folder / "case_000.json").read_text())
    assert data.dtype == np.float32 and seg.dtype == np.int8
    assert data.shape[1:] == seg.shape[1:] == tuple(props["shape_after_resample"])
    with np.load(folder / "case_000_locs.npz", allow_pickle=False) as locs:
        for k in (1, 2):
            loc = locs[f"class_{k}"]
            assert loc.dtype == np.int32 and loc.shape[1] == 3
            assert np.all(seg[0][tuple(loc.T)] == k)
            assert loc.shape[0] == min(10000, int((seg == k).sum()))
    before = _inodes(folder)
    assert len(before) == 24
    _pipeline(tiny_dataset, work)
    assert _inodes(folder) == before  # second run skipped every case
    _pipeline(tiny_dataset, work, ["--overwrite", "--workers", "1"])
    after = _inodes(folder)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in before)


def test_changed_plan_redoes_cases(tiny_dataset, tmp_path):
    work = tmp_path / "work"
    ws = _pipeline(tiny_dataset, work, ["--configurations", "3d_fullres"])
    folder = ws.preprocessed("3d_fullres")
    before = _inodes(folder)
    shape = json.loads((folder / "case_001.json").read_text())["shape_after_resample"]
    _pipeline(tiny_dataset, work, ["--configurations", "3d_fullres"],
              ["--override", "*.spacing=[2.0,2.0,2.0]"])
    props = json.loads((folder / "case_001.json").read_text())
    assert props["shape_after_resample"][0] == shape[0]
    crop_yx = props["shape_after_crop"][1:]
    assert props["shape_after_resample"][1:] == [round(s / 2) for s in crop_yx]
    assert props["shape_after_resample"][1:] != shape[1:]
    assert all(_inodes(folder)[k] != before[k] for k in before)


def test_bad_label_file_is_named(tmp_path, capsys):
    from conftest import write_dataset, write_image

    from NNSegLib.cli import main
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.planning.fingerprint import compute_fingerprint
    from NNSegLib.util.workspace import Workspace

    raw = write_dataset(tmp_path / "Dataset002_Bad", num_cases=2, vary_shape=False)
    ws = Workspace(tmp_path / "work")
    compute_fingerprint(raw, workers=1).save(ws.fingerprint)
    assert main(["plan", str(raw), "--work", str(ws.root), "--quiet"]) == 0
    label_path = raw / "labelsTr" / "case_001.nii.gz"
    label, geo = SimpleITKIO().read(label_path)
    label[12, 16, 16] = 7
    write_image(label_path, label, geo.spacing)
    capsys.readouterr()
    code = main(["preprocess", str(raw), "--work", str(ws.root), "--quiet", "--workers", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "case_001" in err and "outside 0..2" in err


@pytest.mark.slow
def test_hippocampus_end_to_end(hippocampus, tmp_path):
    work = tmp_path / "work"
    ws = _pipeline(hippocampus, work, ["--workers", "2"], ["--recipe", "v2"])
    folder = ws.preprocessed("3d_fullres")
    summary = json.loads((folder / "dataset_properties.json").read_text())
    assert summary["num_cases"] == 208 and summary["complete"]
    assert len(list(folder.glob("*_seg.npy"))) == 208
    for case in summary["cases"][:20]:
        data = np.load(folder / f"{case}.npy", allow_pickle=False)
        seg = np.load(folder / f"{case}_seg.npy", allow_pickle=False)
        props = json.loads((folder / f"{case}.json").read_text())
        assert props["shape_after_resample"] == props["shape_after_crop"]  # 1 mm already
        assert abs(float(data.mean())) < 1e-3 and abs(float(data.std()) - 1) < 1e-3
        assert set(np.unique(seg)) <= {0, 1, 2} and seg.max() > 0


def test_added_and_replaced_cases_only_are_preprocessed(tiny_dataset, tmp_path):
    """METHOD §8: after add-case, only the new case (and a replaced one) are redone."""
    import shutil

    from NNSegLib.data.add_case import add_case_files

    work = tmp_path / "work"
    ws = _pipeline(tiny_dataset, work, ["--configurations", "3d_fullres"])
    folder = ws.preprocessed("3d_fullres")
    before = _inodes(folder)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("case_000_0000.nii.gz", "case_000.nii.gz"):
        sub = "imagesTr" if name.endswith("_0000.nii.gz") else "labelsTr"
        shutil.copy(tiny_dataset / sub / name, copy / name)
    add_case_files(tiny_dataset, "added", [copy / "case_000_0000.nii.gz"], copy / "case_000.nii.gz")
    add_case_files(tiny_dataset, "case_003", [copy / "case_000_0000.nii.gz"],
                   copy / "case_000.nii.gz", replace=True)
    _pipeline(tiny_dataset, work, ["--configurations", "3d_fullres"])
    after = _inodes(folder)
    changed = sorted(k for k in after if k not in before or after[k] != before[k])
    assert changed == [f"case_003{s}" for s in (".json", ".npy", "_locs.npz", "_seg.npy")]
    assert (folder / "added.json").is_file()
    summary = json.loads((folder / "dataset_properties.json").read_text())
    assert summary["num_cases"] == 7 and "added" in summary["cases"]
    np.testing.assert_array_equal(np.load(folder / "case_003_seg.npy"),
                                  np.load(folder / "case_000_seg.npy"))
