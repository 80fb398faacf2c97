"""One preprocessed case on disk: its files, its sampled class locations, whether it is done.

The files of a case follow the contract in ``NNSegLib/README.md`` (``<case>.npy``,
``<case>_seg.npy``, ``<case>_locs.npz``, ``<case>.json``); :func:`write_case` writes them
atomically with the properties JSON last, so a case whose JSON exists is complete
(:func:`case_done`). The JSON records the size and modification time of the case's raw
files (:func:`source_stamps`), so :mod:`.preprocess` redoes a case whose files changed.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.util.errors import NNSegError

MAX_LOCATIONS_PER_CLASS = 10000


def class_locations(seg: np.ndarray, num_classes: int, seed: int,
                    max_per_class: int = MAX_LOCATIONS_PER_CLASS) -> dict[str, np.ndarray]:
    """Up to ``max_per_class`` random voxel indices ``(N, 3)`` per foreground class present."""
    rng = np.random.default_rng(seed)
    flat = seg.reshape(-1)
    out = {}
    for k in range(1, num_classes):
        idx = np.flatnonzero(flat == k)
        if idx.size == 0:
            continue
        if idx.size > max_per_class:
            idx = np.sort(rng.choice(idx, max_per_class, replace=False))
        out[f"class_{k}"] = np.stack(np.unravel_index(idx, seg.shape), axis=1).astype(np.int32)
    return out


def case_seed(identifier: str) -> int:
    """A fixed seed per case for location sampling."""
    return zlib.crc32(identifier.encode("utf-8"))


def source_stamps(paths: Sequence[Path | str | None]) -> dict[str, list[int]]:
    """File name → ``[size, mtime_ns]`` of a case's raw files (what marks them changed)."""
    stamps = {}
    for p in paths:
        if p is not None:
            st = Path(p).stat()
            stamps[Path(p).name] = [int(st.st_size), int(st.st_mtime_ns)]
    return stamps


def case_done(folder: Path, identifier: str, sources: dict | None = None) -> bool:
    """The case's properties exist (and, given ``sources``, its raw files are unchanged).

    Cases written before sources were recorded count as unchanged.
    """
    path = folder / f"{identifier}.json"
    if not path.is_file():
        return False
    if sources is None:
        return True
    from NNSegLib.util.json_files import read_json

    try:
        recorded = read_json(path, expect=dict).get("sources")
    except NNSegError:
        return False
    return recorded is None or recorded == sources


def write_case(folder: Path, identifier: str, data: np.ndarray, seg: np.ndarray | None,
               properties: dict, num_classes: int, sources: dict | None = None) -> None:
    """Write one case's files atomically; the properties JSON comes last (marks it done)."""
    from NNSegLib.util.atomic import save_npy, save_npz, write_json

    save_npy(folder / f"{identifier}.npy", data.astype(np.float32, copy=False))
    props = dict(properties, case=identifier)
    if sources is not None:
        props["sources"] = sources
    if seg is not None:
        save_npy(folder / f"{identifier}_seg.npy", seg.astype(np.int8, copy=False))
        locs = class_locations(seg[0], num_classes, case_seed(identifier))
        save_npz(folder / f"{identifier}_locs.npz", **locs)
        props["class_locations"] = {k: int(v.shape[0]) for k, v in locs.items()}
        props["class_voxels"] = {str(k): int(c) for k, c in
                                 enumerate(np.bincount(seg.reshape(-1), minlength=num_classes))
                                 if k > 0}
    write_json(folder / f"{identifier}.json", props)


__all__ = ["MAX_LOCATIONS_PER_CLASS", "case_done", "case_seed", "class_locations",
           "source_stamps", "write_case"]
