"""How each fault of the catalogue is made: small functions that break a copy of the world.

A *setup* takes a :class:`~world.World`, breaks one thing (a file, a permission, a lock held
by this process, a write that fails like a full disk) and returns the ``nnseg`` arguments to
run; what must be active only while the command runs goes into ``world.during``.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Callable, Iterator
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from world import (  # noqa: E402
    TRAIN_FAST,
    World,
    chmod_during,
    dead_pid,
    file_permissions_apply,
)

from NNSegLib.util.locking import folder_lock  # noqa: E402


# --- helpers for the setups -----------------------------------------------------------------
def write(path: Path, array: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> None:
    from conftest import write_image

    write_image(path, array, spacing)


def read(path: Path) -> np.ndarray:
    from NNSegLib.data.io import SimpleITKIO

    return SimpleITKIO().read(path)[0]


def _truncate_nifti(path: Path) -> None:
    """Rewrite a .nii.gz as a valid gzip stream holding only half of its voxel bytes."""
    raw = gzip.decompress(path.read_bytes())
    offset = int(np.frombuffer(raw[108:112], "<f4")[0])
    keep = offset + (len(raw) - offset) // 2
    path.write_bytes(gzip.compress(raw[:keep]))


def _write_2d(path: Path, like: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(read(like)[read(like).shape[0] // 2])
    sitk.WriteImage(image, str(path))


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def lock(folder: Path, what: str):
    return folder_lock(folder, what)


def _repack(zip_path: Path, out: Path, replace: dict[str, bytes]) -> Path:
    """A copy of a model zip with some files replaced (manifest checksums updated)."""
    with zipfile.ZipFile(zip_path) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(files.pop("manifest.json"))
    files.update(replace)
    manifest["files"] = {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                         for n, d in files.items()}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            zf.writestr(name, data)
    return out


def checkpoint_bytes(state: dict) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def _fail_write(error: int, writer: str):
    """Patch ``writer`` (``numpy.save(file, array)`` or ``torch.save(obj, file)``) to write a
    little, then fail like a full disk (torch wraps the OSError in a RuntimeError)."""

    def failing(*args, **kwargs):
        target = args[1] if writer == "torch.save" else args[0]
        if isinstance(target, (str, Path)):
            Path(target).write_bytes(b"partial")
        else:
            target.write(b"partial")
        cause = OSError(error, os.strerror(error))
        if writer == "torch.save":
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from cause
        raise cause

    return mock.patch(writer, side_effect=failing)


def unfinished_fold(w: World, fold: int = 1) -> Path:
    """A fold that has trained one epoch and has no final checkpoint."""
    run = w.results / "3d_fullres" / f"fold_{fold}"
    run.mkdir(parents=True)
    for name in ("checkpoint_best.pt", "checkpoint_latest.pt", "run_config.json", "log.jsonl"):
        shutil.copy(w.run0 / name, run / name)
    return run


def predict_cmd(w: World, *extra: str, out: str = "{ROOT}/pred") -> list[str]:
    return ["predict", "-i", str(w.images), "-o", out.format(ROOT=w.root), "-m",
            str(w.results), "--device", "cpu", "--no-tta", "--quiet", *extra]


def check_cmd(w: World, *extra: str) -> list[str]:
    return ["check", str(w.ds), "--workers", "1", "--quiet", *extra]


def preprocess_cmd(w: World, *extra: str) -> list[str]:
    return ["preprocess", str(w.ds), "--work", str(w.work), "--workers", "1", "--quiet", *extra]


def train_cmd(w: World, fold: str = "0", *extra: str) -> list[str]:
    return ["train", str(w.ds), "3d_fullres", fold, "--work", str(w.work), *TRAIN_FAST, *extra]


def plan_cmd(w: World, *extra: str) -> list[str]:
    return ["plan", str(w.ds), "--work", str(w.work), "--quiet", *extra]


def import_cmd(w: World, *extra: str) -> list[str]:
    return ["import-model", str(w.zip), "--quiet", *extra]


# --- setups (each breaks one thing) ------------------------------------------------------
def unreadable(path_of: Callable[[World], Path], argv: Callable[[World], list[str]]):
    def setup(w: World) -> list[str]:
        w.during += [chmod_during(path_of(w), 0), file_permissions_apply()]
        return argv(w)
    return setup


def symlink_loop(w: World) -> list[str]:
    w.image(1).unlink()
    os.symlink(w.image(1).name, w.image(1))
    return check_cmd(w)


def truncated(w: World) -> list[str]:
    _truncate_nifti(w.image(1))
    return check_cmd(w)


def two_d(w: World) -> list[str]:
    _write_2d(w.image(1), w.image(1))
    _write_2d(w.label(1), w.label(1))
    return check_cmd(w)


def absurd_spacing(w: World) -> list[str]:
    for path in (w.image(1), w.label(1)):
        write(path, read(path), spacing=(1e9, 1.0, 1.0))
    return check_cmd(w)


def absurd_spacing_preprocess(w: World) -> list[str]:
    absurd_spacing(w)
    return preprocess_cmd(w)


def empty_labels(w: World) -> list[str]:
    for k in range(5):
        write(w.label(k), np.zeros_like(read(w.label(k))))
    return check_cmd(w)


def png(w: World) -> list[str]:
    spec = json.loads((w.ds / "dataset.json").read_text())
    (w.ds / "dataset.json").write_text(json.dumps({**spec, "file_ending": ".png"}))
    return check_cmd(w)


def nan_image(w: World) -> list[str]:
    image = read(w.image(1)).astype(np.float32)
    image[2, 3, 4] = np.nan
    write(w.image(1), image)
    return check_cmd(w)


def undeclared_label(w: World) -> list[str]:
    write(w.label(1), np.full_like(read(w.label(1)), 7))
    return check_cmd(w)


def nan_input(w: World) -> list[str]:
    image = read(w.images / "case_000_0000.nii.gz").astype(np.float32)
    image[3, 4, 5] = np.nan
    write(w.images / "case_000_0000.nii.gz", image)
    return predict_cmd(w)


def disk_full_preprocess(w: World) -> list[str]:
    (w.pre / "case_003.json").unlink()
    w.during.append(_fail_write(errno.ENOSPC, "numpy.save"))
    return preprocess_cmd(w)


def disk_full_checkpoint(w: World) -> list[str]:
    w.during.append(_fail_write(errno.ENOSPC, "torch.save"))
    return train_cmd(w, "0", "--extend", "1")


def raw_edited(w: World) -> list[str]:
    image = read(w.image(2))
    write(w.image(2), image + 1)
    return preprocess_cmd(w)


def plan_older(w: World) -> list[str]:
    stamp = (w.work / "dataset_fingerprint.json").stat().st_mtime
    os.utime(w.work / "plans.json", (stamp - 60, stamp - 60))
    return preprocess_cmd(w)


def stale_temps(w: World) -> list[str]:
    pid = dead_pid()
    (w.pre / f".case_000.npy.nnseg-tmp-{pid}-abc.npy").write_bytes(b"half a case")
    return preprocess_cmd(w)


def zip_bomb(w: World) -> list[str]:
    data = b" " * (100 << 20)
    _repack(w.zip, w.root / "bomb.zip", {"postprocessing.json": data})
    return ["import-model", str(w.root / "bomb.zip"), "--dest", str(w.root / "m"), "--quiet"]


def zip_bad_plans(w: World) -> list[str]:
    with zipfile.ZipFile(w.zip) as zf:
        plans = json.loads(zf.read("plans.json"))
    plans["configurations"]["3d_fullres"]["batch_size"] = 0
    _repack(w.zip, w.root / "bad.zip", {"plans.json": json.dumps(plans).encode()})
    return ["import-model", str(w.root / "bad.zip"), "--dest", str(w.root / "m"), "--quiet"]


def zip_wrong_weights(w: World) -> list[str]:
    import torch

    name = "3d_fullres/fold_0/checkpoint_final.pt"
    with zipfile.ZipFile(w.zip) as zf:
        state = torch.load(zf.open(name), weights_only=True)
    state["network"]["decoder.seg_layers.0.weight"] = torch.zeros(5, 4, 1, 1, 1)
    _repack(w.zip, w.root / "bad.zip", {name: checkpoint_bytes(state)})
    return ["import-model", str(w.root / "bad.zip"), "--dest", str(w.root / "m"), "--quiet"]


def zip_entry(name: str, data: bytes, corrupt: str | None = None):
    def setup(w: World) -> list[str]:
        path = _repack(w.zip, w.root / "bad.zip", {name: data})
        if corrupt:   # keep the manifest, change one byte of the file
            with zipfile.ZipFile(path) as zf:
                files = {n: zf.read(n) for n in zf.namelist()}
            files[corrupt] = files[corrupt][:-1] + b" "
            with zipfile.ZipFile(path, "w") as zf:
                for n, d in files.items():
                    zf.writestr(n, d)
        return ["import-model", str(path), "--dest", str(w.root / "m"), "--quiet"]
    return setup


def dest_here(dest: str):
    def setup(w: World) -> list[str]:
        home = w.root / "home" / "user"
        home.mkdir(parents=True)
        (home / "notes.txt").write_text("mine")
        w.during.append(_chdir(home))
        return import_cmd(w, "--dest", dest, "--overwrite")
    return setup


def dotdot_zip_name(w: World) -> list[str]:
    shutil.copy(w.zip, w.root / "...zip")
    w.during.append(_chdir(w.root / "home"))
    return ["import-model", str(w.root / "...zip"), "--overwrite", "--quiet"]


def dest_not_a_model(w: World) -> list[str]:
    (w.root / "mydata").mkdir()
    (w.root / "mydata" / "thesis.tex").write_text("years of work")
    return import_cmd(w, "--dest", str(w.root / "mydata"), "--overwrite")


def dest_reimport(w: World) -> list[str]:
    from NNSegLib.inference.model_package import import_model

    import_model(w.zip, w.root / "imported")
    return import_cmd(w, "--dest", str(w.root / "imported"), "--overwrite")


def a_file(name: str) -> Callable[[World], Path]:
    def make(w: World) -> Path:
        path = w.root / name
        path.write_text("a file")
        return path
    return make


def evil_checkpoint(w: World) -> list[str]:
    import torch

    state = torch.load(w.run0 / "checkpoint_final.pt", weights_only=True)
    state["meta"] = Evil()
    (w.run0 / "checkpoint_final.pt").write_bytes(checkpoint_bytes(state))
    return predict_cmd(w)


def truncated_checkpoint(w: World) -> list[str]:
    path = w.run0 / "checkpoint_final.pt"
    path.write_bytes(path.read_bytes()[:1000])
    return predict_cmd(w)


def held_run(fold: int, *extra: str):
    def setup(w: World) -> list[str]:
        run = w.run0 if fold == 0 else unfinished_fold(w, fold)
        w.during.append(lock(run, f"nnseg train 3d_fullres fold {fold}"))
        return train_cmd(w, str(fold), *extra)
    return setup


def held_preprocess(w: World) -> list[str]:
    w.during.append(lock(w.pre, "nnseg preprocess 3d_fullres"))
    return preprocess_cmd(w, "--overwrite")


def predict_training(*extra: str):
    def setup(w: World) -> list[str]:
        run = unfinished_fold(w)
        w.during.append(lock(run, "nnseg train 3d_fullres fold 1"))
        return predict_cmd(w, *extra)
    return setup


def edited_fingerprint(case: int, field: str, value: list) -> Callable[[World], list[str]]:
    """The fingerprint edited by hand: case ``case``'s ``field`` set to ``value``."""
    def setup(w: World) -> list[str]:
        path = w.work / "dataset_fingerprint.json"
        data = json.loads(path.read_text())
        data["cases"][case][field] = value
        path.write_text(json.dumps(data))     # NaN is written as the JSON extension NaN
        return plan_cmd(w)
    return setup


def then(prepare: Callable[[World], object], argv: Callable[[World], list[str]]):
    def setup(w: World) -> list[str]:
        prepare(w)
        return argv(w)
    return setup
