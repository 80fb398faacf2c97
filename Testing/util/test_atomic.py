from __future__ import annotations

import os

import numpy as np
import pytest

from NNSegLib.util.atomic import FILE_MODE, atomic_path, save_npy, write_json
from NNSegLib.util.json_files import read_json


def test_written_files_get_normal_permissions_and_no_temp_leftovers(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3)})
    save_npy(tmp_path / "b.npy", np.ones((2, 3), np.float32))
    assert read_json(tmp_path / "a.json") == {"x": 1.5, "y": [0, 1, 2]}
    assert np.load(tmp_path / "b.npy", mmap_mode="r").shape == (2, 3)
    for name in ("a.json", "b.npy"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == FILE_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.npy"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "c.json"
    write_json(target, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{partial")
            raise RuntimeError("interrupted")
    assert read_json(target) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    from NNSegLib.util.atomic import TEMP_MARK, clean_stale_temps, temp_dir, temp_prefix

    dead = 4_000_000
    while True:
        try:
            os.kill(dead, 0)
            dead -= 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead -= 1
    stale = tmp_path / f".a.npy{TEMP_MARK}{dead}-xyz.npy"
    stale.write_bytes(b"half")
    stale_dir = tmp_path / f".m{TEMP_MARK}{dead}-abc"
    (stale_dir / "sub").mkdir(parents=True)
    mine = tmp_path / f"{temp_prefix('b.json')}q.tmp"
    mine.write_text("being written")
    other = tmp_path / ".hidden"
    other.write_text("not ours")
    assert sorted(clean_stale_temps(tmp_path)) == sorted([stale, stale_dir])
    assert mine.exists() and other.exists()
    assert temp_dir(tmp_path / "model").name.startswith(temp_prefix("model"))


def test_write_errors_name_the_final_file(tmp_path, monkeypatch):
    import errno

    from NNSegLib.util.atomic import write_bytes

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tmp_path), "write_bytes", full)
    with pytest.raises(OSError) as info:
        write_bytes(tmp_path / "x.json", b"{}", durable=True)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.json")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
