"""Model packages: ``nnseg export-model`` / ``nnseg import-model`` (one zip per model).

A package holds only what prediction needs, and nothing that must be unpickled::

    manifest.json                       format, NNSeg version, SHA-256 and size of every file
    plans.json, dataset.json
    postprocessing.json, best_configuration.json   (when find-best wrote them)
    model_version.json                  (a fine-tuned model's version, METHOD §8)
    <config>/fold_<k>/checkpoint_final.pt          {"network": state dict, "meta": {...}}

Checkpoints are re-saved without optimizer or resume state, and loaded back with
``torch.load(weights_only=True)``. Only finished folds are exported unless
``allow_unfinished``. Import refuses absolute paths, ``..``, symlinks, duplicate or
unexpected entries, files missing from (or missing in) the manifest, checksum mismatches and
packages that expand beyond a size or ratio limit; it then loads the plan, builds every
fold's network and loads its weights strictly, and only moves the unpacked folder into place
once all checks pass. It only ever replaces a folder that is itself an imported model
(holds its ``manifest.json``), never the current folder or one of its parents.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from NNSegLib import __version__
from NNSegLib.util import options
from NNSegLib.util.atomic import atomic_path
from NNSegLib.util.command_line import option
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

#: Default limits on what a package may expand to (``--max-size-mb``, ``--max-ratio``).
DEFAULT_MAX_SIZE_MB = 10_000
DEFAULT_MAX_RATIO = 20.0
#: Below this total the expansion ratio is not checked (tiny files compress very well).
RATIO_FLOOR_BYTES = 64 << 20


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
                 configurations: Sequence[str] | None = None,
                 allow_unfinished: bool = False) -> Path:
    """Pack a model folder into ``out_zip``; returns its path.

    Args:
        model_dir: The model folder (``WORK/results``).
        out_zip: Destination zip file.
        folds: Folds to include (default: every finished fold).
        configurations: Configurations (default: the best configuration(s), else the
            default one); a cascade's previous stage is added automatically.
        allow_unfinished: Also pack folds still training or stopped early (their best
            checkpoint); otherwise they are refused when asked for and left out.

    Raises:
        NNSegError: for a missing model folder, file, configuration or fold.
    """
    from NNSegLib.inference.model_loader import is_nnunet_model
    from NNSegLib.inference.nnseg_model import usable_folds

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
        wanted, names, _notes = usable_folds(folder, cfg, folds, allow_unfinished)
        for fold in wanted:
            ckpt = folder.run(cfg, fold).checkpoint(names)
            assert ckpt is not None  # usable_folds only returns folds with a checkpoint
            files[f"{cfg}/fold_{fold}/{CHECKPOINT_FINAL}"] = _weights_bytes(ckpt, fold, cfg)
        exported[cfg] = wanted
    manifest = {
        "format": PACKAGE_FORMAT, "package_version": PACKAGE_VERSION,
        "nnseg_version": __version__, "configurations": exported,
        "files": {name: {"sha256": sha256_bytes(data), "size": len(data)}
                  for name, data in sorted(files.items())},
    }
    from NNSegLib.util.atomic import clean_stale_temps

    out_zip = Path(out_zip)
    if out_zip.is_dir():
        raise NNSegError(f"{out_zip}: is a folder; give the zip file to write")
    clean_stale_temps(out_zip.parent)
    with atomic_path(out_zip, suffix=".zip", durable=True) as tmp:
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


def verify_package(zip_path: Path | str, max_size_mb: float = DEFAULT_MAX_SIZE_MB,
                   max_ratio: float = DEFAULT_MAX_RATIO) -> dict[str, Any]:
    """Check names, sizes and the manifest of a package without extracting it.

    Args:
        zip_path: The package.
        max_size_mb: Largest total size the files may expand to (MB).
        max_ratio: Largest expanded / compressed size (checked above 64 MB expanded).

    Returns:
        The manifest.

    Raises:
        NNSegError: naming the archive and the offending entry.
    """
    from NNSegLib.util.files import path_problem

    zip_path = Path(zip_path)
    problem = "is a folder, expected a zip file" if zip_path.is_dir() else path_problem(zip_path)
    if problem:
        raise NNSegError(f"{zip_path}: {problem}")
    if not zipfile.is_zipfile(zip_path):
        raise NNSegError(f"{zip_path}: not a zip file")
    with zipfile.ZipFile(zip_path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        names = [_check_entry_name(i, zip_path) for i in infos]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise NNSegError(f"{zip_path}: duplicate entries {duplicates}")
        manifest = _read_manifest(zf, zip_path)
        _check_sizes(infos, manifest, zip_path, max_size_mb, max_ratio)
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


def _check_sizes(infos: list[zipfile.ZipInfo], manifest: dict[str, Any], zip_path: Path,
                 max_size_mb: float, max_ratio: float) -> None:
    """Refuse a package whose files expand beyond the limits (a "zip bomb")."""
    declared = 0
    for name, entry in manifest["files"].items():
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise NNSegError(f"{zip_path}: {MANIFEST} gives no valid size for {name!r}")
        declared += size
    stored = {i.filename: i for i in infos}
    expanded = max(declared, sum(i.file_size for i in infos))
    for name, entry in manifest["files"].items():
        if name in stored and stored[name].file_size != entry["size"]:
            raise NNSegError(f"{zip_path}: {name} is {stored[name].file_size} bytes in the zip "
                             f"but {entry['size']} in {MANIFEST}")
    if expanded > max_size_mb * 1e6:
        raise NNSegError(f"{zip_path}: expands to {expanded / 1e6:.1f} MB, more than the limit "
                         f"of {max_size_mb:g} MB (raise it with --max-size-mb if you trust "
                         "the package)")
    compressed = max(1, sum(i.compress_size for i in infos))
    if expanded > RATIO_FLOOR_BYTES and expanded / compressed > max_ratio:
        raise NNSegError(f"{zip_path}: expands {expanded / compressed:.0f}-fold "
                         f"({compressed / 1e6:.1f} MB to {expanded / 1e6:.1f} MB), more than the "
                         f"limit of {max_ratio:g} (raise it with --max-ratio if you trust the "
                         "package)")


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

    from NNSegLib.network.checkpoint import describe_load_error

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means: not plain tensors
        raise NNSegError(f"{zip_path}: {name} is not a plain weights file "
                         f"({describe_load_error(e)})") from None
    if not isinstance(state, dict) or set(state) != {"network", "meta"}:
        raise NNSegError(f"{zip_path}: {name} must hold exactly 'network' and 'meta'")


def import_model(zip_path: Path | str, dest: Path | str | None = None,
                 overwrite: bool = False, max_size_mb: float = DEFAULT_MAX_SIZE_MB,
                 max_ratio: float = DEFAULT_MAX_RATIO) -> Path:
    """Verify and unpack a model package; returns the model folder.

    Args:
        zip_path: The package.
        dest: Destination folder (default ``./nnseg_models/<safe zip name>``); must not exist
            (or be empty) unless ``overwrite``.
        overwrite: Replace an existing destination that is an imported model folder.
        max_size_mb, max_ratio: Expansion limits (see :func:`verify_package`).

    Raises:
        NNSegError: for any refused entry, checksum mismatch, invalid plan or weights, or a
            destination NNSeg must not replace.
    """
    from NNSegLib.util.atomic import clean_stale_temps, fsync_path, temp_dir

    zip_path = Path(zip_path)
    manifest = verify_package(zip_path, max_size_mb, max_ratio)
    dest = Path(dest) if dest is not None else default_destination(zip_path)
    replace = _check_destination(dest, zip_path, overwrite)
    clean_stale_temps(dest.parent)
    tmp = temp_dir(dest)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name, expected in sorted(manifest["files"].items()):
                _extract_checked(zf, name, expected, tmp / name, zip_path)
                if name.endswith(".pt"):
                    _check_weights(tmp / name, zip_path, name)
            (tmp / MANIFEST).write_bytes(zf.read(MANIFEST))
        _check_model(tmp, manifest, zip_path)
        for path in sorted(tmp.rglob("*"), reverse=True):
            fsync_path(path)
        _move_into_place(tmp, dest, replace)
        fsync_path(dest.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def default_destination(zip_path: Path) -> Path:
    """``./nnseg_models/<name>`` with a name made safe from the zip's (never ``..``)."""
    from NNSegLib.util.files import safe_name

    stem = zip_path.name[:-4] if zip_path.name.lower().endswith(".zip") else zip_path.name
    return Path.cwd() / "nnseg_models" / safe_name(stem)


def is_imported_model(folder: Path) -> bool:
    """True when ``folder`` holds the manifest of an imported model package."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == PACKAGE_FORMAT


def _check_destination(dest: Path, zip_path: Path, overwrite: bool) -> bool:
    """Refuse destinations NNSeg must not write or replace; True when ``dest`` is replaced."""
    from NNSegLib.util.files import is_within

    if dest.is_symlink():
        raise NNSegError(f"--dest {dest}: is a symbolic link; give the folder itself")
    if dest.exists() and not dest.is_dir():
        raise NNSegError(f"--dest {dest}: is a file, expected a folder")
    cwd = Path.cwd().resolve()
    if is_within(cwd, dest):
        raise NNSegError(f"--dest {dest}: is the current folder or one of its parents; "
                         "NNSeg never writes a model over it (give a new folder)")
    if not dest.exists() or not any(dest.iterdir()):
        return False
    if not overwrite:
        raise NNSegError(f"--dest {dest}: exists and is not empty (choose another --dest, or "
                         "--overwrite to replace a model imported there before)")
    if not is_imported_model(dest):
        raise NNSegError(f"--dest {dest}: exists and is not an imported NNSeg model (no "
                         f"{MANIFEST}); --overwrite only replaces such folders, nothing else")
    if is_within(zip_path, dest):
        raise NNSegError(f"--dest {dest}: holds the package {zip_path} itself; import it "
                         "somewhere else")
    return True


def _move_into_place(tmp: Path, dest: Path, replace: bool) -> None:
    """Rename the checked folder to ``dest``; an old model goes only once the new one is in."""
    if not replace:
        if dest.is_dir():
            dest.rmdir()   # empty (checked)
        tmp.rename(dest)
        return
    old = tmp.with_name(tmp.name + "-old")
    dest.rename(old)
    try:
        tmp.rename(dest)
    except OSError:
        old.rename(dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_model(folder: Path, manifest: dict[str, Any], zip_path: Path) -> None:
    """Load the plan and labels, build every fold's network and load its weights strictly."""
    import torch

    from NNSegLib.inference.nnseg_model import load_nnseg_model
    from NNSegLib.util.model_folder import ModelFolder

    folds: dict[str, list[str]] = {}
    for name in manifest["files"]:
        if CHECKPOINT_RE.match(name):
            cfg, fold, _ = name.split("/")
            folds.setdefault(cfg, []).append(fold[len("fold_"):])
    try:
        ModelFolder(folder).best_configurations()
        for cfg, cfg_folds in sorted(folds.items()):
            load_nnseg_model(folder, cfg, sorted(cfg_folds), torch.device("cpu"), tta=False)
    except NNSegError as e:
        message = str(e).replace(f"{folder}{os.sep}", "").replace(str(folder), "package")
        raise NNSegError(f"{zip_path}: not a usable model: {message}") from None


# --- CLI --------------------------------------------------------------------------------

def add_export_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model folder (WORK/results)")
    parser.add_argument("output", type=Path, help="zip file to write")
    parser.add_argument("--folds", nargs="+", default=None,
                        help="folds to include (default: every finished fold)")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="also pack folds whose training has not finished (their best "
                             "checkpoint)")
    parser.add_argument("--config", "--configurations", dest="configurations", nargs="+",
                        default=None, help="configuration(s) to include (default: the best)")


def run_export_model(args: argparse.Namespace, progress: Progress) -> int:
    out = export_model(args.model, args.output, args.folds, args.configurations,
                       args.allow_unfinished)
    manifest = verify_package(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, "
          f"configurations {manifest['configurations']})")
    return 0


def add_import_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="model zip written by export-model")
    parser.add_argument("--dest", type=Path, default=None,
                        help="destination folder (default ./nnseg_models/<zip name>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model imported into the destination before (nothing "
                             "else is ever replaced)")
    parser.add_argument("--max-size-mb", type=options.positive_number,
                        default=DEFAULT_MAX_SIZE_MB,
                        help=f"refuse packages expanding to more (default {DEFAULT_MAX_SIZE_MB})")
    parser.add_argument("--max-ratio", type=options.number(1.0),
                        default=DEFAULT_MAX_RATIO,
                        help="refuse packages expanding more than this many times their "
                             f"compressed size (default {DEFAULT_MAX_RATIO:g})")


def import_model_argv(package: Path | str, dest: Path | str | None = None) -> list[str]:
    """``nnseg import-model`` as an argument list."""
    return ["import-model", str(package), *option("--dest", dest)]


def run_import_model(args: argparse.Namespace, progress: Progress) -> int:
    dest = import_model(args.package, args.dest, args.overwrite, args.max_size_mb,
                        args.max_ratio)
    print(f"imported into {dest}; predict with: nnseg predict -m {dest} -i IN -o OUT")
    return 0


__all__ = ["import_model_argv",
    "DEFAULT_MAX_RATIO",
    "DEFAULT_MAX_SIZE_MB",
    "MANIFEST",
    "PACKAGE_FORMAT",
    "PACKAGE_VERSION",
    "default_destination",
    "export_model",
    "import_model",
    "is_imported_model",
    "verify_package",
]
