"""Compare predicted label maps with references (METHOD §7): ``nnseg evaluate``.

``nnseg evaluate REF_DIR PRED_DIR`` pairs ``REF_DIR/<case><ending>`` with
``PRED_DIR/<case><ending>``, checks that both have the same geometry and only declared
label values, computes :mod:`NNSegLib.evaluation.metrics` per case and foreground class (Dice, IoU,
TP/FP/FN, volumes in mL, HD95 in mm) and writes to the output folder:

- ``summary.json``: per class means and counts, the foreground mean, every case's metrics
  and the NaN rules (NaN is written as ``null``),
- ``per_case.csv``: one row per case and class (NaN as an empty cell),
- ``report.html``: Dice box plot and overlays of the worst cases (:mod:`.report`).

Every reference case must have a prediction unless ``cases`` (``--only-predicted``) says
otherwise; empty-mask rules are those of :mod:`NNSegLib.evaluation.metrics` (``NAN_RULES``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.data.io import SUPPORTED_ENDINGS, SimpleITKIO, file_ending
from NNSegLib.evaluation.metrics import (
    MEAN_KEYS,
    case_metrics,
)
from NNSegLib.evaluation.summary import CaseResult, Summary
from NNSegLib.util import options
from NNSegLib.util.atomic import write_text
from NNSegLib.util.command_line import option, switch
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.parallel import map_ordered
from NNSegLib.util.progress import Progress


# --- files --------------------------------------------------------------------------------
def guess_file_ending(folder: Path) -> str:
    """The most common supported image ending among the files of ``folder``."""
    counts: dict[str, int] = {}
    for p in Path(folder).iterdir():
        ending = file_ending(p)
        if p.is_file() and ending in SUPPORTED_ENDINGS and not p.name.startswith("."):
            counts[ending] = counts.get(ending, 0) + 1
    if not counts:
        raise NNSegError(f"{folder}: no image files ({', '.join(SUPPORTED_ENDINGS)})")
    return max(counts, key=lambda e: (counts[e], len(e)))


def list_label_files(folder: Path | str, ending: str) -> dict[str, Path]:
    """Case name → file for every ``<case><ending>`` in ``folder`` (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        problem = "is a file, expected a folder" if folder.is_file() else "does not exist"
        raise NNSegError(f"{folder}: {problem}")
    return {p.name[: -len(ending)]: p for p in sorted(folder.iterdir())
            if p.is_file() and p.name.endswith(ending) and not p.name.startswith(".")}


def read_label_map(path: Path, allowed: Sequence[int], io_=None):
    """Read a label map as an integer array and check its values are in ``allowed``.

    Returns:
        ``(array, geometry)``.

    Raises:
        NNSegError: naming the file for non-integer, negative or undeclared values.
    """
    from scipy import ndimage

    array, geometry = (io_ or SimpleITKIO()).read(Path(path))
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise NNSegError(f"{path}: label map has non-integer values")
        array = rounded.astype(np.int32)
    if array.size and array.min() < 0:
        raise NNSegError(f"{path}: label map has negative values (min {array.min()})")
    allowed_set = {int(a) for a in allowed} | {0}
    top = int(array.max()) if array.size else 0
    if top > max(allowed_set):
        raise NNSegError(f"{path}: unknown label {top}; declared labels are {sorted(allowed_set)}")
    present = {i + 1 for i, s in enumerate(ndimage.find_objects(array)) if s is not None}
    unknown = sorted(present - allowed_set)
    if unknown:
        raise NNSegError(f"{path}: unknown label(s) {unknown}; declared labels are "
                         f"{sorted(allowed_set)}")
    return array, geometry


def evaluate_case(case: str, reference: Path, prediction: Path, classes: Sequence[int],
                  compute_hd95: bool = True) -> CaseResult:
    """Read one reference/prediction pair, check geometry and labels, compute metrics."""
    ref, ref_geo = read_label_map(reference, classes)
    pred, pred_geo = read_label_map(prediction, classes)
    problem = ref_geo.mismatch(pred_geo)
    if problem:
        raise NNSegError(f"{prediction}: geometry differs from reference {reference}: {problem}")
    metrics = case_metrics(ref, pred, list(classes), ref_geo.spacing, compute_hd95)
    return CaseResult(case, str(reference), str(prediction), metrics)


def evaluate_pairs(pairs: Sequence[tuple[str, Path, Path]], labels: dict[str, int],
                   workers: int = 2, progress: Progress | None = None,
                   compute_hd95: bool = True) -> Summary:
    """Evaluate explicit ``(case, reference, prediction)`` triples."""
    classes = sorted(int(v) for v in labels.values() if int(v) != 0)
    if not classes:
        raise NNSegError(f"no foreground labels to evaluate in {labels}")
    items = [(case, Path(r), Path(p), classes, compute_hd95) for case, r, p in pairs]
    results = map_ordered(evaluate_case, items, workers, progress, "evaluate")
    return Summary.from_cases(labels, results)


def evaluate_folder(ref_dir: Path | str, pred_dir: Path | str, labels: dict[str, int],
                    file_ending: str | None = None, workers: int = 2,
                    progress: Progress | None = None, cases: Sequence[str] | None = None,
                    compute_hd95: bool = True) -> Summary:
    """Evaluate every reference case of ``ref_dir`` against ``pred_dir``.

    Args:
        ref_dir: Folder of reference label maps ``<case><ending>``.
        pred_dir: Folder of predictions with the same names.
        labels: Label name → value (background 0 may be included; it is not evaluated).
        file_ending: E.g. ``".nii.gz"``; guessed from ``ref_dir`` when None.
        workers: Processes reading and evaluating cases in parallel.
        progress: Progress sink.
        cases: Evaluate only these cases (default: every reference case).
        compute_hd95: Also compute HD95 (the slowest metric).

    Raises:
        NNSegError: a reference case without prediction (or a requested case without
            reference), a geometry mismatch or an unknown label, naming the file.
    """
    ref_dir, pred_dir = Path(ref_dir), Path(pred_dir)
    ending = file_ending or guess_file_ending(ref_dir)
    refs = list_label_files(ref_dir, ending)
    preds = list_label_files(pred_dir, ending)
    wanted = sorted(refs) if cases is None else sorted(cases)
    if not wanted:
        raise NNSegError(f"{ref_dir}: no reference files ending in {ending}")
    no_ref = [c for c in wanted if c not in refs]
    if no_ref:
        raise NNSegError(f"{ref_dir}: no reference for {_names(no_ref, ending)}")
    missing = [c for c in wanted if c not in preds]
    if missing:
        raise NNSegError(f"{pred_dir}: missing prediction for reference case(s) "
                         f"{_names(missing, ending)}")
    pairs = [(c, refs[c], preds[c]) for c in wanted]
    return evaluate_pairs(pairs, labels, workers, progress, compute_hd95)


def _names(cases: Sequence[str], ending: str, limit: int = 10) -> str:
    shown = ", ".join(f"{c}{ending}" for c in cases[:limit])
    return shown + (f" and {len(cases) - limit} more" if len(cases) > limit else "")


# --- outputs ------------------------------------------------------------------------------
def _fmt(v: float, digits: int = 4) -> str:
    return "" if isinstance(v, float) and math.isnan(v) else f"{v:.{digits}f}"


def per_case_csv(summary: Summary) -> str:
    """One row per case and class; NaN as an empty cell."""
    names = {v: k for k, v in summary.labels.items()}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", "label", "class", *MEAN_KEYS])
    for c in summary.cases:
        for k, m in sorted(c.metrics.items()):
            row = [m.dice, m.iou, m.hd95_mm, m.tp, m.fp, m.fn, m.ref_ml, m.pred_ml]
            writer.writerow([c.case, k, names.get(k, str(k)),
                             *[_fmt(v, 6) if isinstance(v, float) else v for v in row]])
    return buf.getvalue()


def dice_table(summary: Summary) -> str:
    """A fixed-width table of the class means and the foreground mean for the terminal."""
    names = {v: k for k, v in summary.labels.items()}
    head = (f"{'class':<20} {'label':>5} {'Dice':>7} {'IoU':>7} {'HD95 mm':>8} "
            f"{'ref mL':>9} {'pred mL':>9} {'n':>4} {'empty':>5}")
    lines = [head, "-" * len(head)]
    for k, m in summary.means.items():
        lines.append(
            f"{names[k][:20]:<20} {k:>5} {_fmt(m['dice']):>7} {_fmt(m['iou']):>7} "
            f"{_fmt(m['hd95_mm'], 2):>8} {_fmt(m['ref_ml'], 3):>9} {_fmt(m['pred_ml'], 3):>9} "
            f"{m['n_cases']:>4} {m['n_empty_both']:>5}")
    fg = summary.foreground_mean
    lines.append("-" * len(head))
    lines.append(f"{'foreground mean':<20} {'':>5} {_fmt(fg['dice']):>7} {_fmt(fg['iou']):>7} "
                 f"{_fmt(fg['hd95_mm'], 2):>8}")
    return "\n".join(lines)


def write_outputs(summary: Summary, out_dir: Path | str, images_dir: Path | str | None = None,
                  n_worst: int = 3, report: bool = True) -> dict[str, Path]:
    """Write ``summary.json``, ``per_case.csv`` and (optionally) ``report.html``."""
    out_dir = Path(out_dir)
    out = {"summary": out_dir / "summary.json", "per_case": out_dir / "per_case.csv"}
    summary.save(out["summary"])
    write_text(out["per_case"], per_case_csv(summary))
    if report:
        from NNSegLib.evaluation.report import write_report

        out["report"] = write_report(summary, out_dir / "report.html", images_dir, n_worst)
    return out


# --- CLI ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref_dir", type=Path, metavar="REF_DIR",
                        help="folder of reference label maps <case><ending> (e.g. labelsTr)")
    parser.add_argument("pred_dir", type=Path, metavar="PRED_DIR",
                        help="folder of predicted label maps with the same file names")
    parser.add_argument("--labels", type=Path, metavar="DATASET_JSON", default=None,
                        help="dataset.json with the label names (default: REF_DIR/../dataset.json"
                             " if present, else the values found in the references)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for summary.json, per_case.csv, report.html "
                             "(default: PRED_DIR)")
    parser.add_argument("--images", type=Path, default=None, metavar="DIR",
                        help="imagesTr-like folder (<case>_0000<ending>) shown under the overlays")
    parser.add_argument("--file-ending", default=None,
                        help="file ending such as .nii.gz (default: dataset.json's, else guessed)")
    parser.add_argument("--workers", type=options.positive_int, default=2,
                        help="parallel processes (default 2)")
    parser.add_argument("--only-predicted", action="store_true",
                        help="evaluate only the reference cases that have a prediction "
                             "(default: a missing prediction is an error)")
    parser.add_argument("--no-hd95", action="store_true", help="skip the 95%% Hausdorff distance")
    parser.add_argument("--worst", type=options.non_negative_int, default=3,
                        help="number of worst cases shown as overlays in report.html (default 3)")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")


def _labels_for(args: argparse.Namespace, ending: str | None) -> tuple[dict[str, int], str]:
    """Labels and file ending from --labels, REF_DIR/../dataset.json or the references."""
    path = args.labels or (args.ref_dir.parent / "dataset.json")
    if args.labels is not None or path.is_file():
        if not path.is_file():
            raise NNSegError(f"{path}: missing (--labels needs a dataset.json)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            labels = {str(k): int(v) for k, v in raw["labels"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise NNSegError(f"{path}: no usable 'labels' object ({e})") from e
        return labels, ending or str(raw.get("file_ending") or "")
    ending = ending or guess_file_ending(args.ref_dir)
    values: set[int] = set()
    for file in list_label_files(args.ref_dir, ending).values():
        array, _ = SimpleITKIO().read(file)
        values |= {int(v) for v in np.unique(array)}
    return {f"label_{v}": v for v in sorted(values)}, ending


def evaluate_argv(ref_dir: Path | str, pred_dir: Path | str, labels: Path | str | None = None,
                  images: Path | str | None = None, output: Path | str | None = None,
                  only_predicted: bool = False) -> list[str]:
    """``nnseg evaluate`` as an argument list."""
    return ["evaluate", str(ref_dir), str(pred_dir), *option("--labels", labels),
            *option("--images", images), *option("-o", output),
            *switch("--only-predicted", only_predicted)]


def run(args: argparse.Namespace, progress: Progress) -> int:
    from NNSegLib.util.atomic import clean_stale_temps
    from NNSegLib.util.files import require_output_dir

    if args.output is not None:
        require_output_dir(args.output, "-o", create=False)
    clean_stale_temps(args.output or args.pred_dir)
    labels, found_ending = _labels_for(args, args.file_ending)
    ending: str | None = found_ending or None
    cases = None
    if args.only_predicted:
        ending = ending or guess_file_ending(args.ref_dir)
        cases = sorted(list_label_files(args.pred_dir, ending))
    try:
        summary = evaluate_folder(args.ref_dir, args.pred_dir, labels, ending, args.workers,
                                  progress, cases, compute_hd95=not args.no_hd95)
        paths = write_outputs(summary, args.output or args.pred_dir, args.images, args.worst,
                              report=not args.no_report)
    finally:
        progress.close()
    print(dice_table(summary))
    print(f"{len(summary.cases)} cases; wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


__all__ = ["evaluate_argv",
    "CaseResult",
    "Summary",
    "dice_table",
    "evaluate_case",
    "evaluate_folder",
    "evaluate_pairs",
    "list_label_files",
    "per_case_csv",
    "read_label_map",
    "write_outputs",
]
