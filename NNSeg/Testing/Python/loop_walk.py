"""The clinician's loop end to end on tiny generated data (METHOD §8), for tests.

:func:`run_walk` trains a tiny model on a few generated cases and segments three new cases as
scene volumes in one batch: two like the training data, and one whose structure is only 1.5
noise standard deviations brighter than the background instead of 6 (the case the model should
be least sure about). It ranks them and corrects the first case's segmentation in the scene
(replaced by the truth, as an editor would). It adds that case to the dataset, preprocesses
(only the new case), archives the model and fine-tunes one epoch from it. Then it segments the
batch again and compares. It returns the numbers; ``Testing/extension/test_loop_walk.py`` checks
them headless with ``slicer-core``, and ``NNSegTest`` runs the same walk inside Slicer on the
application's scene. Test code: it ships with the module (for NNSegTest), not in NNSegLib.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.slicer.scene import mrml


@dataclass(frozen=True)
class WalkSettings:
    """Sizes and training lengths of the walk (small enough for a test)."""

    shape: tuple[int, int, int] = (20, 24, 24)
    train_cases: int = 5
    epochs: int = 15
    iterations: int = 10
    fine_tune_iterations: int = 40
    fine_tune_lr: float = 3e-3
    brightness: tuple[float, ...] = (60.0,)
    hard_brightness: tuple[float, ...] = (10.0,)
    seed: int = 0
    batch_seed: int = 100
    threads: int = 1
    device: str = "cpu"


@dataclass
class WalkResult:
    """What the walk measured (see :func:`run_walk`)."""

    ranking: list[str]
    scores: dict[str, float]
    corrected: str
    cases_before: int
    cases_after: int
    num_training: int
    repreprocessed: list[str]
    fold0_train: list[str]
    fold0_val_unchanged: bool
    dice_before: dict[str, float]
    dice_after: dict[str, float]
    versions: tuple[str, str]
    comparison: Any
    provenance: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def labels_for(brightness: tuple[float, ...]) -> dict[str, int]:
    """``{"background": 0, "structure1": 1, …}``: one label per ellipsoid."""
    return {"background": 0, **{f"structure{k}": k for k in range(1, len(brightness) + 1)}}


def make_case(rng: np.random.Generator, shape: tuple[int, ...],
              brightness: tuple[float, ...] = (60.0,)) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image (100 ± 10) with one ellipsoid per label, label ``k`` ``brightness[k-1]``
    above the background, and a zero border."""
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    label = np.zeros(shape, np.uint8)
    for k in range(1, len(brightness) + 1):
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        r = [rng.uniform(0.15, 0.25) * s for s in shape]
        inside = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip((zz, yy, xx), c, r)) <= 1
        label[inside] = k
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    for k in range(1, len(brightness) + 1):
        image[label == k] += brightness[k - 1]
    image[:2], image[-2:] = 0, 0
    label[:2], label[-2:] = 0, 0
    return image, label


def walk_plans(shape: tuple[int, ...], labels: dict[str, int]) -> Any:
    """A one-configuration plan with a 3-stage, 4-16-feature U-Net and 16³ patches.

    Intensities are normalized with fixed dataset statistics (``ct``), not per case, so an
    intensity means the same in every case (the hard case's label 1 lies between the
    training data's background and structure).
    """
    from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans

    cfg = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres",
        spacing=(1.0, 1.0, 1.0), median_shape=tuple(shape), patch_size=(16, 16, 16),
        batch_size=2, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)),
        kernel_sizes=((3, 3, 3),) * 3, features_per_stage=(4, 8, 16), normalization=("ct",))
    return Plans(dataset_name="Dataset900_Walk", recipe="paper", memory_budget_gb=1.0,
                 channel_names={"0": "CT"}, labels=dict(labels),
                 intensity_properties={"0": IntensityProperties(150.0, 50.0, 50.0, 260.0)},
                 configurations={"3d_fullres": cfg})


def write_walk_dataset(root: Path, settings: WalkSettings) -> Path:
    """The raw training dataset of the walk."""
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.util.atomic import write_json

    rng = np.random.default_rng(settings.seed)
    geo = Geometry(settings.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    for i in range(settings.train_cases):
        image, label = make_case(rng, settings.shape, settings.brightness)
        SimpleITKIO().write(image, geo, root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        SimpleITKIO().write(label, geo, root / "labelsTr" / f"case_{i:03d}.nii.gz")
    write_json(root / "dataset.json", {
        "name": root.name, "channel_names": {"0": "CT"},
        "labels": labels_for(settings.brightness),
        "numTraining": settings.train_cases, "file_ending": ".nii.gz"})
    return root


def _dice(path: Path, truth: np.ndarray) -> float:
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.data.seg_nrrd import is_seg_nrrd, read_seg_nrrd
    from NNSegLib.evaluation.metrics import case_metrics

    labels = read_seg_nrrd(path)[0] if is_seg_nrrd(path) else SimpleITKIO().read(path)[0]
    classes = [int(v) for v in np.unique(truth) if v > 0]
    metrics = case_metrics(truth, labels, classes, (1.0, 1.0, 1.0), compute_hd95=False)
    return float(np.mean([metrics[k].dice for k in classes]))


def _segment(batch: Path, images: Path, model_dir: Path, ctx: Any) -> list:
    from NNSegLib.inference.batch import batch_inputs, segment_batch
    from NNSegLib.inference.model_loader import load_model
    from NNSegLib.inference.review_queue import ranked_entries
    from NNSegLib.slicer.batch_job import seg_nrrd_writer

    model = load_model(model_dir, folds=["0"], device="cpu", tta=False)
    segment_batch(batch_inputs([images], 1), batch, model, model_dir,
                  write_labels=seg_nrrd_writer(ctx))
    return ranked_entries(batch)


def _version_tag(ctx: mrml.SceneContext, path: Path) -> str:
    seg = mrml.read_segmentation(ctx.scene, path)
    try:
        tag = mrml.segment_tag(seg.GetSegmentation().GetNthSegment(0), mrml.TAG_MODEL_VERSION)
    finally:
        mrml.remove_node(ctx.scene, seg)
    return str(tag)


def _new_cases(ctx: mrml.SceneContext, settings: WalkSettings
               ) -> tuple[list[list[Any]], dict[str, np.ndarray]]:
    """Three new cases as scene volumes (two like the training data, one hard) + truths."""
    rng = np.random.default_rng(settings.batch_seed)
    truth, volumes = {}, []
    grid = Geometry(settings.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    for name, brightness in (("easy_a", settings.brightness), ("easy_b", settings.brightness),
                             ("hard", settings.hard_brightness)):
        image, truth[name] = make_case(rng, settings.shape, brightness)
        volumes.append([mrml.volume_node_from_array(ctx.scene, image, grid, name)])
    return volumes, truth


def _correct_and_add(ctx: mrml.SceneContext, batch: Path, case: str, truth: np.ndarray,
                     labels: dict[str, int], dataset: Path) -> Any:
    """What the reviewer does: mark, load, edit (here: paint the truth), add to the dataset."""
    from NNSegLib.inference.review_queue import NEEDS_CORRECTION, mark_case
    from NNSegLib.slicer.scene.review import add_corrected_case, load_review_case

    mark_case(batch, case, NEEDS_CORRECTION)
    review = load_review_case(ctx.scene, batch, case)
    grid = mrml.geometry_from_volume_node(review.volumes[0])
    mrml.segmentation_from_labels(ctx.scene, truth, grid, {v: k for k, v in labels.items()},
                                  node=review.segmentation, reference_volume=review.volumes[0])
    return add_corrected_case(ctx.scene, batch, case, review.segmentation, dataset,
                              volumes=review.volumes)


def _preprocess_counting(dataset: Path, ws: Any, plans: Any) -> list[str]:
    """Preprocess; return the cases whose preprocessed files were (re)written."""
    from NNSegLib.preprocessing.preprocess import preprocess_dataset

    folder = ws.preprocessed("3d_fullres")
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")} \
        if folder.is_dir() else {}
    preprocess_dataset(dataset, ws, plans, workers=1)
    return sorted(p.stem for p in folder.glob("*.json") if p.name != "dataset_properties.json"
                  and stamps.get(p.name) != p.stat().st_mtime_ns)


def run_walk(folder: Path | str, ctx: mrml.SceneContext | None = None,
             settings: WalkSettings = WalkSettings()) -> WalkResult:
    """Walk the loop in ``folder`` (see the module doc); ``ctx`` defaults to a new scene."""
    from NNSegLib.data.add_case import read_provenance
    from NNSegLib.data.splits import load_splits
    from NNSegLib.evaluation.model_comparison import compare_models
    from NNSegLib.slicer.batch_job import prepare_scene_batch
    from NNSegLib.training.model_versions import archive_model
    from NNSegLib.training.train import train_fold
    from NNSegLib.util.workspace import Workspace

    folder, ctx = Path(folder), ctx or mrml.new_scene()
    start = time.monotonic()
    dataset = write_walk_dataset(folder / "Dataset900_Walk", settings)
    ws = Workspace(folder / "work")
    labels = labels_for(settings.brightness)
    plans = walk_plans(settings.shape, labels)
    plans.save(ws.plans)
    _preprocess_counting(dataset, ws, plans)
    fast = {"iterations_per_epoch": settings.iterations, "val_iterations": 1, "amp": "off",
            "num_threads": settings.threads, "device": settings.device}
    train_fold(dataset, ws.root, "3d_fullres", 0,
               overrides={**fast, "max_epochs": settings.epochs, "lr": 3e-3})
    val_before = load_splits(ws.splits)[0]["val"]
    seconds = {"train": time.monotonic() - start}

    volumes, truth = _new_cases(ctx, settings)
    batch = prepare_scene_batch(volumes, folder / "batch1", ws.results)["batch"]
    entries = _segment(batch, batch / "images", ws.results, ctx)
    ranking = [e.case for e in entries]
    dice_before = {e.case: _dice(e.segmentation, truth[e.case]) for e in entries}
    added = _correct_and_add(ctx, batch, ranking[0], truth[ranking[0]], labels, dataset)
    repreprocessed = _preprocess_counting(dataset, ws, plans)
    seconds["review"] = time.monotonic() - start - seconds["train"]

    archived = archive_model(ws.root)
    train_fold(dataset, ws.root, "3d_fullres", 0, init_from=archived, overrides={
        **fast, "max_epochs": 1, "iterations_per_epoch": settings.fine_tune_iterations,
        "lr": settings.fine_tune_lr})
    splits = load_splits(ws.splits)[0]
    after = _segment(folder / "batch2", batch / "images", ws.results, ctx)
    seconds["total"] = time.monotonic() - start
    return WalkResult(
        ranking=ranking, scores={e.case: e.stats.score for e in entries if e.stats},
        corrected=ranking[0], cases_before=settings.train_cases,
        cases_after=len(list((dataset / "labelsTr").glob("*.nii.gz"))),
        num_training=added.num_training, repreprocessed=repreprocessed,
        fold0_train=list(splits["train"]), fold0_val_unchanged=splits["val"] == val_before,
        dice_before=dice_before,
        dice_after={e.case: _dice(e.segmentation, truth[e.case]) for e in after},
        versions=(_version_tag(ctx, entries[0].segmentation),
                  _version_tag(ctx, after[0].segmentation)),
        comparison=compare_models(archived, ws.results),
        provenance=read_provenance(dataset)["cases"].get(added.identifier, {}),
        seconds=seconds)


def walk_problems(r: WalkResult) -> list[str]:
    """What is wrong with a walk's numbers (empty when the loop worked), for the headless test
    and ``NNSegTest`` inside Slicer alike."""
    checks = [
        (r.ranking[:1] == ["hard"] and sorted(r.ranking) == ["easy_a", "easy_b", "hard"],
         f"the low-contrast case ranks first: {r.ranking}"),
        (r.scores.get("hard", 0.0) > max(r.scores.get("easy_a", 1.0),
                                         r.scores.get("easy_b", 1.0)) + 0.1,
         f"the hard case is clearly less certain: {r.scores}"),
        (r.corrected == "hard", f"the corrected case is the first of the queue: {r.corrected}"),
        (r.cases_after == r.cases_before + 1 == r.num_training,
         f"one case added: {r.cases_before} → {r.cases_after} (numTraining {r.num_training})"),
        (r.provenance.get("origin") == "corrected_prediction"
         and (r.provenance.get("changed_voxels") or 0) > 0,
         f"provenance records the correction: {r.provenance}"),
        (r.repreprocessed == ["hard"], f"only the new case preprocessed: {r.repreprocessed}"),
        ("hard" in r.fold0_train and r.fold0_val_unchanged,
         "the new case trains fold 0, whose validation cases stay"),
        (r.dice_after.get("hard", 0.0) > r.dice_before.get("hard", 1.0) + 0.1,
         f"the corrected case's Dice rises: {r.dice_before} → {r.dice_after}"),
        (r.versions == ("v1", "v2"), f"results carry the model version: {r.versions}"),
    ]
    return [what for ok, what in checks if not ok]


__all__ = ["WalkResult", "WalkSettings", "labels_for", "make_case", "run_walk", "walk_plans",
           "walk_problems", "write_walk_dataset"]
