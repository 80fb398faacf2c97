"""METHOD §1: the dataset fingerprint (``dataset_fingerprint.json``).

Schema: :class:`Fingerprint`. Per case: shape, spacing and shape after cropping to the
bounding box of nonzero voxels (over all channels), plus a random sample (fixed seed per
case) of foreground intensities per channel. Dataset-wide: per-channel foreground
intensity statistics (:class:`~NNSegLib.planning.plans.IntensityProperties`, from the pooled
samples; ``min``/``max`` exact over all foreground voxels) and the median relative size
after cropping.

:func:`compute_fingerprint` checks every training case in the same read (see
:func:`NNSegLib.data.check.check_case`) and refuses a dataset with errors before anything is
written. Workers are processes (one case each at a time) that never import torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.planning.plans import IntensityProperties
from NNSegLib.util import options
from NNSegLib.util.atomic import write_bytes, write_json
from NNSegLib.util.command_line import option
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import load_document
from NNSegLib.util.progress import Progress

FINGERPRINT_VERSION = 1

#: Foreground intensity samples drawn per case and channel.
DEFAULT_SAMPLES_PER_CASE = 10_000


@dataclass(frozen=True)
class CaseFingerprint:
    """One case: shapes and spacing in numpy order ``(z, y, x)``."""

    identifier: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    shape_after_crop: tuple[int, ...]


@dataclass(frozen=True)
class Fingerprint:
    """What the planner needs to know about a dataset.

    Attributes:
        dataset_name: From dataset.json.
        channel_names: Channel index (string) → name.
        labels: Label name → value.
        cases: Per-case shapes and spacings.
        intensity_properties: Per channel (string) foreground intensity statistics.
        median_relative_size_after_cropping: Median over cases of
            (voxels after crop / voxels before).
        version: Schema version.
    """

    dataset_name: str
    channel_names: dict[str, str]
    labels: dict[str, int]
    cases: tuple[CaseFingerprint, ...]
    intensity_properties: dict[str, IntensityProperties]
    median_relative_size_after_cropping: float
    version: int = FINGERPRINT_VERSION

    @property
    def spacings(self) -> list[tuple[float, ...]]:
        return [c.spacing for c in self.cases]

    @property
    def shapes_after_crop(self) -> list[tuple[int, ...]]:
        return [c.shape_after_crop for c in self.cases]

    @property
    def median_spacing(self) -> tuple[float, ...]:
        """Per-axis median spacing ``(z, y, x)``."""
        return tuple(float(v) for v in np.median(np.array(self.spacings), axis=0))

    @property
    def median_shape_after_crop(self) -> tuple[float, ...]:
        """Per-axis median shape after cropping (voxels, original spacing)."""
        return tuple(float(v) for v in np.median(np.array(self.shapes_after_crop), axis=0))

    def summary(self) -> dict[str, Any]:
        """Dataset-wide spacing and shape statistics (derived; for people reading the JSON)."""
        spacings = np.array(self.spacings, dtype=float)
        shapes = np.array([c.shape for c in self.cases], dtype=float)
        crops = np.array(self.shapes_after_crop, dtype=float)
        out: dict[str, Any] = {"num_cases": len(self.cases)}
        for name, values in (("spacing", spacings), ("shape", shapes),
                             ("shape_after_crop", crops)):
            for q in (0, 10, 50, 90, 100):
                key = {0: "min", 50: "median", 100: "max"}.get(q, f"percentile_{q}")
                out[f"{name}_{key}"] = np.percentile(values, q, axis=0).round(6).tolist()
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cases"] = [
            {**c, "shape": list(c["shape"]), "spacing": list(c["spacing"]),
             "shape_after_crop": list(c["shape_after_crop"])}
            for c in d["cases"]
        ]
        if self.cases:
            d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        if d.get("version") != FINGERPRINT_VERSION:
            raise ValueError(f"fingerprint version {d.get('version')!r} is not supported")
        return cls(
            dataset_name=d["dataset_name"],
            channel_names={str(k): str(v) for k, v in d["channel_names"].items()},
            labels={str(k): int(v) for k, v in d["labels"].items()},
            cases=tuple(
                CaseFingerprint(
                    c["identifier"], tuple(int(v) for v in c["shape"]),
                    tuple(float(v) for v in c["spacing"]),
                    tuple(int(v) for v in c["shape_after_crop"]),
                )
                for c in d["cases"]
            ),
            intensity_properties={
                str(k): IntensityProperties(**v) for k, v in d["intensity_properties"].items()
            },
            median_relative_size_after_cropping=float(d["median_relative_size_after_cropping"]),
            version=d["version"],
        )

    def save(self, path: Path | str) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> Fingerprint:
        return load_document(path, cls.from_dict, what="fingerprint", hint="nnseg fingerprint")


# -- computation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseStatistics:
    """What a worker hands back for one case (small: no image arrays)."""

    fingerprint: CaseFingerprint
    samples: tuple[np.ndarray, ...]
    minimum: tuple[float, ...]
    maximum: tuple[float, ...]
    relative_size_after_crop: float


def nonzero_bbox(images: Sequence[np.ndarray]) -> list[list[int]]:
    """Half-open bounding box ``[[z0, z1], [y0, y1], [x0, x1]]`` of voxels nonzero in any
    channel; the whole array when everything is zero."""
    mask = np.asarray(images[0]) != 0
    for image in images[1:]:
        mask |= np.asarray(image) != 0
    bbox = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return [[0, s] for s in mask.shape]
        bbox.append([int(hits[0]), int(hits[-1]) + 1])
    return bbox


def case_seed(identifier: str, seed: int = 0) -> int:
    """A per-case sampling seed that does not depend on case order or worker."""
    return (zlib.crc32(identifier.encode("utf-8")) + seed) % (2**32)


def case_statistics(identifier: str, images: Sequence[np.ndarray], label: np.ndarray,
                    spacing: Sequence[float], num_samples: int = DEFAULT_SAMPLES_PER_CASE,
                    seed: int = 0) -> CaseStatistics:
    """Fingerprint one case from its arrays (numpy order, label as integers)."""
    shape = tuple(int(s) for s in images[0].shape)
    bbox = nonzero_bbox(images)
    crop = tuple(b - a for a, b in bbox)
    mask = label.ravel() > 0
    foreground = np.flatnonzero(mask)
    rng = np.random.default_rng(case_seed(identifier, seed))
    chosen = foreground
    if foreground.size > num_samples:
        chosen = np.sort(rng.choice(foreground, num_samples, replace=False))
    samples, lows, highs = [], [], []
    for image in images:
        flat = image.ravel()
        samples.append(flat[chosen].astype(np.float64))
        fg = flat[foreground]
        lows.append(float(fg.min()) if fg.size else float("inf"))
        highs.append(float(fg.max()) if fg.size else float("-inf"))
    fingerprint = CaseFingerprint(identifier, shape, tuple(float(s) for s in spacing), crop)
    return CaseStatistics(fingerprint, tuple(samples), tuple(lows), tuple(highs),
                          float(np.prod(crop) / np.prod(shape)))


def _fingerprint_job(case, spec, num_samples: int, seed: int):
    """Worker: check and fingerprint one case in one read; no arrays go back."""
    from NNSegLib.data.check import check_case

    checked = check_case(case, spec, keep_arrays=True)
    if not checked.ok or checked.label is None or not checked.images:
        return checked.without_arrays(), None
    assert checked.geometry is not None  # a case that reads has a geometry
    stats = case_statistics(case.identifier, checked.images, checked.label,
                            checked.geometry.spacing, num_samples, seed)
    return checked.without_arrays(), stats


def intensity_properties(samples: Sequence[np.ndarray], minimum: float,
                         maximum: float) -> IntensityProperties:
    """Statistics of one channel's pooled foreground samples."""
    values = np.concatenate(samples) if len(samples) else np.zeros(0)
    if values.size == 0:
        raise NNSegError("no foreground voxels in any label map; nothing to learn")
    p005, median, p995 = np.percentile(values, [0.5, 50.0, 99.5])
    return IntensityProperties(
        mean=float(values.mean()), std=float(values.std()), percentile_00_5=float(p005),
        percentile_99_5=float(p995), min=float(minimum), max=float(maximum),
        median=float(median),
    )


def compute_fingerprint(dataset: Path | str, workers: int = 2, progress=None,
                        num_samples: int = DEFAULT_SAMPLES_PER_CASE,
                        seed: int = 0) -> Fingerprint:
    """Check and fingerprint the training cases of a raw dataset in one pass.

    Args:
        dataset: Raw dataset folder.
        workers: Worker processes (1 = in this process).
        progress: Optional :class:`~NNSegLib.util.progress.Progress`.
        num_samples: Foreground intensity samples per case and channel.
        seed: Sampling seed (combined with each case's name).

    Raises:
        NNSegError: listing every problem when the dataset check finds errors.
    """
    from NNSegLib.data.check import CheckReport, cross_case_problems, scan_layout, sort_problems
    from NNSegLib.util.parallel import map_cases

    layout = scan_layout(dataset)
    problems = list(layout.problems)
    results: dict[str, CaseStatistics] = {}
    if layout.spec is not None:
        jobs = [(case, layout.spec, num_samples, seed) for case in layout.training]
        checks = {}
        for checked, stats in map_cases(_fingerprint_job, jobs, workers, progress, "fingerprint"):
            problems.extend(checked.problems)
            checks[checked.identifier] = checked
            if stats is not None:
                results[checked.identifier] = stats
        problems += cross_case_problems(layout, checks, layout.training)
    report = CheckReport(Path(dataset), tuple(sort_problems(problems)), len(layout.training))
    report.raise_if_errors()
    for problem in report.warnings:
        if progress is not None:
            progress.message(problem.format(), level="warning")
    spec = layout.spec
    assert spec is not None  # raise_if_errors: dataset.json was readable
    ordered = [results[c.identifier] for c in layout.training]
    channels = {}
    for c in range(spec.num_channels):
        channels[str(c)] = intensity_properties(
            [r.samples[c] for r in ordered], min(r.minimum[c] for r in ordered),
            max(r.maximum[c] for r in ordered))
    if progress is not None:
        progress.done(cases=len(ordered))
    return Fingerprint(
        dataset_name=spec.name,
        channel_names={str(k): v for k, v in spec.channel_names.items()},
        labels=dict(spec.labels),
        cases=tuple(r.fingerprint for r in ordered),
        intensity_properties=channels,
        median_relative_size_after_cropping=float(
            np.median([r.relative_size_after_crop for r in ordered])),
    )


def run_fingerprint(dataset: Path | str, workspace, workers: int = 2, progress=None,
                    num_samples: int = DEFAULT_SAMPLES_PER_CASE, seed: int = 0) -> Fingerprint:
    """Compute the fingerprint and write it and a copy of ``dataset.json`` to ``workspace``.

    Nothing is written when the dataset has errors.

    Args:
        dataset: Raw dataset folder.
        workspace: A :class:`~NNSegLib.util.workspace.Workspace`.
        workers, progress, num_samples, seed: As for :func:`compute_fingerprint`.
    """
    from NNSegLib.util.atomic import clean_stale_temps

    fingerprint = compute_fingerprint(dataset, workers, progress, num_samples, seed)
    clean_stale_temps(workspace.root)
    fingerprint.save(workspace.fingerprint)
    write_bytes(workspace.dataset_json, (Path(dataset) / "dataset.json").read_bytes())
    return fingerprint


# -- CLI ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="raw dataset folder (with dataset.json)")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (default: ./nnseg_work/<dataset folder name>)")
    parser.add_argument("--workers", type=options.positive_int, default=2,
                        help="worker processes reading cases (default: 2; 1 = no pool)")
    parser.add_argument("--samples-per-case", type=options.positive_int,
                        default=DEFAULT_SAMPLES_PER_CASE,
                        help="foreground intensity samples per case and channel "
                             f"(default: {DEFAULT_SAMPLES_PER_CASE})")
    parser.add_argument("--seed", type=options.non_negative_int, default=0,
                        help="sampling seed (default: 0)")


def fingerprint_argv(dataset: Path | str, work: Path | str | None = None,
                     workers: int | None = None) -> list[str]:
    """``nnseg fingerprint`` as an argument list (``None`` leaves an option at its default)."""
    return ["fingerprint", str(dataset), *option("--work", work), *option("--workers", workers)]


def run(args: argparse.Namespace, progress: Progress) -> int:
    from NNSegLib.util.workspace import Workspace

    workspace = Workspace.for_dataset(args.dataset, args.work)
    try:
        fp = run_fingerprint(args.dataset, workspace, args.workers, progress,
                             args.samples_per_case, args.seed)
    finally:
        progress.close()
    summary = fp.summary()
    progress.message(
        f"{len(fp.cases)} cases; median spacing {summary['spacing_median']}, median shape "
        f"after crop {summary['shape_after_crop_median']}, relative size after crop "
        f"{fp.median_relative_size_after_cropping:.3f}; wrote {workspace.fingerprint}")
    return 0
