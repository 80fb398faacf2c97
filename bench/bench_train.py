#!/usr/bin/env python3
"""Training speed, 3d_fullres fold 0: NNSeg vs nnU-Net v2 with the SAME patch, batch and network.

nnU-Net: nnUNetv2_train ID 3d_fullres 0 -device cpu -tr nnsegBenchTrainer
         (bench/nnunet_trainer: 1 epoch of N iterations, 1 val iteration, no final validation;
         nnUNet_n_proc_DA=0, nnUNet_compile=f; per-iteration timestamps written by the trainer)
NNSeg:   nnseg train DATASET 3d_fullres 0 --epochs 1 --iterations-per-epoch N --val-iterations 1
         --no-final-validation --device cpu --fresh --progress-json F
         on a work folder planned with --recipe v2 and overridden to nnU-Net's plans.json
         (patch_size, batch_size, features_per_stage, strides, kernel_sizes) and given nnU-Net's
         splits_final.json.

Each iteration's time is the time between consecutive iteration ends (the first from the
start of the epoch), so it includes sampling + augmentation + forward/backward/step. The first
--warmup iterations are excluded (start-up, allocator warm-up). R repeats, alternating order.
Reports s/iteration (min/median), iterations/s and the ratio NNSeg/nnU-Net of iterations/s;
writes bench/results/runs/train-*.json and the "train" section of bench/RESULTS.md.

Several NNSeg settings can be measured against the same nnU-Net runs, e.g. bf16 and fp32:
``--nnseg-variant default= --nnseg-variant fp32="--amp off"`` (each ``NAME=ARGS``; ratios
are reported per variant).

Several NNSeg builds can be measured in the same run, so that a speed-up is compared with an
earlier commit's on the same machine: ``--nnseg-build old=PY --nnseg-build new=PY2``, each the
python of a venv made by ``bash bench/setup_nnseg_pinned.sh COMMIT``. Every build runs every
variant (tools ``nnseg@LABEL:VARIANT``); each build gets its own matched work folder
(``$CACHE/nnseg-matched/nnseg-<commit>/<dataset>``, as bench_accuracy) and its commit is
recorded. The command line is today's ``train_argv``: an older build must accept it.

    .venv/bin/python bench/bench_train.py [--iterations 8] [--warmup 2] [--repeats 2]
        [--tools nnseg nnunet] [--nnseg-args "--loader-threads 1"] [--rebuild-nnseg]
        [--nnseg-variant NAME=ARGS ...] [--nnseg-build LABEL=PY ...]
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

CONFIG = "3d_fullres"
TIMEOUT = 3600.0  # seconds per command; --timeout


def steady(durations: list[float], warmup: int) -> dict:
    rest = durations[warmup:]
    s = bl.stats(rest)
    s["mean"] = round(sum(rest) / len(rest), 4) if rest else None
    s["all"] = [round(d, 3) for d in durations]
    return s


def run_nnunet(
    ds: Path, ref: dict, rdir: Path, iters: int, seed: int, final_val: bool = False,
    env_extra: dict | None = None,
) -> dict:
    results = rdir / "nnunet_results"
    bl.fresh_dir(results)
    timing = rdir / "nnunet_iter_times.jsonl"
    timing.unlink(missing_ok=True)
    env = bl.nnunet_env(
        ref["root"],
        n_proc_da=0,
        extra={
            "nnUNet_results": results,
            "NNSEG_BENCH_EPOCHS": 1,
            "NNSEG_BENCH_ITERS": iters,
            "NNSEG_BENCH_VAL_ITERS": 1,
            "NNSEG_BENCH_SEED": seed,
            "NNSEG_BENCH_TIMING_FILE": timing,
            "NNSEG_BENCH_SKIP_FINAL_VAL": "0" if final_val else "1",
            **(env_extra or {}),
        },
    )
    cmd = bl.nnunet_train_cmd(ds, CONFIG)
    res = bl.run_monitored(cmd, env=env, log=rdir / "nnunet_train.log", timeout=TIMEOUT)
    bl.check_ok(res, "nnUNetv2_train")
    recs = [json.loads(line) for line in timing.read_text().splitlines() if line.strip()]
    res["iter_seconds"] = [r["seconds"] for r in recs]
    res["model_dir"] = str(results)
    return res


def parse_nnseg_progress(path: Path) -> list[float]:
    """Per-iteration durations from ``nnseg train --progress-json`` events of stage 'train'."""
    t_prev = None
    out: list[float] = []
    last_current = 0
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("stage") != "train":
            continue
        kind = ev.get("event")
        if kind == "start":
            t_prev, last_current = ev["time"], 0
        elif kind == "progress" and t_prev is not None:
            cur = ev.get("current", last_current + 1)
            n = max(1, cur - last_current)
            dt = (ev["time"] - t_prev) / n
            out.extend([dt] * n)
            t_prev, last_current = ev["time"], cur
    return out


def run_nnseg(
    ds: Path,
    matched: dict,
    rdir: Path,
    iters: int,
    seed: int,
    extra: list[str],
    final_val: bool = False,
    label: str = "nnseg",
    env_extra: dict | None = None,
    nnseg_bin: Path | None = None,
) -> dict:
    work = matched["work"]
    prog = rdir / f"{label}_progress.jsonl"
    prog.unlink(missing_ok=True)
    from NNSegLib.training.train_cli import train_argv
    from NNSegLib.util.command_line import common_argv

    cmd = [
        str(nnseg_bin or bl.NNSEG_BIN),
        *train_argv(ds, CONFIG, 0, work, "cpu", 1, iterations_per_epoch=iters, val_iterations=1,
                    seed=seed, fresh=True, final_validation=final_val),
        *common_argv(progress_json=prog, quiet=True),
        *extra,
    ]
    res = bl.run_monitored(cmd, env=bl.nnseg_env(env_extra), log=rdir / f"{label}_train.log",
                           timeout=TIMEOUT)
    res["command"] = cmd
    bl.check_ok(res, "nnseg train")
    res["iter_seconds"] = parse_nnseg_progress(prog)
    res["model_dir"] = str(work / "results")
    return res


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", type=Path, default=bl.DEFAULT_DATASET)
    ap.add_argument("--iterations", type=int, default=8, help="training iterations per run")
    ap.add_argument("--warmup", type=int, default=2, help="first iterations excluded from the rate")
    ap.add_argument("--repeats", "-R", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tools", nargs="+", choices=["nnseg", "nnunet"], default=["nnseg", "nnunet"])
    ap.add_argument("--nnseg-args", default="", help="extra arguments for nnseg train (quoted)")
    ap.add_argument("--nnseg-variant", action="append", default=[], metavar="NAME=ARGS",
                    help="an NNSeg setting to measure (repeatable); ARGS are added to "
                         "--nnseg-args")
    ap.add_argument("--nnseg-build", action="append", default=[], metavar="LABEL=PY",
                    help="an NNSeg build to measure (repeatable): the python of a venv from "
                         "setup_nnseg_pinned.sh; default: the repository's .venv")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for both tools' processes (repeatable), e.g. "
                         "ONEDNN_MAX_CPU_ISA=AVX2 to run both as on a CPU without AVX-512 "
                         "(--cpu-profile clinician sets a whole profile)")
    ap.add_argument(
        "--rebuild-nnseg", action="store_true", help="redo NNSeg's matched preprocessing"
    )
    ap.add_argument(
        "--timeout", type=float, default=TIMEOUT, help="seconds before a hung command is killed"
    )
    ap.add_argument("--no-results-md", action="store_true")
    args = cpu_profiles.parse_args(ap)
    if args.iterations <= args.warmup:
        ap.error("--iterations must exceed --warmup")
    return args


def nnseg_builds(args: argparse.Namespace) -> dict[str | None, dict]:
    """Each ``--nnseg-build LABEL=PY`` (or the repository's venv, label None): its nnseg and
    commit."""
    if not args.nnseg_build:
        return {None: {"bin": bl.NNSEG_BIN, "work": None, "code": None}}
    builds: dict[str | None, dict] = {}
    for spec in args.nnseg_build:
        label, sep, py = spec.partition("=")
        if not sep or not label or not py:
            raise SystemExit(f"--nnseg-build: {spec!r} is not LABEL=PY")
        if label in builds:
            raise SystemExit(f"--nnseg-build: label {label!r} given twice")
        builds[label] = bl.pinned_nnseg(Path(py), args.dataset)
    return builds


def tool_variants(args: argparse.Namespace, builds: dict[str | None, dict]
                  ) -> tuple[list[str], dict[str, list[str]], dict[str, str | None]]:
    """The tools to run (NNSeg once per build and variant), each NNSeg tool's extra arguments,
    and each NNSeg tool's build label."""
    tools = list(args.tools)
    if "nnseg" in tools and None in builds and bl.nnseg_help("train") is None:
        print("nnseg train is not available yet: running nnU-Net only", file=sys.stderr)
        tools.remove("nnseg")
    extra = shlex.split(args.nnseg_args)
    settings = {"": extra}
    if args.nnseg_variant:
        settings = {}
        for spec in args.nnseg_variant:
            name, _, more = spec.partition("=")
            settings[f":{name}"] = extra + shlex.split(more)
    variants: dict[str, list[str]] = {}
    build_of: dict[str, str | None] = {}
    for label in builds:
        for suffix, more_args in settings.items():
            name = "nnseg" + (f"@{label}" if label is not None else "") + suffix
            variants[name], build_of[name] = more_args, label
    if "nnseg" in tools:
        tools = [*variants, *(t for t in tools if t != "nnseg")]
    return tools, variants, build_of


def run_all(args: argparse.Namespace, tools: list[str], variants: dict[str, list[str]],
            ref: dict, builds: dict[str | None, dict], build_of: dict[str, str | None],
            env_extra: dict) -> dict[str, list[dict]]:
    """Every repeat of every tool, alternating the order."""
    base = bl.CACHE / "runs" / f"train-{time.strftime('%Y%m%d-%H%M%S')}"
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for rep in range(args.repeats):
        order = tools if rep % 2 == 0 else tools[::-1]
        for tool in order:
            rdir = base / f"rep{rep}"
            rdir.mkdir(parents=True, exist_ok=True)
            print(
                f"[rep {rep + 1}/{args.repeats}] {tool}: {args.iterations} iterations ...",
                flush=True,
            )
            load = os.getloadavg()[0]
            if tool == "nnunet":
                res = run_nnunet(args.dataset, ref, rdir, args.iterations, args.seed,
                                 env_extra=env_extra)
            else:
                build = builds[build_of[tool]]
                res = run_nnseg(args.dataset, build["matched"], rdir, args.iterations, args.seed,
                                variants[tool], label=tool.replace(":", "_").replace("@", "_"),
                                env_extra=env_extra, nnseg_bin=build["bin"])
            res["repeat"], res["loadavg1_before"] = rep, round(load, 2)
            res["steady"] = steady(res["iter_seconds"], args.warmup)
            runs[tool].append(res)
            print(
                f"    process wall {res['wall_s']:.1f} s; s/iter (after {args.warmup} warm-up) "
                "median "
                f"{bl.fmt(res['steady']['median'])} min {bl.fmt(res['steady']['min'])}; all "
                f"{res['steady']['all']}; peak PSS {res['peak_pss_tree_mb']:.0f} MB",
                flush=True,
            )
    shutil.rmtree(base / "rep0" / "nnunet_results", ignore_errors=True)
    return runs


def summarise(runs: dict[str, list[dict]], variants: dict[str, list[str]], warmup: int
              ) -> tuple[dict, dict]:
    """Per tool statistics, and each NNSeg variant's speed-up against nnU-Net."""
    summary = {}
    for tool, rs in runs.items():
        pooled = [d for r in rs for d in r["iter_seconds"][warmup:]]
        per_run_median = [r["steady"]["median"] for r in rs]
        summary[tool] = {
            "s_per_iter_pooled": bl.stats(pooled),
            "s_per_iter_run_medians": bl.stats(per_run_median),
            "process_wall_s": bl.stats([r["wall_s"] for r in rs]),
            "peak_pss_tree_mb": bl.stats([r["peak_pss_tree_mb"] for r in rs]),
        }
        med = summary[tool]["s_per_iter_pooled"]["median"]
        summary[tool]["iter_per_s_median"] = round(1 / med, 4) if med else None
    ratios: dict = {}
    for name in variants:
        if name not in summary or "nnunet" not in summary:
            continue
        a, b = summary[name]["s_per_iter_pooled"], summary["nnunet"]["s_per_iter_pooled"]
        ratios[name] = {
            "speedup_median": bl.ratio(b["median"], a["median"]),
            "speedup_min": bl.ratio(b["min"], a["min"]),
            "speedup_per_repeat": [
                bl.ratio(y["steady"]["median"], x["steady"]["median"])
                for x, y in zip(runs[name], runs["nnunet"])
            ],
        }
    return summary, ratios


def print_summary(data: dict, path: Path) -> None:
    p = data["nnunet_config"]
    print(
        f"\n== training {CONFIG} fold 0: patch {p['patch_size']}, batch {p['batch_size']}, "
        f"features {p['features_per_stage']}"
    )
    for tool, s in data["summary"].items():
        print(
            f"{tool:12s} s/iter median {bl.fmt(s['s_per_iter_pooled']['median'])} (min "
            f"{bl.fmt(s['s_per_iter_pooled']['min'])}, n={s['s_per_iter_pooled']['n']}); "
            f"{bl.fmt(s['iter_per_s_median'], 3)} it/s; peak PSS median "
            f"{bl.fmt(s['peak_pss_tree_mb']['median'], 0)} MB"
        )
    for name, r in data["nnseg_speedup_iter_per_s"].items():
        print(
            f"{name} speed-up (nnU-Net s/iter ÷ NNSeg s/iter): median {r['speedup_median']}, "
            f"min-vs-min {r['speedup_min']}, per repeat {r['speedup_per_repeat']}"
        )
    print("JSON:", path)


def results_md(data: dict, path: Path) -> str:
    """The "train" section of ``RESULTS.md``."""
    p, info = data["nnunet_config"], data["machine"]
    summary, ratios = data["summary"], data["nnseg_speedup_iter_per_s"]
    md = [
        f"## Training speed ({Path(data['dataset']).name}, {CONFIG}, fold 0)\n",
        bl.machine_md(info),
        f"- Same plan for both: patch {p['patch_size']}, batch {p['batch_size']}, features "
        f"{p['features_per_stage']}, strides {p['strides']} (nnU-Net's plans; NNSeg "
        "overridden to match"
        + (
            f"; remaining differences: {data['config_differences']}"
            if data["config_differences"]
            else ""
        )
        + ").\n",
        f"- {data['repeats']} repeats × {data['iterations']} iterations, first "
        f"{data['warmup']} of each run "
        "excluded; time per iteration includes sampling + augmentation + step. nnU-Net: "
        "nnUNet_n_proc_DA=0, nnUNet_compile=f, own short trainer subclass. NNSeg settings: "
        + "; ".join(f"{k} `{' '.join(v) or '(defaults)'}`"
                    for k, v in data["nnseg_variants"].items())
        + ".\n",
        *([("- NNSeg builds (pinned venvs, same run, order alternating): "
             + "; ".join(f"{k} = commit `{(c['commit'] or '?')[:7]}`"
                         + (" (dirty)" if c["dirty"] else "")
                         for k, c in data["nnseg_builds"].items()) + ".\n")]
          if data.get("nnseg_builds") else []),
        bl.load_note(info),
        "| tool | s/iter median | s/iter min | iterations/s (median) | n iterations | peak "
        "PSS median (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for tool, s in summary.items():
        md.append(
            f"| {tool} | {bl.fmt(s['s_per_iter_pooled']['median'])} | "
            f"{bl.fmt(s['s_per_iter_pooled']['min'])} "
            f"| {bl.fmt(s['iter_per_s_median'], 3)} | {s['s_per_iter_pooled']['n']} | "
            f"{bl.fmt(s['peak_pss_tree_mb']['median'], 0)} |"
        )
    for name, r in ratios.items():
        md.append(
            f"\n{name} iterations/s ÷ nnU-Net iterations/s: median {r['speedup_median']}, "
            f"min-vs-min {r['speedup_min']}, per repeat {r['speedup_per_repeat']}."
        )
    if not ratios:
        md.append("\nOnly " + ", ".join(summary) + " was measured in this run (no ratio).")
    md.append(f"\nRaw data: `bench/results/runs/{path.name}`.")
    return "\n".join(md)


def main() -> int:
    args = parse_args()
    globals()["TIMEOUT"] = args.timeout
    builds = nnseg_builds(args)
    tools, variants, build_of = tool_variants(args, builds)
    info = bl.machine_info()
    ref = bl.ensure_nnunet_ref(args.dataset)
    matched = None
    if any(t != "nnunet" for t in tools):
        for label, build in builds.items():
            build["matched"] = bl.ensure_nnseg_matched(
                args.dataset, ref, rebuild=args.rebuild_nnseg, nnseg_bin=build["bin"],
                work=build["work"])
            if build["matched"]["differences"]:
                print(f"WARNING: NNSeg ({label or 'repository'}) plan differs from nnU-Net's:",
                      build["matched"]["differences"], file=sys.stderr)
        matched = next(iter(builds.values()))["matched"]
    env_extra = dict(spec.split("=", 1) for spec in args.env)
    runs = run_all(args, tools, variants, ref, builds, build_of, env_extra)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summary, ratios = summarise(runs, variants, args.warmup)
    data = {
        "benchmark": "train", "dataset": str(args.dataset), "configuration": CONFIG, "fold": 0,
        "iterations": args.iterations, "warmup": args.warmup, "repeats": args.repeats,
        "seed": args.seed, "nnseg_extra_args": shlex.split(args.nnseg_args),
        "nnseg_variants": variants, "environment": env_extra, "machine": info,
        "nnseg_builds": {str(k): b["code"] for k, b in builds.items() if k is not None},
        "nnunet_config": bl.nnunet_3d_params(ref["plans"]),
        "nnseg_config": matched["config"] if matched else None,
        "config_differences": matched["differences"] if matched else None,
        "runs": runs, "summary": summary, "nnseg_speedup_iter_per_s": ratios,
    }
    path = bl.write_json("train", data)
    print_summary(data, path)
    if not args.no_results_md:
        bl.update_results_md("train", results_md(data, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
