"""The options every segmenting command shares, and ``nnseg predict`` as an argument list.

``nnseg predict`` (:mod:`.predict`) and ``nnseg segment-batch``
(:mod:`NNSegLib.slicer.batch_job`) add their inputs, model, step and CPU options with the
``add_*_arguments`` functions here; :func:`predict_argv` and :func:`predict_options_argv`
build the command lines the Slicer panels, the demo and the benchmarks run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from NNSegLib.util import host_memory, options
from NNSegLib.util.command_line import many, option, switch


def add_input_model_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    """``-i``, ``-o``, ``-m``, ``-f``: the options every command that segments shares."""
    parser.add_argument("-i", "--input", nargs="+", required=True, type=Path,
                        help="image files or folders (channels as <case>_0000, _0001, …)")
    parser.add_argument("-o", "--output", required=True, type=Path, help=output_help)
    parser.add_argument("-m", "--model", required=True, type=Path,
                        help="model folder (WORK/results) or an nnU-Net v2 results folder")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to ensemble (default: every trained fold)")


def add_step_arguments(parser: argparse.ArgumentParser, fast_help: str) -> None:
    """``--step`` and ``--fast`` (resolved by :func:`.fast_mode.run_settings`)."""
    parser.add_argument("--step", type=options.number(0.0, 1.0, low_open=True), default=None,
                        help="sliding-window step as a fraction of the patch (default 0.5; "
                             "1.0 with --fast)")
    parser.add_argument("--fast", action="store_true", help=fast_help)


def add_cpu_arguments(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--host-memory``: how a segmenting command uses the CPU."""
    parser.add_argument("--threads", type=options.non_negative_int, default=0,
                        help="CPU threads for torch (default: all this process may use)")
    parser.add_argument("--host-memory", default="reuse", choices=host_memory.SETTINGS,
                        help="CPU only: reuse freed memory between windows and cases (faster; "
                             "the process holds its peak until it ends) or leave the C "
                             "library's defaults")


def predict_argv(inputs: Sequence[Path | str], output: Path | str, model: Path | str,
                 folds: Sequence[str | int] = (), configuration: str | None = None,
                 device: str | None = None, fast: bool = False, tta: bool = True,
                 uncertainty: bool = False, postprocessing: bool = True,
                 allow_unfinished: bool = False, precision: str | None = None,
                 threads: int | None = None, command: str = "predict") -> list[str]:
    """``nnseg predict`` (or, with ``command``, another segmenting command's shared options)
    as an argument list."""
    return [command, "-i", *[str(i) for i in inputs], "-o", str(output), "-m", str(model),
            *option("--config", configuration), *option("--device", device),
            *predict_options_argv(fast, tta, uncertainty, postprocessing, allow_unfinished,
                                  precision, threads),
            *many("--folds", folds)]


def predict_options_argv(fast: bool = False, tta: bool = True, uncertainty: bool = False,
                         postprocessing: bool = True, allow_unfinished: bool = False,
                         precision: str | None = None, threads: int | None = None) -> list[str]:
    """How ``nnseg predict`` runs (everything but inputs, output, model and folds), as
    arguments (only what differs from the defaults)."""
    return [*switch("--fast", fast), *switch("--no-tta", not tta),
            *switch("--uncertainty", uncertainty),
            *switch("--no-postprocessing", not postprocessing),
            *switch("--allow-unfinished", allow_unfinished), *option("--precision", precision),
            *option("--threads", threads)]


__all__ = ["add_cpu_arguments", "add_input_model_arguments", "add_step_arguments",
           "predict_argv", "predict_options_argv"]
