"""METHOD §2: derive ``plans.json`` from the dataset fingerprint (``nnseg plan``).

Axis order is numpy's ``(z, y, x)`` throughout (as SimpleITK's ``GetArrayFromImage`` and
nnU-Net v2 both use), so Dataset004_Hippocampus' median image is 36×50×35 and its v2
3d_fullres patch 40×56×40.

Steps (constants of a recipe live in :class:`Recipe`, registry :data:`RECIPE_REGISTRY`):

1. **Target spacing**: per-axis median of the case spacings. If the coarsest axis is at
   least ``anisotropy_threshold`` (3) times the finest *and* has few voxels (median voxels
   × 3 < the other axes' median voxels), it takes the 10th percentile of that axis'
   spacings instead (never finer than the other axes).
2. **Patch and topology** (:func:`fit_patch`): start from the median image shape at the
   target spacing; while the memory estimate (:mod:`NNSegLib.planning.memory`) at the minimum batch
   exceeds the budget or the patch has more than 128³ (2D: 256²) voxels, shrink the axis
   whose patch is largest relative to the median shape (ties: the longer axis in mm) by its
   divisor. Topology per :mod:`NNSegLib.planning.topology`.
3. **Batch** (:func:`fit_batch`): the largest batch that fits the budget (≥ 2), capped so
   one batch holds at most 5 % of all dataset voxels (at the target spacing) and, for 2D
   in the paper recipe, at 42.
4. **Configurations**: ``2d`` (same spacing and preprocessed data as ``3d_fullres``),
   ``3d_fullres``, and ``3d_lowres`` + ``3d_cascade_fullres`` when the full-res patch
   covers less than a quarter of the median image. The low-res spacing grows by
   ``lowres_factor`` per step (paper: ×2, v2: ×1.03) — only along axes finer than half the
   coarsest while there are any, then along all — until the patch covers a quarter.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.planning.fingerprint import Fingerprint
from NNSegLib.planning.memory import MemoryModel, estimate_memory_gb
from NNSegLib.planning.plans import (
    CONFIGURATIONS,
    ConfigurationPlan,
    Plans,
    apply_overrides,
    parse_override,
)
from NNSegLib.planning.topology import Topology, plan_topology
from NNSegLib.util import options
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress


@dataclass(frozen=True)
class Recipe:
    """Every constant the planner uses (METHOD §2 defaults)."""

    name: str
    base_features: int
    min_feature_map: int
    lowres_factor: float
    max_batch_2d: int | None
    max_batch_3d: int | None = None
    max_features_3d: int = 320
    max_features_2d: int = 512
    max_pools: int = 5
    max_patch_voxels_3d: int = 128 ** 3
    max_patch_voxels_2d: int = 256 ** 2
    anisotropy_threshold: float = 3.0
    kernel_anisotropy_ratio: float = 2.0
    lowres_min_coverage: float = 0.25
    max_dataset_fraction: float = 0.05
    min_batch: int = 2
    mask_crop_threshold: float = 0.75
    memory: MemoryModel = field(default_factory=MemoryModel)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "memory": self.memory.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(**{**d, "memory": MemoryModel.from_dict(d.get("memory", {}))})


RECIPE_REGISTRY: dict[str, Recipe] = {
    "paper": Recipe("paper", base_features=30, min_feature_map=8, lowres_factor=2.0,
                    max_batch_2d=42),
    "v2": Recipe("v2", base_features=32, min_feature_map=4, lowres_factor=1.03,
                 max_batch_2d=None),
}


@dataclass(frozen=True)
class _Context:
    """What every configuration's fitting needs besides spacing and shape."""

    recipe: Recipe
    budget_gb: float
    in_channels: int
    num_classes: int


# --- spacing and shapes ----------------------------------------------------------------
def fullres_spacing(
    fingerprint: Fingerprint, recipe: Recipe,
) -> tuple[tuple[float, ...], int | None]:
    """Target spacing and the anisotropic (low-resolution) axis, if any."""
    spacings = np.asarray(fingerprint.spacings, dtype=np.float64)
    target = np.median(spacings, axis=0)
    voxels = np.median(np.asarray(fingerprint.shapes_after_crop, dtype=np.float64), axis=0)
    axis = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != axis]
    if target[axis] < recipe.anisotropy_threshold * target.min():
        return tuple(float(s) for s in target), None
    if voxels[axis] * recipe.anisotropy_threshold < voxels[others].min():
        finest_other = float(target[others].max())
        target[axis] = max(float(np.percentile(spacings[:, axis], 10)), finest_other)
    return tuple(float(s) for s in target), axis


def shapes_at(fingerprint: Fingerprint, spacing: Sequence[float]) -> np.ndarray:
    """Each case's cropped shape resampled to ``spacing``, ``(N, 3)`` integers."""
    shapes = np.asarray(fingerprint.shapes_after_crop, dtype=np.float64)
    spacings = np.asarray(fingerprint.spacings, dtype=np.float64)
    return np.maximum(np.round(shapes * spacings / np.asarray(spacing)), 1).astype(np.int64)


def median_shape(shapes: np.ndarray) -> tuple[int, ...]:
    return tuple(int(round(v)) for v in np.median(shapes, axis=0))


# --- patch, topology, batch ------------------------------------------------------------
def _topology(patch: Sequence[int], spacing: Sequence[float], ctx: _Context) -> Topology:
    r = ctx.recipe
    cap = r.max_features_3d if len(patch) == 3 else r.max_features_2d
    return plan_topology(patch, spacing, r.min_feature_map, r.max_pools, r.base_features, cap,
                         r.kernel_anisotropy_ratio)


def _memory(topology: Topology, batch: int, ctx: _Context) -> float:
    return estimate_memory_gb(topology, batch, ctx.in_channels, ctx.num_classes,
                              model=ctx.recipe.memory)


def fit_patch(median: Sequence[int], spacing: Sequence[float], ctx: _Context) -> Topology:
    """Shrink the median shape until the minimum batch fits the budget (module docstring)."""
    dims = len(median)
    max_voxels = ctx.recipe.max_patch_voxels_3d if dims == 3 else ctx.recipe.max_patch_voxels_2d
    topo = _topology([max(1, int(m)) for m in median], spacing, ctx)
    for _ in range(100000):
        if (math.prod(topo.patch_size) <= max_voxels
                and _memory(topo, ctx.recipe.min_batch, ctx) <= ctx.budget_gb):
            return topo
        patch = list(topo.patch_size)
        axes = [a for a in range(dims) if patch[a] > 1]
        if not axes:
            break
        a = max(axes, key=lambda i: (patch[i] / max(median[i], 1), patch[i] * spacing[i]))
        step = topo.divisor[a] if patch[a] > topo.divisor[a] else max(1, patch[a] // 2)
        patch[a] -= step
        topo = _topology(patch, spacing, ctx)
    raise NNSegError(
        f"no patch fits a memory budget of {ctx.budget_gb} GB even at the smallest size; "
        "raise --gpu-memory-gb"
    )


def fit_batch(topology: Topology, total_voxels: float, ctx: _Context) -> int:
    """Largest batch that fits the budget, capped at 5 % of the dataset (module docstring)."""
    r = ctx.recipe
    fixed = _memory(topology, 0, ctx)
    per_sample = _memory(topology, 1, ctx) - fixed
    by_memory = int((ctx.budget_gb - fixed) // per_sample) if per_sample > 0 else 10 ** 6
    by_data = int(r.max_dataset_fraction * total_voxels // math.prod(topology.patch_size))
    batch = min(by_memory, by_data)
    cap = r.max_batch_3d if len(topology.patch_size) == 3 else r.max_batch_2d
    if cap is not None:
        batch = min(batch, cap)
    return max(r.min_batch, batch)


def lowres_spacing_steps(spacing: Sequence[float], factor: float) -> tuple[float, ...]:
    """One low-res step: coarsen axes finer than half the coarsest, or all axes if none."""
    sp = np.asarray(spacing, dtype=np.float64)
    fine = sp < sp.max() / 2
    if fine.any():
        sp[fine] *= factor
    else:
        sp *= factor
    return tuple(float(s) for s in sp)


# --- configurations --------------------------------------------------------------------
def _common_fields(fingerprint: Fingerprint, recipe: Recipe,
                   anisotropy_axis: int | None) -> dict:
    names = [fingerprint.channel_names[k] for k in sorted(fingerprint.channel_names, key=int)]
    schemes = tuple("ct" if n.strip().lower() == "ct" else "zscore" for n in names)
    shrank = fingerprint.median_relative_size_after_cropping < recipe.mask_crop_threshold
    return {
        "normalization": schemes,
        "use_mask_for_norm": tuple(bool(shrank and s == "zscore") for s in schemes),
        "anisotropy_axis": anisotropy_axis,
        "resample_order_image": 3,
        "resample_order_label": 1,
        "resample_order_z": 0,
    }


def _plan_3d(name: str, spacing: tuple[float, ...], shapes: np.ndarray, ctx: _Context,
             common: dict, data_identifier: str, batch_dice: bool) -> ConfigurationPlan:
    median = median_shape(shapes)
    topo = fit_patch(median, spacing, ctx)
    batch = fit_batch(topo, float(np.prod(shapes, axis=1).sum()), ctx)
    return ConfigurationPlan(
        name=name, spatial_dims=3, data_identifier=data_identifier, spacing=spacing,
        median_shape=median, patch_size=topo.patch_size, batch_size=batch,
        strides=topo.strides, kernel_sizes=topo.kernel_sizes,
        features_per_stage=topo.features_per_stage, batch_dice=batch_dice,
        estimated_memory_gb=round(_memory(topo, batch, ctx), 3), **common,
    )


def _plan_2d(spacing: tuple[float, ...], shapes: np.ndarray, ctx: _Context,
             common: dict) -> ConfigurationPlan:
    median = median_shape(shapes)
    topo = fit_patch(median[1:], spacing[1:], ctx)
    total_slices_voxels = float(np.prod(shapes, axis=1).sum())
    batch = fit_batch(topo, total_slices_voxels, ctx)
    return ConfigurationPlan(
        name="2d", spatial_dims=2, data_identifier="3d_fullres", spacing=spacing,
        median_shape=median, patch_size=topo.patch_size, batch_size=batch,
        strides=topo.strides, kernel_sizes=topo.kernel_sizes,
        features_per_stage=topo.features_per_stage, batch_dice=True,
        estimated_memory_gb=round(_memory(topo, batch, ctx), 3), **common,
    )


def _plan_lowres(fingerprint: Fingerprint, fullres: tuple[float, ...], ctx: _Context,
                 common: dict) -> ConfigurationPlan:
    spacing = fullres
    for _ in range(10000):
        spacing = lowres_spacing_steps(spacing, ctx.recipe.lowres_factor)
        shapes = shapes_at(fingerprint, spacing)
        median = median_shape(shapes)
        topo = fit_patch(median, spacing, ctx)
        if math.prod(topo.patch_size) >= ctx.recipe.lowres_min_coverage * math.prod(median):
            break
    lowres = _plan_3d("3d_lowres", spacing, shapes, ctx, common, "3d_lowres", True)
    return dataclasses.replace(lowres, next_stage="3d_cascade_fullres")


def plan_dataset(
    fingerprint: Fingerprint,
    recipe: str = "paper",
    memory_gb: float = 8.0,
    configurations: Sequence[str] | None = None,
) -> Plans:
    """Plan every (or the requested) configuration of a dataset.

    Args:
        fingerprint: The dataset fingerprint.
        recipe: ``"paper"`` or ``"v2"`` (see :data:`RECIPE_REGISTRY`).
        memory_gb: Device memory budget for one training step.
        configurations: Subset of :data:`CONFIGURATIONS`; ``3d_lowres`` and
            ``3d_cascade_fullres`` are only planned when the dataset needs them.

    Returns:
        The :class:`~NNSegLib.planning.plans.Plans`.
    """
    if recipe not in RECIPE_REGISTRY:
        raise NNSegError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPE_REGISTRY)}")
    wanted = list(configurations) if configurations else list(CONFIGURATIONS)
    unknown = [c for c in wanted if c not in CONFIGURATIONS]
    if unknown:
        raise NNSegError(f"unknown configurations {unknown}; choose from {list(CONFIGURATIONS)}")
    if not fingerprint.cases:
        raise NNSegError(f"fingerprint of {fingerprint.dataset_name!r} has no cases")
    r = RECIPE_REGISTRY[recipe]
    ctx = _Context(r, float(memory_gb), len(fingerprint.channel_names),
                   max(fingerprint.labels.values()) + 1)
    spacing, aniso = fullres_spacing(fingerprint, r)
    common = _common_fields(fingerprint, r, aniso)
    shapes = shapes_at(fingerprint, spacing)
    is_2d_data = bool(np.all(shapes[:, 0] == 1))
    configs: dict[str, ConfigurationPlan] = {}
    if "2d" in wanted:
        configs["2d"] = _plan_2d(spacing, shapes, ctx, common)
    if not is_2d_data and any(c in wanted for c in CONFIGURATIONS if c != "2d"):
        full = _plan_3d("3d_fullres", spacing, shapes, ctx, common, "3d_fullres", False)
        if "3d_fullres" in wanted:
            configs["3d_fullres"] = full
        coverage = math.prod(full.patch_size) / math.prod(full.median_shape)
        if coverage < r.lowres_min_coverage and ("3d_lowres" in wanted
                                                 or "3d_cascade_fullres" in wanted):
            low = _plan_lowres(fingerprint, spacing, ctx, common)
            if "3d_cascade_fullres" not in wanted:
                low = dataclasses.replace(low, next_stage=None)
            configs["3d_lowres"] = low
            if "3d_cascade_fullres" in wanted:
                configs["3d_cascade_fullres"] = dataclasses.replace(
                    full, name="3d_cascade_fullres", previous_stage="3d_lowres")
    if not configs:
        raise NNSegError(f"none of {wanted} applies to {fingerprint.dataset_name!r}"
                         + (" (2D images: plan '2d')" if is_2d_data else ""))
    return Plans(
        dataset_name=fingerprint.dataset_name, recipe=recipe, memory_budget_gb=float(memory_gb),
        channel_names=dict(fingerprint.channel_names), labels=dict(fingerprint.labels),
        intensity_properties=dict(fingerprint.intensity_properties), configurations=configs,
    )


# --- table -----------------------------------------------------------------------------
def _x(values: Sequence) -> str:
    return "×".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _rows(cfg: ConfigurationPlan) -> dict[str, str]:
    pools = [sum(1 for s in cfg.strides if s[a] > 1) for a in range(len(cfg.patch_size))]
    first_kernels = [_x(k) for k in cfg.kernel_sizes[:3]]
    return {
        "data": cfg.data_identifier,
        "spacing (mm)": _x([round(s, 4) for s in cfg.spacing]),
        "median shape": _x(cfg.median_shape),
        "patch": _x(cfg.patch_size),
        "batch": str(cfg.batch_size),
        "stages": str(cfg.num_stages),
        "pooling per axis": _x(pools),
        "kernels (first 3)": ", ".join(first_kernels),
        "features": f"{cfg.features_per_stage[0]}…{cfg.features_per_stage[-1]}",
        "batch dice": str(cfg.batch_dice),
        "normalization": ",".join(cfg.normalization),
        "mask for norm": ",".join(str(m) for m in cfg.use_mask_for_norm),
        "est. memory (GB)": f"{cfg.estimated_memory_gb:.2f}",
        "previous/next": f"{cfg.previous_stage or '-'}/{cfg.next_stage or '-'}",
    }


def format_plans_table(plans: Plans) -> str:
    """A readable table: one column per configuration, one row per planned quantity."""
    names = list(plans.configurations)
    columns = [_rows(plans.configurations[n]) for n in names]
    if not columns:
        return f"{plans.dataset_name}: no configurations"
    keys = list(columns[0])
    head_w = max(len(k) for k in keys)
    widths = [max(len(n), *(len(c[k]) for k in keys)) for n, c in zip(names, columns)]
    lines = [f"{plans.dataset_name} — recipe {plans.recipe}, budget {plans.memory_budget_gb:g} GB",
             " " * head_w + "  " + "  ".join(n.ljust(w) for n, w in zip(names, widths))]
    for k in keys:
        cells = "  ".join(c[k].ljust(w) for c, w in zip(columns, widths))
        lines.append(k.ljust(head_w) + "  " + cells)
    for o in plans.overrides:
        lines.append(f"override {o['field']}: {o['old']} -> {o['new']}")
    return "\n".join(lines)


# --- CLI -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="raw dataset folder (nnU-Net v2 layout)")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (default ./nnseg_work/<dataset folder name>)")
    parser.add_argument("--recipe", choices=sorted(RECIPE_REGISTRY), default="paper",
                        help="planning recipe: 2018 paper (default) or nnU-Net v2")
    parser.add_argument("--gpu-memory-gb", type=options.positive_number, default=8.0,
                        help="device memory budget for one training step in GB (default 8)")
    parser.add_argument("--configurations", nargs="+", choices=CONFIGURATIONS, default=None,
                        help="configurations to plan (default: all the dataset needs)")
    parser.add_argument("--override", nargs="+", default=[], metavar="CONFIG.FIELD=VALUE",
                        type=options.checked(_checked_override),
                        help="change planned values, e.g. 3d_fullres.batch_size=4 (JSON values;"
                             " CONFIG may be *); recorded in plans.json")


def _checked_override(text: str) -> str:
    """``--override`` values are checked as given (type and range of the field)."""
    parse_override(text)
    return text


def run(args: argparse.Namespace, progress: Progress) -> int:
    from NNSegLib.util.atomic import clean_stale_temps
    from NNSegLib.util.workspace import Workspace

    ws = Workspace.for_dataset(args.dataset, args.work)
    if not ws.fingerprint.is_file():
        raise NNSegError(f"{ws.fingerprint}: no fingerprint; run `nnseg fingerprint` first")
    for warning in ws.stale_inputs(args.dataset):
        if str(ws.plans) not in warning:   # the plan is being made again anyway
            progress.message(warning, level="warning")
    clean_stale_temps(ws.root)
    fingerprint = Fingerprint.load(ws.fingerprint)
    plans = plan_dataset(fingerprint, args.recipe, args.gpu_memory_gb, args.configurations)
    if args.override:
        try:
            plans = apply_overrides(plans, args.override)
        except ValueError as e:
            raise NNSegError(str(e)) from e
    plans.save(ws.plans)
    print(format_plans_table(plans))
    print(f"wrote {ws.plans}")
    return 0


__all__ = [
    "CONFIGURATIONS",
    "RECIPE_REGISTRY",
    "Recipe",
    "fit_batch",
    "fit_patch",
    "format_plans_table",
    "fullres_spacing",
    "lowres_spacing_steps",
    "plan_dataset",
]
