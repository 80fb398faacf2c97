"""What every panel's rules read: the shared state, :class:`Rule`, the folder and model checks.

Reasons behind the rules:

* a panel's Apply button is its Cancel while its job runs, so it stays enabled then;
* Plan and Export rewrite files Train reads (``plans.json``, ``imagesTr``), and Train
  rewrites what *Find best* reads: those never run at the same time on one work folder;
  a fine-tune is a training (:data:`TRAINING`) and, since it moves the current model to
  ``model_versions``, also waits for segmentations that may be reading it;
* *Add to dataset* writes into the dataset like Export, under the same conditions;
* nothing runs on an unset folder (``.``: Slicer's working folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from NNSegLib.jobs.board import TRAINING_KEYS as TRAINING
from NNSegLib.slicer import model_folds
from NNSegLib.slicer.folder_memo import FolderMemo, NoMemo
from NNSegLib.slicer.folders import is_unset
from NNSegLib.slicer.model_folds import FoldCheck
from NNSegLib.util.i18n import tr

#: Jobs that read the dataset or the work folder's model while they run.
WORK_JOBS = frozenset({"plan", "findbest"}) | TRAINING


@dataclass
class Rule:
    """Whether a button is enabled and, if not, the reason (its tooltip)."""

    enabled: bool
    reason: str = ""


@dataclass
class Shared:
    """What several panels' rules read: running jobs, the folders and the chosen model
    (the Segment and the Batch panel segment with the same model)."""

    running: set[str] = field(default_factory=set)
    dataset_folder: str = ""
    work_folder: str = ""
    model_path: str = ""
    model_channels: int | None = None
    model_folds: FoldCheck = field(default_factory=FoldCheck)


@dataclass
class View:
    """A panel's part of the module: its buttons' rules, the inputs that only apply with
    another choice, and the texts of its explaining labels (``NNSeg.ui`` object names)."""

    rules: dict[str, Rule] = field(default_factory=dict)
    inputs: dict[str, bool] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


def shared_state(params: Any, running: Iterable[str] = (), model_channels: int | None = None,
                 memo: FolderMemo | None = None) -> Shared:
    """The :class:`Shared` state of the parameter node (``NNSegParameterNode`` attributes);
    the model's folds are read again only when its folder changes (``memo``)."""
    memo, model = memo or NoMemo(), params.modelPath
    predict_folds, unfinished = str(params.predictFolds), bool(params.allowUnfinished)
    folds = FoldCheck()
    if not is_unset(model):
        folds = memo.get(("folds", str(model), predict_folds, unfinished), [(model, 3)],
                         lambda: model_folds.check_folds(model, predict_folds, unfinished))
    return Shared(running=set(running), dataset_folder=str(params.datasetFolder or ""),
                  work_folder=str(params.workFolder or ""), model_path=str(model or ""),
                  model_channels=model_channels, model_folds=folds)


def locked_widgets(locks: Mapping[str, Sequence[str]], running: Iterable[str]) -> set[str]:
    """Object names of the widgets to disable while the ``running`` jobs run."""
    return {name for key in running for name in locks.get(key, [])}


def folder_problem(path: str, what: str) -> str | None:
    """Why nothing runs on this folder yet (unset), or ``None``."""
    if is_unset(path):
        return tr("Choose the {what} first.", what=what)
    return None


def dataset_problem(shared: Shared) -> str | None:
    """Why the dataset folder cannot be read yet (unset, or no ``dataset.json``)."""
    problem = folder_problem(shared.dataset_folder, tr("dataset folder"))
    if problem:
        return problem
    if not (Path(shared.dataset_folder) / "dataset.json").is_file():
        return tr("The dataset folder has no dataset.json: export the dataset first.")
    return None


def model_problem(shared: Shared) -> str | None:
    """Why the chosen model cannot segment (Segment and Batch panels), or ``None``."""
    if is_unset(shared.model_path):
        return tr("Choose a model (folder or .zip).")
    path = Path(shared.model_path)
    if path.suffix.lower() != ".zip" and not (path / "dataset.json").is_file():
        return tr("No model here (dataset.json missing).")
    if path.suffix.lower() == ".zip" and not path.is_file():
        return tr("The model package does not exist.")
    return shared.model_folds.problem


def work_folders(work: Any) -> list[tuple[Any, int]]:
    """The parts of a work folder the panels' answers come from (not its data), for
    :meth:`~NNSegLib.slicer.folder_memo.FolderMemo.get`."""
    if is_unset(work):   # "./results" would be the current folder's
        return [(work, 1)]
    root = Path(str(work))
    return [(root, 1), (root / "results", 3), (root / "model_versions", 1)]


def plan_configurations(work: str) -> list[str] | None:
    """The configurations of the work folder's plan (``None``: no plan; ``[]``: broken)."""
    from NNSegLib.util.json_files import read_json
    from NNSegLib.util.workspace import Workspace

    path = Workspace(Path(work)).plans
    if not path.is_file():
        return None
    try:
        return list(read_json(path, expect=dict).get("configurations", {}))
    except Exception:  # a broken plan: Plan again
        return []


__all__ = ["Rule", "Shared", "TRAINING", "View", "WORK_JOBS", "dataset_problem",
           "folder_problem", "locked_widgets", "model_problem", "plan_configurations",
           "shared_state", "work_folders"]
