"""What inference holds once a model is loaded, whichever folder it came from.

:class:`LoadedModel` is filled by the two loaders (:mod:`.nnseg_model` for NNSeg model
folders, :mod:`.nnunet_model` for nnU-Net v2 results folders); both build their networks with
:func:`network_from_state` and pick folds with :func:`choose_folds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.inference.sliding_window import SlidingWindowSettings
from NNSegLib.planning.plans import ConfigurationPlan, Plans
from NNSegLib.util.errors import NNSegError


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


def network_from_state(weights: dict, config: ConfigurationPlan, in_channels: int,
                       num_classes: int, device, source: str = "<weights>") -> Any:
    """Build the plan's U-Net, load ``weights`` and prepare it for ``device`` (eval mode).

    Conv biases before instance norms are present iff the weights have them.

    Raises:
        NNSegError: when the weights do not fit the network of the plan.
    """
    from NNSegLib.network.network import NetworkOptions, build_network, prepare_network

    conv_bias = any(k.startswith("encoder.") and k.endswith("conv.bias") for k in weights)
    network = build_network(config, in_channels, num_classes, deep_supervision=False,
                            options=NetworkOptions(conv_bias=conv_bias))
    try:
        network.load_state_dict(weights)
    except RuntimeError as e:
        raise NNSegError(f"{source}: weights do not match the plan's network ({e})") from e
    return prepare_network(network, device).eval()


def choose_folds(available: Sequence[str], folds: Sequence[str | int] | None,
                 where: Path) -> list[str]:
    """The requested folds (default: all available), checked to exist.

    Raises:
        NNSegError: naming ``where`` and the missing folds.
    """
    from NNSegLib.data.splits import parse_folds

    chosen = [str(f) for f in parse_folds(folds)] or list(available)
    missing = [f for f in chosen if f not in available]
    if missing or not chosen:
        raise NNSegError(f"{where}: no checkpoint for fold(s) {missing or ['any']}; "
                         f"trained folds: {list(available) or 'none'}")
    return chosen


__all__ = ["LoadedModel", "choose_folds", "network_from_state"]
