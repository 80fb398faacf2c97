"""Shared test fixtures: small generated datasets with fixed seeds, and the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HIPPOCAMPUS = SHARED / "data" / "Dataset004_Hippocampus"


def write_image(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Path:
    """Write a numpy-order ``(z, y, x)`` array with ITK geometry (spacing in numpy order)."""
    from NNSegLib.data.io import Geometry, SimpleITKIO

    geo = Geometry(tuple(array.shape), tuple(float(s) for s in spacing),
                   tuple(float(o) for o in origin), tuple(float(d) for d in direction))
    SimpleITKIO().write(array, geo, Path(path))
    return Path(path)


def make_case(rng: np.random.Generator, shape=(24, 32, 32), num_classes=3, margin=2):
    """An MR-like image (noisy background, brighter blobs) and its label map.

    Class k is an ellipsoid of distinct intensity; the volume has a zero border of
    ``margin`` voxels so cropping to nonzero has something to do.
    """
    shape = tuple(shape)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    label = np.zeros(shape, np.uint8)
    for k in range(1, num_classes):
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        r = [rng.uniform(0.12, 0.22) * s for s in shape]
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        label[inside <= 1] = k
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    for k in range(1, num_classes):
        image[label == k] += 60.0 * k
    image[:margin], image[-margin:] = 0, 0
    label[:margin], label[-margin:] = 0, 0
    return image, label


def write_dataset(root: Path, num_cases=6, shape=(24, 32, 32), spacing=(2.0, 1.0, 1.0),
                  num_classes=3, channel_names=None, seed=0, ending=".nii.gz",
                  vary_shape=True) -> Path:
    """Write a small nnU-Net raw dataset; returns its folder."""
    rng = np.random.default_rng(seed)
    channel_names = channel_names or {"0": "MRI"}
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i in range(num_cases):
        s = tuple(int(v + (rng.integers(-2, 3) if vary_shape else 0)) for v in shape)
        image, label = make_case(rng, s, num_classes)
        ident = f"case_{i:03d}"
        for c in range(len(channel_names)):
            write_image(root / "imagesTr" / f"{ident}_{c:04d}{ending}",
                        image * (1 + 0.5 * c), spacing)
        write_image(root / "labelsTr" / f"{ident}{ending}", label, spacing)
    labels = {"background": 0, **{f"class{k}": k for k in range(1, num_classes)}}
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": channel_names, "labels": labels, "numTraining": num_cases,
        "file_ending": ending, "name": root.name}, indent=2))
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Six small 3-class MR-like cases at 2×1×1 mm."""
    return write_dataset(tmp_path / "Dataset001_Tiny")


@pytest.fixture
def hippocampus() -> Path:
    """The real Dataset004_Hippocampus (skips where ../shared is absent)."""
    if not (HIPPOCAMPUS / "dataset.json").is_file():
        pytest.skip(f"real data not available at {HIPPOCAMPUS}")
    return HIPPOCAMPUS


@pytest.fixture(scope="module")
def ctx():
    """A real MRML scene and logics from slicer-core, one per test module."""
    pytest.importorskip("slicer", reason="needs slicer-core for real MRML nodes")
    from NNSegLib.slicer import mrml

    return mrml.new_scene()


# --- a small trained-looking model folder (random weights) ---------------------------

MODEL_DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2},
           "numTraining": 6, "file_ending": ".nii.gz"}


def model_config(name="3d_fullres", patch=(16, 16, 16)):
    """A tiny configuration plan (2 stages, 4-8 features) for model-folder tests."""
    from NNSegLib.planning.plans import ConfigurationPlan

    lowres = name == "3d_lowres"
    return ConfigurationPlan(
        name=name, spatial_dims=len(patch), data_identifier=name,
        spacing=(2.0, 2.0, 2.0) if lowres else (1.0, 1.0, 1.0),
        median_shape=(24, 32, 32), patch_size=patch, batch_size=2,
        strides=((1,) * len(patch), (2,) * len(patch)), kernel_sizes=((3,) * len(patch),) * 2,
        features_per_stage=(4, 8),
        previous_stage="3d_lowres" if name == "3d_cascade_fullres" else None,
        next_stage="3d_cascade_fullres" if lowres else None)


def make_model_folder(root: Path, folds=("0", "1"), configs=("3d_fullres",),
                      checkpoint="checkpoint_final.pt") -> Path:
    """A model folder with random-weight checkpoints for ``folds`` of ``configs``."""
    import torch

    from NNSegLib.network.checkpoint import make_meta, save_checkpoint
    from NNSegLib.network.network import build_network
    from NNSegLib.planning.plans import IntensityProperties, Plans

    cfgs = {c: model_config(c, (16, 16) if c == "2d" else (16, 16, 16)) for c in configs}
    plans = Plans(dataset_name="T", recipe="v2", memory_budget_gb=1.0,
                  channel_names={"0": "MRI"}, labels=dict(MODEL_DATASET_JSON["labels"]),
                  intensity_properties={"0": IntensityProperties(100, 20, 50, 250)},
                  configurations=cfgs)
    root.mkdir(parents=True, exist_ok=True)
    plans.save(root / "plans.json")
    (root / "dataset.json").write_text(json.dumps(MODEL_DATASET_JSON))
    for c, cfg in cfgs.items():
        for i, fold in enumerate(folds):
            torch.manual_seed(i)
            channels = 3 if cfg.previous_stage else 1
            net = build_network(cfg, channels, 3)
            state = {"network": net.state_dict(),
                     "meta": make_meta(c, fold, channels, 3, epoch=1), "optimizer": {}}
            save_checkpoint(root / c / f"fold_{fold}" / checkpoint, state)
    return root
