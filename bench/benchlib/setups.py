"""Persistent, matched set-ups for the training and prediction benchmarks: nnU-Net's own
3d_fullres preprocessing and folds, made once, and an NNSeg work folder planned to match it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .commands import nnseg_prepare_steps
from .env import (
    CACHE,
    NNUNET_VENV,
    dataset_id,
    link_raw_dataset,
    nnseg_env,
    nnunet_bin,
    nnunet_env,
)
from .monitor import check_ok, run_monitored
from .versions import nnseg_code_info


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


def pinned_nnseg(python: Path, dataset: Path) -> dict:
    """A pinned NNSeg build (``setup_nnseg_pinned.sh``) by its venv's python: its ``nnseg``
    (``bin``), commit (``code``, :func:`nnseg_code_info`), short name (``-dirty`` when its
    NNSegLib differs from the commit) and its own matched work folder for ``dataset``
    (``$CACHE/nnseg-matched/nnseg-<short>/<dataset>``, for :func:`ensure_nnseg_matched`)."""
    code = nnseg_code_info(python)
    if not code["commit"]:
        raise SystemExit(f"cannot tell which commit {code['source']} is")
    short = code["commit"][:7] + ("-dirty" if code["dirty"] else "")
    return {"bin": Path(python).parent / "nnseg", "code": code, "short": short,
            "work": CACHE / "nnseg-matched" / f"nnseg-{short}" / dataset.resolve().name}


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

