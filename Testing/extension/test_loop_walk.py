"""The clinician's loop walked end to end on real MRML (slicer-core, headless): the walk of
NNSeg/Testing/Python/loop_walk.py, which NNSegTest runs inside Slicer.

Segment 3 generated cases with a tiny trained model, rank them, correct the first one's
labelmap in the scene, add it to the dataset, preprocess (only the new case), fine-tune one
epoch from the archived model, segment again — and check the numbers.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

#: The module's test walks (shipped with the module for NNSegTest, not part of NNSegLib).
WALKS = Path(__file__).resolve().parents[2] / "NNSeg" / "Testing" / "Python"
if str(WALKS) not in sys.path:
    sys.path.insert(0, str(WALKS))

from loop_walk import run_walk, walk_problems  # noqa: E402

pytestmark = pytest.mark.slicer


def test_the_whole_loop(ctx, tmp_path):
    r = run_walk(tmp_path, ctx)
    # ranking: the low-contrast case is the least certain and comes first
    assert r.ranking[0] == "hard" and sorted(r.ranking) == ["easy_a", "easy_b", "hard"]
    assert r.scores["hard"] > max(r.scores["easy_a"], r.scores["easy_b"]) + 0.1
    assert r.dice_before["hard"] < min(r.dice_before["easy_a"], r.dice_before["easy_b"])
    # correct and add: one more case, numTraining follows, provenance says where it came from
    assert r.corrected == "hard"
    assert r.cases_after == r.cases_before + 1 == r.num_training == 6
    assert r.provenance["origin"] == "corrected_prediction"
    assert r.provenance["changed_voxels"] > 0
    assert r.provenance["model"]["version"] == "v1"
    assert r.provenance["review_state"] == "needs_correction"
    # preprocessing touched only the new case; the splits put it into fold 0's training set
    assert r.repreprocessed == ["hard"]
    assert "hard" in r.fold0_train and r.fold0_val_unchanged
    # fine-tuned: the corrected case's Dice rises clearly; later results carry the version
    assert r.dice_after["hard"] > r.dice_before["hard"] + 0.1, (r.dice_before, r.dice_after)
    assert r.versions == ("v1", "v2")
    fold = r.comparison.folds[0]
    assert fold.fold == "0" and fold.paired and fold.same_cases
    assert r.comparison.old_version == "v1" and r.comparison.new_version == "v2"
    assert "v1" in r.comparison.summary_line() and "v2" in r.comparison.summary_line()
    assert walk_problems(r) == []     # what NNSegTest checks inside Slicer
    broken = dataclasses.replace(r, ranking=["easy_a", "hard", "easy_b"], versions=("v1", "v1"))
    assert [p.split(":")[0] for p in walk_problems(broken)] == [
        "the low-contrast case ranks first", "results carry the model version"]
