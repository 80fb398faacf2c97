"""What goes into the network during training: sampled patches, on the device, augmented.

:class:`Batches` owns the samplers (patch extraction runs on background threads through
:class:`~NNSegLib.training.sampler.Prefetcher`), the augmenter (it runs on the training
device, on the whole batch, in the main thread) and the cascade's previous-stage channels.
Every training batch and its augmentation are drawn from generators keyed by the run's
iteration count in full epochs of ``iterations_per_epoch`` (:meth:`Batches.coordinates`),
so where the trainer's clock ends an epoch does not change what the network sees, and a
resumed run draws exactly the batches it would have drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from NNSegLib.training import distributed as dist
from NNSegLib.training.sampler import TRAIN_STREAM, PatchSampler, batch_rng

if TYPE_CHECKING:   # pragma: no cover
    from NNSegLib.training.train_setup import TrainSetup

AUG_STREAM = 2


class Batches:
    """Samplers, augmenter and device transfer of one training run."""

    def __init__(self, setup: TrainSetup) -> None:
        self.setup = setup
        self.rc = setup.run_config
        self.device = setup.device
        self.augment = self._build_augmenter()
        self.train_sampler, self.val_sampler = self._build_samplers()

    def _build_augmenter(self) -> Any:
        """The recipe's augmenter; it crops the (larger) sampled patch to the plan's patch."""
        from NNSegLib.training.augment import AugmentationConfig, Augmenter, input_patch_size

        cfg = self.setup.config
        patch = tuple(cfg.patch_size)
        # Axis 0 much coarser than the others (patch much shorter there): in-plane spatial
        # augmentation only, as nnU-Net does for such plans.
        anisotropic = cfg.spatial_dims == 3 and max(patch) / patch[0] > 3
        aug = AugmentationConfig.for_recipe(self.rc.recipe)
        axis0, _other = aug.rotation_limits(patch, anisotropic)
        rotates = aug.p_rotation > 0
        self.sample_patch = input_patch_size(
            patch, axis0 if rotates else 0.0, anisotropic,
            aug.rotation_deg_out_of_plane_anisotropic if rotates else 0.0,
            max(aug.scale_range) if aug.p_scale > 0 else 1.0) \
            if rotates or aug.p_scale > 0 or aug.p_elastic > 0 else patch
        return Augmenter(aug, cfg.spatial_dims, patch, anisotropic)

    def _build_samplers(self) -> tuple[PatchSampler, PatchSampler]:
        """Training patches at the augmenter's input size, validation at the plan's patch."""
        s, rc = self.setup, self.rc
        batch = dist.local_batch_size(s.config.batch_size, s.ctx)
        train = PatchSampler(s.preprocessed, s.train_cases, self.sample_patch, batch,
                             rc.oversample_foreground, s.previous_stage,
                             rc.foreground_placement)
        val = PatchSampler(s.preprocessed, s.val_cases or s.train_cases, s.config.patch_size,
                           batch, rc.oversample_foreground, s.previous_stage)
        return train, val

    def coordinates(self, step: int) -> tuple[int, int]:
        """``(epoch, iteration)`` of the run's iteration ``step`` in full epochs: what keys its
        random streams (the same wherever the clock ended the epochs)."""
        return divmod(step, self.rc.iterations_per_epoch)

    def load(self, stream: int, index: int, epoch: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Background thread: sample a batch, as (pinned) tensors. Training: ``index`` is
        the run's iteration; validation: the batch ``index`` of ``epoch``."""
        sampler = self.train_sampler if stream == TRAIN_STREAM else self.val_sampler
        epoch, iteration = self.coordinates(index) if epoch is None else (epoch, index)
        rng = batch_rng(self.rc.seed, stream, epoch, iteration, self.setup.ctx.rank)
        images, seg = sampler.sample(rng)
        images_t, seg_t = torch.from_numpy(images), torch.from_numpy(seg.astype(np.float32))
        if self.device.type == "cuda":
            images_t, seg_t = images_t.pin_memory(), seg_t.pin_memory()
        return images_t, seg_t

    def to_device(self, images: torch.Tensor, seg: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        seg = seg.to(self.device, non_blocking=True)
        return images, seg

    def augmented(self, images: torch.Tensor, seg: torch.Tensor, step: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of the run's iteration ``step`` augmented (on its device)."""
        epoch, iteration = self.coordinates(step)
        seed = int(batch_rng(self.rc.seed, AUG_STREAM, epoch, iteration, self.setup.ctx.rank)
                   .integers(2 ** 62))
        gen = torch.Generator(device=self.device).manual_seed(seed)
        images, seg = self.augment(images, seg, gen)
        return self.with_previous_stage(images, seg, gen)

    def with_previous_stage(self, images: torch.Tensor, seg: torch.Tensor,
                            gen: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cascade: label channel 1 (previous stage) → one-hot input channels.

        With ``gen`` (training) the one-hot channels get nnU-Net's cascade augmentation
        (:mod:`NNSegLib.training.cascade_augment`) after the spatial and intensity
        transforms, which only touched the image channels.
        """
        if seg.shape[1] == 1:
            return images, seg
        from NNSegLib.inference.cascade import one_hot_foreground
        from NNSegLib.training.cascade_augment import (
            CascadeAugmentationConfig,
            augment_previous_stage,
        )

        onehot = one_hot_foreground(seg[:, 1:], self.setup.num_classes)
        if gen is not None:
            onehot = augment_previous_stage(onehot, CascadeAugmentationConfig(), gen)
        return torch.cat([images, onehot.to(images.dtype)], 1), seg[:, :1]


__all__ = ["AUG_STREAM", "Batches"]
