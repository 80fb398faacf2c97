"""Cross-validation splits (METHOD §4): made once, saved as ``splits_final.json``, reused.

The file is a JSON list with one ``{"train": [...], "val": [...]}`` object per fold (the
layout nnU-Net uses, so its splits files can be dropped in). Folds are deterministic: the
sorted case identifiers are shuffled with a fixed seed and dealt round-robin into folds.
Fold ``"all"`` trains on every case and has no validation cases.

Cases added to the dataset after the splits were made (``nnseg add-case``, the clinician's
loop of METHOD §8) join the *training* set of every fold (:func:`extend_splits`): the
validation sets stay as they were, so a fine-tuned fold is validated on the same cases as the
model it started from, and neither has seen them in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.util.atomic import write_json
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import read_json

DEFAULT_FOLDS = 5
DEFAULT_SEED = 12345


def make_splits(case_ids: Sequence[str], n_folds: int = DEFAULT_FOLDS,
                seed: int = DEFAULT_SEED) -> list[dict[str, list[str]]]:
    """Deterministic ``n_folds``-fold splits of ``case_ids`` (order of input irrelevant).

    Raises:
        NNSegError: with fewer cases than folds.
    """
    ids = sorted(set(case_ids))
    if len(ids) < n_folds:
        raise NNSegError(f"{len(ids)} training cases are too few for {n_folds}-fold "
                         "cross-validation; train fold 'all' instead")
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    splits = []
    for k in range(n_folds):
        val = sorted(shuffled[k::n_folds])
        val_set = set(val)
        splits.append({"train": [c for c in ids if c not in val_set], "val": val})
    return splits


def load_splits(path: Path | str) -> list[dict[str, list[str]]]:
    """Read a splits file, checking its structure.

    Raises:
        NNSegError: when the file is not a list of ``{"train", "val"}`` objects.
    """
    path = Path(path)
    data = read_json(path, hint="nnseg train")
    ok = isinstance(data, list) and data and all(
        isinstance(f, dict) and isinstance(f.get("train"), list) and isinstance(f.get("val"), list)
        for f in data)
    if not ok:
        raise NNSegError(f"{path}: expected a JSON list of {{\"train\": [...], \"val\": [...]}}")
    return [{"train": [str(c) for c in f["train"]], "val": [str(c) for c in f["val"]]}
            for f in data]


def load_or_create_splits(path: Path | str, case_ids: Sequence[str],
                          n_folds: int = DEFAULT_FOLDS,
                          seed: int = DEFAULT_SEED) -> list[dict[str, list[str]]]:
    """Reuse ``path`` if it exists (checking its cases exist), else create and save it.

    Raises:
        NNSegError: when saved splits name cases that are not in ``case_ids``.
    """
    path = Path(path)
    if not path.is_file():
        splits = make_splits(case_ids, n_folds, seed)
        write_json(path, splits)
        return splits
    splits = load_splits(path)
    known = set(case_ids)
    missing = sorted({c for f in splits for c in f["train"] + f["val"]} - known)
    if missing:
        raise NNSegError(f"{path}: names cases without preprocessed data: {missing[:5]}"
                         f"{' …' if len(missing) > 5 else ''}; delete the file to re-split")
    return splits


def extend_splits(splits: list[dict[str, list[str]]], case_ids: Sequence[str]
                  ) -> tuple[list[dict[str, list[str]]], list[str]]:
    """Add the cases no fold names to the training set of every fold.

    Returns:
        ``(splits, added)``: new splits (the input is not changed) and the added case ids,
        sorted; ``added`` is empty when every case is already in the splits.
    """
    known = {c for f in splits for c in f["train"] + f["val"]}
    added = sorted(set(case_ids) - known)
    if not added:
        return splits, []
    return [{"train": list(f["train"]) + added, "val": list(f["val"])} for f in splits], added


def parse_fold(text: str | int) -> int | str:
    """``"0"`` → 0, ``"all"`` → ``"all"``; anything else raises :class:`NNSegError`."""
    if isinstance(text, int) and text >= 0 or str(text).isdigit():
        return int(text)
    if str(text) == "all":
        return "all"
    raise NNSegError(f"fold must be a non-negative integer or 'all', got {text!r}")


def parse_folds(folds: str | Sequence[str | int] | None) -> list[int | str]:
    """Folds as given on the CLI (``["0", "2"]``) or typed in the GUI (``"0-2, 4"``).

    ``"all"`` is kept; empty → ``[]`` (callers read that as "every fold").

    Raises:
        NNSegError: naming the part that is not a fold, or a fold given twice.
    """
    if folds is None:
        return []
    if isinstance(folds, str):
        parts = [p for p in folds.replace(";", ",").replace(" ", ",").split(",") if p]
    else:
        parts = [str(f) for f in folds]
    result: list[int | str] = []
    for part in parts:
        if "-" in part and part.count("-") == 1 and all(x.isdigit() for x in part.split("-")):
            first, last = (int(x) for x in part.split("-"))
            if first > last:
                raise NNSegError(f"folds: range {part!r} runs backwards")
            result += list(range(first, last + 1))
        else:
            try:
                result.append(parse_fold(part))
            except NNSegError:
                raise NNSegError(f"folds: {part!r} is not a fold number, range (0-4) or "
                                 "'all'") from None
    twice = sorted({str(f) for f in result if result.count(f) > 1})
    if twice:
        raise NNSegError(f"folds: {', '.join(twice)} given more than once")
    return result


def fold_cases(splits: list[dict[str, list[str]]], fold: int | str,
               case_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Training and validation case ids of ``fold`` (``"all"``: every case, no validation).

    Raises:
        NNSegError: for a fold index the splits do not have.
    """
    if fold == "all":
        return sorted(case_ids), []
    if not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise NNSegError(f"fold {fold!r} does not exist; the splits have folds "
                         f"0..{len(splits) - 1} (or use 'all')")
    return list(splits[fold]["train"]), list(splits[fold]["val"])


__all__ = ["DEFAULT_FOLDS", "DEFAULT_SEED", "extend_splits", "fold_cases", "load_or_create_splits",
           "load_splits", "make_splits", "parse_fold", "parse_folds"]
