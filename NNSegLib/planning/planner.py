"""METHOD §2: derive ``plans.json`` from the dataset fingerprint (``nnseg plan``).

Axis order is numpy's ``(z, y, x)`` (as SimpleITK's ``GetArrayFromImage`` and nnU-Net v2
both use), permuted by the plan's ``transpose_forward`` (:func:`axis_order`): the axis with
the coarsest target spacing goes first, the others keep their order, so 2D configurations
slice across it. So Dataset004_Hippocampus' median image is 36×50×35 and its v2 3d_fullres
patch 40×56×40.

The recipe (:mod:`.recipe`) names the rules that choose the target spacing, patch, batch and
low-res stage (registry :data:`RULES`: :mod:`.rules_paper`, :mod:`.rules_v2`). Then, for
both recipes:

* ``2d`` plans the last two axes of the full-res median image (same spacing and preprocessed
  data as ``3d_fullres``); datasets whose median image has one slice get only ``2d``.
* ``3d_lowres`` + ``3d_cascade_fullres`` exist when the rules plan a low-res stage; the
  cascade stage is ``3d_fullres`` with ``previous_stage = 3d_lowres``.
* ``batch_dice``: ``2d`` and ``3d_cascade_fullres`` use batch Dice, ``3d_lowres`` per-sample
  Dice, ``3d_fullres`` per-sample Dice — or, with a cascade and
  ``Recipe.fullres_batch_dice_with_cascade`` (v2), the cascade stage's batch Dice.
* Normalization: ``ct`` for a channel named CT, ``none`` for ``noNorm``, else ``zscore``;
  mask for norm on ``zscore`` channels when cropping left < 75 % of the median case.

A fingerprint no plan can be made from (no cases, channels or labels; a spacing that is not
a finite number > 0; a cropped shape with an axis of 0 voxels) is refused naming the case,
and a budget too small for any patch naming ``--gpu-memory-gb``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.planning.cpu_budget import budget_note
from NNSegLib.planning.fingerprint import Fingerprint
from NNSegLib.planning.plans import (
    CONFIGURATIONS,
    ConfigurationPlan,
    Plans,
    apply_overrides,
    parse_override,
)
from NNSegLib.planning.recipe import RECIPE_REGISTRY, PlanContext, Recipe
from NNSegLib.planning.rules_base import Cases, Fit, PlanningRules, Values
from NNSegLib.planning.rules_paper import PaperRules, lowres_spacing_steps
from NNSegLib.planning.rules_v2 import V2Rules
from NNSegLib.util import options
from NNSegLib.util.command_line import many, option
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress

#: Rule sets by :attr:`Recipe.rules`.
RULES: dict[str, PlanningRules] = {"paper": PaperRules(), "v2": V2Rules()}

#: Channel name (case-insensitive) → normalization; any other name is ``zscore``.
NORMALIZATION_BY_CHANNEL = {"ct": "ct", "nonorm": "none", "zscore": "zscore"}


# --- checks and axis order -------------------------------------------------------------
def fingerprint_problem(fingerprint: Fingerprint) -> str | None:
    """Why no plan can be made from ``fingerprint`` (one line naming a case), or None."""
    if not fingerprint.cases:
        return f"fingerprint of {fingerprint.dataset_name!r} has no cases"
    if not fingerprint.channel_names:
        return f"fingerprint of {fingerprint.dataset_name!r} has no channels"
    if not fingerprint.labels:
        return f"fingerprint of {fingerprint.dataset_name!r} has no labels"
    for case in fingerprint.cases:
        spacing, shape = case.spacing, case.shape_after_crop
        if len(spacing) != 3 or len(shape) != 3:
            return (f"case {case.identifier!r}: spacing {list(spacing)} and shape {list(shape)} "
                    "need 3 values each (z, y, x)")
        if not all(math.isfinite(v) and v > 0 for v in spacing):
            return (f"case {case.identifier!r}: spacing {list(spacing)} is not a finite "
                    "number > 0 on every axis")
        if not all(v >= 1 for v in shape):
            return (f"case {case.identifier!r}: shape after cropping {list(shape)} has an "
                    "axis of 0 voxels")
    return None


def axis_order(spacing: Values) -> tuple[int, ...]:
    """``transpose_forward``: the coarsest axis (the first of equals) first, then the rest."""
    coarse = int(np.argmax(np.asarray(spacing, dtype=np.float64)))
    return (coarse, *[a for a in range(len(spacing)) if a != coarse])


# --- configurations --------------------------------------------------------------------
def _common_fields(fingerprint: Fingerprint, recipe: Recipe,
                   anisotropy_axis: int | None) -> dict:
    names = [fingerprint.channel_names[k] for k in sorted(fingerprint.channel_names, key=int)]
    schemes = tuple(NORMALIZATION_BY_CHANNEL.get(n.strip().casefold(), "zscore") for n in names)
    shrank = fingerprint.median_relative_size_after_cropping < recipe.mask_crop_threshold
    return {
        "normalization": schemes,
        "use_mask_for_norm": tuple(bool(shrank and s == "zscore") for s in schemes),
        "anisotropy_axis": anisotropy_axis,
        "resample_order_image": 3,
        "resample_order_label": 1,
        "resample_order_z": 0,
    }


def _anisotropy_axis(cases: Cases, recipe: Recipe) -> int | None:
    """The coarse axis of the median spacing when ≥ 3× the finest (resampled on its own)."""
    median = np.median(cases.spacings, axis=0)
    axis = int(np.argmax(median))
    return axis if median[axis] >= recipe.anisotropy_threshold * median.min() else None


def _configuration(name: str, spacing: Values, median: Values, fit: Fit,
                   common: dict, data_identifier: str, batch_dice: bool) -> ConfigurationPlan:
    topo = fit.topology
    return ConfigurationPlan(
        name=name, spatial_dims=len(topo.patch_size), data_identifier=data_identifier,
        spacing=tuple(float(s) for s in spacing),
        median_shape=tuple(max(1, int(round(float(m)))) for m in median),
        patch_size=topo.patch_size, batch_size=fit.batch_size, strides=topo.strides,
        kernel_sizes=topo.kernel_sizes, features_per_stage=topo.features_per_stage,
        batch_dice=batch_dice, estimated_memory_gb=fit.memory_gb, **common,
    )


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

    Raises:
        NNSegError: for an unknown recipe or configuration, or a fingerprint no plan can be
            made from (naming the case).
    """
    if recipe not in RECIPE_REGISTRY:
        raise NNSegError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPE_REGISTRY)}")
    wanted = list(configurations) if configurations else list(CONFIGURATIONS)
    unknown = [c for c in wanted if c not in CONFIGURATIONS]
    if unknown:
        raise NNSegError(f"unknown configurations {unknown}; choose from {list(CONFIGURATIONS)}")
    problem = fingerprint_problem(fingerprint)
    if problem:
        raise NNSegError(problem)
    r = RECIPE_REGISTRY[recipe]
    rules = RULES[r.rules]
    ctx = PlanContext(r, float(memory_gb), len(fingerprint.channel_names),
                      max(fingerprint.labels.values()) + 1, len(fingerprint.labels),
                      len(fingerprint.cases))
    raw = Cases(np.asarray(fingerprint.spacings, dtype=np.float64),
                np.asarray(fingerprint.shapes_after_crop, dtype=np.float64))
    target = rules.target_spacing(raw, r)
    order = axis_order(target) if r.transpose else (0, 1, 2)
    cases, spacing = raw.transposed(order), target[list(order)]
    shapes = cases.shapes_at(spacing)
    # ≥ 0.5 voxel along every axis (half the cases are at or above the median spacing and
    # keep ≥ 1), so every patch has ≥ 1
    median = np.median(shapes, axis=0)
    voxels = rules.dataset_voxels(shapes, median, ctx)
    aniso = _anisotropy_axis(cases, r)
    common = _common_fields(fingerprint, r, aniso)
    is_2d_data = bool(median[0] == 1)
    configs: dict[str, ConfigurationPlan] = {}
    if "2d" in wanted:
        fit = rules.fit(spacing[1:], median[1:], voxels, ctx)
        configs["2d"] = _configuration("2d", spacing, median, fit, common, "3d_fullres", True)
    if not is_2d_data and any(c in wanted for c in CONFIGURATIONS if c != "2d"):
        full_fit = rules.fit(spacing, median, voxels, ctx)
        # planned whatever is wanted: whether it exists decides 3d_fullres' batch_dice
        low = rules.lowres(cases, spacing, median, full_fit, ctx)
        cascade = low is not None and "3d_cascade_fullres" in wanted
        full = _configuration("3d_fullres", spacing, median, full_fit, common, "3d_fullres",
                              low is not None and r.fullres_batch_dice_with_cascade)
        if "3d_fullres" in wanted:
            configs["3d_fullres"] = full
        if low is not None and ("3d_lowres" in wanted or cascade):
            configs["3d_lowres"] = dataclasses.replace(
                _configuration("3d_lowres", low.spacing, low.median_shape, low.fit, common,
                               "3d_lowres", False),
                next_stage="3d_cascade_fullres" if cascade else None)
        if cascade:
            configs["3d_cascade_fullres"] = dataclasses.replace(
                full, name="3d_cascade_fullres", previous_stage="3d_lowres", batch_dice=True)
    if not configs:
        raise NNSegError(f"none of {wanted} applies to {fingerprint.dataset_name!r}"
                         + (" (2D images: plan '2d')" if is_2d_data else ""))
    return Plans(
        dataset_name=fingerprint.dataset_name, recipe=recipe, memory_budget_gb=float(memory_gb),
        channel_names=dict(fingerprint.channel_names), labels=dict(fingerprint.labels),
        intensity_properties=dict(fingerprint.intensity_properties), configurations=configs,
        transpose_forward=tuple(order),
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
    order = "" if plans.transpose_forward == (0, 1, 2) else \
        f", axes transposed {list(plans.transpose_forward)}"
    lines = [f"{plans.dataset_name} — recipe {plans.recipe}, budget "
             f"{plans.memory_budget_gb:g} GB{order}",
             " " * head_w + "  " + "  ".join(n.ljust(w) for n, w in zip(names, widths))]
    for k in keys:
        cells = "  ".join(c[k].ljust(w) for c, w in zip(columns, widths))
        lines.append(k.ljust(head_w) + "  " + cells)
    for o in plans.overrides:
        lines.append(f"override {o['field']}: {o['old']} -> {o['new']}")
    note = budget_note(plans.configurations)
    if note:
        lines.append(note)
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


def plan_argv(dataset: Path | str, work: Path | str | None = None, recipe: str | None = None,
              gpu_memory_gb: float | None = None, configurations: Sequence[str] = (),
              overrides: Sequence[str] = ()) -> list[str]:
    """``nnseg plan`` as an argument list (``None`` or empty leaves an option at its default)."""
    return ["plan", str(dataset), *option("--work", work), *option("--recipe", recipe),
            *option("--gpu-memory-gb", None if gpu_memory_gb is None else float(gpu_memory_gb)),
            *many("--configurations", configurations), *many("--override", overrides)]


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
    problem = fingerprint_problem(fingerprint)
    if problem:
        raise NNSegError(f"{ws.fingerprint}: {problem}; run `nnseg fingerprint` again")
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


__all__ = ["plan_argv",
    "CONFIGURATIONS",
    "RECIPE_REGISTRY",
    "RULES",
    "Recipe",
    "axis_order",
    "fingerprint_problem",
    "format_plans_table",
    "lowres_spacing_steps",
    "plan_dataset",
]
