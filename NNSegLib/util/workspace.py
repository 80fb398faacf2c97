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
    model_versions/v<N>/              earlier model folders, moved aside by
                                      ``nnseg archive-model`` before a fine-tune
    jobs/<id>/                        background jobs started by the Slicer module (record,
                                      progress events, output; NNSegLib.jobs.detached)

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
        """Record folders of background jobs (:mod:`NNSegLib.jobs.detached`)."""
        return self.root / "jobs"

    @property
    def model(self) -> ModelFolder:
        """The model folder (:class:`~NNSegLib.util.model_folder.ModelFolder`)."""
        return ModelFolder(self.results)

    @property
    def model_versions(self) -> Path:
        """Where ``nnseg archive-model`` keeps earlier model folders."""
        return self.root / "model_versions"

    def archived_model(self, version: int) -> Path:
        """The archived model folder of ``version`` (``model_versions/v<version>``)."""
        return self.model_versions / f"v{version}"

    def run(self, configuration: str, fold: int | str) -> RunFolder:
        """One training run's folder."""
        return self.model.run(configuration, fold)

    def run_dir(self, configuration: str, fold: int | str) -> Path:
        return self.run(configuration, fold).path

    def stale_inputs(self, dataset: Path | str | None) -> list[str]:
        """Warnings when a stage's inputs are older than what they were made from.

        The fingerprint must be newer than the raw data (``dataset.json``, ``imagesTr``,
        ``labelsTr``) and the plan newer than the fingerprint; otherwise the later stages
        work from an outdated description of the data.
        """
        warnings = []
        fingerprint = _mtime(self.fingerprint)
        if dataset is not None and fingerprint is not None:
            newest = _newest_raw_file(Path(dataset))
            if newest is not None and newest[0] > fingerprint:
                warnings.append(f"{newest[1]} changed after {self.fingerprint} was made; run "
                                "`nnseg fingerprint` and `nnseg plan` again")
        plans = _mtime(self.plans)
        if plans is not None and fingerprint is not None and plans < fingerprint:
            warnings.append(f"{self.plans} is older than {self.fingerprint}; run `nnseg plan` "
                            "again")
        return warnings


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _newest_raw_file(dataset: Path) -> tuple[int, Path] | None:
    """The most recently modified of ``dataset.json`` and the training images and labels."""
    newest: tuple[int, Path] | None = None
    candidates = [dataset / "dataset.json"]
    for sub in ("imagesTr", "labelsTr"):
        try:
            candidates += [p for p in (dataset / sub).iterdir() if not p.name.startswith(".")]
        except OSError:
            continue
    for path in candidates:
        mtime = _mtime(path)
        if mtime is not None and (newest is None or mtime > newest[0]):
            newest = (mtime, path)
    return newest
