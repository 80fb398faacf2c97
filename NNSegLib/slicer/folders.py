"""Default dataset and work folders of the Slicer module, under one per-user NNSeg folder.

A path field that was never set is ``.`` (what ``pathlib.Path()`` and Slicer's path widget
give); running ``nnseg fingerprint .`` in Slicer's working folder is never what the user
wants. The module therefore fills unset folders with defaults computed here
(``~/NNSeg/datasets/Dataset001_Slicer``, ``~/NNSeg/work/Dataset001_Slicer``,
``~/NNSeg/batches/batch_001``) or with the folders remembered from the last session (so the
review queue of the last batch is there again after a restart); the Widget stores them in
Slicer's settings under :data:`SETTINGS_KEYS`. No ``qt``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

#: Slicer settings (QSettings) keys the module remembers folders under.
SETTINGS_KEYS = {"base": "NNSeg/BaseFolder", "dataset": "NNSeg/DatasetFolder",
                 "work": "NNSeg/WorkFolder", "model": "NNSeg/ModelPath",
                 "batch": "NNSeg/BatchFolder"}
DATASET_PATTERN = re.compile(r"^Dataset(\d{3})_")


def is_unset(path: Path | str | None) -> bool:
    """No folder chosen: ``None``, empty or ``.``."""
    return path is None or str(path).strip() in ("", ".")


def nnseg_home(home: Path | str | None = None) -> Path:
    """The per-user NNSeg folder (``~/NNSeg``)."""
    return Path(home if home is not None else Path.home()) / "NNSeg"


def next_dataset_folder(base: Path | str, name: str = "Slicer") -> Path:
    """``base/datasets/DatasetNNN_<name>`` with the first number no dataset there uses."""
    datasets = Path(base) / "datasets"
    used = set()
    if datasets.is_dir():
        for p in datasets.iterdir():
            m = DATASET_PATTERN.match(p.name)
            if m:
                used.add(int(m.group(1)))
    number = next(n for n in range(1, 1000) if n not in used)
    return datasets / f"Dataset{number:03d}_{name}"


def default_work_folder(base: Path | str, dataset: Path | str) -> Path:
    """``base/work/<dataset folder name>``."""
    return Path(base) / "work" / Path(str(dataset)).name


def initial_folders(dataset: Path | str | None, work: Path | str | None,
                    remembered: Mapping[str, str | None], base: Path | str) -> dict[str, Path]:
    """The dataset and work folders a panel starts with.

    A folder already set (saved with the scene) stays; an unset one takes the folder
    remembered from the last session if it still exists, else the default.

    Returns:
        ``{"dataset": Path, "work": Path}``.
    """
    out = {}
    if not is_unset(dataset):
        out["dataset"] = Path(str(dataset))
    elif not is_unset(remembered.get("dataset")) and Path(str(remembered["dataset"])).exists():
        out["dataset"] = Path(str(remembered["dataset"]))
    else:
        out["dataset"] = next_dataset_folder(base)
    if not is_unset(work):
        out["work"] = Path(str(work))
    elif not is_unset(remembered.get("work")) and Path(str(remembered["work"])).exists() \
            and Path(str(remembered["work"])).name == out["dataset"].name:
        out["work"] = Path(str(remembered["work"]))
    else:
        out["work"] = default_work_folder(base, out["dataset"])
    return out


def initial_model(model: Path | str | None, remembered: Mapping[str, str | None]) -> Path | None:
    """The model path a Segment panel starts with: its own, else the last one used if it
    still exists, else ``None`` (left unset)."""
    if not is_unset(model):
        return Path(str(model))
    last = remembered.get("model")
    return Path(str(last)) if not is_unset(last) and Path(str(last)).exists() else None


def initial_batch_folder(batch: Path | str | None, remembered: Mapping[str, str | None],
                         base: Path | str) -> Path:
    """The Batch and review panel's batch folder: its own, else the last one used if it
    still exists, else ``base/batches/batch_NNN`` with the first number not used yet."""
    if not is_unset(batch):
        return Path(str(batch))
    last = remembered.get("batch")
    if not is_unset(last) and Path(str(last)).is_dir():
        return Path(str(last))
    batches = Path(base) / "batches"
    return next(batches / f"batch_{n:03d}" for n in range(1, 10000)
                if not (batches / f"batch_{n:03d}").exists())


def follow_dataset(old_dataset: Path | str | None, new_dataset: Path | str, work: Path | str | None,
                   base: Path | str) -> Path | None:
    """The work folder to switch to when the dataset folder changes, or ``None`` to keep it.

    A work folder that is unset or the default of the previous dataset follows the new
    dataset; one the user chose stays.
    """
    if is_unset(new_dataset):
        return None
    if is_unset(work) or (not is_unset(old_dataset)
                          and Path(str(work)) == default_work_folder(base, str(old_dataset))):
        new = default_work_folder(base, new_dataset)
        return None if not is_unset(work) and Path(str(work)) == new else new
    return None


def work_arg(work: Path | str | None) -> Path | None:
    """The work folder as a command's ``--work`` (``None`` when unset: the default)."""
    return Path(str(work)) if work is not None and str(work) not in ("", ".") else None


__all__ = ["SETTINGS_KEYS", "default_work_folder", "follow_dataset", "initial_batch_folder",
           "initial_folders", "initial_model", "is_unset", "next_dataset_folder", "nnseg_home",
           "work_arg"]
