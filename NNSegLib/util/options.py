"""Command-line values checked when they are given: type and range, one clear message.

``argparse`` turns an :class:`argparse.ArgumentTypeError` raised by a ``type=`` function into
``nnseg CMD: error: argument --epochs: must be an integer >= 1, got '0'`` and exit code 2,
so a bad number never reaches a stage (where it would crash or be silently changed).

:func:`coerce` converts a JSON value to a dataclass field's declared type (``int``,
``float``, ``bool``, ``str``, ``tuple[int, ...]``, ``X | None`` …); ``plan --override`` and
``train --set`` use it to check a value against the field it is meant for.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any, Callable

Number = float


def _range_text(low: Number | None, high: Number | None, low_open: bool,
                high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def _in_range(value: Number, low: Number | None, high: Number | None, low_open: bool,
              high_open: bool) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not _in_range(value, low, high, False, False):
            raise argparse.ArgumentTypeError(
                f"must be an integer {_range_text(low, high, False, False)}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite numbers in the given (half-)open range."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if not _in_range(value, low, high, low_open, high_open):
            raise argparse.ArgumentTypeError(
                f"must be a number {_range_text(low, high, low_open, high_open)}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


#: The common cases.
positive_int = integer(1)
non_negative_int = integer(0)
positive_number = number(0.0, low_open=True)
non_negative_number = number(0.0)
fraction = number(0.0, 1.0)


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a parser raising ``ValueError``/``NNSegError`` so argparse shows its message."""

    def wrapper(text: str) -> Any:
        try:
            return parse(text)
        except argparse.ArgumentTypeError:
            raise
        except Exception as e:  # noqa: BLE001 - any rejection becomes the option's message
            raise argparse.ArgumentTypeError(str(e)) from None

    wrapper.__name__ = getattr(parse, "__name__", "value")
    return wrapper


# --- values for typed dataclass fields ----------------------------------------------------
def parse_json_value(text: str) -> Any:
    """``text`` as JSON, else the text itself (so ``amp=off`` needs no quotes)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


_OPTIONAL = re.compile(r"^(?:Optional\[(?P<a>.+)\]|(?P<b>.+?)\s*\|\s*None|None\s*\|\s*(?P<c>.+))$")
_TUPLE = re.compile(r"^tuple\[(?P<inner>.+),\s*\.\.\.\]$")


def coerce(value: Any, annotation: str, name: str) -> Any:
    """``value`` converted to the type written in ``annotation`` (a dataclass field's).

    Integers given for floats become floats; lists become tuples; ``None`` is only allowed
    for ``X | None``. Ranges are the dataclass's own business (its ``validated``).

    Raises:
        ValueError: ``"<name>: expected <type>, got <value>"``.
    """
    annotation = annotation.strip()
    m = _OPTIONAL.match(annotation)
    if m:
        if value is None:
            return None
        return coerce(value, m["a"] or m["b"] or m["c"], name)
    m = _TUPLE.match(annotation)
    if m:
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{name}: expected a non-empty list like [1, 2], got "
                             f"{json.dumps(value)}")
        return tuple(coerce(v, m["inner"], f"{name}[{i}]") for i, v in enumerate(value))
    if annotation == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name}: expected true or false, got {json.dumps(value)}")
    if annotation == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{name}: expected an integer, got {json.dumps(value)}")
    if annotation == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value}")
            return float(value)
        raise ValueError(f"{name}: expected a number, got {json.dumps(value)}")
    if annotation == "str":
        if isinstance(value, str):
            return value
        raise ValueError(f"{name}: expected a text value, got {json.dumps(value)}")
    return value


__all__ = [
    "checked",
    "coerce",
    "fraction",
    "integer",
    "non_negative_int",
    "non_negative_number",
    "number",
    "parse_json_value",
    "positive_int",
    "positive_number",
]
