"""What the two rule sets of the planner share: the case table, a fitted configuration and
the interface (:class:`PlanningRules`) that :mod:`.rules_paper` and :mod:`.rules_v2` fill in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from NNSegLib.planning.recipe import PlanContext, Recipe
from NNSegLib.planning.topology import Topology

#: Per-axis values: a sequence or a 1-D array.
Values = Union[Sequence[float], np.ndarray]


@dataclass(frozen=True)
class Cases:
    """Per-case spacing and shape after cropping, ``(N, 3)`` each, in one axis order."""

    spacings: np.ndarray
    shapes: np.ndarray

    def transposed(self, order: Sequence[int]) -> Cases:
        order = list(order)
        return Cases(self.spacings[:, order], self.shapes[:, order])

    def shapes_at(self, spacing: Values) -> np.ndarray:
        """Each case's shape resampled to ``spacing`` (``(N, 3)``, rounded half to even as
        nnU-Net's ``compute_new_shape`` rounds: ``old spacing / new spacing × old shape``)."""
        target = np.asarray(spacing, dtype=np.float64)
        return np.round(self.spacings / target * self.shapes).astype(np.int64)


@dataclass(frozen=True)
class Fit:
    """One fitted configuration: patch and network (:attr:`topology`), batch and memory."""

    topology: Topology
    batch_size: int
    memory_gb: float


@dataclass(frozen=True)
class LowRes:
    """A low-resolution stage: its spacing, median image (3D) and fit."""

    spacing: tuple[float, ...]
    median_shape: tuple[float, ...]
    fit: Fit


class PlanningRules(ABC):
    """How target spacing, patch, batch and the low-res stage are chosen."""

    @abstractmethod
    def target_spacing(self, cases: Cases, recipe: Recipe) -> np.ndarray:
        """Full-resolution target spacing, in the cases' axis order."""

    @abstractmethod
    def dataset_voxels(self, shapes: np.ndarray, median: np.ndarray, ctx: PlanContext) -> float:
        """The dataset's voxel count the batch cap is a fraction of."""

    @abstractmethod
    def fit(self, spacing: Values, median: Values, dataset_voxels: float,
            ctx: PlanContext) -> Fit:
        """Patch, network and batch for one configuration (2 or 3 axes)."""

    @abstractmethod
    def lowres(self, cases: Cases, spacing: Values, median: Values,
               full: Fit, ctx: PlanContext) -> LowRes | None:
        """The low-res stage for full-res ``full`` at ``spacing`` (None: not needed)."""


__all__ = ["Cases", "Fit", "LowRes", "PlanningRules", "Values"]
