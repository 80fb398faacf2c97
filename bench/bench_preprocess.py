#!/usr/bin/env python3
"""Fingerprint + plan + preprocess: NNSeg vs nnU-Net v2 on the same dataset, same workers.

NNSeg:   nnseg fingerprint --workers W; nnseg plan --recipe v2 --configurations 2d 3d_fullres;
         nnseg preprocess --workers W            (fresh --work folder per repeat)
nnU-Net: nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres 2d -np W -npfp W
         (fresh nnUNet_preprocessed per repeat; dataset symlinked into a temp nnUNet_raw)

R repeats, the order alternating (odd repeats start with nnU-Net). Prints wall time and
peak memory of each process tree and the NNSeg/nnU-Net ratios; writes
bench/results/runs/preprocess-*.json and the "preprocess" section of bench/RESULTS.md.

    .venv/bin/python bench/bench_preprocess.py [--repeats 2] [--workers 2]
        [--tools nnseg nnunet] [--dataset DIR] [--keep] [--no-results-md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import cpu_profiles  # noqa: E402


def run_nnunet(dataset: Path, root: Path, workers: int, logdir: Path, timeout: float) -> dict:
    bl.fresh_dir(root)
    bl.link_raw_dataset(dataset, root)
    (root / "preprocessed").mkdir()
    (root / "results").mkdir()
    env = bl.nnunet_env(root, n_proc_da=workers)
    cmd = [
        bl.nnunet_bin("nnUNetv2_plan_and_preprocess"),
        "-d",
        str(bl.dataset_id(dataset)),
        "-c",
        "3d_fullres",
        "2d",
        "-np",
        str(workers),
        "-npfp",
        str(workers),
    ]
    res = bl.run_monitored(
        cmd, env=env, log=logdir / "nnunet_plan_and_preprocess.log", timeout=timeout
    )
    bl.check_ok(res, "nnUNetv2_plan_and_preprocess")
    res["stages"] = {"plan_and_preprocess": res["wall_s"]}
    pre = root / "preprocessed" / dataset.resolve().name
    res["output_mb"] = round(
        sum(f.stat().st_size for f in pre.rglob("*") if f.is_file()) / 2**20, 1
    )
    res["plans_json"] = str(pre / "nnUNetPlans.json")
    return res


def run_nnseg(dataset: Path, work: Path, workers: int, logdir: Path, timeout: float) -> dict:
    bl.fresh_dir(work)
    env = bl.nnseg_env()
    steps = bl.nnseg_prepare_steps(dataset, work, workers, "v2", ["2d", "3d_fullres"])
    total = {
        "wall_s": 0.0,
        "cpu_s": 0.0,
        "peak_rss_tree_mb": 0.0,
        "peak_pss_tree_mb": 0.0,
        "peak_rss_proc_mb": 0.0,
        "stages": {},
        "returncode": 0,
    }
    for name, cmd in steps:
        res = bl.run_monitored(cmd, env=env, log=logdir / f"nnseg_{name}.log", timeout=timeout)
        bl.check_ok(res, f"nnseg {name}")
        total["stages"][name] = res["wall_s"]
        total["wall_s"] = round(total["wall_s"] + res["wall_s"], 3)
        total["cpu_s"] = round(total["cpu_s"] + res["cpu_s"], 2)
        for k in ("peak_rss_tree_mb", "peak_pss_tree_mb", "peak_rss_proc_mb"):
            total[k] = max(total[k], res[k])
    total["output_mb"] = round(
        sum(f.stat().st_size for f in (work / "preprocessed").rglob("*") if f.is_file()) / 2**20, 1
    )
    total["plans_json"] = str(work / "plans.json")
    return total


def summarize_nnunet_plans(plans_path: Path) -> dict:
    plans = json.loads(Path(plans_path).read_text())
    out = {}
    for cfg in ("3d_fullres", "2d"):
        c = plans["configurations"].get(cfg)
        if not c:
            continue
        arch = c.get("architecture", {}).get("arch_kwargs", {})
        out[cfg] = {
            "patch_size": c.get("patch_size"),
            "batch_size": c.get("batch_size"),
            "spacing": c.get("spacing"),
            "median_image_size_in_voxels": c.get("median_image_size_in_voxels"),
            "features_per_stage": arch.get("features_per_stage"),
            "n_stages": arch.get("n_stages"),
            "kernel_sizes": arch.get("kernel_sizes"),
            "strides": arch.get("strides"),
            "n_conv_per_stage": arch.get("n_conv_per_stage"),
            "n_conv_per_stage_decoder": arch.get("n_conv_per_stage_decoder"),
        }
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", type=Path, default=bl.DEFAULT_DATASET)
    ap.add_argument("--repeats", "-R", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tools", nargs="+", choices=["nnseg", "nnunet"], default=["nnseg", "nnunet"])
    ap.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds per command before a hung command is killed",
    )
    ap.add_argument("--keep", action="store_true", help="keep the last repeat's output folders")
    ap.add_argument("--no-results-md", action="store_true", help="do not touch bench/RESULTS.md")
    args = cpu_profiles.parse_args(ap)
    return args


def run_repeats(args: argparse.Namespace, tools: list[str], base: Path
                ) -> tuple[dict[str, list[dict]], list[dict]]:
    """--repeats rounds of every tool, the order alternating; the runs and the failures."""
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    failures: list[dict] = []
    for rep in range(args.repeats):
        order = tools if rep % 2 == 0 else tools[::-1]
        for tool in order:
            rdir = base / f"rep{rep}" / tool
            print(f"[rep {rep + 1}/{args.repeats}] {tool} ...", flush=True)
            load = os.getloadavg()[0]
            try:
                if tool == "nnunet":
                    res = run_nnunet(args.dataset, rdir / "root", args.workers, rdir, args.timeout)
                else:
                    res = run_nnseg(args.dataset, rdir / "work", args.workers, rdir, args.timeout)
            except RuntimeError as e:  # failed or timed out: record it, keep going
                failures.append(
                    {
                        "tool": tool,
                        "repeat": rep,
                        "error": str(e),
                        "log_tail": bl.tail(
                            max(rdir.glob("*.log"), key=lambda f: f.stat().st_mtime), 15
                        )
                        if list(rdir.glob("*.log"))
                        else "",
                    }
                )
                print(f"    FAILED: {e}", flush=True)
                continue
            res["repeat"] = rep
            res["loadavg1_before"] = round(load, 2)
            runs[tool].append(res)
            print(
                f"    wall {res['wall_s']:.1f} s  stages {res['stages']}  peak PSS tree "
                f"{res['peak_pss_tree_mb']:.0f} MB (RSS tree {res['peak_rss_tree_mb']:.0f} MB, "
                f"largest process {res['peak_rss_proc_mb']:.0f} MB)",
                flush=True,
            )
        last = rep == args.repeats - 1
        if last:  # keep both tools' plans of the last repeat for reference
            bl.OUT.mkdir(exist_ok=True)
            for tool, name in (
                ("nnunet", "nnunet_plans_latest.json"),
                ("nnseg", "nnseg_v2_plans_latest.json"),
            ):
                if runs.get(tool):
                    shutil.copy(runs[tool][-1]["plans_json"], bl.OUT / name)
                    runs[tool][-1]["plans_json"] = str(bl.OUT / name)
        if not (last and args.keep):
            shutil.rmtree(base / f"rep{rep}", ignore_errors=True)
    return runs, failures


def summarise_runs(runs: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Statistics per tool over the repeats and the NNSeg/nnU-Net ratios."""
    summary = {}
    for tool, rs in runs.items():
        if not rs:
            continue
        summary[tool] = {
            "wall_s": bl.stats([r["wall_s"] for r in rs]),
            "cpu_s": bl.stats([r["cpu_s"] for r in rs]),
            "peak_pss_tree_mb": bl.stats([r["peak_pss_tree_mb"] for r in rs]),
            "peak_rss_tree_mb": bl.stats([r["peak_rss_tree_mb"] for r in rs]),
            "peak_rss_proc_mb": bl.stats([r["peak_rss_proc_mb"] for r in rs]),
            "stages_s": {s: bl.stats([r["stages"][s] for r in rs]) for s in rs[0]["stages"]},
        }
    ratios = {}
    if "nnseg" in summary and "nnunet" in summary:
        for k in ("min", "median"):
            ratios[f"wall_{k}"] = bl.ratio(
                summary["nnseg"]["wall_s"][k], summary["nnunet"]["wall_s"][k]
            )
            ratios[f"peak_pss_{k}"] = bl.ratio(
                summary["nnseg"]["peak_pss_tree_mb"][k], summary["nnunet"]["peak_pss_tree_mb"][k]
            )
        # per-repeat pairs (same repeat = closest in time)
        ratios["cpu_median"] = bl.ratio(
            summary["nnseg"]["cpu_s"]["median"], summary["nnunet"]["cpu_s"]["median"]
        )
        ratios["wall_per_repeat"] = [
            bl.ratio(a["wall_s"], b["wall_s"]) for a, b in zip(runs["nnseg"], runs["nnunet"])
        ]
    return summary, ratios


def print_report(args: argparse.Namespace, summary: dict, ratios: dict, nnunet_plans: dict,
                 path: Path) -> None:
    print("\n== fingerprint + plan + preprocess (2d + 3d_fullres), workers =", args.workers)
    for tool, s in summary.items():
        print(
            f"{tool:7s} wall min {bl.fmt(s['wall_s']['min'], 1)} s / median "
            f"{bl.fmt(s['wall_s']['median'], 1)} s; peak PSS tree median "
            f"{bl.fmt(s['peak_pss_tree_mb']['median'], 0)} MB; stages (median) "
            + ", ".join(f"{k} {v['median']} s" for k, v in s["stages_s"].items())
        )
    if ratios:
        print(
            f"NNSeg/nnU-Net wall: min {ratios['wall_min']}, median {ratios['wall_median']} "
            f"(target <= 0.333); per repeat {ratios['wall_per_repeat']}; peak PSS median "
            f"{ratios['peak_pss_median']}"
        )
    for tool, sm in summary.items():
        print(f"{tool:7s} CPU seconds (user+sys, whole tree) median {sm['cpu_s']['median']}")
    if ratios:
        print(f"NNSeg/nnU-Net CPU seconds (median): {ratios['cpu_median']}")
    if nnunet_plans.get("3d_fullres"):
        p = nnunet_plans["3d_fullres"]
        print(
            f"nnU-Net 3d_fullres: patch {p['patch_size']}, batch {p['batch_size']}, features "
            f"{p['features_per_stage']}, spacing {p['spacing']}"
        )
    print("JSON:", path)


def results_md(args: argparse.Namespace, info: dict, runs: dict[str, list[dict]], summary: dict,
               ratios: dict, nnunet_plans: dict, failures: list[dict], path: Path) -> str:
    """The "preprocess" section of bench/RESULTS.md."""
    md = [
        f"## Fingerprint + plan + preprocess ({args.dataset.name}, 2d + 3d_fullres)\n",
        bl.machine_md(info),
        f"- {args.repeats} repeats, alternating order, {args.workers} worker processes each; "
        "fresh output folders every repeat. NNSeg = fingerprint + plan --recipe v2 + "
        "preprocess; nnU-Net = nnUNetv2_plan_and_preprocess -c 3d_fullres 2d "
        f"-np {args.workers} -npfp {args.workers}.\n",
        bl.load_note(info),
        "| tool | wall min (s) | wall median (s) | peak PSS tree median (MB) | "
        "peak RSS tree median (MB) | stages median (s) | output on disk (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool, s in summary.items():
        md.append(
            f"| {tool} | {bl.fmt(s['wall_s']['min'], 1)} | {bl.fmt(s['wall_s']['median'], 1)} "
            "| "
            f"{bl.fmt(s['peak_pss_tree_mb']['median'], 0)} | "
            f"{bl.fmt(s['peak_rss_tree_mb']['median'], 0)} | "
            + ", ".join(f"{k} {v['median']}" for k, v in s["stages_s"].items())
            + f" | {runs[tool][-1].get('output_mb')} |"
        )
    md.append(
        "\nOutput on disk: nnU-Net writes one folder per configuration plus gt_segmentations; "
        "NNSeg shares one preprocessed folder between configurations with the same spacing."
    )
    if ratios:
        md.append(
            f"\nNNSeg/nnU-Net wall time: min {ratios['wall_min']}, median "
            f"{ratios['wall_median']}, per repeat {ratios['wall_per_repeat']} "
            f"(target ≤ 0.33). Peak PSS ratio (median): {ratios['peak_pss_median']}."
        )
    else:
        md.append("\nOnly " + ", ".join(summary) + " was measured in this run (no ratio).")
    if nnunet_plans.get("3d_fullres"):
        p = nnunet_plans["3d_fullres"]
        md.append(
            f"\nnnU-Net's 3d_fullres plan: patch {p['patch_size']}, batch {p['batch_size']}, "
            f"features {p['features_per_stage']}, strides {p['strides']}, spacing "
            f"{p['spacing']}."
        )
    for f in failures:
        md.append(
            f"\nFAILED: {f['tool']} repeat {f['repeat']}: {f['error']} (excluded from the "
            "table)."
        )
    md.append(
        "\nCPU seconds (user+sys of the process tree; less sensitive to load), median: "
        + ", ".join(f"{t} {sm['cpu_s']['median']}" for t, sm in summary.items())
        + (f"; ratio NNSeg/nnU-Net {ratios['cpu_median']}." if ratios else ".")
    )
    md.append(f"\nRaw data: `bench/results/runs/{path.name}`.")
    return "\n".join(md)


def main() -> int:
    args = parse_args()
    tools = list(args.tools)
    if "nnseg" in tools and bl.nnseg_help("preprocess") is None:
        print("nnseg preprocess is not available yet: running nnU-Net only", file=sys.stderr)
        tools.remove("nnseg")
    info = bl.machine_info()
    base = bl.CACHE / "runs" / f"preprocess-{time.strftime('%Y%m%d-%H%M%S')}"
    runs, failures = run_repeats(args, tools, base)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    summary, ratios = summarise_runs(runs)
    nnunet_plans = {}
    if runs.get("nnunet"):
        nnunet_plans = summarize_nnunet_plans(Path(runs["nnunet"][-1]["plans_json"]))

    data = {
        "benchmark": "preprocess",
        "dataset": str(args.dataset),
        "workers": args.workers,
        "repeats": args.repeats,
        "machine": info,
        "runs": runs,
        "summary": summary,
        "ratios_nnseg_over_nnunet": ratios,
        "nnunet_plans": nnunet_plans,
        "failures": failures,
    }
    path = bl.write_json("preprocess", data)

    print_report(args, summary, ratios, nnunet_plans, path)
    if not args.no_results_md:
        md = results_md(args, info, runs, summary, ratios, nnunet_plans, failures, path)
        bl.update_results_md("preprocess", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
