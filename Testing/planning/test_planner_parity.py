"""``--recipe v2`` against nnU-Net v2.8.1's own plans; ``--recipe paper`` against its rules.

The references (``reference/*.json``) were made by ``bench/make_planning_references.py``,
which ran nnU-Net's default ``ExperimentPlanner`` and ``get_pool_and_conv_props`` in nnU-Net's
venv on synthetic fingerprints. These tests rebuild NNSeg fingerprints from the committed
cases and need no nnU-Net.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from NNSegLib.planning.fingerprint import CaseFingerprint, Fingerprint
from NNSegLib.planning.memory import estimate_memory_gb
from NNSegLib.planning.planner import plan_dataset
from NNSegLib.planning.plans import IntensityProperties, Plans
from NNSegLib.planning.topology import Topology, v2_topology

REFERENCE = Path(__file__).resolve().parent / "reference"
PLANS = json.loads((REFERENCE / "nnunet_v2_plans.json").read_text())
TOPOLOGY = json.loads((REFERENCE / "nnunet_v2_topology.json").read_text())
NORMALIZATION = {"CTNormalization": "ct", "ZScoreNormalization": "zscore",
                 "NoNormalization": "none"}
MSD = ("BrainTumour", "Heart", "Liver", "Hippocampus", "Prostate", "Lung", "Pancreas",
       "HepaticVessel", "Spleen", "Colon")


def fingerprint_of(name: str) -> Fingerprint:
    ds = PLANS["datasets"][name]
    cases = tuple(CaseFingerprint(f"case_{i:04d}", tuple(shape), tuple(spacing), tuple(shape))
                  for i, (spacing, shape) in enumerate(zip(ds["spacings"],
                                                           ds["shapes_after_crop"])))
    labels = {"background": 0, **{f"label{k}": k
                                  for k in range(1, ds["num_foreground_labels"] + 1)}}
    stats = IntensityProperties(100.0, 50.0, -500.0, 800.0, -1000.0, 1000.0, 90.0)
    return Fingerprint(name, dict(ds["channel_names"]), labels, cases,
                       {k: stats for k in ds["channel_names"]},
                       ds["median_relative_size_after_cropping"])


def _theirs(ref: dict, name: str) -> dict:
    cfg = ref["configurations"][name]
    if "inherits_from" in cfg:
        cfg = {**ref["configurations"][cfg["inherits_from"]], **cfg}
    arch = cfg["architecture"]
    dims = len(cfg["patch_size"])
    return {
        "spacing": [round(v, 9) for v in cfg["spacing"]],
        "median_shape": [int(round(v)) for v in cfg["median_image_size_in_voxels"]][-dims:],
        "patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"],
        "n_stages": arch["n_stages"], "strides": arch["strides"],
        "kernel_sizes": arch["kernel_sizes"], "features_per_stage": arch["features_per_stage"],
        "n_conv_per_stage": arch["n_conv_per_stage"],
        "n_conv_per_stage_decoder": arch["n_conv_per_stage_decoder"],
        "batch_dice": cfg["batch_dice"],
        "normalization": [NORMALIZATION[n] for n in cfg["normalization_schemes"]],
        "use_mask_for_norm": cfg["use_mask_for_norm"],
        "previous_stage": cfg.get("previous_stage"), "next_stage": cfg.get("next_stage"),
    }


def _ours(plans: Plans, name: str) -> dict:
    cfg = plans.configuration(name)
    dims = cfg.spatial_dims
    return {
        "spacing": [round(v, 9) for v in cfg.spacing[-dims:]],
        "median_shape": list(cfg.median_shape[-dims:]),
        "patch_size": list(cfg.patch_size), "batch_size": cfg.batch_size,
        "n_stages": cfg.num_stages, "strides": [list(s) for s in cfg.strides],
        "kernel_sizes": [list(k) for k in cfg.kernel_sizes],
        "features_per_stage": list(cfg.features_per_stage),
        "n_conv_per_stage": [cfg.n_conv_per_stage] * cfg.num_stages,
        "n_conv_per_stage_decoder": [cfg.n_conv_per_stage_decoder] * (cfg.num_stages - 1),
        "batch_dice": cfg.batch_dice, "normalization": list(cfg.normalization),
        "use_mask_for_norm": list(cfg.use_mask_for_norm),
        "previous_stage": cfg.previous_stage, "next_stage": cfg.next_stage,
    }


def test_references_are_nnunet_281_on_enough_shapes():
    assert PLANS["nnunetv2_version"] == TOPOLOGY["nnunetv2_version"] == "2.8.1"
    names = list(PLANS["datasets"])
    assert len(names) >= 10 and all(any(n.endswith(t) for n in names) for t in MSD)
    # the shapes that need the rarer rules are there: transposed axes, 2D-only, a cascade
    orders = {tuple(ds["plans"]["8"]["transpose_forward"]) for ds in PLANS["datasets"].values()}
    assert {(0, 1, 2), (1, 0, 2), (2, 0, 1)} <= orders
    configs = [set(ds["plans"]["8"]["configurations"]) for ds in PLANS["datasets"].values()]
    assert {"2d"} in configs and any("3d_lowres" in c for c in configs)
    assert len(TOPOLOGY["rows"]) >= 1000


@pytest.mark.parametrize("name", list(PLANS["datasets"]))
def test_v2_makes_nnunets_plans(name):
    fp = fingerprint_of(name)
    differences = []
    for gpu, ref in PLANS["datasets"][name]["plans"].items():
        plans = plan_dataset(fp, "v2", memory_gb=float(gpu))
        where = f"{gpu} GB"
        if list(plans.transpose_forward) != ref["transpose_forward"] or \
                list(plans.transpose_backward) != ref["transpose_backward"]:
            differences.append((where, "transpose", plans.transpose_forward,
                                ref["transpose_forward"]))
        if set(plans.configurations) != set(ref["configurations"]):
            differences.append((where, "configurations", sorted(plans.configurations),
                                sorted(ref["configurations"])))
            continue
        for config in ref["configurations"]:
            ours, theirs = _ours(plans, config), _theirs(ref, config)
            differences += [(where, config, k, ours[k], theirs[k])
                            for k in theirs if ours[k] != theirs[k]]
    assert differences == []


def test_v2_topology_matches_get_pool_and_conv_props():
    columns = TOPOLOGY["columns"]
    mismatches = []
    for row in TOPOLOGY["rows"]:
        q = dict(zip(columns, row))
        max_pools = q["max_numpool"] if q["max_numpool"] < 1000 else None
        t = v2_topology(q["patch"], q["spacing"], q["min_feature_map"], max_pools)
        got = ([list(s) for s in t.strides], [list(k) for k in t.kernel_sizes],
               list(t.patch_size), list(t.divisor), list(t.pools_per_axis))
        want = (q["strides"], q["kernel_sizes"], q["patch_size"], q["divisor"],
                q["num_pool_per_axis"])
        if got != want:
            mismatches.append((q["spacing"], q["patch"], got, want))
    assert mismatches == []


def _pooled_edges(topology: Topology) -> list[float]:
    """The smallest feature map edge along each pooled axis."""
    deepest = topology.feature_map_shapes()[-1]
    return [deepest[a] for a, n in enumerate(topology.pools_per_axis) if n > 0]


@pytest.mark.parametrize("name", list(PLANS["datasets"]))
def test_paper_rules_on_every_shape(name):
    fp = fingerprint_of(name)
    for gpu in PLANS["gpu_gb"]:
        plans = plan_dataset(fp, "paper", memory_gb=float(gpu))
        configs = plans.configurations
        for cfg in configs.values():
            topo = Topology(cfg.patch_size, cfg.strides, cfg.kernel_sizes,
                            cfg.features_per_stage)
            assert max(topo.pools_per_axis) < 6
            assert all(edge >= 8 for edge in _pooled_edges(topo)), (cfg.name, cfg.patch_size)
            assert cfg.batch_size >= 2 and cfg.features_per_stage[0] == 30
            assert estimate_memory_gb(topo, 2, plans.num_channels, plans.num_classes) <= gpu
            if cfg.spatial_dims == 3:
                assert math.prod(cfg.patch_size) <= 128 ** 3
            else:
                assert math.prod(cfg.patch_size) <= 256 ** 2 and cfg.batch_size <= 42
        assert configs["2d"].batch_dice is True
        if "3d_fullres" not in configs:
            assert configs["2d"].median_shape[0] == 1
            continue
        full = configs["3d_fullres"]
        covered = math.prod(full.patch_size) / math.prod(full.median_shape)
        assert ("3d_lowres" in configs) == (covered < 0.25), (gpu, covered)
        assert full.batch_dice is False
        if "3d_lowres" in configs:
            low, cascade = configs["3d_lowres"], configs["3d_cascade_fullres"]
            assert low.batch_dice is False and cascade.batch_dice is True
            assert math.prod(low.patch_size) >= 0.25 * math.prod(low.median_shape) * 0.99
