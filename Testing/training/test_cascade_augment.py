"""Tests of the previous-stage (cascade) augmentation: config, one-hot encoding, morphology,
one-hot validity, component removal, determinism, 2D."""

from __future__ import annotations

import math

import pytest
import torch

from NNSegLib.inference.cascade import one_hot_foreground
from NNSegLib.training.cascade_augment import (
    _OPERATORS,
    CascadeAugmentationConfig,
    _dilate,
    _erode,
    augment_previous_stage,
)

DILATE, ERODE, CLOSE, OPEN = _OPERATORS


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sphere(n: int, radius: float, centre: tuple[int, ...] | None = None, dims: int = 3):
    centre = centre or (n // 2,) * dims
    grids = torch.meshgrid(*[torch.arange(n)] * dims, indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius ** 2


def _labels() -> torch.Tensor:
    """(2, 1, 24, 24, 24): class 1 sphere, touching class 2 sphere, class 1 dot."""
    lab = torch.zeros(24, 24, 24, dtype=torch.long)
    lab[_sphere(24, 5, (8, 12, 12))] = 1
    lab[_sphere(24, 4, (17, 12, 12))] = 2
    lab[2:4, 2:4, 2:4] = 1
    return torch.stack([lab, lab.flip(2)])[:, None]


def _is_one_hot(x: torch.Tensor) -> bool:
    return (x.dtype == torch.float32 and bool(((x == 0) | (x == 1)).all())
            and bool((x.sum(1) <= 1).all()))


def test_config_roundtrip_and_validation():
    cfg = CascadeAugmentationConfig()
    assert cfg.to_dict() == {"p_binary_operator": 0.4, "strel_radius": [1, 8],
                             "p_remove_component": 0.2, "max_component_fraction": 0.15,
                             "p_per_label": 0.5}
    assert CascadeAugmentationConfig.from_dict(cfg.to_dict()) == cfg
    assert CascadeAugmentationConfig.from_dict({"strel_radius": [2, 3]}).strel_radius == (2, 3)
    with pytest.raises(ValueError, match="unknown"):
        CascadeAugmentationConfig.from_dict({"p_mirror": 0.5})
    with pytest.raises(ValueError):
        CascadeAugmentationConfig(strel_radius=(3, 2))
    with pytest.raises(ValueError):
        CascadeAugmentationConfig(p_binary_operator=1.5)
    ident = CascadeAugmentationConfig.identity()
    assert ident.p_binary_operator == 0.0 and ident.p_remove_component == 0.0


def test_one_hot_foreground():
    lab = torch.tensor([[[0, 1, 2], [2, 2, 0]]], dtype=torch.float64)[:, None]  # (1, 1, 2, 3)
    oh = one_hot_foreground(lab, 3)
    assert oh.shape == (1, 2, 2, 3) and oh.dtype == torch.float32
    assert oh[0, 0].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert oh[0, 1].tolist() == [[0, 0, 1], [1, 1, 0]]
    oh3 = one_hot_foreground(_labels(), 3)
    assert oh3.shape == (2, 2, 24, 24, 24)
    assert oh3[:, 0].sum().item() == 2 * (515 - 1 + 8)  # one voxel went to class 2
    assert oh3[:, 1].sum().item() == 2 * 257
    with pytest.raises(ValueError):
        one_hot_foreground(lab[:, 0], 3)


def test_identity_returns_equal_copy():
    oh = one_hot_foreground(_labels(), 3)
    out = augment_previous_stage(oh, CascadeAugmentationConfig.identity(), _gen(0))
    assert out is not oh and torch.equal(out, oh)
    out[0, 0] = 1
    assert oh[0, 0].sum().item() == 522


def test_deterministic_given_seed():
    oh = one_hot_foreground(_labels(), 3)
    before = oh.clone()
    cfg = CascadeAugmentationConfig(p_binary_operator=1.0, p_remove_component=1.0,
                                    p_per_label=1.0)
    a = augment_previous_stage(oh, cfg, _gen(3))
    b = augment_previous_stage(oh, cfg, _gen(3))
    c = augment_previous_stage(oh, cfg, _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(oh, before)  # input untouched


def test_ball_approximation():
    point = torch.zeros(13, 13, 13, dtype=torch.bool)
    point[6, 6, 6] = True
    ball = _dilate(point, 3)
    assert ball.sum().item() == 123  # skimage ball(3) also has 123 voxels
    assert abs(ball.sum().item() / (4 / 3 * math.pi * 27) - 1) < 0.3
    for dim in range(3):
        assert torch.equal(ball, ball.flip(dim))
    assert torch.equal(ball, ball.permute(1, 2, 0)) and torch.equal(ball, ball.transpose(0, 1))
    assert ball[6, 6].nonzero().flatten().tolist() == [3, 4, 5, 6, 7, 8, 9]  # radius 3 on axes
    assert _dilate(point, 1).sum().item() == 7  # the 6-neighbour cross


@pytest.mark.parametrize("r", [2, 3, 5, 8])
def test_dilating_sphere_matches_bigger_sphere(r):
    n = 2 * (6 + r) + 3
    grown = _dilate(_sphere(n, 6), r)
    ratio = grown.sum().item() / _sphere(n, 6 + r).sum().item()
    assert 0.9 < ratio < 1.1


def test_erosion_shrinks_and_border_counts_as_foreground():
    sphere = _sphere(23, 8)
    eroded = _erode(sphere, 3)
    assert not (eroded & ~sphere).any()
    assert 0.85 < eroded.sum().item() / _sphere(23, 5).sum().item() < 1.15
    block = torch.zeros(10, 10, 10, dtype=torch.bool)
    block[:4] = True  # touches the patch border at z = 0
    assert _erode(block, 1).nonzero()[:, 0].unique().tolist() == [0, 1, 2]


def test_opening_removes_thin_protrusion_and_closing_fills_hole():
    x = torch.zeros(20, 20, 20, dtype=torch.bool)
    x[4:12, 4:12, 4:12] = True
    x[8, 8, 12:18] = True  # 1-voxel-thin spike
    assert OPEN(x, 1)[:, :, 13:].sum().item() == 0  # the cross keeps the spike's base
    opened = OPEN(x, 2)
    assert not opened[:, :, 12:].any() and not (opened & ~x).any()
    assert opened[5:11, 5:11, 5:11].all()
    solid = torch.zeros(20, 20, 20, dtype=torch.bool)
    solid[4:12, 4:12, 4:12] = True
    holed = solid.clone()
    holed[8, 8, 8] = False  # 1-voxel hole
    assert torch.equal(CLOSE(holed, 1), solid)


def test_binary_operator_keeps_one_hot_and_matches_an_operator():
    oh = one_hot_foreground(_labels(), 3)[:1]
    cfg = CascadeAugmentationConfig(p_binary_operator=1.0, p_remove_component=0.0, p_per_label=1.0,
                                    strel_radius=(2, 2))
    single = oh[:, :1]
    candidates = [op(single[0, 0] > 0, 2).float() for op in _OPERATORS]
    used, stolen = set(), 0
    for seed in range(12):
        out = augment_previous_stage(single, cfg, _gen(seed))
        used |= {i for i, c in enumerate(candidates) if torch.equal(out[0, 0], c)}
        out2 = augment_previous_stage(oh, cfg, _gen(seed))
        assert _is_one_hot(out2)
        # voxels of class 2 now held by class 1: gained voxels were removed from class 2
        stolen += int(((oh[0, 1] == 1) & (out2[0, 0] == 1)).any())
    assert used == {0, 1, 2, 3}
    assert stolen == 2


def test_remove_component():
    x = torch.zeros(1, 2, 20, 20, 20)
    x[0, 0, 2:4, 2:4, 2:4] = 1  # 8 voxels
    x[0, 0, 10:13, 10:13, 10:13] = 1  # 27 voxels
    x[0, 1, 14:20, :, :] = 1  # 2400 voxels = 30 % of the patch: never removed
    cfg = CascadeAugmentationConfig(p_binary_operator=0.0, p_remove_component=1.0,
                                    p_per_label=1.0)
    removed = []
    for seed in range(8):
        out = augment_previous_stage(x, cfg, _gen(seed))
        assert torch.equal(out[0, 1], x[0, 1])
        left = out[0, 0].sum().item()
        assert left in (8.0, 27.0)
        removed.append(35 - int(left))
    assert set(removed) == {8, 27}  # either small blob gets picked, the large one never
    diag = torch.zeros(1, 1, 10, 10, 10)
    diag[0, 0, 2:4, 2:4, 2:4] = 1
    diag[0, 0, 4:6, 4:6, 4:6] = 1  # touches the first cube by a corner: one component
    assert augment_previous_stage(diag, cfg, _gen(0)).sum().item() == 0


def test_2d_input():
    lab = torch.zeros(2, 1, 24, 24, dtype=torch.long)
    lab[:, 0][:, _sphere(24, 6, dims=2)] = 1
    lab[:, 0, 2:4, 2:4] = 2
    oh = one_hot_foreground(lab, 3)
    cfg = CascadeAugmentationConfig(p_binary_operator=1.0, p_remove_component=1.0,
                                    p_per_label=1.0)
    out = augment_previous_stage(oh, cfg, _gen(1))
    assert out.shape == (2, 2, 24, 24) and _is_one_hot(out)
    assert not torch.equal(out, oh)
    point = torch.zeros(9, 9, dtype=torch.bool)
    point[4, 4] = True
    disk = _dilate(point, 3)  # octagon
    assert disk.sum().item() == 37 and torch.equal(disk, disk.T) and torch.equal(disk, disk.flip(0))


def test_each_label_is_picked_with_p_per_label():
    """nnU-Net v2.8 changes each foreground channel of a chosen sample with probability 0.5."""
    x = one_hot_foreground(_labels(), 3).repeat(16, 1, 1, 1, 1)
    cfg = CascadeAugmentationConfig(p_binary_operator=1.0, p_remove_component=0.0,
                                    strel_radius=(2, 2))
    out = augment_previous_stage(x, cfg, _gen(3))
    changed = (out != x).flatten(2).any(-1)          # (B, K-1): channel touched
    assert 0.2 < changed.float().mean().item() < 0.8  # about half (some ops change nothing)
