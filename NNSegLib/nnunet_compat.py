"""Predict with nnU-Net v2 model folders (``nnseg predict -m <nnU-Net results folder>``).

An nnU-Net v2 results folder (``<Trainer>__<Plans>__<config>/``) holds ``plans.json``,
``dataset.json`` and ``fold_<k>/checkpoint_final.pth``. This module maps its plan onto
NNSeg's :class:`~NNSegLib.plans.ConfigurationPlan` and network, and reproduces nnU-Net's
own inference path so that label maps agree with ``nnUNetv2_predict``:

- preprocessing in nnU-Net's order: transpose, crop to the hole-filled nonzero box,
  normalize (before resampling), resample (spline order 3 with edge mode and clipping to the
  input range, the anisotropic axis separately with order 0), see
  :func:`resample_like_nnunet`;
- logits (not probabilities) are averaged over mirrors, patches and folds; the centre of
  the Gaussian map differs by at most half a voxel from nnU-Net's;
- logits are resampled back (order 1, class by class), then softmax/argmax, then
  uncropped and transposed back.

Checkpoints are read with ``torch.load(weights_only=True)`` plus an explicit allow-list of
harmless types (numpy scalars and dtypes) - never plain unpickling. nnunetv2 itself is
never imported. Architectures other than ``PlainConvUNet`` (e.g. ResEnc) and region-based
labels are refused with an :class:`~NNSegLib.errors.NNSegError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from NNSegLib.errors import NNSegError
from NNSegLib.plans import ConfigurationPlan, IntensityProperties, Plans

SUPPORTED_ARCHITECTURES = ("dynamic_network_architectures.architectures.unet.PlainConvUNet",)
ANISOTROPY_THRESHOLD = 3.0
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


# --- resampling and normalization as nnU-Net does them --------------------------------------

def _resize(image: np.ndarray, new_shape: Sequence[int], order: int) -> np.ndarray:
    """Spline resize with voxel-centre alignment, edge replication, clipped to the input range."""
    image = np.asarray(image, dtype=np.float64)
    zoom = [1.0 / (s / n) for s, n in zip(image.shape, new_shape)]
    out = ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)
    if tuple(out.shape) != tuple(new_shape):
        raise NNSegError(f"internal resize error: {out.shape} != {tuple(new_shape)}")
    if order > 0:
        np.clip(out, image.min(), image.max(), out=out)
    return out


def separate_z_axis(current: Sequence[float], new: Sequence[float],
                    force: bool | None = None) -> int | None:
    """nnU-Net's choice of the axis resampled on its own (``None``: resample jointly)."""
    def lowres(spacing):
        sp = np.asarray(spacing, dtype=np.float64)
        axes = np.where(sp.max() / sp == 1)[0]
        return int(axes[0]) if len(axes) == 1 else None

    def anisotropic(spacing):
        return np.max(spacing) / np.min(spacing) > ANISOTROPY_THRESHOLD

    if force is not None:
        return lowres(current) if force else None
    if anisotropic(current):
        return lowres(current)
    if anisotropic(new):
        return lowres(new)
    return None


def _along_axis(volume: np.ndarray, new_shape: Sequence[int], axis: int,
                order: int, order_z: int) -> np.ndarray:
    in_plane = [s for i, s in enumerate(new_shape) if i != axis]
    moved = np.moveaxis(volume, axis, 0)
    planes = np.stack([_resize(plane, in_plane, order) for plane in moved])
    planes = np.moveaxis(planes, 0, axis)
    if planes.shape[axis] == new_shape[axis]:
        return planes
    grids = np.meshgrid(*[(np.arange(n) + 0.5) * (s / n) - 0.5
                          for s, n in zip(planes.shape, new_shape)], indexing="ij")
    return ndimage.map_coordinates(planes, np.stack(grids), order=order_z, mode="nearest")


def resample_like_nnunet(data: np.ndarray, new_shape: Sequence[int],
                         current_spacing: Sequence[float], new_spacing: Sequence[float],
                         order: int = 3, order_z: int = 0,
                         force_separate_z: bool | None = None) -> np.ndarray:
    """Resample ``(C, z, y, x)`` data channel by channel the way nnU-Net v2 does by default.

    Returns the input unchanged when the shape does not change; otherwise float32 (or the
    input's float dtype) computed in float64.
    """
    new_shape = tuple(int(v) for v in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data
    axis = separate_z_axis(current_spacing, new_spacing, force_separate_z)
    out = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        if axis is None:
            out[c] = _resize(data[c], new_shape, order)
        else:
            out[c] = _along_axis(np.asarray(data[c], np.float64), new_shape, axis, order,
                                 order_z)
    return out


def _zscore(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    if mask is not None:
        mean, std = image[mask].mean(), image[mask].std()
        image[mask] = (image[mask] - mean) / max(std, 1e-8)
        return image
    mean, std = image.mean(), image.std()
    image -= mean
    image /= max(std, 1e-8)
    return image


def _ct(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
    image -= props["mean"]
    image /= max(props["std"], 1e-8)
    return image


def _rescale01(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    image -= image.min()
    image /= np.clip(image.max(), a_min=1e-8, a_max=None)
    return image


def _rgb01(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    return image / 255.0


#: nnU-Net normalization scheme name → function(image, mask or None, intensity properties).
NORMALIZERS = {
    "ZScoreNormalization": _zscore,
    "CTNormalization": _ct,
    "NoNormalization": lambda image, mask, props: image,
    "RescaleTo01Normalization": _rescale01,
    "RGBTo01Normalization": _rgb01,
}


def resize_segmentation(seg: np.ndarray, new_shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Label map resize as nnU-Net does: per label, interpolate its mask, threshold at 0.5."""
    if tuple(seg.shape) == tuple(new_shape):
        return seg
    if order == 0:
        return _resize(seg.astype(np.float64), new_shape, 0).astype(seg.dtype)
    out = np.zeros(tuple(new_shape), dtype=seg.dtype)
    for value in np.unique(seg):
        out[_resize((seg == value).astype(np.float64), new_shape, order) >= 0.5] = value
    return out


# --- the case pipeline --------------------------------------------------------------------

class NNUNetPipeline:
    """nnU-Net v2's preprocessing and export for one configuration (see the module doc)."""

    output = "logits"

    def __init__(self, raw_plans: dict, cfg: dict, plans: Plans) -> None:
        self.transpose_forward = [int(v) for v in raw_plans.get("transpose_forward", [0, 1, 2])]
        self.transpose_backward = [int(v) for v in raw_plans.get("transpose_backward",
                                                                 [0, 1, 2])]
        self.cfg = cfg
        self.intensity = raw_plans.get("foreground_intensity_properties_per_channel", {})
        self.num_classes = plans.num_classes
        for scheme in cfg.get("normalization_schemes", []):
            if scheme not in NORMALIZERS:
                raise NNSegError(f"normalization {scheme!r} is not supported "
                                 f"(known: {sorted(NORMALIZERS)})")

    def _target_spacing(self, spacing: Sequence[float]) -> list[float]:
        target = [float(v) for v in self.cfg["spacing"]]
        return target if len(target) == 3 else [float(spacing[0]), *target]

    def _normalize(self, data: np.ndarray, nonzero: np.ndarray) -> np.ndarray:
        for c in range(data.shape[0]):
            scheme = self.cfg["normalization_schemes"][c]
            use_mask = bool(self.cfg.get("use_mask_for_norm", [False] * data.shape[0])[c])
            mask = nonzero if use_mask and scheme == "ZScoreNormalization" else None
            data[c] = NORMALIZERS[scheme](data[c], mask, self.intensity.get(str(c), {}))
        return data

    def preprocess(self, images: np.ndarray, geometry, seg: np.ndarray | None = None):
        """Return ``(data, seg or None, properties)`` on nnU-Net's preprocessed grid."""
        tf = self.transpose_forward
        data = np.asarray(images, dtype=np.float32).transpose([0, *[i + 1 for i in tf]]).copy()
        spacing = [float(geometry.spacing[i]) for i in tf]
        shape_before = tuple(data.shape[1:])
        mask = ndimage.binary_fill_holes(np.any(data != 0, axis=0))
        box = _bbox(mask)
        data = data[(slice(None), *box)]
        mask = mask[box]
        target = self._target_spacing(spacing)
        new_shape = [int(round(s / t * n)) for s, t, n in zip(spacing, target, data.shape[1:])]
        data = self._normalize(data, mask)
        kwargs = self.cfg.get("resampling_fn_data_kwargs", {})
        data = resample_like_nnunet(data, new_shape, spacing, target, int(kwargs.get("order", 3)),
                                    int(kwargs.get("order_z", 0)), kwargs.get("force_separate_z"))
        if seg is not None:
            seg = np.asarray(seg)
            seg = seg.reshape(seg.shape[-3:])
            seg = seg.transpose(tf)[box].astype(np.int16)
            seg[(seg == 0) & ~mask] = -1
            seg = resize_segmentation(seg, new_shape, int(
                self.cfg.get("resampling_fn_seg_kwargs", {}).get("order", 1)))[None]
        properties = {"shape_before_cropping": list(shape_before),
                      "bbox": [[s.start, s.stop] for s in box],
                      "shape_after_crop": list(mask.shape), "spacing": spacing,
                      "shape_after_resample": list(new_shape)}
        return data, seg, properties

    def _logits_on_crop(self, logits, properties: dict) -> np.ndarray:
        logits = logits.numpy() if hasattr(logits, "numpy") else np.asarray(logits)
        kwargs = self.cfg.get("resampling_fn_probabilities_kwargs", {})
        spacing = properties["spacing"]
        return resample_like_nnunet(logits, properties["shape_after_crop"],
                                    self._target_spacing(spacing), spacing,
                                    int(kwargs.get("order", 1)), int(kwargs.get("order_z", 0)),
                                    kwargs.get("force_separate_z"))

    def _uncrop(self, array: np.ndarray, properties: dict, fill_background: bool) -> np.ndarray:
        lead = array.shape[:-3]
        out = np.zeros((*lead, *properties["shape_before_cropping"]), dtype=array.dtype)
        if fill_background:
            out[0] = 1
        out[(Ellipsis, *[slice(a, b) for a, b in properties["bbox"]])] = array
        axes = [i + len(lead) for i in self.transpose_backward]
        return out.transpose([*range(len(lead)), *axes])

    def restore_labels(self, logits, properties: dict) -> np.ndarray:
        """Averaged logits → label map on the original grid."""
        labels = np.argmax(self._logits_on_crop(logits, properties), axis=0)
        dtype = np.uint8 if self.num_classes <= 256 else np.uint16
        return self._uncrop(labels.astype(dtype), properties, False)

    def restore_probabilities(self, logits, properties: dict) -> np.ndarray:
        """Averaged logits → softmax probabilities ``(K, z, y, x)`` on the original grid."""
        import torch

        crop = torch.from_numpy(np.ascontiguousarray(self._logits_on_crop(logits, properties)))
        probs = torch.softmax(crop.float(), dim=0).numpy()
        return self._uncrop(probs, properties, True)


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.where(np.any(mask, axis=other))[0]
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


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

    try:
        with torch.serialization.safe_globals(_safe_types()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise NNSegError(f"{path}: cannot be read without unpickling arbitrary objects ({e})"
                         ) from e
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise NNSegError(f"{path}: not an nnU-Net v2 checkpoint (no 'network_weights')")
    return ckpt


def map_weights(nnunet_weights: dict, our_names: Sequence[str], path: Path) -> dict:
    """Rename nnU-Net ``PlainConvUNet`` weights to NNSeg's names (aliases are ignored)."""
    from NNSegLib.network import nnunet_name

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
    if not path.is_file():
        raise NNSegError(f"{path}: missing; an nnU-Net model folder needs plans.json and "
                         "dataset.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NNSegError(f"{path}: unreadable ({e})") from e
    if not isinstance(data, dict):
        raise NNSegError(f"{path}: expected a JSON object")
    return data


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
    from NNSegLib.model import network_from_state
    from NNSegLib.network import NetworkOptions, build_network

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
    """Load an nnU-Net v2 results folder as a :class:`~NNSegLib.model.LoadedModel`.

    Raises:
        NNSegError: for unsupported architectures/labels, missing folds or files.
    """
    import dataclasses

    import torch

    from NNSegLib.model import LoadedModel, choose_folds
    from NNSegLib.sliding_window import SlidingWindowSettings

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
    "NNUNetPipeline",
    "NORMALIZERS",
    "SUPPORTED_ARCHITECTURES",
    "folder_configuration",
    "load_nnunet_checkpoint",
    "load_nnunet_model",
    "map_weights",
    "nnunet_folds",
    "resample_like_nnunet",
    "resize_segmentation",
    "resolved_configuration",
    "separate_z_axis",
    "to_configuration_plan",
    "to_plans",
]
