"""An explicit estimate of the device memory one training step of a U-Net needs.

The planner trades patch and batch size against this number (METHOD §2). The model:

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


__all__ = ["MemoryModel", "count_activations", "count_parameters", "estimate_memory_gb"]
