"""The planner's recipes: every constant it uses (METHOD §2), registry :data:`RECIPE_REGISTRY`.

``paper`` follows the 2018 paper's rules; ``v2`` makes nnU-Net v2's default plans
(``ExperimentPlanner`` of nnU-Net 2.8.1). Which rules fit the patch, batch and low-res stage
is named by :attr:`Recipe.rules` (registry in :mod:`NNSegLib.planning.planner`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from NNSegLib.planning.memory import FeatureMapBudget, MemoryModel


@dataclass(frozen=True)
class Recipe:
    """Every constant the planner uses.

    Attributes:
        name: Recipe name.
        rules: ``"paper"`` (:mod:`.rules_paper`) or ``"v2"`` (:mod:`.rules_v2`).
        base_features: Channels of the first stage.
        min_feature_map: Smallest feature map edge (paper: after every pooling; v2: in the
            bottleneck).
        lowres_factor: Low-res spacing growth per step.
        max_batch_2d: 2D batch cap (None: none).
        max_pools: Most poolings per axis (None: no limit).
        max_patch_voxels_3d: 3D patch cap in voxels (None: none).
        max_patch_voxels_2d: 2D patch cap in pixels (None: none).
        fullres_batch_dice_with_cascade: ``batch_dice`` of ``3d_fullres`` when a cascade is
            planned (without one it is always per-sample).
        lowres_min_reduction: A low-res stage whose median image is not this many times
            smaller than full-res is dropped (None: never dropped).
        transpose: Move the coarsest axis first (METHOD §2, "Axis order").
        memory: The explicit memory model (``paper`` rules).
        feature_budget: nnU-Net's feature-map reference values (``v2`` rules).
    """

    name: str
    rules: str
    base_features: int
    min_feature_map: int
    lowres_factor: float
    max_batch_2d: int | None
    max_pools: int | None = 5
    max_patch_voxels_3d: int | None = 128 ** 3
    max_patch_voxels_2d: int | None = 256 ** 2
    fullres_batch_dice_with_cascade: bool = False
    lowres_min_reduction: float | None = None
    transpose: bool = True
    max_batch_3d: int | None = None
    max_features_3d: int = 320
    max_features_2d: int = 512
    anisotropy_threshold: float = 3.0
    kernel_anisotropy_ratio: float = 2.0
    lowres_min_coverage: float = 0.25
    max_dataset_fraction: float = 0.05
    min_batch: int = 2
    mask_crop_threshold: float = 0.75
    memory: MemoryModel = field(default_factory=MemoryModel)
    feature_budget: FeatureMapBudget = field(default_factory=FeatureMapBudget)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "memory": self.memory.to_dict(),
                "feature_budget": self.feature_budget.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(**{**d, "memory": MemoryModel.from_dict(d.get("memory", {})),
                      "feature_budget": FeatureMapBudget.from_dict(d.get("feature_budget", {}))})


RECIPE_REGISTRY: dict[str, Recipe] = {
    "paper": Recipe("paper", rules="paper", base_features=30, min_feature_map=8,
                    lowres_factor=2.0, max_batch_2d=42),
    "v2": Recipe("v2", rules="v2", base_features=32, min_feature_map=4, lowres_factor=1.03,
                 max_batch_2d=None, max_pools=None, max_patch_voxels_3d=None,
                 max_patch_voxels_2d=None, fullres_batch_dice_with_cascade=True,
                 lowres_min_reduction=2.0),
}


@dataclass(frozen=True)
class PlanContext:
    """What fitting any configuration needs besides its spacing and median shape.

    Attributes:
        recipe: The recipe.
        budget_gb: Device memory budget.
        in_channels: Image channels.
        num_classes: Classes (``max(label) + 1``) for the explicit memory model.
        num_labels: Entries of ``labels`` (nnU-Net's output count in its estimate).
        num_cases: Training cases.
    """

    recipe: Recipe
    budget_gb: float
    in_channels: int
    num_classes: int
    num_labels: int
    num_cases: int


__all__ = ["RECIPE_REGISTRY", "PlanContext", "Recipe"]
