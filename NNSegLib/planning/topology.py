"""U-Net topology from a patch size and a spacing (METHOD §2, "Topology").

Two rule sets, registry :data:`TOPOLOGY_RULES`: the paper recipe's (:func:`plan_topology`)
and nnU-Net v2's (:func:`v2_topology`). Axes are the plan's (``(z, y, x)`` after the plan's
transposition in 3D, ``(y, x)`` in 2D).

Paper rules (:func:`plan_topology`), applied stage by stage starting from the patch:

* An axis is *coarse* while its current spacing is more than ``anisotropy_ratio`` (2) times
  the finest current spacing. A coarse axis gets kernel size 1 and is not pooled; once an
  axis has had a kernel of 3 it keeps it.
* A non-coarse axis is pooled (stride 2) while its feature map would stay at least
  ``min_feature_map`` voxels (8 in the paper recipe, 4 in v2) and it has been pooled fewer
  than ``max_pools`` (5) times. Pooling doubles the axis' current spacing, so the coarse
  axis of anisotropic data joins in once the others have caught up.
* Channels: ``base_features`` doubled per stage, capped at ``max_features``.
* The patch must be divisible by ``2 ** pools`` along each axis; :func:`plan_topology`
  returns the patch rounded *up* to that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Topology:
    """A U-Net's shape for one patch size.

    Attributes:
        patch_size: Patch size, divisible by :attr:`divisor` on every axis.
        strides: Per stage down-sampling stride (first stage all ones).
        kernel_sizes: Per stage convolution kernel size.
        features_per_stage: Channels per stage.
    """

    patch_size: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    features_per_stage: tuple[int, ...]

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    @property
    def pools_per_axis(self) -> tuple[int, ...]:
        return tuple(sum(1 for s in self.strides if s[a] == 2) for a in range(len(self.patch_size)))

    @property
    def divisor(self) -> tuple[int, ...]:
        """Product of the strides per axis: the patch must be a multiple of it."""
        return tuple(2 ** p for p in self.pools_per_axis)

    def feature_map_shapes(self) -> list[tuple[int, ...]]:
        """Spatial shape of the feature maps of each stage."""
        shapes, current = [], list(self.patch_size)
        for stride in self.strides:
            current = [c // s for c, s in zip(current, stride)]
            shapes.append(tuple(current))
        return shapes


def plan_topology(
    patch_size: Sequence[int],
    spacing: Sequence[float],
    min_feature_map: int = 8,
    max_pools: int = 5,
    base_features: int = 30,
    max_features: int = 320,
    anisotropy_ratio: float = 2.0,
) -> Topology:
    """Derive strides, kernels and features for ``patch_size`` at ``spacing``.

    Args:
        patch_size: Requested patch size (rounded up to the divisor in the result).
        spacing: Voxel spacing of the configuration, same axes as ``patch_size``.
        min_feature_map: Smallest feature map edge after pooling.
        max_pools: Most pooling operations per axis.
        base_features: Channels of the first stage.
        max_features: Channel cap.
        anisotropy_ratio: An axis coarser than this times the finest is not convolved
            across (kernel 1) nor pooled.

    Returns:
        The :class:`Topology`, with the patch rounded up to be divisible.
    """
    dims = len(patch_size)
    if len(spacing) != dims:
        raise ValueError(f"patch {tuple(patch_size)} and spacing {tuple(spacing)} differ in length")
    size = [float(s) for s in patch_size]
    current = [float(s) for s in spacing]
    pools = [0] * dims
    has_kernel3 = [False] * dims

    def kernel() -> tuple[int, ...]:
        finest = min(current)
        for a in range(dims):
            has_kernel3[a] = has_kernel3[a] or current[a] <= anisotropy_ratio * finest
        return tuple(3 if k3 else 1 for k3 in has_kernel3)

    strides = [(1,) * dims]
    kernels = [kernel()]
    while True:
        finest = min(current)
        axes = [
            a for a in range(dims)
            if size[a] >= 2 * min_feature_map and pools[a] < max_pools
            and current[a] <= anisotropy_ratio * finest
        ]
        if not axes:
            break
        for a in axes:
            size[a] /= 2
            current[a] *= 2
            pools[a] += 1
        strides.append(tuple(2 if a in axes else 1 for a in range(dims)))
        kernels.append(kernel())
    features = tuple(min(base_features * 2 ** i, max_features) for i in range(len(strides)))
    patch = tuple(
        int(math.ceil(p / 2 ** n) * 2 ** n) for p, n in zip(patch_size, pools)
    )
    return Topology(patch, tuple(strides), tuple(kernels), features)


def v2_topology(
    patch_size: Sequence[float],
    spacing: Sequence[float],
    min_feature_map: int = 4,
    max_pools: int | None = None,
    base_features: int = 32,
    max_features: int = 320,
) -> Topology:
    """nnU-Net v2's topology rules (the same answers as its ``get_pool_and_conv_props``).

    Stage by stage, an axis is pooled when (1) its current feature map is at least
    ``2 * min_feature_map``, (2) its current spacing is less than twice the finest current
    spacing among the axes passing (1), and (3) it has been pooled fewer than ``max_pools``
    times (None: no limit). A lone pooled axis must also be at least ``3 * min_feature_map``.
    Feature maps halve rounding up. Before each pooling, an axis gets kernel 3 once its
    spacing is less than twice the finest of all axes (and keeps it); the deepest stage's
    kernel is 3 on every axis. The patch (which may hold fractional medians) is rounded up to
    a multiple of ``2 ** pools`` per axis.

    Args:
        patch_size: Requested patch (rounded up in the result).
        spacing: Spacing of the configuration, same axes.
        min_feature_map: Smallest feature map edge in the bottleneck.
        max_pools: Most poolings per axis; None for no limit (nnU-Net's default planner).
        base_features: Channels of the first stage.
        max_features: Channel cap.
    """
    dims = len(patch_size)
    if len(spacing) != dims:
        raise ValueError(f"patch {tuple(patch_size)} and spacing {tuple(spacing)} differ in length")
    limit = math.inf if max_pools is None else max_pools
    current = [float(s) for s in spacing]
    size = [float(p) for p in patch_size]
    pools = [0] * dims
    kernel = [1] * dims
    strides: list[tuple[int, ...]] = [(1,) * dims]
    kernels: list[tuple[int, ...]] = []
    while True:
        large = [a for a in range(dims) if size[a] >= 2 * min_feature_map]
        if not large:
            break
        finest_large = min(current[a] for a in large)
        axes = [a for a in large if current[a] / finest_large < 2 and pools[a] < limit]
        if not axes or (len(axes) == 1 and size[axes[0]] < 3 * min_feature_map):
            break
        finest = min(current)
        kernel = [3 if k == 3 or current[a] / finest < 2 else 1 for a, k in enumerate(kernel)]
        for a in axes:
            pools[a] += 1
            current[a] *= 2
            size[a] = math.ceil(size[a] / 2)
        strides.append(tuple(2 if a in axes else 1 for a in range(dims)))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dims)
    features = tuple(min(base_features * 2 ** i, max_features) for i in range(len(strides)))
    patch = tuple(int(math.ceil(p / 2 ** n) * 2 ** n) for p, n in zip(patch_size, pools))
    return Topology(patch, tuple(strides), tuple(kernels), features)


__all__ = ["Topology", "plan_topology", "v2_topology"]
