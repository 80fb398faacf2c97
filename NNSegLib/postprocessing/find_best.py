"""Choose the best configuration (or pair ensemble) and the postprocessing (METHOD §6).

``nnseg find-best DATASET [--work DIR]`` reads the cross-validation predictions
``results/<config>/fold_<k>/validation/<case><ending>`` of every fold (all folds of a
configuration must be there; the missing files are named), and:

1. scores each configuration by the mean foreground Dice over all CV cases
   (:mod:`NNSegLib.evaluation.evaluate`, HD95 skipped);
2. scores each pair ensemble ``<a>__<b>``: the two configurations' probabilities
   (``<case>_probabilities.npz``) are averaged and arg-maxed, written to
   ``results/ensembles/<a>__<b>/<case><ending>`` and scored the same way;
3. picks the highest score (ties: fewer members, then the order tried);
4. decides the postprocessing on the chosen predictions, nnU-Net style: keeping only the
   largest component of all foreground classes together is kept as a rule if it
   strictly raises the mean foreground Dice; then, on top of that choice, the largest
   component of each class ``k`` is kept as a rule if it strictly raises class ``k``'s
   mean Dice (skipped when there is a single foreground class).

It writes ``results/postprocessing.json`` (:class:`~NNSegLib.postprocessing.postprocess.
PostprocessingRules`, with the numbers behind each decision), ``results/
best_configuration.json`` and a ``cv_summary.json`` in each scored folder.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.evaluation.evaluate import evaluate_pairs, read_label_map
from NNSegLib.evaluation.metrics import (
    ClassMetrics,
    case_metrics,
    mean_foreground_dice,
    mean_metrics,
)
from NNSegLib.postprocessing.postprocess import (
    PostprocessingRules,
    remove_all_but_largest_component,
)
from NNSegLib.util import options
from NNSegLib.util.atomic import write_json
from NNSegLib.util.command_line import many, option
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import read_json
from NNSegLib.util.parallel import map_ordered
from NNSegLib.util.progress import Progress
from NNSegLib.util.workspace import Workspace

PROBABILITIES_SUFFIX = "_probabilities.npz"
CV_SUMMARY = "cv_summary.json"


# --- which predictions exist --------------------------------------------------------------
def candidate_configurations(ws: Workspace) -> list[str]:
    """Configurations of the plan (model folder's, else the work folder's) that have runs."""
    names: list[str] = []
    for plans in (ws.model.plans, ws.plans):
        if plans.is_file():
            configurations = read_json(plans, expect=dict).get("configurations")
            if not isinstance(configurations, dict):
                raise NNSegError(f"{plans}: no 'configurations' object; re-run `nnseg plan`")
            names = list(configurations)
            break
    if not names and ws.results.is_dir():
        names = sorted(p.name for p in ws.results.iterdir() if p.is_dir())
    return [n for n in names if (ws.results / n).is_dir()
            and any(p.name.startswith("fold_") for p in (ws.results / n).iterdir())]


def cv_predictions(ws: Workspace, configuration: str, splits: list[dict], folds: Sequence[int],
                   ending: str) -> tuple[dict[str, Path], list[str]]:
    """Case → validation prediction of ``configuration``, and what is missing (readable)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for fold in folds:
        folder = ws.run(configuration, fold).validation
        absent = []
        for case in splits[fold]["val"]:
            path = folder / f"{case}{ending}"
            if path.is_file():
                found[case] = path
            else:
                absent.append(f"{case}{ending}")
        if absent:
            shown = ", ".join(absent[:3]) + (" …" if len(absent) > 3 else "")
            missing.append(f"{folder}: {len(absent)} of {len(splits[fold]['val'])} "
                           f"validation predictions missing ({shown})")
    return found, missing


def complete_folds(ws: Workspace, dataset: Path | str) -> dict[str, list[int]]:
    """Each configuration with runs → the folds whose validation predictions are all there."""
    from NNSegLib.data.dataset import load_dataset_json
    from NNSegLib.data.splits import load_splits

    if not ws.splits.is_file():
        return {}
    ending, splits = load_dataset_json(dataset).file_ending, load_splits(ws.splits)
    return {name: [f for f in range(len(splits))
                   if not cv_predictions(ws, name, splits, [f], ending)[1]]
            for name in candidate_configurations(ws)}


def _complete_configurations(ws: Workspace, requested: Sequence[str] | None, splits: list[dict],
                             folds: Sequence[int], ending: str,
                             progress: Progress) -> dict[str, dict[str, Path]]:
    names = list(requested) if requested else candidate_configurations(ws)
    complete: dict[str, dict[str, Path]] = {}
    problems: list[str] = []
    for name in names:
        preds, missing = cv_predictions(ws, name, splits, folds, ending)
        if missing:
            problems.append(f"{name}: " + "; ".join(missing))
        else:
            complete[name] = preds
    if problems and (requested or not complete):
        tried = ", ".join(names) if names else f"none found in {ws.results}"
        raise NNSegError("cross-validation predictions incomplete (configurations: "
                         f"{tried}):\n  " + "\n  ".join(problems)
                         + "\nrun `nnseg train` for the missing folds (it writes validation/)")
    for p in problems:
        progress.message(f"skipping incomplete configuration {p}", level="warning")
    if not complete:
        raise NNSegError(f"{ws.results}: no configuration with cross-validation predictions")
    return complete


# --- ensembles ----------------------------------------------------------------------------
def ensemble_case(case: str, sources: Sequence[Path], geometry_from: Path, out: Path) -> str:
    """Average the members' ``<case>_probabilities.npz``, arg-max, write ``out``."""
    from NNSegLib.data.io import SimpleITKIO

    io_ = SimpleITKIO()
    total = None
    for src in sources:
        try:
            with np.load(src, allow_pickle=False) as data:
                probs = data["probabilities"].astype(np.float32)
        except (OSError, KeyError, ValueError) as e:
            raise NNSegError(f"{src}: unreadable probabilities ({e})") from e
        if total is not None and probs.shape != total.shape:
            raise NNSegError(f"{src}: probabilities shape {probs.shape} != {total.shape} of "
                             f"{sources[0]}")
        total = probs if total is None else total + probs
    assert total is not None  # sources is not empty
    _, geometry = io_.read(geometry_from)
    if tuple(total.shape[1:]) != tuple(geometry.shape):
        raise NNSegError(f"{sources[0]}: probabilities grid {total.shape[1:]} != "
                         f"{geometry.shape} of {geometry_from}")
    labels = np.argmax(total, axis=0).astype(np.uint8 if total.shape[0] <= 255 else np.int16)
    io_.write(labels, geometry, out)
    return str(out)


def make_ensemble(ws: Workspace, members: Sequence[str], preds: dict[str, dict[str, Path]],
                  ending: str, workers: int, progress: Progress) -> dict[str, Path] | None:
    """Write the members' averaged predictions; ``None`` if a probabilities file is missing."""
    name = "__".join(members)
    out_dir = ws.results / "ensembles" / name
    items = []
    for case, first in sorted(preds[members[0]].items()):
        sources = [preds[m][case].with_name(f"{case}{PROBABILITIES_SUFFIX}") for m in members]
        absent = [s for s in sources if not s.is_file()]
        if absent:
            progress.message(f"ensemble {name} skipped: {absent[0]} missing", level="warning")
            return None
        items.append((case, sources, first, out_dir / f"{case}{ending}"))
    map_ordered(ensemble_case, items, workers, progress, f"ensemble {name}")
    return {item[0]: item[3] for item in items}


# --- postprocessing -----------------------------------------------------------------------
def postprocessing_variants(case: str, reference: Path, prediction: Path,
                            classes: Sequence[int]) -> dict[str, Any]:
    """Metrics of one CV case with and without each candidate rule.

    Returns keys ``raw`` and ``fg`` (all classes; without / with the all-foreground rule)
    and, per class ``k``, ``raw+k`` and ``fg+k`` (class ``k``'s metrics after also keeping
    only class ``k``'s largest component).
    """
    ref, geo = read_label_map(reference, classes)
    pred, pred_geo = read_label_map(prediction, classes)
    problem = geo.mismatch(pred_geo)
    if problem:
        raise NNSegError(f"{prediction}: geometry differs from reference {reference}: {problem}")
    classes = list(classes)
    out: dict[str, Any] = {}
    bases = {"raw": pred, "fg": remove_all_but_largest_component(pred, classes)}
    for name, base in bases.items():
        out[name] = case_metrics(ref, base, classes, geo.spacing, compute_hd95=False)
        if len(classes) > 1:
            for k in classes:
                after = remove_all_but_largest_component(base, [k])
                out[f"{name}+{k}"] = case_metrics(ref, after, [k], geo.spacing, False)[k]
    return out


def _class_dice(items: Sequence[ClassMetrics]) -> float:
    return mean_metrics(items)["dice"]


def decide_postprocessing(pairs: Sequence[tuple[str, Path, Path]], classes: Sequence[int],
                          workers: int = 2, progress: Progress | None = None
                          ) -> tuple[PostprocessingRules, float, float]:
    """Choose the largest-component rules on CV predictions.

    Returns:
        ``(rules, dice_before, dice_after)``: the rules and the mean foreground Dice
        without postprocessing and with the chosen rules.
    """
    classes = sorted(int(c) for c in classes)
    items = [(c, r, p, classes) for c, r, p in pairs]
    per_case = map_ordered(postprocessing_variants, items, workers, progress, "postprocessing")
    before = mean_foreground_dice(v["raw"] for v in per_case)
    after_fg = mean_foreground_dice(v["fg"] for v in per_case)
    use_fg = after_fg > before
    groups: list[tuple[int, ...]] = [tuple(classes)] if use_fg else []
    decisions: list[dict] = [{
        "rule": "largest component of all foreground", "classes": classes,
        "metric": "mean foreground Dice", "before": before, "after": after_fg, "kept": use_fg}]
    base = "fg" if use_fg else "raw"
    final = {k: [v[base][k] for v in per_case] for k in classes}
    for k in classes if len(classes) > 1 else []:
        d_before = _class_dice(final[k])
        candidate = [v[f"{base}+{k}"] for v in per_case]
        d_after = _class_dice(candidate)
        kept = d_after > d_before
        decisions.append({"rule": f"largest component of class {k}", "classes": [k],
                          "metric": f"mean Dice of class {k}", "before": d_before,
                          "after": d_after, "kept": kept})
        if kept:
            groups.append((k,))
            final[k] = candidate
    dice_after = mean_foreground_dice({k: final[k][i] for k in classes}
                                      for i in range(len(per_case)))
    decisions = [_nan_free(d) for d in decisions]
    return PostprocessingRules(tuple(groups), tuple(decisions)), before, dice_after


# --- the whole choice ---------------------------------------------------------------------
def _score(name: str, pairs: list[tuple[str, Path, Path]], labels: dict[str, int],
           out_dir: Path, workers: int, progress: Progress) -> float:
    summary = evaluate_pairs(pairs, labels, workers, progress, compute_hd95=False)
    summary.save(out_dir / CV_SUMMARY)
    progress.message(f"{name}: mean foreground Dice {summary.mean_foreground_dice:.4f}")
    return summary.mean_foreground_dice


def _best(cv_dice: dict[str, float]) -> str:
    order = list(cv_dice)
    return max(order, key=lambda n: (-math.inf if math.isnan(cv_dice[n]) else cv_dice[n],
                                     -n.count("__"), -order.index(n)))


def find_best(workspace: Workspace | Path | str, dataset: Path | str,
              configurations: Sequence[str] | None = None, folds: Sequence[int] | None = None,
              progress: Progress | None = None, workers: int = 2,
              ensembles: bool = True) -> dict:
    """Score configurations and pair ensembles, choose postprocessing, write the results.

    Args:
        workspace: The work folder (:class:`Workspace` or its path).
        dataset: The raw dataset folder (``dataset.json``, ``labelsTr``).
        configurations: Configurations to consider (default: every one with runs; then
            incomplete ones are skipped with a warning instead of failing).
        folds: Folds whose validation cases form the CV set (default: all of the splits).
        progress: Progress sink.
        workers: Parallel processes.
        ensembles: Also try every pair ensemble.

    Returns:
        The content written to ``best_configuration.json``.
    """
    from NNSegLib.data.dataset import load_dataset_json
    from NNSegLib.data.splits import load_splits

    ws = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
    progress = progress or Progress()
    spec = load_dataset_json(dataset)
    splits = load_splits(ws.splits)
    folds = list(range(len(splits)) if folds is None else folds)
    twice = sorted({int(f) for f in folds if list(folds).count(f) > 1})
    if twice:
        raise NNSegError(f"--folds: {', '.join(map(str, twice))} given more than once")
    bad = [f for f in folds if not 0 <= int(f) < len(splits)]
    if bad:
        raise NNSegError(f"{ws.splits}: has folds 0..{len(splits) - 1}, not {bad}")
    preds = _complete_configurations(ws, configurations, splits, folds, spec.file_ending,
                                     progress)
    refs = {c: Path(dataset) / "labelsTr" / f"{c}{spec.file_ending}"
            for c in next(iter(preds.values()))}
    no_ref = sorted(str(p) for p in refs.values() if not p.is_file())
    if no_ref:
        raise NNSegError(f"missing reference label map(s): {', '.join(no_ref[:5])}")
    candidates: dict[str, dict[str, Path]] = dict(preds)
    cv_dice: dict[str, float] = {}
    for name in preds:
        pairs = [(c, refs[c], p) for c, p in sorted(preds[name].items())]
        cv_dice[name] = _score(name, pairs, spec.labels, ws.results / name, workers, progress)
    for members in itertools.combinations(preds, 2) if ensembles else []:
        made = make_ensemble(ws, members, preds, spec.file_ending, workers, progress)
        if made is not None:
            name = "__".join(members)
            candidates[name] = made
            pairs = [(c, refs[c], p) for c, p in sorted(made.items())]
            cv_dice[name] = _score(name, pairs, spec.labels, ws.results / "ensembles" / name,
                                   workers, progress)
    best = _best(cv_dice)
    pairs = [(c, refs[c], p) for c, p in sorted(candidates[best].items())]
    classes = [v for v in spec.labels.values() if v != 0]
    rules, before, after = decide_postprocessing(pairs, classes, workers, progress)
    rules.save(ws.model.postprocessing)
    result = {
        "configurations": best.split("__"),
        "folds": [int(f) for f in folds],
        "cv_dice": cv_dice,
        "cv_dice_postprocessed": after,
        "postprocessing": rules.to_dict(),
        "predictions": str(ws.results / "ensembles" / best) if "__" in best else None,
    }
    result = _nan_free(result)
    write_json(ws.model.best_configuration_file, result, durable=True)
    return result


def _nan_free(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_free(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_free(v) for v in obj]
    return obj


def summary_table(result: dict) -> str:
    """The scores and decisions of :func:`find_best` as text."""
    best = "__".join(result["configurations"])
    lines = [f"{'candidate':<40} {'CV Dice':>8}", "-" * 49]
    for name, dice in sorted(result["cv_dice"].items(), key=lambda kv: -_num(kv[1])):
        mark = "  <- best" if name == best else ""
        lines.append(f"{name:<40} {_num(dice):>8.4f}{mark}")
    lines.append("")
    lines.append("postprocessing (largest connected component):")
    for d in result["postprocessing"]["decisions"]:
        lines.append(f"  {d['rule']:<40} {_num(d['before']):.5f} -> {_num(d['after']):.5f}"
                     f"  {'kept' if d['kept'] else 'rejected'}")
    lines.append(f"CV Dice of the choice with postprocessing: "
                 f"{_num(result['cv_dice_postprocessed']):.4f}")
    if result.get("folds") is not None:
        lines.append("validation cases of fold(s) " + ", ".join(map(str, result["folds"])))
    return "\n".join(lines)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


# --- CLI ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, metavar="DATASET",
                        help="raw dataset folder (dataset.json, labelsTr)")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (default ./nnseg_work/<dataset folder name>)")
    parser.add_argument("--configurations", nargs="+", default=None, metavar="CONFIG",
                        help="configurations to compare (default: every one with trained folds)")
    parser.add_argument("--folds", nargs="+", type=options.non_negative_int, default=None,
                        metavar="K",
                        help="folds whose validation predictions form the CV set (default: all)")
    parser.add_argument("--workers", type=options.positive_int, default=2,
                        help="parallel processes (default 2)")
    parser.add_argument("--no-ensembles", action="store_true",
                        help="do not try pair ensembles of configurations")


def find_best_argv(dataset: Path | str, work: Path | str | None = None,
                   configurations: Sequence[str] = (), folds: Sequence[int | str] = (),
                   workers: int | None = None) -> list[str]:
    """``nnseg find-best`` as an argument list."""
    return ["find-best", str(dataset), *option("--work", work),
            *many("--configurations", configurations), *many("--folds", folds),
            *option("--workers", workers)]


def run(args: argparse.Namespace, progress: Progress) -> int:
    from NNSegLib.util.atomic import clean_stale_temps

    ws = Workspace.for_dataset(args.dataset, args.work)
    clean_stale_temps(ws.results)
    try:
        result = find_best(ws, args.dataset, args.configurations, args.folds, progress,
                           args.workers, ensembles=not args.no_ensembles)
    finally:
        progress.close()
    print(summary_table(result))
    print(f"wrote {ws.model.best_configuration_file} and "
          f"{ws.model.postprocessing}")
    return 0


__all__ = ["find_best_argv",
    "candidate_configurations",
    "complete_folds",
    "cv_predictions",
    "decide_postprocessing",
    "ensemble_case",
    "find_best",
    "make_ensemble",
    "postprocessing_variants",
    "summary_table",
]
