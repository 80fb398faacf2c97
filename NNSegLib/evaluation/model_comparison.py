"""METHOD §8 "Did it help?": cross-validation Dice of two models side by side.

After a fine-tune, the new model folder and the one it started from (usually
``WORK/model_versions/v<N>``, see ``nnseg archive-model``) each hold one
``validation_summary.json`` per trained fold. :func:`compare_models` pairs them fold by fold:
the means are taken over the folds *both* models have, and a fold whose validation cases
differ between the two is flagged (its Dice values are then not comparable one to one).
Because cases added to a dataset join the training set of every fold
(:func:`NNSegLib.data.splits.extend_splits`), the validation cases normally stay the same.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import read_json
from NNSegLib.util.model_folder import ModelFolder
from NNSegLib.util.progress import Progress


@dataclass(frozen=True)
class FoldDice:
    """Mean foreground Dice of one fold's validation, for the old and the new model.

    Attributes:
        fold: Fold name (``"0"`` …).
        old: The old model's Dice (``None`` when it has no validation for this fold).
        new: The new model's Dice.
        old_labels: Label name → Dice of the old model.
        new_labels: Label name → Dice of the new model.
        same_cases: Both validations scored the same cases (``None`` when unknown).
    """

    fold: str
    old: float | None
    new: float | None
    old_labels: dict[str, float | None] = field(default_factory=dict)
    new_labels: dict[str, float | None] = field(default_factory=dict)
    same_cases: bool | None = None

    @property
    def paired(self) -> bool:
        return self.old is not None and self.new is not None


@dataclass(frozen=True)
class ModelComparison:
    """Cross-validation Dice of an old and a new model (see :func:`compare_models`)."""

    old: Path
    new: Path
    configuration: str
    old_version: str
    new_version: str
    folds: tuple[FoldDice, ...]

    @property
    def paired_folds(self) -> list[FoldDice]:
        return [f for f in self.folds if f.paired]

    @property
    def old_mean(self) -> float | None:
        """Mean of the old model's Dice over the folds both models have."""
        values = [f.old for f in self.paired_folds if f.old is not None]
        return sum(values) / len(values) if values else None

    @property
    def new_mean(self) -> float | None:
        values = [f.new for f in self.paired_folds if f.new is not None]
        return sum(values) / len(values) if values else None

    @property
    def delta(self) -> float | None:
        """``new_mean - old_mean`` (positive: the new model is better)."""
        if self.old_mean is None or self.new_mean is None:
            return None
        return self.new_mean - self.old_mean

    def summary_line(self) -> str:
        """One line for the panel, e.g. ``CV Dice v1 0.812 → v2 0.845 (+0.033; folds 0, 1)``."""
        if self.delta is None:
            return (f"No fold validated by both {self.old_version} and {self.new_version} "
                    f"({self.configuration}) yet.")
        folds = ", ".join(f.fold for f in self.paired_folds)
        note = "" if all(f.same_cases is not False for f in self.paired_folds) else \
            "; validation cases differ in some folds"
        return (f"CV Dice {self.old_version} {self.old_mean:.3f} → {self.new_version} "
                f"{self.new_mean:.3f} ({self.delta:+.3f}; fold(s) {folds}{note})")

    def table(self) -> tuple[list[str], list[list[str]]]:
        """``(header, rows)``: one row per fold and label, Dice with 3 decimals."""
        header = ["fold", "label", self.old_version, self.new_version, "change"]
        rows = []
        for f in self.folds:
            rows.append([f.fold, "mean", _fmt(f.old), _fmt(f.new), _change(f.old, f.new)])
            for name in sorted(set(f.old_labels) | set(f.new_labels)):
                old, new = f.old_labels.get(name), f.new_labels.get(name)
                rows.append([f.fold, name, _fmt(old), _fmt(new), _change(old, new)])
        return header, rows

    def to_dict(self) -> dict[str, Any]:
        return {"old": str(self.old), "new": str(self.new), "configuration": self.configuration,
                "old_version": self.old_version, "new_version": self.new_version,
                "old_mean": self.old_mean, "new_mean": self.new_mean, "delta": self.delta,
                "folds": [{"fold": f.fold, "old": f.old, "new": f.new, "same_cases": f.same_cases,
                           "old_labels": f.old_labels, "new_labels": f.new_labels}
                          for f in self.folds]}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _change(old: float | None, new: float | None) -> str:
    return "–" if old is None or new is None else f"{new - old:+.3f}"


def read_validation(path: Path) -> tuple[float | None, dict[str, float | None], set[str]]:
    """``(mean foreground Dice, {label: Dice}, validation case ids)`` of a summary file."""
    summary = read_json(path, expect=dict, hint="nnseg train … --validate-only")
    dice = summary.get("foreground_mean", {}).get("dice")
    names = {str(v): k for k, v in summary.get("labels", {}).items()}
    labels = {names.get(k, k): (m or {}).get("dice")
              for k, m in summary.get("mean", {}).items()}
    cases = summary.get("cases", [])
    ids = {c["case"] for c in cases if isinstance(c, dict) and "case" in c} \
        if isinstance(cases, list) else set(cases)
    return dice, labels, ids


def compare_models(old: Path | str, new: Path | str, configuration: str | None = None
                   ) -> ModelComparison:
    """Pair the fold validations of two model folders.

    Args:
        old: The model the new one started from.
        new: The new (fine-tuned) model.
        configuration: Configuration to compare (default: the new model's default, see
            :meth:`~NNSegLib.util.model_folder.ModelFolder.default_configuration`).

    Raises:
        NNSegError: when a folder is not a model folder or has no such configuration.
    """
    old_folder, new_folder = ModelFolder(Path(old)), ModelFolder(Path(new))
    for folder in (old_folder, new_folder):
        if not folder.root.is_dir():
            raise NNSegError(f"{folder.root}: model folder not found")
    configuration = configuration or new_folder.default_configuration()
    runs: dict[str, dict[str, Any]] = {}
    for side, folder in (("old", old_folder), ("new", new_folder)):
        for run in folder.runs(configuration):
            if run.validation_summary.is_file():
                runs.setdefault(run.fold, {})[side] = read_validation(run.validation_summary)
    if not runs:
        raise NNSegError(f"neither {old_folder.root} nor {new_folder.root} has a validated "
                         f"{configuration} fold (validation_summary.json)")
    folds = []
    for fold in sorted(runs, key=lambda f: (not f.isdigit(), f.zfill(4))):
        o, n = runs[fold].get("old"), runs[fold].get("new")
        same = (o[2] == n[2]) if o and n and o[2] and n[2] else None
        folds.append(FoldDice(fold, o[0] if o else None, n[0] if n else None,
                              o[1] if o else {}, n[1] if n else {}, same))
    return ModelComparison(old_folder.root, new_folder.root, configuration,
                           old_folder.identity()["version"], new_folder.identity()["version"],
                           tuple(folds))


# --- CLI --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnseg compare-models``."""
    parser.add_argument("old", type=Path, help="the earlier model folder")
    parser.add_argument("new", type=Path, help="the new (fine-tuned) model folder")
    parser.add_argument("-c", "--configuration", default=None,
                        help="configuration (default: the new model's default)")


def run(args: argparse.Namespace, progress: Progress) -> int:
    """``nnseg compare-models``."""
    import sys

    progress.close()
    comparison = compare_models(args.old, args.new, args.configuration)
    header, rows = comparison.table()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = sys.stderr if getattr(args, "progress_json", None) == "-" else sys.stdout
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)
    print(comparison.summary_line(), file=out)
    progress.event("comparison", **comparison.to_dict())
    return 0


__all__ = ["FoldDice", "ModelComparison", "add_arguments", "compare_models", "read_validation",
           "run"]
