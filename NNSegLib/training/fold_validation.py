"""Full-image validation of a fold at the end of training (``validation_summary.json``).

When the raw dataset's labels are at hand, :func:`predict_validation` segments the fold's
validation cases exactly as ``nnseg predict`` would (original geometry, files in
``fold_<k>/validation/``) and evaluated against ``labelsTr`` with
:func:`NNSegLib.evaluation.evaluate.evaluate_folder`. Otherwise a simpler check runs: a sliding
window without Gaussian weighting or mirroring over the *preprocessed* arrays, Dice
against the preprocessed labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.util.atomic import write_json
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import ModelFolder
from NNSegLib.util.progress import Progress
from NNSegLib.util.workspace import Workspace


def predict_validation(model_dir: Path | str, configuration: str, fold: int | str,
                       dataset: Path | str, work: Path | str | None = None, *,
                       device: Any = "auto", tta: bool = True, step: float = 0.5,
                       progress=None) -> list[Path]:
    """Predict a fold's validation cases for ``find-best``.

    Writes ``results/<config>/fold_<k>/validation/<case><ending>`` (no postprocessing) and
    ``<case>_probabilities.npz`` (key ``probabilities``, float16, ``(K, z, y, x)`` on the
    original grid). A cascade's low-resolution stage also writes each segmentation on the
    next stage's grid (:func:`~NNSegLib.inference.cascade.export_for_next_stage`). Returns the label
    files written.
    """
    from NNSegLib.data.dataset import list_cases as list_dataset_cases
    from NNSegLib.data.dataset import load_dataset_json
    from NNSegLib.data.io import read_channels
    from NNSegLib.data.splits import fold_cases, load_splits, parse_fold
    from NNSegLib.inference.model_loader import load_model
    from NNSegLib.inference.predict import predict_case, write_case
    from NNSegLib.util.progress import child_progress

    ws = Workspace.for_dataset(dataset, work)
    spec = load_dataset_json(dataset)
    by_id = {c.identifier: c for c in list_dataset_cases(spec)}
    fold = parse_fold(fold)
    _, val = fold_cases(load_splits(ws.splits), fold, sorted(by_id))
    missing = [c for c in val if c not in by_id]
    if missing:
        raise NNSegError(f"{ws.splits}: validation cases {missing[:5]} are not in {dataset}")
    model = load_model(model_dir, configuration, [fold], device, tta=tta, step=step,
                       use_postprocessing=False, allow_unfinished=True)
    folder = ModelFolder(Path(model_dir))
    out_dir = folder.run(configuration, fold).validation
    next_stage = model.config.next_stage
    if next_stage and next_stage not in model.plans.configurations:
        next_stage = None
    patches = child_progress(progress)
    if progress is not None:
        progress.start("validation", len(val))
    written = []
    for case_id in val:
        images, geometry = read_channels(list(by_id[case_id].images))
        result = predict_case(images, geometry, model, probabilities=True, postprocess=False,
                              progress=patches)
        written.append(write_case(result, geometry, out_dir, case_id, spec.file_ending)[0])
        if next_stage:
            from NNSegLib.inference.cascade import export_for_next_stage

            export_for_next_stage(result.labels, images, geometry, model.plans,
                                  model.plans.configuration(next_stage),
                                  folder.next_stage_dir(configuration, next_stage), case_id)
        if progress is not None:
            progress.advance(case=case_id)
    if patches is not None and patches is not progress:
        patches.close()
    if progress is not None:
        progress.done()
    return written


def validate_fold(trainer: Any, ws: Workspace, dataset: Path | str | None, configuration: str,
                  fold: int | str, progress: Progress) -> dict:
    """Segment and score the fold's validation cases; write ``validation_summary.json``."""
    if dataset is not None and (Path(dataset) / "labelsTr").is_dir():
        summary = _with_predict(trainer, ws, dataset, configuration, fold, progress)
    else:
        summary = preprocessed_space_validation(trainer, progress)
    write_json(ws.run(configuration, fold).validation_summary, summary)
    dice = summary.get("foreground_mean", {}).get("dice")
    if dice is not None:
        progress.message(f"validation ({summary['method']}): mean foreground Dice {dice:.4f}")
    return summary


def _with_predict(trainer: Any, ws: Workspace, dataset: Path | str, configuration: str,
                  fold: int | str, progress: Progress) -> dict:
    from NNSegLib.evaluation.evaluate import evaluate_folder

    setup = trainer.setup
    predict_validation(ws.results, configuration, fold, dataset, ws.root,
                       device=str(setup.device), progress=progress)
    spec_labels = _labels(dataset)
    summary = evaluate_folder(Path(dataset) / "labelsTr", ws.run(configuration, fold).validation,
                              spec_labels, cases=list(setup.val_cases), workers=1,
                              compute_hd95=False)
    return {"method": "predict_validation", **summary.to_dict()}


def _labels(dataset: Path | str) -> dict[str, int]:
    from NNSegLib.data.dataset import load_dataset_json

    return load_dataset_json(dataset).labels


def preprocessed_space_validation(trainer: Any, progress: Progress) -> dict:
    """Dice per class of plain sliding-window predictions on the preprocessed arrays."""
    import torch

    from NNSegLib.evaluation.metrics import case_metrics
    from NNSegLib.inference.cascade import one_hot_channels
    from NNSegLib.inference.sliding_window import SlidingWindowSettings, predict_sliding_window

    setup = trainer.setup
    settings = SlidingWindowSettings(patch_size=tuple(setup.config.patch_size),
                                     use_gaussian=False)
    classes = list(range(1, setup.num_classes))
    network = trainer.network
    network.eval()
    per_case: dict[str, dict[str, float]] = {}
    progress.start("validation", len(setup.val_cases))
    for case_id in setup.val_cases:
        progress.check_cancelled()
        data = np.load(setup.preprocessed / f"{case_id}.npy", allow_pickle=False)
        if setup.previous_stage is not None:   # cascade: + one-hot previous-stage labels
            prev = np.load(setup.previous_stage / f"{case_id}.npy", allow_pickle=False)
            data = np.concatenate([data, one_hot_channels(prev, setup.num_classes)])
        ref = np.load(setup.preprocessed / f"{case_id}_seg.npy", allow_pickle=False)[0]
        with torch.no_grad():
            scores = predict_sliding_window(network, data, setup.num_classes, settings,
                                            device=setup.device)
        pred = scores.argmax(0).numpy().astype(ref.dtype)
        metrics = case_metrics(np.maximum(ref, 0), pred, classes, setup.config.spacing,
                               compute_hd95=False)
        per_case[case_id] = {str(k): m.dice for k, m in metrics.items()}
        progress.advance(case=case_id)
    progress.done()
    network.train()
    means = {str(k): _nanmean([c[str(k)] for c in per_case.values()]) for k in classes}
    return {"method": "preprocessed-space sliding window (no Gaussian, no mirroring)",
            "foreground_mean": {"dice": _nanmean(list(means.values()))},
            "mean": {k: {"dice": v} for k, v in means.items()}, "cases": per_case}


def _nanmean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(finite)) if finite else None


__all__ = ["predict_validation", "preprocessed_space_validation", "validate_fold"]
