"""Building ``nnseg`` argument lists: small helpers and the options every command has.

Each command module owns its options twice: ``add_arguments`` (how they are parsed) and an
``*_argv`` builder beside it (how the panels, ``nnseg demo`` and ``bench/`` spell them), so a
flag is written in one place only. The options every command shares (progress, quiet, debug,
stop file) are defined here, for the CLI and for the job runners.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Sequence, Union

Value = Union[str, int, float, Path]

PROGRESS_JSON = "--progress-json"
STOP_FILE = "--stop-file"


def option(flag: str, value: Value | None) -> list[str]:
    """``[flag, value]``, or nothing when ``value`` is ``None``."""
    return [] if value is None else [flag, _text(value)]


def many(flag: str, values: Iterable[Value] | None) -> list[str]:
    """``[flag, *values]`` (an ``nargs="+"`` option), or nothing when there are none."""
    items = [_text(v) for v in values] if values is not None else []
    return [flag, *items] if items else []


def switch(flag: str, on: bool) -> list[str]:
    """``[flag]`` when ``on``."""
    return [flag] if on else []


def repeated(flag: str, values: Iterable[Value]) -> list[str]:
    """``[flag, v1, flag, v2, …]`` (an ``action="append"`` option)."""
    return [a for v in values for a in (flag, _text(v))]


def _text(value: Value) -> str:
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command has: machine-readable progress, quiet and debug mode."""
    group = parser.add_argument_group("progress")
    group.add_argument(
        "--progress-json", metavar="FILE", default=None,
        help="also write progress events as JSON lines to FILE ('-' for stdout)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    group.add_argument("--debug", action="store_true",
                       help="show the full traceback of an error (for reporting bugs)")
    group.add_argument(
        "--stop-file", metavar="FILE", default=None,
        help="stop cleanly (as on Ctrl-C: training writes its checkpoint) once FILE exists",
    )


def common_argv(progress_json: Path | str | None = None, stop_file: Path | str | None = None,
                quiet: bool = False, debug: bool = False) -> list[str]:
    """The shared options, in the order the job runners have always passed them."""
    return (option(PROGRESS_JSON, progress_json) + option(STOP_FILE, stop_file)
            + switch("--quiet", quiet) + switch("--debug", debug))


def has_progress_json(argv: Sequence[str]) -> bool:
    return PROGRESS_JSON in argv


def has_stop_file(argv: Sequence[str]) -> bool:
    return STOP_FILE in argv


__all__ = ["PROGRESS_JSON", "STOP_FILE", "add_common_arguments", "common_argv",
           "has_progress_json", "has_stop_file", "many", "option", "repeated", "switch"]
