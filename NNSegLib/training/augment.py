"""Data augmentation in torch on whole batches on the training device (METHOD.md §4).

:class:`Augmenter` takes a batch ``images (B, C, *Q)``, ``seg (B, 1, *Q)`` and returns
``(B, C, *P)``, ``(B, 1, *P)`` where ``P`` is its ``patch_size`` (``Q == P`` usually; a
larger ``Q``, e.g. :func:`input_patch_size`, gives rotations real context instead of zero
padding; the centre is used). ``seg`` may have more than one channel (a cascade stage's
previous-stage segmentation rides along as channel 1): every channel is a label map.
Order (nnU-Net v2's): spatial → Gaussian noise → blur → brightness → contrast → low
resolution → inverted gamma → gamma → mirroring.

Spatial: rotation, scaling and elastic deformation of a sample are composed into one
sampling grid; all transformed samples of the batch go through one ``grid_sample`` for the
images (linear) and one per label value for the labels (each label's indicator linearly,
then the largest share wins: :func:`resample_labels_on_grid`; outside is background 0).
The grid uses ``align_corners=False`` and puts the untransformed output exactly on the voxels
the centre crop takes, so image and label stay aligned to the sub-voxel whatever the margin
``Q - P``. Samples without a spatial transform are only cropped, and when no sample has one,
``grid_sample`` is not called. Scale ``s`` multiplies the sampling coordinates
(``s < 1`` zooms in). Elastic deformation: normal random displacements on a coarse grid
(one control point every ``elastic_spacing`` voxels) upsampled linearly to the patch.
Rotation ranges follow nnU-Net: ±30° about every axis in 3D; ±180° in 2D (±15° for
elongated 2D patches). Anisotropic plans (``anisotropic=True``, axis 0 = the coarse one,
nnU-Net's "dummy 2D" augmentation): rotation about axis 0 by up to ±180°
(``rotation_deg_out_of_plane_anisotropic`` allows some about the others), scaling, elastic
and low-resolution simulation in-plane only.

Randomness comes only from the ``generator`` passed to each call: same seed, same result.
Small per-sample parameters are drawn on the generator's device; pass a generator on the
training device so that noise fields are drawn there too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities (per sample unless noted) and ranges of every augmentation.

    Defaults are the ``paper`` recipe; :meth:`for_recipe` gives ``v2``.
    """

    recipe: str = "paper"
    p_rotation: float = 0.2
    rotation_deg: float = 30.0  # 3D, about every axis
    rotation_deg_in_plane: float = 180.0  # 2D, and about axis 0 for anisotropic 3D
    rotation_deg_elongated_2d: float = 15.0  # 2D patches with aspect ratio > 1.5
    rotation_deg_out_of_plane_anisotropic: float = 0.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    p_elastic: float = 0.2
    elastic_magnitude: tuple[float, float] = (0.0, 3.0)  # displacement std, voxels
    elastic_spacing: tuple[float, float] = (9.0, 13.0)  # control point spacing, voxels
    p_noise: float = 0.0
    noise_variance: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    p_blur_per_channel: float = 0.5
    p_brightness: float = 0.0
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.0
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_lowres: float = 0.0
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    p_lowres_per_channel: float = 0.5
    p_gamma_inverted: float = 0.0
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_mirror: float = 0.5  # per axis
    mirror_axes: tuple[int, ...] | None = None  # spatial axes (0-based); None = all

    @classmethod
    def for_recipe(cls, recipe: str) -> AugmentationConfig:
        """``paper`` (rotation, scaling, elastic, gamma, mirroring) or ``v2`` (no elastic;
        adds noise, blur, brightness, contrast, low resolution, inverted gamma)."""
        if recipe == "paper":
            return cls()
        if recipe == "v2":
            return cls(recipe="v2", p_elastic=0.0, p_noise=0.1, p_blur=0.2, p_brightness=0.15,
                       p_contrast=0.15, p_lowres=0.25, p_gamma_inverted=0.1)
        raise ValueError(f"unknown augmentation recipe {recipe!r}; known: 'paper', 'v2'")

    def rotation_limits(self, patch_size: Sequence[int], anisotropic: bool = False
                        ) -> tuple[float, float]:
        """Largest rotation (degrees) about axis 0 and about the other axes, as nnU-Net.

        2D patches and anisotropic 3D ones (nnU-Net's "dummy 2D" augmentation) rotate in
        plane by up to :attr:`rotation_deg_in_plane` (an elongated 2D patch, aspect > 1.5,
        by :attr:`rotation_deg_elongated_2d`); isotropic 3D by :attr:`rotation_deg` about
        every axis.
        """
        if len(patch_size) == 2:
            elongated = max(patch_size) / max(1, min(patch_size)) > 1.5
            return (self.rotation_deg_elongated_2d if elongated else self.rotation_deg_in_plane,
                    0.0)
        if anisotropic:
            return self.rotation_deg_in_plane, self.rotation_deg_out_of_plane_anisotropic
        return self.rotation_deg, self.rotation_deg

    @classmethod
    def identity(cls) -> AugmentationConfig:
        """Every probability 0."""
        zero: dict[str, Any] = {f.name: 0.0 for f in dataclasses.fields(cls)
                                if f.name.startswith("p_")}
        zero["p_blur_per_channel"] = 0.5
        zero["p_lowres_per_channel"] = 0.5
        return cls(recipe="none", **zero)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentationConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown augmentation fields {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**values)


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) * (hi - lo) + lo


def _chance(gen: torch.Generator, n: int, p: float) -> torch.Tensor:
    """Bool ``(n,)``; draws even when ``p`` is 0 so the random stream does not depend on p."""
    return torch.rand(n, generator=gen, device=gen.device) < p


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` angles about axes 0, 1, 2 → ``(N, 3, 3)`` rotation matrices (z, y, x)."""
    n = angles.shape[0]
    mats = []
    for axis in range(3):
        c, s = torch.cos(angles[:, axis]), torch.sin(angles[:, axis])
        m = torch.eye(3, dtype=angles.dtype, device=angles.device).repeat(n, 1, 1)
        i, j = [a for a in range(3) if a != axis]
        m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
        mats.append(m)
    return mats[0] @ mats[1] @ mats[2]


def _angles(limit_rad: float) -> torch.Tensor:
    """Angles in ``[-limit, limit]`` that include the extremes and every multiple of 45°."""
    limit = min(abs(limit_rad), math.pi)
    steps = torch.linspace(-limit, limit, 2 * int(math.ceil(limit / (math.pi / 36))) + 1,
                           dtype=torch.float64)
    eighths = torch.arange(-4, 5, dtype=torch.float64) * (math.pi / 4)
    return torch.cat([steps, eighths[eighths.abs() <= limit]]).unique()


def input_patch_size(patch_size: Sequence[int], rotation_deg: float,
                     anisotropic: bool = False, out_of_plane_deg: float = 0.0,
                     max_scale: float = 1.0) -> tuple[int, ...]:
    """Patch to sample so that rotation and scaling stay inside real data.

    The extent of the rotated patch box over rotations in the allowed range (about axis 0
    by up to ``rotation_deg``; about axes 1 and 2 by the same, or by ``out_of_plane_deg``
    when ``anisotropic``), times ``max_scale`` (a scale ``s > 1`` samples an ``s`` times
    larger region; not along axis 0 when ``anisotropic``, which is never scaled). For 2D,
    ``rotation_deg`` is the in-plane limit. nnU-Net enlarges its sampled patch the same way.
    """
    dims = len(patch_size)
    corners = torch.tensor(list(_corners(patch_size)), dtype=torch.float64)
    a0 = _angles(math.radians(rotation_deg))
    if dims == 2:
        c, s = torch.cos(a0), torch.sin(a0)
        rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    else:
        other = _angles(math.radians(out_of_plane_deg if anisotropic else rotation_deg))
        if len(other) > 9:
            other = other[torch.linspace(0, len(other) - 1, 9).round().long()]
        grid = torch.cartesian_prod(a0, other, other)
        rot = _rotation(grid)
    extent = torch.einsum("cd,nkd->nck", corners, rot).abs().amax((0, 1))
    factor = torch.full((dims,), max(1.0, float(max_scale)), dtype=torch.float64)
    if anisotropic and dims == 3:
        factor[0] = 1.0
    extent = extent * factor
    return tuple(max(int(p), int(math.ceil(2 * float(e) - 1e-6)) + 1)
                 for p, e in zip(patch_size, extent))


def _corners(patch_size: Sequence[int]):
    half = [(p - 1) / 2 for p in patch_size]
    for k in range(2 ** len(half)):
        yield [h if (k >> i) & 1 else -h for i, h in enumerate(half)]


class Augmenter:
    """Callable batch augmentation (see the module docstring).

    Args:
        config: Probabilities and ranges.
        spatial_dims: 2 or 3.
        patch_size: Output patch ``P``.
        anisotropic: Axis 0 is the low-resolution axis: transform in-plane only.
    """

    def __init__(self, config: AugmentationConfig, spatial_dims: int,
                 patch_size: Sequence[int], anisotropic: bool = False) -> None:
        if spatial_dims not in (2, 3) or len(patch_size) != spatial_dims:
            raise ValueError(f"patch {tuple(patch_size)} does not match {spatial_dims}D")
        self.config = config
        self.spatial_dims = spatial_dims
        self.patch_size = tuple(int(p) for p in patch_size)
        self.anisotropic = anisotropic and spatial_dims == 3

    def __call__(self, images: torch.Tensor, seg: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch; returns new tensors (the inputs are not modified)."""
        if images.ndim != self.spatial_dims + 2 or seg.ndim != images.ndim or seg.shape[1] < 1:
            raise ValueError(f"expected images (B, C, *P) and seg (B, L, *P), got "
                             f"{tuple(images.shape)} and {tuple(seg.shape)}")
        images, seg = self._spatial(images, seg, generator)
        images = apply_intensity(images, self.config, generator, self.anisotropic)
        return self._mirror(images, seg, generator)

    # --- spatial -----------------------------------------------------------------------
    def _spatial(self, images: torch.Tensor, seg: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, b = self.config, images.shape[0]
        rotate = _chance(gen, b, cfg.p_rotation)
        scale = _chance(gen, b, cfg.p_scale)
        elastic = _chance(gen, b, cfg.p_elastic)
        chosen = (rotate | scale | elastic).nonzero().flatten().tolist()
        out_img, out_seg = _center_crop(images, self.patch_size), _center_crop(seg, self.patch_size)
        if not chosen:
            return out_img.clone(), out_seg.clone()
        idx = torch.tensor(chosen, device=gen.device)
        matrix = self._matrices(rotate[idx], scale[idx], gen)
        grid = self._grid(matrix, elastic[idx], gen, images.shape[2:], images.device)
        rows = idx.to(images.device)
        warped = F.grid_sample(images[rows].float(), grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        out_img = out_img.clone()
        out_seg = out_seg.clone()
        out_img[rows] = warped.to(images.dtype)
        out_seg[rows] = resample_labels_on_grid(seg[rows], grid).to(seg.dtype)
        return out_img, out_seg

    def _matrices(self, rotate: torch.Tensor, scale: torch.Tensor,
                  gen: torch.Generator) -> torch.Tensor:
        """``(N, d, d)`` output → input coordinate matrices (rotation @ scale)."""
        cfg, n, d = self.config, rotate.shape[0], self.spatial_dims
        rad, other = (math.radians(a) for a in cfg.rotation_limits(self.patch_size,
                                                                   self.anisotropic))
        if d == 2:
            a = _uniform(gen, n, -rad, rad) * rotate
            c, s = torch.cos(a), torch.sin(a)
            rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        else:
            angles = torch.stack([_uniform(gen, n, -rad, rad), _uniform(gen, n, -other, other),
                                  _uniform(gen, n, -other, other)], 1) * rotate[:, None]
            rot = _rotation(angles)
        factor = torch.where(scale, _uniform(gen, n, *cfg.scale_range),
                             torch.ones(n, device=gen.device))
        diag = factor[:, None].repeat(1, d)
        if self.anisotropic:
            diag[:, 0] = 1.0
        return rot * diag[:, None, :]

    def _grid(self, matrix: torch.Tensor, elastic: torch.Tensor, gen: torch.Generator,
              in_shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """``grid_sample`` grid ``(N, *P, d)`` (last axis in x, y, z order, align_corners False).

        Output voxel ``i`` sits at ``u = i - (P - 1) / 2`` from the patch centre and reads the
        input at ``M·u + e(u) + c`` with ``c = (P - 1) / 2 + (Q - P) // 2``: the untransformed
        grid lands exactly on the voxels :func:`_center_crop` takes (odd or even margin), so
        transformed and untransformed samples share one convention, to the voxel.
        """
        axes = [torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2
                for p in self.patch_size]
        base = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (*P, d)
        coords = torch.einsum("...j,nij->n...i", base, matrix.to(device))
        if bool(elastic.any()):
            coords = coords + self._elastic(elastic, gen, device)
        centre = torch.tensor([(p - 1) / 2 + (q - p) // 2 for p, q in zip(self.patch_size,
                                                                        in_shape)],
                              dtype=torch.float32, device=device)
        size = torch.tensor(list(in_shape), dtype=torch.float32, device=device)
        return ((2 * (coords + centre) + 1) / size - 1).flip(-1)

    def _elastic(self, elastic: torch.Tensor, gen: torch.Generator,
                 device: torch.device) -> torch.Tensor:
        """Smooth random displacements ``(N, *P, d)`` (zero for samples not chosen)."""
        cfg, n, d = self.config, elastic.shape[0], self.spatial_dims
        spacing = float(_uniform(gen, 1, *cfg.elastic_spacing))
        coarse = tuple(max(2, round(p / spacing) + 1) for p in self.patch_size)
        field = torch.randn((n, d, *coarse), generator=gen, device=gen.device)
        magnitude = _uniform(gen, n, *cfg.elastic_magnitude) * elastic
        field = field * magnitude.view(n, *([1] * (d + 1)))
        if self.anisotropic:
            field[:, 0] = 0.0
        mode = "trilinear" if d == 3 else "bilinear"
        field = F.interpolate(field.to(device), size=self.patch_size, mode=mode,
                              align_corners=True)
        return field.movedim(1, -1)

    # --- mirroring ---------------------------------------------------------------------
    def _mirror(self, images: torch.Tensor, seg: torch.Tensor,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, b = self.config, images.shape[0]
        axes = cfg.mirror_axes if cfg.mirror_axes is not None else range(self.spatial_dims)
        for axis in axes:
            flip = _chance(gen, b, cfg.p_mirror).nonzero().flatten()
            if flip.numel() == 0:
                continue
            rows = flip.to(images.device)
            images[rows] = images[rows].flip(axis + 2)
            seg[rows] = seg[rows].flip(axis + 2)
        return images, seg


# --- intensity -------------------------------------------------------------------------
def apply_intensity(x: torch.Tensor, cfg: AugmentationConfig, gen: torch.Generator,
                    in_plane: bool = False) -> torch.Tensor:
    """Noise, blur, brightness, contrast, low resolution, inverted gamma, gamma (in place).

    ``in_plane``: blur and low-resolution simulation leave axis 0 alone.
    """
    b = x.shape[0]
    skip = 1 if in_plane else 0
    _noise(x, _rows(gen, b, cfg.p_noise, x), cfg, gen)
    _blur(x, _rows(gen, b, cfg.p_blur, x), cfg, gen, skip)
    _brightness(x, _rows(gen, b, cfg.p_brightness, x), cfg, gen)
    _contrast(x, _rows(gen, b, cfg.p_contrast, x), cfg, gen)
    _lowres(x, _rows(gen, b, cfg.p_lowres, x), cfg, gen, skip)
    _gamma(x, _rows(gen, b, cfg.p_gamma_inverted, x), cfg, gen, inverted=True)
    _gamma(x, _rows(gen, b, cfg.p_gamma, x), cfg, gen, inverted=False)
    return x


def _rows(gen: torch.Generator, n: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """Indices (on ``like``'s device) of the samples chosen with probability ``p``."""
    return _chance(gen, n, p).nonzero().flatten().to(like.device)


def _per_channel(gen: torch.Generator, rows: torch.Tensor, x: torch.Tensor, lo: float,
                 hi: float) -> torch.Tensor:
    """Uniform values ``(N, C, 1, …)`` for the chosen rows, on ``x``'s device."""
    n, c = rows.numel(), x.shape[1]
    values = _uniform(gen, n * c, lo, hi).to(x.device, x.dtype)
    return values.view(n, c, *([1] * (x.ndim - 2)))


def _noise(x, rows, cfg, gen) -> None:
    if rows.numel() == 0:
        return
    variance = _uniform(gen, rows.numel(), *cfg.noise_variance).to(x.device, x.dtype)
    noise = torch.randn((rows.numel(), *x.shape[1:]), generator=gen, device=gen.device)
    std = variance.sqrt().view(-1, *([1] * (x.ndim - 1)))
    x[rows] += noise.to(x.device, x.dtype) * std


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, 2·radius+1)`` normalized 1D Gaussians for ``sigma (N,)``."""
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
    return k / k.sum(1, keepdim=True)


def _blur(x, rows, cfg, gen, skip: int) -> None:
    """Separable Gaussian blur of a random half of the channels of the chosen samples."""
    if rows.numel() == 0:
        return
    c, d = x.shape[1], x.ndim - 2
    pick = _chance(gen, rows.numel() * c, cfg.p_blur_per_channel).to(x.device)
    sigma = _uniform(gen, rows.numel() * c * d, *cfg.blur_sigma).view(-1, d).to(x.device)
    sel = x[rows].reshape(1, -1, *x.shape[2:])[:, pick]  # (1, M, *P)
    if sel.shape[1] == 0:
        return
    sigma = sigma[pick]
    radius = max(1, math.ceil(3 * cfg.blur_sigma[1]))
    for axis in range(skip, d):
        kernel = _gaussian_kernels(sigma[:, axis], radius).to(x.dtype)
        shape = [1] * d
        shape[axis] = 2 * radius + 1
        pad = [0] * (2 * d)
        pad[2 * (d - 1 - axis)] = pad[2 * (d - 1 - axis) + 1] = radius
        conv = F.conv3d if d == 3 else F.conv2d
        sel = conv(F.pad(sel, pad, mode="replicate"), kernel.view(-1, 1, *shape),
                   groups=sel.shape[1])
    block = x[rows].reshape(1, -1, *x.shape[2:])
    block[:, pick] = sel
    x[rows] = block.view(rows.numel(), c, *x.shape[2:])


def _brightness(x, rows, cfg, gen) -> None:
    if rows.numel():
        x[rows] *= _per_channel(gen, rows, x, *cfg.brightness_range)


def _contrast(x, rows, cfg, gen) -> None:
    """Scale around the mean, clipped to the original range."""
    if rows.numel() == 0:
        return
    factor = _per_channel(gen, rows, x, *cfg.contrast_range)
    v = x[rows]
    dims = tuple(range(2, x.ndim))
    mean = v.mean(dims, keepdim=True)
    lo, hi = v.amin(dims, keepdim=True), v.amax(dims, keepdim=True)
    x[rows] = torch.maximum(torch.minimum((v - mean) * factor + mean, hi), lo)


def _lowres(x, rows, cfg, gen, skip: int) -> None:
    """Downsample (nearest) by a random zoom and upsample back (linear), per channel."""
    if rows.numel() == 0:
        return
    c, d = x.shape[1], x.ndim - 2
    pick = _chance(gen, rows.numel() * c, cfg.p_lowres_per_channel).tolist()
    zoom = _uniform(gen, rows.numel() * c, *cfg.lowres_zoom).tolist()
    size = tuple(x.shape[2:])
    mode = "trilinear" if d == 3 else "bilinear"
    for k, (chosen, z) in enumerate(zip(pick, zoom)):
        if not chosen:
            continue
        r, ch = int(rows[k // c]), k % c
        small = tuple(s if a < skip else max(1, round(s * z)) for a, s in enumerate(size))
        v = F.interpolate(x[r:r + 1, ch:ch + 1], size=small, mode="nearest")
        x[r, ch] = F.interpolate(v, size=size, mode=mode, align_corners=False)[0, 0]


def _gamma(x, rows, cfg, gen, inverted: bool) -> None:
    """``x ← ((x − min)/range)^γ · range + min`` per channel, keeping mean and std."""
    if rows.numel() == 0:
        return
    lo, hi = cfg.gamma_range
    n = rows.numel() * x.shape[1]
    low_half = _chance(gen, n, 0.5) & (lo < 1)
    gamma = torch.where(low_half, _uniform(gen, n, lo, min(hi, 1.0)),
                        _uniform(gen, n, max(lo, 1.0), hi))
    gamma = gamma.to(x.device, x.dtype).view(rows.numel(), x.shape[1], *([1] * (x.ndim - 2)))
    v = -x[rows] if inverted else x[rows]
    dims = tuple(range(2, x.ndim))
    std, mean = torch.std_mean(v, dims, keepdim=True)
    vmin = v.amin(dims, keepdim=True)
    span = v.amax(dims, keepdim=True) - vmin
    out = ((v - vmin) / (span + 1e-7)).pow(gamma) * span + vmin
    new_std, new_mean = torch.std_mean(out, dims, keepdim=True)
    out = (out - new_mean) / (new_std + 1e-7) * std + mean
    x[rows] = -out if inverted else out


def resample_labels_on_grid(seg: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Label maps ``(N, L, *Q)`` sampled at ``grid`` without shifting boundaries.

    Each label's indicator is interpolated linearly (as the image is) and every output voxel
    takes the label with the largest interpolated share (nnU-Net resamples segmentations the
    same way): the boundary sits where the image's does, unlike nearest-neighbour sampling,
    which moves it by up to half a voxel wherever the grid falls between voxels. Outside the
    input counts as label 0. Ties go to the smaller label value.

    Returns:
        ``(N, L, *P)`` float tensor of label values.
    """
    n, channels = seg.shape[:2]
    out = torch.zeros((n, channels, *grid.shape[1:-1]), dtype=torch.float32, device=seg.device)
    for c in range(channels):
        labels = torch.unique(seg[:, c])
        if 0 not in labels.tolist():
            labels = torch.cat([labels.new_zeros(1), labels])
        best = None
        for value in labels.tolist():
            share = F.grid_sample((seg[:, c:c + 1] == value).float(), grid, mode="bilinear",
                                  padding_mode="zeros", align_corners=False)[:, 0]
            if value == 0:   # the part of the kernel outside the input is background
                inside = F.grid_sample(torch.ones_like(seg[:, c:c + 1], dtype=torch.float32),
                                       grid, mode="bilinear", padding_mode="zeros",
                                       align_corners=False)[:, 0]
                share = share + (1 - inside)
            if best is None:
                best, out[:, c] = share, float(value)
            else:
                better = share > best
                out[:, c][better] = float(value)
                best = torch.where(better, share, best)
    return out


def _center_crop(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Centre crop of the spatial axes to ``size`` (no-op when equal)."""
    start = [(s - p) // 2 for s, p in zip(x.shape[2:], size)]
    if any(s < 0 for s in start):
        raise ValueError(f"input patch {tuple(x.shape[2:])} smaller than {tuple(size)}")
    index = (slice(None), slice(None), *[slice(a, a + p) for a, p in zip(start, size)])
    return x[index]


__all__ = ["AugmentationConfig", "Augmenter", "apply_intensity", "input_patch_size",
           "resample_labels_on_grid"]
