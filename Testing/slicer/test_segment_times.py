"""NNSegLib.slicer.segment_times: the Segment panel's expected time per mode and device."""

from __future__ import annotations

import json
import types

from conftest import make_model_folder

from NNSegLib.inference.predict_timing import Measurement, TimingBook
from NNSegLib.slicer.segment_times import (
    describe_expected_times,
    expected_times,
    format_seconds,
    full_passes,
    record,
    volume_megavoxels,
)

CPU = types.SimpleNamespace(kind="cpu")


def _volume(dims=(200, 100, 100)):
    image = types.SimpleNamespace(GetDimensions=lambda: dims)
    return types.SimpleNamespace(GetImageData=lambda: image)


def _event(model, mode="fast", job=10.0, case=6.0, network=2.0, mvox=2.0, passes=1.0,
           device="cpu", phase="preview"):
    m = Measurement(mode, device, job, case, network, mvox, passes, 1.0)
    return {"event": "phase_done", "phase": phase, "model": str(model),
            "measurement": m.to_dict()}


def test_full_passes_follow_the_panel_and_the_model(tmp_path):
    model = make_model_folder(tmp_path / "m", folds=("0", "1"))
    assert full_passes(model) == 2 * 8 * 8        # 2 folds × 8 mirrors × (1/0.5)³
    assert full_passes(model, tta=False) == 2 * 8
    assert full_passes(model, folds="0") == 64
    make_model_folder(tmp_path / "m", folds=("2",), checkpoint="checkpoint_best.pt")
    assert full_passes(model) == 128 and full_passes(model, allow_unfinished=True) == 192
    assert full_passes(tmp_path / "model.zip") == 5 * 8 * 8   # not inspectable: 5 folds
    flat = make_model_folder(tmp_path / "flat", folds=("0",), configs=("2d",))
    assert full_passes(flat) == 1 * 4 * 4         # 2D: 4 mirrors, 2 tiled axes
    ens = make_model_folder(tmp_path / "ens", folds=("0",), configs=("3d_fullres", "2d"))
    (ens / "best_configuration.json").write_text(json.dumps(
        {"configurations": ["3d_fullres", "2d"]}))
    assert full_passes(ens) == 64 + 16


def test_unknown_until_the_first_case_then_measured_and_scaled(tmp_path):
    model = make_model_folder(tmp_path / "m", folds=("0", "1"))
    volume = _volume()
    assert volume_megavoxels([volume]) == 2.0 and volume_megavoxels([None]) == 0.0
    assert describe_expected_times(None, model, None, [volume]) == ""
    assert describe_expected_times(None, "", CPU, [volume]) == ""
    assert describe_expected_times(None, model, CPU, [None]) == (
        "Expected time: select an input volume.")
    assert describe_expected_times(None, model, CPU, [volume]) == (
        "Expected time on the CPU: unknown until the first case is segmented (the preview "
        "runs about 128× fewer network passes than the full result).")
    # the preview measured: 10 s for 2 Mvoxels (4 s overhead, 4 s per-voxel, 2 s network)
    book = record(None, _event(model))
    times = expected_times(book, model, "cpu", 2.0)
    assert times["fast"].seconds == 10.0 and times["fast"].basis == "measured"
    assert times["full"].seconds == 4.0 + 4.0 + 2.0 * 128 and times["full"].basis == "scaled"
    assert describe_expected_times(book, model, CPU, [volume]) == (
        "Expected on the CPU for this volume (2 Mvoxels): preview ≈ 10 s, full quality "
        "≈ 4.4 min (rough, from the preview).")
    # twice the volume, TTA off: the full result from the preview's rates
    assert expected_times(book, model, "cpu", 4.0, tta=False)["full"].seconds == \
        4.0 + 8.0 + 4.0 * 16
    # the full result measured too (on another model it would not count)
    book = record(book, _event(model, "full", job=120.0, case=110.0, network=100.0,
                               passes=128.0, phase="full"))
    book = record(book, _event(tmp_path / "other", "full", job=1.0, case=0.5, passes=128.0))
    assert describe_expected_times(book, model, CPU, [volume]) == (
        "Expected on the CPU for this volume (2 Mvoxels): preview ≈ 10 s, full quality "
        "≈ 2.0 min.")
    # another device: unknown again
    gpu = types.SimpleNamespace(kind="cuda")
    assert "on the GPU (CUDA): unknown until the first case" in describe_expected_times(
        book, model, gpu, [volume])


def test_record_ignores_events_without_a_measurement():
    assert TimingBook.from_json(record(None, {"event": "phase_done"})).models == {}
    assert TimingBook.from_json(record("garbage", {"model": "/m", "measurement": {
        "mode": "slow"}})).models == {}


def test_format_seconds():
    assert [format_seconds(s) for s in (0.2, 8.4, 89, 150, 5399, 7200)] == [
        "1 s", "8 s", "89 s", "2.5 min", "90.0 min", "2.0 h"]
