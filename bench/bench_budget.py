#!/usr/bin/env python3
"""Accuracy in a wall-clock budget with default settings (issue 25), several seeds (resumable).

Each run does what a user does: ``nnseg fingerprint``, ``plan`` and ``preprocess`` (defaults;
made once per NNSeg commit and shared by the runs through hard links), then

    nnseg train DATASET 3d_fullres F --work W --time-budget M --seed S
    nnseg predict -i <fold F's validation images> -o P -m W/results

and scores the predictions against ``labelsTr`` (Dice per class and case). The validation
cases of fold F (``--fold``, default 0: the fold the claims are scored on) come from NNSeg's
own split (``splits_final.json``: seed 12345, five folds) and are never trained on. Nothing is
tuned to them: every run uses the defaults of the commit under test (``--nnseg-train-args`` is
recorded when given, and makes another variant); a variant is chosen on another fold
(``--fold 1``, ``-f1`` in the file name) before it is scored on fold 0.

NNSeg runs from ``--nnseg-python``'s venv (``bash bench/setup_nnseg_pinned.sh COMMIT``), so the
code under test is pinned. Run this on a quiet machine, under the CPU profile of the claim
(``--cpu-profile clinician``): a budget run trains less when other jobs take the cores. Every
finished run is one JSON file in ``bench/results/budget/runs/`` (its epochs' log included;
``-noprofile`` in the name when run without a CPU profile); runs whose file exists are
skipped. The summary (also ``--summarize`` alone) reads them all and writes the "budget_runs"
section of ``bench/RESULTS.md``.

    .venv/bin/python bench/bench_budget.py --nnseg-python PY --cpu-profile clinician \\
        --budgets 25 --seeds 0 1 2 [--tag T] [--nnseg-train-args "..."] [--fold F]
    .venv/bin/python bench/bench_budget.py --summarize
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import cpu_profiles  # noqa: E402

from NNSegLib.inference.predict_options import predict_argv  # noqa: E402
from NNSegLib.training.train_cli import train_argv  # noqa: E402
from NNSegLib.util.command_line import common_argv  # noqa: E402

CONFIG = "3d_fullres"
RESULTS = bl.BENCH / "results" / "budget" / "runs"
RUNS = bl.CACHE / "budget-runs"
#: What a run's file keeps of each epoch's ``log.jsonl`` record.
LOG_KEYS = ("epoch", "iterations", "step", "train_loss", "val_loss", "pseudo_dice",
            "ema_pseudo_dice", "lr", "epoch_time", "train_time", "seconds_per_iteration",
            "fitted_iterations")


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prepared_work(a: argparse.Namespace, nn: Path, short: str) -> Path:
    """The default fingerprint, plan and 3d_fullres preprocessing of this commit (once)."""
    work = bl.CACHE / "budget-work" / f"nnseg-{short}" / a.dataset.resolve().name
    if (work / ".ready").is_file():
        return work
    bl.fresh_dir(work)
    for name, cmd in bl.nnseg_prepare_steps(a.dataset, work, 2, nnseg_bin=nn,
                                            preprocess_configurations=[CONFIG]):
        bl.check_ok(bl.run_monitored(cmd, env=bl.nnseg_env(), log=work / f"{name}.log",
                                     cwd=work), f"nnseg {name}")
    (work / ".ready").write_text(now())
    return work


def run_work(base: Path, rdir: Path) -> Path:
    """A run's own work folder: the prepared one, hard-linked (the arrays are only read)."""
    work = rdir / "work"
    shutil.copytree(base, work, copy_function=os.link,
                    ignore=shutil.ignore_patterns("results", "*.log", ".ready"))
    return work


def run_one(a: argparse.Namespace, ctx: dict, minutes: float, seed: int, path: Path) -> None:
    rdir = bl.fresh_dir(RUNS / path.stem)
    work, nn, ds, env = run_work(ctx["work"], rdir), ctx["nnseg_bin"], a.dataset, bl.nnseg_env()
    print(f"[{path.stem}] {minutes:g}-minute training + prediction in {rdir}", flush=True)
    info, started = bl.machine_info(ctx["nnseg_python"]), now()
    train = bl.run_monitored(
        [str(nn), *train_argv(ds, CONFIG, a.fold, work, seed=seed, time_budget=minutes,
                              extra=ctx["train_args"]), *common_argv(quiet=True)],
        env=env, log=rdir / "train.log", cwd=rdir, timeout=60 * minutes + 1800)
    bl.check_ok(train, "nnseg train")
    cases = sorted(json.loads((work / "splits_final.json").read_text())[a.fold]["val"])
    pred = rdir / "pred"
    predict = bl.run_monitored(
        [str(nn), *predict_argv([bl.link_cases(ds, cases, rdir / "input")], pred,
                                work / "results"), *common_argv(quiet=True)],
        env=env, log=rdir / "predict.log", cwd=rdir, timeout=3600)
    bl.check_ok(predict, "nnseg predict")
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    dsj = json.loads((ds / "dataset.json").read_text())
    dice = bl.dice_scores(ds / "labelsTr", pred, cases, dsj["labels"],
                          dsj.get("file_ending", ".nii.gz"))
    if dice["missing_predictions"]:
        raise RuntimeError(f"no prediction for {dice['missing_predictions']}")
    fold_dir = work / "results" / CONFIG / f"fold_{a.fold}"
    log = [{k: r[k] for k in LOG_KEYS if k in r} for r in read_jsonl(fold_dir / "log.jsonl")]
    summary = json.loads((fold_dir / "training_summary.json").read_text())
    bl.write_json_atomic(path, {
        "benchmark": "budget", "name": path.stem, "tag": ctx["tag"], "budget_minutes": minutes,
        "fold": a.fold, "seed": seed, "nnseg_code": ctx["code"], "train_args": ctx["train_args"],
        "dataset": str(ds), "cases": cases, "machine": info, "date_start": started,
        "date_end": now(), "run_config": json.loads((fold_dir / "run_config.json").read_text()),
        "plan": json.loads((work / "plans.json").read_text())["configurations"][CONFIG],
        "training_summary": summary, "log": log,
        "wall_s": {"train": train["wall_s"], "predict": predict["wall_s"]},
        "cpu_s": {"train": train["cpu_s"], "predict": predict["cpu_s"]},
        "commands": {"train": train, "predict": predict}, "dice": dice})
    print(f"[{path.stem}] Dice {dice['mean']}; {len(log)} epochs; train "
          f"{train['wall_s'] / 60:.1f} min, predict {predict['wall_s'] / 60:.1f} min", flush=True)


def _shown(folder: Path) -> str:
    """A folder as the summary names it: relative to the repository when inside it."""
    try:
        return folder.resolve().relative_to(bl.BENCH.parent.resolve()).as_posix()
    except ValueError:
        return str(folder)


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "n/a"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def _steps(r: dict) -> int:
    """Training steps of a run: its last epoch's ``step``; code before the step counter
    (e.g. abb3704) logs none, so each epoch's training time ÷ its time per step."""
    if "step" in r["log"][-1]:
        return int(r["log"][-1]["step"])
    return sum(round(e["train_time"] / e["seconds_per_iteration"]) for e in r["log"])


def _batch(r: dict) -> int:
    """The batch a run trained: its run config's, else (no override saved) its plan's."""
    return int(r["run_config"].get("batch_size") or r["plan"]["batch_size"])


def _group_key(r: dict) -> tuple:
    """Runs that are seeds of one arm: budget, fold, variant, CPU profile, commit, machine."""
    profile = (r["machine"].get("cpu_profile") or {}).get("name") or "none"
    return (r["budget_minutes"], r.get("fold", 0), r["tag"], profile,
            r["nnseg_code"]["commit"][:7], r["machine"]["cpu_model"])


def summarize(update_md: bool = True) -> str:
    """The "budget_runs" section of ``RESULTS.md`` from every run file (printed, written)."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    runs = [r for r in runs if r.get("benchmark") == "budget"]
    if not runs:
        print(f"no runs in {RESULTS}")
        return ""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(_group_key(r), []).append(r)
    lines = [
        "## Accuracy in a time budget, default settings (Dataset004_Hippocampus, 3d_fullres)",
        "",
        f"- Written by `bench/bench_budget.py --summarize` from the {len(runs)} run files in "
        f"`{_shown(RESULTS)}/`. Each run: default fingerprint/plan/preprocess, `nnseg "
        "train D 3d_fullres F --time-budget M --seed S` (final validation included), then "
        "`nnseg predict` (defaults) of fold F's validation cases of NNSeg's own split, held "
        "out from training; mean foreground Dice over those cases. Mean ± sample sd over seeds.",
        "", "| budget (min) | fold | variant | CPU profile | commit | machine | seeds | batch "
        "| epochs | steps | train wall (min) | mean foreground Dice |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    per_seed = ["", "| budget | fold | variant | CPU profile | seed | commit | Anterior "
                "| Posterior | mean | steps | train min | load start/end |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups):
        rs = sorted(groups[key], key=lambda r: r["seed"])
        dice = [r["dice"]["mean"]["mean_foreground"] for r in rs]
        steps = [_steps(r) for r in rs]
        lines.append(
            f"| {key[0]:g} | {key[1]} | {key[2]} | {key[3]} | {key[4]} | {key[5]} "
            f"| {', '.join(str(r['seed']) for r in rs)} "
            f"| {sorted({_batch(r) for r in rs}, key=str)} "
            f"| {statistics.median(len(r['log']) for r in rs):g} | {statistics.median(steps):g} "
            f"| {statistics.median(r['wall_s']['train'] for r in rs) / 60:.1f} "
            f"| {_mean_sd(dice)} |")
        for r, n in zip(rs, steps):
            m = r["dice"]["mean"]
            per_seed.append(
                f"| {key[0]:g} | {key[1]} | {key[2]} | {key[3]} | {r['seed']} "
                f"| {r['nnseg_code']['commit'][:7]} "
                f"| {m.get('Anterior')} | {m.get('Posterior')} | {m['mean_foreground']} | {n} "
                f"| {r['wall_s']['train'] / 60:.1f} | {r['machine']['loadavg_start'][0]}/"
                f"{r['machine']['loadavg_end'][0]} |")
    md = "\n".join(lines + per_seed) + "\n"
    print(md)
    if update_md:
        bl.update_results_md("budget_runs", md)
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, default=bl.DEFAULT_DATASET)
    ap.add_argument("--nnseg-python", type=Path, help="python of a pinned NNSeg venv")
    ap.add_argument("--budgets", nargs="+", type=float, default=[25.0], help="minutes")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--fold", type=int, choices=range(5), default=0,
                    help="the fold trained and scored (0: the claims' fold; choose variants on "
                         "another)")
    ap.add_argument("--tag", default="default", help="variant name (default settings: default)")
    ap.add_argument("--nnseg-train-args", default="", help="extra options for nnseg train")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the run files")
    ap.add_argument("--summarize", action="store_true", help="only summarize existing runs")
    ap.add_argument("--no-results-md", action="store_true")
    a = cpu_profiles.parse_args(ap, argv)
    globals()["RESULTS"] = a.results
    if a.summarize:
        summarize(not a.no_results_md)
        return 0
    if a.nnseg_python is None:
        ap.error("--nnseg-python is needed to run (bash bench/setup_nnseg_pinned.sh COMMIT)")
    code = bl.nnseg_code_info(a.nnseg_python)
    if not code["commit"] or code["dirty"]:
        raise SystemExit(f"{code['source']}: not a clean commit; pin one with setup_nnseg_pinned")
    train_args = shlex.split(a.nnseg_train_args)
    if train_args and a.tag == "default":
        ap.error("--nnseg-train-args changes the defaults: name the variant with --tag")
    nn = a.nnseg_python.parent / "nnseg"
    ctx = {"nnseg_python": a.nnseg_python, "nnseg_bin": nn, "code": code, "tag": a.tag,
           "train_args": train_args, "work": prepared_work(a, nn, code["commit"][:7])}
    cpu = "" if a.cpu_profile else "-noprofile"   # the claim's runs use the profile
    fold = f"-f{a.fold}" if a.fold else ""   # fold 0's runs keep their names
    for minutes in a.budgets:
        for seed in a.seeds:
            path = RESULTS / f"{a.tag}-m{minutes:g}{fold}-s{seed}{cpu}-{code['commit'][:7]}.json"
            if path.exists():
                print(f"[{path.stem}] exists, skipped")
                continue
            run_one(a, ctx, minutes, seed, path)
    summarize(not a.no_results_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
