#!/usr/bin/env python3
"""Reference plans made by nnU-Net v2's default ExperimentPlanner, for the planner parity suite.

    .venv/bin/python bench/make_planning_references.py [--out Testing/planning/reference]

For each dataset shape of :data:`SHAPES` (the ten Medical Segmentation Decathlon tasks' median
shapes, spacings and channels, plus strongly anisotropic, transposed, 2D-like, tiny and large
ones) it draws the per-case spacings and cropped shapes with a fixed seed, writes nnU-Net's
``dataset.json`` and ``dataset_fingerprint.json`` (no images: the planner reads only these) and
runs nnU-Net's planner at every GPU memory of :data:`GPU_GB` in nnU-Net's own venv
(``bench/setup_nnunet.sh``; driver ``bench/nnunet_plan_driver.py``). It also asks nnU-Net's
``get_pool_and_conv_props`` for the topology of random spacing/patch pairs.

Writes ``nnunet_v2_plans.json`` (per dataset: the cases, channels, labels and nnU-Net's plans
per GPU memory) and ``nnunet_v2_topology.json`` (queries and answers), both naming nnU-Net's
version. ``Testing/planning/test_planner_parity.py`` plans the same fingerprints with NNSeg
and compares field by field; it needs no nnU-Net.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib.env as benv  # noqa: E402

GPU_GB = (2, 4, 8, 11, 24, 40, 80)

#: name: cases, channel names, foreground labels, median spacing (z, y, x), median shape after
#: crop, relative size after crop, spacing choices per axis (None = median ±jitter),
#: jitter of the spacing and of the physical size, fixed in-plane shape (CT-like series).
SHAPES: dict[str, dict] = {
    "Dataset901_BrainTumour": dict(n=484, channels=["FLAIR", "T1w", "t1gd", "T2w"], fg=3,
                                   spacing=[1.0, 1.0, 1.0], shape=[138, 169, 138],
                                   relative=0.6, spacing_jitter=0.0),
    "Dataset902_Heart": dict(n=20, channels=["MRI"], fg=1, spacing=[1.37, 1.25, 1.25],
                             shape=[115, 320, 232]),
    "Dataset903_Liver": dict(n=131, channels=["CT"], fg=2, spacing=[1.0, 0.77, 0.77],
                             shape=[432, 512, 512], z_choices=[0.7, 0.8, 1.0, 1.0, 1.5, 2.5, 5.0],
                             inplane=512),
    "Dataset904_Hippocampus": dict(n=260, channels=["MRI"], fg=2, spacing=[1.0, 1.0, 1.0],
                                   shape=[36, 50, 35], spacing_jitter=0.0, size_jitter=0.15),
    "Dataset905_Prostate": dict(n=32, channels=["T2", "ADC"], fg=2, spacing=[3.6, 0.625, 0.625],
                                shape=[20, 320, 319], z_choices=[3.0, 3.6, 3.6, 4.0],
                                relative=0.9),
    "Dataset906_Lung": dict(n=63, channels=["CT"], fg=1, spacing=[1.24, 0.79, 0.79],
                            shape=[252, 512, 512], z_choices=[0.625, 1.0, 1.25, 1.25, 2.5],
                            inplane=512),
    "Dataset907_Pancreas": dict(n=281, channels=["CT"], fg=2, spacing=[2.5, 0.8, 0.8],
                                shape=[93, 512, 512], z_choices=[1.5, 2.5, 2.5, 2.5, 5.0],
                                inplane=512),
    "Dataset908_HepaticVessel": dict(n=303, channels=["CT"], fg=2, spacing=[5.0, 0.8, 0.8],
                                     shape=[49, 512, 512], z_choices=[1.5, 2.5, 5.0, 5.0, 5.0],
                                     inplane=512),
    "Dataset909_Spleen": dict(n=41, channels=["CT"], fg=1, spacing=[5.0, 0.79, 0.79],
                              shape=[90, 512, 512], z_choices=[1.5, 5.0, 5.0, 8.0],
                              inplane=512),
    "Dataset910_Colon": dict(n=126, channels=["CT"], fg=1, spacing=[5.0, 0.78, 0.78],
                             shape=[95, 512, 512], z_choices=[1.25, 5.0, 5.0, 7.5],
                             inplane=512),
    "Dataset911_CardiacCine": dict(n=200, channels=["cineMRI"], fg=3, spacing=[10.0, 1.56, 1.56],
                                   shape=[9, 256, 216], z_choices=[5.0, 6.5, 10.0, 10.0, 10.0],
                                   relative=0.95),
    "Dataset912_CoronalCoarse": dict(n=40, channels=["MRI"], fg=1, spacing=[0.8, 4.0, 0.8],
                                     shape=[300, 50, 300], y_choices=[3.0, 4.0, 4.0, 5.0]),
    "Dataset913_SagittalCoarse": dict(n=36, channels=["MRI"], fg=2, spacing=[1.0, 1.0, 2.5],
                                      shape=[200, 200, 80]),
    "Dataset914_Slices2D": dict(n=100, channels=["R", "G", "B"], fg=1,
                                spacing=[999.0, 0.5, 0.5], shape=[1, 512, 512],
                                spacing_jitter=0.0, size_jitter=0.1, flat=True),
    "Dataset915_ThinSlab": dict(n=60, channels=["CT"], fg=1, spacing=[6.0, 0.4, 0.4],
                                shape=[12, 512, 512], inplane=512),
    "Dataset916_LargeIso": dict(n=30, channels=["MRI"], fg=2, spacing=[0.5, 0.5, 0.5],
                                shape=[400, 400, 400], spacing_jitter=0.0),
    "Dataset917_Tiny": dict(n=50, channels=["MRI"], fg=1, spacing=[1.0, 1.0, 1.0],
                            shape=[12, 40, 18], spacing_jitter=0.0, size_jitter=0.2),
    "Dataset918_YZCoarse": dict(n=25, channels=["MRI", "noNorm"], fg=2,
                                spacing=[0.7, 0.9, 0.9], shape=[190, 160, 150],
                                spacing_jitter=0.0, relative=0.5),
    # a tenth of the cases finer along z than in plane: the 10th percentile is clamped
    "Dataset919_MixedSlices": dict(n=60, channels=["CT"], fg=1, spacing=[5.0, 0.8, 0.8],
                                   shape=[40, 512, 512],
                                   z_choices=[0.6, 0.7, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0],
                                   inplane=512),
}


def draw_cases(name: str, spec: dict) -> dict:
    """Per-case spacings and cropped shapes, fixed seed per dataset."""
    rng = np.random.default_rng(int(name[7:10]))
    median_sp = np.asarray(spec["spacing"], dtype=np.float64)
    median_sh = np.asarray(spec["shape"], dtype=np.float64)
    jitter = spec.get("spacing_jitter", 0.08)
    size_jitter = spec.get("size_jitter", 0.12)
    spacings, shapes = [], []
    for _ in range(spec["n"]):
        sp = median_sp * rng.uniform(1 - jitter, 1 + jitter, 3)
        for axis, key in ((0, "z_choices"), (1, "y_choices")):
            if key in spec:
                sp[axis] = rng.choice(spec[key])
        sp = np.round(sp, 4)
        physical = rng.uniform(1 - size_jitter, 1 + size_jitter, 3)
        shape = np.maximum(np.round(median_sh * median_sp * physical / sp), 1)
        if "inplane" in spec:
            shape[1:] = spec["inplane"]
        if spec.get("flat"):
            shape[0], sp[0] = 1, median_sp[0]
        spacings.append([float(v) for v in sp])
        shapes.append([int(v) for v in shape])
    return {"spacings": spacings, "shapes_after_crop": shapes}


def write_inputs(root: Path, name: str, spec: dict, cases: dict) -> None:
    raw = root / "raw" / name
    pre = root / "preprocessed" / name
    raw.mkdir(parents=True)
    pre.mkdir(parents=True)
    labels = {"background": 0, **{f"label{k}": k for k in range(1, spec["fg"] + 1)}}
    ids = [f"case_{i:04d}" for i in range(spec["n"])]
    dataset_json = {
        "channel_names": {str(i): c for i, c in enumerate(spec["channels"])},
        "labels": labels, "numTraining": spec["n"], "file_ending": ".nii.gz",
        "overwrite_image_reader_writer": "SimpleITKIO",
        # explicit file lists: nnU-Net then lists no folder (the files need not exist)
        "dataset": {i: {"images": [f"imagesTr/{i}_{c:04d}.nii.gz"
                                   for c in range(len(spec["channels"]))],
                        "label": f"labelsTr/{i}.nii.gz"} for i in ids},
    }
    stats = {"max": 1000.0, "mean": 100.0, "median": 90.0, "min": -1000.0,
             "percentile_00_5": -500.0, "percentile_99_5": 800.0, "std": 50.0}
    fingerprint = {
        "foreground_intensity_properties_per_channel": {
            str(i): stats for i in range(len(spec["channels"]))},
        "median_relative_size_after_cropping": spec.get("relative", 1.0),
        "shapes_after_crop": cases["shapes_after_crop"],
        "spacings": cases["spacings"],
    }
    (raw / "dataset.json").write_text(json.dumps(dataset_json))
    (pre / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))


def topology_queries(count_3d: int, count_2d: int, seed: int = 23) -> list[dict]:
    """Random spacing/patch pairs: log-uniform spacings 0.3–8 mm, patches 1–512 voxels."""
    rng = np.random.default_rng(seed)
    out = []
    for dims, count in ((3, count_3d), (2, count_2d)):
        for i in range(count):
            spacing = np.round(np.exp(rng.uniform(np.log(0.3), np.log(8.0), dims)), 3)
            if i % 4 == 0:  # a quarter isotropic in-plane, as most scans are
                spacing[1:] = spacing[-1]
            patch = np.round(np.exp(rng.uniform(0.0, np.log(512.0), dims))).astype(int)
            min_fm, max_pool = (4, 999999) if i % 5 else (8, 5)
            out.append({"spacing": [float(v) for v in spacing],
                        "patch": [int(v) for v in patch],
                        "min_feature_map": min_fm, "max_numpool": max_pool})
    return out


def trim_plans(plans: dict) -> dict:
    """What shapes training: per configuration and the axis order."""
    keep = ("data_identifier", "batch_size", "patch_size", "median_image_size_in_voxels",
            "spacing", "normalization_schemes", "use_mask_for_norm", "batch_dice",
            "inherits_from", "previous_stage", "next_stage")
    out = {"transpose_forward": plans["transpose_forward"],
           "transpose_backward": plans["transpose_backward"], "configurations": {}}
    for cname, cfg in plans["configurations"].items():
        c = {k: cfg[k] for k in keep if k in cfg}
        if "architecture" in cfg:
            a = cfg["architecture"]["arch_kwargs"]
            c["architecture"] = {k: a[k] for k in (
                "n_stages", "features_per_stage", "kernel_sizes", "strides",
                "n_conv_per_stage", "n_conv_per_stage_decoder")}
        out["configurations"][cname] = c
    return out


def write_compact(path: Path, data: dict) -> None:
    """Indented JSON with every innermost list (numbers, booleans, strings) on one line."""
    text = json.dumps(data, indent=1)
    text = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]",
                  lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text)
    text = re.sub(r"\[\s*(\[[^{}]*?\])\s*\]",
                  lambda m: "[" + re.sub(r"\]\s*,\s*\n\s*\[", "], [", m.group(1)) + "]", text)
    path.write_text(text + "\n")
    assert json.loads(path.read_text()) == data


TOPOLOGY_COLUMNS = ("spacing", "patch", "min_feature_map", "max_numpool", "num_pool_per_axis",
                    "strides", "kernel_sizes", "patch_size", "divisor")


def write_rows(path: Path, header: dict, queries: list[dict]) -> None:
    """``{header..., "columns": [...], "rows": [...]}`` with one row per line."""
    rows = [json.dumps([q[c] for c in TOPOLOGY_COLUMNS]) for q in queries]
    head = json.dumps({**header, "columns": list(TOPOLOGY_COLUMNS)}, indent=1)[:-2]
    path.write_text(head + ',\n "rows": [\n  ' + ",\n  ".join(rows) + "\n ]\n}\n")
    data = json.loads(path.read_text())
    assert [dict(zip(data["columns"], r)) for r in data["rows"]] == json.loads(json.dumps(
        [{c: q[c] for c in TOPOLOGY_COLUMNS} for q in queries]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=benv.REPO / "Testing" / "planning" / "reference")
    ap.add_argument("--topology-3d", type=int, default=900)
    ap.add_argument("--topology-2d", type=int, default=300)
    args = ap.parse_args()
    python = Path(benv.nnunet_bin("python"))
    with tempfile.TemporaryDirectory(prefix="nnseg-planref-") as tmp:
        root = Path(tmp)
        datasets = {}
        for name, spec in SHAPES.items():
            cases = draw_cases(name, spec)
            write_inputs(root, name, spec, cases)
            datasets[name] = {"channel_names": {str(i): c for i, c in
                                                enumerate(spec["channels"])},
                              "num_foreground_labels": spec["fg"],
                              "median_relative_size_after_cropping": spec.get("relative", 1.0),
                              **cases, "plans": {}}
        job = {"plans": [{"dataset": n, "gpu_gb": g, "plans_name": f"nnUNetPlans_{g}GB"}
                         for n in SHAPES for g in GPU_GB],
               "topology": topology_queries(args.topology_3d, args.topology_2d)}
        (root / "job.json").write_text(json.dumps(job))
        (root / "results").mkdir()
        env = benv.nnunet_env(root, n_proc_da=1)
        subprocess.run([str(python), str(benv.BENCH / "nnunet_plan_driver.py"),
                        str(root / "job.json"), str(root / "out.json")], env=env, check=True)
        answer = json.loads((root / "out.json").read_text())
    for item in answer["plans"]:
        datasets[item["dataset"]]["plans"][str(item["gpu_gb"])] = trim_plans(item["plans"])
    header = {"nnunetv2_version": answer["nnunetv2_version"],
              "planner": "nnunetv2 ExperimentPlanner (default, nnUNetPlans)",
              "made_by": "bench/make_planning_references.py"}
    args.out.mkdir(parents=True, exist_ok=True)
    write_compact(args.out / "nnunet_v2_plans.json",
                  {**header, "gpu_gb": list(GPU_GB), "datasets": datasets})
    write_rows(args.out / "nnunet_v2_topology.json",
               {**header, "function": "get_pool_and_conv_props"}, answer["topology"])
    print(f"wrote {args.out}/nnunet_v2_plans.json ({len(datasets)} datasets × {len(GPU_GB)} "
          f"GPU sizes) and nnunet_v2_topology.json ({len(answer['topology'])} queries)")


if __name__ == "__main__":
    main()
