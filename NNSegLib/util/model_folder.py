"""The layout of a model folder (``WORK/results``, what ``nnseg predict -m`` takes).

::

    plans.json, dataset.json                 copied in when the first fold starts training
    <config>/fold_<k>/                       one training run (:class:`RunFolder`)
    <config>/predicted_next_stage/<next>/    a low-res stage's CV segmentations for the cascade
    best_configuration.json                  nnseg find-best
    postprocessing.json                      nnseg find-best
    model_version.json                       a fine-tuned model's version and parent (optional;
                                             a model without it is version 1)

Every file name of that layout is defined here once; stages ask a :class:`ModelFolder` or
:class:`RunFolder` for paths instead of joining names themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.util.atomic import copy_file
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import read_json

PLANS = "plans.json"
DATASET_JSON = "dataset.json"
BEST_CONFIGURATION = "best_configuration.json"
POSTPROCESSING = "postprocessing.json"
MODEL_VERSION = "model_version.json"
PREDICTED_NEXT_STAGE = "predicted_next_stage"

CHECKPOINT_LATEST = "checkpoint_latest.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
CHECKPOINT_FINAL = "checkpoint_final.pt"
#: Which checkpoint inference uses, in order of preference.
CHECKPOINT_PREFERENCE = (CHECKPOINT_FINAL, CHECKPOINT_BEST, CHECKPOINT_LATEST)
RUN_CONFIG = "run_config.json"
TRAINING_LOG = "log.jsonl"
VALIDATION = "validation"
VALIDATION_SUMMARY = "validation_summary.json"
INIT_FROM = "init_from.json"


def epoch_position(epochs: int, record: dict, max_epochs: int | str) -> str:
    """How far a run is after ``epochs`` epochs, its last log ``record`` saying how many steps
    were done and planned: ``"13, step 240/250"`` (epochs end early on a slow machine, so
    there may be more than ``max_epochs`` of them), else ``"12/1000"``."""
    if record.get("step") is not None and record.get("planned_steps"):
        return f"{epochs}, step {int(record['step'])}/{int(record['planned_steps'])}"
    return f"{epochs}/{max_epochs}"


@dataclass(frozen=True)
class RunFolder:
    """One training run: ``<model folder>/<configuration>/fold_<k>/``."""

    path: Path

    @property
    def fold(self) -> str:
        return self.path.name[len("fold_"):]

    @property
    def configuration(self) -> str:
        return self.path.parent.name

    @property
    def run_config(self) -> Path:
        return self.path / RUN_CONFIG

    @property
    def log(self) -> Path:
        return self.path / TRAINING_LOG

    @property
    def latest(self) -> Path:
        return self.path / CHECKPOINT_LATEST

    @property
    def best(self) -> Path:
        return self.path / CHECKPOINT_BEST

    @property
    def final(self) -> Path:
        return self.path / CHECKPOINT_FINAL

    @property
    def validation(self) -> Path:
        """Full-image segmentations of the fold's validation cases (for ``find-best``)."""
        return self.path / VALIDATION

    @property
    def validation_summary(self) -> Path:
        return self.path / VALIDATION_SUMMARY

    @property
    def init_from(self) -> Path:
        """What a fine-tuned run's weights started from (``nnseg train --init-from``)."""
        return self.path / INIT_FROM

    @property
    def is_finished(self) -> bool:
        """Training ended (the final checkpoint exists)."""
        return self.final.is_file()

    def checkpoint(self, names: Sequence[str] = CHECKPOINT_PREFERENCE) -> Path | None:
        """The first existing checkpoint in preference order, else ``None``."""
        for name in names:
            if (self.path / name).is_file():
                return self.path / name
        return None

    def progress_text(self) -> str:
        """``"epoch 12/1000"``; ``"epoch 13, step 240/250"`` when the log counts steps (epochs
        end early on a slow machine, so there may be more than ``max_epochs`` of them)."""
        import json

        lines: list[bytes] = []
        try:
            with open(self.log, "rb") as f:
                lines = [line for line in f if line.strip()]
            last = json.loads(lines[-1]) if lines else {}
        except (OSError, ValueError):
            last = {}
        if not isinstance(last, dict):
            last = {}
        try:
            planned = read_json(self.run_config, expect=dict).get("max_epochs", "?")
        except NNSegError:
            planned = "?"
        return "epoch " + epoch_position(len(lines), last, planned)

    def status(self) -> str:
        """``"finished"``, ``"is still training (process 123, epoch 12/1000)"`` or
        ``"stopped before finishing (epoch 12/1000)"``."""
        from NNSegLib.util.locking import lock_owner

        if self.is_finished:
            return "finished"
        epochs = self.progress_text()
        owner = lock_owner(self.path)
        if owner is not None:
            pid = owner.get("pid")
            return f"is still training ({f'process {pid}, ' if pid else ''}{epochs})"
        return f"stopped before finishing ({epochs}; resume it with `nnseg train … --continue`)"


@dataclass(frozen=True)
class ModelFolder:
    """Paths and contents of a model folder (see the module doc)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def plans(self) -> Path:
        return self.root / PLANS

    @property
    def dataset_json(self) -> Path:
        return self.root / DATASET_JSON

    @property
    def best_configuration_file(self) -> Path:
        return self.root / BEST_CONFIGURATION

    @property
    def postprocessing(self) -> Path:
        return self.root / POSTPROCESSING

    @property
    def version_file(self) -> Path:
        return self.root / MODEL_VERSION

    @property
    def version(self) -> int:
        """The model's version: 1 unless ``model_version.json`` says otherwise."""
        if not self.version_file.is_file():
            return 1
        data = read_json(self.version_file, expect=dict)
        value = data.get("version", 1)
        if not isinstance(value, int) or value < 1:
            raise NNSegError(f"{self.version_file}: 'version' must be a positive integer, "
                             f"got {value!r}")
        return value

    @property
    def parent(self) -> Path | None:
        """The model folder this one was fine-tuned from (``model_version.json``), if any."""
        if not self.version_file.is_file():
            return None
        path = (read_json(self.version_file, expect=dict).get("parent") or {}).get("path")
        return Path(path) if path else None

    def identity(self) -> dict[str, str]:
        """``{"name", "version"}`` of the model, as the tags of its results record it.

        ``name`` is ``dataset.json``'s ``name`` (else the folder name), ``version`` is
        ``v<N>`` (:attr:`version`). Neither contains ``:`` or ``|`` (segment tag separators).
        """
        name = self.root.name
        if self.dataset_json.is_file():
            raw = read_json(self.dataset_json, expect=dict)
            name = str(raw.get("name") or name)
        clean = name.replace("|", "_").replace(":", "_")
        return {"name": clean, "version": f"v{self.version}"}

    def adopt(self, plans: Path, dataset_json: Sequence[Path | None]) -> None:
        """Copy ``plans.json`` and ``dataset.json`` in (first run only; later runs keep them).

        ``dataset_json`` lists candidate sources, the first existing one is used.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.plans.is_file():
            copy_file(plans, self.plans)
        if not self.dataset_json.is_file():
            for source in dataset_json:
                if source is not None and Path(source).is_file():
                    copy_file(Path(source), self.dataset_json)
                    break

    def run(self, configuration: str, fold: int | str) -> RunFolder:
        return RunFolder(self.root / configuration / f"fold_{fold}")

    def next_stage_dir(self, configuration: str, next_stage: str) -> Path:
        """Where ``configuration``'s CV segmentations for the cascade stage ``next_stage`` go."""
        return self.root / configuration / PREDICTED_NEXT_STAGE / next_stage

    def runs(self, configuration: str) -> list[RunFolder]:
        """Every ``fold_<k>`` folder of ``configuration`` (trained or not), folds in order."""
        base = self.root / configuration
        if not base.is_dir():
            return []
        found = [RunFolder(p) for p in base.iterdir()
                 if p.is_dir() and p.name.startswith("fold_")]
        return sorted(found, key=lambda r: _fold_key(r.fold))

    def trained_folds(self, configuration: str,
                      names: Sequence[str] = CHECKPOINT_PREFERENCE) -> list[str]:
        """Folds (``"0"``, ``"all"`` …) of ``configuration`` that have a checkpoint."""
        return [r.fold for r in self.runs(configuration) if r.checkpoint(names)]

    def trained_configurations(self) -> list[str]:
        """Configurations with at least one checkpoint, sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and self.trained_folds(p.name))

    def read_best_configuration(self) -> dict[str, Any] | None:
        """``best_configuration.json`` as a dict, or ``None`` when ``find-best`` has not run."""
        if not self.best_configuration_file.is_file():
            return None
        return read_json(self.best_configuration_file, expect=dict, hint="nnseg find-best")

    def best_configurations(self) -> list[str]:
        """The configuration(s) ``find-best`` chose (several for an ensemble), or ``[]``."""
        data = self.read_best_configuration() or {}
        if isinstance(data.get("configurations"), list):
            return [str(c) for c in data["configurations"]]
        if isinstance(data.get("configuration"), str):
            return [data["configuration"]]
        return []

    def default_configuration(self) -> str:
        """Best configuration, else ``3d_fullres``, else the first with checkpoints.

        Raises:
            NNSegError: when the folder holds no trained configuration at all.
        """
        best = self.best_configurations()
        if best:
            return best[0]
        if self.trained_folds("3d_fullres"):
            return "3d_fullres"
        found = self.trained_configurations()
        if not found:
            raise NNSegError(f"{self.root}: no trained configuration (no <config>/fold_<k>/"
                             f"{CHECKPOINT_FINAL}); train one or check the model folder")
        return found[0]


def _fold_key(fold: str) -> tuple:
    return (not fold.isdigit(), int(fold) if fold.isdigit() else 0, fold)


__all__ = [
    "BEST_CONFIGURATION", "CHECKPOINT_BEST", "CHECKPOINT_FINAL", "CHECKPOINT_LATEST",
    "CHECKPOINT_PREFERENCE", "DATASET_JSON", "INIT_FROM", "MODEL_VERSION", "ModelFolder",
    "PLANS", "POSTPROCESSING",
    "PREDICTED_NEXT_STAGE", "RUN_CONFIG", "RunFolder", "TRAINING_LOG", "VALIDATION",
    "VALIDATION_SUMMARY", "epoch_position",
]
