"""One process at a time per folder: an OS advisory lock that dies with its process.

``nnseg train`` holds the lock of its run folder and ``nnseg preprocess`` that of each
preprocessed configuration folder for as long as they run. The lock is the kernel's
(``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) on a small file in the folder
(:data:`LOCK_FILE`), so it is released however the process ends, ``kill -9`` included: a
lock is never left stuck. The file itself stays and holds the owner's PID and command, so
a refused second process can say who holds the folder.

Worker processes forked while a lock is held inherit its file descriptor; they call
:func:`close_inherited_locks` first thing so that a worker outliving its parent cannot
keep the lock (they close their copy; only the parent's release unlocks).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from NNSegLib.util.errors import NNSegError

#: The lock file's name in a locked folder.
LOCK_FILE = ".nnseg.lock"

#: File descriptors of the locks this process holds (closed by forked workers).
_HELD: dict[int, Path] = {}

# Windows locks a byte range (mandatory): byte 0 is the lock, the owner is written after it.
_OWNER_OFFSET = 1


class FolderLocked(NNSegError):
    """Another process holds the folder's lock; the message names its PID."""

    def __init__(self, message: str, owner: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.owner = owner or {}


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def read_owner(path: Path | str) -> dict[str, Any]:
    """What a lock file says about its (last) owner: ``pid``, ``command``, ``started``."""
    try:
        with open(path, "rb") as f:
            f.seek(_OWNER_OFFSET)
            data = json.loads(f.read().decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_owner(fd: int, what: str) -> None:
    owner = {"pid": os.getpid(), "command": what, "started": round(time.time(), 3),
             "argv": sys.argv}
    data = b"\n" + json.dumps(owner).encode("utf-8") + b"\n"
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, data)


def _describe(owner: dict[str, Any]) -> str:
    pid = owner.get("pid")
    if not pid:
        return "another process"
    command = owner.get("command")
    return f"process {pid}" + (f" ({command})" if command else "")


@contextlib.contextmanager
def folder_lock(folder: Path | str, what: str, remove_if_unused: bool = False
                ) -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (the folder is created if needed).

    Args:
        folder: The folder to lock.
        what: What this process does there (``"nnseg train 3d_fullres fold 0"``), recorded
            for the message another process gets.
        remove_if_unused: When the block leaves nothing but the lock file in a folder it
            created, remove both (a refused request leaves no empty folder behind).

    Yields:
        The lock file's path.

    Raises:
        FolderLocked: when another process holds the lock (naming its PID).
    """
    folder = Path(folder)
    created = not folder.exists()
    path = folder / LOCK_FILE
    fd = _acquire(path, folder)
    try:
        _write_owner(fd, what)
        _HELD[fd] = path
        yield path
    finally:
        _HELD.pop(fd, None)
        if remove_if_unused and created:
            with contextlib.suppress(OSError):
                if [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                    path.unlink()   # still locked: a newcomer gets a new file (see _acquire)
                    folder.rmdir()
        with contextlib.suppress(OSError):
            _unlock(fd)
        os.close(fd)


def _acquire(path: Path, folder: Path) -> int:
    """Open and lock ``path``; retry when the file was replaced while we waited."""
    for _ in range(10):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:   # the folder was removed in between: make it again
            continue
        if not _try_lock(fd):
            os.close(fd)
            owner = read_owner(path)
            raise FolderLocked(
                f"{folder}: in use by {_describe(owner)}; wait for it to finish or stop it "
                f"(the lock is released when that process ends)", owner)
        try:   # the file we locked must still be the one at ``path``
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        _unlock(fd)
        os.close(fd)
    raise NNSegError(f"{path}: the lock file keeps changing; is another program deleting it?")


@contextlib.contextmanager
def file_lock(path: Path | str, timeout: float = 30.0) -> Iterator[None]:
    """Hold the kernel lock of ``<path>.lock`` while the block runs, waiting up to ``timeout``.

    For short read-modify-write sections on small shared JSON files (a review queue that a
    batch job writes while the GUI marks cases). Like :func:`folder_lock` the lock dies with
    its process, so it is never left stuck.

    Raises:
        NNSegError: when another process holds it for ``timeout`` seconds.
    """
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise NNSegError(f"{lock}: held by {_describe(read_owner(lock))} for "
                                 f"{timeout:.0f} s")
            time.sleep(0.05)
        _write_owner(fd, f"updating {Path(path).name}")
        _HELD[fd] = lock
        try:
            yield
        finally:
            _HELD.pop(fd, None)
            with contextlib.suppress(OSError):
                _unlock(fd)
    finally:
        os.close(fd)


def lock_owner(folder: Path | str) -> dict[str, Any] | None:
    """The owner of ``folder``'s lock while some process holds it, else ``None``.

    Takes and releases the lock when it is free (so it never blocks).
    """
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
    finally:
        os.close(fd)
    return read_owner(path) or {"pid": None}


def close_inherited_locks() -> None:
    """Close the lock descriptors a forked child inherited (never unlocking them)."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


__all__ = ["FolderLocked", "LOCK_FILE", "close_inherited_locks", "file_lock", "folder_lock",
           "lock_owner", "read_owner"]
