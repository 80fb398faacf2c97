"""The cross-validation evaluation report the Train panel opens after *Find best*.

``nnseg find-best`` chooses the configuration (or pair ensemble) and the postprocessing
on the folds' validation predictions. The panel then runs ``nnseg evaluate`` on the chosen
candidate's predictions of every case, which writes ``report.html`` (Dice box plot, the
worst cases as overlays) to ``WORK/evaluation/cross_validation/``. The validation
predictions of a single configuration live in one folder per fold; :func:`gather_predictions`
links them into one folder first (hard links, copies where linking is impossible).
No ``qt``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from NNSegLib.util.errors import NNSegError
from NNSegLib.util.i18n import tr
from NNSegLib.util.workspace import Workspace


def evaluation_folder(work: Path | str) -> Path:
    return Path(work) / "evaluation"


def report_path(work: Path | str) -> Path | None:
    """The cross-validation report of a work folder, ``None`` before one was made."""
    path = evaluation_folder(work) / "cross_validation" / "report.html"
    return path if path.is_file() else None


def gather_predictions(work: Path | str) -> Path:
    """One folder with every cross-validation prediction of the chosen candidate.

    Raises:
        NNSegError: when ``find-best`` has not run or no prediction exists.
    """
    ws = Workspace(Path(work))
    best = ws.model.read_best_configuration()
    if not best:
        raise NNSegError(tr("No best configuration yet: run Find best configuration first."))
    if best.get("predictions"):  # an ensemble: find-best wrote all its cases in one folder
        return Path(best["predictions"])
    configuration = ws.model.best_configurations()[0]
    out = evaluation_folder(work) / "cv_predictions"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    found = 0
    folds = None if best.get("folds") is None else {str(f) for f in best["folds"]}
    for run in ws.model.runs(configuration):
        if not run.validation.is_dir() or (folds is not None and run.fold not in folds):
            continue   # only the folds find-best scored (all, or those complete then)
        for f in run.validation.iterdir():
            if f.is_file() and not f.name.endswith(".npz"):
                _link(f, out / f.name)
                found += 1
    if not found:
        raise NNSegError(tr("{configuration}: no validation predictions to evaluate",
            configuration=configuration))
    return out


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def report_commands(dataset: Path | str, work: Path | str) -> list[list[str]]:
    """``nnseg evaluate`` of the gathered predictions (call after ``find-best``)."""
    predictions = gather_predictions(work)
    dataset = Path(dataset)
    from NNSegLib.evaluation.evaluate import evaluate_argv

    return [evaluate_argv(dataset / "labelsTr", predictions, labels=dataset / "dataset.json",
                          images=dataset / "imagesTr",
                          output=evaluation_folder(work) / "cross_validation",
                          only_predicted=True)]


def describe_best(work: Path | str) -> str:
    """The choice of ``find-best`` in a few lines (scores and postprocessing)."""
    from NNSegLib.postprocessing.find_best import summary_table

    best = Workspace(Path(work)).model.read_best_configuration()
    if not best or "cv_dice" not in best:
        return tr("No best configuration chosen yet.")
    try:
        return summary_table(best)
    except (KeyError, TypeError, ValueError):
        return tr("Best: {configurations}",
            configurations=" + ".join(best.get("configurations", [])))


__all__ = ["describe_best", "evaluation_folder", "gather_predictions", "report_commands",
           "report_path"]
