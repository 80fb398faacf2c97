"""What the panels read from folders, read again only when a folder changed.

The module re-evaluates its buttons and texts on every parameter or scene change
(``updateGui``); several answers come from disk (the folds of the chosen model, the plan of the
work folder, a batch's inputs). :class:`FolderMemo` keeps each answer with a signature of the
folders it came from (the name, size and modification time of every entry, a few levels deep)
and computes it again only when that signature changes, or after :meth:`FolderMemo.clear`
(the module clears it when a job ends). A signature costs a few ``stat`` calls where the answer
may read JSON files and training logs. No ``qt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from NNSegLib.slicer.folders import is_unset

#: Folders never looked into: many files, none of which any panel answer depends on.
SKIPPED = frozenset({"preprocessed", "validation", "jobs", "__pycache__"})


def folder_signature(folder: Path | str | None, depth: int = 3) -> tuple:
    """``(relative path, size, mtime in ns)`` of every entry of ``folder`` down to ``depth``
    levels (folders in :data:`SKIPPED` are listed but not entered); ``()`` for a missing or
    unset folder, ``(("", size, mtime),)`` for a file."""
    if is_unset(folder):
        return ()
    root = Path(str(folder))
    try:
        st = root.stat()
    except OSError:
        return ()
    if not root.is_dir():
        return (("", st.st_size, st.st_mtime_ns),)
    entries: list[tuple[str, int, int]] = [("", 0, st.st_mtime_ns)]
    _scan(root, "", depth, entries)
    return tuple(entries)


def _scan(folder: Path, prefix: str, depth: int, out: list) -> None:
    try:
        with os.scandir(folder) as it:
            found = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in found:
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError:
            continue
        name = prefix + entry.name
        out.append((name, st.st_size, st.st_mtime_ns))
        if depth > 1 and entry.is_dir() and entry.name not in SKIPPED:
            _scan(Path(entry.path), name + "/", depth - 1, out)


class FolderMemo:
    """Answers computed from folders, kept until one of those folders changes."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, tuple[tuple, Any]] = {}
        self.computed = 0   # how many answers were (re)computed: for tests and logs

    def get(self, key: Hashable, folders: Sequence[tuple[Path | str | None, int]],
            compute: Callable[[], Any]) -> Any:
        """``compute()``'s answer for ``key``, again only when a folder of ``folders``
        (``(folder, depth)`` pairs) changed since it was computed."""
        signature = tuple(folder_signature(f, d) for f, d in folders)
        kept = self._answers.get(key)
        if kept is not None and kept[0] == signature:
            return kept[1]
        answer = compute()
        self.computed += 1
        self._answers[key] = (signature, answer)
        return answer

    def clear(self) -> None:
        """Forget every answer (a job ended: it may have changed what a signature misses)."""
        self._answers.clear()


class NoMemo(FolderMemo):
    """Computes every time (scripts and tests that build one state)."""

    def get(self, key, folders, compute):   # noqa: D102 - as FolderMemo.get
        self.computed += 1
        return compute()


__all__ = ["FolderMemo", "NoMemo", "SKIPPED", "folder_signature"]
