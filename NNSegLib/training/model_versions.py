"""METHOD §8: model versions in a work folder (``nnseg archive-model``, ``model_version.json``).

``WORK/results`` is always the *current* model (what the Segment panel and ``nnseg predict
-m WORK/results`` use). Before a fine-tune, :func:`archive_model` moves it aside, unchanged,
to ``WORK/model_versions/v<N>`` (a rename: instantaneous, no copy), so the fine-tuned model
is trained into a fresh ``WORK/results`` from ``--init-from WORK/model_versions/v<N>`` and
both stay available for "did it help?" (:mod:`NNSegLib.evaluation.model_comparison`).

A model without ``model_version.json`` is version 1. When a run starts from another model's
weights, :func:`record_fine_tune` writes the new model's ``model_version.json``: version =
parent's + 1, the parent's folder and version, and per fold the checkpoint it started from.
The version travels into the segment tags of later results (``NNSeg.ModelVersion``).
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path
from typing import Any

from NNSegLib.util.command_line import option
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import ModelFolder
from NNSegLib.util.progress import Progress
from NNSegLib.util.workspace import Workspace

VERSION_FORMAT = "nnseg-model-version"


def next_archive(work: Path | str) -> Path:
    """Where :func:`archive_model` will move the current model (``model_versions/v<N>``)."""
    ws = Workspace(Path(work))
    return ws.archived_model(ModelFolder(ws.results).version)


def archive_model(work: Path | str) -> Path:
    """Move ``WORK/results`` to ``WORK/model_versions/v<N>`` (N = its version); return that.

    Raises:
        NNSegError: when there is no trained model, or that version is already archived.
    """
    ws = Workspace(Path(work))
    folder = ModelFolder(ws.results)
    if not folder.trained_configurations():
        raise NNSegError(f"{ws.results}: no trained model to archive")
    target = ws.archived_model(folder.version)
    if target.exists():
        raise NNSegError(f"{target}: already exists; {ws.results} has the same version "
                         f"(v{folder.version}) as an archived model. Move one of them away")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(ws.results, target)
    except OSError as e:   # e.g. a file of the model is open on Windows
        raise NNSegError(f"cannot move {ws.results} to {target}: {e}") from e
    return target


def record_fine_tune(model_dir: Path | str, run_name: str, checkpoint: Path,
                     parent: Path | None) -> dict[str, Any]:
    """Write (or extend) ``model_version.json`` of a model fine-tuned from ``parent``.

    Args:
        model_dir: The new model folder.
        run_name: ``<configuration>/fold_<k>`` of the run that started from ``checkpoint``.
        checkpoint: The initial weights.
        parent: The model folder they belong to (``None`` for a lone checkpoint file:
            its version counts as 1).

    Raises:
        NNSegError: when ``model_dir`` already records a different parent (folds of one
            model must start from the same model).
    """
    from NNSegLib.util.atomic import write_json
    from NNSegLib.util.json_files import read_json
    from NNSegLib.util.locking import file_lock

    folder = ModelFolder(Path(model_dir))
    parent_version = ModelFolder(parent).version if parent is not None else 1
    parent_text = str(Path(parent).resolve()) if parent is not None else None
    with file_lock(folder.version_file):
        data: dict[str, Any] = {}
        if folder.version_file.is_file():
            data = read_json(folder.version_file, expect=dict)
            recorded = (data.get("parent") or {}).get("path")
            if recorded != parent_text:
                raise NNSegError(
                    f"{folder.version_file}: this model was fine-tuned from {recorded}, not "
                    f"{parent_text}; archive it (nnseg archive-model) or start every fold "
                    "from the same model")
        created = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        data = {"format": VERSION_FORMAT, "version": parent_version + 1,
                "parent": {"path": parent_text, "version": parent_version},
                "created": data.get("created", created),
                "init_from": {**data.get("init_from", {}), run_name: str(checkpoint)}}
        folder.root.mkdir(parents=True, exist_ok=True)
        write_json(folder.version_file, data)
    return data


# --- CLI --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnseg archive-model``."""
    parser.add_argument("dataset", type=Path, help="raw dataset folder (names the work folder)")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (default ./nnseg_work/<dataset folder name>)")


def archive_model_argv(dataset: Path | str, work: Path | str | None = None) -> list[str]:
    """``nnseg archive-model`` as an argument list."""
    return ["archive-model", str(dataset), *option("--work", work)]


def run(args: argparse.Namespace, progress: Progress) -> int:
    """``nnseg archive-model``: move the current model aside before a fine-tune."""
    progress.close()
    ws = Workspace.for_dataset(args.dataset, args.work)
    target = archive_model(ws.root)
    progress.message(f"{ws.results} → {target}; fine-tune with "
                     f"`nnseg train … --init-from {target}`")
    progress.event("done", stage="archive-model", archived=str(target))
    return 0


__all__ = ["archive_model_argv", "VERSION_FORMAT", "add_arguments", "archive_model", "next_archive",
           "record_fine_tune", "run"]
