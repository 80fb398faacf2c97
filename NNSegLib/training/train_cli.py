"""The ``nnseg train`` command line: options, their run-config fields, the entry point.

The work itself is :func:`NNSegLib.training.train.train_fold`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.training.run_config import (
    AMP_MODES,
    FINE_TUNE_EPOCHS,
    FINE_TUNE_LR_FACTOR,
    HOST_MEMORY,
    OPTIMIZERS,
    RECIPE_DEFAULTS,
    SWITCHES,
    parse_assignment,
)
from NNSegLib.training.train import train_fold
from NNSegLib.util import options
from NNSegLib.util.command_line import option, repeated, switch
from NNSegLib.util.progress import Progress

#: CLI option → (RunConfig field, type, help)
_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "--recipe": ("recipe", str, "training recipe: paper (Adam + plateau) or v2 (SGD + poly); "
                                "default: the plan's"),
    "--epochs": ("max_epochs", options.positive_int, "maximum number of epochs"),
    "--iterations-per-epoch": ("iterations_per_epoch", options.positive_int,
                               "training batches per epoch"),
    "--val-iterations": ("val_iterations", options.non_negative_int,
                         "validation batches per epoch (0 = none)"),
    "--lr": ("lr", options.positive_number, "initial learning rate"),
    "--optimizer": ("optimizer", str, "adam or sgd"),
    "--weight-decay": ("weight_decay", options.non_negative_number, "weight decay"),
    "--momentum": ("momentum", options.fraction, "SGD momentum"),
    "--batch-size": ("batch_size", options.positive_int, "batch size (default: the plan's)"),
    "--oversample-foreground": ("oversample_foreground", options.fraction,
                                "minimum share of foreground-centred patches per batch"),
    "--seed": ("seed", options.non_negative_int,
               "random seed of sampling, augmentation and initialisation"),
    "--device": ("device", str, "auto, cpu, cuda, cuda:N or mps"),
    "--num-threads": ("num_threads", options.non_negative_int,
                      "torch CPU threads (0 = all available)"),
    "--amp": ("amp", str, "mixed precision: auto (bf16 on CUDA with native bf16, else fp16 "
              "with loss scaling; bf16 on CPUs with AMX/AVX512-BF16 that oneDNN and ATen may "
              "use, i.e. not under ONEDNN_MAX_CPU_ISA=AVX2 or ATEN_CPU_CAPABILITY=avx2; fp32 "
              "on MPS and other CPUs), off, bf16, fp16"),
    "--channels-last": ("channels_last", str, "channels-last: auto (network default), on, off"),
    "--host-memory": ("host_memory", str, "CPU only: reuse (keep freed memory for the next "
                      "step: faster, holds the peak until the epoch ends) or system"),
    "--loader-threads": ("loader_threads", options.positive_int,
                         "background patch-extraction threads"),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "recipe": tuple(RECIPE_DEFAULTS), "optimizer": OPTIMIZERS, "amp": AMP_MODES,
    "channels_last": SWITCHES, "host_memory": HOST_MEMORY,
}


def _minutes(text: str) -> float:
    """A number of minutes; its range (at least one validation interval, which depends on
    the run's config) is checked by :func:`~NNSegLib.training.train.train_fold`, so 0, a
    negative value and NaN get the same message naming the minimum."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnseg train``."""
    parser.add_argument("dataset", type=Path, help="raw dataset folder (nnU-Net v2 layout)")
    parser.add_argument("configuration", help="configuration of the plan, e.g. 3d_fullres")
    parser.add_argument("fold", help="fold 0-4, or 'all' to train on every case")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (default ./nnseg_work/<dataset folder name>)")
    for flag, (field, typ, help_text) in _OPTIONS.items():
        parser.add_argument(flag, type=typ, default=None, help=help_text,
                            choices=_CHOICES.get(field))
    parser.add_argument("--patch-size", type=options.positive_int, nargs="+", default=None,
                        help="patch size, 2 or 3 values (default: the plan's)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="compile the network with torch.compile")
    parser.add_argument("--no-deep-supervision", action="store_true",
                        help="train without deep-supervision heads")
    parser.add_argument("--no-final-validation", action="store_true",
                        help="skip segmenting the fold's validation cases at the end")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        type=options.checked(parse_assignment),
                        help="set any run_config.json field (JSON value); repeatable")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--continue", dest="continue_", action="store_true",
                      help="resume an interrupted run from checkpoint_latest.pt")
    mode.add_argument("--extend", type=options.positive_int, default=None, metavar="N",
                      help="train a finished (or early-stopped) run N more epochs")
    mode.add_argument("--fresh", action="store_true",
                      help="start over even if the fold folder already holds a run")
    mode.add_argument("--validate-only", action="store_true",
                      help="only segment the fold's validation cases again with the final "
                           "checkpoint (a 3d_lowres fold also rewrites the cascade's inputs)")
    parser.add_argument("--time-budget", type=_minutes, default=None,
                        metavar="MINUTES",
                        help="train for this many minutes, counted from now: after a few timed "
                             "iterations the schedule is fitted so that its decay (v2) or final "
                             "low-lr phase (paper) and the final validation end when the budget "
                             "does. At least one validation interval (run config epoch_minutes, "
                             "default 3: a validation point and a checkpoint at least that "
                             "often). With --continue: a run started with a budget keeps what "
                             "was left of it at its last checkpoint (the minutes since then are "
                             "lost) and fits its schedule to that again; --time-budget M gives "
                             "it M minutes from now instead. On a CPU a new 3D run then trains "
                             "batch 2 unless --batch-size is given")
    parser.add_argument("--init-from", type=Path, default=None, metavar="MODEL",
                        help="fine-tune: start from trained weights (a model folder: the same "
                             "configuration and fold; a fold folder; or a checkpoint file), "
                             f"by default for {FINE_TUNE_EPOCHS} epochs at the recipe's "
                             f"learning rate x {FINE_TUNE_LR_FACTOR}")
    parser.add_argument("--init-from-adapt-head", action="store_true",
                        help="with --init-from: when the label sets differ, start new "
                             "segmentation heads (labels both have keep their rows) instead "
                             "of refusing")


def train_argv(dataset: Path | str, configuration: str, fold: int | str,
               work: Path | str | None = None, device: str | None = None,
               epochs: int | None = None, resume: bool = False,
               init_from: Path | str | None = None, adapt_head: bool = False,
               iterations_per_epoch: int | None = None, val_iterations: int | None = None,
               seed: int | None = None, recipe: str | None = None,
               num_threads: int | None = None, fresh: bool = False,
               final_validation: bool = True, sets: Sequence[str] = (),
               extra: Sequence[str] = (), time_budget: float | None = None,
               lr: float | None = None) -> list[str]:
    """``nnseg train`` as an argument list (``None`` leaves an option at its default).

    ``extra`` are further ``train`` options as built by :func:`train_options_argv` (they
    come before ``--time-budget``, as the Train panel has always ordered them).
    """
    return ["train", str(dataset), configuration, str(fold), *option("--work", work),
            *option("--device", device), *option("--epochs", epochs),
            *train_options_argv(iterations_per_epoch, val_iterations, seed, recipe, num_threads),
            *switch("--continue", resume), *switch("--fresh", fresh),
            *option("--init-from", init_from), *switch("--init-from-adapt-head", adapt_head),
            *switch("--no-final-validation", not final_validation),
            *option("--lr", lr), *repeated("--set", sets), *extra,
            *option("--time-budget", None if time_budget is None else float(time_budget))]


def train_options_argv(iterations_per_epoch: int | None = None,
                       val_iterations: int | None = None, seed: int | None = None,
                       recipe: str | None = None, num_threads: int | None = None,
                       amp: str | None = None) -> list[str]:
    """Schedule and run options of ``nnseg train`` (e.g. a short self-test's), as arguments."""
    return [*option("--iterations-per-epoch", iterations_per_epoch),
            *option("--val-iterations", val_iterations), *option("--seed", seed),
            *option("--recipe", recipe), *option("--num-threads", num_threads),
            *option("--amp", amp)]


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """RunConfig field values given on the command line (only those given)."""
    out: dict[str, Any] = {}
    for flag, (field, _typ, _help) in _OPTIONS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            out[field] = value
    if args.patch_size is not None:
        out["patch_size"] = tuple(args.patch_size)
    if args.compile:
        out["compile"] = True
    if args.no_deep_supervision:
        out["deep_supervision"] = False
    if args.no_final_validation:
        out["final_validation"] = False
    for assignment in args.set:
        key, value = (parse_assignment(assignment) if isinstance(assignment, str)
                      else assignment)
        out[key] = value
    return out


def run(args: argparse.Namespace, progress: Progress) -> int:
    """Entry point of ``nnseg train``."""

    mode = ("continue" if args.continue_ else "extend" if args.extend is not None
            else "fresh" if args.fresh else "validate" if args.validate_only else "new")
    try:
        result = train_fold(args.dataset, args.work, args.configuration, args.fold,
                            overrides=overrides_from_args(args), mode=mode,
                            extend_epochs=args.extend or 0,
                            time_budget_minutes=args.time_budget, init_from=args.init_from,
                            adapt_head=args.init_from_adapt_head, progress=progress)
    finally:
        progress.close()
    progress.event("done", stage="train", run_dir=str(result.run_dir), epochs=result.epochs,
                   stop_reason=result.stop_reason,
                   best_ema_pseudo_dice=result.best_ema_pseudo_dice)
    return 0


__all__ = ["add_arguments", "overrides_from_args", "run", "train_argv", "train_options_argv"]
