"""Load an NNSeg model folder for inference (METHOD §5): plans, labels, fold networks.

A *model folder* is ``Workspace.results`` (see :mod:`NNSegLib.util.workspace`)::

    plans.json, dataset.json
    <config>/fold_<k>/checkpoint_final.pt   (fallback checkpoint_best.pt, checkpoint_latest.pt)
    best_configuration.json                 nnseg find-best (optional)
    postprocessing.json                     nnseg find-best (optional)

Which configuration: the one asked for, else ``best_configuration.json``'s, else
``3d_fullres``, else the first that has checkpoints. A cascade configuration loads its
previous stage as :attr:`LoadedModel.previous_stage`.

Which folds: finished ones (``checkpoint_final.pt``) only. A fold still training (or
stopped early) is refused when asked for, naming its state ("is still training (process
123, epoch 12/1000)"), and left out of the default folds; ``allow_unfinished`` uses its
``checkpoint_best.pt`` (else ``checkpoint_latest.pt``) instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.inference.loaded_model import LoadedModel, choose_folds, network_from_state
from NNSegLib.inference.sliding_window import SlidingWindowSettings
from NNSegLib.planning.plans import ConfigurationPlan, Plans
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import (
    CHECKPOINT_FINAL,
    CHECKPOINT_PREFERENCE,
    ModelFolder,
    RunFolder,
)


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


def _read_labels(folder: ModelFolder) -> tuple[dict[str, int], str]:
    if not folder.dataset_json.is_file():
        raise NNSegError(f"{folder.dataset_json}: missing; a model folder needs plans.json and "
                         "dataset.json")
    from NNSegLib.data.dataset import load_dataset_json

    spec = load_dataset_json(folder.root)
    return dict(spec.labels), spec.file_ending


def usable_folds(folder: ModelFolder, configuration: str, folds: Sequence[str | int] | None,
                 allow_unfinished: bool = False) -> tuple[list[str], tuple[str, ...], list[str]]:
    """The folds to load, the checkpoint names to use and notes about unfinished folds.

    Raises:
        NNSegError: for a requested fold that is unfinished (unless ``allow_unfinished``)
            or missing, or when no fold is usable.
    """
    from NNSegLib.data.splits import parse_folds

    names = CHECKPOINT_PREFERENCE if allow_unfinished else (CHECKPOINT_FINAL,)
    where = folder.root / configuration
    requested = [str(f) for f in parse_folds(folds)]
    unfinished = {r.fold: r for r in folder.runs(configuration)
                  if not r.is_finished and r.checkpoint() is not None}
    notes = []
    for fold, run in unfinished.items():
        if requested and fold not in requested:
            continue
        used = run.checkpoint()
        assert used is not None   # ``unfinished`` holds runs with a checkpoint
        if allow_unfinished:
            notes.append(f"fold {fold} {run.status()}: using its {used.name}")
        elif requested:
            raise NNSegError(f"{where}: fold {fold} {run.status()}; choose finished folds or "
                             f"pass --allow-unfinished to use its {used.name}")
        else:
            notes.append(f"fold {fold} {run.status()}: left out (--allow-unfinished uses it)")
    available = folder.trained_folds(configuration, names)
    if not requested and not available and unfinished:
        fold, run = next(iter(unfinished.items()))
        raise NNSegError(f"{where}: no finished fold; fold {fold} {run.status()} (pass "
                         "--allow-unfinished to use its checkpoint)")
    return choose_folds(available, folds, where), names, notes


def load_fold_network(run: RunFolder, config: ConfigurationPlan, in_channels: int,
                      num_classes: int, device,
                      names: Sequence[str] = CHECKPOINT_PREFERENCE) -> tuple[Any, dict]:
    """Build the configuration's network and load a fold's weights (``weights_only``).

    Returns:
        ``(network, meta)``: the network in eval mode on ``device`` and the checkpoint's
        ``meta`` (with ``patch_size``, the patch the run was trained with).

    Raises:
        NNSegError: when no checkpoint exists or its weights do not fit the plan.
    """
    from NNSegLib.network.checkpoint import load_checkpoint

    path = run.checkpoint(names)
    if path is None:
        raise NNSegError(f"{run.path}: no checkpoint ({', '.join(names)})")
    state = load_checkpoint(path)
    meta = dict(state.get("meta", {}))
    in_channels = int(meta.get("num_input_channels", in_channels))
    net = network_from_state(state["network"], config, in_channels, num_classes, device,
                             str(path))
    # a run may override the plan's patch (`nnseg train --patch-size`): predict with its own
    meta["patch_size"] = tuple(meta.get("patch_size") or config.patch_size)
    return net, meta


def load_nnseg_model(model_dir: Path, configuration: str | None, folds: Sequence[str | int] | None,
                     device: Any, tta: bool = True, step: float = 0.5,
                     use_postprocessing: bool = True, precision: str = "auto",
                     allow_unfinished: bool = False) -> LoadedModel:
    """Load one configuration of an NNSeg model folder (arguments as :func:`load_model`)."""
    folder = ModelFolder(model_dir)
    plans = Plans.load(folder.plans, hint=None)
    labels, ending = _read_labels(folder)
    configuration = configuration or folder.default_configuration()
    try:
        config = plans.configuration(configuration)
    except KeyError as e:
        raise NNSegError(f"{folder.plans}: {e.args[0]}") from None
    chosen, names, notes = usable_folds(folder, configuration, folds, allow_unfinished)
    previous = None
    in_channels = plans.num_channels
    num_classes = max(labels.values()) + 1
    if config.previous_stage:
        previous = load_nnseg_model(model_dir, config.previous_stage, folds, device, tta,
                                    step, use_postprocessing=False, precision=precision,
                                    allow_unfinished=allow_unfinished)
        in_channels += num_classes - 1
        notes += previous.extra.get("notes", [])
    loaded = [(f, *load_fold_network(folder.run(configuration, f), config, in_channels,
                                     num_classes, device, names)) for f in chosen]
    mirror = tuple(range(len(config.patch_size))) if tta else ()
    patches = {meta["patch_size"] for _, _, meta in loaded}
    if len(patches) > 1:
        raise NNSegError(f"{folder.root / configuration}: folds were trained with different "
                         f"patch sizes {sorted(patches)}; choose folds with --folds")
    settings = SlidingWindowSettings(patches.pop(), step=step, mirror_axes=mirror,
                                     output=NNSegPipeline.output, precision=precision)
    rules = _load_postprocessing(folder, configuration) if use_postprocessing else None
    networks = [(f, net) for f, net, _ in loaded]
    return LoadedModel(folder.root, plans, configuration, config, labels, networks, device,
                       settings, NNSegPipeline(plans, config), plans.num_channels, rules,
                       previous, "nnseg", False, ending, {"notes": notes})


def _load_postprocessing(folder: ModelFolder, configuration: str):
    """``postprocessing.json`` if present and made for ``configuration`` (the best one)."""
    best = folder.best_configurations()
    if not folder.postprocessing.is_file() or (best and configuration not in best):
        return None
    from NNSegLib.postprocessing.postprocess import PostprocessingRules

    return PostprocessingRules.load(folder.postprocessing)


__all__ = ["NNSegPipeline", "load_fold_network", "load_nnseg_model"]
