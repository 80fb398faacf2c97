"""Starting the segmentation heads at the class prior instead of at random (METHOD §4).

With He-initialised heads the first logits are random, the softmax is near uniform and the
first updates mostly learn the class frequencies: with SGD momentum 0.99 that step overshoots
into an all-background prediction that the network then needs many iterations to leave
(measured in ``bench/RESULTS.md``, section "early phase"). Setting every head's biases to the
log class frequencies of the training patches (``RunConfig.head_init = "prior"``), optionally
with zero weights (``"prior_zero"``: every head then starts at exactly the prior), removes
that first, largest gradient, so the early updates go to the features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from NNSegLib.training.sampler import PatchSampler, batch_rng

if TYPE_CHECKING:   # pragma: no cover
    from NNSegLib.training.batches import Batches

#: The random stream the frequency estimate draws from (not used by training itself).
PRIOR_STREAM = 3


def class_frequencies(sampler: PatchSampler, num_classes: int, seed: int,
                      batches: int = 4) -> np.ndarray:
    """Share of each class among the voxels of ``batches`` training batches (no augmentation).

    Every class gets at least ``1e-4`` so its log stays finite.
    """
    counts = np.zeros(num_classes, np.float64)
    for b in range(batches):
        _, seg = sampler.sample(batch_rng(seed, PRIOR_STREAM, 0, b))
        labels = np.clip(seg[:, 0].astype(np.int64), 0, num_classes - 1)
        counts += np.bincount(labels.ravel(), minlength=num_classes)[:num_classes]
    freqs = np.maximum(counts / max(counts.sum(), 1.0), 1e-4)
    return freqs / freqs.sum()


def initialise_heads(network: Any, frequencies: np.ndarray, zero_weights: bool,
                     mean_logits: list[torch.Tensor] | None = None) -> None:
    """Biases of every segmentation head := log ``frequencies`` (minus the head's mean
    logits per class when given: the mean logit then equals the log frequency); weights 0
    if asked."""
    log_prior = torch.as_tensor(np.log(frequencies), dtype=torch.float32)
    with torch.no_grad():
        for i, head in enumerate(network.decoder.seg_layers):
            bias = log_prior if mean_logits is None else log_prior - mean_logits[i].cpu()
            head.bias.copy_(bias.to(head.bias.device, head.bias.dtype))
            if zero_weights:
                head.weight.zero_()


def sample_batches(sampler: PatchSampler, seed: int, batches: int = 2
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` training batches (images, labels) from the prior's own random stream."""
    out = []
    for b in range(batches):
        images, seg = sampler.sample(batch_rng(seed, PRIOR_STREAM, 1, b))
        out.append((torch.from_numpy(images), torch.from_numpy(seg.astype(np.float32))))
    return out


def mean_head_logits(network: Any, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Mean logit per class of every segmentation head over the network ``inputs`` (no
    augmentation), in ``seg_layers`` order."""
    heads = len(network.decoder.seg_layers)
    sums = [torch.zeros(network.num_classes) for _ in range(heads)]
    was_training = network.training
    network.train()   # every deep-supervision head answers; instance norm is the same
    with torch.no_grad():
        for x in inputs:
            x = x.contiguous(memory_format=network.memory_format)
            outputs = network.decoder(network.encoder(x), True)
            for i, out in enumerate(outputs[::-1]):   # the decoder returns highest first
                sums[i] += out.float().mean(dim=[0, *range(2, out.ndim)]).cpu()
    network.train(was_training)
    return [s / len(inputs) for s in sums]


def initialise_run_heads(network: torch.nn.Module, batches: Batches, head_init: str,
                         seed: int) -> dict[str, Any] | None:
    """A new run's segmentation heads per ``RunConfig.head_init`` (before any step).

    Returns:
        What was done (``{"head_init", "class_frequencies"}``) or ``None`` for ``he``.
    """
    if head_init == "he":
        return None
    from NNSegLib.training.augment import _center_crop

    setup = batches.setup
    freqs = class_frequencies(batches.train_sampler, setup.num_classes, seed)
    means = None
    if head_init == "calibrated":
        patch = tuple(setup.config.patch_size)
        inputs = []
        for images, seg in sample_batches(batches.train_sampler, seed):
            images, seg = batches.to_device(_center_crop(images, patch),
                                            _center_crop(seg, patch))
            inputs.append(batches.with_previous_stage(images, seg)[0])
        means = mean_head_logits(network, inputs)
    initialise_heads(network, freqs, zero_weights=head_init == "prior_zero", mean_logits=means)
    return {"head_init": head_init, "class_frequencies": freqs.tolist()}


__all__ = ["PRIOR_STREAM", "class_frequencies", "initialise_heads", "initialise_run_heads",
           "mean_head_logits", "sample_batches"]
