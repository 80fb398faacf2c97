#!/usr/bin/env python3
"""Inference: NNSeg vs nnU-Net v2 on the same held-out cases, models trained for the same budget.

1. Train (once per budget; cached in $NNSEG_BENCH_CACHE/predict-models/): both tools on
   3d_fullres fold 0 with the same plan (nnU-Net's patch/batch/network, see bench_train.py),
   the same folds and the same short budget (--epochs × --iterations), no final validation.
2. Predict the first --cases validation cases of fold 0 (never seen in training) with
   NNSeg:   nnseg predict -i IN -o OUT -m MODEL --folds 0 --config 3d_fullres --device cpu  (TTA on)
   nnU-Net: nnUNetv2_predict -i IN -o OUT -d ID -c 3d_fullres -f 0 -tr nnsegBenchTrainer
            -device cpu -npp 1 -nps 1                                                      (TTA on)
   R repeats, alternating order; wall time per case (process start to exit ÷ cases, i.e.
   including start-up and model loading) and peak memory of the process tree.
3. Dice per foreground label against labelsTr, computed here with numpy + SimpleITK.

Writes bench/results/runs/predict-*.json and the "predict" section of bench/RESULTS.md.

    .venv/bin/python bench/bench_predict.py [--cases 20] [--epochs 1] [--iterations 30]
        [--repeats 2] [--retrain] [--tools nnseg nnunet] [--nnseg-train-args "..."]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

CONFIG = "3d_fullres"
TIMEOUT = 3600.0  # seconds per command; --timeout


def train_models(
    ds: Path,
    ref: dict,
    matched: dict,
    tools: list[str],
    epochs: int,
    iters: int,
    seed: int,
    retrain: bool,
    nnseg_extra: list[str],
) -> dict:
    tag = f"e{epochs}-i{iters}-s{seed}"
    mdir = bl.CACHE / "predict-models" / ds.resolve().name / tag
    mdir.mkdir(parents=True, exist_ok=True)
    out = {"tag": tag, "dir": str(mdir), "train_runs": {}}
    if "nnunet" in tools:
        results = mdir / "nnunet_results"
        marker = mdir / ".nnunet_ready"
        if retrain or not marker.exists():
            print(f"[train] nnU-Net {tag} ...", flush=True)
            bl.fresh_dir(results)
            env = bl.nnunet_env(
                ref["root"],
                n_proc_da=0,
                extra={
                    "nnUNet_results": results,
                    "NNSEG_BENCH_EPOCHS": epochs,
                    "NNSEG_BENCH_ITERS": iters,
                    "NNSEG_BENCH_VAL_ITERS": 1,
                    "NNSEG_BENCH_SEED": seed,
                    "NNSEG_BENCH_SKIP_FINAL_VAL": "1",
                },
            )
            cmd = bl.nnunet_train_cmd(ds, CONFIG)
            res = bl.run_monitored(cmd, env=env, log=mdir / "nnunet_train.log", timeout=TIMEOUT)
            bl.check_ok(res, "nnUNetv2_train")
            (mdir / "nnunet_train.json").write_text(json.dumps(res, indent=1))
            marker.write_text("ok\n")
        out["train_runs"]["nnunet"] = json.loads((mdir / "nnunet_train.json").read_text())
        out["nnunet_results"] = results
    if "nnseg" in tools:
        model = mdir / "nnseg_model"
        marker = mdir / ".nnseg_ready"
        if retrain or not marker.exists():
            print(f"[train] NNSeg {tag} ...", flush=True)
            work = matched["work"]
            cmd = bl.nnseg_train_cmd(
                ds, work, epochs=epochs, iterations=iters, seed=seed, extra=nnseg_extra
            )
            res = bl.run_monitored(
                cmd, env=bl.nnseg_env(), log=mdir / "nnseg_train.log", timeout=TIMEOUT
            )
            bl.check_ok(res, "nnseg train")
            if model.exists():
                shutil.rmtree(model)
            shutil.copytree(work / "results", model)
            (mdir / "nnseg_train.json").write_text(json.dumps(res, indent=1))
            marker.write_text("ok\n")
        out["train_runs"]["nnseg"] = json.loads((mdir / "nnseg_train.json").read_text())
        out["nnseg_model"] = model
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", type=Path, default=bl.DEFAULT_DATASET)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=30, help="training iterations per epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", "-R", type=int, default=2)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument(
        "--rebuild-nnseg", action="store_true", help="redo NNSeg's matched preprocessing"
    )
    ap.add_argument("--tools", nargs="+", choices=["nnseg", "nnunet"], default=["nnseg", "nnunet"])
    ap.add_argument("--nnseg-train-args", default="")
    ap.add_argument("--nnseg-predict-args", default="", help="extra arguments for nnseg predict")
    ap.add_argument(
        "--timeout", type=float, default=TIMEOUT, help="seconds before a hung command is killed"
    )
    ap.add_argument("--no-results-md", action="store_true")
    args = ap.parse_args()
    globals()["TIMEOUT"] = args.timeout

    tools = list(args.tools)
    if "nnseg" in tools and (bl.nnseg_help("predict") is None or bl.nnseg_help("train") is None):
        print("nnseg train/predict not available yet: running nnU-Net only", file=sys.stderr)
        tools.remove("nnseg")
    info = bl.machine_info()
    ds = args.dataset
    dsj = json.loads((ds / "dataset.json").read_text())
    ending = dsj.get("file_ending", ".nii.gz")
    ref = bl.ensure_nnunet_ref(ds)
    matched = (
        bl.ensure_nnseg_matched(ds, ref, rebuild=args.rebuild_nnseg) if "nnseg" in tools else None
    )
    models = train_models(
        ds,
        ref,
        matched,
        tools,
        args.epochs,
        args.iterations,
        args.seed,
        args.retrain,
        shlex.split(args.nnseg_train_args),
    )

    cases = sorted(ref["splits"][0]["val"])[: args.cases]
    base = bl.CACHE / "runs" / f"predict-{time.strftime('%Y%m%d-%H%M%S')}"
    inp = bl.link_cases(ds, cases, base / "input")

    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for rep in range(args.repeats):
        order = tools if rep % 2 == 0 else tools[::-1]
        for tool in order:
            out = bl.fresh_dir(base / f"rep{rep}" / f"{tool}_pred")
            load = os.getloadavg()[0]
            print(
                f"[rep {rep + 1}/{args.repeats}] {tool}: predicting {len(cases)} cases ...",
                flush=True,
            )
            if tool == "nnunet":
                env = bl.nnunet_env(ref["root"], extra={"nnUNet_results": models["nnunet_results"]})
                cmd = bl.nnunet_predict_cmd(inp, out, ds, CONFIG)
            else:
                env = bl.nnseg_env()
                cmd = bl.nnseg_predict_cmd(
                    inp,
                    out,
                    models["nnseg_model"],
                    extra=shlex.split(args.nnseg_predict_args),
                    config=CONFIG,
                )
            res = bl.run_monitored(
                cmd, env=env, log=base / f"rep{rep}" / f"{tool}_predict.log", timeout=TIMEOUT
            )
            bl.check_ok(res, f"{tool} predict")
            res["s_per_case"] = round(res["wall_s"] / len(cases), 3)
            res["repeat"], res["loadavg1_before"] = rep, round(load, 2)
            res["dice"] = bl.dice_scores(ds / "labelsTr", out, cases, dsj["labels"], ending)
            runs[tool].append(res)
            print(
                f"    {res['s_per_case']:.2f} s/case (wall {res['wall_s']:.1f} s), peak PSS "
                f"{res['peak_pss_tree_mb']:.0f} MB (largest process RSS "
                f"{res['peak_rss_proc_mb']:.0f} MB), "
                f"Dice {res['dice']['mean']}",
                flush=True,
            )
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    summary = {}
    for tool, rs in runs.items():
        summary[tool] = {
            "s_per_case": bl.stats([r["s_per_case"] for r in rs]),
            "cpu_s_per_case": bl.stats([r["cpu_s"] / len(cases) for r in rs]),
            "peak_pss_tree_mb": bl.stats([r["peak_pss_tree_mb"] for r in rs]),
            "peak_rss_tree_mb": bl.stats([r["peak_rss_tree_mb"] for r in rs]),
            "dice": rs[-1]["dice"]["mean"],
            "dice_stable_across_repeats": len({json.dumps(r["dice"]["mean"]) for r in rs}) == 1,
        }
    ratios = {}
    if len(summary) == 2:
        a, b = summary["nnseg"], summary["nnunet"]
        ratios = {
            "time_median": bl.ratio(a["s_per_case"]["median"], b["s_per_case"]["median"]),
            "time_min": bl.ratio(a["s_per_case"]["min"], b["s_per_case"]["min"]),
            "peak_pss_median": bl.ratio(
                a["peak_pss_tree_mb"]["median"], b["peak_pss_tree_mb"]["median"]
            ),
            "dice_diff": (
                None
                if a["dice"]["mean_foreground"] is None or b["dice"]["mean_foreground"] is None
                else round(a["dice"]["mean_foreground"] - b["dice"]["mean_foreground"], 4)
            ),
        }
    data = {
        "benchmark": "predict",
        "dataset": str(ds),
        "configuration": CONFIG,
        "fold": 0,
        "cases": cases,
        "train_budget": {
            "epochs": args.epochs,
            "iterations_per_epoch": args.iterations,
            "seed": args.seed,
        },
        "models": {k: str(v) if isinstance(v, Path) else v for k, v in models.items()},
        "machine": info,
        "runs": runs,
        "summary": summary,
        "ratios_nnseg_over_nnunet": ratios,
        "config_differences": matched["differences"] if matched else None,
    }
    path = bl.write_json("predict", data)

    print(
        f"\n== predict {len(cases)} fold-0 validation cases, {CONFIG}, TTA on, models trained "
        f"{args.epochs}×{args.iterations} iterations"
    )
    for tool, s in summary.items():
        print(
            f"{tool:7s} s/case median {bl.fmt(s['s_per_case']['median'])} (min "
            f"{bl.fmt(s['s_per_case']['min'])}); "
            f"peak PSS median {bl.fmt(s['peak_pss_tree_mb']['median'], 0)} MB; Dice {s['dice']}"
        )
    if ratios:
        print(
            f"NNSeg/nnU-Net time per case: median {ratios['time_median']}, min "
            f"{ratios['time_min']} "
            f"(target <= 0.5); peak PSS {ratios['peak_pss_median']} (target <= 1); "
            f"Dice difference (NNSeg - nnU-Net) {ratios['dice_diff']}"
        )
    print("JSON:", path)

    if not args.no_results_md:
        md = [
            f"## Inference ({ds.name}, {CONFIG}, fold 0 model, {len(cases)} fold-0 validation "
            "cases)\n",
            bl.machine_md(info),
            f"- Both models trained here for the same budget: {args.epochs} epoch(s) × "
            f"{args.iterations} "
            f"iterations, seed {args.seed}, same plan and folds — far from converged, so Dice "
            "compares "
            "equal budgets, not final accuracy.\n",
            "- Mirror TTA on for both; nnU-Net `-npp 1 -nps 1`; time per case = process wall time "
            "÷ cases "
            f"(includes start-up and model loading); {args.repeats} repeats, alternating order.\n",
            bl.load_note(info),
            "| tool | s/case median | s/case min | peak PSS median (MB) | peak RSS tree median "
            "(MB) | Dice (mean per label, mean fg) |",
            "|---|---|---|---|---|---|",
        ]
        for tool, s in summary.items():
            md.append(
                f"| {tool} | {bl.fmt(s['s_per_case']['median'])} | "
                f"{bl.fmt(s['s_per_case']['min'])} | "
                f"{bl.fmt(s['peak_pss_tree_mb']['median'], 0)} | "
                f"{bl.fmt(s['peak_rss_tree_mb']['median'], 0)} | "
                f"{s['dice']} |"
            )
        if ratios:
            md.append(
                f"\nNNSeg/nnU-Net: time per case median {ratios['time_median']} (target ≤ 0.5), "
                f"peak PSS {ratios['peak_pss_median']} (target ≤ 1), mean foreground Dice "
                "difference "
                f"{ratios['dice_diff']} (target ≥ 0)."
            )
        else:
            md.append("\nOnly " + ", ".join(summary) + " was measured in this run (no ratio).")
        md.append(
            "\nCPU seconds per case (user+sys of the tree ÷ cases; less sensitive to load), "
            "median: "
            + ", ".join(f"{t} {sm['cpu_s_per_case']['median']}" for t, sm in summary.items())
            + "."
        )
        md.append(f"\nRaw data: `bench/results/runs/{path.name}`.")
        bl.update_results_md("predict", "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
