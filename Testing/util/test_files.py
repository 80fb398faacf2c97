from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from NNSegLib.util.errors import NNSegError
from NNSegLib.util.files import (
    describe_os_error,
    path_problem,
    require_output_dir,
    require_readable_file,
    safe_name,
)


def test_os_errors_in_plain_words() -> None:
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/d/x.pt")) == (
        "/d/x.pt: no space left on device")
    assert describe_os_error(PermissionError(errno.EACCES, "Permission denied", "a")) == (
        "a: permission denied")
    assert describe_os_error(OSError(errno.EXDEV, "x", "a", None, "b")) == (
        "a -> b: cannot move across file systems")
    assert describe_os_error(OSError(errno.ENOSPC, "No space")) == "no space left on device"


def test_path_problems_are_told_apart(tmp_path: Path) -> None:
    assert path_problem(tmp_path / "missing") == "does not exist"
    (tmp_path / "loop").symlink_to("loop")
    assert "symbolic link loop" in str(path_problem(tmp_path / "loop"))
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    assert "broken symbolic link" in str(path_problem(tmp_path / "dangling"))
    (tmp_path / "ok").write_text("x")
    assert path_problem(tmp_path / "ok") is None
    assert require_readable_file(tmp_path / "ok") == tmp_path / "ok"
    with pytest.raises(NNSegError, match="--in .*: is a folder"):
        require_readable_file(tmp_path, "--in")


def test_output_folders(tmp_path: Path) -> None:
    assert require_output_dir(tmp_path / "a" / "b", "-o").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(NNSegError, match=r"-o .*f: is a file, expected a folder"):
        require_output_dir(tmp_path / "f", "-o")
    with pytest.raises(NNSegError, match=r"cannot create the folder \(a part of the path"):
        require_output_dir(tmp_path / "f" / "sub", "-o")


@pytest.mark.parametrize("text, name", [("..", "model"), ("...", "model"), ("../../etc", "etc"),
                                        ("my model v2", "my_model_v2"), ("/", "model"),
                                        (".hidden", "hidden"), ("a\\b", "a_b")])
def test_safe_names(text: str, name: str) -> None:
    assert safe_name(text) == name
    assert os.sep not in safe_name(text) and safe_name(text) not in (".", "..")
