"""Build (once) a tiny nnU-Net v2 model with nnunetv2's own tools, cached outside the repo.

Used by ``test_nnunet_compat.py``. The environment variables nnU-Net needs are set here,
for its subprocesses only. Run directly to (re)build: ``python Testing/nnunet_fixture.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path.home() / ".cache" / "nnseg-tests" / "nnunet_tiny_v1"
NNUNET_VENV = Path.home() / ".cache" / "nnseg-bench" / "nnunet-venv"
TRAINER_DIR = REPO / "bench" / "nnunet_trainer"
TRAINER = "nnsegBenchTrainer"
DATASET = "Dataset987_NNSegTiny"
ROTATED = (0.0, -1.0, 0.0, 0.866025403784, 0.0, -0.5, 0.5, 0.0, 0.866025403784)
#: (name, shape, spacing (z, y, x), direction) of the prediction inputs: one on the training
#: grid, one anisotropic + rotated (exercises resampling both ways).
TEST_CASES = (
    ("test_000", (30, 34, 31), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
    ("test_001", (22, 40, 29), (1.4, 0.8, 1.1), ROTATED),
)


def nnunet_bin(name: str) -> Path:
    return NNUNET_VENV / "bin" / name


def available() -> str | None:
    """``None`` when nnU-Net v2 can be used, else the reason it cannot."""
    if not nnunet_bin("nnUNetv2_predict").is_file():
        return f"nnunetv2 not installed at {NNUNET_VENV} (run bench/setup_nnunet.sh)"
    if not (TRAINER_DIR / f"{TRAINER}.py").is_file():
        return f"benchmark trainer missing: {TRAINER_DIR / (TRAINER + '.py')}"
    return None


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
        "nnUNet_results": str(root / "results"), "nnUNet_extTrainer": str(TRAINER_DIR),
        "nnUNet_compile": "f", "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1",
        "NNSEG_BENCH_EPOCHS": "1", "NNSEG_BENCH_ITERS": "4", "NNSEG_BENCH_VAL_ITERS": "1",
        "NNSEG_BENCH_SEED": "0", "NNSEG_BENCH_SKIP_FINAL_VAL": "1", "OMP_NUM_THREADS": "2",
    })
    return env


def _run(cmd: list[str], root: Path, **overrides: str) -> None:
    log = root / "build.log"
    env = {**_env(root), **overrides}
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        code = subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if code != 0:
        raise RuntimeError(f"{cmd[0]} failed with exit code {code}; see {log}")


def _write_data(root: Path) -> None:
    sys.path.insert(0, str(HERE))
    import numpy as np
    from conftest import make_case, write_dataset, write_image

    raw = root / "raw" / DATASET
    write_dataset(raw, num_cases=6, shape=(32, 32, 32), spacing=(1.0, 1.0, 1.0), seed=7)
    rng = np.random.default_rng(11)
    for name, shape, spacing, direction in TEST_CASES:
        image, _ = make_case(rng, shape, 3)
        write_image(raw / "imagesTs" / f"{name}_0000.nii.gz", image, spacing,
                    (3.5, -20.0, 11.25), direction)


def build(root: Path = CACHE) -> Path:
    """Train configurations ``3d_fullres`` (folds 0, 1) and ``2d`` (fold 0) and predict."""
    done = root / "done.json"
    if done.is_file():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _write_data(root)
    dataset_id = DATASET[len("Dataset"):].split("_")[0]
    _run([str(nnunet_bin("nnUNetv2_plan_and_preprocess")), "-d", dataset_id, "-c", "2d",
          "3d_fullres", "-np", "1", "1", "-npfp", "1"], root,
         nnUNet_n_proc_DA="1")   # 0 crashes planning (torch.set_num_threads(0))
    runs = [("3d_fullres", "0"), ("3d_fullres", "1"), ("2d", "0")]
    for cfg, fold in runs:
        _run([str(nnunet_bin("nnUNetv2_train")), dataset_id, cfg, fold, "-tr", TRAINER,
              "-device", "cpu"], root)
    raw = root / "raw" / DATASET
    for cfg, folds, tta in (("3d_fullres", ["0", "1"], True), ("2d", ["0"], True),
                            ("3d_fullres", ["0"], False)):
        out = root / "predictions" / f"{cfg}_f{''.join(folds)}{'' if tta else '_notta'}"
        _run([str(nnunet_bin("nnUNetv2_predict")), "-i", str(raw / "imagesTs"), "-o", str(out),
              "-d", dataset_id, "-c", cfg, "-f", *folds, "-tr", TRAINER, "-device", "cpu",
              "-npp", "1", "-nps", "1", "--save_probabilities",
              *([] if tta else ["--disable_tta"])], root)
    done.write_text(json.dumps({"dataset": DATASET, "trainer": TRAINER}))
    return root


def model_folder(root: Path, configuration: str) -> Path:
    return root / "results" / DATASET / f"{TRAINER}__nnUNetPlans__{configuration}"


if __name__ == "__main__":
    reason = available()
    if reason:
        raise SystemExit(reason)
    print(build())
