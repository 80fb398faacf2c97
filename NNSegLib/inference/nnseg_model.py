"""Load an NNSeg model folder for inference (METHOD §5): plans, labels, fold networks.

A *model folder* is ``Workspace.results`` (see :mod:`NNSegLib.util.workspace`)::

    plans.json, dataset.json
    <config>/fold_<k>/checkpoint_final.pt   (fallback checkpoint_best.pt, checkpoint_latest.pt)
    best_configuration.json                 nnseg find-best (optional)
    postprocessing.json                     nnseg find-best (optional)

Which configuration: the one asked for, else ``best_configuration.json``'s, else
``3d_fullres``, else the first that has checkpoints. A cascade configuration loads its
previous stage as :attr:`LoadedModel.previous_stage`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.inference.loaded_model import LoadedModel, choose_folds, network_from_state
from NNSegLib.inference.sliding_window import SlidingWindowSettings
from NNSegLib.planning.plans import ConfigurationPlan, Plans
from NNSegLib.util.errors import NNSegError

CHECKPOINT_NAMES = ("checkpoint_final.pt", "checkpoint_best.pt", "checkpoint_latest.pt")
BEST_CONFIGURATION = "best_configuration.json"
POSTPROCESSING = "postprocessing.json"


class NNSegPipeline:
    """Preprocessing and its inverse for NNSeg models (delegates to :mod:`~NNSegLib.preprocessing`).

    A pipeline turns a raw case into network input and maps the averaged network output
    (probabilities, as :attr:`output` says) back to the original grid.
    """

    output = "softmax"

    def __init__(self, plans: Plans, config: ConfigurationPlan) -> None:
        self.plans = plans
        self.config = config

    def preprocess(self, images: np.ndarray, geometry, seg: np.ndarray | None = None):
        """Return ``(data (C, z, y, x) float32, seg or None, properties)``."""
        from NNSegLib.preprocessing.preprocess import preprocess_case

        return preprocess_case(images, geometry, self.plans, self.config, seg=seg)

    def restore_probabilities(self, scores, properties: dict) -> np.ndarray:
        """``(K, …)`` averaged probabilities → ``(K, z, y, x)`` float32 on the original grid."""
        from NNSegLib.preprocessing.preprocess import restore_to_original

        return np.asarray(restore_to_original(_tensor(scores), properties, self.config),
                          dtype=np.float32)

    def restore_labels(self, scores, properties: dict) -> np.ndarray:
        """``(K, …)`` averaged probabilities → label map on the original grid."""
        from NNSegLib.preprocessing.preprocess import restore_labels

        return np.asarray(restore_labels(_tensor(scores), properties, self.config))


def _tensor(scores):
    """Scores as a torch tensor: restoring then resamples with torch on its device."""
    import torch

    return scores if torch.is_tensor(scores) else torch.from_numpy(np.asarray(scores))


def find_checkpoint(run_dir: Path, names: Sequence[str] = CHECKPOINT_NAMES) -> Path | None:
    """The first existing checkpoint of ``run_dir`` in preference order, else ``None``."""
    for name in names:
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def trained_folds(model_dir: Path, configuration: str,
                  names: Sequence[str] = CHECKPOINT_NAMES) -> list[str]:
    """Fold names (``"0"``, ``"all"`` …) of ``configuration`` that have a checkpoint."""
    base = Path(model_dir) / configuration
    if not base.is_dir():
        return []
    folds = [p.name[len("fold_"):] for p in base.iterdir()
             if p.is_dir() and p.name.startswith("fold_") and find_checkpoint(p, names)]
    return sorted(folds, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))


def read_best_configuration(model_dir: Path) -> dict[str, Any] | None:
    """``best_configuration.json`` as a dict, or ``None`` when absent."""
    path = Path(model_dir) / BEST_CONFIGURATION
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise NNSegError(f"{path}: unreadable ({e})") from e
    if not isinstance(data, dict):
        raise NNSegError(f"{path}: expected a JSON object")
    return data


def best_configurations(model_dir: Path) -> list[str]:
    """The configuration(s) ``find-best`` chose (several for an ensemble), or ``[]``."""
    data = read_best_configuration(model_dir) or {}
    if isinstance(data.get("configurations"), list):
        return [str(c) for c in data["configurations"]]
    if isinstance(data.get("configuration"), str):
        return [data["configuration"]]
    return []


def default_configuration(model_dir: Path) -> str:
    """Best configuration, else ``3d_fullres``, else the first configuration with checkpoints.

    Raises:
        NNSegError: when the folder holds no trained configuration at all.
    """
    model_dir = Path(model_dir)
    best = best_configurations(model_dir)
    if best:
        return best[0]
    if trained_folds(model_dir, "3d_fullres"):
        return "3d_fullres"
    found = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and trained_folds(
        model_dir, p.name)) if model_dir.is_dir() else []
    if not found:
        raise NNSegError(f"{model_dir}: no trained configuration (no <config>/fold_<k>/"
                         "checkpoint_final.pt); train one or check the model folder")
    return found[0]


def _read_labels(model_dir: Path) -> tuple[dict[str, int], str]:
    path = model_dir / "dataset.json"
    if not path.is_file():
        raise NNSegError(f"{path}: missing; a model folder needs plans.json and dataset.json")
    from NNSegLib.data.dataset import DatasetError, load_dataset_json

    try:
        spec = load_dataset_json(model_dir)
    except DatasetError as e:
        raise NNSegError(str(e)) from e
    return dict(spec.labels), spec.file_ending


def _load_plans(model_dir: Path) -> Plans:
    path = model_dir / "plans.json"
    if not path.is_file():
        raise NNSegError(f"{path}: missing; is {model_dir} a model folder (WORK/results)?")
    try:
        return Plans.load(path)
    except ValueError as e:
        raise NNSegError(str(e)) from e


def load_fold_network(run_dir: Path, config: ConfigurationPlan, in_channels: int,
                      num_classes: int, device) -> Any:
    """Build the configuration's network and load a fold's weights (``weights_only``).

    Raises:
        NNSegError: when no checkpoint exists or its weights do not fit the plan.
    """
    from NNSegLib.network.checkpoint import load_checkpoint

    path = find_checkpoint(run_dir)
    if path is None:
        raise NNSegError(f"{run_dir}: no checkpoint ({', '.join(CHECKPOINT_NAMES)})")
    state = load_checkpoint(path)
    meta = state.get("meta", {})
    in_channels = int(meta.get("num_input_channels", in_channels))
    net = network_from_state(state["network"], config, in_channels, num_classes, device,
                             str(path))
    # a run may override the plan's patch (`nnseg train --patch-size`): predict with its own
    net.trained_patch_size = tuple(meta.get("patch_size") or config.patch_size)
    return net


def load_nnseg_model(model_dir: Path, configuration: str | None, folds: Sequence[str | int] | None,
                     device: Any, tta: bool = True, step: float = 0.5,
                     use_postprocessing: bool = True, precision: str = "auto") -> LoadedModel:
    """Load one configuration of an NNSeg model folder (arguments as :func:`load_model`)."""
    plans = _load_plans(model_dir)
    labels, ending = _read_labels(model_dir)
    configuration = configuration or default_configuration(model_dir)
    try:
        config = plans.configuration(configuration)
    except KeyError as e:
        raise NNSegError(f"{model_dir / 'plans.json'}: {e.args[0]}") from None
    chosen = choose_folds(trained_folds(model_dir, configuration), folds,
                          model_dir / configuration)
    previous = None
    in_channels = plans.num_channels
    num_classes = max(labels.values()) + 1
    if config.previous_stage:
        previous = load_nnseg_model(model_dir, config.previous_stage, folds, device, tta,
                                    step, use_postprocessing=False, precision=precision)
        in_channels += num_classes - 1
    networks = [(f, load_fold_network(model_dir / configuration / f"fold_{f}", config,
                                      in_channels, num_classes, device)) for f in chosen]
    mirror = tuple(range(len(config.patch_size))) if tta else ()
    patches = {n.trained_patch_size for _, n in networks}
    if len(patches) > 1:
        raise NNSegError(f"{model_dir / configuration}: folds were trained with different "
                         f"patch sizes {sorted(patches)}; choose folds with --folds")
    settings = SlidingWindowSettings(patches.pop(), step=step, mirror_axes=mirror,
                                     output=NNSegPipeline.output, precision=precision)
    rules = _load_postprocessing(model_dir, configuration) if use_postprocessing else None
    return LoadedModel(model_dir, plans, configuration, config, labels, networks, device,
                       settings, NNSegPipeline(plans, config), plans.num_channels, rules,
                       previous, "nnseg", False, ending)


def _load_postprocessing(model_dir: Path, configuration: str):
    """``postprocessing.json`` if present and made for ``configuration`` (the best one)."""
    best = best_configurations(model_dir)
    path = model_dir / POSTPROCESSING
    if not path.is_file() or (best and configuration not in best):
        return None
    from NNSegLib.postprocessing.postprocess import PostprocessingRules

    return PostprocessingRules.load(path)


__all__ = [
    "BEST_CONFIGURATION",
    "CHECKPOINT_NAMES",
    "NNSegPipeline",
    "POSTPROCESSING",
    "best_configurations",
    "default_configuration",
    "find_checkpoint",
    "load_fold_network",
    "load_nnseg_model",
    "read_best_configuration",
    "trained_folds",
]
