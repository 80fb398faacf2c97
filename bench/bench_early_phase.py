#!/usr/bin/env python3
"""The first iterations of training: how fast each variant leaves the all-background phase.

NNSeg trains ``3d_fullres`` fold 0 of the matched work folder (nnU-Net's plan, the v2 recipe,
see bench_accuracy.py) for ``--epochs × --iterations`` iterations, once per variant and seed;
a variant is a set of ``nnseg train --set FIELD=VALUE`` changes. Per-iteration training losses
come from the run's ``--progress-json`` events; the pseudo-Dice per epoch (``--val-iterations``
validation batches) from its ``log.jsonl``. Each finished run is one JSON file in
``bench/results/early_phase/`` (skipped when present, so a comparison can be completed over
several sessions); ``--summarize`` prints mean ± sd per variant of the loss over iteration
windows and of the last pseudo-Dice, and plots the curves.

    .venv/bin/python bench/bench_early_phase.py --variant base --variant \\
        prior:head_init=prior --seeds 0 1 2 3 [--epochs 3 --iterations 25]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import cpu_profiles  # noqa: E402

OUT = bl.BENCH / "results" / "early_phase"
WINDOWS = ((0, 10), (10, 25), (25, 50), (50, 75), (75, 100), (100, 150))


def variant_arg(text: str) -> tuple[str, list[str]]:
    """``NAME`` or ``NAME:FIELD=VALUE,FIELD=VALUE`` → (name, ["FIELD=VALUE", ...])."""
    name, _, sets = text.partition(":")
    return name, [s for s in sets.split(",") if s]


def work_folder(matched: Path, name: str) -> Path:
    """A fresh work folder sharing the matched folder's preprocessed data, plan and splits."""
    work = bl.fresh_dir(bl.CACHE / "early-phase" / name)
    for item in ("plans.json", "dataset.json", "dataset_fingerprint.json", "splits_final.json"):
        if (matched / item).is_file():
            shutil.copyfile(matched / item, work / item)
    (work / "preprocessed").symlink_to(matched / "preprocessed")
    return work


def run_one(args: argparse.Namespace, matched: Path, name: str, sets: list[str], seed: int,
            path: Path) -> None:
    work = work_folder(matched, f"{name}-s{seed}")
    events = work / "progress.jsonl"
    from NNSegLib.training.train_cli import train_argv
    from NNSegLib.util.command_line import common_argv

    cmd = [str(bl.NNSEG_BIN),
           *train_argv(args.dataset, "3d_fullres", 0, work, "cpu", args.epochs,
                       iterations_per_epoch=args.iterations, val_iterations=args.val_iterations,
                       seed=seed, recipe=args.recipe, num_threads=args.threads,
                       final_validation=False, sets=sets),
           *common_argv(progress_json=events, quiet=True)]
    start = time.time()
    done = subprocess.run(cmd, env=bl.nnseg_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    losses = [e["loss"] for e in map(json.loads, events.read_text().splitlines())
              if e.get("event") == "progress" and e.get("stage") == "train" and "loss" in e]
    log = [json.loads(line) for line in
           (work / "results/3d_fullres/fold_0/log.jsonl").read_text().splitlines()]
    result = {
        "benchmark": "early_phase", "variant": name, "recipe": args.recipe, "sets": sets,
        "seed": seed,
        "nnseg_code": bl.repo_code_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "epochs": args.epochs, "iterations_per_epoch": args.iterations,
        "val_iterations": args.val_iterations, "threads": args.threads,
        "wall_s": round(time.time() - start, 1),
        "loss_per_iteration": losses,
        "pseudo_dice_per_epoch": [r["pseudo_dice"] for r in log],
        "mean_pseudo_dice_per_epoch": [r["mean_pseudo_dice"] for r in log],
    }
    bl.write_json_atomic(path, result)
    print(f"[early] {path.name}: loss {np.mean(losses[-10:]):.3f} (last 10), pseudo-Dice "
          f"{result['pseudo_dice_per_epoch'][-1]}", flush=True)


def summarize(names: list[str] | None = None) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    by: dict[str, list[dict]] = {}
    for r in runs:
        if names is None or r["variant"] in names:
            by.setdefault(r["variant"], []).append(r)
    lines = ["| variant | seeds | " + " | ".join(f"loss it {a}-{b}" for a, b in WINDOWS)
             + " | last pseudo-Dice (mean fg) |", "|---" * (len(WINDOWS) + 3) + "|"]
    for name, rs in sorted(by.items()):
        cells = []
        for a, b in WINDOWS:
            vals = [float(np.mean(r["loss_per_iteration"][a:b])) for r in rs
                    if len(r["loss_per_iteration"]) >= b]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "–")
        dice = [r["mean_pseudo_dice_per_epoch"][-1] or 0.0 for r in rs]
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells)
                     + f" | {np.mean(dice):.3f} ± {np.std(dice):.3f} |")
    _plot(by)
    return "\n".join(lines)


def _plot(by: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, rs) in enumerate(sorted(by.items())):
        for j, r in enumerate(rs):
            y = np.convolve(r["loss_per_iteration"], np.ones(5) / 5, mode="valid")
            ax.plot(np.arange(len(y)) + 2, y, color=colours[k % len(colours)], alpha=0.7,
                    label=name if j == 0 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (5-iteration mean)")
    ax.legend()
    fig.savefig(OUT / "loss_curves.png", dpi=100, bbox_inches="tight")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=bl.DEFAULT_DATASET)
    ap.add_argument("--matched", type=Path, default=None,
                    help="matched NNSeg work folder (default: the newest under the cache)")
    ap.add_argument("--variant", action="append", type=variant_arg, default=[])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=25)
    ap.add_argument("--val-iterations", type=int, default=2)
    ap.add_argument("--recipe", default="v2", choices=["v2", "paper"],
                    help="training recipe (the variant names should say which)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per run (same for every variant; default 1)")
    ap.add_argument("--summarize", action="store_true")
    args = cpu_profiles.parse_args(ap)
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        matched = args.matched or sorted((bl.CACHE / "nnseg-matched").glob(
            f"*/{args.dataset.resolve().name}"), key=lambda p: p.stat().st_mtime)[-1]
        for seed in args.seeds:
            for name, sets in args.variant:
                path = OUT / f"{name}-s{seed}-e{args.epochs}i{args.iterations}.json"
                if path.exists():
                    print(f"[early] {path.name} exists, skipped")
                    continue
                run_one(args, matched, name, sets, seed, path)
    print(summarize([n for n, _ in args.variant] or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
