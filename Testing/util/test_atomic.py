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
