"""A small complete NNSeg world for fault injection, and the tools to break it.

:func:`build_world` makes, once per session, a raw dataset (5 small cases), its work folder
(fingerprint, a tiny plan, preprocessed data, fold 0 trained for one epoch with its
validation), an exported model zip, an input folder and a prediction. Each fault test gets
its own copy (:class:`World`), breaks one thing, runs ``nnseg`` in-process and then compares
the copy with a snapshot taken before the run (:func:`snapshot`, :func:`lost_or_changed`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

TESTING = Path(__file__).resolve().parents[1]
if str(TESTING) not in sys.path:
    sys.path.insert(0, str(TESTING))

from conftest import tiny_plans, write_dataset  # noqa: E402

from NNSegLib.util.atomic import TEMP_MARK  # noqa: E402
from NNSegLib.util.locking import LOCK_FILE  # noqa: E402

DATASET_NAME = "Dataset001_Faults"
TRAIN_FAST = ["--epochs", "1", "--iterations-per-epoch", "2", "--val-iterations", "1",
              "--device", "cpu", "--num-threads", "1", "--quiet"]


@dataclass
class World:
    """One copy of the world (paths) plus what a fault arms around the run."""

    root: Path
    during: list = field(default_factory=list)   # context managers entered around the run

    @property
    def ds(self) -> Path:
        return self.root / DATASET_NAME

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def results(self) -> Path:
        return self.work / "results"

    @property
    def run0(self) -> Path:
        return self.results / "3d_fullres" / "fold_0"

    @property
    def pre(self) -> Path:
        return self.work / "preprocessed" / "3d_fullres"

    @property
    def zip(self) -> Path:
        return self.root / "model.zip"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def image(self, case: int = 1) -> Path:
        return self.ds / "imagesTr" / f"case_{case:03d}_0000.nii.gz"

    def label(self, case: int = 1) -> Path:
        return self.ds / "labelsTr" / f"case_{case:03d}.nii.gz"

    def placeholders(self) -> dict[str, str]:
        """Text of the catalogue's placeholders in this world."""
        return {"DATASET": str(self.ds), "WORK": str(self.work), "MODEL": str(self.results),
                "ZIP": str(self.zip), "IMAGES": str(self.images), "OUT": str(self.out),
                "ROOT": str(self.root)}


def build_world(root: Path) -> World:
    """Make the golden world in ``root`` (about 8 s, mostly torch and one tiny training)."""
    from NNSegLib.cli import main

    world = World(root)
    write_dataset(world.ds, num_cases=5, shape=(12, 16, 16), seed=3)
    ds, work = str(world.ds), str(world.work)
    assert main(["fingerprint", ds, "--work", work, "--quiet", "--workers", "1"]) == 0
    tiny_plans().save(world.work / "plans.json")
    assert main(["preprocess", ds, "--work", work, "--workers", "1", "--quiet"]) == 0
    assert main(["train", ds, "3d_fullres", "0", "--work", work, *TRAIN_FAST]) == 0
    assert main(["export-model", str(world.results), str(world.zip), "--quiet"]) == 0
    world.images.mkdir()
    shutil.copy(world.image(0), world.images)
    assert main(["predict", "-i", str(world.images), "-o", str(world.out), "-m",
                 str(world.results), "--device", "cpu", "--quiet"]) == 0
    return world


def copy_world(golden: World, root: Path) -> World:
    shutil.copytree(golden.root, root, symlinks=True)
    return World(root)


# --- snapshots ------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, str]:
    """Relative path → SHA-1 of every file below ``root`` (lock files left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name == LOCK_FILE or path.is_symlink() or not path.is_file():
            continue
        try:
            out[str(path.relative_to(root))] = hashlib.sha1(path.read_bytes()).hexdigest()
        except PermissionError:
            out[str(path.relative_to(root))] = "unreadable"
    return out


def lost_or_changed(before: dict[str, str], after: dict[str, str],
                    allowed: tuple[str, ...] = ()) -> list[str]:
    """Files of ``before`` that are gone or different in ``after`` (``allowed`` globs skip)."""
    bad = []
    for name, digest in before.items():
        if any(fnmatch.fnmatch(name, pattern) for pattern in allowed):
            continue
        if after.get(name) != digest:
            bad.append(f"{name}: {'deleted' if name not in after else 'changed'}")
    return bad


def temp_leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"*{TEMP_MARK}*"))


# --- fault tools ---------------------------------------------------------------------------
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def file_permissions_apply() -> Iterator[None]:
    """Make ``chmod`` matter for this thread, also as root.

    Root bypasses file permissions through two capabilities; they are dropped from this
    thread's *effective* set (and put back afterwards), so an unreadable file is unreadable.
    """
    if os.geteuid() != 0:
        yield
        return
    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("running as root without Linux capabilities")
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("cannot read this thread's capabilities")
    saved = data[0].effective
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE to make chmod matter for root")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)


@contextlib.contextmanager
def chmod_during(path: Path, mode: int) -> Iterator[None]:
    """``chmod`` a path for the block (and restore it, so the copy can be removed)."""
    old = path.stat().st_mode & 0o7777
    os.chmod(path, mode)
    try:
        yield
    finally:
        os.chmod(path, old)


def dead_pid() -> int:
    """A process id no process has now (for stale temporary files)."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1
