"""The low-resolution predictions a cascade's full-resolution stage trains on (METHOD §4/§5).

A cascade (``3d_lowres`` → ``3d_cascade_fullres``) feeds stage 2 the stage-1 segmentation as
one-hot extra input channels. At inference the low-res model segments the case, the label
map goes back to the original grid and is preprocessed like a label map for stage 2
(:func:`NNSegLib.inference.predict.network_scores`). Training must show stage 2 the same kind of
input, from a model that has *not* seen the case, so:

* when a ``3d_lowres`` fold finishes, the segmentations of its validation cases (made by the
  normal inference path, :func:`NNSegLib.training.fold_validation.predict_validation`) are
  written on stage 2's preprocessed grid by :func:`export_for_next_stage` (same code as inference:
  :func:`NNSegLib.preprocessing.preprocess.preprocess_labels`) to
  ``results/3d_lowres/predicted_next_stage/3d_cascade_fullres/<case>.npy`` (int8
  ``(1, z, y, x)``, like ``<case>_seg.npy``);
* once the five low-res folds are trained, every training case has one such prediction,
  and :func:`require_previous_stage` checks that before stage 2 trains (the sampler then
  loads them next to the labels, :class:`NNSegLib.training.sampler.PatchSampler`).

nnU-Net v2 does the same with ``predicted_next_stage``; it resamples the low-res logits
straight to stage 2's grid, where NNSeg reuses the inference path so training and
inference inputs are made identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.planning.plans import ConfigurationPlan, Plans
from NNSegLib.util.errors import NNSegError


def export_for_next_stage(labels: np.ndarray, images: np.ndarray, geometry: Geometry,
                          plans: Plans, next_config: ConfigurationPlan | str, folder: Path,
                          case_id: str) -> Path:
    """Write one case's low-res segmentation on the next stage's preprocessed grid.

    Args:
        labels: The predicted label map on the original grid ``(z, y, x)``.
        images: The case's images ``(C, z, y, x)`` (they define the crop box).
        geometry: Their geometry.
        plans: The plan.
        next_config: The cascade stage (or its name).
        folder: :meth:`~NNSegLib.util.model_folder.ModelFolder.next_stage_dir`.
        case_id: Case identifier.

    Returns:
        The ``.npy`` written (atomically).
    """
    from NNSegLib.preprocessing.preprocess import preprocess_labels
    from NNSegLib.util.atomic import save_npy

    seg = preprocess_labels(labels, images, geometry, plans, next_config)
    path = Path(folder) / f"{case_id}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npy(path, seg.astype(np.int8, copy=False))
    return path


def one_hot_foreground(labels, num_classes: int):
    """One-hot encode the foreground classes of a label map.

    Args:
        labels: ``(B, 1, *S)`` integer-valued labels ``0..num_classes-1`` (any dtype).
        num_classes: ``K``, background included.

    Returns:
        ``(B, K-1, *S)`` float32 on ``labels.device``; channel ``k-1`` is ``labels == k``.
    """
    import torch

    if labels.dim() < 3 or labels.shape[1] != 1:
        raise ValueError(f"labels must be (B, 1, *S), got {tuple(labels.shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    ks = torch.arange(1, num_classes, device=labels.device)
    ks = ks.view(1, -1, *([1] * (labels.dim() - 2)))
    return (labels == ks).to(torch.float32)


def one_hot_channels(seg: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot foreground channels ``(K-1, z, y, x)`` float32 of one preprocessed label map
    (``(z, y, x)`` or ``(1, z, y, x)``): the extra input of a cascade stage."""
    import torch

    seg = np.asarray(seg)
    labels = torch.from_numpy(np.ascontiguousarray(seg.reshape(1, 1, *seg.shape[-3:])))
    return one_hot_foreground(labels, num_classes)[0].numpy()


def missing_predictions(folder: Path, cases: Sequence[str]) -> list[str]:
    """Cases of ``cases`` without ``<folder>/<case>.npy``."""
    return [c for c in cases if not (Path(folder) / f"{c}.npy").is_file()]


def require_previous_stage(folder: Path, cases: Sequence[str], config: ConfigurationPlan,
                           splits: list[dict[str, list[str]]] | None = None) -> None:
    """Raise a :class:`NNSegError` that says what to run when predictions are missing.

    Args:
        folder: :meth:`~NNSegLib.util.model_folder.ModelFolder.next_stage_dir` of the
            previous stage.
        cases: Every case the cascade fold trains or validates on.
        config: The cascade configuration.
        splits: The cross-validation splits (to name the low-res folds to train).
    """
    missing = missing_predictions(folder, cases)
    if not missing:
        return
    prev = config.previous_stage
    folds = sorted({str(i) for i, s in enumerate(splits or []) for c in missing
                    if c in s.get("val", [])})
    shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
    hint = (f"train {prev} fold(s) {', '.join(folds)} first (`nnseg train DATASET {prev} FOLD`;"
            f" an already trained fold writes them with `--validate-only`)" if folds
            else f"train all five {prev} folds first (`nnseg train DATASET {prev} FOLD`)")
    raise NNSegError(
        f"{folder}: {config.name} trains on the {prev} cross-validation segmentation of "
        f"every case, and {len(missing)} of {len(cases)} are missing ({shown}); {hint}")


__all__ = ["export_for_next_stage", "missing_predictions", "one_hot_channels", "one_hot_foreground",
           "require_previous_stage"]
