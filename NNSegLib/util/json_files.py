"""Reading the JSON files stages hand to each other, with errors that say what to do.

Every artefact loader (plans, fingerprint, run config, splits, postprocessing rules,
summaries, best configuration) reads through :func:`read_json` or :func:`load_document`,
so a missing, unreadable or malformed file always ends in one :class:`NNSegError` that names
the file, the problem and, where a stage makes the file, the command to run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

from NNSegLib.util.errors import NNSegError

T = TypeVar("T")


def _run_hint(hint: str | None, again: bool = False) -> str:
    if not hint:
        return ""
    return f"; run `{hint}` {'again' if again else 'first'}"


def read_json(path: Path | str, *, expect: type | None = None, hint: str | None = None) -> Any:
    """The parsed content of a JSON file.

    Args:
        path: The file.
        expect: ``dict`` or ``list`` to require that top-level type.
        hint: The command that writes the file (e.g. ``"nnseg plan"``), named in errors.

    Raises:
        NNSegError: naming the file and what is wrong (missing, a folder, permission denied,
            not UTF-8, not JSON, wrong top-level type).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NNSegError(f"{path}: missing{_run_hint(hint)}") from None
    except IsADirectoryError:
        raise NNSegError(f"{path}: is a folder, expected a JSON file") from None
    except PermissionError:
        raise NNSegError(f"{path}: permission denied (cannot read it)") from None
    except UnicodeDecodeError:
        raise NNSegError(f"{path}: not UTF-8 text, expected JSON") from None
    except OSError as e:
        raise NNSegError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise NNSegError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: "
                         f"{e.msg}){_run_hint(hint, again=True)}") from None
    if expect is not None and not isinstance(data, expect):
        kind = "object" if expect is dict else "list" if expect is list else expect.__name__
        raise NNSegError(f"{path}: expected a JSON {kind} at the top level")
    return data


def load_document(path: Path | str, parse: Callable[[Any], T], *, what: str,
                  hint: str | None = None) -> T:
    """Read a JSON file and turn it into an object with ``parse`` (e.g. ``Plans.from_dict``).

    Raises:
        NNSegError: as :func:`read_json`, or when ``parse`` rejects the content (the message
            names the file and ``what`` it should have been).
    """
    data = read_json(path, expect=dict, hint=hint)
    try:
        return parse(data)
    except NNSegError as e:
        raise NNSegError(f"{path}: {e}") from e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise NNSegError(f"{path}: not a valid {what} ({detail}){_run_hint(hint, again=True)}"
                         ) from e


__all__ = ["load_document", "read_json"]
