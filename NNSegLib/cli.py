"""The ``nnseg`` command: one subcommand per stage, from an explicit registry.

Each command module defines ``add_arguments(parser)`` and ``run(args, progress) -> int``; the
CLI builds the progress reporter (tqdm, JSON lines, cancel on SIGINT/SIGTERM) and hands it
to the command, so no stage imports this module. Modules are imported only when their
command runs, so ``nnseg --help`` stays fast.

Exit codes (:mod:`NNSegLib.util.errors`): 0 done; 2 a problem the user can fix — bad input
or option, a stage not run yet, a file or folder the system refuses (permission, disk full,
link loop …), a run folder another process holds, out of memory — reported as one line
naming the file or option; 130 cancelled (work done so far is kept); 1 a bug in NNSeg
(one line; ``--debug`` shows the traceback of any error).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import sys
from typing import Callable, Sequence

from NNSegLib import __version__
from NNSegLib.util.command_line import add_common_arguments
from NNSegLib.util.errors import (
    EXIT_BAD_INPUT,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_OK,
    NNSegError,
)
from NNSegLib.util.files import describe_os_error

#: name → (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample-data": ("NNSegLib.data.sample_data", "write the built-in synthetic sample dataset"),
    "check": ("NNSegLib.data.check", "check a raw dataset and report every problem"),
    "fingerprint": ("NNSegLib.planning.fingerprint", "extract the dataset fingerprint"),
    "plan": ("NNSegLib.planning.planner", "derive plans.json (configurations, patch, batch, net)"),
    "preprocess": ("NNSegLib.preprocessing.preprocess",
                   "crop, resample and normalize for each configuration"),
    "train": ("NNSegLib.training.train_cli", "train one configuration and fold"),
    "find-best": ("NNSegLib.postprocessing.find_best",
                  "choose configuration/ensemble and postprocessing"),
    "predict": ("NNSegLib.inference.predict", "segment new images with a trained model"),
    "evaluate": ("NNSegLib.evaluation.evaluate", "compare predictions with references"),
    "export-model": ("NNSegLib.inference.model_package", "pack a trained model into a zip"),
    "import-model": ("NNSegLib.inference.model_package", "unpack and verify a model zip"),
    "segment-batch": ("NNSegLib.slicer.batch_job",
                      "segment a batch for review: segmentations, uncertainty, review queue"),
    "review": ("NNSegLib.inference.review_queue",
               "rank a batch by uncertainty; mark cases; add a reviewed case to a dataset"),
    "add-case": ("NNSegLib.data.add_case", "add a (corrected) case to a raw dataset, checked"),
    "archive-model": ("NNSegLib.training.model_versions",
                      "move WORK/results to WORK/model_versions/v<N> before a fine-tune"),
    "compare-models": ("NNSegLib.evaluation.model_comparison",
                       "cross-validation Dice of two models side by side"),
    "demo": ("NNSegLib.demo", "run the whole pipeline on the sample dataset"),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (plus where to find the options)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} "
                                  f"(`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnseg",
        description="Self-configuring U-Net segmentation (the nnU-Net method).",
    )
    parser.add_argument("--version", action="version", version=f"nnseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, Callable[..., int | None]]:
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = _Parser(prog=f"nnseg {name}", description=help_text)
    # A module serving two commands defines add_<cmd>_arguments *and* run_<cmd>; any other
    # module uses add_arguments/run (so a library function named run_<cmd> is not mistaken
    # for the command).
    add = getattr(module, f"add_{name.replace('-', '_')}_arguments", None)
    if add is not None:
        run = getattr(module, f"run_{name.replace('-', '_')}")
    else:
        add, run = module.add_arguments, module.run
    add(parser)
    add_common_arguments(parser)
    return parser, run


def make_progress(args: argparse.Namespace):
    """Build the :class:`~NNSegLib.util.progress.Progress` the command's options ask for."""
    from NNSegLib.util.progress import (
        CancelToken,
        JsonLinesWriter,
        TqdmProgress,
        install_signal_handlers,
        watch_stop_file,
    )

    token = CancelToken()
    install_signal_handlers(token)
    if getattr(args, "stop_file", None):
        watch_stop_file(token, str(args.stop_file))
    listeners = []
    target = getattr(args, "progress_json", None)
    if target == "-":
        listeners.append(JsonLinesWriter(sys.stdout))
    elif target:
        try:
            stream = open(target, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run
        except OSError as e:
            raise NNSegError(f"--progress-json {describe_os_error(e, target)}") from None
        listeners.append(JsonLinesWriter(stream))
    quiet = getattr(args, "quiet", False) or target == "-"
    return TqdmProgress(token, listeners, disable=True if quiet else None)


def run_command(run: Callable[..., int | None], args: argparse.Namespace, prog: str) -> int:
    """Run a command: build its progress reporter, turn every error into one line + exit code.

    This is the CLI's error boundary: stages raise :class:`~NNSegLib.util.errors.NNSegError`
    (or a subclass) for anything the user can fix and never print or exit themselves. An
    :class:`OSError` nobody caught (permission denied, disk full, a file where a folder should
    be …) becomes one line naming the path and the problem, and so does running out of
    memory; all of these exit with 2. Anything else is a bug: one line and exit code 1,
    the traceback with ``--debug`` (which re-raises every error).
    """
    from NNSegLib.util.progress import Cancelled

    debug = bool(getattr(args, "debug", False))
    try:
        progress = make_progress(args)
        code = run(args, progress)
        return EXIT_OK if code is None else int(code)
    except Cancelled as e:
        _emit(args, "error", f"{prog}: cancelled ({e}); work done so far is kept")
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        _emit(args, "error", f"{prog}: interrupted")
        return EXIT_CANCELLED
    except NNSegError as e:
        if debug:
            raise
        _emit(args, "error", f"{prog}: error: {e}")
        return EXIT_BAD_INPUT
    except OSError as e:
        if debug:
            raise
        hint = ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = ("; free some space and run the command again (files written before are "
                    "kept; an interrupted training resumes with --continue)")
        _emit(args, "error", f"{prog}: error: {describe_os_error(e)}{hint}")
        return EXIT_BAD_INPUT
    except MemoryError as e:
        if debug:
            raise
        detail = f" ({e})" if str(e) else ""
        _emit(args, "error", f"{prog}: error: out of memory{detail}; use fewer --workers, "
                             "a smaller batch or patch, or a machine with more memory")
        return EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - the boundary: a bug, reported in one line
        if debug:
            raise
        _emit(args, "error", f"{prog}: internal error: {type(e).__name__}: {_first_line(e)} "
                             "(a bug in NNSeg; run again with --debug for the traceback)")
        return EXIT_ERROR


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"


def _emit(args: argparse.Namespace, kind: str, text: str) -> None:
    print(text, file=sys.stderr)
    if getattr(args, "progress_json", None) == "-":
        print(json.dumps({"event": kind, "message": text}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nnseg``. Returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help", "--version") or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 0
    name, rest = argv[0], argv[1:]
    sub_parser, run = _command_parser(name)
    try:
        args = sub_parser.parse_args(rest)
    except SystemExit as e:   # --help (0) or a bad option (2, message already printed)
        return EXIT_OK if e.code is None else e.code if isinstance(e.code, int) \
            else EXIT_BAD_INPUT
    args.command = name
    return run_command(run, args, f"nnseg {name}")


if __name__ == "__main__":
    raise SystemExit(main())
