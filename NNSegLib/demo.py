"""The README's main job: the whole pipeline on the built-in sample dataset.

``nnseg demo OUT`` generates the synthetic sample dataset (training cases plus a separate
test set with references), then runs, through the same CLI entry points a user would call:
check → fingerprint → plan → preprocess → train (short) → find-best → predict → evaluate,
and prints the Dice table, the report path and the wall time. Every step is resumable:
running it again reuses what is already there.

Training does a fixed, seeded amount of work (``--epochs × --iterations-per-epoch``, ending
with the schedule's low learning-rate phase), so the result does not depend on how busy the
machine is (nor on where the trainer's clock ends an epoch, see ``RunConfig.epoch_minutes``);
``--train-minutes`` instead fits the run to a wall-clock budget.

The demo trains a network of half the plan's width (``--network-width``, a plan override it
shows) for 120 iterations at a learning rate above the recipe's (``--lr``): the synthetic
organ, lesion and vessel need far fewer filters than the planner budgets for a real dataset,
and a quarter of the arithmetic per voxel is what lets the whole demo run in a few minutes
on a 2-core CPU in fp32 (AVX2, no bf16; ``bench/RESULTS.md``, section "demo").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from NNSegLib.util import options
from NNSegLib.util.command_line import common_argv
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress

#: The demo's fixed training work (fold 0): epochs × iterations per epoch, at a learning rate
#: above the recipe's (Adam 3e-4): 120 iterations at 1e-3 segment the synthetic structures
#: better than 160 at 3e-4 (test Dice 0.952 / 0.973 / 0.948 against 0.952 / 0.958 / 0.923;
#: ``bench/RESULTS.md``, section "demo").
DEMO_EPOCHS = 6
DEMO_ITERATIONS = 20
DEMO_LR = 1e-3
#: The demo network's features per stage as a share of the plan's.
DEMO_WIDTH = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="folder for sample data, work folder and results")
    parser.add_argument("--kind", choices=("mr", "ct"), default="mr",
                        help="sample dataset variant (default: mr)")
    parser.add_argument("--configuration", default="3d_fullres",
                        help="configuration to train (default: 3d_fullres)")
    parser.add_argument("--folds", type=options.non_negative_int, nargs="+", default=[0],
                        help="folds to train (default: 0; all five for full cross-validation)")
    parser.add_argument("--epochs", type=options.positive_int, default=DEMO_EPOCHS,
                        help=f"training epochs (default: {DEMO_EPOCHS})")
    parser.add_argument("--iterations-per-epoch", type=options.positive_int,
                        default=DEMO_ITERATIONS,
                        help=f"training iterations per epoch (default: {DEMO_ITERATIONS})")
    parser.add_argument("--lr", type=options.positive_number, default=DEMO_LR,
                        help=f"training learning rate (default {DEMO_LR:g})")
    parser.add_argument("--network-width", type=options.number(0.0, 1.0, low_open=True),
                        default=DEMO_WIDTH,
                        help=f"features per stage as a share of the plan's (default "
                             f"{DEMO_WIDTH:g}; 1 = the plan's network)")
    parser.add_argument("--val-iterations", type=options.non_negative_int, default=4,
                        help="validation batches per epoch (default: 4)")
    parser.add_argument("--seed", type=options.non_negative_int, default=0,
                        help="training seed (default: 0)")
    parser.add_argument("--train-minutes", type=options.positive_number, default=None,
                        help="fit training to this wall-clock budget per fold instead "
                             "(minutes, at least one validation interval: 3; the amount of "
                             "work then depends on the machine)")
    parser.add_argument("--test-cases", type=options.non_negative_int, default=4,
                        help="generated test cases to predict and evaluate (default: 4)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--workers", type=options.positive_int, default=2,
                        help="worker processes for I/O stages")


def _step(name: str, argv: list[str]) -> None:
    from NNSegLib.cli import main

    print(f"\n=== nnseg {' '.join(argv)}", flush=True)
    start = time.time()
    code = main(argv)
    if code != 0:
        raise NNSegError(f"demo step '{name}' failed with exit code {code}")
    print(f"=== {name}: {time.time() - start:.1f} s", flush=True)


def _narrower(work: Path, cfg: str, width: float) -> str:
    """The plan override giving ``cfg`` ``width`` × the plan's features."""
    from NNSegLib.planning.plans import Plans
    from NNSegLib.util.workspace import Workspace

    features = Plans.load(Workspace(work).plans).configuration(cfg).features_per_stage
    narrow = [max(1, round(f * width)) for f in features]
    return f"{cfg}.features_per_stage={narrow}".replace(" ", "")


def _train(dataset: Path, work: Path, cfg: str, fold: int, args: argparse.Namespace,
           quiet: list[str]) -> None:
    """Train one fold, continuing an interrupted run and skipping a finished one."""
    from NNSegLib.util.workspace import Workspace

    run = Workspace(work).run(cfg, fold)
    if run.is_finished and run.validation.is_dir():
        print(f"=== train fold {fold}: already trained ({run.path})")
        return
    from NNSegLib.training.train_cli import train_argv

    _step(f"train fold {fold}", [
        *train_argv(dataset, cfg, fold, work, args.device, args.epochs,
                    resume=run.run_config.is_file(),
                    iterations_per_epoch=args.iterations_per_epoch,
                    val_iterations=args.val_iterations, seed=args.seed, lr=args.lr,
                    sets=() if args.train_minutes else ["final_phase=true"],
                    time_budget=args.train_minutes or None),
        *quiet,
    ])


def run(args: argparse.Namespace, progress: Progress) -> int:
    from NNSegLib.data.sample_data import generate_sample_dataset
    from NNSegLib.training.budget import budget_problem
    from NNSegLib.training.run_config import RunConfig

    if args.train_minutes is not None:   # refused before anything is written
        problem = budget_problem(args.train_minutes, RunConfig.epoch_minutes, "--train-minutes")
        if problem:
            raise NNSegError(problem)
    started = time.time()
    out: Path = args.out.resolve()
    dataset = out / "Dataset900_Sample"
    test_set = out / "Dataset901_SampleTest"
    work = out / "work"
    if not (dataset / "dataset.json").is_file():
        generate_sample_dataset(dataset, kind=args.kind, seed=0)
    if not (test_set / "dataset.json").is_file():
        generate_sample_dataset(test_set, kind=args.kind, seed=1, num_cases=args.test_cases)
    from NNSegLib.data.check import check_argv
    from NNSegLib.evaluation.evaluate import evaluate_argv
    from NNSegLib.inference.predict_options import predict_argv
    from NNSegLib.planning.fingerprint import fingerprint_argv
    from NNSegLib.planning.planner import plan_argv
    from NNSegLib.postprocessing.find_best import find_best_argv
    from NNSegLib.preprocessing.preprocess import preprocess_argv

    quiet = common_argv(quiet=args.quiet)
    cfg = args.configuration
    _step("check", [*check_argv(dataset, args.workers), *quiet])
    _step("fingerprint", [*fingerprint_argv(dataset, work, args.workers), *quiet])
    _step("plan", [*plan_argv(dataset, work), *quiet])
    if args.network_width < 1:
        _step("plan (narrower network)",
              [*plan_argv(dataset, work, overrides=[_narrower(work, cfg, args.network_width)]),
               *quiet])
    _step("preprocess", [*preprocess_argv(dataset, work, [cfg], args.workers), *quiet])
    for fold in args.folds:
        _train(dataset, work, cfg, fold, args, quiet)
    folds = [str(f) for f in args.folds]
    _step("find-best", [*find_best_argv(dataset, work, [cfg], folds), *quiet])
    predictions = out / "predictions"
    _step("predict", [*predict_argv([test_set / "imagesTr"], predictions, work / "results",
                                    folds, configuration=cfg, device=args.device), *quiet])
    report = out / "evaluation"
    _step("evaluate", [*evaluate_argv(test_set / "labelsTr", predictions,
                                      labels=test_set / "dataset.json", output=report), *quiet])
    print(f"\nDemo finished in {(time.time() - started) / 60:.1f} min. "
          f"Report: {report / 'report.html'}")
    return 0
