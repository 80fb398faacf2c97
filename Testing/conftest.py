"""Shared test fixtures: small generated datasets with fixed seeds, and the real data."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HIPPOCAMPUS = SHARED / "data" / "Dataset004_Hippocampus"


@contextlib.contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """The CLI installs SIGINT/SIGTERM handlers; put pytest's back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """:func:`kept_signal_handlers` around a test that runs the CLI in-process."""
    with kept_signal_handlers():
        yield


#: A stand-in for ``python -m NNSegLib`` in background-job tests: writes epoch events to the
#: ``--progress-json`` file and stops cleanly (writing a "checkpoint") once the
#: ``--stop-file`` exists, as ``nnseg train`` does.
FAKE_NNSEG = """
import json, sys, time
from pathlib import Path
args = sys.argv[1:]
events = Path(args[args.index("--progress-json") + 1])
stop = Path(args[args.index("--stop-file") + 1])
out = Path(args[args.index("--fake-out") + 1] if "--fake-out" in args else args[1])

def emit(**event):
    with open(events, "a") as f:
        f.write(json.dumps(event) + "\\n")

if args[0] == "fail":
    emit(event="error", message="nnseg fail: error: broken dataset")
    sys.exit(2)
epochs = int(args[args.index("--fake-epochs") + 1] if "--fake-epochs" in args else args[2])
emit(event="start", stage=args[0], total=epochs)
for epoch in range(epochs):
    if stop.exists():
        (out / f"checkpoint_{args[0]}").write_text(str(epoch))
        print("stopped by the stop file", flush=True)
        sys.exit(130)
    emit(event="epoch", stage="train", epoch=epoch, train_loss=1.0 / (epoch + 1))
    time.sleep(0.05)
(out / f"done_{args[0]}").write_text("ok")
emit(event="done", stage=args[0])
"""


def _import_slicer_core_without_the_tests() -> None:
    """Import slicer-core's ``slicer`` once, with ``Testing/`` off ``sys.path``.

    ``slicer`` is a meta-package: on import it adds every ``slicer`` folder found on
    ``sys.path`` to itself and imports all modules there. pytest puts ``Testing/`` on the
    path (for this file), so ``Testing/slicer/test_*.py`` would become ``slicer.test_*``:
    run as part of ``import slicer``, and failing (leaving ``slicer`` half-initialised) when
    ``Testing/slicer`` itself is not importable yet, e.g. in ``pytest Testing/extension``.
    """
    import importlib.util
    import sys

    if "slicer" in sys.modules or importlib.util.find_spec("slicer") is None:
        return
    testing = Path(__file__).resolve().parent
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path
                   if not Path(p or ".").resolve().is_relative_to(testing)]
    try:
        import slicer  # noqa: F401
    except ImportError:
        pass
    finally:
        sys.path[:] = saved


_import_slicer_core_without_the_tests()


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
    from NNSegLib.slicer.scene import mrml

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


# --- preprocessed cases and tiny plans ----------------------------------------------

def write_preprocessed(folder: Path, num_cases: int = 6, shape=(20, 24, 24), num_classes: int = 3,
                       seed: int = 0) -> list[str]:
    """Write ``num_cases`` preprocessed cases per the contract in NNSegLib/README.md."""
    from NNSegLib.util.atomic import save_npy, save_npz

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(num_cases):
        image, label = make_case(rng, shape, num_classes)
        image = (image - image.mean()) / image.std()
        ident = f"case_{i:03d}"
        save_npy(folder / f"{ident}.npy", image[None].astype(np.float32))
        save_npy(folder / f"{ident}_seg.npy", label[None].astype(np.int8))
        locs = {f"class_{k}": np.argwhere(label == k).astype(np.int32)
                for k in range(1, num_classes) if (label == k).any()}
        save_npz(folder / f"{ident}_locs.npz", **locs)
        (folder / f"{ident}.json").write_text(json.dumps({
            "spacing": [1.0, 1.0, 1.0], "shape_after_crop": list(shape),
            "shape_after_resample": list(shape),
            "bbox": [[0, s] for s in shape]}))
        ids.append(ident)
    return ids


def tiny_plans(patch=(16, 16, 16), batch_size=2, num_classes=3, spatial_dims=3,
               recipe="paper"):
    """A plan with one tiny configuration (3d_fullres or 2d)."""
    from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans

    nd = spatial_dims
    name = "3d_fullres" if nd == 3 else "2d"
    cfg = ConfigurationPlan(
        name=name, spatial_dims=nd, data_identifier="3d_fullres", spacing=(1.0, 1.0, 1.0),
        median_shape=(20, 24, 24), patch_size=tuple(patch), batch_size=batch_size,
        strides=((1,) * nd, (2,) * nd, (2,) * nd), kernel_sizes=((3,) * nd,) * 3,
        features_per_stage=(4, 8, 16), batch_dice=nd == 2)
    labels = {"background": 0, **{f"c{k}": k for k in range(1, num_classes)}}
    return Plans(dataset_name="Tiny", recipe=recipe, memory_budget_gb=1.0,
                 channel_names={"0": "MRI"}, labels=labels,
                 intensity_properties={"0": IntensityProperties(0.0, 1.0, -3.0, 3.0)},
                 configurations={name: cfg})


def cascade_plans(num_classes: int = 3):
    """A tiny plan with 3d_fullres, 3d_lowres (spacing ×2) and 3d_cascade_fullres."""
    import dataclasses

    from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans

    full = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres",
        spacing=(2.0, 1.0, 1.0), median_shape=(24, 32, 32), patch_size=(16, 16, 16),
        batch_size=2, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)),
        kernel_sizes=((3, 3, 3),) * 3, features_per_stage=(4, 8, 16))
    low = dataclasses.replace(full, name="3d_lowres", data_identifier="3d_lowres",
                              spacing=(4.0, 2.0, 2.0), median_shape=(12, 16, 16),
                              patch_size=(8, 16, 16), batch_dice=True,
                              next_stage="3d_cascade_fullres")
    cascade = dataclasses.replace(full, name="3d_cascade_fullres", previous_stage="3d_lowres")
    labels = {"background": 0, **{f"c{k}": k for k in range(1, num_classes)}}
    return Plans(dataset_name="Tiny", recipe="paper", memory_budget_gb=1.0,
                 channel_names={"0": "MRI"}, labels=labels,
                 intensity_properties={"0": IntensityProperties(100.0, 20.0, 50.0, 250.0)},
                 configurations={"3d_fullres": full, "3d_lowres": low,
                                 "3d_cascade_fullres": cascade})
