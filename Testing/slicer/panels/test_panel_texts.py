"""The texts and tables of the Slicer module's panels (NNSegLib.slicer.panels, the job texts of
NNSegLib.jobs.texts), without Slicer."""

from __future__ import annotations

import json
import math

from NNSegLib.jobs.texts import describe_epoch
from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans
from NNSegLib.slicer.model_folds import model_info
from NNSegLib.slicer.panels.dataset import describe_training_set
from NNSegLib.slicer.panels.plan import plans_table
from NNSegLib.slicer.panels.train import cross_validation_summary
from NNSegLib.slicer.scene.dataset import TrainingPair, TrainingSet


def test_describe_training_set_lists_labels_warnings_and_problems():
    ts = TrainingSet([TrainingPair([], None, "a"), TrainingPair([], None, "b")],
                     {"background": 0, "Liver": 1, "tumor": 2},
                     problems=["segment 'cyst' is not in the label list"],
                     warnings=["segment 'liver ' treated as 'Liver'"])
    assert describe_training_set(ts) == (
        "2 case(s); labels 0: background, 1: Liver, 2: tumor\n"
        "⚠ segment 'liver ' treated as 'Liver'\n"
        "✖ segment 'cyst' is not in the label list")
    assert describe_training_set(TrainingSet([], {"background": 0})) == (
        "0 case(s); labels 0: background")


def _config(name: str, spacing, patch, batch: int, features) -> ConfigurationPlan:
    return ConfigurationPlan(
        name=name, spatial_dims=len(patch), data_identifier=name, spacing=spacing,
        median_shape=(36, 50, 35)[-len(patch):], patch_size=patch, batch_size=batch,
        strides=((1,) * len(patch), (2,) * len(patch)),
        kernel_sizes=((3,) * len(patch), (3,) * len(patch)), features_per_stage=features)


def test_plans_table_one_column_per_configuration(tmp_path):
    configs = {"3d_fullres": _config("3d_fullres", (1.0, 0.5, 0.5), (40, 56, 40), 9, (30, 60)),
               "2d": _config("2d", (0.123456, 0.5), (64, 48), 12, (32, 64))}
    Plans("D", "paper", 8.0, {"0": "MRI"}, {"background": 0, "a": 1},
          {"0": IntensityProperties(1.0, 2.0, 0.0, 3.0)}, configs).save(tmp_path / "plans.json")
    header, rows = plans_table(tmp_path)
    assert header == ["", "3d_fullres", "2d"]
    assert [r[0] for r in rows] == ["spacing (mm)", "median shape", "patch size", "batch size",
                                    "stages", "features", "batch Dice", "memory (GB)"]
    table = {r[0]: r[1:] for r in rows}
    assert table["spacing (mm)"] == ["1×0.5×0.5", "0.123×0.5"]
    assert table["patch size"] == ["40×56×40", "64×48"]
    assert table["batch size"] == ["9", "12"]
    assert table["stages"] == ["2", "2"]
    assert table["features"] == ["30×60", "32×64"]
    assert all(len(r) == 3 for r in rows)


def test_describe_epoch():
    event = {"epoch": 4, "train_loss": -0.51234, "ema_pseudo_dice": 0.81239, "eta_seconds": 3725}
    assert describe_epoch(event, 1000) == (
        "epoch 5/1000, train loss -0.5123, pseudo Dice (EMA) 0.812, ETA 1:02:05")
    text = describe_epoch({"epoch": 0}, 10)
    assert text == "epoch 1/10, train loss nan, pseudo Dice (EMA) –, ETA –"
    # short epochs (a slow machine): epoch 13 of a 10-epoch run, counted in steps
    text = describe_epoch({"epoch": 12, "step": 240, "planned_steps": 250}, 10)
    assert text.startswith("epoch 13, step 240/250, train loss nan")
    assert math.isnan(float(text.split("train loss ")[1].split(",")[0]))


def test_cross_validation_summary(tmp_path):
    assert cross_validation_summary(tmp_path, "3d_fullres") == "No cross-validation results yet."
    for fold, summary in ((0, {"foreground_mean": {"dice": 0.8}}),
                          (1, {"foreground_mean": {"dice": 0.9}}),
                          (2, {"foreground_mean": {}}),  # no Dice: left out
                          (3, {"foreground_mean": {"dice": 0.7}})):
        d = tmp_path / "results" / "3d_fullres" / f"fold_{fold}"
        d.mkdir(parents=True)
        (d / "validation_summary.json").write_text(json.dumps(summary))
    assert cross_validation_summary(str(tmp_path), "3d_fullres") == (
        "CV Dice 0.800 (fold_0: 0.800, fold_1: 0.900, fold_3: 0.700)")
    assert cross_validation_summary(tmp_path, "2d") == "No cross-validation results yet."


def test_model_info_of_folder_zip_and_nothing(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({
        "name": "Dataset007_Brain",
        "channel_names": {"10": "FLAIR", "2": "T2", "0": "T1"},
        "labels": {"background": 0, "tumor": 2, "edema": 1}}))
    info = model_info(tmp_path)
    assert info == {
        "channels": ["T1", "T2", "FLAIR"],  # numeric channel order, not text order
        "labels": {0: "background", 2: "tumor", 1: "edema"},
        "name": "Dataset007_Brain",
        "description": "Dataset007_Brain: channels ['T1', 'T2', 'FLAIR']; labels edema, tumor",
    }
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "dataset.json").write_text("{}")
    assert model_info(str(bare)) == {"channels": ["image"], "labels": {}, "name": "bare",
                                     "description": "bare: channels ['image']; labels "}
    assert model_info(tmp_path / "model.zip") == {
        "description": "Zip package: imported when segmenting."}
    assert model_info(tmp_path / "nothing") == {
        "description": "No model here (dataset.json missing)."}


def test_fine_tune_summary(tmp_path):
    from NNSegLib.slicer.fine_tune import fine_tune_summary

    work = tmp_path / "work"
    old, new = work / "model_versions" / "v1", work / "results"
    for folder, dice in ((old, 0.7), (new, 0.75)):
        run = folder / "3d_fullres" / "fold_0"
        run.mkdir(parents=True)
        (run / "checkpoint_final.pt").write_bytes(b"")
        (run / "validation_summary.json").write_text(json.dumps(
            {"foreground_mean": {"dice": dice}, "mean": {}, "cases": [{"case": "a"}]}))
    assert "not a fine-tune" in fine_tune_summary(work)
    (new / "model_version.json").write_text(json.dumps(
        {"version": 2, "parent": {"path": str(old), "version": 1}}))
    assert fine_tune_summary(work) == "CV Dice v1 0.700 → v2 0.750 (+0.050; fold(s) 0)"
    assert fine_tune_summary(work, "2d").startswith("No comparison yet:")
def test_event_and_finish_texts():
    from types import SimpleNamespace

    from NNSegLib.jobs.base import JobStatus
    from NNSegLib.jobs.texts import describe_event, finish_text

    assert describe_event("plan", {"event": "progress", "stage": "fingerprint", "current": 2,
                                   "total": 4}, 10.0) == "fingerprint: 2/4, ETA 0:10"
    assert describe_event("train", {"event": "progress", "current": 2, "total": 4}, 10) is None
    epoch = describe_event("train", {"event": "epoch", "epoch": 4, "train_loss": 0.5}, 1, 10)
    assert epoch.startswith("epoch 5/10, train loss 0.5000")
    assert describe_event("train", {"event": "step", "step": 1, "of": 3, "args": [
        "train", "/d/D", "3d_fullres", "1", "--work", "/w"]}, 1) == (
        "Step 2/3: train 3d_fullres 1")
    assert describe_event("segment", {"event": "error", "message": "bad"}, 1) == "bad"
    assert describe_event("segment", {"event": "log", "text": "x"}, 1) is None
    ok = SimpleNamespace(status=JobStatus.OK, elapsed=12.4, error_message=lambda: None)
    assert finish_text(ok, "Planning") == (True, "Planning completed in 12 s")
    bad = SimpleNamespace(status=JobStatus.BAD_INPUT, elapsed=1,
                          error_message=lambda: "nnseg plan: error: no dataset.json")
    assert finish_text(bad, "Planning") == (
        False, "Planning bad input: nnseg plan: error: no dataset.json")


def test_training_time_warning_uses_the_plan(tmp_path):
    from NNSegLib.slicer.devices import DeviceInfo
    from NNSegLib.slicer.panels.train import training_time_warning

    cpu = DeviceInfo("cpu", cores=4, bf16=False)
    assert training_time_warning(cpu, tmp_path, "3d_fullres", "0", 5).endswith("very slow.")
    config = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="d", spacing=(1.0, 0.5, 0.5),
        median_shape=(36, 50, 35), patch_size=(40, 56, 40), batch_size=2,
        strides=((1, 1, 1), (2, 2, 2)), kernel_sizes=((3, 3, 3), (3, 3, 3)),
        features_per_stage=(32, 64))
    Plans("D", "paper", 8.0, {"0": "MRI"}, {"background": 0, "a": 1},
          {"0": IntensityProperties(1.0, 2.0, 0.0, 3.0)},
          {"3d_fullres": config}).save(tmp_path / "plans.json")
    text = training_time_warning(cpu, tmp_path, "3d_fullres", "0-4", 1000)
    assert "Rough estimate" in text and "× 5 fold(s)" in text
    assert training_time_warning(DeviceInfo("cuda", "GPU", 24.0), tmp_path, "3d_fullres", "0",
                                 1000) is None
    budget = training_time_warning(cpu, tmp_path, "3d_fullres", "0-1", 1000, 90)
    assert budget.startswith(text.split(" Rough")[0])
    assert "stops each fold after 1.5 h (3.0 h for 2 fold(s))" in budget
    assert "instead of the plan's" not in budget   # the plan's batch is 2 already
    import dataclasses

    Plans("D", "paper", 8.0, {"0": "MRI"}, {"background": 0, "a": 1},
          {"0": IntensityProperties(1.0, 2.0, 0.0, 3.0)},
          {"3d_fullres": dataclasses.replace(config, batch_size=9)}
          ).save(tmp_path / "plans.json")
    budget = training_time_warning(cpu, tmp_path, "3d_fullres", "0", 1000, 25)
    assert budget.endswith("On a CPU it trains batch 2 instead of the plan's 9: more steps in "
                           "the minutes given.")
    assert "instead of" not in training_time_warning(cpu, tmp_path, "3d_fullres", "0", 1000)
    assert training_time_warning(DeviceInfo("cuda", "GPU", 24.0), tmp_path, "3d_fullres", "0",
                                 1000, 60) is None


def test_progress_bar_values_and_review_case_line():
    from types import SimpleNamespace

    from NNSegLib.inference.case_uncertainty import CaseUncertainty, Region
    from NNSegLib.jobs.texts import progress_value
    from NNSegLib.slicer.panels.review import describe_review_case

    case = {"event": "progress", "stage": "segment-batch", "current": 2, "total": 5}
    patch = {"event": "progress", "stage": "sliding window", "current": 7, "total": 40}
    assert progress_value("batch", case) == (2, 5)
    assert progress_value("batch", patch) is None      # the batch's bar counts cases
    assert progress_value("segment", patch) == (7, 40)
    assert progress_value("batch", {"event": "start", "stage": "segment-batch", "total": 3}) \
        == (0, 3)
    assert progress_value("plan", {"event": "message", "text": "x"}) is None
    stats = CaseUncertainty(0.4123, 0.1, 0.25, 100, 30, {"liver": 1.0},
                            Region((1, 2, 3), (-10.0, 20.0, 5.5), ((0, 2), (1, 3), (2, 4)), 0.7))
    entry = SimpleNamespace(case="pat", state="needs_correction", stats=stats,
                            added_to_dataset=None)
    assert describe_review_case(entry) == (
        "pat: needs correction; mean entropy in the foreground 0.412, 25.0% uncertain; views "
        "centred on the most uncertain region (RAS 10.0, -20.0, 5.5).")
    entry = SimpleNamespace(case="pat", state="accepted", stats=None,
                            added_to_dataset={"case": "pat_2"})
    assert describe_review_case(entry) == "pat: accepted; added to the dataset as 'pat_2'."
