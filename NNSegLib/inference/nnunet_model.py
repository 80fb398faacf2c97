"""Predict with nnU-Net v2 model folders (``nnseg predict -m <nnU-Net results folder>``).

An nnU-Net v2 results folder (``<Trainer>__<Plans>__<config>/``) holds ``plans.json``,
``dataset.json`` and ``fold_<k>/checkpoint_final.pth``. This module maps its plan onto
NNSeg's :class:`~NNSegLib.planning.plans.ConfigurationPlan` and network, loads its checkpoints and
pairs them with :class:`~NNSegLib.inference.nnunet_pipeline.NNUNetPipeline`, which reproduces
nnU-Net's own inference path so that label maps agree with ``nnUNetv2_predict``:

- preprocessing in nnU-Net's order: transpose, crop to the hole-filled nonzero box,
  normalize (before resampling), resample (spline order 3 with edge mode and clipping to the
  input range, the anisotropic axis separately with order 0), see
  :func:`~NNSegLib.inference.nnunet_pipeline.resample_like_nnunet`;
- logits (not probabilities) are averaged over mirrors, patches and folds; the centre of
  the Gaussian map differs by at most half a voxel from nnU-Net's;
- logits are resampled back (order 1, class by class), then softmax/argmax, then
  uncropped and transposed back.

Checkpoints are read with ``torch.load(weights_only=True)`` plus an explicit allow-list of
harmless types (numpy scalars and dtypes) - never plain unpickling. nnunetv2 itself is
never imported. Architectures other than ``PlainConvUNet`` (e.g. ResEnc) and region-based
labels are refused with an :class:`~NNSegLib.util.errors.NNSegError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.inference.nnunet_pipeline import NNUNetPipeline
from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import read_json

SUPPORTED_ARCHITECTURES = ("dynamic_network_architectures.architectures.unet.PlainConvUNet",)
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")


# --- plans ------------------------------------------------------------------------------

def resolved_configuration(plans: dict, name: str, path: Path) -> dict:
    """A configuration of an nnU-Net plan with ``inherits_from`` applied."""
    configs = plans.get("configurations", {})
    if name not in configs:
        raise NNSegError(f"{path}: configuration {name!r} not in the plan "
                         f"(has {sorted(configs)})")
    chain, seen = [], set()
    current = name
    while current is not None:
        if current in seen or current not in configs:
            raise NNSegError(f"{path}: broken 'inherits_from' chain at {current!r}")
        seen.add(current)
        chain.append(configs[current])
        current = configs[current].get("inherits_from")
    merged: dict = {}
    for cfg in reversed(chain):
        merged.update(cfg)
    return merged


def _uniform(values: Any, what: str, path: Path) -> int:
    values = [int(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(set(values)) != 1:
        raise NNSegError(f"{path}: {what} {values} varies per stage; NNSeg's U-Net needs one "
                         "value for all stages")
    return values[0]


def to_configuration_plan(name: str, cfg: dict, path: Path) -> ConfigurationPlan:
    """NNSeg's plan of an nnU-Net configuration (axes as nnU-Net has them, i.e. transposed).

    Raises:
        NNSegError: for an architecture NNSeg's U-Net does not implement.
    """
    arch = cfg.get("architecture", {})
    cls = arch.get("network_class_name", "")
    if cls not in SUPPORTED_ARCHITECTURES:
        raise NNSegError(f"{path}: configuration {name!r} uses the architecture {cls!r}; NNSeg "
                         f"supports only {', '.join(SUPPORTED_ARCHITECTURES)} (no ResEnc/"
                         "residual encoders)")
    kw = arch.get("arch_kwargs", {})
    problems = []
    if kw.get("dropout_op"):
        problems.append("dropout")
    if "InstanceNorm" not in str(kw.get("norm_op", "")):
        problems.append(f"norm {kw.get('norm_op')}")
    if "LeakyReLU" not in str(kw.get("nonlin", "")) or \
            float((kw.get("nonlin_kwargs") or {}).get("negative_slope", 0.01)) != 0.01:
        problems.append(f"nonlinearity {kw.get('nonlin')} {kw.get('nonlin_kwargs')}")
    if (kw.get("norm_op_kwargs") or {}).get("affine", True) is not True:
        problems.append("instance norm without affine parameters")
    if problems:
        raise NNSegError(f"{path}: configuration {name!r} uses {', '.join(problems)}, which "
                         "NNSeg's U-Net does not implement")
    patch = tuple(int(v) for v in cfg["patch_size"])
    spacing = tuple(float(v) for v in cfg["spacing"])
    return ConfigurationPlan(
        name=name, spatial_dims=len(patch), data_identifier=str(cfg.get("data_identifier", name)),
        spacing=spacing if len(spacing) == 3 else (1.0, *spacing),
        median_shape=tuple(int(round(v)) for v in cfg.get("median_image_size_in_voxels", patch)),
        patch_size=patch, batch_size=int(cfg.get("batch_size", 2)),
        strides=tuple(tuple(int(v) for v in s) for s in kw["strides"]),
        kernel_sizes=tuple(tuple(int(v) for v in k) for k in kw["kernel_sizes"]),
        features_per_stage=tuple(int(v) for v in kw["features_per_stage"]),
        n_conv_per_stage=_uniform(kw["n_conv_per_stage"], "n_conv_per_stage", path),
        n_conv_per_stage_decoder=_uniform(kw["n_conv_per_stage_decoder"],
                                          "n_conv_per_stage_decoder", path),
        batch_dice=bool(cfg.get("batch_dice", False)),
        normalization=tuple(str(s) for s in cfg.get("normalization_schemes", ())),
        use_mask_for_norm=tuple(bool(v) for v in cfg.get("use_mask_for_norm", ())),
        previous_stage=cfg.get("previous_stage"),
    )


def _labels(dataset: dict, path: Path) -> dict[str, int]:
    labels = dataset.get("labels")
    if not isinstance(labels, dict):
        raise NNSegError(f"{path}: 'labels' missing")
    out = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise NNSegError(f"{path}: region-based labels ({name!r}: {value}) are not "
                             "supported by NNSeg")
        if name == "ignore":
            continue   # nnU-Net's ignore label is not a network output
        out[str(name)] = int(value)
    if sorted(out.values()) != list(range(len(out))):
        raise NNSegError(f"{path}: labels must be consecutive 0..K-1, got {sorted(out.values())}")
    return out


def to_plans(raw: dict, dataset: dict, names: Sequence[str], path: Path) -> Plans:
    """NNSeg :class:`Plans` for the configurations ``names`` of an nnU-Net plan."""
    intensity = {
        str(c): IntensityProperties(**{k: float(v.get(k, 0.0)) for k in (
            "mean", "std", "percentile_00_5", "percentile_99_5", "min", "max", "median")})
        for c, v in raw.get("foreground_intensity_properties_per_channel", {}).items()}
    channels = dataset.get("channel_names", dataset.get("modality", {}))
    return Plans(
        dataset_name=str(raw.get("dataset_name", "")), recipe="v2", memory_budget_gb=0.0,
        channel_names={str(k): str(v) for k, v in channels.items()},
        labels=_labels(dataset, path), intensity_properties=intensity,
        configurations={n: to_configuration_plan(n, resolved_configuration(raw, n, path), path)
                        for n in names})


# --- checkpoints and weights --------------------------------------------------------------

def _safe_types() -> list:
    """The harmless non-tensor types nnU-Net checkpoints contain (logs of numpy floats)."""
    types: list = [np.dtype]
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    types.append(scalar)
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType",
                 "BoolDType", "UInt8DType"):
        if dtypes is not None and hasattr(dtypes, name):
            types.append(getattr(dtypes, name))
    return types


def load_nnunet_checkpoint(path: Path) -> dict:
    """Read an nnU-Net v2 checkpoint with ``weights_only=True`` and an explicit allow-list.

    Raises:
        NNSegError: when the file is unreadable or needs types outside the allow-list.
    """
    import torch

    from NNSegLib.network.checkpoint import describe_load_error

    try:
        with torch.serialization.safe_globals(_safe_types()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise NNSegError(f"{path}: cannot be read without unpickling arbitrary objects "
                         f"({describe_load_error(e)})") from None
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise NNSegError(f"{path}: not an nnU-Net v2 checkpoint (no 'network_weights')")
    return ckpt


def map_weights(nnunet_weights: dict, our_names: Sequence[str], path: Path) -> dict:
    """Rename nnU-Net ``PlainConvUNet`` weights to NNSeg's names (aliases are ignored)."""
    from NNSegLib.network.network import nnunet_name

    mapped, missing = {}, []
    for name in our_names:
        source = nnunet_name(name)
        if source in nnunet_weights:
            mapped[name] = nnunet_weights[source]
        else:
            missing.append(source)
    if missing:
        raise NNSegError(f"{path}: weights lack {missing[:3]}{' …' if len(missing) > 3 else ''}"
                         "; the checkpoint does not fit its plan's PlainConvUNet")
    return mapped


# --- the model folder ---------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    if not path.exists():
        raise NNSegError(f"{path}: missing; an nnU-Net model folder needs plans.json and "
                         "dataset.json")
    return read_json(path, expect=dict)


def nnunet_folds(model_dir: Path) -> dict[str, Path]:
    """Fold name → checkpoint (final, else best) of an nnU-Net results folder."""
    found = {}
    for run in sorted(Path(model_dir).glob("fold_*")):
        for name in CHECKPOINTS:
            if (run / name).is_file():
                found[run.name[len("fold_"):]] = run / name
                break
    return found


def folder_configuration(model_dir: Path, raw: dict) -> str:
    """The configuration of ``<Trainer>__<Plans>__<config>`` (or the plan's only one)."""
    parts = Path(model_dir).name.split("__")
    if len(parts) == 3 and parts[2] in raw.get("configurations", {}):
        return parts[2]
    configs = list(raw.get("configurations", {}))
    if len(configs) == 1:
        return configs[0]
    raise NNSegError(f"{model_dir}: cannot tell the configuration from the folder name; "
                     "expected <Trainer>__<Plans>__<configuration>")


def _fold_networks(checkpoints: dict[str, Path], config: ConfigurationPlan, in_channels: int,
                   num_classes: int, device) -> tuple[list, tuple[int, ...] | None]:
    from NNSegLib.inference.loaded_model import network_from_state
    from NNSegLib.network.network import NetworkOptions, build_network

    template = build_network(config, in_channels, num_classes, deep_supervision=False,
                             options=NetworkOptions(conv_bias=True))
    names = list(template.state_dict())
    networks, mirror_axes = [], None
    for fold, path in checkpoints.items():
        ckpt = load_nnunet_checkpoint(path)
        raw = ckpt["network_weights"]
        wanted = names if any(k.endswith("conv.bias") and k.startswith("encoder.") for k in raw) \
            else [n for n in names if not (n.endswith("conv.bias") and ".convs." in n)]
        weights = map_weights(raw, wanted, path)
        networks.append((fold, network_from_state(weights, config, in_channels, num_classes,
                                                  device, str(path))))
        axes = ckpt.get("inference_allowed_mirroring_axes")
        if axes is not None:
            mirror_axes = tuple(int(a) for a in axes)
    return networks, mirror_axes


def load_nnunet_model(model_dir: Path, folds: Sequence[str | int] | None = None, device=None,
                      tta: bool = True, step: float = 0.5, configuration: str | None = None):
    """Load an nnU-Net v2 results folder as a :class:`~NNSegLib.inference.loaded_model.LoadedModel`.

    Raises:
        NNSegError: for unsupported architectures/labels, missing folds or files.
    """
    import dataclasses

    import torch

    from NNSegLib.inference.loaded_model import LoadedModel, choose_folds
    from NNSegLib.inference.sliding_window import SlidingWindowSettings

    model_dir = Path(model_dir)
    raw = _read_json(model_dir / "plans.json")
    dataset = _read_json(model_dir / "dataset.json")
    name = folder_configuration(model_dir, raw)
    if configuration and configuration != name:
        raise NNSegError(f"{model_dir}: holds nnU-Net configuration {name!r}, not "
                         f"{configuration!r} (each configuration has its own results folder)")
    cfg = resolved_configuration(raw, name, model_dir / "plans.json")
    plans = to_plans(raw, dataset, [name], model_dir / "plans.json")
    config = plans.configurations[name]
    available = nnunet_folds(model_dir)
    chosen = choose_folds(sorted(available), folds, model_dir)
    device = device if device is not None else torch.device("cpu")
    in_channels = plans.num_channels
    previous = None
    if config.previous_stage:
        sibling = model_dir.parent / "__".join(model_dir.name.split("__")[:2] + [
            config.previous_stage])
        if not sibling.is_dir():
            raise NNSegError(f"{model_dir}: cascade stage needs {sibling}")
        previous = load_nnunet_model(sibling, folds, device, tta, step)
        in_channels += plans.num_classes - 1
    networks, axes = _fold_networks({f: available[f] for f in chosen}, config, in_channels,
                                    plans.num_classes, device)
    axes = axes if axes is not None else tuple(range(config.spatial_dims))
    settings = SlidingWindowSettings(config.patch_size, step=step,
                                     mirror_axes=axes if tta else (), output="logits",
                                     nnunet_numerics=True)
    model = LoadedModel(model_dir, plans, name, config, dict(plans.labels), networks, device,
                        settings, NNUNetPipeline(raw, cfg, plans), plans.num_channels, None,
                        previous, "nnunet", False, str(dataset.get("file_ending", ".nii.gz")))
    return dataclasses.replace(model, extra={"mirror_axes": axes})


__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "folder_configuration",
    "load_nnunet_checkpoint",
    "load_nnunet_model",
    "map_weights",
    "nnunet_folds",
    "resolved_configuration",
    "to_configuration_plan",
    "to_plans",
]
