"""Two ways to weigh a U-Net's training step against a device memory budget (METHOD §2).

* :class:`MemoryModel` (recipe ``paper``): an explicit estimate in GB, below.
* :class:`FeatureMapBudget` (recipe ``v2``): nnU-Net v2's way. It counts the values of the
  network's feature maps for one sample (:func:`feature_map_values`) and compares them with
  reference counts that nnU-Net's authors found to fill 8 GB (560 M in 3D at batch 2, 85 M
  in 2D at batch 12), scaled linearly to the budget.

The explicit model:

    memory = batch × activations × bytes_per_activation
             + parameters × bytes_per_parameter
             + overhead

*activations* counts the values kept for the backward pass of **one** sample. With
``V_s`` the voxels of stage ``s``'s feature maps (patch voxels divided by the product of
the strides so far), ``F_s`` its channels, ``C`` input channels, ``K`` classes:

* input: ``C × V_0``;
* encoder stage ``s``: ``n_conv × tensors_per_conv × F_s × V_s`` (each convolution keeps
  its output, the normalised output and the nonlinearity's output);
* decoder stage ``s`` (every stage but the deepest): the transposed convolution's output
  ``F_s × V_s``, the skip concatenation ``2 F_s × V_s``, its convolutions
  ``n_conv_decoder × tensors_per_conv × F_s × V_s`` and a segmentation head ``K × V_s``
  (deep supervision).

*parameters* counts convolution weights and biases plus the two affine values of each
instance norm; ``bytes_per_parameter`` = 16 covers fp32 weights, their gradients and two
optimizer moments (Adam; SGD with momentum needs less). ``bytes_per_activation`` = 2
assumes mixed-precision training, as on a GPU; ``overhead`` covers the framework's own
allocations (kernels' workspace, allocator slack).

Calibration (8 GB budget): a 6-stage 3D U-Net with 32…320 channels fits a 128³ patch at
batch 2 (≈ 6.0 GB) but not batch 3 (≈ 8.5 GB), which is how nnU-Net v2 plans large isotropic data;
for Dataset004_Hippocampus (40×56×40, 4 stages) one sample costs ≈ 0.11 GB, so the batch
is limited by the 5 %-of-dataset rule, not by memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from NNSegLib.planning.topology import Topology

GB = 1024.0 ** 3


@dataclass(frozen=True)
class MemoryModel:
    """Constants of the memory estimate (see the module docstring)."""

    bytes_per_activation: float = 2.0
    tensors_per_conv: float = 3.0
    bytes_per_parameter: float = 16.0
    overhead_gb: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MemoryModel:
        return cls(**{k: float(v) for k, v in d.items()})


def count_parameters(
    topology: Topology, in_channels: int, num_classes: int, n_conv: int = 2,
    n_conv_decoder: int = 2,
) -> int:
    """Weights + biases (+ instance-norm affine values) of the U-Net for ``topology``."""
    feats, kernels, strides = topology.features_per_stage, topology.kernel_sizes, topology.strides
    total = 0
    previous = in_channels
    for f, k in zip(feats, kernels):
        kvol = math.prod(k)
        total += previous * f * kvol + 3 * f  # first conv (+bias, +norm affine)
        total += (n_conv - 1) * (f * f * kvol + 3 * f)
        previous = f
    for s in range(len(feats) - 2, -1, -1):
        f, deeper = feats[s], feats[s + 1]
        kvol = math.prod(kernels[s])
        total += deeper * f * math.prod(strides[s + 1]) + f  # transposed conv
        total += 2 * f * f * kvol + 3 * f
        total += (n_conv_decoder - 1) * (f * f * kvol + 3 * f)
        total += f * num_classes + num_classes  # segmentation head
    return int(total)


def count_activations(
    topology: Topology, in_channels: int, num_classes: int, n_conv: int = 2,
    n_conv_decoder: int = 2, tensors_per_conv: float = 3.0,
) -> float:
    """Values kept for backward for one sample (see the module docstring)."""
    voxels = [math.prod(s) for s in topology.feature_map_shapes()]
    feats = topology.features_per_stage
    total = float(in_channels * voxels[0])
    for f, v in zip(feats, voxels):
        total += n_conv * tensors_per_conv * f * v
    for s in range(len(feats) - 1):
        f, v = feats[s], voxels[s]
        total += 3 * f * v + n_conv_decoder * tensors_per_conv * f * v + num_classes * v
    return total


def estimate_memory_gb(
    topology: Topology, batch_size: int, in_channels: int, num_classes: int,
    n_conv: int = 2, n_conv_decoder: int = 2, model: MemoryModel | None = None,
) -> float:
    """Estimated device memory (GB) of one training step; see the module docstring."""
    model = model or MemoryModel()
    activations = count_activations(topology, in_channels, num_classes, n_conv, n_conv_decoder,
                                    model.tensors_per_conv)
    parameters = count_parameters(topology, in_channels, num_classes, n_conv, n_conv_decoder)
    total = (batch_size * activations * model.bytes_per_activation
             + parameters * model.bytes_per_parameter)
    return total / GB + model.overhead_gb


def feature_map_values(topology: Topology, num_classes: int, n_conv: int = 2,
                       n_conv_decoder: int = 2) -> int:
    """Feature-map values of one sample, counted as nnU-Net v2 counts them.

    Each encoder convolution's output (``n_conv × F_s × V_s`` per stage), each decoder
    stage's transposed convolution and convolutions (``(1 + n_conv_decoder) × F_s × V_s``,
    every stage but the deepest) and the top segmentation output (``K × V_0``; no
    deep-supervision heads). Input channels do not count.
    """
    voxels = [math.prod(s) for s in topology.feature_map_shapes()]
    feats = topology.features_per_stage
    total = sum(n_conv * f * v for f, v in zip(feats, voxels))
    total += sum((1 + n_conv_decoder) * feats[s] * voxels[s] for s in range(len(feats) - 1))
    return int(total + num_classes * voxels[0])


@dataclass(frozen=True)
class FeatureMapBudget:
    """nnU-Net v2's reference values (module docstring): what fills ``reference_gb``."""

    reference_values_3d: float = 560_000_000.0
    reference_values_2d: float = 85_000_000.0
    reference_gb: float = 8.0
    reference_batch_3d: int = 2
    reference_batch_2d: int = 12

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureMapBudget:
        return cls(**d)

    def reference(self, spatial_dims: int, budget_gb: float) -> tuple[float, int]:
        """Reference values for ``budget_gb`` and the batch size they were measured at."""
        if spatial_dims == 2:
            values, batch = self.reference_values_2d, self.reference_batch_2d
        else:
            values, batch = self.reference_values_3d, self.reference_batch_3d
        return values * (budget_gb / self.reference_gb), batch

    def memory_gb(self, values: int, batch_size: int, spatial_dims: int) -> float:
        """``values`` per sample at ``batch_size`` expressed in GB of the reference."""
        ref, ref_batch = self.reference(spatial_dims, self.reference_gb)
        return values * batch_size / ref_batch / ref * self.reference_gb


__all__ = ["FeatureMapBudget", "MemoryModel", "count_activations", "count_parameters",
           "estimate_memory_gb", "feature_map_values"]
