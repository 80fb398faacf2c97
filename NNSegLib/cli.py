"""The ``nnseg`` command: one subcommand per stage, from an explicit registry.

Each command module defines ``add_arguments(parser)`` and ``run(args, progress) -> int``; the
CLI builds the progress reporter (tqdm, JSON lines, cancel on SIGINT/SIGTERM) and hands it
to the command, so no stage imports this module. Modules are imported only when their
command runs, so ``nnseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Callable, Sequence

from NNSegLib import __version__
from NNSegLib.util.errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK, NNSegError

#: name → (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample-data": ("NNSegLib.data.sample_data", "write the built-in synthetic sample dataset"),
    "check": ("NNSegLib.data.check", "check a raw dataset and report every problem"),
    "fingerprint": ("NNSegLib.planning.fingerprint", "extract the dataset fingerprint"),
    "plan": ("NNSegLib.planning.planner", "derive plans.json (configurations, patch, batch, net)"),
    "preprocess": ("NNSegLib.preprocessing.preprocess",
                   "crop, resample and normalize for each configuration"),
    "train": ("NNSegLib.training.train", "train one configuration and fold"),
    "find-best": ("NNSegLib.postprocessing.find_best",
                  "choose configuration/ensemble and postprocessing"),
    "predict": ("NNSegLib.inference.predict", "segment new images with a trained model"),
    "evaluate": ("NNSegLib.evaluation.evaluate", "compare predictions with references"),
    "export-model": ("NNSegLib.inference.model_package", "pack a trained model into a zip"),
    "import-model": ("NNSegLib.inference.model_package", "unpack and verify a model zip"),
    "demo": ("NNSegLib.demo", "run the whole pipeline on the sample dataset"),
}


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
    parser = argparse.ArgumentParser(prog=f"nnseg {name}", description=help_text)
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


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command has: machine-readable progress and quiet mode."""
    group = parser.add_argument_group("progress")
    group.add_argument(
        "--progress-json", metavar="FILE", default=None,
        help="also write progress events as JSON lines to FILE ('-' for stdout)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    group.add_argument(
        "--stop-file", metavar="FILE", default=None,
        help="stop cleanly (as on Ctrl-C: training writes its checkpoint) once FILE exists",
    )


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
        listeners.append(JsonLinesWriter(open(target, "a", encoding="utf-8")))  # noqa: SIM115
    quiet = getattr(args, "quiet", False) or target == "-"
    return TqdmProgress(token, listeners, disable=True if quiet else None)


def run_command(run: Callable[..., int | None], args: argparse.Namespace, prog: str) -> int:
    """Run a command: build its progress reporter, turn user errors into one line + exit code.

    This is the CLI's error boundary: stages raise :class:`~NNSegLib.util.errors.NNSegError`
    (or a subclass) for anything the user can fix and never print or exit themselves.
    """
    from NNSegLib.util.progress import Cancelled

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
    except (NNSegError, FileNotFoundError) as e:
        _emit(args, "error", f"{prog}: error: {e}")
        return EXIT_BAD_INPUT


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
    args = sub_parser.parse_args(rest)
    args.command = name
    return run_command(run, args, f"nnseg {name}")


if __name__ == "__main__":
    raise SystemExit(main())
