"""The paper recipe's planning rules (METHOD §2; recipe ``paper``).

1. **Target spacing**: per-axis median of the case spacings. If the coarsest axis is at
   least ``anisotropy_threshold`` (3) times the finest *and* has few voxels (median voxels
   × 3 < the other axes' median voxels), it takes the 10th percentile of that axis'
   spacings instead (never finer than the other axes).
2. **Patch and topology** (:func:`fit_patch`): start from the median image shape at the
   target spacing; while the memory estimate (:mod:`NNSegLib.planning.memory`) at the
   minimum batch exceeds the budget or the patch has more than 128³ (2D: 256²) voxels,
   shrink the axis whose patch is largest relative to the median shape (ties: the longer
   axis in mm) by its divisor. Topology per :func:`~NNSegLib.planning.topology.plan_topology`.
3. **Batch** (:func:`fit_batch`): the largest batch that fits the budget (≥ 2), capped so
   one batch holds at most 5 % of all dataset voxels (at the target spacing) and, for 2D,
   at 42.
4. **Low-res stage** when the full-res patch covers less than a quarter of the median
   image: the spacing doubles per step — only along axes finer than half the coarsest while
   there are any, then along all — until the refitted patch covers a quarter.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from NNSegLib.planning.memory import estimate_memory_gb
from NNSegLib.planning.recipe import PlanContext, Recipe
from NNSegLib.planning.rules_base import Cases, Fit, LowRes, PlanningRules, Values
from NNSegLib.planning.topology import Topology, plan_topology
from NNSegLib.util.errors import NNSegError


def fullres_spacing(cases: Cases, recipe: Recipe) -> np.ndarray:
    """Step 1 of the module docstring."""
    spacings = np.asarray(cases.spacings, dtype=np.float64)
    target = np.median(spacings, axis=0)
    voxels = np.median(np.asarray(cases.shapes, dtype=np.float64), axis=0)
    axis = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != axis]
    if target[axis] < recipe.anisotropy_threshold * target.min():
        return target
    if voxels[axis] * recipe.anisotropy_threshold < voxels[others].min():
        finest_other = float(target[others].max())
        target[axis] = max(float(np.percentile(spacings[:, axis], 10)), finest_other)
    return target


def _topology(patch: Sequence[int], spacing: Values, ctx: PlanContext) -> Topology:
    r = ctx.recipe
    cap = r.max_features_3d if len(patch) == 3 else r.max_features_2d
    return plan_topology(patch, [float(s) for s in spacing], r.min_feature_map,
                         r.max_pools or 5, r.base_features, cap, r.kernel_anisotropy_ratio)


def _memory(topology: Topology, batch: int, ctx: PlanContext) -> float:
    return estimate_memory_gb(topology, batch, ctx.in_channels, ctx.num_classes,
                              model=ctx.recipe.memory)


def fit_patch(median: Sequence[int], spacing: Values, ctx: PlanContext) -> Topology:
    """Shrink the median shape until the minimum batch fits the budget (module docstring)."""
    dims = len(median)
    r = ctx.recipe
    cap = r.max_patch_voxels_3d if dims == 3 else r.max_patch_voxels_2d
    max_voxels = math.inf if cap is None else cap
    topo = _topology([max(1, int(m)) for m in median], spacing, ctx)
    for _ in range(100000):
        if (math.prod(topo.patch_size) <= max_voxels
                and _memory(topo, r.min_batch, ctx) <= ctx.budget_gb):
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
        f"no patch fits a memory budget of {ctx.budget_gb:g} GB even at the smallest size; "
        "raise --gpu-memory-gb"
    )


def fit_batch(topology: Topology, total_voxels: float, ctx: PlanContext) -> int:
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


def lowres_spacing_steps(spacing: Values, factor: float) -> tuple[float, ...]:
    """One low-res step: coarsen axes finer than half the coarsest, or all axes if none."""
    sp = np.asarray(spacing, dtype=np.float64)
    fine = sp < sp.max() / 2
    if fine.any():
        sp[fine] *= factor
    else:
        sp *= factor
    return tuple(float(s) for s in sp)


def _rounded(median: Values) -> tuple[int, ...]:
    return tuple(int(round(float(v))) for v in median)


class PaperRules(PlanningRules):
    """The module docstring's rules."""

    def target_spacing(self, cases: Cases, recipe: Recipe) -> np.ndarray:
        return fullres_spacing(cases, recipe)

    def dataset_voxels(self, shapes: np.ndarray, median: np.ndarray, ctx: PlanContext) -> float:
        return float(np.prod(np.maximum(shapes, 1), axis=1).sum())

    def fit(self, spacing: Values, median: Values, dataset_voxels: float,
            ctx: PlanContext) -> Fit:
        topo = fit_patch(_rounded(median), spacing, ctx)
        batch = fit_batch(topo, dataset_voxels, ctx)
        return Fit(topo, batch, round(_memory(topo, batch, ctx), 3))

    def lowres(self, cases: Cases, spacing: Values, median: Values,
               full: Fit, ctx: PlanContext) -> LowRes | None:
        r = ctx.recipe
        if math.prod(full.topology.patch_size) >= r.lowres_min_coverage * math.prod(median):
            return None
        low = tuple(float(s) for s in spacing)
        for _ in range(10000):
            low = lowres_spacing_steps(low, r.lowres_factor)
            shapes = cases.shapes_at(low)
            low_median = np.median(shapes, axis=0)
            topo = fit_patch(_rounded(low_median), low, ctx)
            if math.prod(topo.patch_size) >= r.lowres_min_coverage * math.prod(
                    _rounded(low_median)):
                break
        fit = self.fit(low, low_median, self.dataset_voxels(shapes, low_median, ctx), ctx)
        return LowRes(low, tuple(float(v) for v in low_median), fit)


__all__ = ["PaperRules", "fit_batch", "fit_patch", "fullres_spacing", "lowres_spacing_steps"]
