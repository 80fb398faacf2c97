"""The fault catalogue: every fault NNSeg was tried with, what it says, what it keeps.

One :class:`Fault` per kind. ``setup`` breaks one thing in a copy of the test world
(:mod:`world`) and returns the ``nnseg`` arguments to run; ``test_faults.py`` runs each
in-process and asserts the exit code, that the output holds ``says`` (placeholders such as
``{DATASET}`` filled in, ``…`` matching anything), that no traceback is printed, and that no
file that existed before was changed or deleted (except the ``changes`` globs, for faults
NNSeg recovers from). Kinds that need real processes (kill -9, signals) have no ``setup``;
``test`` names the test in ``test_processes.py`` that covers them.

``docs/FAULTS.md`` is rendered from this table (:func:`render`); a test checks that the file
matches, so the catalogue and the tests cannot drift. Regenerate it with
``python Testing/faults/catalogue.py``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from breakers import (  # noqa: E402
    Evil,
    a_file,
    absurd_spacing,
    absurd_spacing_preprocess,
    check_cmd,
    checkpoint_bytes,
    dest_here,
    dest_not_a_model,
    dest_reimport,
    disk_full_checkpoint,
    disk_full_preprocess,
    dotdot_zip_name,
    edited_fingerprint,
    empty_labels,
    evil_checkpoint,
    held_preprocess,
    held_run,
    import_cmd,
    lock,
    nan_image,
    nan_input,
    plan_cmd,
    plan_older,
    png,
    predict_cmd,
    predict_training,
    preprocess_cmd,
    raw_edited,
    read,
    stale_temps,
    symlink_loop,
    then,
    train_cmd,
    truncated,
    truncated_checkpoint,
    two_d,
    undeclared_label,
    unfinished_fold,
    unreadable,
    write,
    zip_bad_plans,
    zip_bomb,
    zip_entry,
    zip_wrong_weights,
)
from world import World  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "FAULTS.md"

BUG, WEAK, HELD = "bug, fixed", "weak spot, made strong", "held, kept working"
GROUPS = (BUG, WEAK, HELD)

KEEPS_ALL = "everything (nothing written)"
#: What ``train --time-budget`` says below one validation interval (``{v}``: the value).
TIME_BUDGET_SAYS = ("nnseg train: error: --time-budget {v}: must be at least 3 minutes, one "
                    "validation interval (run config epoch_minutes=3; --set epoch_minutes=M "
                    "lowers it)")
PROPERTIES = "work/preprocessed/3d_fullres/dataset_properties.json"


@dataclass(frozen=True)
class Fault:
    """One kind of fault.

    Attributes:
        kind: What goes wrong (unique; the catalogue's first column).
        stage: The command it is tried with.
        group: :data:`BUG` or :data:`WEAK` (from issue 10) or :data:`HELD`.
        says: What NNSeg prints (a fragment; ``{PLACEHOLDER}`` paths, ``…`` = anything).
        keeps: What NNSeg keeps (for the catalogue).
        setup: Breaks the world, returns the arguments (``None``: a process test).
        code: Expected exit code (``-9``: the process is killed).
        changes: Globs of files the command may change (a fault it recovers from).
        absent: Text that must not appear in the output.
        test: For process tests: the test function covering the fault.
    """

    kind: str
    stage: str
    group: str
    says: str
    keeps: str
    setup: Callable[[World], list[str]] | None = None
    code: int = 2
    changes: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    test: str = ""


# --- the table -------------------------------------------------------------------------------
FAULTS: tuple[Fault, ...] = (
    # Bugs of issue 10 ----------------------------------------------------------------------
    Fault("import-model --dest . --overwrite (the current folder)", "import-model", BUG,
          "--dest .: is the current folder or one of its parents; NNSeg never writes a model "
          "over it", KEEPS_ALL, dest_here(".")),
    Fault("import-model --dest .. --overwrite (a parent of the current folder)",
          "import-model", BUG, "--dest ..: is the current folder or one of its parents",
          KEEPS_ALL, dest_here("..")),
    Fault("import-model --overwrite onto a folder that is not an imported model",
          "import-model", BUG, "--dest {ROOT}/mydata: exists and is not an imported NNSeg "
          "model (no manifest.json); --overwrite only replaces such folders",
          KEEPS_ALL, dest_not_a_model),
    Fault("import-model --overwrite onto a training's results folder", "import-model", BUG,
          "--dest {MODEL}: exists and is not an imported NNSeg model", KEEPS_ALL,
          lambda w: import_cmd(w, "--dest", str(w.results), "--overwrite")),
    Fault("import-model of a zip named `...zip` (default destination from its stem)",
          "import-model", BUG, "imported into {ROOT}/home/nnseg_models/model",
          "everything; the model goes to ./nnseg_models/model", dotdot_zip_name, code=0),
    Fault("two trainings of the same fold at once", "train", BUG,
          "{MODEL}/3d_fullres/fold_1: in use by process … (nnseg train 3d_fullres fold 1); "
          "wait for it to finish or stop it", "the running training and its run folder",
          held_run(1)),
    Fault("train --continue while the run is still going", "train", BUG,
          "{MODEL}/3d_fullres/fold_0: in use by process … (nnseg train 3d_fullres fold 0)",
          "the running training and its checkpoints", held_run(0, "--continue")),
    Fault("preprocess while another preprocess of the configuration runs", "preprocess", BUG,
          "{WORK}/preprocessed/3d_fullres: in use by process … (nnseg preprocess 3d_fullres)",
          "the other process's output", held_preprocess),
    Fault("train while its data is being preprocessed", "train", BUG,
          "nnseg train: error: {WORK}/preprocessed/3d_fullres: being preprocessed by process …; "
          "train once `nnseg preprocess` has finished", "the preprocessing and its output",
          then(lambda w: w.during.append(lock(w.pre, "nnseg preprocess 3d_fullres")),
                lambda w: train_cmd(w, "1"))),
    Fault("a .nii.gz whose voxel data is cut short (valid gzip, half the bytes)", "check", BUG,
          "{DATASET}/imagesTr/case_001_0000.nii.gz: voxel data cut short: … of the … bytes "
          "the header declares", KEEPS_ALL, truncated),
    Fault("a 2D image in a 3D dataset", "check", BUG,
          "{DATASET}/imagesTr/case_001_0000.nii.gz: 2D image in a dataset of 3D images (4 of 5 "
          "cases); every case must have the same dimension", KEEPS_ALL, two_d),
    Fault("absurd spacing (1e9 mm) in one case", "check", BUG,
          "{DATASET}/imagesTr/case_001_0000.nii.gz: spacing (1e+09, 1, 1) is 5e+08× the median "
          "on axis z: resampled to the dataset's median spacing (2, 1, 1), this case would have "
          "shape …, more than NNSeg can hold", KEEPS_ALL, absurd_spacing),
    Fault("absurd spacing reaching preprocessing", "preprocess", BUG,
          "case case_001 ({DATASET}/labelsTr/case_001.nii.gz): resampled from spacing "
          "(1000000000.0, 1.0, 1.0) to (1.0, 1.0, 1.0), the case would have shape …; check the "
          "spacing in the file header", "every preprocessed case (the folder is marked "
          "incomplete)", absurd_spacing_preprocess, changes=(PROPERTIES,)),
    Fault("kill -9 of preprocess (its worker processes)", "preprocess", BUG,
          "(nothing: the workers end within seconds, with their parent)",
          "every finished case; the next run does the rest", code=-9,
          test="test_workers_die_with_parent"),
    Fault("SIGTERM to a worker process", "preprocess", BUG,
          "preprocess: a worker process died while working on … (killed, or out of memory: "
          "try fewer --workers)", "every finished case", test="test_workers_obey_sigterm"),
    Fault("unreadable dataset.json (permission denied)", "check", BUG,
          "ERROR: {DATASET}/dataset.json: permission denied", KEEPS_ALL,
          unreadable(lambda w: w.ds / "dataset.json", check_cmd)),
    Fault("unreadable dataset.json, in a stage", "fingerprint", BUG,
          "nnseg fingerprint: error: {DATASET}: dataset has 1 error(s):\n"
          "ERROR: {DATASET}/dataset.json: permission denied", KEEPS_ALL,
          unreadable(lambda w: w.ds / "dataset.json",
                      lambda w: ["fingerprint", str(w.ds), "--work", str(w.work), "--quiet"])),
    Fault("unreadable labelsTr folder", "check", BUG,
          "ERROR: {DATASET}/labelsTr: cannot list the folder: permission denied", KEEPS_ALL,
          unreadable(lambda w: w.ds / "labelsTr", check_cmd)),
    Fault("predict -o is a file", "predict", BUG,
          "nnseg predict: error: -o {ROOT}/afile: is a file, expected a folder", KEEPS_ALL,
          lambda w: predict_cmd(w, out=str(a_file("afile")(w)))),
    Fault("evaluate -o is a file", "evaluate", BUG,
          "nnseg evaluate: error: -o {ROOT}/afile: is a file, expected a folder", KEEPS_ALL,
          lambda w: ["evaluate", str(w.ds / "labelsTr"), str(w.out), "-o",
                     str(a_file("afile")(w)), "--quiet"]),
    Fault("import-model --dest is a file", "import-model", BUG,
          "--dest {ROOT}/afile: is a file, expected a folder", KEEPS_ALL,
          lambda w: import_cmd(w, "--dest", str(a_file("afile")(w)))),
    Fault("--progress-json names a folder", "check", BUG,
          "nnseg check: error: --progress-json {ROOT}: is a folder, expected a file", KEEPS_ALL,
          lambda w: check_cmd(w, "--progress-json", str(w.root))),
    Fault("disk full while preprocessing (ENOSPC)", "preprocess", BUG,
          "nnseg preprocess: error: {WORK}/preprocessed/3d_fullres/case_003.npy: no space left "
          "on device; free some space and run the command again",
          "every case written before, the case's old files (the folder is marked incomplete)",
          disk_full_preprocess, changes=(PROPERTIES,)),
    Fault("disk full while saving a checkpoint (ENOSPC)", "train", BUG,
          "nnseg train: error: {MODEL}/3d_fullres/fold_0/checkpoint_latest.pt: no space left on "
          "device", "the previous checkpoints (final, best, latest)", disk_full_checkpoint,
          changes=("work/results/3d_fullres/fold_0/run_config.json",
                   "work/results/3d_fullres/fold_0/log.jsonl",
                   "work/results/3d_fullres/fold_0/progress.png")),
    Fault("a real file-size limit while saving a checkpoint (EFBIG, separate process)", "train",
          BUG, "…/checkpoint_latest.pt: file too large (the file size limit was reached)",
          "the previous checkpoints", test="test_real_write_failure_keeps_the_checkpoint"),
    Fault("train --set lr=abc", "train", BUG,
          "nnseg train: error: argument --set: 'lr=abc': lr: expected a number, got \"abc\"",
          KEEPS_ALL, lambda w: train_cmd(w, "1", "--set", "lr=abc")),
    Fault("train --patch-size 0 0 0", "train", BUG,
          "nnseg train: error: argument --patch-size: must be an integer >= 1, got '0'",
          KEEPS_ALL, lambda w: train_cmd(w, "1", "--patch-size", "0", "0", "0")),
    Fault("unreadable image file", "check", BUG,
          "ERROR: {DATASET}/imagesTr/case_001_0000.nii.gz: permission denied", KEEPS_ALL,
          unreadable(lambda w: w.image(1), check_cmd)),
    Fault("symbolic link loop instead of an image", "check", BUG,
          "ERROR: {DATASET}/imagesTr/case_001_0000.nii.gz: symbolic link loop", KEEPS_ALL,
          symlink_loop),
    # Weak spots of issue 10 ------------------------------------------------------------------
    Fault("plan --override 3d_fullres.batch_size=abc", "plan", WEAK,
          "nnseg plan: error: argument --override: '3d_fullres.batch_size=abc': batch_size: "
          "expected an integer, got \"abc\"", KEEPS_ALL,
          lambda w: plan_cmd(w, "--override", "3d_fullres.batch_size=abc")),
    Fault("plan --override 3d_fullres.patch_size=[0,0,0]", "plan", WEAK,
          "argument --override: '3d_fullres.patch_size=[0,0,0]': patch_size must be values "
          ">= 1, got [0, 0, 0]", KEEPS_ALL,
          lambda w: plan_cmd(w, "--override", "3d_fullres.patch_size=[0,0,0]")),
    Fault("plan --override 3d_fullres.batch_size=-5", "plan", WEAK,
          "argument --override: '3d_fullres.batch_size=-5': batch_size must be >= 1, got -5",
          KEEPS_ALL, lambda w: plan_cmd(w, "--override", "3d_fullres.batch_size=-5")),
    Fault("plan --override a patch the network cannot divide", "plan", WEAK,
          "nnseg plan: error: override '3d_fullres.patch_size=[5,5,5]': 3d_fullres: patch_size "
          "[5, 5, 5] must be divisible by", KEEPS_ALL,
          lambda w: plan_cmd(w, "--override", "3d_fullres.patch_size=[5,5,5]")),
    Fault("fingerprint with a NaN spacing (edited)", "plan", WEAK,
          "nnseg plan: error: {WORK}/dataset_fingerprint.json: case 'case_001': spacing [nan, "
          "1.0, 1.0] is not a finite number > 0 on every axis; run `nnseg fingerprint` again",
          KEEPS_ALL, edited_fingerprint(1, "spacing", [float("nan"), 1.0, 1.0])),
    Fault("fingerprint with a case cropped to 0 voxels (edited)", "plan", WEAK,
          "nnseg plan: error: {WORK}/dataset_fingerprint.json: case 'case_002': shape after "
          "cropping [0, 16, 16] has an axis of 0 voxels; run `nnseg fingerprint` again",
          KEEPS_ALL, edited_fingerprint(2, "shape_after_crop", [0, 16, 16])),
    Fault("plan --gpu-memory-gb too small for any patch", "plan", WEAK,
          "nnseg plan: error: no patch fits a memory budget of 0.0001 GB even at the smallest "
          "size; raise --gpu-memory-gb", KEEPS_ALL,
          lambda w: plan_cmd(w, "--gpu-memory-gb", "0.0001")),
    Fault("train --patch-size the network cannot divide", "train", WEAK,
          "nnseg train: error: --patch-size/--batch-size (patch_size [5, 5, 5]) do not fit "
          "3d_fullres: patch_size [5, 5, 5] must be divisible by [4, 4, 4]", KEEPS_ALL,
          lambda w: train_cmd(w, "1", "--patch-size", "5", "5", "5")),
    Fault("train --set amp=turbo (not one of the choices)", "train", WEAK,
          "argument --set: 'amp=turbo': amp 'turbo' not in ('auto', 'off', 'bf16', 'fp16')",
          KEEPS_ALL, lambda w: train_cmd(w, "1", "--set", "amp=turbo")),
    Fault("train --host-memory keep (not one of the choices)", "train", WEAK,
          "argument --host-memory: invalid choice: 'keep' (choose from 'reuse', 'system')",
          KEEPS_ALL, lambda w: train_cmd(w, "1", "--host-memory", "keep")),
    Fault("train --time-budget 0", "train", WEAK, TIME_BUDGET_SAYS.format(v="0"), KEEPS_ALL,
          lambda w: train_cmd(w, "1", "--time-budget", "0")),
    Fault("train --time-budget -5 (negative)", "train", WEAK, TIME_BUDGET_SAYS.format(v="-5"),
          KEEPS_ALL, lambda w: train_cmd(w, "1", "--time-budget", "-5")),
    Fault("train --time-budget nan", "train", WEAK, TIME_BUDGET_SAYS.format(v="nan"),
          KEEPS_ALL, lambda w: train_cmd(w, "1", "--time-budget", "nan")),
    Fault("train --time-budget 2 (less than one validation interval)", "train", WEAK,
          TIME_BUDGET_SAYS.format(v="2"), KEEPS_ALL,
          lambda w: train_cmd(w, "1", "--time-budget", "2")),
    Fault("train --continue --time-budget 1 of a run whose interval is 3 minutes", "train",
          WEAK, TIME_BUDGET_SAYS.format(v="1"), KEEPS_ALL,
          lambda w: train_cmd(w, "0", "--continue", "--time-budget", "1")),
    Fault("numeric options out of range (--epochs 0)", "train", WEAK,
          "argument --epochs: must be an integer >= 1, got '0'", KEEPS_ALL,
          lambda w: train_cmd(w, "1", "--epochs", "0")),
    Fault("predict --step 0", "predict", WEAK,
          "nnseg predict: error: argument --step: must be a number > 0 and <= 1, got '0'",
          KEEPS_ALL, lambda w: predict_cmd(w, "--step", "0")),
    Fault("raw image edited after preprocessing", "preprocess", WEAK,
          "1 preprocessed case(s) have raw files that changed since (size or modification "
          "time); redoing them", "every unchanged case", raw_edited, code=0,
          changes=("work/preprocessed/3d_fullres/case_002*",
                   "work/preprocessed/3d_fullres/dataset_properties.json")),
    Fault("raw data newer than the fingerprint", "preprocess", WEAK,
          "changed after {WORK}/dataset_fingerprint.json was made; run `nnseg fingerprint` and "
          "`nnseg plan` again", "everything", raw_edited, code=0,
          changes=("work/preprocessed/3d_fullres/case_002*",
                   "work/preprocessed/3d_fullres/dataset_properties.json")),
    Fault("plan older than the fingerprint", "preprocess", WEAK,
          "{WORK}/plans.json is older than {WORK}/dataset_fingerprint.json; run `nnseg plan` "
          "again", "everything", plan_older, code=0,
          changes=("work/preprocessed/3d_fullres/dataset_properties.json",)),
    Fault("every label map empty", "check", WEAK,
          "ERROR: {DATASET}/labelsTr: no foreground in any of the 5 label map(s): there is "
          "nothing to learn", KEEPS_ALL, empty_labels),
    Fault("file_ending .png in dataset.json", "check", WEAK,
          "ERROR: {DATASET}/dataset.json: 'file_ending' '.png' is not supported; NNSeg reads "
          ".nii.gz, .nii, .nrrd, .seg.nrrd, .mha, .mhd", KEEPS_ALL, png),
    Fault("predict -i a .png image", "predict", WEAK,
          "nnseg predict: error: -i {ROOT}/x.png: '.png' images are not supported", KEEPS_ALL,
          lambda w: ["predict", "-i", str(a_file("x.png")(w)), "-o", str(w.root / "p"), "-m",
                     str(w.results), "--quiet"]),
    Fault("find-best --folds 0 0 (a fold twice)", "find-best", WEAK,
          "nnseg find-best: error: --folds: 0 given more than once", KEEPS_ALL,
          lambda w: ["find-best", str(w.ds), "--work", str(w.work), "--folds", "0", "0",
                     "--workers", "1", "--quiet"]),
    Fault("predict -o equal to -i", "predict", WEAK,
          "nnseg predict: error: -o {IMAGES}: is the input folder {IMAGES}; write the label "
          "maps to another folder", KEEPS_ALL, lambda w: predict_cmd(w, out=str(w.images))),
    Fault("NaN in a predict input", "predict", WEAK,
          "nnseg predict: error: {IMAGES}/case_000_0000.nii.gz: 1 NaN and 0 infinite voxel "
          "value(s) stored in the file (ITK would read them as 0); NNSeg does not segment "
          "images with missing or non-finite voxels", KEEPS_ALL, nan_input),
    Fault("predict --folds 1 while fold 1 is still training", "predict", WEAK,
          "nnseg predict: error: {MODEL}/3d_fullres: fold 1 is still training (process …, "
          "epoch 1, step 2/2); choose finished folds or pass --allow-unfinished", KEEPS_ALL,
          predict_training("--folds", "1")),
    Fault("predict (default folds) while fold 1 is still training", "predict", WEAK,
          "3d_fullres: fold 1 is still training (process …, epoch 1, step 2/2): left out "
          "(--allow-unfinished uses it)", "everything; predicts with the finished folds",
          predict_training(), code=0),
    Fault("export-model of a fold that stopped before finishing", "export-model", WEAK,
          "nnseg export-model: error: {MODEL}/3d_fullres: fold 1 stopped before finishing "
          "(epoch 1, step 2/2; resume it with `nnseg train … --continue`); choose finished "
          "folds or pass --allow-unfinished", KEEPS_ALL,
          then(unfinished_fold, lambda w: ["export-model", str(w.results),
                                           str(w.root / "x.zip"), "--folds", "1", "--quiet"])),
    Fault("model zip expanding 500-fold (declared honestly in its manifest)", "import-model",
          WEAK, "{ROOT}/bomb.zip: expands …-fold (… MB to … MB), more than the limit of 20",
          KEEPS_ALL, zip_bomb),
    Fault("model zip over the size limit", "import-model", WEAK,
          "{ZIP}: expands to … MB, more than the limit of 0.01 MB (raise it with --max-size-mb",
          KEEPS_ALL, lambda w: import_cmd(w, "--dest", str(w.root / "m"), "--max-size-mb", "0.01")),
    Fault("package with an invalid plans.json", "import-model", WEAK,
          "{ROOT}/bad.zip: not a usable model: plans.json: not a valid NNSeg plans file "
          "(configuration '3d_fullres': batch_size: must be >= 1, got 0)", KEEPS_ALL,
          zip_bad_plans),
    Fault("package with wrong-shape weights", "import-model", WEAK,
          "{ROOT}/bad.zip: not a usable model: 3d_fullres/fold_0/checkpoint_final.pt: weights "
          "do not match the plan's network", KEEPS_ALL, zip_wrong_weights),
    Fault("import-model of a missing file", "import-model", WEAK,
          "nnseg import-model: error: {ROOT}/nope.zip: does not exist", KEEPS_ALL,
          lambda w: ["import-model", str(w.root / "nope.zip"), "--quiet"]),
    Fault("temporary files left by kill -9", "preprocess", WEAK,
          "5 of 5 cases already preprocessed", "everything; removes the dead process's "
          "temporary files", stale_temps, code=0,
          changes=("work/preprocessed/3d_fullres/.case_000.npy.nnseg-tmp-*",
                   "work/preprocessed/3d_fullres/dataset_properties.json")),
    Fault("checkpoint holding a pickled object", "predict", WEAK,
          "{MODEL}/3d_fullres/fold_0/checkpoint_final.pt: not a readable NNSeg checkpoint (it "
          "holds Python objects, not only tensors and plain values (Unsupported global: GLOBAL "
          "print was not an allowed global by default); NNSeg does not load such files)",
          KEEPS_ALL, evil_checkpoint, absent=("weights_only", "unpickled!", "allowlist")),
    # Kinds that already worked ---------------------------------------------------------------
    Fault("kill -9 during training, then --continue", "train", HELD,
          "resuming 3d_fullres fold 0 at epoch …", "the latest checkpoint; the lock dies with "
          "the process; the dead process's temporary files are removed", code=0,
          test="test_kill_9_during_training_then_continue"),
    Fault("SIGTERM during training (Ctrl-C alike)", "train", HELD,
          "nnseg train: cancelled (received SIGTERM); work done so far is kept",
          "checkpoint_latest.pt written first", code=130,
          test="test_cli_sigterm_mid_epoch_then_continue"),
    Fault("a second training started while one runs (separate processes)", "train", HELD,
          "in use by process … (nnseg train 3d_fullres fold 0)", "the running training",
          test="test_kill_9_during_training_then_continue"),
    Fault("dataset.json missing", "check", HELD,
          "ERROR: {DATASET}/dataset.json: missing (expected an nnU-Net v2 dataset.json)",
          KEEPS_ALL, then(lambda w: (w.ds / "dataset.json").unlink(), check_cmd)),
    Fault("dataset.json not JSON", "check", HELD,
          "ERROR: {DATASET}/dataset.json: malformed JSON", KEEPS_ALL,
          then(lambda w: (w.ds / "dataset.json").write_text("{nope"), check_cmd)),
    Fault("a case without its label", "check", HELD,
          "ERROR: {DATASET}/labelsTr/case_001.nii.gz: missing label for case case_001",
          KEEPS_ALL, then(lambda w: w.label(1).unlink(), check_cmd)),
    Fault("label geometry differs from the image", "check", HELD,
          "ERROR: {DATASET}/labelsTr/case_001.nii.gz: geometry differs from the image: spacing",
          KEEPS_ALL, then(lambda w: write(w.label(1), read(w.label(1)), (3.0, 1.0, 1.0)),
                           check_cmd)),
    Fault("NaN voxels in a training image (NIfTI)", "check", HELD,
          "ERROR: {DATASET}/imagesTr/case_001_0000.nii.gz: 1 NaN and 0 infinite voxel value(s) "
          "stored in the file", KEEPS_ALL,
          nan_image),
    Fault("undeclared label value", "check", HELD,
          "ERROR: {DATASET}/labelsTr/case_001.nii.gz: label values [7] are not declared",
          KEEPS_ALL, undeclared_label),
    Fault("corrupt image file", "check", HELD,
          "ERROR: {DATASET}/imagesTr/case_001_0000.nii.gz: unreadable or corrupt image",
          KEEPS_ALL, then(lambda w: w.image(1).write_bytes(b"garbage"), check_cmd)),
    Fault("preprocess before plan", "preprocess", HELD,
          "nnseg preprocess: error: {WORK}/plans.json: no plan; run `nnseg plan` first",
          KEEPS_ALL, then(lambda w: (w.work / "plans.json").unlink(), preprocess_cmd)),
    Fault("plan before fingerprint", "plan", HELD,
          "nnseg plan: error: {WORK}/dataset_fingerprint.json: no fingerprint; run `nnseg "
          "fingerprint` first", KEEPS_ALL,
          then(lambda w: (w.work / "dataset_fingerprint.json").unlink(), plan_cmd)),
    Fault("plans.json not JSON", "preprocess", HELD,
          "nnseg preprocess: error: {WORK}/plans.json: not valid JSON (line 1, column 2", KEEPS_ALL,
          then(lambda w: (w.work / "plans.json").write_text("{nope"), preprocess_cmd)),
    Fault("new training over an existing run", "train", HELD,
          "nnseg train: error: {MODEL}/3d_fullres/fold_0: already holds a training run; use "
          "--continue, --extend N, or --fresh", KEEPS_ALL, lambda w: train_cmd(w, "0")),
    Fault("train --continue without a run", "train", HELD,
          "nnseg train: error: {MODEL}/3d_fullres/fold_2/run_config.json: missing; there is no "
          "run to continue", KEEPS_ALL, lambda w: train_cmd(w, "2", "--continue")),
    Fault("a fold the splits do not have", "train", HELD,
          "nnseg train: error: fold 7 does not exist; the splits have folds 0..4", KEEPS_ALL,
          lambda w: train_cmd(w, "7")),
    Fault("a configuration the plan does not have", "train", HELD,
          "nnseg train: error: configuration '3d_lowres' is not in the plan", KEEPS_ALL,
          lambda w: ["train", str(w.ds), "3d_lowres", "0", "--work", str(w.work), "--quiet"]),
    Fault("predict --folds 0 0 (a fold twice)", "predict", HELD,
          "nnseg predict: error: folds: 0 given more than once", KEEPS_ALL,
          lambda w: predict_cmd(w, "--folds", "0", "0")),
    Fault("predict with a missing model folder", "predict", HELD,
          "nnseg predict: error: {ROOT}/nomodel: model folder not found", KEEPS_ALL,
          lambda w: ["predict", "-i", str(w.images), "-o", str(w.root / "p"), "-m",
                     str(w.root / "nomodel"), "--quiet"]),
    Fault("truncated checkpoint", "predict", HELD,
          "{MODEL}/3d_fullres/fold_0/checkpoint_final.pt: not a readable NNSeg checkpoint "
          "(PytorchStreamReader failed reading zip archive: failed finding central directory)",
          KEEPS_ALL, truncated_checkpoint),
    Fault("model zip with a '..' entry", "import-model", HELD,
          "{ROOT}/bad.zip: refusing path with '..' or '.' '../escape.json'", KEEPS_ALL,
          zip_entry("../escape.json", b"x")),
    Fault("model zip with a checksum mismatch", "import-model", HELD,
          "{ROOT}/bad.zip: checksum mismatch for plans.json", KEEPS_ALL,
          zip_entry("dataset.json", b"{}", corrupt="plans.json")),
    Fault("model zip with a pickled object", "import-model", WEAK,
          "{ROOT}/bad.zip: 3d_fullres/fold_0/checkpoint_final.pt is not a plain weights file (it "
          "holds Python objects", KEEPS_ALL,
          zip_entry("3d_fullres/fold_0/checkpoint_final.pt",
                     checkpoint_bytes({"network": {}, "meta": Evil()})),
          absent=("weights_only", "unpickled!")),
    Fault("import-model --overwrite onto a model imported there before", "import-model", HELD,
          "imported into {ROOT}/imported", "everything else; the old model stays until the "
          "new one is complete", dest_reimport, code=0, changes=("imported/*",)),
    Fault("train --set device=\"tpu\" (an unknown device)", "train", WEAK,
          "nnseg train: error: argument --set: 'device=\"tpu\"': device 'tpu' is not auto, cpu, "
          "cuda, cuda:N or mps", KEEPS_ALL, lambda w: train_cmd(w, "1", "--set", 'device="tpu"')),
)


# --- docs/FAULTS.md ------------------------------------------------------------------------
def _cell(text: str) -> str:
    text = text.replace("{", "").replace("}", "").replace("\n", " ")
    return text.replace("|", "\\|")


def render() -> str:
    """The catalogue as Markdown (what ``docs/FAULTS.md`` holds)."""
    kinds = len(FAULTS)
    clean = sum(f.code == 2 for f in FAULTS)
    recovered = sum(f.code == 0 for f in FAULTS)
    processes = sum(f.setup is None for f in FAULTS)
    lines = [
        "# Fault catalogue",
        "",
        "<!-- Generated from Testing/faults/catalogue.py by `python Testing/faults/catalogue.py`;",
        "     Testing/faults/test_faults.py checks that this file matches. Do not edit. -->",
        "",
        "Every kind of bad input and fault `nnseg` has been tried with, what it says and what "
        "it keeps. Each row is a test (`Testing/faults/`): the command ends with the exit code "
        "shown, prints the text shown (paths written as `DATASET`, `WORK` (its work folder), "
        "`MODEL` (`WORK/results`), `ZIP`, `IMAGES`, `ROOT` (the folder of all of them); `…` "
        "stands for numbers that vary) and no traceback, and no file that existed before is "
        "changed or deleted, except where a row says what it redoes.",
        "",
        f"{kinds} kinds of fault: {clean} end in a clean error (exit code 2), {recovered} are "
        f"recovered from with a message (exit code 0), {kinds - clean - recovered} are a "
        f"cancel or a kill ({processes} of all the kinds need real processes: kill -9, signals, "
        "locks across processes, a real write limit). In every one nothing written before is "
        "lost.",
        "",
        "Exit codes: 0 done, 2 a problem the user can fix (one line naming the file or option), "
        "130 cancelled (work so far kept), 1 a bug in NNSeg (one line; `--debug` shows the "
        "traceback).",
    ]
    for group in GROUPS:
        rows = [f for f in FAULTS if f.group == group]
        lines += ["", f"## {group[0].upper()}{group[1:]} ({len(rows)})", "",
                  "| fault | command | exit | what NNSeg says | what it keeps |",
                  "|---|---|---|---|---|"]
        for f in rows:
            exit_code = "killed" if f.code == -9 else str(f.code)
            lines.append(f"| {_cell(f.kind)} | `{f.stage}` | {exit_code} | "
                         f"`{_cell(f.says)}` | {_cell(f.keeps)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC} ({len(FAULTS)} faults)")
