"""NNSegLib.slicer.folders: default folders under ~/NNSeg, remembered ones, following."""

from __future__ import annotations

from pathlib import Path

from NNSegLib.slicer.folders import (
    SETTINGS_KEYS,
    default_work_folder,
    follow_dataset,
    initial_folders,
    is_unset,
    next_dataset_folder,
    nnseg_home,
)


def test_unset_paths_and_home(tmp_path):
    assert is_unset(None) and is_unset("") and is_unset(".") and is_unset(Path())
    assert not is_unset(tmp_path)
    assert nnseg_home(tmp_path) == tmp_path / "NNSeg"
    assert nnseg_home() == Path.home() / "NNSeg"
    assert set(SETTINGS_KEYS) == {"base", "dataset", "work", "model", "batch"}
    assert all(v.startswith("NNSeg/") for v in SETTINGS_KEYS.values())


def test_next_dataset_folder_skips_used_numbers(tmp_path):
    assert next_dataset_folder(tmp_path) == tmp_path / "datasets" / "Dataset001_Slicer"
    (tmp_path / "datasets" / "Dataset001_Liver").mkdir(parents=True)
    (tmp_path / "datasets" / "Dataset003_X").mkdir()
    (tmp_path / "datasets" / "notes").mkdir()
    assert next_dataset_folder(tmp_path).name == "Dataset002_Slicer"
    assert default_work_folder(tmp_path, "/data/Dataset002_Slicer") == (
        tmp_path / "work" / "Dataset002_Slicer")


def test_initial_folders_keep_set_ones_then_remembered_then_default(tmp_path):
    base = tmp_path / "NNSeg"
    fresh = initial_folders(".", ".", {}, base)
    assert fresh == {"dataset": base / "datasets" / "Dataset001_Slicer",
                     "work": base / "work" / "Dataset001_Slicer"}
    scene_set = initial_folders("/d/Dataset005_A", "/w/A", {}, base)
    assert scene_set == {"dataset": Path("/d/Dataset005_A"), "work": Path("/w/A")}
    remembered_dataset = tmp_path / "Dataset007_Kidney"
    remembered_work = tmp_path / "elsewhere" / "Dataset007_Kidney"
    remembered_work.mkdir(parents=True)
    remembered_dataset.mkdir()
    got = initial_folders("", None, {"dataset": str(remembered_dataset),
                                     "work": str(remembered_work)}, base)
    assert got == {"dataset": remembered_dataset, "work": remembered_work}
    # a remembered folder that no longer exists is not used
    gone = initial_folders(".", ".", {"dataset": str(tmp_path / "gone"), "work": None}, base)
    assert gone["dataset"].name == "Dataset001_Slicer"


def test_work_folder_follows_a_new_dataset_unless_chosen(tmp_path):
    base = tmp_path / "NNSeg"
    old, new = "/d/Dataset001_A", "/d/Dataset002_B"
    assert follow_dataset(old, new, base / "work" / "Dataset001_A", base) == (
        base / "work" / "Dataset002_B")
    assert follow_dataset(old, new, ".", base) == base / "work" / "Dataset002_B"
    assert follow_dataset(old, new, "/my/own/work", base) is None
    assert follow_dataset(old, ".", base / "work" / "Dataset001_A", base) is None
    assert follow_dataset(None, new, base / "work" / "Dataset002_B", base) is None


def test_initial_model_is_the_last_one_used_if_it_still_exists(tmp_path):
    from NNSegLib.slicer.folders import initial_model

    model = tmp_path / "model.zip"
    assert initial_model(".", {"model": str(model)}) is None  # gone
    model.write_bytes(b"zip")
    assert initial_model(".", {"model": str(model)}) == model
    assert initial_model("/chosen/model", {"model": str(model)}) == Path("/chosen/model")
    assert initial_model(None, {}) is None


def test_initial_batch_folder_is_the_last_queue_if_it_still_exists(tmp_path):
    """After a restart the review table shows the last batch folder's queue again."""
    from NNSegLib.slicer.folders import initial_batch_folder

    base = tmp_path / "NNSeg"
    assert initial_batch_folder(".", {}, base) == base / "batches" / "batch_001"
    (base / "batches" / "batch_001").mkdir(parents=True)
    assert initial_batch_folder(None, {}, base) == base / "batches" / "batch_002"
    last = tmp_path / "ward_batch"
    assert initial_batch_folder(".", {"batch": str(last)}, base).name == "batch_002"  # gone
    last.mkdir()
    assert initial_batch_folder(".", {"batch": str(last)}, base) == last
    assert initial_batch_folder("/chosen", {"batch": str(last)}, base) == Path("/chosen")
