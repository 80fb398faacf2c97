"""METHOD §0: check a raw nnU-Net v2 dataset and report every problem at once.

Two levels:

* :func:`scan_layout` looks only at ``dataset.json`` and file names (missing channels,
  labels without images, stray files, wrong endings, ``numTraining``).
* :func:`check_case` reads one case's files and checks their contents (readable, scalar
  2D/3D, positive spacing, finite values, geometry of channels and label agreeing, label
  values integer and declared). With ``keep_arrays=True`` it hands back the arrays it
  read, so that :mod:`NNSegLib.planning.fingerprint` checks and fingerprints in one read per case.

:func:`check_dataset` runs both, parallel over cases, and returns a :class:`CheckReport`;
data problems never raise (``CheckReport.raise_if_errors`` does that on request).
``nnseg check`` writes nothing and exits with 2 when there are errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.data.dataset import CHANNEL_RE, Case, DatasetError, DatasetSpec, load_dataset_json
from NNSegLib.data.io import (
    SUPPORTED_ENDINGS,
    Geometry,
    ImageReadError,
    SimpleITKIO,
    file_ending,
    scan_nifti,
)
from NNSegLib.util import options
from NNSegLib.util.command_line import option
from NNSegLib.util.errors import EXIT_BAD_INPUT, EXIT_OK, NNSegError
from NNSegLib.util.files import describe_errno
from NNSegLib.util.parallel import map_cases
from NNSegLib.util.progress import Progress

ERROR = "error"
WARNING = "warning"

#: Tolerances for geometry agreement (spacing relative; origin mm; direction cosines).
SPACING_RTOL = 1e-4
ORIGIN_ATOL = 1e-3
DIRECTION_ATOL = 1e-3


@dataclass(frozen=True)
class Problem:
    """One problem of a dataset: which file, what is wrong, how bad."""

    path: str
    message: str
    severity: str = ERROR

    def format(self) -> str:
        return f"{self.severity.upper()}: {self.path}: {self.message}"


@dataclass(frozen=True)
class CheckReport:
    """Every problem found in a dataset.

    Attributes:
        root: The dataset folder.
        problems: Errors and warnings, sorted by file.
        num_training: Training cases found (``imagesTr``).
        num_test: Test cases found (``imagesTs``).
    """

    root: Path
    problems: tuple[Problem, ...] = ()
    num_training: int = 0
    num_test: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def format(self) -> str:
        """Human-readable report: one line per problem and a summary line."""
        lines = [p.format() for p in self.problems]
        verdict = "OK" if self.ok else "FAILED"
        lines.append(
            f"{verdict}: {self.root}: {self.num_training} training and {self.num_test} test "
            f"cases, {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )
        return "\n".join(lines)

    def raise_if_errors(self) -> None:
        """Raise :class:`NNSegError` listing every error (warnings do not raise)."""
        if not self.ok:
            listed = "\n".join(p.format() for p in self.errors)
            raise NNSegError(f"{self.root}: dataset has {len(self.errors)} error(s):\n{listed}")

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "ok": self.ok, "num_training": self.num_training,
                "num_test": self.num_test,
                "problems": [dataclasses.asdict(p) for p in self.problems]}


@dataclass(frozen=True)
class CaseCheck:
    """The result of :func:`check_case`.

    Attributes:
        identifier: Case name.
        problems: Problems of this case's files.
        geometry: Geometry of the first channel (``None`` when unreadable).
        images: With ``keep_arrays``: one array per readable channel, dtype as stored.
        label: With ``keep_arrays``: the label map as an integer array (``None`` when
            absent or unusable).
        label_values: Distinct values in the label map.
    """

    identifier: str
    problems: tuple[Problem, ...] = ()
    geometry: Geometry | None = None
    images: tuple[np.ndarray, ...] | None = None
    label: np.ndarray | None = None
    label_values: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def without_arrays(self) -> CaseCheck:
        return dataclasses.replace(self, images=None, label=None)


@dataclass(frozen=True)
class Layout:
    """What the file names say: the spec, the cases and the problems found so far."""

    root: Path
    spec: DatasetSpec | None
    training: tuple[Case, ...] = ()
    test: tuple[Case, ...] = ()
    problems: tuple[Problem, ...] = ()


# -- layout (file names only) ----------------------------------------------------------------
def scan_layout(root: Path | str) -> Layout:
    """Check ``dataset.json`` and the file names of ``imagesTr/labelsTr/imagesTs/labelsTs``.

    Returns:
        The :class:`Layout`; cases list only the declared channels that exist.
    """
    root = Path(root)
    try:
        spec = load_dataset_json(root)
    except DatasetError as e:
        return Layout(root, None, problems=(Problem(str(root / "dataset.json"),
                                                    _strip_path(str(e), root / "dataset.json")),))
    problems: list[Problem] = []
    training = _scan_subset(spec, "Tr", problems)
    test = _scan_subset(spec, "Ts", problems)
    if not (root / "imagesTr").is_dir():
        problems.append(Problem(str(root / "imagesTr"), "folder missing"))
    elif not training:
        problems.append(Problem(str(root / "imagesTr"),
                                f"empty dataset: no training images '*_0000{spec.file_ending}'"))
    if training and spec.num_training != len(training):
        problems.append(Problem(str(root / "dataset.json"), f"numTraining is {spec.num_training} "
                                f"but imagesTr has {len(training)} cases", WARNING))
    return Layout(root, spec, tuple(training), tuple(test), tuple(problems))


def _scan_subset(spec: DatasetSpec, subset: str, problems: list[Problem]) -> list[Case]:
    image_dir, label_dir = spec.root / f"images{subset}", spec.root / f"labels{subset}"
    grouped: dict[str, dict[int, Path]] = {}
    for p in _image_files(image_dir, spec, problems):
        m = CHANNEL_RE.match(p.name[: -len(spec.file_ending)])
        if not m:
            problems.append(Problem(str(p), f"name must be CASE_XXXX{spec.file_ending} "
                                    "with a 4-digit channel index"))
        elif int(m["channel"]) not in spec.channel_names:
            problems.append(Problem(str(p), f"channel {m['channel']} is not declared in "
                                    f"dataset.json channel_names ({spec.num_channels} channel(s))"))
        else:
            grouped.setdefault(m["case"], {})[int(m["channel"])] = p
    labels = {p.name[: -len(spec.file_ending)]: p for p in _image_files(label_dir, spec, problems)}
    required = subset == "Tr" or label_dir.is_dir()
    cases = []
    for ident in sorted(grouped):
        channels = grouped[ident]
        for c in sorted(set(spec.channel_names) - set(channels)):
            problems.append(Problem(str(image_dir / f"{ident}_{c:04d}{spec.file_ending}"),
                                    "missing channel file"))
        label = labels.get(ident)
        if label is None and required:
            problems.append(Problem(str(label_dir / f"{ident}{spec.file_ending}"),
                                    f"missing label for case {ident}",
                                    ERROR if subset == "Tr" else WARNING))
        cases.append(Case(ident, tuple(channels[c] for c in sorted(channels)), label))
    for ident in sorted(set(labels) - set(grouped)):
        problems.append(Problem(str(labels[ident]), "label without image (expected "
                                f"{image_dir.name}/{ident}_0000{spec.file_ending})"))
    return cases


def _image_files(folder: Path, spec: DatasetSpec, problems: list[Problem]) -> list[Path]:
    """Files of ``folder`` with the dataset's ending; stray files become problems."""
    if not folder.is_dir():
        return []
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        problems.append(Problem(str(folder), "cannot list the folder: "
                                + describe_errno(e.errno, e.strerror or str(e))))
        return []
    found = []
    for p in entries:
        if p.name.startswith("."):
            continue
        if p.is_dir():
            problems.append(Problem(str(p), "unexpected folder (ignored)", WARNING))
        elif p.name.endswith(spec.file_ending):
            found.append(p)
        elif file_ending(p) in SUPPORTED_ENDINGS:
            problems.append(Problem(str(p), f"file ending '{file_ending(p)}' but dataset.json "
                                    f"file_ending is '{spec.file_ending}'"))
        else:
            problems.append(Problem(str(p), f"stray file, not a '{spec.file_ending}' image "
                                    "(ignored)", WARNING))
    return found


# -- contents (one case) ---------------------------------------------------------------------
def check_case(case: Case, spec: DatasetSpec, keep_arrays: bool = False) -> CaseCheck:
    """Read one case's files once and check their contents.

    Args:
        case: The case (existing channel files and optional label).
        spec: The dataset description (declared labels).
        keep_arrays: Hand back the image arrays and the integer label map.

    Returns:
        A :class:`CaseCheck`; problems are collected, never raised.
    """
    io = SimpleITKIO()
    problems: list[Problem] = []
    images: list[np.ndarray] = []
    reference: Geometry | None = None
    for path in case.images:
        read = _read(io, path, problems)
        if read is None:
            continue
        array, geo = read
        if reference is None:
            reference = geo
        else:
            _compare_geometry(reference, geo, path, f"channel {case.images[0].name}", problems)
        problems.extend(Problem(str(path), m) for m in image_file_problems(path, array))
        images.append(array)
    label: np.ndarray | None = None
    values: tuple[int, ...] = ()
    if case.label is not None:
        read = _read(io, case.label, problems)
        if read is not None:
            label, values = _check_label(read, case.label, spec, reference, problems)
    return CaseCheck(
        case.identifier, tuple(problems), reference,
        tuple(images) if keep_arrays else None, label if keep_arrays else None, values,
    )


def _read(io: SimpleITKIO, path: Path, problems: list[Problem]):
    try:
        array, geo = io.read(path)
    except ImageReadError as e:
        problems.append(Problem(str(path), _strip_path(str(e), path)))
        return None
    except Exception as e:  # noqa: BLE001 - any reader failure is a problem of this file
        problems.append(Problem(str(path), f"unreadable ({type(e).__name__}: {e})"))
        return None
    bad = [s for s in geo.spacing if not (np.isfinite(s) and s > 0)]
    if bad:
        problems.append(Problem(str(path), f"spacing {tuple(geo.spacing)} must be positive"))
    return array, geo


def image_file_problems(path: Path, array: np.ndarray) -> list[str]:
    """What is wrong with the voxel values of an image file ITK has read as ``array``.

    NIfTI voxel bytes are read directly (:func:`~NNSegLib.data.io.scan_nifti`): ITK fills
    missing voxel data with zeros and reads NaN/inf as 0, so neither shows in ``array``.
    """
    out = []
    try:
        scan = scan_nifti(path)
    except (OSError, ImageReadError) as e:
        return [f"cannot scan the NIfTI voxels: {_strip_path(str(e), path)}"]
    if scan is not None and scan.truncated:
        out.append(f"voxel data cut short: {scan.found_bytes} of the {scan.expected_bytes} "
                   "bytes the header declares (the file is truncated; ITK would fill the rest "
                   "with zeros)")
    if array.dtype.kind in "fc" and not np.isfinite(array.sum(dtype=np.float64)):
        n_nan, n_inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        out.append(f"{n_nan} NaN and {n_inf} infinite voxel value(s)")
    elif scan is not None and (scan.nan or scan.inf):
        out.append(f"{scan.nan} NaN and {scan.inf} infinite voxel value(s) stored in the file "
                   "(ITK would read them as 0)")
    return out


def _compare_geometry(ref: Geometry, geo: Geometry, path: Path, what: str,
                      problems: list[Problem]) -> None:
    """Add one problem naming every aspect in which ``geo`` differs from ``ref``."""
    diffs = []
    if ref.ndim != geo.ndim:
        diffs.append(f"{geo.ndim}D image, {ref.ndim}D expected")
    elif tuple(ref.shape) != tuple(geo.shape):
        diffs.append(f"shape {tuple(geo.shape)} != {tuple(ref.shape)}")
    else:
        if not np.allclose(ref.spacing, geo.spacing, rtol=SPACING_RTOL, atol=1e-6):
            diffs.append(f"spacing {_fmt(geo.spacing)} != {_fmt(ref.spacing)}")
        if not np.allclose(ref.origin, geo.origin, rtol=0, atol=ORIGIN_ATOL):
            diffs.append(f"origin {_fmt(geo.origin)} != {_fmt(ref.origin)}")
        if not np.allclose(ref.direction, geo.direction, rtol=0, atol=DIRECTION_ATOL):
            diffs.append(f"direction {_fmt(geo.direction)} != {_fmt(ref.direction)}")
    if diffs:
        problems.append(Problem(str(path), f"geometry differs from {what}: " + "; ".join(diffs)))


def _check_label(read, path: Path, spec: DatasetSpec, reference: Geometry | None,
                 problems: list[Problem]) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """Check a label map; return it as an integer array plus its distinct values."""
    array, geo = read
    if reference is not None:
        _compare_geometry(reference, geo, path, "the image", problems)
    file_problems = image_file_problems(path, array)
    if any("NaN" in m for m in file_problems):
        problems.append(Problem(str(path), "label map holds NaN or infinite values"))
        return None, ()
    problems.extend(Problem(str(path), m) for m in file_problems)
    if array.dtype.kind in "fc":
        as_int = array.astype(np.int32)
        n_bad = int(np.count_nonzero(as_int != array))
        if n_bad:
            problems.append(Problem(str(path), f"{n_bad} voxel(s) with non-integer label values"))
            return None, ()
        array = as_int
    elif array.dtype.kind not in "iub":
        problems.append(Problem(str(path), f"label map of unsupported type {array.dtype}"))
        return None, ()
    values = _distinct_values(array)
    undeclared = sorted(set(values) - set(spec.label_values))
    if undeclared:
        problems.append(Problem(str(path), f"label values {undeclared} are not declared in "
                                f"dataset.json labels {spec.label_values}"))
    if values and max(values) < 256 and min(values) >= 0 and array.dtype != np.uint8:
        array = array.astype(np.uint8)
    return array, values


def _distinct_values(array: np.ndarray) -> tuple[int, ...]:
    """Distinct values of an integer array (counting sort when the range is small)."""
    if array.size == 0:
        return ()
    lo, hi = int(array.min()), int(array.max())
    if lo >= 0 and hi < 65536:
        counts = np.bincount(array.ravel(), minlength=hi + 1)
        return tuple(int(v) for v in np.flatnonzero(counts))
    return tuple(int(v) for v in np.unique(array))


def _strip_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _check_job(case: Case, spec: DatasetSpec) -> CaseCheck:
    return check_case(case, spec, keep_arrays=False)


def check_dataset(root: Path | str, workers: int = 2, progress=None,
                  include_test: bool = True) -> CheckReport:
    """Check a raw dataset: layout, then every case's contents (parallel over cases).

    Args:
        root: Dataset folder (with ``dataset.json``).
        workers: Worker processes (1 = in this process).
        progress: Optional :class:`~NNSegLib.util.progress.Progress`.
        include_test: Also read and check ``imagesTs`` cases.

    Returns:
        The :class:`CheckReport` (data problems never raise).
    """
    layout = scan_layout(root)
    problems = list(layout.problems)
    if layout.spec is not None:
        cases = list(layout.training) + (list(layout.test) if include_test else [])
        jobs = [(case, layout.spec) for case in cases]
        results = {}
        for result in map_cases(_check_job, jobs, workers, progress, "check"):
            problems.extend(result.problems)
            results[result.identifier] = result
        problems += cross_case_problems(layout, results, cases)
        if progress is not None:
            progress.done(errors=sum(p.severity == ERROR for p in problems))
    return CheckReport(Path(root), tuple(sort_problems(problems)), len(layout.training),
                       len(layout.test))


def cross_case_problems(layout: Layout, results: dict[str, CaseCheck],
                        cases: Sequence[Case]) -> list[Problem]:
    """Problems across the checked ``cases`` (:mod:`NNSegLib.data.consistency`)."""
    from NNSegLib.data.consistency import CaseSummary, dataset_problems

    assert layout.spec is not None
    summaries = []
    for case in cases:
        result = results.get(case.identifier)
        if result is None or not case.images:
            continue
        usable = case.label is not None and bool(result.label_values)
        summaries.append(CaseSummary(str(case.images[0]), result.geometry, len(case.images),
                                     str(case.label) if case.label else None,
                                     result.label_values if usable else None))
    found = dataset_problems(summaries, layout.spec.labels, str(layout.root / "labelsTr"),
                             str(layout.root / "dataset.json"))
    return [Problem(path, message, severity) for path, message, severity in found]


def sort_problems(problems: Sequence[Problem]) -> list[Problem]:
    """Errors first, then by file name, then message (deterministic output)."""
    return sorted(problems, key=lambda p: (p.severity != ERROR, p.path, p.message))


# -- CLI ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="raw dataset folder (with dataset.json)")
    parser.add_argument("--workers", type=options.positive_int, default=2,
                        help="worker processes reading cases (default: 2; 1 = no pool)")
    parser.add_argument("--no-test", action="store_true",
                        help="do not read the imagesTs cases (file names are still checked)")


def check_argv(dataset: Path | str, workers: int | None = None) -> list[str]:
    """``nnseg check`` as an argument list."""
    return ["check", str(dataset), *option("--workers", workers)]


def run(args: argparse.Namespace, progress: Progress) -> int:

    try:
        report = check_dataset(args.dataset, args.workers, progress, not args.no_test)
    finally:
        progress.close()
    for p in report.problems:
        progress.event("problem", path=p.path, message=p.message, severity=p.severity)
    out = sys.stderr if getattr(args, "progress_json", None) == "-" else sys.stdout
    print(report.format(), file=out, flush=True)
    return EXIT_OK if report.ok else EXIT_BAD_INPUT
