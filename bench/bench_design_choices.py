#!/usr/bin/env python3
"""Two training details decided by measurement (issue 14, points b and c), on a small task.

(b) Deep-supervision targets: NNSeg takes every 2nd voxel of the label starting at voxel 0
    (``loss.downsample_target``: ``label[::2]``), which is where a stride-2, kernel-3,
    padding-1 convolution centres its outputs; nnU-Net v2 interpolates with
    ``nearest-exact``, which picks voxel 2i+1 for output i (one voxel later). Variant
    ``ds_nearest_exact`` replaces NNSeg's rule by nnU-Net's for the run.
(c) Foreground patch placement: ``clip`` (NNSeg's default: a foreground-centred patch is
    moved back into the image) or ``centre`` (nnU-Net's: the chosen voxel stays at the patch
    centre, the patch may reach beyond the image and is padded). Variant ``centre`` sets
    ``foreground_placement=centre``.

Task: the learning test's (Testing/training/test_learning.py: 8 generated cases, fold 0,
16³ patch, default ``paper`` recipe and augmentation, lr 3e-3) with one more stage (features
8-16-32-64, strides 1-2-2-2, so that two deep-supervision outputs carry weight: 16³ and 8³;
with three stages only the full-resolution one does), for ``--epochs × 25`` iterations,
seeds as given. Metric: the run's final validation Dice per
class on the 2 held-out cases, and the mean training loss of the last epoch. One JSON per run
in ``bench/results/design_choices/`` (skipped when present); ``--summarize`` prints mean ± sd
per variant. Runs in this venv with this checkout's NNSegLib (commit recorded).

    .venv/bin/python bench/bench_design_choices.py --seeds 0 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "results" / "design_choices"
VARIANTS = ("base", "ds_nearest_exact", "centre")
FEATURES = (8, 16, 32, 64)
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing"))
sys.path.insert(0, str(BENCH))
import cpu_profiles  # noqa: E402
from benchlib.versions import repo_code_version  # noqa: E402


def run_one(variant: str, seed: int, epochs: int) -> dict:
    import torch.nn.functional as F
    from training.test_learning import make_task  # the learning test's task

    from NNSegLib.planning.plans import Plans
    from NNSegLib.training import loss as loss_module
    from NNSegLib.training.train import train_fold

    original = loss_module.downsample_target
    if variant == "ds_nearest_exact":
        def nearest_exact(target, shape):
            shape = tuple(int(s) for s in shape)
            if tuple(target.shape[2:]) == shape:
                return target
            return F.interpolate(target.float(), size=shape,
                                 mode="nearest-exact").to(target.dtype)
        loss_module.downsample_target = nearest_exact
    overrides = {"max_epochs": epochs, "iterations_per_epoch": 25, "val_iterations": 1,
                 "lr": 3e-3, "seed": seed, "num_threads": 1, "device": "cpu"}
    if variant == "centre":
        overrides["foreground_placement"] = "centre"
    start = time.time()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ws = make_task(Path(tmp) / "work")
            plans = Plans.load(ws.plans)
            cfg = dataclasses.replace(
                plans.configurations["3d_fullres"], features_per_stage=FEATURES,
                strides=((1, 1, 1),) + ((2, 2, 2),) * (len(FEATURES) - 1),
                kernel_sizes=((3, 3, 3),) * len(FEATURES))
            dataclasses.replace(plans, configurations={"3d_fullres": cfg}).save(ws.plans)
            train_fold(None, ws.root, "3d_fullres", 0, overrides=overrides)
            run_dir = ws.run_dir("3d_fullres", 0)
            summary = json.loads((run_dir / "validation_summary.json").read_text())
            log = [json.loads(line) for line in
                   (run_dir / "log.jsonl").read_text().splitlines()]
    finally:
        loss_module.downsample_target = original
    return {"benchmark": "design_choices", "variant": variant, "seed": seed, "epochs": epochs,
            "iterations_per_epoch": 25, "features_per_stage": list(FEATURES),
            "nnseg_code": repo_code_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_s": round(time.time() - start, 1),
            "dice": {k: v["dice"] for k, v in summary["mean"].items()},
            "train_loss_per_epoch": [r["train_loss"] for r in log]}


def summarize() -> str:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    lines = ["| variant | seeds | Dice class 1 | Dice class 2 | mean Dice | last-epoch loss |",
             "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        rs = [r for r in runs if r["variant"] == variant]
        if not rs:
            continue
        d1 = [r["dice"]["1"] for r in rs]
        d2 = [r["dice"]["2"] for r in rs]
        mean = [(a + b) / 2 for a, b in zip(d1, d2)]
        last = [r["train_loss_per_epoch"][-1] for r in rs]
        cells = [f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}"
                 for v in (d1, d2, mean, last)]
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(f"| {variant} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--summarize", action="store_true")
    args = cpu_profiles.parse_args(ap)
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for seed in args.seeds:
            for variant in args.variants:
                path = OUT / f"{variant}-s{seed}-e{args.epochs}.json"
                if path.exists():
                    continue
                result = run_one(variant, seed, args.epochs)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(result, indent=1))
                tmp.replace(path)
                print(f"{path.name}: Dice {result['dice']} ({result['wall_s']} s)", flush=True)
    print(summarize())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
