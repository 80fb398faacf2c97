from __future__ import annotations

import json

import pytest

from NNSegLib.data.splits import (
    fold_cases,
    load_or_create_splits,
    make_splits,
    parse_fold,
    parse_folds,
)
from NNSegLib.util.errors import NNSegError


def test_splits_partition_and_are_deterministic():
    ids = [f"c{i:02d}" for i in range(23)]
    s = make_splits(ids)
    assert len(s) == 5
    vals = [c for f in s for c in f["val"]]
    assert sorted(vals) == ids  # every case validated exactly once
    assert [len(f["val"]) for f in s] == [5, 5, 5, 4, 4]
    for f in s:
        assert set(f["train"]) | set(f["val"]) == set(ids) and not set(f["train"]) & set(f["val"])
    assert make_splits(list(reversed(ids))) == s
    assert make_splits(ids, seed=1) != s


def test_saved_once_and_reused(tmp_path):
    path = tmp_path / "splits_final.json"
    ids = [f"c{i}" for i in range(7)]
    s = load_or_create_splits(path, ids)
    custom = [{"train": ids[:5], "val": ids[5:]}]
    path.write_text(json.dumps(custom))
    assert load_or_create_splits(path, ids) == custom
    assert s != custom
    with pytest.raises(NNSegError, match="without preprocessed data"):
        load_or_create_splits(path, ids[:4])


def test_fold_cases_and_parse():
    ids = [f"c{i}" for i in range(6)]
    s = make_splits(ids)
    train, val = fold_cases(s, 2, ids)
    assert val == s[2]["val"] and len(train) + len(val) == 6
    assert fold_cases(s, "all", ids) == (ids, [])
    assert parse_fold("3") == 3 and parse_fold("all") == "all"
    with pytest.raises(NNSegError):
        parse_fold("x")
    with pytest.raises(NNSegError, match="does not exist"):
        fold_cases(s, 5, ids)
    with pytest.raises(NNSegError, match="too few"):
        make_splits(ids[:3])


def test_parse_folds_from_the_cli_and_the_gui():
    assert parse_folds("0-2, 4") == [0, 1, 2, 4]
    assert parse_folds(["3", "all"]) == [3, "all"]
    assert parse_folds("all") == ["all"] and parse_folds("") == [] and parse_folds(None) == []
    with pytest.raises(NNSegError, match="'x' is not a fold"):
        parse_folds("0,x")
    with pytest.raises(NNSegError, match="1 given more than once"):
        parse_folds("1,1;3")
    with pytest.raises(NNSegError, match="0 given more than once"):
        parse_folds(["0", "0"])
    with pytest.raises(NNSegError, match="runs backwards"):
        parse_folds("3-1")


def test_new_cases_join_the_training_set_of_every_fold():
    from NNSegLib.data.splits import extend_splits

    splits = make_splits([f"c{i}" for i in range(6)])
    same, added = extend_splits(splits, [f"c{i}" for i in range(6)])
    assert same is splits and added == []
    grown, added = extend_splits(splits, [f"c{i}" for i in range(6)] + ["z_new", "a_new"])
    assert added == ["a_new", "z_new"]
    for old, new in zip(splits, grown):
        assert new["val"] == old["val"] and new["train"] == old["train"] + ["a_new", "z_new"]
    assert splits[0]["train"] == [c for c in splits[0]["train"] if c.startswith("c")]
