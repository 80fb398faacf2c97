"""Where each stage reads and writes: one work folder per dataset, given as a ``Path``.

Layout (all paths below ``root``)::

    dataset.json                      copy of the raw dataset.json (written by fingerprint)
    dataset_fingerprint.json          nnseg fingerprint
    plans.json                        nnseg plan
    preprocessed/<data_identifier>/   nnseg preprocess: <case>.npy, <case>_seg.npy,
                                      <case>.json (properties), <case>_locs.npz
    splits_final.json                 5-fold splits (written once by nnseg train)
    results/                          the *model folder* (what ``nnseg predict -m`` takes)
        (layout: NNSegLib.util.model_folder)
    jobs/<id>/                        background jobs started by the Slicer module (record,
                                      progress events, output; NNSegLib.slicer.background_jobs)

No environment variables: every command takes ``DATASET`` and ``--work DIR`` (default
``./nnseg_work/<dataset folder name>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from NNSegLib.util.model_folder import ModelFolder, RunFolder


@dataclass(frozen=True)
class Workspace:
    """Paths of one dataset's work folder."""

    root: Path

    @classmethod
    def for_dataset(cls, dataset: Path | str, work: Path | str | None = None) -> Workspace:
        """The work folder for ``dataset``: ``work`` or ``./nnseg_work/<dataset name>``."""
        if work is not None:
            return cls(Path(work))
        return cls(Path.cwd() / "nnseg_work" / Path(dataset).resolve().name)

    @property
    def dataset_json(self) -> Path:
        return self.root / "dataset.json"

    @property
    def fingerprint(self) -> Path:
        return self.root / "dataset_fingerprint.json"

    @property
    def plans(self) -> Path:
        return self.root / "plans.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits_final.json"

    def preprocessed(self, data_identifier: str) -> Path:
        return self.root / "preprocessed" / data_identifier

    @property
    def results(self) -> Path:
        """The model folder's path."""
        return self.root / "results"

    @property
    def jobs(self) -> Path:
        """Record folders of background jobs (:mod:`NNSegLib.slicer.background_jobs`)."""
        return self.root / "jobs"

    @property
    def model(self) -> ModelFolder:
        """The model folder (:class:`~NNSegLib.util.model_folder.ModelFolder`)."""
        return ModelFolder(self.results)

    def run(self, configuration: str, fold: int | str) -> RunFolder:
        """One training run's folder."""
        return self.model.run(configuration, fold)

    def run_dir(self, configuration: str, fold: int | str) -> Path:
        return self.run(configuration, fold).path
