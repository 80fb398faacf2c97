"""Statistics and output: medians and ratios, JSON run files, ``bench/RESULTS.md`` sections
with the machine they were measured on, and Dice against reference label maps."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path

import cpu_profiles

from .env import OUT, RESULTS_MD


def stats(values: list[float]) -> dict:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {"n": 0, "min": None, "median": None, "max": None}
    n = len(v)
    med = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    return {"n": n, "min": round(v[0], 4), "median": round(med, 4), "max": round(v[-1], 4)}


def ratio(a, b):
    return None if a is None or b in (None, 0) else round(a / b, 3)


def write_json(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = OUT / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=2, default=str)
    path.write_text(text)
    (OUT / f"{name}-latest.json").write_text(text)
    return path


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write JSON to path via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path


def update_results_md(key: str, markdown: str) -> None:
    """Replace (or append) the section delimited by BEGIN/END markers for key."""
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}\n"
    if RESULTS_MD.exists():
        text = RESULTS_MD.read_text()
    else:
        text = (
            "# NNSeg vs nnU-Net v2 — measured benchmark results\n\n"
            "Written by the bench/*.py scripts (each replaces its own section). Numbers are\n"
            "what one run measured on the machine named in it; see bench/README.md.\n\n"
        )
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block
    )
    RESULTS_MD.write_text(text)


def machine_md(info: dict) -> str:
    v = info["versions"]
    return (
        f"- Date: {info['date']}; machine: {info['nproc']} CPUs ({info['cpu_model']}), "
        f"{info['mem_total_gib']} GiB RAM, no GPU; Python {info['python']}\n"
        f"- Versions: NNSeg {v['nnseg']} (torch {v['nnseg_torch']}), nnU-Net v2 {v['nnunetv2']} "
        f"(torch {v['nnunet_torch']})\n"
        f"- Load average at start {info['loadavg_start']}, at end {info.get('loadavg_end')}\n"
        + cpu_profiles.describe(info)
    )


#: 1-minute load average at the start above which other jobs are said to share the CPUs.
BUSY_LOAD = 0.5


def load_note(info: dict) -> str:
    """A caveat when other jobs were using the CPUs as the run started, else a plain note."""
    start = info["loadavg_start"][0]
    if start > BUSY_LOAD:
        return (f"- Caveat: other jobs were using the CPUs when the run started (1-min load "
                f"{start}); compare the tools within this run only.\n")
    return f"- The machine was otherwise idle when the run started (1-min load {start}).\n"


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def dice_scores(
    ref_dir: Path, pred_dir: Path, cases: list[str], labels: dict[str, int], ending: str
) -> dict:
    """Dice per foreground label and case against the reference label maps, the mean over
    cases per label (cases where a label is absent from both are left out of its mean) and
    the mean of those over labels (``mean_foreground``)."""
    import numpy as np
    import SimpleITK as sitk

    fg = {n: v for n, v in labels.items() if int(v) != 0}
    per_case = {}
    for c in cases:
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_dir / f"{c}{ending}")))
        pf = pred_dir / f"{c}{ending}"
        if not pf.exists():
            per_case[c] = None
            continue
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(pf)))
        if pred.shape != ref.shape:
            raise RuntimeError(f"{pf}: shape {pred.shape} != reference {ref.shape}")
        d = {}
        for name, v in fg.items():
            r, p = ref == int(v), pred == int(v)
            denom = r.sum() + p.sum()
            d[name] = float(2 * np.logical_and(r, p).sum() / denom) if denom else None
        per_case[c] = d
    means = {}
    for name in fg:
        vals = [d[name] for d in per_case.values() if d and d[name] is not None]
        means[name] = round(float(np.mean(vals)), 4) if vals else None
    valid = [v for v in means.values() if v is not None]
    means["mean_foreground"] = round(float(np.mean(valid)), 4) if valid else None
    missing = [c for c, d in per_case.items() if d is None]
    return {"mean": means, "per_case": per_case, "missing_predictions": missing}

