#!/usr/bin/env python3
"""Accuracy: NNSeg vs nnU-Net v2 at an equal training budget, several seeds (resumable).

Each run (tool, seed, NNSeg variant) trains 3d_fullres fold 0 with nnU-Net's plan (NNSeg's
work folder: ``--recipe v2`` + overrides to match, nnU-Net's splits; see
benchlib.ensure_nnseg_matched), the v2 recipe, ``--epochs`` × ``--iterations`` iterations and
no final validation, then segments the fold's validation cases (held out from training) with
mirror TTA; Dice per class and case is computed here against ``labelsTr``.

    nnU-Net: nnUNetv2_train ID 3d_fullres 0 -device cpu -tr nnsegBenchTrainer  (nnUNet_n_proc_DA=0)
             nnUNetv2_predict ... -f 0 -chk checkpoint_final.pth -device cpu -npp 1 -nps 1
    NNSeg:   nnseg train DATASET 3d_fullres 0 --work W --epochs E --iterations-per-epoch I
                 --val-iterations 1 --device cpu --seed S --fresh --no-final-validation
             nnseg predict -i IN -o OUT -m MODEL --folds 0 --config 3d_fullres --device cpu

NNSeg runs from ``--nnseg-python``'s venv (``bash bench/setup_nnseg_pinned.sh COMMIT`` makes
one per commit), so the code under test is pinned; its commit is recorded. Every finished run
is one JSON file in ``bench/results/accuracy/`` (``nnunet-s0-e10i25.json``,
``nnseg-<tag>-s1-e10i25.json``); runs whose file exists are skipped, so the comparison can be
completed over several sessions. The summary (also ``--summarize`` alone) reads every file
there and writes ``summary.json``, ``loss_curves.png`` and the "accuracy" section of
``bench/RESULTS.md``.

    .venv/bin/python bench/bench_accuracy.py --nnseg-python PY --tag base [--seeds 0 1 2]
        [--tools nnseg nnunet] [--epochs 10 --iterations 25] [--cases all|N]
        [--nnseg-train-args "..."]
    .venv/bin/python bench/bench_accuracy.py --summarize
"""

from __future__ import annotations

import argparse
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
from accuracy_summary import CONFIG, FOLD, now, summarize  # noqa: E402

from NNSegLib.util.command_line import common_argv  # noqa: E402

RESULTS = bl.BENCH / "results" / "accuracy"
RUNS = bl.CACHE / "accuracy-runs"
TIMEOUT = 4 * 3600.0
#: what each tool's record of its set-up says about the recipe (the whole record is kept too)
NNUNET_RECIPE_KEYS = (
    "optimizer optimizer_defaults lr_scheduler initial_lr weight_decay "
    "oversample_foreground_percent probabilistic_oversampling enable_deep_supervision"
).split()
NNSEG_RECIPE_KEYS = (
    "recipe optimizer lr momentum nesterov weight_decay lr_schedule poly_exponent grad_clip "
    "oversample_foreground deep_supervision"
).split()


def parsed_train_options(train_args: list[str]) -> argparse.Namespace:
    """``--nnseg-train-args`` read with ``nnseg train``'s own parser (checked as it will)."""
    from NNSegLib.cli import _command_parser

    parser, _run = _command_parser("train")
    return parser.parse_args(["DATASET", "CONFIGURATION", "0", *train_args])


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def epoch_means(per_iteration: list[dict]) -> list[float]:
    """Mean training loss of each epoch from records with "epoch" and "loss"."""
    by_epoch: dict[int, list[float]] = {}
    for r in per_iteration:
        by_epoch.setdefault(int(r["epoch"]), []).append(float(r["loss"]))
    return [round(statistics.fmean(by_epoch[e]), 5) for e in sorted(by_epoch)]


# --------------------------------------------------------------------------------------
# one run of each tool
# --------------------------------------------------------------------------------------
def train_nnunet(a: argparse.Namespace, ctx: dict, seed: int, rdir: Path) -> dict:
    ref, ds = ctx["ref"], a.dataset
    results = rdir / "nnunet_results"
    results.mkdir()
    env = bl.nnunet_env(
        ref["root"],
        n_proc_da=0,
        extra={
            "nnUNet_results": results,
            "NNSEG_BENCH_EPOCHS": a.epochs,
            "NNSEG_BENCH_ITERS": a.iterations,
            "NNSEG_BENCH_VAL_ITERS": 1,
            "NNSEG_BENCH_SEED": seed,
            "NNSEG_BENCH_SKIP_FINAL_VAL": "1",
            "NNSEG_BENCH_TIMING_FILE": rdir / "iterations.jsonl",
            "NNSEG_BENCH_CONFIG_FILE": rdir / "trainer_config.json",
        },
    )
    train = bl.run_monitored(
        bl.nnunet_train_cmd(ds, CONFIG, FOLD), env=env, log=rdir / "train.log", timeout=a.timeout
    )
    bl.check_ok(train, "nnUNetv2_train")
    its = read_jsonl(rdir / "iterations.jsonl")
    # nnU-Net's own per-epoch train_loss, from its training log
    logs = sorted(results.rglob("training_log_*.txt"))
    tool_epochs = [
        float(line.split("train_loss", 1)[1].split()[0])
        for log in logs
        for line in log.read_text().splitlines()
        if "train_loss" in line
    ]
    pred = rdir / "pred"
    penv = bl.nnunet_env(ref["root"], extra={"nnUNet_results": results})
    predict = bl.run_monitored(
        bl.nnunet_predict_cmd(ctx["input"], pred, ds, CONFIG, FOLD),
        env=penv,
        log=rdir / "predict.log",
        timeout=a.timeout,
    )
    bl.check_ok(predict, "nnUNetv2_predict")
    trainer = json.loads((rdir / "trainer_config.json").read_text())
    config = {
        "plan": bl.nnunet_3d_params(ref["plans"], CONFIG),
        "recipe": {k: trainer.get(k) for k in NNUNET_RECIPE_KEYS},
        "precision": {"autocast": trainer.get("autocast"), "dtype": trainer.get("precision")},
        "trainer": trainer,
        "data_augmentation_processes": 0,
    }
    return {
        "train": train,
        "predict": predict,
        "iterations": its,
        "tool_epochs": tool_epochs,
        "config": config,
        "pred": pred,
    }


def train_nnseg(a: argparse.Namespace, ctx: dict, seed: int, rdir: Path) -> dict:
    nn, work, ds = ctx["nnseg_bin"], ctx["matched"]["work"], a.dataset
    env = bl.nnseg_env()
    progress = rdir / "progress.jsonl"
    cmd = bl.nnseg_train_cmd(
        ds,
        work,
        epochs=a.epochs,
        iterations=a.iterations,
        seed=seed,
        extra=[*common_argv(progress_json=progress), *ctx["train_args"]],
        nnseg_bin=nn,
    )
    # cwd: the run folder, never the repository (python puts cwd first on sys.path)
    train = bl.run_monitored(cmd, env=env, log=rdir / "train.log", cwd=rdir, timeout=a.timeout)
    bl.check_ok(train, "nnseg train")
    model = rdir / "model"
    shutil.copytree(work / "results", model)
    run_dir = model / CONFIG / f"fold_{FOLD}"
    its, epoch = [], None
    for ev in read_jsonl(progress):
        if ev.get("stage") != "train":
            continue
        if ev.get("event") == "start":
            epoch = ev.get("epoch")
        elif ev.get("event") == "progress" and "loss" in ev:
            its.append(
                {
                    "epoch": epoch,
                    "iteration": ev["current"] - 1,
                    "t_end": ev["time"],
                    "loss": float(ev["loss"]),
                }
            )
    tool_epochs = [float(r["train_loss"]) for r in read_jsonl(run_dir / "log.jsonl")]
    pred = rdir / "pred"
    predict = bl.run_monitored(
        bl.nnseg_predict_cmd(ctx["input"], pred, model, nnseg_bin=nn, config=CONFIG, fold=FOLD),
        env=env,
        log=rdir / "predict.log",
        cwd=rdir,
        timeout=a.timeout,
    )
    bl.check_ok(predict, "nnseg predict")
    rc = json.loads((run_dir / "run_config.json").read_text())
    m = ctx["matched"]
    config = {
        "plan": m["config"],
        "plan_differences_vs_nnunet": m["differences"],
        "recipe": {k: rc[k] for k in NNSEG_RECIPE_KEYS if k in rc},
        "precision": ctx["precision"],
        "run_config": rc,
        "train_args": ctx["train_args"],
    }
    return {
        "train": train,
        "predict": predict,
        "iterations": its,
        "tool_epochs": tool_epochs,
        "config": config,
        "pred": pred,
    }


def run_one(a: argparse.Namespace, ctx: dict, tool: str, seed: int, path: Path) -> None:
    rdir = bl.fresh_dir(RUNS / path.stem)
    print(f"[{path.stem}] training + predicting {len(ctx['cases'])} cases in {rdir}", flush=True)
    info = bl.machine_info(ctx.get("nnseg_python"))
    started = now()
    out = (train_nnunet if tool == "nnunet" else train_nnseg)(a, ctx, seed, rdir)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    dsj = ctx["dataset_json"]
    dice = bl.dice_scores(
        a.dataset / "labelsTr",
        out["pred"],
        ctx["cases"],
        dsj["labels"],
        dsj.get("file_ending", ".nii.gz"),
    )
    if dice["missing_predictions"]:
        raise RuntimeError(f"{tool}: no prediction for {dice['missing_predictions']}")
    its = out["iterations"]
    n_its = a.epochs * a.iterations
    if len(its) != n_its:
        raise RuntimeError(f"{tool}: {len(its)} iteration losses recorded, expected {n_its}")
    secs = [r.get("seconds") for r in its if r.get("seconds") is not None]
    if not secs:  # NNSeg: time between consecutive progress events
        secs = [b["t_end"] - a_["t_end"] for a_, b in zip(its, its[1:])]
    train, predict = out["train"], out["predict"]
    config = out["config"]
    config.update(
        epochs=a.epochs,
        iterations_per_epoch=a.iterations,
        val_iterations=1,
        final_validation=False,
        configuration=CONFIG,
        fold=int(FOLD),
        tta="mirror",
        device="cpu",
    )
    versions = info["versions"]
    data = {
        "benchmark": "accuracy",
        "name": path.stem,
        "tool": tool,
        "variant": "nnunet" if tool == "nnunet" else f"nnseg-{ctx['tag']}",
        "tag": None if tool == "nnunet" else ctx["tag"],
        "tool_version": versions["nnunetv2"] if tool == "nnunet" else versions["nnseg"],
        "torch_version": versions["nnunet_torch"] if tool == "nnunet" else versions["nnseg_torch"],
        "nnseg_code": ctx.get("code") if tool == "nnseg" else None,
        "seed": seed,
        "dataset": str(a.dataset),
        "cases": ctx["cases"],
        "n_cases": len(ctx["cases"]),
        "config": config,
        "machine": info,
        "date_start": started,
        "date_end": now(),
        "loss": {
            "per_iteration": [round(r["loss"], 6) for r in its],
            "per_epoch": epoch_means(its),
            "per_epoch_tool_log": [round(x, 5) for x in out["tool_epochs"]],
        },
        "wall_s": {
            "train": train["wall_s"],
            "predict": predict["wall_s"],
            "s_per_iteration_median": round(statistics.median(secs), 3) if secs else None,
        },
        "cpu_s": {"train": train["cpu_s"], "predict": predict["cpu_s"]},
        "commands": {"train": train, "predict": predict},
        "dice": dice,
    }
    bl.write_json_atomic(path, data)
    print(
        f"[{path.stem}] Dice {dice['mean']}; loss per epoch {data['loss']['per_epoch']}; "
        f"train {train['wall_s'] / 60:.1f} min, predict {predict['wall_s'] / 60:.1f} min -> "
        f"{path}",
        flush=True,
    )


def nnseg_context(a: argparse.Namespace, ref: dict) -> dict:
    py = Path(a.nnseg_python)
    build = bl.pinned_nnseg(py, a.dataset)
    code, short, nn = build["code"], build["short"], build["bin"]
    matched = bl.ensure_nnseg_matched(a.dataset, ref, nnseg_bin=nn, work=build["work"])
    if matched["differences"]:
        print(f"!! NNSeg plan differs from nnU-Net's: {matched['differences']}", file=sys.stderr)
    train_args = shlex.split(a.nnseg_train_args)
    amp = parsed_train_options(train_args).amp or "auto"
    return {
        "nnseg_python": py,
        "nnseg_bin": nn,
        "code": code,
        "tag": a.tag or short,
        "matched": matched,
        "train_args": train_args,
        "precision": nnseg_precision(py, amp),
    }


def nnseg_precision(python: Path, amp: str) -> dict:
    """What ``--amp amp`` means on this machine: NNSeg's auto is bf16 on a CPU with native bf16
    (the answer of its own ``fast_bf16_available``), fp32 elsewhere."""
    if amp in ("off", "bf16", "fp16"):
        return {"amp": amp, "dtype": {"off": "fp32"}.get(amp, amp)}
    code = (
        "import torch\n"
        "try:\n from NNSegLib.network import fast_bf16_available\n"
        "except ImportError:\n from NNSegLib.network.network import fast_bf16_available\n"
        "print('bf16' if fast_bf16_available(torch.device('cpu')) else 'fp32')\n"
    )
    import subprocess

    r = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        cwd=str(python.parent),
        env=bl.nnseg_env(),
        timeout=300,
    )
    return {"amp": amp, "dtype": r.stdout.strip() if r.returncode == 0 else "unknown"}


# --------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", type=Path, default=bl.DEFAULT_DATASET)
    ap.add_argument("--tools", nargs="+", choices=["nnseg", "nnunet"], default=["nnseg", "nnunet"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    ap.add_argument("--cases", default="all", help="'all' fold-0 validation cases, or the first N")
    ap.add_argument(
        "--nnseg-python",
        default=str(bl.NNSEG_PY),
        help="python of the venv whose nnseg is tested (setup_nnseg_pinned.sh)",
    )
    ap.add_argument("--nnseg-train-args", default="", help="extra options for nnseg train")
    ap.add_argument(
        "--tag",
        default=None,
        help="label of the NNSeg code variant (default: its commit's short hash)",
    )
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per command")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the run files")
    ap.add_argument("--summarize", action="store_true", help="only summarize existing runs")
    ap.add_argument("--no-results-md", action="store_true")
    a = cpu_profiles.parse_args(ap)
    if a.summarize:
        summarize(a.results, not a.no_results_md)
        return 0

    ref = bl.ensure_nnunet_ref(a.dataset)
    cases = sorted(ref["splits"][int(FOLD)]["val"])
    if a.cases != "all":
        cases = cases[: int(a.cases)]
    suffix = f"-e{a.epochs}i{a.iterations}" + ("" if a.cases == "all" else f"-c{len(cases)}")
    ctx = {
        "ref": ref,
        "cases": cases,
        "dataset_json": json.loads((a.dataset / "dataset.json").read_text()),
        "input": bl.link_cases(a.dataset, cases, RUNS / f"input{suffix}"),
    }
    if "nnseg" in a.tools:
        ctx.update(nnseg_context(a, ref))
        print(f"NNSeg: {ctx['code']} as '{ctx['tag']}', precision {ctx['precision']}")
    for seed in a.seeds:
        for tool in a.tools:
            base = "nnunet" if tool == "nnunet" else f"nnseg-{ctx['tag']}"
            path = a.results / f"{base}-s{seed}{suffix}.json"
            if path.exists():
                old = json.loads(path.read_text())
                same = tool == "nnunet" or (
                    (old.get("nnseg_code") or {}).get("commit") == ctx["code"]["commit"]
                    and old["config"].get("train_args") == ctx["train_args"]
                )
                note = "" if same else " (!! recorded with another commit or train args)"
                print(f"[{path.stem}] exists, skipped{note}")
                continue
            run_one(a, ctx, tool, seed, path)
    summarize(a.results, not a.no_results_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
