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

Variants (``--variants``; default: nnseg_tta nnunet_tta): ``nnunet_tta`` / ``nnunet_notta``
(``nnUNetv2_predict`` [--disable_tta]), ``nnseg_tta`` / ``nnseg_notta`` (NNSeg's own model
[--no-tta]) and ``nnseg_import_tta`` / ``nnseg_import_notta`` (``nnseg predict -m`` on
nnU-Net's results folder: the imported nnU-Net model). ``--nnseg-precision`` is passed to
every NNSeg variant. ``--nnseg-model`` / ``--nnunet-results`` reuse already trained models
(e.g. bench_accuracy's) instead of training short ones. Imported-model variants also report
the share of voxels equal to nnU-Net's own labels of the same TTA setting.

Writes bench/results/runs/predict-*.json and the "predict" section of bench/RESULTS.md.

    .venv/bin/python bench/bench_predict.py [--cases 20] [--epochs 1] [--iterations 30]
        [--repeats 2] [--retrain] [--variants ...] [--nnseg-precision fp32]
        [--nnseg-model DIR] [--nnunet-results DIR] [--nnseg-train-args "..."]
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
import cpu_profiles  # noqa: E402

from NNSegLib.inference.predict_options import predict_options_argv  # noqa: E402

CONFIG = "3d_fullres"
TIMEOUT = 3600.0  # seconds per command; --timeout

#: variant -> (tool, model kind, mirror TTA)
VARIANTS: dict[str, tuple[str, str, bool]] = {
    "nnunet_tta": ("nnunet", "nnunet", True),
    "nnunet_notta": ("nnunet", "nnunet", False),
    "nnseg_tta": ("nnseg", "nnseg", True),
    "nnseg_notta": ("nnseg", "nnseg", False),
    "nnseg_import_tta": ("nnseg", "nnunet", True),
    "nnseg_import_notta": ("nnseg", "nnunet", False),
}


def variant_extra(variant: str) -> list[str]:
    """The variant's extra arguments to the predict command (nnU-Net's or NNSeg's)."""
    from NNSegLib.inference.predict_options import predict_options_argv

    tool, _kind, tta = VARIANTS[variant]
    if tool == "nnunet":
        return [] if tta else ["--disable_tta"]
    return predict_options_argv(tta=tta)


#: NNSeg variant -> the nnU-Net variant it is compared with
PAIRS = {"nnseg_tta": "nnunet_tta", "nnseg_notta": "nnunet_notta",
         "nnseg_import_tta": "nnunet_tta", "nnseg_import_notta": "nnunet_notta"}


def same_voxels(a: Path, b: Path, cases: list[str], ending: str) -> float:
    """Share of voxels with the same label in two prediction folders."""
    import numpy as np
    import SimpleITK as sitk

    equal = total = 0
    for case in cases:
        x = sitk.GetArrayFromImage(sitk.ReadImage(str(a / f"{case}{ending}")))
        y = sitk.GetArrayFromImage(sitk.ReadImage(str(b / f"{case}{ending}")))
        equal += int(np.count_nonzero(x == y))
        total += x.size
    return round(equal / max(total, 1), 6)


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


def parse_args() -> argparse.Namespace:
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
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                    default=["nnseg_tta", "nnunet_tta"])
    ap.add_argument("--nnseg-precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--nnseg-model", type=Path, default=None,
                    help="an already trained NNSeg model folder (WORK/results) to use")
    ap.add_argument("--nnunet-results", type=Path, default=None,
                    help="an already trained nnU-Net results root (nnUNet_results) to use")
    ap.add_argument("--nnseg-train-args", default="")
    ap.add_argument("--nnseg-predict-args", default="", help="extra arguments for nnseg predict")
    ap.add_argument(
        "--timeout", type=float, default=TIMEOUT, help="seconds before a hung command is killed"
    )
    ap.add_argument("--no-results-md", action="store_true")
    args = cpu_profiles.parse_args(ap)
    globals()["TIMEOUT"] = args.timeout
    return args


def prepare(args: argparse.Namespace) -> dict:
    """The tools to run, the machine, nnU-Net's reference set-up, the models (trained or given)
    and the input folder of held-out cases."""
    variants = list(args.variants)
    tools = sorted({VARIANTS[v][1] for v in variants} | {VARIANTS[v][0] for v in variants})
    if "nnseg" in tools and (bl.nnseg_help("predict") is None or bl.nnseg_help("train") is None):
        print("nnseg train/predict not available yet: running nnU-Net only", file=sys.stderr)
        tools.remove("nnseg")
    info = bl.machine_info()
    ds = args.dataset
    dsj = json.loads((ds / "dataset.json").read_text())
    ending = dsj.get("file_ending", ".nii.gz")
    ref = bl.ensure_nnunet_ref(ds)
    to_train = [t for t in tools if {"nnseg": args.nnseg_model,
                                     "nnunet": args.nnunet_results}[t] is None]
    matched = (
        bl.ensure_nnseg_matched(ds, ref, rebuild=args.rebuild_nnseg)
        if "nnseg" in to_train else None
    )
    models = train_models(
        ds,
        ref,
        matched,
        to_train,
        args.epochs,
        args.iterations,
        args.seed,
        args.retrain,
        shlex.split(args.nnseg_train_args),
    )
    if args.nnseg_model is not None:
        models["nnseg_model"] = args.nnseg_model
        models["tag"] = "given"
    if args.nnunet_results is not None:
        models["nnunet_results"] = args.nnunet_results
        models["tag"] = "given"
    imported = None
    if "nnunet" in tools:
        imported = (Path(models["nnunet_results"]) / ds.name
                    / f"{bl.TRAINER_NAME}__nnUNetPlans__{CONFIG}")

    cases = sorted(ref["splits"][0]["val"])[: args.cases]
    base = bl.CACHE / "runs" / f"predict-{time.strftime('%Y%m%d-%H%M%S')}"
    inp = bl.link_cases(ds, cases, base / "input")
    return {"variants": variants, "info": info, "ds": ds, "dsj": dsj, "ending": ending,
            "ref": ref, "matched": matched, "models": models, "imported": imported,
            "cases": cases, "base": base, "inp": inp}


def predict_all(args: argparse.Namespace, c: dict) -> dict[str, list[dict]]:
    """Every variant predicts the cases --repeats times, the order alternating; timed runs."""
    variants, ds, dsj, ending, ref = c["variants"], c["ds"], c["dsj"], c["ending"], c["ref"]
    models, imported, cases, base, inp = c["models"], c["imported"], c["cases"], c["base"], c["inp"]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(args.repeats):
        order = variants if rep % 2 == 0 else variants[::-1]
        for variant in order:
            tool, kind, _tta = VARIANTS[variant]
            extra = variant_extra(variant)
            out = bl.fresh_dir(base / f"rep{rep}" / f"{variant}_pred")
            load = os.getloadavg()[0]
            print(
                f"[rep {rep + 1}/{args.repeats}] {variant}: predicting {len(cases)} cases ...",
                flush=True,
            )
            if tool == "nnunet":
                env = bl.nnunet_env(ref["root"], extra={"nnUNet_results": models["nnunet_results"]})
                cmd = bl.nnunet_predict_cmd(inp, out, ds, CONFIG) + extra
            else:
                env = bl.nnseg_env()
                cmd = bl.nnseg_predict_cmd(
                    inp,
                    out,
                    models["nnseg_model"] if kind == "nnseg" else imported,
                    extra=[*extra, *predict_options_argv(precision=args.nnseg_precision),
                           *shlex.split(args.nnseg_predict_args)],
                    config=CONFIG,
                )
            res = bl.run_monitored(
                cmd, env=env, log=base / f"rep{rep}" / f"{variant}_predict.log", timeout=TIMEOUT
            )
            bl.check_ok(res, f"{variant} predict")
            res["pred_dir"] = str(out)
            res["s_per_case"] = round(res["wall_s"] / len(cases), 3)
            res["repeat"], res["loadavg1_before"] = rep, round(load, 2)
            res["dice"] = bl.dice_scores(ds / "labelsTr", out, cases, dsj["labels"], ending)
            runs[variant].append(res)
            print(
                f"    {res['s_per_case']:.2f} s/case (wall {res['wall_s']:.1f} s), peak PSS "
                f"{res['peak_pss_tree_mb']:.0f} MB (largest process RSS "
                f"{res['peak_rss_proc_mb']:.0f} MB), "
                f"Dice {res['dice']['mean']}",
                flush=True,
            )
    return runs


def summarise_runs(runs: dict[str, list[dict]], cases: list[str], ending: str
                   ) -> tuple[dict, dict]:
    """Statistics per variant over the repeats and the NNSeg/nnU-Net ratios of each pair."""
    summary = {}
    for tool, rs in runs.items():
        summary[tool] = {
            "command_extra": variant_extra(tool),
            "s_per_case": bl.stats([r["s_per_case"] for r in rs]),
            "cpu_s_per_case": bl.stats([r["cpu_s"] / len(cases) for r in rs]),
            "peak_pss_tree_mb": bl.stats([r["peak_pss_tree_mb"] for r in rs]),
            "peak_rss_tree_mb": bl.stats([r["peak_rss_tree_mb"] for r in rs]),
            "dice": rs[-1]["dice"]["mean"],
            "dice_stable_across_repeats": len({json.dumps(r["dice"]["mean"]) for r in rs}) == 1,
        }
    ratios = {}
    for mine, theirs in PAIRS.items():
        if mine not in summary or theirs not in summary:
            continue
        a, b = summary[mine], summary[theirs]
        ratios[f"{mine}/{theirs}"] = {
            "speedup_median": bl.ratio(b["s_per_case"]["median"], a["s_per_case"]["median"]),
            "speedup_min": bl.ratio(b["s_per_case"]["min"], a["s_per_case"]["min"]),
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
        if VARIANTS[mine][1] == "nnunet":   # imported model: the same voxels as nnU-Net?
            ratios[f"{mine}/{theirs}"]["same_voxels"] = same_voxels(
                Path(runs[mine][-1]["pred_dir"]), Path(runs[theirs][-1]["pred_dir"]), cases,
                ending)
    return summary, ratios


def trained_text(args: argparse.Namespace, models: dict) -> str:
    """Which models were used: given folders, or the short training budget."""
    return (
        "given models (" + ", ".join(
            f"{k} {v}" for k, v in models.items() if k in ("nnseg_model", "nnunet_results"))
        + ")" if models.get("tag") == "given"
        else f"models trained {args.epochs}×{args.iterations} iterations"
    )


def print_report(args: argparse.Namespace, cases: list[str], trained: str, summary: dict,
                 ratios: dict, path: Path) -> None:
    print(f"\n== predict {len(cases)} fold-0 validation cases, {CONFIG}, {trained}, "
          f"NNSeg precision {args.nnseg_precision}")
    for tool, s in summary.items():
        print(
            f"{tool:18s} s/case median {bl.fmt(s['s_per_case']['median'])} (min "
            f"{bl.fmt(s['s_per_case']['min'])}); "
            f"peak PSS median {bl.fmt(s['peak_pss_tree_mb']['median'], 0)} MB; Dice {s['dice']}"
        )
    for pair, r in ratios.items():
        print(f"{pair}: nnU-Net time / NNSeg time median {r['speedup_median']} (min-vs-min "
              f"{r['speedup_min']}); peak PSS ratio {r['peak_pss_median']}; Dice difference "
              f"{r['dice_diff']}" + (f"; same voxels {r['same_voxels']}"
                                     if "same_voxels" in r else ""))
    print("JSON:", path)


def results_md(args: argparse.Namespace, c: dict, trained: str, summary: dict, ratios: dict,
               path: Path) -> str:
    """The "predict" section of bench/RESULTS.md."""
    ds, cases, info = c["ds"], c["cases"], c["info"]
    md = [
        f"## Inference ({ds.name}, {CONFIG}, fold 0 model, {len(cases)} fold-0 validation "
        "cases)\n",
        bl.machine_md(info),
        f"- Models: {trained}; seed {args.seed}, same plan and folds. NNSeg precision "
        f"`{args.nnseg_precision}`; nnU-Net v2 runs fp32 on CPU.\n",
        "- nnU-Net `-npp 1 -nps 1`; time per case = process wall time ÷ cases (includes "
        f"start-up and model loading); {args.repeats} repeats, alternating order. "
        "`import` = NNSeg running nnU-Net's own model folder.\n",
        bl.load_note(info),
        "| variant | s/case median | s/case min | peak PSS median (MB) | peak RSS tree median "
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
        md.append("\n| NNSeg vs nnU-Net | speed-up (median) | speed-up (min vs min) | "
                  "peak PSS ratio | Dice difference | same voxels |")
        md.append("|---|---|---|---|---|---|")
        for pair, r in ratios.items():
            md.append(f"| {pair} | {r['speedup_median']} | {r['speedup_min']} | "
                      f"{r['peak_pss_median']} | {r['dice_diff']} | "
                      f"{r.get('same_voxels', '—')} |")
    else:
        md.append("\nOnly " + ", ".join(summary) + " was measured in this run (no ratio).")
    md.append(
        "\nCPU seconds per case (user+sys of the tree ÷ cases; less sensitive to load), "
        "median: "
        + ", ".join(f"{t} {sm['cpu_s_per_case']['median']}" for t, sm in summary.items())
        + "."
    )
    md.append(f"\nRaw data: `bench/results/runs/{path.name}`.")
    return "\n".join(md)


def main() -> int:
    args = parse_args()
    c = prepare(args)
    ds, cases, models, info, matched = c["ds"], c["cases"], c["models"], c["info"], c["matched"]
    variants = c["variants"]
    runs = predict_all(args, c)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]

    summary, ratios = summarise_runs(runs, cases, c["ending"])
    data = {
        "benchmark": "predict",
        "dataset": str(ds),
        "configuration": CONFIG,
        "fold": 0,
        "cases": cases,
        "variants": variants,
        "nnseg_precision": args.nnseg_precision,
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

    trained = trained_text(args, models)
    print_report(args, cases, trained, summary, ratios, path)
    if not args.no_results_md:
        bl.update_results_md("predict", results_md(args, c, trained, summary, ratios, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
