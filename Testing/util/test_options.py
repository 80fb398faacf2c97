from __future__ import annotations

import argparse

import pytest

from NNSegLib.util.options import coerce, fraction, integer, number, positive_int


def test_numbers_are_checked_when_given() -> None:
    assert positive_int("3") == 3
    for bad in ("0", "-1", "abc", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    assert fraction("0.25") == 0.25
    for bad in ("nan", "inf", "1.5", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError):
            fraction(bad)
    step = number(0.0, 1.0, low_open=True)
    with pytest.raises(argparse.ArgumentTypeError, match=r"> 0 and <= 1, got '0'"):
        step("0")
    assert integer(None, 4)("-7") == -7


@pytest.mark.parametrize("value, annotation, expected", [
    (3, "int", 3), (3.0, "int", 3), (2, "float", 2.0), (True, "bool", True),
    ("adam", "str", "adam"), (None, "int | None", None), ([1, 2], "tuple[int, ...]", (1, 2)),
    ([[1, 2]], "tuple[tuple[int, ...], ...]", ((1, 2),)),
    ([1, 2], "tuple[int, ...] | None", (1, 2)),
])
def test_coerce_to_declared_types(value, annotation, expected) -> None:
    assert coerce(value, annotation, "f") == expected


@pytest.mark.parametrize("value, annotation", [
    ("abc", "float"), ("abc", "int"), (2.5, "int"), (True, "int"), (1, "bool"), (None, "int"),
    ([], "tuple[int, ...]"), ([1, "x"], "tuple[int, ...]"), (3, "str"), (float("nan"), "float"),
])
def test_coerce_refuses_wrong_types(value, annotation) -> None:
    with pytest.raises(ValueError, match="^f"):
        coerce(value, annotation, "f")
