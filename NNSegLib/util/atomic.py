"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader (or an interrupted run) therefore only ever sees the old file or the complete
new one, never a partial write. With ``durable=True`` (checkpoints and final outputs) the
file's data is flushed to the disk (``fsync``) before the rename and the folder after it, so
even a power cut leaves the old or the complete new file.

Temporary files are named ``.<name>.nnseg-tmp-<pid>-<random><suffix>``: a process killed
with ``kill -9`` cannot remove its own, so the next run removes those of dead processes
(:func:`clean_stale_temps`), never those of a process still writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

#: Marks the temporary files and folders of atomic writes (see :func:`clean_stale_temps`).
TEMP_MARK = ".nnseg-tmp-"
_TEMP_RE = re.compile(r"^\..*" + re.escape(TEMP_MARK) + r"(?P<pid>\d+)-")


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporary files for the final name ``name``."""
    return f".{name}{TEMP_MARK}{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True   # it exists (another user's) or we cannot tell: keep its files
    return True


def clean_stale_temps(folder: Path | str) -> list[Path]:
    """Remove the temporary files (and folders) of atomic writes whose process is gone.

    Only ``folder``'s own entries are looked at (not sub-folders). Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def fsync_path(path: Path | str) -> None:
    """Flush a file's (or folder's) data to the disk; a no-op where that is impossible."""
    flags = os.O_RDONLY if Path(path).is_dir() else os.O_RDWR
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:   # e.g. folders on Windows or some network file systems
        pass
    finally:
        os.close(fd)



def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions of written files: what ``open()`` would give (``mkstemp`` alone gives 0600).
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = "", durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Args:
        path: Final destination.
        suffix: Suffix for the temporary file (some writers infer the format from it,
            e.g. ``.nii.gz`` for SimpleITK).
        durable: ``fsync`` the file before the rename and its folder after it.

    Yields:
        The temporary path to write to. It is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix or ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        if durable:
            fsync_path(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(e, OSError) and e.errno is not None and (
                e.filename is None or TEMP_MARK in str(e.filename)):
            # name the file the user knows, not the temporary one
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    if durable:
        fsync_path(path.parent)


def write_bytes(path: Path | str, data: bytes, durable: bool = False) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path | str, text: str, durable: bool = False) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"), durable)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json(path: Path | str, obj: Any, indent: int | None = 2,
               durable: bool = False) -> None:
    """Atomically write ``obj`` as JSON (numpy scalars/arrays and paths allowed)."""
    write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n", durable)


def copy_file(source: Path | str, path: Path | str) -> None:
    """Atomically copy ``source`` to ``path`` (content only, normal permissions)."""
    write_bytes(path, Path(source).read_bytes())


def save_npy(path: Path | str, array: np.ndarray) -> None:
    """Atomically save an array as an uncompressed, memory-mappable ``.npy`` file."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """Atomically save named arrays to an uncompressed ``.npz`` (no pickled objects)."""
    save_arrays(path, arrays)


def save_arrays(path: Path | str, arrays: dict[str, np.ndarray], durable: bool = False) -> None:
    """:func:`save_npz` with the arrays as a dict (and optionally durable)."""
    with atomic_path(path, suffix=".npz", durable=durable) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


def write_with(path: Path | str, writer: Callable[[Path], None], suffix: str = "",
               durable: bool = False) -> None:
    """Atomically produce ``path`` with ``writer(tmp_path)``."""
    with atomic_path(path, suffix=suffix, durable=durable) as tmp:
        writer(tmp)


def temp_dir(final: Path | str) -> Path:
    """A new empty temporary folder next to ``final`` (removed by :func:`clean_stale_temps`
    once this process is gone)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
