"""Load a trained model folder for inference (METHOD §5): plans, labels, fold networks.

A *model folder* is ``Workspace.results`` (see :mod:`NNSegLib.workspace`)::

    plans.json, dataset.json
    <config>/fold_<k>/checkpoint_final.pt   (fallback checkpoint_best.pt, checkpoint_latest.pt)
    best_configuration.json                 nnseg find-best (optional)
    postprocessing.json                     nnseg find-best (optional)

or an nnU-Net v2 results folder (``plans.json`` with ``plans_name``, ``fold_<k>/
checkpoint_final.pth``), which :mod:`NNSegLib.nnunet_compat` maps onto the same
:class:`LoadedModel`.

Which configuration: the one asked for, else ``best_configuration.json``'s, else
``3d_fullres``, else the first that has checkpoints. A cascade configuration loads its
previous stage as :attr:`LoadedModel.previous_stage`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.errors import NNSegError
from NNSegLib.plans import ConfigurationPlan, Plans
from NNSegLib.sliding_window import SlidingWindowSettings

CHECKPOINT_NAMES = ("checkpoint_final.pt", "checkpoint_best.pt", "checkpoint_latest.pt")
BEST_CONFIGURATION = "best_configuration.json"
POSTPROCESSING = "postprocessing.json"


class NNSegPipeline:
    """Preprocessing and its inverse for NNSeg models (delegates to :mod:`NNSegLib.preprocess`).

    A pipeline turns a raw case into network input and maps the averaged network output
    (probabilities, as :attr:`output` says) back to the original grid.
    """

    output = "softmax"

    def __init__(self, plans: Plans, config: ConfigurationPlan) -> None:
        self.plans = plans
        self.config = config

    def preprocess(self, images: np.ndarray, geometry, seg: np.ndarray | None = None):
        """Return ``(data (C, z, y, x) float32, seg or None, properties)``."""
        from NNSegLib.preprocess import preprocess_case

        return preprocess_case(images, geometry, self.plans, self.config, seg=seg)

    def restore_probabilities(self, scores, properties: dict) -> np.ndarray:
        """``(K, …)`` averaged probabilities → ``(K, z, y, x)`` float32 on the original grid."""
        from NNSegLib.preprocess import restore_to_original

        return np.asarray(restore_to_original(_tensor(scores), properties, self.config),
                          dtype=np.float32)

    def restore_labels(self, scores, properties: dict) -> np.ndarray:
        """``(K, …)`` averaged probabilities → label map on the original grid."""
        from NNSegLib.preprocess import restore_labels

        return np.asarray(restore_labels(_tensor(scores), properties, self.config))


def _tensor(scores):
    """Scores as a torch tensor: restoring then resamples with torch on its device."""
    import torch

    return scores if torch.is_tensor(scores) else torch.from_numpy(np.asarray(scores))


@dataclass
class LoadedModel:
    """Everything inference needs, loaded once and reused for many cases.

    Attributes:
        root: The model folder.
        plans: The plan (for nnU-Net models: NNSeg's reading of its plan).
        configuration: Configuration name.
        config: Its plan.
        labels: Label name → value (from dataset.json); class index == label value.
        networks: ``(fold, network)`` pairs, each in eval mode on :attr:`device`.
        device: The ``torch.device`` networks run on.
        settings: Sliding-window settings (patch, mirror axes, what is averaged).
        pipeline: Preprocessing and restoring (``NNSegPipeline`` or nnU-Net's).
        num_input_channels: Image channels (without cascade channels).
        postprocessing: Rules from ``postprocessing.json`` or ``None``.
        previous_stage: The low-resolution model of a cascade, else ``None``.
        kind: ``"nnseg"`` or ``"nnunet"``.
        channels_last: Feed networks channels-last tensors.
        file_ending: The training data's file ending (``.nii.gz`` …).
        ensemble: Further configurations whose probabilities are averaged with this one's
            (``find-best`` chose an ensemble), each a :class:`LoadedModel`.
        extra: Loader-specific settings (``mirror_axes`` of nnU-Net models).
    """

    root: Path
    plans: Plans
    configuration: str
    config: ConfigurationPlan
    labels: dict[str, int]
    networks: list[tuple[str, Any]]
    device: Any
    settings: SlidingWindowSettings
    pipeline: Any
    num_input_channels: int
    postprocessing: Any = None
    previous_stage: LoadedModel | None = None
    kind: str = "nnseg"
    channels_last: bool = False
    file_ending: str = ".nii.gz"
    extra: dict = field(default_factory=dict)
    ensemble: list = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1

    @property
    def folds(self) -> list[str]:
        return [f for f, _ in self.networks]

    @property
    def configurations(self) -> list[str]:
        """This configuration and those it is ensembled with."""
        return [self.configuration, *[m.configuration for m in self.ensemble]]


def is_nnunet_model(model_dir: Path) -> bool:
    """True when ``model_dir`` looks like an nnU-Net v2 results folder."""
    plans = Path(model_dir) / "plans.json"
    if not plans.is_file():
        return False
    try:
        raw = json.loads(plans.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and "plans_name" in raw and "version" not in raw


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
    from NNSegLib.dataset import DatasetError, load_dataset_json

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
    from NNSegLib.checkpoint import load_checkpoint

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


def network_from_state(weights: dict, config: ConfigurationPlan, in_channels: int,
                       num_classes: int, device, source: str = "<weights>") -> Any:
    """Build the plan's U-Net, load ``weights`` and prepare it for ``device`` (eval mode).

    Conv biases before instance norms are present iff the weights have them.

    Raises:
        NNSegError: when the weights do not fit the network of the plan.
    """
    from NNSegLib.network import NetworkOptions, build_network, prepare_network

    conv_bias = any(k.startswith("encoder.") and k.endswith("conv.bias") for k in weights)
    network = build_network(config, in_channels, num_classes, deep_supervision=False,
                            options=NetworkOptions(conv_bias=conv_bias))
    try:
        network.load_state_dict(weights)
    except RuntimeError as e:
        raise NNSegError(f"{source}: weights do not match the plan's network ({e})") from e
    return prepare_network(network, device).eval()


def load_model(model_dir: Path | str, configuration: str | None = None,
               folds: Sequence[str | int] | None = None, device: Any = "auto",
               tta: bool = True, step: float = 0.5, use_postprocessing: bool = True,
               precision: str = "auto") -> LoadedModel:
    """Load ``configuration`` (default: see module doc) of a model folder.

    Args:
        model_dir: NNSeg model folder or nnU-Net v2 results folder.
        configuration: Configuration name; ``None`` picks the default.
        folds: Folds to ensemble (default: every trained fold).
        device: ``torch.device`` or ``"auto"``/``"cpu"``/``"cuda"``/``"mps"``.
        tta: Mirror test-time augmentation over all spatial axes.
        step: Sliding-window step as a fraction of the patch.
        use_postprocessing: Load ``postprocessing.json`` when present.
        precision: Network arithmetic, see :class:`SlidingWindowSettings` (``auto``: bf16
            where the device has fast bf16 units; nnU-Net models stay fp32 on CPU).

    Raises:
        NNSegError: naming the missing or invalid file.
    """
    from NNSegLib.device import pick_device

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NNSegError(f"{model_dir}: model folder not found")
    if not hasattr(device, "type"):
        device = pick_device(str(device))
    best = [] if configuration or is_nnunet_model(model_dir) else best_configurations(model_dir)
    if len(best) > 1:   # find-best chose an ensemble of configurations
        members = [load_model(model_dir, c, folds, device, tta, step, use_postprocessing,
                              precision) for c in best]
        return dataclasses.replace(members[0], ensemble=members[1:])
    if is_nnunet_model(model_dir):
        from NNSegLib.nnunet_compat import load_nnunet_model

        model = load_nnunet_model(model_dir, folds=folds, device=device, tta=tta, step=step,
                                  configuration=configuration)
        settings = dataclasses.replace(model.settings, precision=precision)
        return dataclasses.replace(model, settings=settings)
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
        previous = load_model(model_dir, config.previous_stage, folds, device, tta, step,
                              use_postprocessing=False, precision=precision)
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


def choose_folds(available: Sequence[str], folds: Sequence[str | int] | None,
                 where: Path) -> list[str]:
    """The requested folds (default: all available), checked to exist.

    Raises:
        NNSegError: naming ``where`` and the missing folds.
    """
    chosen = [str(f) for f in folds] if folds else list(available)
    missing = [f for f in chosen if f not in available]
    if missing or not chosen:
        raise NNSegError(f"{where}: no checkpoint for fold(s) {missing or ['any']}; "
                         f"trained folds: {list(available) or 'none'}")
    return chosen


def _load_postprocessing(model_dir: Path, configuration: str):
    """``postprocessing.json`` if present and made for ``configuration`` (the best one)."""
    best = best_configurations(model_dir)
    path = model_dir / POSTPROCESSING
    if not path.is_file() or (best and configuration not in best):
        return None
    from NNSegLib.postprocess import PostprocessingRules

    return PostprocessingRules.load(path)


__all__ = [
    "BEST_CONFIGURATION",
    "CHECKPOINT_NAMES",
    "LoadedModel",
    "NNSegPipeline",
    "POSTPROCESSING",
    "best_configurations",
    "choose_folds",
    "default_configuration",
    "find_checkpoint",
    "is_nnunet_model",
    "load_fold_network",
    "network_from_state",
    "load_model",
    "read_best_configuration",
    "trained_folds",
]
