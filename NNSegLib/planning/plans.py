"""The plan: a typed, versioned, human-readable document (``plans.json``).

A plan fully determines preprocessing, the network and training defaults of every
configuration. Its spatial tuples are in the plan's axis order: numpy's ``(z, y, x)`` (see
:mod:`NNSegLib.data.io`) permuted by :attr:`Plans.transpose_forward`, which puts the coarsest
axis first (identity for most scans). Preprocessing transposes each case that way and the
restoring functions transpose predictions back, so files on disk keep their own geometry.
2D configurations have 2-tuples (the last two axes) for patch, kernels and strides, while
``spacing`` and ``median_shape`` stay 3D.

Plans are frozen dataclasses: change them with :func:`dataclasses.replace` (or
:func:`apply_overrides`, which also records the change in ``Plans.overrides``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.util.atomic import write_json
from NNSegLib.util.json_files import load_document
from NNSegLib.util.options import coerce, parse_json_value

#: Every configuration a plan can hold, in the order they are planned and shown.
CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")

PLANS_VERSION = 2
#: Versions this NNSeg reads (1: before the axis order was recorded; read as identity).
READABLE_PLANS_VERSIONS = (1, 2)

RECIPES = ("paper", "v2")

NORMALIZATIONS = ("ct", "zscore", "none")


@dataclass(frozen=True)
class IntensityProperties:
    """Foreground intensity statistics of one channel (from the fingerprint)."""

    mean: float
    std: float
    percentile_00_5: float
    percentile_99_5: float
    min: float = 0.0
    max: float = 0.0
    median: float = 0.0


@dataclass(frozen=True)
class ConfigurationPlan:
    """One configuration (``2d``, ``3d_fullres``, ``3d_lowres``, ``3d_cascade_fullres``).

    Attributes:
        name: Configuration name.
        spatial_dims: 2 or 3.
        data_identifier: Folder name of its preprocessed data (the cascade's full-res stage
            shares ``3d_fullres``'s data).
        spacing: Target spacing ``(z, y, x)`` in mm.
        median_shape: Median image shape at target spacing ``(z, y, x)``.
        patch_size: Patch size (2 or 3 values).
        batch_size: Batch size.
        strides: Per stage down-sampling stride (first stage all ones).
        kernel_sizes: Per stage convolution kernel size.
        features_per_stage: Channels per encoder stage.
        n_conv_per_stage: Convolutions per encoder stage.
        n_conv_per_stage_decoder: Convolutions per decoder stage.
        batch_dice: Dice over the whole batch (True) or per sample (False).
        normalization: Per-channel scheme, ``"ct"`` or ``"zscore"`` or ``"none"``.
        use_mask_for_norm: Per channel: normalize only inside the nonzero mask.
        anisotropy_axis: Low-resolution axis handled separately when resampling, or None.
        resample_order_image: Spline order for images.
        resample_order_label: 0 = nearest, 1 = per-class linear then argmax.
        resample_order_z: Order along ``anisotropy_axis`` (images and labels).
        estimated_memory_gb: The planner's memory estimate for one training step.
        previous_stage: For a cascade stage: the configuration it takes as extra input.
        next_stage: For ``3d_lowres``: the cascade stage that follows.
    """

    name: str
    spatial_dims: int
    data_identifier: str
    spacing: tuple[float, ...]
    median_shape: tuple[int, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    features_per_stage: tuple[int, ...]
    n_conv_per_stage: int = 2
    n_conv_per_stage_decoder: int = 2
    batch_dice: bool = False
    normalization: tuple[str, ...] = ("zscore",)
    use_mask_for_norm: tuple[bool, ...] = (False,)
    anisotropy_axis: int | None = None
    resample_order_image: int = 3
    resample_order_label: int = 1
    resample_order_z: int = 0
    estimated_memory_gb: float = 0.0
    previous_stage: str | None = None
    next_stage: str | None = None

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    @property
    def is_cascade(self) -> bool:
        return self.previous_stage is not None

    def problems(self, num_channels: int | None = None) -> list[str]:
        """Everything that makes this configuration unusable (empty when it is valid).

        Args:
            num_channels: The plan's image channels (checks the per-channel fields).
        """
        out = [f"{name}: {p}" for name in _FIELD_RULES
               for p in _field_problems(name, getattr(self, name))]
        dims = self.spatial_dims
        if dims not in (2, 3):
            return out + [f"spatial_dims must be 2 or 3, got {dims}"]
        if len(self.patch_size) != dims:
            out.append(f"patch_size {list(self.patch_size)} needs {dims} values "
                       f"({self.name} is {dims}D)")
        if len(self.spacing) not in (dims, 3):
            out.append(f"spacing {list(self.spacing)} needs 3 values (z, y, x)")
        n = len(self.strides)
        if not n or not len(self.kernel_sizes) == len(self.features_per_stage) == n:
            out.append("strides, kernel_sizes and features_per_stage need one entry per stage")
        elif any(len(s) != dims for s in (*self.strides, *self.kernel_sizes)):
            out.append(f"every stride and kernel size needs {dims} values")
        elif len(self.patch_size) == dims:
            divisor = [1] * dims
            for stride in self.strides:
                divisor = [d * s for d, s in zip(divisor, stride)]
            if any(p % d for p, d in zip(self.patch_size, divisor)):
                out.append(f"patch_size {list(self.patch_size)} must be divisible by "
                           f"{divisor} (the network's down-sampling per axis)")
        if num_channels is not None:
            for name in ("normalization", "use_mask_for_norm"):
                if len(getattr(self, name)) != num_channels:
                    out.append(f"{name} needs one value per channel ({num_channels})")
        return out


@dataclass(frozen=True)
class Plans:
    """The whole plan of a dataset.

    Attributes:
        version: Schema version (:data:`PLANS_VERSION`).
        dataset_name: Name from ``dataset.json``.
        recipe: ``"paper"`` or ``"v2"``.
        memory_budget_gb: Memory budget the patch/batch were fitted to.
        channel_names: Channel index (as string) → name.
        labels: Label name → value (background 0).
        intensity_properties: Per channel (index as string) foreground statistics.
        configurations: Name → :class:`ConfigurationPlan`.
        overrides: Changes made by users after planning, in order
            (``{"field": "3d_fullres.batch_size", "old": 2, "new": 4}``).
        transpose_forward: Axis order of the plan: plan axis ``i`` is image axis
            ``transpose_forward[i]`` (numpy order), as nnU-Net's ``transpose_forward``.
    """

    dataset_name: str
    recipe: str
    memory_budget_gb: float
    channel_names: dict[str, str]
    labels: dict[str, int]
    intensity_properties: dict[str, IntensityProperties]
    configurations: dict[str, ConfigurationPlan]
    overrides: tuple[dict, ...] = ()
    transpose_forward: tuple[int, ...] = (0, 1, 2)
    version: int = PLANS_VERSION

    @property
    def transpose_backward(self) -> tuple[int, ...]:
        """The inverse permutation: image axis ``i`` is plan axis ``transpose_backward[i]``."""
        return inverse_permutation(self.transpose_forward)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1

    def configuration(self, name: str) -> ConfigurationPlan:
        """Return configuration ``name`` or raise a ``KeyError`` listing the known ones."""
        try:
            return self.configurations[name]
        except KeyError:
            raise KeyError(
                f"configuration {name!r} is not in the plan; it has {sorted(self.configurations)}"
            ) from None

    # --- JSON round trip -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = _to_jsonable(dataclasses.asdict(self))
        d["transpose_backward"] = list(self.transpose_backward)  # for people reading it
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plans:
        version = d.get("version")
        if version not in READABLE_PLANS_VERSIONS:
            raise ValueError(
                f"plans version {version!r} is not supported (this NNSeg reads "
                f"{', '.join(map(str, READABLE_PLANS_VERSIONS))}); re-run `nnseg plan`"
            )
        forward = tuple(int(v) for v in d.get("transpose_forward", (0, 1, 2)))
        if sorted(forward) != [0, 1, 2]:
            raise ValueError(f"transpose_forward {list(forward)} is not an order of the axes "
                             "0, 1, 2")
        backward = d.get("transpose_backward")
        if backward is not None and tuple(backward) != inverse_permutation(forward):
            raise ValueError(f"transpose_backward {list(backward)} does not undo "
                             f"transpose_forward {list(forward)}")
        configs = {k: _config_from_dict(v) for k, v in d["configurations"].items()}
        for name, config in configs.items():
            problems = config.problems(len(d["channel_names"]))
            if problems:
                raise ValueError(f"configuration {name!r}: " + "; ".join(problems))
        intensity = {
            str(k): IntensityProperties(**v) for k, v in d.get("intensity_properties", {}).items()
        }
        return cls(
            dataset_name=d["dataset_name"],
            recipe=d["recipe"],
            memory_budget_gb=float(d["memory_budget_gb"]),
            channel_names={str(k): str(v) for k, v in d["channel_names"].items()},
            labels={str(k): int(v) for k, v in d["labels"].items()},
            intensity_properties=intensity,
            configurations=configs,
            overrides=tuple(d.get("overrides", ())),
            transpose_forward=forward,
        )

    def save(self, path: Path | str) -> None:
        """Write ``plans.json`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str, hint: str | None = "nnseg plan") -> Plans:
        """Read ``plans.json``.

        Raises:
            NNSegError: naming the file when it is missing or not a valid plan (``hint`` is the
                command that writes it).
        """
        return load_document(path, cls.from_dict, what="NNSeg plans file", hint=hint)


def inverse_permutation(order: Sequence[int]) -> tuple[int, ...]:
    """The permutation that undoes ``order`` (``np.transpose`` by one, then the other)."""
    return tuple(int(i) for i in np.argsort(np.asarray(order)))


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    return obj


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def _config_from_dict(d: dict[str, Any]) -> ConfigurationPlan:
    fields = {f.name: f for f in dataclasses.fields(ConfigurationPlan)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown configuration fields {sorted(unknown)}")
    return ConfigurationPlan(**{k: coerce(_tuplify(v), str(fields[k].type), k)
                                for k, v in d.items()})


#: Per-field ranges checked as soon as a value is given (structure: ``problems``).
_FIELD_RULES: dict[str, tuple[str, Any]] = {
    "batch_size": ("int>=", 1), "patch_size": ("each>=", 1), "spacing": ("each>", 0.0),
    "median_shape": ("each>=", 1), "strides": ("each_each>=", 1),
    "kernel_sizes": ("each_each>=", 1), "features_per_stage": ("each>=", 1),
    "n_conv_per_stage": ("int>=", 1), "n_conv_per_stage_decoder": ("int>=", 1),
    "normalization": ("each_in", NORMALIZATIONS), "anisotropy_axis": ("in", (None, 0, 1, 2)),
    "resample_order_image": ("in", tuple(range(6))),
    "resample_order_label": ("in", tuple(range(6))), "resample_order_z": ("in", tuple(range(6))),
    "estimated_memory_gb": ("num>=", 0.0),
    "previous_stage": ("in", (None, *CONFIGURATIONS)),
    "next_stage": ("in", (None, *CONFIGURATIONS)),
}


def _field_problems(name: str, value: Any) -> list[str]:
    rule = _FIELD_RULES.get(name)
    if rule is None:
        return []
    kind, limit = rule
    if kind == "in":
        ok = value in limit
        wanted = " or ".join("null" if v is None else str(v) for v in limit)
    elif kind == "each_in":
        ok = all(v in limit for v in value)
        wanted = "each one of " + ", ".join(limit)
    elif kind in ("int>=", "num>="):
        ok, wanted = value >= limit, f">= {limit}"
    elif kind == "each>=":
        ok, wanted = all(v >= limit for v in value), f"values >= {limit}"
    elif kind == "each>":
        ok, wanted = all(v > limit for v in value), f"values > {limit}"
    else:  # each_each>=
        ok, wanted = all(v >= limit for row in value for v in row), f"values >= {limit}"
    return [] if ok else [f"must be {wanted}, got {_to_jsonable(value)}"]


def parse_override(assignment: str) -> tuple[str, str, Any]:
    """Split and check ``"CONFIG.FIELD=VALUE"``: field known, value of the field's type
    and in its range (the moment it is given; see :func:`apply_overrides`).

    Returns:
        ``(configuration or "*", field, value)``.

    Raises:
        ValueError: naming the override and what is wrong with it.
    """
    key, sep, value_text = assignment.partition("=")
    cfg_name, dot, field_name = key.strip().partition(".")
    if not sep or not dot or not cfg_name:
        raise ValueError(f"{assignment!r}: expected CONFIG.FIELD=VALUE")
    fields = {f.name: f for f in dataclasses.fields(ConfigurationPlan)}
    if field_name not in fields or field_name == "name":
        raise ValueError(f"{assignment!r}: unknown field {field_name!r}; fields: "
                         f"{', '.join(sorted(set(fields) - {'name'}))}")
    if cfg_name != "*" and cfg_name not in CONFIGURATIONS:
        raise ValueError(f"{assignment!r}: unknown configuration {cfg_name!r}; "
                         f"choose from {', '.join(CONFIGURATIONS)} or *")
    try:
        value = coerce(_tuplify(parse_json_value(value_text.strip())),
                       str(fields[field_name].type), field_name)
    except ValueError as e:
        raise ValueError(f"{assignment!r}: {e}") from None
    problems = _field_problems(field_name, value)
    if problems:
        raise ValueError(f"{assignment!r}: {field_name} {problems[0]}")
    return cfg_name, field_name, value


def apply_overrides(plans: Plans, assignments: list[str]) -> Plans:
    """Apply ``"CONFIG.FIELD=VALUE"`` overrides (VALUE is JSON) and record each one.

    ``CONFIG`` may be ``*`` for every configuration. Examples:
    ``3d_fullres.batch_size=4``, ``*.patch_size=[32,48,32]``. Each value is checked against
    the field's type and range, then the changed configuration as a whole.

    Raises:
        ValueError: for an unknown configuration or field, a value of the wrong type or
            range, or a configuration the change makes inconsistent.
    """
    configs = dict(plans.configurations)
    records = list(plans.overrides)
    for assignment in assignments:
        try:
            cfg_name, field_name, value = parse_override(assignment)
        except ValueError as e:
            raise ValueError(f"override {e}") from None
        targets = sorted(configs) if cfg_name == "*" else [cfg_name]
        for name in targets:
            if name not in configs:
                raise ValueError(f"override {assignment!r}: no configuration {name!r} in the "
                                 f"plan (it has {', '.join(sorted(configs))})")
            old = getattr(configs[name], field_name)
            configs[name] = dataclasses.replace(configs[name], **{field_name: value})
            problems = configs[name].problems(plans.num_channels)
            if problems:
                raise ValueError(f"override {assignment!r}: {name}: " + "; ".join(problems))
            records.append({"field": f"{name}.{field_name}", "old": _to_jsonable(old),
                            "new": _to_jsonable(value)})
    return dataclasses.replace(plans, configurations=configs, overrides=tuple(records))


__all__ = [
    "PLANS_VERSION",
    "READABLE_PLANS_VERSIONS",
    "inverse_permutation",
    "RECIPES",
    "ConfigurationPlan",
    "IntensityProperties",
    "Plans",
    "apply_overrides",
    "parse_override",
]
