"""Shared plumbing of the NNSeg vs nnU-Net v2 benchmarks (see bench/README.md).

Runs with NNSeg's venv python (needs psutil, numpy, SimpleITK). nnU-Net runs from its own
venv (bench/setup_nnunet.sh); its environment variables are set only in :func:`nnunet_env`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # NNSegLib's argv builders
import cpu_profiles  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "results" / "runs"
RESULTS_MD = BENCH / "RESULTS.md"
CACHE = Path(os.environ.get("NNSEG_BENCH_CACHE", Path.home() / ".cache" / "nnseg-bench"))
NNUNET_VENV = CACHE / "nnunet-venv"
NNSEG_BIN = Path(os.environ.get("NNSEG_BIN", REPO / ".venv" / "bin" / "nnseg"))
NNSEG_PY = NNSEG_BIN.parent / "python"
TRAINER_DIR = BENCH / "nnunet_trainer"
TRAINER_NAME = "nnsegBenchTrainer"
#: the hippocampus dataset beside the repository: <repo>/../shared/data/Dataset004_Hippocampus
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"


# --------------------------------------------------------------------------------------
# environment / machine
# --------------------------------------------------------------------------------------
def nnunet_bin(name: str) -> str:
    p = NNUNET_VENV / "bin" / name
    if not p.exists():
        raise SystemExit(f"{p} missing: run bench/setup_nnunet.sh first")
    return str(p)


def nnunet_env(root: Path, *, n_proc_da: int | None = None, extra: dict | None = None) -> dict:
    """Environment for an nnU-Net v2 subprocess whose raw/preprocessed/results live in root."""
    env = dict(os.environ)
    env.update(
        {
            "nnUNet_raw": str(root / "raw"),
            "nnUNet_preprocessed": str(root / "preprocessed"),
            "nnUNet_results": str(root / "results"),
            "nnUNet_compile": "f",
            "nnUNet_def_n_proc": "2",
            "nnUNet_extTrainer": str(TRAINER_DIR),
            "PATH": f"{NNUNET_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    if n_proc_da is not None:
        env["nnUNet_n_proc_DA"] = str(n_proc_da)
    env.pop("VIRTUAL_ENV", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def nnseg_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.pop("VIRTUAL_ENV", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def link_raw_dataset(dataset: Path, root: Path) -> Path:
    """nnU-Net wants nnUNet_raw/DatasetXXX_Name: symlink the dataset there."""
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    name = dataset.resolve().name
    if not re.match(r"Dataset\d{3}_", name):
        raise SystemExit(f"dataset folder {name} is not named DatasetXXX_Name")
    link = raw / name
    if not link.exists():
        link.symlink_to(dataset.resolve(), target_is_directory=True)
    return link


def dataset_id(dataset: Path) -> int:
    return int(re.match(r"Dataset(\d{3})_", dataset.resolve().name).group(1))


def nnunet_train_cmd(dataset: Path, config: str = "3d_fullres", fold: str = "0") -> list[str]:
    """``nnUNetv2_train`` on the CPU with our short bench trainer."""
    return [
        nnunet_bin("nnUNetv2_train"),
        str(dataset_id(dataset)),
        config,
        fold,
        "-device",
        "cpu",
        "-tr",
        TRAINER_NAME,
    ]


def nnseg_prepare_steps(
    dataset: Path,
    work: Path,
    workers: int,
    recipe: str | None = None,
    configurations: Sequence[str] = (),
    overrides: Sequence[str] = (),
    preprocess_configurations: Sequence[str] = (),
    nnseg_bin: Path | None = None,
) -> list[tuple[str, list[str]]]:
    """``nnseg fingerprint``, ``plan`` and ``preprocess`` command lines (name, argv)."""
    from NNSegLib.planning.fingerprint import fingerprint_argv
    from NNSegLib.planning.planner import plan_argv
    from NNSegLib.preprocessing.preprocess import preprocess_argv
    from NNSegLib.util.command_line import common_argv

    nn = str(nnseg_bin or NNSEG_BIN)
    quiet = common_argv(quiet=True)
    return [
        ("fingerprint", [nn, *fingerprint_argv(dataset, work, workers), *quiet]),
        ("plan", [nn, *plan_argv(dataset, work, recipe, None, configurations, overrides),
                  *quiet]),
        ("preprocess", [nn, *preprocess_argv(dataset, work, preprocess_configurations, workers),
                        *quiet]),
    ]


def _version_of(python: Path, module: str) -> str:
    code = (
        f"from importlib.metadata import version\n"
        f"try:\n print(version('{module}'))\nexcept Exception:\n print('n/a')"
    )
    try:
        return (
            subprocess.run(
                [str(python), "-c", code], capture_output=True, text=True, timeout=60
            ).stdout.strip()
            or "n/a"
        )
    except Exception:  # noqa: BLE001
        return "n/a"


def machine_info(nnseg_python: Path | None = None) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nnunet_py = NNUNET_VENV / "bin" / "python"
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu,
        "mem_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_profile": cpu_profiles.active(),
        "versions": {
            "nnseg": _version_of(nnseg_python or NNSEG_PY, "NNSegLib"),
            "nnseg_torch": _version_of(nnseg_python or NNSEG_PY, "torch"),
            "nnunetv2": _version_of(nnunet_py, "nnunetv2"),
            "nnunet_torch": _version_of(nnunet_py, "torch"),
        },
    }


# --------------------------------------------------------------------------------------
# running a process tree with wall time and peak memory
# --------------------------------------------------------------------------------------
def _tree_memory(proc: psutil.Process, use_pss: bool) -> tuple[int, int, int]:
    """(sum RSS, sum PSS, max single RSS) over proc and all descendants, in bytes."""
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0, 0
    rss_sum = pss_sum = rss_max = 0
    for p in procs:
        try:
            if use_pss:
                mi = p.memory_full_info()
                rss, pss = mi.rss, getattr(mi, "pss", mi.rss)
            else:
                rss = p.memory_info().rss
                pss = rss
        except psutil.Error:
            continue
        rss_sum += rss
        pss_sum += pss
        rss_max = max(rss_max, rss)
    return rss_sum, pss_sum, rss_max


def run_monitored(
    cmd: list[str],
    *,
    env: dict,
    log: Path,
    cwd: Path | None = None,
    interval: float = 0.2,
    timeout: float | None = None,
    use_pss: bool = True,
) -> dict:
    """Run cmd (stdout+stderr → log), polling the process tree's memory.

    Returns wall seconds, return code and peaks: ``peak_rss_tree_mb`` (sum of RSS over the
    tree, overcounts pages shared by forked workers), ``peak_pss_tree_mb`` (sum of PSS: shared
    pages split between sharers — the fairer total) and ``peak_rss_proc_mb`` (largest single
    process).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    peaks = [0, 0, 0]
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        proc = psutil.Process(popen.pid)
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                m = _tree_memory(proc, use_pss)
                for i in range(3):
                    peaks[i] = max(peaks[i], m[i])
                # poll fast at first (short commands, start-up spikes), then back off: reading
                # smaps of large processes costs CPU on a machine that has only 2 cores
                age = time.perf_counter() - t0
                stop.wait(interval if age < 5 else 2.5 * interval if age < 60 else 5 * interval)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        timed_out = False
        try:
            rc = popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in proc.children(recursive=True) + [proc]:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            rc = -9
            timed_out = True
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the command and every descendant it waited for: less
    # sensitive than wall time to other jobs competing for the cores
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    mb = 2**20
    return {
        "cmd": cmd,
        "returncode": rc,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 2),
        "peak_rss_tree_mb": round(peaks[0] / mb, 1),
        "peak_pss_tree_mb": round(peaks[1] / mb, 1),
        "peak_rss_proc_mb": round(peaks[2] / mb, 1),
        "log": str(log),
        "timed_out": timed_out,
    }


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def check_ok(res: dict, what: str) -> None:
    if res["returncode"] != 0:
        if res.get("timed_out"):
            what += f" timed out after {res['wall_s']:.0f} s"
        print(
            f"!! {what} failed (exit {res['returncode']}); log {res['log']}:\n{tail(res['log'])}",
            file=sys.stderr,
        )
        raise RuntimeError(f"{what} failed (exit {res['returncode']})")


def nnseg_help(command: str) -> str | None:
    """``nnseg COMMAND --help`` text, or None if the command does not work yet."""
    if not NNSEG_BIN.exists():
        return None
    r = subprocess.run(
        [str(NNSEG_BIN), command, "--help"],
        capture_output=True,
        text=True,
        env=nnseg_env(),
        timeout=120,
    )
    return r.stdout if r.returncode == 0 else None


# --------------------------------------------------------------------------------------
# statistics and output
# --------------------------------------------------------------------------------------
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


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


# --------------------------------------------------------------------------------------
# persistent, matched set-ups for the training and prediction benchmarks
# --------------------------------------------------------------------------------------
def nnunet_ref_root(dataset: Path) -> Path:
    return CACHE / "nnunet-ref" / dataset.resolve().name


def ensure_nnunet_ref(dataset: Path, workers: int = 2) -> dict:
    """nnU-Net raw link + 3d_fullres preprocessing + fold splits, made once and reused."""
    root = nnunet_ref_root(dataset)
    name = dataset.resolve().name
    pre = root / "preprocessed" / name
    done = root / ".ready"
    if not done.exists():
        print(f"[prep] nnU-Net plan_and_preprocess 3d_fullres into {root} (once)", flush=True)
        if root.exists():
            shutil.rmtree(root)
        link_raw_dataset(dataset, root)
        (root / "preprocessed").mkdir(parents=True)
        (root / "results").mkdir(parents=True)
        res = run_monitored(
            [
                nnunet_bin("nnUNetv2_plan_and_preprocess"),
                "-d",
                str(dataset_id(dataset)),
                "-c",
                "3d_fullres",
                "-np",
                str(workers),
                "-npfp",
                str(workers),
            ],
            env=nnunet_env(root, n_proc_da=workers),
            log=root / "plan_and_preprocess.log",
        )
        check_ok(res, "nnUNetv2_plan_and_preprocess")
        # the fold splits nnU-Net would make on its first training run, made now so that NNSeg
        # can be given the very same folds
        code = (
            "import json,sys\n"
            "from nnunetv2.utilities.crossval_split import generate_crossval_split\n"
            "ids=sorted(l.strip() for l in open(sys.argv[1]) if l.strip())\n"
            "json.dump(generate_crossval_split(ids, seed=12345, n_splits=5), "
            "open(sys.argv[2],'w'), indent=1)\n"
        )
        ids = sorted(
            p.name[: -len(".nii.gz")]
            for p in (dataset / "labelsTr").glob("*.nii.gz")
            if not p.name.startswith(".")
        )
        (root / "case_ids.txt").write_text("\n".join(ids) + "\n")
        subprocess.run(
            [
                str(NNUNET_VENV / "bin" / "python"),
                "-c",
                code,
                str(root / "case_ids.txt"),
                str(pre / "splits_final.json"),
            ],
            check=True,
            env=nnunet_env(root),
        )
        done.write_text("ok\n")
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    return {
        "root": root,
        "preprocessed": pre,
        "plans": plans,
        "splits": json.loads((pre / "splits_final.json").read_text()),
    }


def nnunet_3d_params(plans: dict, config: str = "3d_fullres") -> dict:
    c = plans["configurations"][config]
    a = c["architecture"]["arch_kwargs"]
    return {
        "patch_size": list(c["patch_size"]),
        "batch_size": int(c["batch_size"]),
        "spacing": list(c["spacing"]),
        "features_per_stage": list(a["features_per_stage"]),
        "strides": [list(s) for s in a["strides"]],
        "kernel_sizes": [list(k) for k in a["kernel_sizes"]],
        "n_conv_per_stage": list(a["n_conv_per_stage"]),
        "n_conv_per_stage_decoder": list(a["n_conv_per_stage_decoder"]),
    }


def ensure_nnseg_matched(
    dataset: Path,
    nnunet: dict,
    *,
    workers: int = 2,
    rebuild: bool = False,
    config: str = "3d_fullres",
    nnseg_bin: Path | None = None,
    work: Path | None = None,
) -> dict:
    """NNSeg work folder planned with --recipe v2 and overridden to nnU-Net's patch/batch/net,
    preprocessed, with nnU-Net's splits_final.json copied in (same folds).

    ``nnseg_bin`` (default: the repository's venv) runs the preparation; give each NNSeg
    build its own ``work`` folder (default ``$CACHE/nnseg-matched/<dataset>``)."""
    p = nnunet_3d_params(nnunet["plans"], config)
    work = work or CACHE / "nnseg-matched" / dataset.resolve().name
    done = work / ".ready"
    key = json.dumps(p, sort_keys=True)
    if rebuild or not done.exists() or done.read_text() != key:
        print(
            f"[prep] NNSeg fingerprint/plan(v2, matched to nnU-Net)/preprocess into {work}",
            flush=True,
        )
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        overrides = [
            f"{config}.patch_size={json.dumps(p['patch_size'])}",
            f"{config}.batch_size={p['batch_size']}",
            f"{config}.features_per_stage={json.dumps(p['features_per_stage'])}",
            f"{config}.strides={json.dumps(p['strides'])}",
            f"{config}.kernel_sizes={json.dumps(p['kernel_sizes'])}",
        ]
        for name, cmd in nnseg_prepare_steps(
            dataset, work, workers, "v2", [config], overrides, [config], nnseg_bin
        ):
            check_ok(
                run_monitored(cmd, env=nnseg_env(), log=work / f"prep_{name}.log"), f"nnseg {name}"
            )
        shutil.copy(nnunet["preprocessed"] / "splits_final.json", work / "splits_final.json")
        done.write_text(key)
    plans = json.loads((work / "plans.json").read_text())
    c = plans["configurations"][config]
    mine = {
        k: c.get(k)
        for k in (
            "patch_size",
            "batch_size",
            "spacing",
            "features_per_stage",
            "strides",
            "kernel_sizes",
            "n_conv_per_stage",
            "n_conv_per_stage_decoder",
        )
    }
    diffs = {}
    for k, v in mine.items():
        theirs = p.get(k)
        if k.startswith("n_conv") and isinstance(v, int) and theirs is not None:
            theirs_cmp = theirs[0] if len(set(theirs)) == 1 else theirs
        else:
            theirs_cmp = theirs
        if theirs is not None and json.dumps(v) != json.dumps(theirs_cmp):
            diffs[k] = {"nnseg": v, "nnunet": theirs}
    return {"work": work, "plans": plans, "config": mine, "nnunet_config": p, "differences": diffs}


# --------------------------------------------------------------------------------------
# training / prediction command lines, held-out input folder, Dice
# --------------------------------------------------------------------------------------
def nnseg_train_cmd(
    dataset: Path,
    work: Path,
    *,
    epochs: int,
    iterations: int,
    seed: int,
    extra: Sequence[str] = (),
    nnseg_bin: Path | None = None,
    config: str = "3d_fullres",
    fold: str = "0",
) -> list[str]:
    """``nnseg train`` of one fold on the CPU, fresh, one validation batch per epoch, no final
    validation."""
    from NNSegLib.training.train_cli import train_argv
    from NNSegLib.util.command_line import common_argv

    return [
        str(nnseg_bin or NNSEG_BIN),
        *train_argv(dataset, config, fold, work, "cpu", epochs, iterations_per_epoch=iterations,
                    val_iterations=1, seed=seed, fresh=True, final_validation=False),
        *common_argv(quiet=True),
        *extra,
    ]


def nnseg_predict_cmd(
    inp: Path,
    out: Path,
    model: Path,
    *,
    extra: Sequence[str] = (),
    nnseg_bin: Path | None = None,
    config: str = "3d_fullres",
    fold: str = "0",
) -> list[str]:
    """``nnseg predict`` with one fold's model on the CPU (mirror TTA is its default)."""
    from NNSegLib.inference.predict_options import predict_argv
    from NNSegLib.util.command_line import common_argv

    return [
        str(nnseg_bin or NNSEG_BIN),
        *predict_argv([inp], out, model, [fold], configuration=config, device="cpu"),
        *common_argv(quiet=True),
        *extra,
    ]


def nnunet_predict_cmd(
    inp: Path, out: Path, dataset: Path, config: str = "3d_fullres", fold: str = "0"
) -> list[str]:
    """``nnUNetv2_predict`` with our bench trainer's final checkpoint, CPU, one process each
    for pre- and post-processing (mirror TTA is its default)."""
    return [
        nnunet_bin("nnUNetv2_predict"),
        "-i",
        str(inp),
        "-o",
        str(out),
        "-d",
        str(dataset_id(dataset)),
        "-c",
        config,
        "-f",
        fold,
        "-tr",
        TRAINER_NAME,
        "-chk",
        "checkpoint_final.pth",
        "-device",
        "cpu",
        "-npp",
        "1",
        "-nps",
        "1",
    ]


def link_cases(dataset: Path, cases: Sequence[str], inp: Path) -> Path:
    """An input folder of symlinks to the images (all channels) of the given training cases."""
    dsj = json.loads((dataset / "dataset.json").read_text())
    ending = dsj.get("file_ending", ".nii.gz")
    inp.mkdir(parents=True, exist_ok=True)
    for c in cases:
        for ch in range(len(dsj["channel_names"])):
            name = f"{c}_{ch:04d}{ending}"
            link = inp / name
            if not link.exists():
                link.symlink_to((dataset / "imagesTr" / name).resolve())
    return inp


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


# --------------------------------------------------------------------------------------
# which NNSeg code a python runs
# --------------------------------------------------------------------------------------
def nnseg_code_info(python: Path) -> dict:
    """Where ``python`` imports NNSegLib from and which commit that is.

    A tree made by ``setup_nnseg_pinned.sh`` names its commit in ``.nnseg_commit``; a git
    work tree is asked read-only (``rev-parse``, ``--no-optional-locks status``), and
    ``dirty`` says whether its NNSegLib differs from that commit."""
    code = "import NNSegLib, os; print(os.path.dirname(os.path.dirname(NNSegLib.__file__)))"
    r = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        env=nnseg_env(),
        cwd=str(Path(python).resolve().parent),  # not the repository: cwd is first on sys.path
        timeout=120,
    )
    if r.returncode != 0:
        raise SystemExit(f"{python} cannot import NNSegLib:\n{r.stderr}")
    src = Path(r.stdout.strip())
    info: dict = {"python": str(python), "source": str(src), "commit": None, "dirty": None}
    marker = src / ".nnseg_commit"
    if marker.is_file():
        info.update(commit=marker.read_text().strip(), dirty=False, pinned=True)
        return info
    git = ["git", "--no-optional-locks", "-C", str(src)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        st = subprocess.run(
            [*git, "status", "--porcelain", "--", "NNSegLib"], capture_output=True, text=True
        )
        info.update(commit=head.stdout.strip(), dirty=bool(st.stdout.strip()), pinned=False)
    return info


def repo_code_version() -> str:
    """This checkout's short commit, ``+dirty`` when its NNSegLib differs from it (what the
    NNSeg-only benchmarks that import NNSegLib from here record)."""
    git = ["git", "--no-optional-locks", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "NNSegLib"], capture_output=True,
                           text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")
