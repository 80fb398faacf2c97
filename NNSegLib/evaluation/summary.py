"""The result of an evaluation: per case metrics and their means (``summary.json``).

Kept apart from :mod:`.evaluate` (which computes it) so that :mod:`.report` and readers of
``summary.json`` need only this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.evaluation.metrics import NAN_RULES, ClassMetrics, foreground_mean, mean_metrics
from NNSegLib.util.atomic import write_json
from NNSegLib.util.json_files import load_document

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class CaseResult:
    """Metrics of one case: label value → :class:`ClassMetrics`, plus the files compared."""

    case: str
    reference: str
    prediction: str
    metrics: dict[int, ClassMetrics]

    def to_dict(self) -> dict:
        return {"case": self.case, "reference": self.reference, "prediction": self.prediction,
                "metrics": {str(k): m.to_dict() for k, m in self.metrics.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> CaseResult:
        return cls(d["case"], d["reference"], d["prediction"],
                   {int(k): ClassMetrics.from_dict(v) for k, v in d["metrics"].items()})


@dataclass(frozen=True)
class Summary:
    """Evaluation of a set of cases.

    Attributes:
        labels: Foreground label name → value.
        cases: Per case results, sorted by case name.
        means: Label value → mean metrics and counts (:func:`.metrics.mean_metrics`).
        foreground_mean: Mean over classes of the class means.
        version: Schema version of ``summary.json``.
    """

    labels: dict[str, int]
    cases: tuple[CaseResult, ...]
    means: dict[int, dict[str, float]]
    foreground_mean: dict[str, float]
    version: int = SUMMARY_VERSION

    @classmethod
    def from_cases(cls, labels: dict[str, int], cases: Sequence[CaseResult]) -> Summary:
        """Aggregate per case results into class and foreground means."""
        fg = {name: int(v) for name, v in labels.items() if int(v) != 0}
        cases = tuple(sorted(cases, key=lambda c: c.case))
        means = {v: mean_metrics(c.metrics[v] for c in cases) for v in sorted(fg.values())}
        return cls(fg, cases, means, foreground_mean(means))

    @property
    def mean_foreground_dice(self) -> float:
        return self.foreground_mean["dice"]

    def dice_per_class(self) -> dict[int, list[float]]:
        """Label value → the cases' Dice values (NaN included)."""
        return {v: [c.metrics[v].dice for c in self.cases] for v in self.means}

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "labels": dict(self.labels),
            "nan_rules": dict(NAN_RULES),
            "foreground_mean": _clean(self.foreground_mean),
            "mean": {str(k): _clean(v) for k, v in self.means.items()},
            "cases": [c.to_dict() for c in self.cases],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Summary:
        if d.get("version") != SUMMARY_VERSION:
            raise ValueError(f"summary version {d.get('version')!r} is not supported")
        return cls.from_cases(d["labels"], [CaseResult.from_dict(c) for c in d["cases"]])

    def save(self, path: Path | str) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> Summary:
        return load_document(path, cls.from_dict, what="evaluation summary",
                             hint="nnseg evaluate")


def _clean(d: dict[str, float]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


__all__ = ["SUMMARY_VERSION", "CaseResult", "Summary"]
