from __future__ import annotations

import json
import math

import numpy as np
import pytest

from NNSegLib.planning.fingerprint import CaseFingerprint, Fingerprint
from NNSegLib.planning.memory import estimate_memory_gb, feature_map_values
from NNSegLib.planning.planner import (
    RECIPE_REGISTRY,
    format_plans_table,
    lowres_spacing_steps,
    plan_dataset,
)
from NNSegLib.planning.plans import IntensityProperties, Plans
from NNSegLib.planning.topology import Topology, plan_topology
from NNSegLib.util.errors import NNSegError


def _fingerprint(shapes, spacings, channels=("MRI",), num_classes=3, relative=1.0,
                 crop_shapes=None) -> Fingerprint:
    crop_shapes = crop_shapes or shapes
    cases = tuple(
        CaseFingerprint(f"case_{i:03d}", tuple(s), tuple(float(v) for v in sp), tuple(c))
        for i, (s, sp, c) in enumerate(zip(shapes, spacings, crop_shapes))
    )
    return Fingerprint(
        dataset_name="Synthetic",
        channel_names={str(i): n for i, n in enumerate(channels)},
        labels={"background": 0, **{f"c{k}": k for k in range(1, num_classes)}},
        cases=cases,
        intensity_properties={str(i): IntensityProperties(100.0, 20.0, 40.0, 180.0)
                              for i in range(len(channels))},
        median_relative_size_after_cropping=relative,
    )


def _ct_fingerprint() -> Fingerprint:
    rng = np.random.default_rng(0)
    shapes = [(int(300 + rng.integers(-20, 21)), 512, 512) for _ in range(20)]
    return _fingerprint(shapes, [(1.0, 0.7, 0.7)] * 20, channels=("CT",), num_classes=2)


def _aniso_fingerprint() -> Fingerprint:
    z_spacings = [5.0, 5.0, 4.0, 3.0, 2.5, 5.0, 5.0, 4.5, 5.0, 3.5, 5.0, 5.0]
    shapes = [(int(round(100 / z)), 256, 256) for z in z_spacings]
    return _fingerprint(shapes, [(z, 0.7, 0.7) for z in z_spacings])


def _divisible(cfg) -> bool:
    for axis, p in enumerate(cfg.patch_size):
        product = math.prod(s[axis] for s in cfg.strides)
        if p % product:
            return False
    return True


def _topology_of(cfg) -> Topology:
    return Topology(cfg.patch_size, cfg.strides, cfg.kernel_sizes, cfg.features_per_stage)


def test_topology_isotropic_128():
    t = plan_topology((128, 128, 128), (1, 1, 1), min_feature_map=4, base_features=32)
    assert t.num_stages == 6
    assert t.features_per_stage == (32, 64, 128, 256, 320, 320)
    assert t.pools_per_axis == (5, 5, 5)
    paper = plan_topology((128, 128, 128), (1, 1, 1), min_feature_map=8, base_features=30)
    assert paper.pools_per_axis == (4, 4, 4)
    assert paper.features_per_stage == (30, 60, 120, 240, 320)


def test_topology_rounds_patch_up_to_divisor():
    t = plan_topology((36, 50, 35), (1, 1, 1), min_feature_map=4, base_features=32)
    assert t.patch_size == (40, 56, 40)
    assert t.divisor == (8, 8, 8)
    assert t.feature_map_shapes()[-1] == (5, 7, 5)


def test_memory_estimate_calibration():
    t = plan_topology((128, 128, 128), (1, 1, 1), min_feature_map=4, base_features=32)
    assert estimate_memory_gb(t, 2, 1, 3) <= 8.0 < estimate_memory_gb(t, 3, 1, 3)
    # linear in the batch size
    m1, m2, m3 = (estimate_memory_gb(t, b, 1, 3) for b in (1, 2, 3))
    assert m3 - m2 == pytest.approx(m2 - m1)


def test_hippocampus_v2_matches_nnunet(hippocampus):
    from NNSegLib.planning.fingerprint import compute_fingerprint

    fp = compute_fingerprint(hippocampus, workers=2)
    plans = plan_dataset(fp, recipe="v2", memory_gb=8.0)
    assert set(plans.configurations) == {"2d", "3d_fullres"}
    full = plans.configuration("3d_fullres")
    assert full.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert full.median_shape == (36, 50, 35)  # numpy (z, y, x) order, like nnU-Net v2
    for ours, theirs in zip(full.patch_size, (40, 56, 40)):
        assert abs(ours - theirs) <= 8
    assert full.features_per_stage[0] == 32 and full.num_stages == 4
    # nnU-Net v2 plans batch 9 for the 260 MSD cases; 5 % of our 208 cases' voxels allow 7
    assert 2 <= full.batch_size <= 9
    assert full.batch_size * math.prod(full.patch_size) <= 0.05 * 208 * 36 * 50 * 35 * 1.05
    two_d = plans.configuration("2d")
    assert two_d.patch_size == (56, 40) and two_d.data_identifier == full.data_identifier
    assert full.normalization == ("zscore",) and full.use_mask_for_norm == (False,)
    assert full.batch_dice is False and two_d.batch_dice is True


def test_large_ct_gets_lowres_and_cascade():
    fp = _ct_fingerprint()
    plans = plan_dataset(fp, recipe="paper", memory_gb=8.0)
    assert set(plans.configurations) == {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"}
    full, low = plans.configuration("3d_fullres"), plans.configuration("3d_lowres")
    cascade = plans.configuration("3d_cascade_fullres")
    assert full.spacing == pytest.approx((1.0, 0.7, 0.7))
    assert math.prod(full.patch_size) <= 128 ** 3
    assert math.prod(full.patch_size) < 0.25 * math.prod(full.median_shape)
    # powers of two: (1, .7, .7) has no axis finer than half the coarsest -> all axes x2
    ratios = np.asarray(low.spacing) / np.asarray(full.spacing)
    assert np.allclose(np.log2(ratios), np.round(np.log2(ratios)))
    assert math.prod(low.patch_size) >= 0.25 * math.prod(low.median_shape)
    # paper: per-sample Dice for the 3D U-Net and the cascade's first stage, batch Dice after
    assert low.next_stage == "3d_cascade_fullres" and low.batch_dice is False
    assert cascade.previous_stage == "3d_lowres" and cascade.data_identifier == "3d_fullres"
    assert low.data_identifier == "3d_lowres" and cascade.batch_dice is True
    assert full.batch_dice is False and plans.configuration("2d").batch_dice is True
    assert full.normalization == ("ct",) and full.use_mask_for_norm == (False,)
    for cfg in plans.configurations.values():
        assert _divisible(cfg)
        assert cfg.estimated_memory_gb <= 8.0
        assert cfg.batch_size >= 2


def test_v2_lowres_grows_in_small_steps():
    plans = plan_dataset(_ct_fingerprint(), recipe="v2")
    low = plans.configuration("3d_lowres")
    ratio = low.spacing[0] / 1.0
    steps = math.log(ratio) / math.log(1.03)
    assert abs(steps - round(steps)) < 1e-6 and 1 < ratio < 4


def test_anisotropic_spacing_and_kernels():
    fp = _aniso_fingerprint()
    plans = plan_dataset(fp, recipe="paper")
    full = plans.configuration("3d_fullres")
    z = [c.spacing[0] for c in fp.cases]
    assert full.spacing[0] == pytest.approx(np.percentile(z, 10))
    assert full.spacing[1:] == pytest.approx((0.7, 0.7))
    assert full.anisotropy_axis == 0
    assert full.kernel_sizes[0] == (1, 3, 3)
    assert full.strides[1] == (1, 2, 2)
    assert full.kernel_sizes[-1] == (3, 3, 3)
    assert _divisible(full)


def test_recipe_json_round_trip_and_2d_data():
    for recipe in RECIPE_REGISTRY.values():
        assert type(recipe).from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    flat = _fingerprint([(1, 300, 280)] * 30, [(999.0, 0.5, 0.5)] * 30)
    plans = plan_dataset(flat, "paper")
    assert list(plans.configurations) == ["2d"]
    assert plans.configuration("2d").patch_size == (256, 256)
    with pytest.raises(NNSegError, match="2D images"):
        plan_dataset(flat, "paper", configurations=["3d_fullres"])


def test_lowres_step_rule():
    assert lowres_spacing_steps((5.0, 1.0, 1.0), 2.0) == (5.0, 2.0, 2.0)
    assert lowres_spacing_steps((5.0, 3.0, 3.0), 2.0) == (10.0, 6.0, 6.0)


def test_patch_shrinks_to_fit_small_budget():
    fp = _fingerprint([(128, 128, 128)] * 10, [(1.0, 1.0, 1.0)] * 10)
    big = plan_dataset(fp, "v2", memory_gb=8.0, configurations=["3d_fullres"])
    small = plan_dataset(fp, "v2", memory_gb=2.0, configurations=["3d_fullres"])
    b, s = big.configuration("3d_fullres"), small.configuration("3d_fullres")
    assert b.patch_size == (128, 128, 128) and b.batch_size == 2
    assert math.prod(s.patch_size) < math.prod(b.patch_size)
    # v2 weighs nnU-Net's feature-map count against its reference (560 M at 8 GB, batch 2)
    assert feature_map_values(_topology_of(s), 3) <= 560e6 * 2.0 / 8.0
    assert feature_map_values(_topology_of(b), 3) > 560e6 * 2.0 / 8.0
    assert max(s.patch_size) - min(s.patch_size) <= max(s.patch_size) // 2
    paper = plan_dataset(fp, "paper", memory_gb=2.0, configurations=["3d_fullres"])
    p = paper.configuration("3d_fullres")
    assert estimate_memory_gb(_topology_of(p), 2, 1, 3) <= 2.0 < estimate_memory_gb(
        _topology_of(plan_dataset(fp, "paper").configuration("3d_fullres")), 2, 1, 3)


def test_paper_2d_batch_cap_and_mask_rule():
    fp = _fingerprint([(40, 64, 64)] * 200, [(1.0, 1.0, 1.0)] * 200, relative=0.5)
    plans = plan_dataset(fp, "paper")
    two_d = plans.configuration("2d")
    assert two_d.batch_size == RECIPE_REGISTRY["paper"].max_batch_2d
    assert two_d.patch_size == (64, 64) and two_d.features_per_stage[0] == 30
    assert two_d.use_mask_for_norm == (True,)
    assert plans.configuration("3d_fullres").batch_dice is False


def test_plans_round_trip_and_table():
    plans = plan_dataset(_ct_fingerprint(), "paper")
    again = Plans.from_dict(json.loads(json.dumps(plans.to_dict())))
    assert again == plans
    table = format_plans_table(plans)
    for name in plans.configurations:
        assert name in table
    assert "×".join(str(v) for v in plans.configuration("3d_fullres").patch_size) in table
    # the CPU budget rule, under the configurations it changes (issue 25)
    changed = [n for n, c in plans.configurations.items()
               if c.spatial_dims == 3 and c.batch_size > 2]
    assert changed, "the CT fingerprint plans a 3D batch above 2"
    assert table.splitlines()[-1] == (
        f"on a CPU with --time-budget: {', '.join(changed)} train batch 2 (more steps in the "
        "minutes given; --batch-size chooses)")


def test_cli_plan_with_override(tmp_path, capsys):
    from NNSegLib.cli import main
    from NNSegLib.util.workspace import Workspace

    ws = Workspace(tmp_path / "work")
    _aniso_fingerprint().save(ws.fingerprint)
    code = main(["plan", str(tmp_path / "raw"), "--work", str(ws.root), "--quiet",
                 "--configurations", "3d_fullres", "--override", "3d_fullres.batch_size=5"])
    assert code == 0
    plans = Plans.load(ws.plans)
    assert list(plans.configurations) == ["3d_fullres"]
    assert plans.configuration("3d_fullres").batch_size == 5
    assert plans.overrides[0]["field"] == "3d_fullres.batch_size"
    assert "3d_fullres" in capsys.readouterr().out


def test_cli_plan_without_fingerprint_fails(tmp_path):
    from NNSegLib.cli import main

    assert main(["plan", str(tmp_path / "raw"), "--work", str(tmp_path / "w"), "--quiet"]) == 2


@pytest.mark.parametrize("recipe", ["paper", "v2"])
def test_unplannable_fingerprints_are_refused_naming_the_case(recipe):
    import dataclasses

    good = _fingerprint([(20, 30, 30)] * 4, [(1.0, 1.0, 1.0)] * 4)
    assert plan_dataset(good, recipe).configurations
    for field, value, says in (
            ("spacing", (float("nan"), 1.0, 1.0), r"case 'case_002': spacing \[nan, 1.0, 1.0\] "
                                                   "is not a finite number > 0"),
            ("spacing", (1.0, 0.0, 1.0), "case 'case_002': spacing"),
            ("spacing", (1.0, 1.0, float("inf")), "case 'case_002': spacing"),
            ("spacing", (1.0, 1.0), "need 3 values each"),
            ("shape_after_crop", (0, 30, 30), r"shape after cropping \[0, 30, 30\] has an axis "
                                              "of 0 voxels")):
        cases = list(good.cases)
        cases[2] = dataclasses.replace(cases[2], **{field: value})
        with pytest.raises(NNSegError, match=says):
            plan_dataset(dataclasses.replace(good, cases=tuple(cases)), recipe)
    with pytest.raises(NNSegError, match="has no cases"):
        plan_dataset(dataclasses.replace(good, cases=()), recipe)
    # v2 (as nnU-Net) plans a patch of a few voxels for 1e-4 GB; nothing fits 1e-7 GB
    with pytest.raises(NNSegError, match="no patch fits a memory budget of 1e-07 GB"):
        plan_dataset(good, recipe, memory_gb=1e-7)
