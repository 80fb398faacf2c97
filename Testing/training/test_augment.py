"""Tests of NNSegLib.training.augment."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from NNSegLib.training.augment import (
    AugmentationConfig,
    Augmenter,
    apply_intensity,
    input_patch_size,
)

IDENTITY = AugmentationConfig.identity()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sphere_batch(b=2, shape=(16, 20, 18), radius=5.0, classes=3):
    zz, yy, xx = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape],
                                indexing="ij")
    c = [(s - 1) / 2 for s in shape]
    r = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2).sqrt()
    seg = torch.zeros(shape, dtype=torch.int8)
    seg[r <= radius] = 1
    seg[r <= radius / 2] = classes - 1
    img = torch.randn((b, 2, *shape), generator=gen(9)) + seg.float()
    return img, seg.expand(b, 1, *shape).clone()


def test_recipes_and_round_trip():
    paper, v2 = AugmentationConfig.for_recipe("paper"), AugmentationConfig.for_recipe("v2")
    assert paper.p_elastic == 0.2 and paper.p_noise == 0.0 and paper.p_lowres == 0.0
    assert v2.p_elastic == 0.0 and v2.p_noise == 0.1 and v2.p_lowres == 0.25
    assert v2.p_gamma == 0.3 and v2.p_gamma_inverted == 0.1 and v2.p_mirror == 0.5
    assert AugmentationConfig.from_dict(v2.to_dict()) == v2
    with pytest.raises(ValueError):
        AugmentationConfig.for_recipe("v3")
    with pytest.raises(ValueError):
        AugmentationConfig.from_dict({"p_warp": 1.0})


def test_identity_returns_input_unchanged():
    img, seg = sphere_batch()
    out_img, out_seg = Augmenter(IDENTITY, 3, img.shape[2:])(img, seg, gen())
    assert torch.equal(out_img, img) and torch.equal(out_seg, seg)
    out_img += 1  # a copy, not the caller's tensor
    assert not torch.equal(out_img, img)


def test_deterministic_with_seed():
    img, seg = sphere_batch(b=3)
    cfg = dataclasses.replace(AugmentationConfig.for_recipe("v2"), p_rotation=0.7, p_scale=0.7,
                              p_elastic=0.5, p_noise=0.5, p_blur=0.5, p_lowres=0.5)
    aug = Augmenter(cfg, 3, img.shape[2:])
    a = aug(img, seg, gen(5))
    b = aug(img, seg, gen(5))
    c = aug(img, seg, gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_labels_stay_valid_after_spatial_transforms():
    img, seg = sphere_batch(b=4)
    cfg = dataclasses.replace(IDENTITY, p_rotation=1.0, p_scale=1.0, p_elastic=1.0)
    out_img, out_seg = Augmenter(cfg, 3, img.shape[2:])(img, seg, gen(1))
    assert out_seg.dtype == seg.dtype and out_img.shape == img.shape
    assert set(out_seg.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(out_seg, seg)


def test_mirroring_flips_image_and_seg_together():
    img, seg = sphere_batch()
    seg[:, :, :4] = 0  # make it asymmetric
    img[:, 0, :, :5] += 3
    cfg = dataclasses.replace(IDENTITY, p_mirror=1.0)
    out_img, out_seg = Augmenter(cfg, 3, img.shape[2:])(img, seg, gen())
    assert torch.equal(out_img, img.flip(2, 3, 4)) and torch.equal(out_seg, seg.flip(2, 3, 4))
    cfg = dataclasses.replace(cfg, mirror_axes=(1,))
    out_img, out_seg = Augmenter(cfg, 3, img.shape[2:])(img, seg, gen())
    assert torch.equal(out_img, img.flip(3)) and torch.equal(out_seg, seg.flip(3))


def test_small_rotation_keeps_label_volume():
    img, seg = sphere_batch(b=2, shape=(24, 24, 24), radius=7)
    cfg = dataclasses.replace(IDENTITY, p_rotation=1.0, rotation_deg=15.0)
    _, out_seg = Augmenter(cfg, 3, img.shape[2:])(img, seg, gen(2))
    before = (seg > 0).sum((1, 2, 3, 4)).float()
    after = (out_seg > 0).sum((1, 2, 3, 4)).float()
    assert not torch.equal(out_seg, seg)
    assert ((after - before).abs() / before).max().item() < 0.05


def test_scaling_changes_volume_by_cube_of_factor():
    img, seg = sphere_batch(b=1, shape=(24, 24, 24), radius=6)
    cfg = dataclasses.replace(IDENTITY, p_scale=1.0, scale_range=(0.8, 0.8))
    _, out_seg = Augmenter(cfg, 3, img.shape[2:])(img, seg, gen())
    ratio = (out_seg > 0).sum().item() / (seg > 0).sum().item()
    assert ratio == pytest.approx(1 / 0.8 ** 3, rel=0.08)  # s < 1 zooms in


def _slice_pattern(b=2, shape=(6, 20, 20)):
    z = torch.arange(shape[0], dtype=torch.float32).view(1, 1, -1, 1, 1) + 1
    img = z.expand(b, 1, *shape).clone()
    seg = (z.long() % 3).expand(b, 1, *shape).clone().to(torch.int16)
    return img, seg


def test_anisotropic_transforms_stay_in_plane():
    img, seg = _slice_pattern()
    cfg = dataclasses.replace(IDENTITY, p_rotation=1.0, p_scale=1.0, p_elastic=1.0,
                              elastic_magnitude=(2.0, 3.0))
    out_img, out_seg = Augmenter(cfg, 3, img.shape[2:], anisotropic=True)(img, seg, gen(3))
    assert not torch.equal(out_img, img)
    for z in range(img.shape[2]):
        values = out_img[:, :, z]
        assert values.max().item() == pytest.approx(z + 1, abs=1e-3)  # only its own slice
        assert values.min().item() >= -1e-4  # (or zero padding mixed in)
        assert set(out_seg[:, :, z].unique().tolist()) <= {0, (z + 1) % 3}


def test_isotropic_rotation_mixes_slices():
    """The check above can fail: without anisotropy slices do get mixed."""
    img, seg = _slice_pattern(shape=(20, 20, 20))
    cfg = dataclasses.replace(IDENTITY, p_rotation=1.0)
    out_img, _ = Augmenter(cfg, 3, img.shape[2:])(img, seg, gen(3))
    z = 10
    assert (out_img[:, :, z] - (z + 1)).abs().max().item() > 0.5


def test_2d_augmentation_and_larger_input_is_center_cropped():
    g = gen(4)
    img = torch.randn(3, 1, 30, 28, generator=g)
    seg = torch.randint(0, 4, (3, 1, 30, 28), generator=g)
    out_img, out_seg = Augmenter(IDENTITY, 2, (20, 20))(img, seg, gen())
    assert torch.equal(out_img, img[:, :, 5:25, 4:24])
    assert torch.equal(out_seg, seg[:, :, 5:25, 4:24])
    cfg = dataclasses.replace(AugmentationConfig.for_recipe("v2"), p_rotation=1.0, p_scale=1.0)
    out_img, out_seg = Augmenter(cfg, 2, (20, 20))(img, seg, gen())
    assert out_img.shape == (3, 1, 20, 20) and torch.isfinite(out_img).all()
    assert set(out_seg.unique().tolist()) <= {0, 1, 2, 3}


def test_input_patch_size():
    assert input_patch_size((20, 30), 0.0) == (20, 30)
    big = input_patch_size((20, 20), 45.0)
    assert big[0] == big[1] and abs(big[0] - 19 * 2 ** 0.5 - 1) <= 1
    aniso = input_patch_size((8, 32, 32), 30.0, anisotropic=True)
    assert aniso[0] == 8 and aniso[1] > 32


def test_intensity_transforms_numbers():
    g = gen(7)
    x = torch.rand(2, 2, 8, 9, 10, generator=g) * 3 + 1
    dims = (2, 3, 4)
    gamma = apply_intensity(x.clone(), dataclasses.replace(IDENTITY, p_gamma=1.0), gen(1))
    assert torch.allclose(gamma.mean(dims), x.mean(dims), atol=1e-4)
    assert torch.allclose(gamma.std(dims), x.std(dims), atol=1e-3)
    assert not torch.allclose(gamma, x)
    bright = apply_intensity(x.clone(), dataclasses.replace(IDENTITY, p_brightness=1.0,
                                                             brightness_range=(1.2, 1.2)), gen())
    assert torch.allclose(bright, x * 1.2)
    contrast = apply_intensity(x.clone(), dataclasses.replace(IDENTITY, p_contrast=1.0,
                                                               contrast_range=(2.0, 2.0)), gen())
    assert contrast.amax(dims).sub(x.amax(dims)).abs().max() < 1e-5  # range preserved
    assert contrast.std(dims).gt(x.std(dims)).all()
    blur = apply_intensity(x.clone(), dataclasses.replace(IDENTITY, p_blur=1.0,
                                                           p_blur_per_channel=1.0), gen())
    assert blur.std(dims).lt(x.std(dims)).all()
    assert torch.allclose(blur.mean(dims), x.mean(dims), atol=0.05)
    noise = apply_intensity(x.clone(), dataclasses.replace(IDENTITY, p_noise=1.0,
                                                            noise_variance=(0.04, 0.04)), gen())
    assert (noise - x).std().item() == pytest.approx(0.2, rel=0.1)
    low = apply_intensity(x.clone(), dataclasses.replace(IDENTITY, p_lowres=1.0,
                                                          p_lowres_per_channel=1.0,
                                                          lowres_zoom=(0.5, 0.5)), gen())
    assert low.shape == x.shape and not torch.allclose(low, x)


def test_rotation_ranges_follow_nnunet():
    cfg = AugmentationConfig.for_recipe("paper")
    assert cfg.rotation_limits((40, 56, 40)) == (30.0, 30.0)
    assert cfg.rotation_limits((8, 64, 64), anisotropic=True) == (180.0, 0.0)
    assert cfg.rotation_limits((112, 112)) == (180.0, 0.0)
    assert cfg.rotation_limits((64, 160)) == (15.0, 0.0)   # elongated 2D patch
    # A full in-plane turn needs the patch's diagonal, reached at 45°, not at the extremes.
    square = input_patch_size((20, 20), 180.0)
    assert square == input_patch_size((20, 20), 45.0)
    assert abs(square[0] - 19 * 2 ** 0.5 - 1) <= 1
    aniso = input_patch_size((8, 32, 32), 180.0, anisotropic=True)
    assert aniso == (8, 45, 45)    # ceil(31 * sqrt(2)) + 1 in plane, axis 0 untouched
    iso = input_patch_size((20, 20, 20), 30.0)
    assert all(21 <= e <= 35 for e in iso)


def test_2d_rotations_cover_the_full_circle():
    """Over many samples 2D rotation angles reach beyond ±90° (a half-turn flips the image)."""
    img = torch.zeros(64, 1, 21, 21)
    img[:, 0, 2:6, 8:13] = 1.0   # a bar near the top edge
    seg = (img > 0).to(torch.int8)
    cfg = dataclasses.replace(IDENTITY, p_rotation=1.0)
    out_img, _ = Augmenter(cfg, 2, (21, 21))(img, seg, gen(11))
    top = out_img[:, 0, :10].sum((1, 2))
    bottom = out_img[:, 0, 11:].sum((1, 2))
    assert int((bottom > top).sum()) >= 16   # about half the samples turn by more than 90°
    assert int((top > bottom).sum()) >= 16


def test_input_patch_covers_zoomed_out_samples():
    """A scale s > 1 reads an s times larger region: the sampled patch grows with it."""
    assert input_patch_size((20, 20), 0.0, max_scale=1.4) == (28, 28)
    assert input_patch_size((8, 32, 32), 0.0, anisotropic=True, max_scale=1.4) == (8, 45, 45)
    # With that margin a zoomed-out sample has no artificial zero border.
    img = torch.ones(2, 1, 29, 29)
    seg = torch.zeros(2, 1, 29, 29, dtype=torch.int8)
    cfg = dataclasses.replace(IDENTITY, p_scale=1.0, scale_range=(1.4, 1.4))
    out_img, _ = Augmenter(cfg, 2, (20, 20))(img, seg, gen())
    assert out_img.min().item() > 0.99
    small, _ = Augmenter(cfg, 2, (20, 20))(torch.ones(2, 1, 20, 20), seg[:, :, :20, :20], gen())
    assert small.min().item() < 0.5            # without it the corners read padding


def _ellipsoid(q, centre, radii):
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in q], indexing="ij")
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1
    return inside.float()[None, None], inside.to(torch.int8)[None, None]


def _centroid(w: torch.Tensor) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in w.shape],
                           indexing="ij")
    return torch.stack([(g * w).sum() / w.sum() for g in grids])


SPATIAL = {"rotation": {"p_rotation": 1.0}, "scale": {"p_scale": 1.0},
           "elastic": {"p_elastic": 1.0},
           "combined": {"p_rotation": 1.0, "p_scale": 1.0, "p_elastic": 1.0}}


@pytest.mark.parametrize("margin", [6, 7])   # even and odd Q - P
@pytest.mark.parametrize("transform", sorted(SPATIAL))
def test_image_and_label_stay_aligned_to_the_sub_voxel(transform, margin):
    """An off-centre asymmetric blob: image (its indicator, interpolated linearly) and label
    are sampled on the same grid with the same convention, so the label is exactly the
    thresholded image and their centroids agree (no systematic shift; only the unavoidable
    discretisation of the boundary, well under a voxel, varies from draw to draw)."""
    p = (30, 34, 30)
    q = tuple(s + margin for s in p)
    img, seg = _ellipsoid(q, (q[0] / 2 + 1.3, q[1] / 2 - 0.8, q[2] / 2 + 0.4),
                          (8.5, 11.5, 7.0))
    cfg = dataclasses.replace(IDENTITY, p_mirror=0.0, **SPATIAL[transform])
    aug = Augmenter(cfg, 3, p)
    shifts = []
    for seed in range(6):
        out_img, out_seg = aug(img.clone(), seg.clone(), gen(seed))
        image, label = out_img[0, 0], out_seg[0, 0]
        decided = (image - 0.5).abs() > 1e-3   # exact ties may go either way
        assert torch.equal(label[decided], (image[decided] > 0.5).to(label.dtype))
        shifts.append(_centroid(label.float()) - _centroid(image))
    shifts = torch.stack(shifts)
    assert float(shifts.abs().max()) < 0.15, shifts
    assert float(shifts.mean(0).abs().max()) < 0.05, shifts.mean(0)


def test_untransformed_grid_reads_exactly_the_centre_crop():
    """A grid with no rotation, scale or elastic displacement lands on the cropped voxels
    for odd and even margins (so transformed and plain samples share one convention)."""
    for margin in (5, 6):
        p = (9, 10, 11)
        q = tuple(s + margin for s in p)
        img = torch.randn((2, 1, *q), generator=gen(3))
        aug = Augmenter(IDENTITY, 3, p)
        eye = torch.eye(3).expand(2, 3, 3)
        grid = aug._grid(eye, torch.zeros(2, dtype=torch.bool), gen(), q, img.device)
        warped = torch.nn.functional.grid_sample(img, grid, mode="bilinear",
                                                 align_corners=False)
        start = [(a - b) // 2 for a, b in zip(q, p)]
        crop = img[:, :, start[0]:start[0] + p[0], start[1]:start[1] + p[1],
                   start[2]:start[2] + p[2]]
        torch.testing.assert_close(warped, crop, atol=1e-5, rtol=0)
