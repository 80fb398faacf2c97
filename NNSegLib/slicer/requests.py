"""What a panel asks for, as typed values built once from the parameter node.

A click on *Train*, *Segment*, *Segment batch* or *Fine-tune* reads the parameter node once
into one of these frozen dataclasses; the panels' command builders (:mod:`NNSegLib.slicer.panels`)
turn it into ``nnseg`` argument lists with the command modules' ``*_argv`` builders, and a training
job stores a :class:`TrainContext` per step, so a later session re-attaching to it reads what
was asked instead of parsing argument lists back. No ``qt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``nnseg train``'s epochs when the Train panel gives none (RunConfig's default).
DEFAULT_MAX_EPOCHS = 1000


def _work(work: Any) -> Path | None:
    """The parameter node's work folder, ``None`` when unset (empty or ``.``)."""
    return Path(str(work)) if work is not None and str(work) not in ("", ".") else None


def _path(path: Any) -> Path:
    """A path parameter as a Path; an unset one (``None``, as the model field before a model
    is chosen) is ``Path()``, as Slicer's own Path parameters start."""
    return Path(str(path)) if path is not None else Path()


@dataclass(frozen=True)
class TrainRequest:
    """*Train* (or *Resume*): which folds of which configuration, for how long, where."""

    dataset: Path
    work: Path | None
    configuration: str
    folds: str = "0"
    max_epochs: int | None = None
    device: str = "auto"
    resume: bool = False
    extra: tuple[str, ...] = ()
    time_budget_minutes: float | None = None

    @classmethod
    def from_parameters(cls, params: Any, folds: str | None = None, resume: bool = False,
                        extra: Any = ()) -> TrainRequest:
        """The request of the Train panel's values (``folds`` overrides the panel's, as
        *Resume* passes the resumable ones)."""
        return cls(Path(str(params.datasetFolder)), _work(params.workFolder),
                   params.trainConfiguration, params.folds if folds is None else folds,
                   int(params.maxEpochs) or None, params.device, resume,
                   tuple(str(a) for a in extra or ()),
                   float(params.timeBudgetMinutes) if params.timeBudget else None)


@dataclass(frozen=True)
class FineTuneRequest:
    """*Fine-tune*: the Train panel's configuration and folds, the fine-tune epochs."""

    dataset: Path
    work: Path | None
    configuration: str
    folds: str = "0"
    epochs: int = 0
    device: str = "auto"
    adapt_head: bool = False
    extra: tuple[str, ...] = ()

    @classmethod
    def from_parameters(cls, params: Any, extra: Any = ()) -> FineTuneRequest:
        return cls(Path(str(params.datasetFolder)), _work(params.workFolder),
                   params.trainConfiguration, params.folds, int(params.fineTuneEpochs),
                   params.device, bool(params.fineTuneAdaptHead),
                   tuple(str(a) for a in extra or ()))


@dataclass(frozen=True)
class SegmentRequest:
    """*Segment*: the model and how to run it (the inputs are copied from the scene)."""

    model: Path
    folds: str = ""
    device: str = "auto"
    tta: bool = True
    uncertainty: bool = False
    postprocessing: bool = True
    show_3d: bool = False
    allow_unfinished: bool = False
    preview_first: bool = False

    @classmethod
    def from_parameters(cls, params: Any) -> SegmentRequest:
        return cls(_path(params.modelPath), params.predictFolds, params.predictDevice,
                   bool(params.tta), bool(params.uncertainty), bool(params.postprocessing),
                   bool(params.show3D), bool(params.allowUnfinished), bool(params.previewFirst))


@dataclass(frozen=True)
class BatchRequest:
    """*Segment batch*: a folder or scene volumes, segmented into a batch folder."""

    source: str
    input_folder: Path | None
    batch_folder: Path
    model: Path
    folds: str = ""
    device: str = "auto"
    tta: bool = True
    allow_unfinished: bool = False
    channels: int = 1

    @classmethod
    def from_parameters(cls, params: Any, model_channels: Any = None) -> BatchRequest:
        folder = params.batchInputFolder
        return cls(params.batchSource, Path(str(folder)) if folder is not None else None,
                   Path(str(params.batchFolder)), _path(params.modelPath),
                   params.predictFolds, params.predictDevice, bool(params.tta),
                   bool(params.allowUnfinished), len(model_channels) if model_channels else 1)


@dataclass(frozen=True)
class TrainContext:
    """What one step of a training job was asked, stored with the job (``job.json``).

    ``fold`` is ``None`` for a step that trains nothing (preprocess, archive-model).
    """

    VERSION = 1

    kind: str
    configuration: str
    fold: str | None = None
    max_epochs: int = DEFAULT_MAX_EPOCHS

    def to_json(self) -> dict[str, Any]:
        return {"version": self.VERSION, "kind": self.kind,
                "configuration": self.configuration, "fold": self.fold,
                "max_epochs": self.max_epochs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainContext:
        if data.get("version") != cls.VERSION:
            raise ValueError(f"training context version {data.get('version')!r} "
                             f"(expected {cls.VERSION})")
        return cls(str(data["kind"]), str(data["configuration"]),
                   None if data.get("fold") is None else str(data["fold"]),
                   int(data["max_epochs"]))


__all__ = ["BatchRequest", "DEFAULT_MAX_EPOCHS", "FineTuneRequest", "SegmentRequest",
           "TrainContext", "TrainRequest"]
