"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader (or an interrupted run) therefore only ever sees the old file or the complete
new one, never a partial write.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from NNSegLib.util.errors import NNSegError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions of written files: what ``open()`` would give (``mkstemp`` alone gives 0600).
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Args:
        path: Final destination.
        suffix: Suffix for the temporary file (some writers infer the format from it,
            e.g. ``.nii.gz`` for SimpleITK).

    Yields:
        The temporary path to write to. It is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(path: Path | str, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path | str, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json(path: Path | str, obj: Any, indent: int | None = 2) -> None:
    """Atomically write ``obj`` as JSON (numpy scalars/arrays and paths allowed)."""
    write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def copy_file(source: Path | str, path: Path | str) -> None:
    """Atomically copy ``source`` to ``path`` (content only, normal permissions)."""
    write_bytes(path, Path(source).read_bytes())


def save_npy(path: Path | str, array: np.ndarray) -> None:
    """Atomically save an array as an uncompressed, memory-mappable ``.npy`` file."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """Atomically save named arrays to an uncompressed ``.npz`` (no pickled objects)."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


def write_with(path: Path | str, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Atomically produce ``path`` with ``writer(tmp_path)``."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)


@contextlib.contextmanager
def file_lock(path: Path | str, timeout: float = 30.0, stale: float = 120.0) -> Iterator[None]:
    """Hold ``<path>.lock`` (created exclusively) while the block runs.

    For read-modify-write of small shared JSON files (a review queue written by a batch job
    while the GUI marks cases). A lock older than ``stale`` seconds is taken over (its
    holder died).

    Raises:
        NNSegError: when the lock stays held for ``timeout`` seconds.
    """
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            break
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - lock.stat().st_mtime > stale:
                    lock.unlink()
                    continue
            if time.monotonic() > deadline:
                raise NNSegError(f"{lock}: held by another process for {timeout:.0f} s; "
                                   "delete it if no NNSeg job is running") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
