"""User-facing errors: one base class, one place that turns them into exit codes."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


class NNSegError(Exception):
    """An error the user can fix (bad input, missing stage output); shown without traceback."""


def report_errors(run: Callable[[Any], int | None], args: Any, prog: str) -> int:
    """Run a command, turning known errors into a clear message and an exit code."""
    from NNSegLib.dataset import DatasetError
    from NNSegLib.io import ImageReadError
    from NNSegLib.progress import Cancelled

    try:
        code = run(args)
        return EXIT_OK if code is None else int(code)
    except Cancelled as e:
        _emit(args, "error", f"{prog}: cancelled ({e}); work done so far is kept")
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        _emit(args, "error", f"{prog}: interrupted")
        return EXIT_CANCELLED
    except (NNSegError, DatasetError, ImageReadError, FileNotFoundError) as e:
        _emit(args, "error", f"{prog}: error: {e}")
        return EXIT_BAD_INPUT


def _emit(args: Any, kind: str, text: str) -> None:
    print(text, file=sys.stderr)
    if getattr(args, "progress_json", None) == "-":
        print(json.dumps({"event": kind, "message": text}), flush=True)
