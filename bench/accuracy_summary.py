"""The summary of bench_accuracy.py's run files: mean ± SD of held-out Dice per tool/variant
and budget, printed; ``summary.json``, ``loss_curves.png`` and the "accuracy" section of
``bench/RESULTS.md``."""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
from pathlib import Path

from benchlib.results import update_results_md, write_json_atomic

#: the configuration and fold every accuracy run trains and segments
CONFIG = "3d_fullres"
FOLD = "0"


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None)


def pm(values: list[float]) -> str:
    m, s = mean_sd(values)
    if m is None:
        return "n/a"
    return f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f} (one seed)"


def smooth(values: list[float], window: int = 5) -> list[float]:
    """Centred moving average (window shrinks at the ends)."""
    h = window // 2
    return [statistics.fmean(values[max(0, i - h) : i + h + 1]) for i in range(len(values))]


def summarize(results: Path, update_md: bool = True) -> dict:
    """Print every run file in results per variant and budget, write ``summary.json`` and
    ``loss_curves.png`` there and (update_md) the "accuracy" section of ``bench/RESULTS.md``."""
    runs = []
    for p in sorted(results.glob("*.json")):
        d = json.loads(p.read_text())
        if d.get("benchmark") == "accuracy":
            runs.append(d)
    if not runs:
        print(f"no runs in {results}")
        return {}
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        c = r["config"]
        key = (r["variant"], c["epochs"], c["iterations_per_epoch"], r["n_cases"])
        groups.setdefault(key, []).append(r)
    labels = [k for k in runs[0]["dice"]["mean"] if k != "mean_foreground"]
    cols = [*labels, "mean_foreground"]
    summary = {"groups": []}
    for (variant, ep, it, n), rs in sorted(groups.items(), key=lambda kv: kv[0]):
        rs.sort(key=lambda r: r["seed"])
        g = {
            "variant": variant,
            "tool": rs[0]["tool"],
            "epochs": ep,
            "iterations_per_epoch": it,
            "n_cases": n,
            "seeds": [r["seed"] for r in rs],
            "nnseg_commits": sorted(
                {(r.get("nnseg_code") or {}).get("commit") or "" for r in rs} - {""}
            ),
            "precision": sorted({str(r["config"]["precision"].get("dtype")) for r in rs}),
            "per_seed": {
                r["seed"]: {
                    **{k: r["dice"]["mean"][k] for k in cols},
                    "final_epoch_loss": r["loss"]["per_epoch"][-1],
                    "train_min": round(r["wall_s"]["train"] / 60, 1),
                }
                for r in rs
            },
            "mean": {k: mean_sd([r["dice"]["mean"][k] for r in rs])[0] for k in cols},
            "sd": {k: mean_sd([r["dice"]["mean"][k] for r in rs])[1] for k in cols},
            "loss_per_epoch_mean": [
                round(statistics.fmean(x), 4) for x in zip(*[r["loss"]["per_epoch"] for r in rs])
            ],
        }
        summary["groups"].append(g)
        print(f"\n{variant} ({ep}x{it} iterations, {n} cases, seeds {g['seeds']}):")
        for k in cols:
            print(f"  {k:16s} {pm([r['dice']['mean'][k] for r in rs])}")
        for s, v in g["per_seed"].items():
            print(
                f"  seed {s}: "
                + ", ".join(f"{k} {v[k]:.4f}" for k in cols)
                + f"; final-epoch loss {v['final_epoch_loss']:.4f}"
            )
    plot_losses(runs, results / "loss_curves.png")
    write_json_atomic(results / "summary.json", {"date": now(), **summary})
    if update_md:
        update_results_md("accuracy", results_md(runs, summary, labels))
    print(f"\nwrote {results / 'summary.json'}, {results / 'loss_curves.png'}")
    return summary


def plot_losses(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted({r["variant"] for r in runs})
    colours = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(variants)}
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for r in sorted(runs, key=lambda r: (r["variant"], r["seed"])):
        y = r["loss"]["per_iteration"]
        c = r["config"]
        ax.plot(
            range(1, len(y) + 1),
            smooth(y),
            color=colours[r["variant"]],
            linestyle=styles[r["seed"] % len(styles)],
            linewidth=1.2,
            label=f"{r['variant']} seed {r['seed']} ({c['epochs']}x{c['iterations_per_epoch']})",
        )  # noqa: E501
    ax.set_xlabel("training iteration")
    ax.set_ylabel("training loss (moving average of 5 iterations)")
    ax.set_title("Training loss per iteration, Dataset004_Hippocampus 3d_fullres fold 0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def results_md(runs: list[dict], summary: dict, labels: list[str]) -> str:
    gs = summary["groups"]
    nseeds = sorted({len(g["seeds"]) for g in gs})
    dates = sorted(r["date_start"][:10] for r in runs)
    r0 = runs[0]
    plan = r0["config"]["plan"]
    machines = sorted({f"{r['machine']['nproc']} CPUs, {r['machine']['cpu_model']}"
                       for r in runs})
    cols = [*labels, "mean_foreground"]
    lines = [
        f"## Equal-budget accuracy vs nnU-Net v2 ({Path(r0['dataset']).name}, {CONFIG}, "
        f"fold {FOLD}; {'/'.join(map(str, nseeds))} seed(s) per tool)\n",
        f"- Written by `bench/bench_accuracy.py --summarize` from the {len(runs)} run files in "
        f"`bench/results/accuracy/` (runs dated {dates[0]} to {dates[-1]}; "
        f"machine{'s' if len(machines) > 1 else ''} {'; '.join(machines)}; each run file "
        "names its own).",
        f"- Every run: nnU-Net's plan (patch {'×'.join(map(str, plan['patch_size']))}, batch "
        f"{plan['batch_size']}, features {plan['features_per_stage'][0]}–"
        f"{plan['features_per_stage'][-1]}) and splits, fold {FOLD}, v2 recipe (SGD Nesterov "
        "0.99, lr 1e-2 poly, weight decay 3e-5), no final validation; then mirror-TTA "
        f"segmentation of the fold's {r0['n_cases']} validation cases (held out from training), "
        "Dice per class and case against `labelsTr`, averaged over cases.",
        "- Mean ± sample standard deviation over seeds of the per-seed mean Dice. NNSeg runs "
        "from a pinned export of the commit named (`bench/setup_nnseg_pinned.sh`).\n",
        "| tool / variant | budget | NNSeg commit | precision | seeds | " + " | ".join(cols) + " |",
        "|---|---|---|---|---|" + "---|" * len(cols),
    ]
    for g in gs:
        rs = [
            r
            for r in runs
            if r["variant"] == g["variant"]
            and r["config"]["epochs"] == g["epochs"]
            and r["config"]["iterations_per_epoch"] == g["iterations_per_epoch"]
            and r["n_cases"] == g["n_cases"]
        ]
        lines.append(
            f"| {g['variant']} | {g['epochs']}×{g['iterations_per_epoch']} | "
            f"{', '.join(c[:7] for c in g['nnseg_commits']) or '–'} | "
            f"{', '.join(g['precision'])} | {', '.join(map(str, g['seeds']))} | "
            + " | ".join(pm([r["dice"]["mean"][k] for r in rs]) for k in cols)
            + " |"
        )
    lines += [
        "\nPer seed (Dice; training loss = mean of the last epoch's iterations; training "
        "wall time on the shared 2-core machine):\n",
        "| tool / variant | seed | " + " | ".join(cols) + " | last-epoch train loss | train min |",
        "|---|---|" + "---|" * len(cols) + "---|---|",
    ]
    for g in gs:
        for s, v in g["per_seed"].items():
            lines.append(
                f"| {g['variant']} | {s} | "
                + " | ".join(f"{v[k]:.4f}" for k in cols)
                + f" | {v['final_epoch_loss']:.4f} | {v['train_min']} |"
            )
    n_ep = max(len(g["loss_per_epoch_mean"]) for g in gs)
    lines += [
        "\nTraining loss per epoch, mean over seeds (mean of each epoch's iterations):\n",
        "| tool / variant | " + " | ".join(str(e) for e in range(n_ep)) + " |",
        "|---|" + "---|" * n_ep,
    ]
    for g in gs:
        lines.append(
            f"| {g['variant']} | " + " | ".join(f"{x:.3f}" for x in g["loss_per_epoch_mean"]) + " |"
        )
    lines.append(
        "\nLoss curves per iteration: `bench/results/accuracy/loss_curves.png`; raw "
        "data (config, losses, wall times, per-case Dice): "
        "`bench/results/accuracy/*.json`."
    )
    return "\n".join(lines)
