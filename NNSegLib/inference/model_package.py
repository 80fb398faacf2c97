"""Model packages: ``nnseg export-model`` / ``nnseg import-model`` (one zip per model).

A package holds only what prediction needs, and nothing that must be unpickled::

    manifest.json                       format, NNSeg version, SHA-256 and size of every file
    plans.json, dataset.json
    postprocessing.json, best_configuration.json   (when find-best wrote them)
    model_version.json                  (a fine-tuned model's version, METHOD §8)
    <config>/fold_<k>/checkpoint_final.pt          {"network": state dict, "meta": {...}}

Checkpoints are re-saved without optimizer or resume state, and loaded back with
``torch.load(weights_only=True)``. Import refuses absolute paths, ``..``, symlinks,
duplicate or unexpected entries, files missing from (or missing in) the manifest and
checksum mismatches, and only moves the unpacked folder into place once all checks pass.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from NNSegLib import __version__
from NNSegLib.util.atomic import atomic_path
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import (
    BEST_CONFIGURATION,
    CHECKPOINT_FINAL,
    DATASET_JSON,
    MODEL_VERSION,
    PLANS,
    POSTPROCESSING,
    ModelFolder,
)
from NNSegLib.util.progress import Progress

PACKAGE_FORMAT = "nnseg-model"
PACKAGE_VERSION = 1
MANIFEST = "manifest.json"
#: ``model_version.json`` keeps a fine-tuned model's version (its segment tags) on import.
TOP_LEVEL_FILES = (PLANS, DATASET_JSON, POSTPROCESSING, BEST_CONFIGURATION, MODEL_VERSION)
CHECKPOINT_RE = re.compile(r"^[A-Za-z0-9_.-]+/fold_[A-Za-z0-9]+/checkpoint_final\.pt$")
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plain(value: Any) -> Any:
    """Keep JSON-like values only (drops anything that would need unpickling)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _weights_bytes(checkpoint: Path, fold: str, configuration: str) -> bytes:
    """Re-save a checkpoint as ``{"network", "meta"}`` (tensors and plain values only)."""
    import torch

    from NNSegLib.network.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    network = {k: v.detach().cpu().clone() for k, v in state["network"].items()}
    meta = _plain(dict(state.get("meta", {})))
    meta.update({"configuration": configuration, "fold": fold,
                 "source_checkpoint": checkpoint.name, "exported_by": __version__})
    buffer = io.BytesIO()
    torch.save({"network": network, "meta": meta}, buffer)
    return buffer.getvalue()


def _configurations_to_export(model_dir: Path, configurations: Sequence[str] | None
                              ) -> list[str]:
    from NNSegLib.planning.plans import Plans

    folder = ModelFolder(model_dir)
    chosen = list(configurations or folder.best_configurations()
                  or [folder.default_configuration()])
    plans = Plans.load(folder.plans, hint=None)
    for name in list(chosen):   # a cascade needs its low-resolution stage
        prev = plans.configuration(name).previous_stage if name in plans.configurations else None
        if prev and prev not in chosen:
            chosen.append(prev)
    return chosen


def export_model(model_dir: Path | str, out_zip: Path | str,
                 folds: Sequence[str | int] | None = None,
                 configurations: Sequence[str] | None = None) -> Path:
    """Pack a model folder into ``out_zip``; returns its path.

    Args:
        model_dir: The model folder (``WORK/results``).
        out_zip: Destination zip file.
        folds: Folds to include (default: every trained fold).
        configurations: Configurations (default: the best configuration(s), else the
            default one); a cascade's previous stage is added automatically.

    Raises:
        NNSegError: for a missing model folder, file, configuration or fold.
    """
    from NNSegLib.inference.loaded_model import choose_folds
    from NNSegLib.inference.model_loader import is_nnunet_model

    model_dir = Path(model_dir)
    folder = ModelFolder(model_dir)
    if is_nnunet_model(model_dir):
        raise NNSegError(f"{model_dir}: an nnU-Net v2 folder; export-model packs NNSeg model "
                         "folders (predict with -m on the nnU-Net folder directly)")
    for path in (folder.plans, folder.dataset_json):
        if not path.is_file():
            raise NNSegError(f"{path}: missing; is {model_dir} a model folder?")
    files: dict[str, bytes] = {}
    for name in TOP_LEVEL_FILES:
        if (model_dir / name).is_file():
            files[name] = (model_dir / name).read_bytes()
    exported: dict[str, list[str]] = {}
    for cfg in _configurations_to_export(model_dir, configurations):
        wanted = choose_folds(folder.trained_folds(cfg), folds, model_dir / cfg)
        for fold in wanted:
            ckpt = folder.run(cfg, fold).checkpoint()
            assert ckpt is not None  # choose_folds only returns folds with a checkpoint
            files[f"{cfg}/fold_{fold}/{CHECKPOINT_FINAL}"] = _weights_bytes(ckpt, fold, cfg)
        exported[cfg] = wanted
    manifest = {
        "format": PACKAGE_FORMAT, "package_version": PACKAGE_VERSION,
        "nnseg_version": __version__, "configurations": exported,
        "files": {name: {"sha256": sha256_bytes(data), "size": len(data)}
                  for name, data in sorted(files.items())},
    }
    out_zip = Path(out_zip)
    with atomic_path(out_zip, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
            for name, data in sorted(files.items()):
                zf.writestr(name, data)
    return out_zip


def _check_entry_name(info: zipfile.ZipInfo, zip_path: Path) -> str:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise NNSegError(f"{zip_path}: refusing symlink entry {name!r}")
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise NNSegError(f"{zip_path}: refusing absolute or non-POSIX path {name!r}")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in parts) or not parts:
        raise NNSegError(f"{zip_path}: refusing path with '..' or '.' {name!r}")
    return name


def _allowed(name: str) -> bool:
    return name in TOP_LEVEL_FILES or name == MANIFEST or bool(CHECKPOINT_RE.match(name))


def _read_manifest(zf: zipfile.ZipFile, zip_path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
    except KeyError:
        raise NNSegError(f"{zip_path}: no {MANIFEST}; not an NNSeg model package") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NNSegError(f"{zip_path}: {MANIFEST} is not valid JSON ({e})") from e
    ok = (isinstance(manifest, dict) and manifest.get("format") == PACKAGE_FORMAT
          and isinstance(manifest.get("files"), dict))
    if not ok:
        raise NNSegError(f"{zip_path}: {MANIFEST} is not an NNSeg model manifest")
    if manifest.get("package_version") != PACKAGE_VERSION:
        raise NNSegError(f"{zip_path}: package version {manifest.get('package_version')!r} "
                         f"is not supported (this NNSeg reads {PACKAGE_VERSION})")
    return manifest


def verify_package(zip_path: Path | str) -> dict[str, Any]:
    """Check names and the manifest of a package without extracting; returns the manifest.

    Raises:
        NNSegError: naming the archive and the offending entry.
    """
    zip_path = Path(zip_path)
    if not zipfile.is_zipfile(zip_path):
        raise NNSegError(f"{zip_path}: not a zip file")
    with zipfile.ZipFile(zip_path) as zf:
        names = [_check_entry_name(i, zip_path) for i in zf.infolist() if not i.is_dir()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise NNSegError(f"{zip_path}: duplicate entries {duplicates}")
        manifest = _read_manifest(zf, zip_path)
    listed = set(manifest["files"])
    present = set(names) - {MANIFEST}
    unexpected = sorted(n for n in present | listed if not _allowed(n) or n == MANIFEST)
    if unexpected:
        raise NNSegError(f"{zip_path}: unexpected file(s) {unexpected}")
    if present - listed:
        raise NNSegError(f"{zip_path}: file(s) not in the manifest {sorted(present - listed)}")
    if listed - present:
        raise NNSegError(f"{zip_path}: manifest lists missing file(s) {sorted(listed - present)}")
    for required in (PLANS, DATASET_JSON):
        if required not in present:
            raise NNSegError(f"{zip_path}: package lacks {required}")
    return manifest


def _extract_checked(zf: zipfile.ZipFile, name: str, expected: dict, target: Path,
                     zip_path: Path) -> None:
    size = int(expected.get("size", -1))
    digest = hashlib.sha256()
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(name) as src, open(target, "wb") as dst:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > size:
                raise NNSegError(f"{zip_path}: {name} is larger than the manifest says")
            digest.update(chunk)
            dst.write(chunk)
    if written != size or digest.hexdigest() != expected.get("sha256"):
        raise NNSegError(f"{zip_path}: checksum mismatch for {name}")


def _check_weights(path: Path, zip_path: Path, name: str) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means: not plain tensors
        raise NNSegError(f"{zip_path}: {name} is not a plain weights file ({e})") from e
    if not isinstance(state, dict) or set(state) != {"network", "meta"}:
        raise NNSegError(f"{zip_path}: {name} must hold exactly 'network' and 'meta'")


def import_model(zip_path: Path | str, dest: Path | str | None = None,
                 overwrite: bool = False) -> Path:
    """Verify and unpack a model package; returns the model folder.

    Args:
        zip_path: The package.
        dest: Destination folder (default ``./nnseg_models/<zip name>``); must not exist
            unless ``overwrite``.
        overwrite: Replace an existing destination.

    Raises:
        NNSegError: for any refused entry, checksum mismatch or an existing destination.
    """
    zip_path = Path(zip_path)
    manifest = verify_package(zip_path)
    dest = Path(dest) if dest is not None else Path.cwd() / "nnseg_models" / zip_path.stem
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise NNSegError(f"{dest}: exists and is not empty (choose another --dest)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name, expected in sorted(manifest["files"].items()):
                _extract_checked(zf, name, expected, tmp / name, zip_path)
                if name.endswith(".pt"):
                    _check_weights(tmp / name, zip_path, name)
            (tmp / MANIFEST).write_bytes(zf.read(MANIFEST))
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --- CLI --------------------------------------------------------------------------------

def add_export_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model folder (WORK/results)")
    parser.add_argument("output", type=Path, help="zip file to write")
    parser.add_argument("--folds", nargs="+", default=None,
                        help="folds to include (default: every trained fold)")
    parser.add_argument("--config", "--configurations", dest="configurations", nargs="+",
                        default=None, help="configuration(s) to include (default: the best)")


def run_export_model(args: argparse.Namespace, progress: Progress) -> int:
    out = export_model(args.model, args.output, args.folds, args.configurations)
    manifest = verify_package(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, "
          f"configurations {manifest['configurations']})")
    return 0


def add_import_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="model zip written by export-model")
    parser.add_argument("--dest", type=Path, default=None,
                        help="destination folder (default ./nnseg_models/<zip name>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing destination folder")


def run_import_model(args: argparse.Namespace, progress: Progress) -> int:
    dest = import_model(args.package, args.dest, args.overwrite)
    print(f"imported into {dest}; predict with: nnseg predict -m {dest} -i IN -o OUT")
    return 0


__all__ = [
    "MANIFEST",
    "PACKAGE_FORMAT",
    "PACKAGE_VERSION",
    "export_model",
    "import_model",
    "verify_package",
]
