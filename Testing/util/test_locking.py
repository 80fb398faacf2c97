from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from NNSegLib.util.locking import (
    LOCK_FILE,
    FolderLocked,
    close_inherited_locks,
    folder_lock,
    lock_owner,
    read_owner,
)

REPO = Path(__file__).resolve().parents[2]


def test_second_holder_is_refused_with_the_owner(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with folder_lock(folder, "nnseg train x fold 0") as path:
        assert path == folder / LOCK_FILE
        owner = lock_owner(folder)
        assert owner is not None and owner["pid"] == os.getpid()
        assert owner["command"] == "nnseg train x fold 0"
        with pytest.raises(FolderLocked, match=rf"in use by process {os.getpid()} "
                                               r"\(nnseg train x fold 0\)"):
            with folder_lock(folder, "other"):
                pass
    assert lock_owner(folder) is None
    assert read_owner(folder / LOCK_FILE)["pid"] == os.getpid()   # the file stays
    with folder_lock(folder, "again"):
        pass


def test_unused_new_folder_is_removed(tmp_path: Path) -> None:
    with folder_lock(tmp_path / "new", "x", remove_if_unused=True):
        pass
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "used", "x", remove_if_unused=True):
        (tmp_path / "used" / "file").write_text("kept")
    assert (tmp_path / "used" / "file").is_file()
    (tmp_path / "old").mkdir()
    with folder_lock(tmp_path / "old", "x", remove_if_unused=True):
        pass
    assert (tmp_path / "old").is_dir()     # not made by the lock: left alone


def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        from NNSegLib.util.locking import folder_lock
        with folder_lock({str(tmp_path)!r}, "holder"):
            print("locked", flush=True)
            sys.stdin.read()
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        owner = lock_owner(tmp_path)
        assert owner is not None and owner["pid"] == proc.pid
        proc.kill()
        proc.wait(timeout=30)
        assert lock_owner(tmp_path) is None
        with folder_lock(tmp_path, "next"):
            pass
    finally:
        proc.kill()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_forked_child_closing_its_copy_keeps_the_lock(tmp_path: Path) -> None:
    with folder_lock(tmp_path, "parent"):
        pid = os.fork()
        if pid == 0:   # a worker: closes its inherited copy, must not unlock the parent's
            close_inherited_locks()
            os._exit(0)
        os.waitpid(pid, 0)
        assert lock_owner(tmp_path) is not None


def test_file_lock_waits_for_the_holder_and_gives_up_after_the_timeout(tmp_path):
    """The short read-modify-write lock of shared JSON files (review queue, model versions)."""
    import subprocess
    import sys
    import time as _time

    from NNSegLib.util.errors import NNSegError
    from NNSegLib.util.locking import file_lock

    target = tmp_path / "queue.json"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from NNSegLib.util.locking import file_lock\n"
         f"with file_lock({str(target)!r}):\n"
         "    print('held', flush=True); time.sleep(1.5)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(NNSegError, match=r"queue\.json\.lock: held by process"):
        with file_lock(target, timeout=0.2):
            pass
    start = _time.monotonic()
    with file_lock(target, timeout=10):   # waits until the holder leaves
        assert _time.monotonic() - start > 0.3
    holder.wait(timeout=10)
