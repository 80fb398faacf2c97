"""The CLI's error boundary: one line and exit code 2 for what a user can fix, exit code 1
and one line for a bug (its traceback with --debug), 130 for a cancel."""

from __future__ import annotations

import errno
import types

import pytest

from NNSegLib import cli
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Cancelled

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


def _run_raising(monkeypatch, error: BaseException, *argv: str) -> int:
    def run(args, progress):
        raise error

    def add(parser):
        parser.add_argument("x", nargs="?")

    fake = types.SimpleNamespace(add_arguments=add, run=run)
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: fake)
    return cli.main(["check", *argv])


@pytest.mark.parametrize("error, code, line", [
    (NNSegError("x.json: missing"), 2, "nnseg check: error: x.json: missing"),
    (PermissionError(errno.EACCES, "Permission denied", "/d/labelsTr"), 2,
     "nnseg check: error: /d/labelsTr: permission denied"),
    (OSError(errno.ENOSPC, "No space left on device", "/w/a.npy"), 2,
     "nnseg check: error: /w/a.npy: no space left on device; free some space"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "/d/a.nii.gz"), 2,
     "nnseg check: error: /d/a.nii.gz: symbolic link loop"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/o"), 2,
     "nnseg check: error: /o: is a folder, expected a file"),
    (MemoryError(), 2, "nnseg check: error: out of memory; use fewer --workers"),
    (Cancelled("received SIGTERM"), 130, "nnseg check: cancelled (received SIGTERM); work done"),
    (TypeError("unsupported operand"), 1, "nnseg check: internal error: TypeError: unsupported "
                                          "operand (a bug in NNSeg; run again with --debug"),
])
def test_every_error_is_one_line(monkeypatch, capsys, error, code, line) -> None:
    assert _run_raising(monkeypatch, error) == code
    err = capsys.readouterr().err
    assert err.startswith(line) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("error", [TypeError("bug"), NNSegError("x"),
                                   OSError(errno.EACCES, "denied", "f")])
def test_debug_shows_the_traceback(monkeypatch, error) -> None:
    with pytest.raises(type(error)):
        _run_raising(monkeypatch, error, "--debug")


def test_option_errors_are_one_line_and_exit_2(capsys) -> None:
    assert cli.main(["check", "ds", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nnseg check: error: argument --workers: must be an integer >= 1, got '0' "
                   "(`nnseg check --help` lists the options)"]
    assert cli.main(["train", "ds", "3d_fullres", "0", "--set", "lr=abc"]) == 2
    assert "argument --set: 'lr=abc': lr: expected a number" in capsys.readouterr().err
