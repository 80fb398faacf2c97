"""Paths as users give them: say exactly what is wrong with a file or folder, in one line.

Every stage reports operating-system errors the same way: the path, then what happened in
plain words (``permission denied``, ``symbolic link loop``, ``no space left on device``)
instead of "does not exist" or a traceback. :func:`describe_os_error` is what the CLI's
error boundary uses for an :class:`OSError` nobody caught earlier; the ``require_*`` helpers
check a path up front, naming the option it came from.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from NNSegLib.util.errors import NNSegError

#: errno → what it means for the user (the rest use the system's own text).
_ERRNO_TEXT = {
    errno.ENOENT: "does not exist",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ELOOP: "symbolic link loop (a link that points back to itself)",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large (the file size limit was reached)",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error (a disk or network problem)",
    errno.EMFILE: "too many open files",
    errno.ENOTEMPTY: "folder is not empty",
    errno.EXDEV: "cannot move across file systems",
}


def describe_errno(code: int | None, fallback: str = "") -> str:
    """Plain words for an ``errno`` value (``fallback`` or the system text otherwise)."""
    if code in _ERRNO_TEXT:
        return _ERRNO_TEXT[code]
    if code is not None and not fallback:
        return os.strerror(code)
    return fallback or "operating-system error"


def describe_os_error(e: OSError, path: Path | str | None = None) -> str:
    """``"<path>: <what happened>"`` for an :class:`OSError` (one line, no errno numbers).

    Args:
        e: The error.
        path: The path to name when the error carries none (or a clearer one).
    """
    what = describe_errno(e.errno, e.strerror or "")
    if e.errno is None and not e.strerror:
        what = str(e) or type(e).__name__
    name = path if path is not None else e.filename
    if name is None:
        return what
    if e.filename2 is not None and path is None:
        return f"{name} -> {e.filename2}: {what}"
    return f"{name}: {what}"


def path_problem(path: Path | str) -> str | None:
    """Why ``path`` cannot be opened for reading, or ``None`` when it can.

    Tells a missing file from a broken link, a link loop, a folder and an unreadable file
    (``os.stat`` alone reports all of them as "not found").
    """
    path = Path(path)
    try:
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        if path.is_symlink():
            return f"broken symbolic link (points to {os.readlink(path)}, which does not exist)"
        return "does not exist"
    except OSError as e:
        return describe_errno(e.errno, e.strerror or str(e))


def require_readable_file(path: Path | str, option: str = "") -> Path:
    """``path`` if it is a readable file, else :class:`NNSegError` saying what it is.

    Args:
        path: The file.
        option: The command-line option it came from (named in the message), if any.
    """
    path = Path(path)
    prefix = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise NNSegError(f"{prefix}: is a folder, expected a file")
    problem = path_problem(path)
    if problem:
        raise NNSegError(f"{prefix}: {problem}")
    return path


def require_output_dir(path: Path | str, option: str = "", create: bool = True) -> Path:
    """Create the output folder ``path`` (and parents) or say why that is impossible.

    Args:
        path: The folder.
        option: The command-line option it came from (named in the message), if any.
        create: Create it now; ``False`` only refuses a file in its place.

    Raises:
        NNSegError: when ``path`` is a file, lies below a file, or cannot be created.
    """
    path = Path(path)
    prefix = f"{option} {path}" if option else str(path)
    if path.exists() and not path.is_dir():
        raise NNSegError(f"{prefix}: is a file, expected a folder")
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NNSegError(f"{prefix}: is a file, expected a folder") from None
    except OSError as e:
        raise NNSegError(f"{prefix}: cannot create the folder "
                         f"({describe_errno(e.errno, e.strerror or str(e))})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise NNSegError(f"{prefix}: permission denied (cannot write into the folder)")
    return path


def is_within(path: Path | str, folder: Path | str) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


def safe_name(text: str, default: str = "model") -> str:
    """A file-name-safe version of ``text``: no separators, no leading dots, never ``..``.

    ``"../../etc"`` → ``"etc"``, ``".."`` → ``default``, ``"my model"`` → ``"my_model"``.
    """
    name = _UNSAFE.sub("_", text).strip("._-")
    return name or default


__all__ = [
    "describe_errno",
    "describe_os_error",
    "is_within",
    "path_problem",
    "require_output_dir",
    "require_readable_file",
    "safe_name",
]
