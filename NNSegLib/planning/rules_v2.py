"""nnU-Net v2's planning rules (recipe ``v2``): the plans of nnU-Net 2.8.1's default
``ExperimentPlanner``, written anew from its documented behaviour (METHOD §2).

1. **Target spacing**: per-axis median. When the coarsest axis is more than 3× the
   *coarsest other* axis and its median voxel count × 3 is below every other axis' count, it
   takes the 10th percentile of its spacings; if that is finer than the coarsest other axis,
   that axis' spacing + 1e-5 instead.
2. **Median image** at the target spacing: the median of the cases' resampled shapes
   (``round(spacing / target × shape)``); the dataset's voxels are that median's volume
   × the number of cases.
3. **Patch**: start from a patch shaped like ``1 / spacing`` with the volume of 256³ (2D:
   2048²), clipped to the median image; topology per
   :func:`~NNSegLib.planning.topology.v2_topology` (no limit on the poolings, bottleneck ≥ 4).
   While the network's feature maps (:func:`~NNSegLib.planning.memory.feature_map_values`) at
   batch 2 exceed the budget's reference values, shrink the axis whose patch is largest
   relative to the median (ties: the last such axis): by the divisor of the patch made one
   divisor smaller, so no valid size is skipped.
4. **Batch**: ``round(reference / values × reference batch)``, capped at
   ``round(5 % × dataset voxels / patch voxels)``, at least 2.
5. **Low-res stage**, when the full-res patch covers less than a quarter of the median
   image: the spacing grows by 3 % per step (only the axes more than 2× finer than the
   coarsest while there are any, else all) and the configuration is refitted (median image
   = full-res median × full-res spacing / low-res spacing, rounded) until its patch covers a
   quarter. A low-res stage whose median image is less than 2× smaller than full-res is
   dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from NNSegLib.planning.memory import feature_map_values
from NNSegLib.planning.recipe import PlanContext, Recipe
from NNSegLib.planning.rules_base import Cases, Fit, LowRes, PlanningRules, Values
from NNSegLib.planning.topology import Topology, v2_topology
from NNSegLib.util.errors import NNSegError

#: Volume of the first patch guess, before it is clipped to the median image.
START_EDGE = {3: 256, 2: 2048}


def fullres_spacing(cases: Cases, recipe: Recipe) -> np.ndarray:
    """Step 1 of the module docstring."""
    spacings = np.asarray(cases.spacings, dtype=np.float64)
    target = np.percentile(spacings, 50, axis=0)
    sizes = np.percentile(np.asarray(cases.shapes, dtype=np.float64), 50, axis=0)
    axis = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != axis]
    coarsest_other = max(target[a] for a in others)
    thr = recipe.anisotropy_threshold
    if target[axis] > thr * coarsest_other and sizes[axis] * thr < min(sizes[a] for a in others):
        low = np.percentile(spacings[:, axis], 10)
        if low < coarsest_other:
            low = max(coarsest_other, low) + 1e-5
        target[axis] = low
    return target


def _topology(patch: Sequence[float], spacing: Values, ctx: PlanContext) -> Topology:
    r = ctx.recipe
    cap = r.max_features_3d if len(patch) == 3 else r.max_features_2d
    return v2_topology(patch, [float(s) for s in spacing], r.min_feature_map, r.max_pools,
                       r.base_features, cap)


def start_patch(spacing: Values, median: Values) -> list[float]:
    """Step 3's first guess: ``1 / spacing`` scaled to 256³ (2D: 2048²), clipped."""
    dims = len(spacing)
    inverse = 1 / np.asarray(spacing, dtype=np.float64)
    scale = (START_EDGE[dims] ** dims / np.prod(inverse)) ** (1 / dims)
    guess = [round(v) for v in inverse * scale]
    return [min(g, m) for g, m in zip(guess, median)]


def _values(topology: Topology, ctx: PlanContext) -> int:
    return feature_map_values(topology, ctx.num_labels)


def fit_v2(spacing: Values, median: Values, dataset_voxels: float,
           ctx: PlanContext) -> Fit:
    """Steps 3 and 4 of the module docstring for one configuration (2 or 3 axes)."""
    dims = len(spacing)
    r, budget = ctx.recipe, ctx.recipe.feature_budget
    reference, ref_batch = budget.reference(dims, ctx.budget_gb)
    topo = _topology(start_patch(spacing, median), spacing, ctx)
    values = _values(topo, ctx)
    while values / ref_batch * r.min_batch > reference:
        ratios = [p / m for p, m in zip(topo.patch_size, median)]
        axis = max(range(dims), key=lambda a: (ratios[a], a))
        smaller = list(topo.patch_size)
        smaller[axis] -= topo.divisor[axis]
        step = _topology(smaller, spacing, ctx).divisor[axis]
        patch = list(topo.patch_size)
        patch[axis] -= step
        if patch[axis] < 1:
            raise NNSegError(
                f"no patch fits a memory budget of {ctx.budget_gb:g} GB even at the smallest "
                "size; raise --gpu-memory-gb")
        topo = _topology(patch, spacing, ctx)
        values = _values(topo, ctx)
    batch = round(reference / values * ref_batch)
    by_data = round(dataset_voxels * r.max_dataset_fraction
                    / np.prod(topo.patch_size, dtype=np.float64))
    batch = max(min(batch, by_data), r.min_batch)
    return Fit(topo, int(batch), round(budget.memory_gb(values, batch, dims), 3))


class V2Rules(PlanningRules):
    """The module docstring's rules."""

    def target_spacing(self, cases: Cases, recipe: Recipe) -> np.ndarray:
        return fullres_spacing(cases, recipe)

    def dataset_voxels(self, shapes: np.ndarray, median: np.ndarray, ctx: PlanContext) -> float:
        return float(np.prod(median, dtype=np.float64) * ctx.num_cases)

    def fit(self, spacing: Values, median: Values, dataset_voxels: float,
            ctx: PlanContext) -> Fit:
        return fit_v2(spacing, median, dataset_voxels, ctx)

    def lowres(self, cases: Cases, spacing: Values, median: Values,
               full: Fit, ctx: PlanContext) -> LowRes | None:
        r = ctx.recipe
        full_spacing = np.asarray(spacing, dtype=np.float64)
        full_median = np.asarray(median, dtype=np.float64)
        low_spacing = full_spacing.copy()
        median_voxels = np.prod(full_median, dtype=np.float64)
        patch_voxels = np.prod(full.topology.patch_size, dtype=np.float64)
        found: LowRes | None = None
        while patch_voxels / median_voxels < r.lowres_min_coverage:
            coarse_ratio = max(low_spacing) / low_spacing
            if np.any(coarse_ratio > 2):
                low_spacing[coarse_ratio > 2] *= r.lowres_factor
            else:
                low_spacing *= r.lowres_factor
            low_median = full_spacing / low_spacing * full_median
            median_voxels = np.prod(low_median, dtype=np.float64)
            rounded = tuple(float(round(v)) for v in low_median)
            fit = fit_v2(low_spacing, rounded, float(median_voxels * ctx.num_cases), ctx)
            found = LowRes(tuple(float(s) for s in low_spacing), rounded, fit)
            patch_voxels = np.prod(fit.topology.patch_size, dtype=np.float64)
        reduction = r.lowres_min_reduction
        if reduction is not None and np.prod(full_median, dtype=np.float64) / median_voxels \
                < reduction:
            return None
        return found


__all__ = ["V2Rules", "fit_v2", "fullres_spacing", "start_patch"]
