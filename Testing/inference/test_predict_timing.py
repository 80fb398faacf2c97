"""Expected time per mode: passes, measurements, the estimator and the book that keeps them."""

from __future__ import annotations

import pytest

from NNSegLib.inference.predict_timing import (
    MAX_MODELS,
    Measurement,
    TimingBook,
    device_kind,
    estimate_seconds,
    mirror_count,
    network_passes,
)


def _m(mode="fast", device="cpu", job=10.0, case=6.0, network=2.0, mvox=2.0, passes=1.0,
       when=1.0) -> Measurement:
    return Measurement(mode, device, job, case, network, mvox, passes, when)


def test_network_passes_of_the_default_and_the_preview():
    assert network_passes(5, mirror_count(True, 3), 0.5, 3) == 320.0
    assert network_passes(1, mirror_count(False, 3), 1.0, 3) == 1.0
    assert network_passes(5, mirror_count(True, 2), 0.5, 2) == 80.0
    assert network_passes(2, 1, 0.25, 3) == 128.0
    for bad in ((0, 1, 0.5, 3), (1, 1, 0.0, 3), (1, 1, 1.5, 3), (1, 0, 0.5, 3)):
        with pytest.raises(ValueError):
            network_passes(*bad)
    assert device_kind("cuda:0") == "cuda" and device_kind("CPU") == "cpu"


def test_measurement_parts_and_checks():
    m = _m()
    assert m.overhead_seconds == 4.0 and m.seconds_per_megavoxel == 3.0
    assert Measurement.from_dict(m.to_dict()) == m
    for bad in (dict(mode="slow"), dict(mvox=0.0), dict(passes=0.0), dict(job=float("nan")),
                dict(case=-1.0)):
        with pytest.raises(ValueError):
            _m(**bad)


def test_unknown_until_the_first_case():
    estimate = estimate_seconds([], "fast", "cpu", 4.0, 1.0)
    assert (estimate.seconds, estimate.basis) == (None, "unknown")
    # a measurement on another device says nothing about this one
    assert estimate_seconds([_m(device="cuda")], "fast", "cpu", 4.0, 1.0).basis == "unknown"
    assert estimate_seconds([_m()], "fast", "cpu", 0.0, 1.0).seconds is None


def test_same_mode_scales_with_volume_and_passes():
    # overhead 4 s + per-voxel (6 - 2) s × 4/2 + network 2 s × 4/2 × 1/1
    estimate = estimate_seconds([_m()], "fast", "cpu", 4.0, 1.0)
    assert (estimate.seconds, estimate.basis) == (pytest.approx(16.0), "measured")
    # the same volume as measured: exactly the measured job time
    assert estimate_seconds([_m()], "fast", "cpu", 2.0, 1.0).seconds == pytest.approx(10.0)


def test_other_mode_is_scaled_by_the_ratio_of_passes():
    # full (320 passes) from the preview: 4 + 8 + 2 × 2 × 320
    estimate = estimate_seconds([_m()], "full", "cpu", 4.0, 320.0)
    assert (estimate.seconds, estimate.basis) == (pytest.approx(1292.0), "scaled")
    # once the full mode is measured, its own measurement is used (TTA off: 160 passes)
    full = _m("full", job=200.0, case=190.0, network=180.0, passes=320.0, when=2.0)
    estimate = estimate_seconds([_m(), full], "full", "cpu", 1.0, 160.0)
    assert (estimate.seconds, estimate.basis) == (pytest.approx(10.0 + 5.0 + 45.0), "measured")
    # and the preview keeps its own
    assert estimate_seconds([_m(), full], "fast", "cpu", 2.0, 1.0).seconds == pytest.approx(10.0)


def test_latest_measurement_wins():
    old, new = _m(job=100.0, case=96.0, when=1.0), _m(when=5.0)
    assert estimate_seconds([new, old], "fast", "cpu", 2.0, 1.0).seconds == pytest.approx(10.0)


def test_book_keeps_the_latest_per_mode_and_device_and_round_trips():
    book = TimingBook()
    book.add("/m", _m(job=30.0, when=1.0))
    book.add("/m", _m(job=10.0, when=2.0))
    book.add("/m", _m(device="cuda", when=3.0))
    book.add("/m", _m("full", passes=320.0, when=4.0))
    assert [(m.mode, m.device, m.job_seconds) for m in book.measurements("/m")] == [
        ("fast", "cpu", 10.0), ("fast", "cuda", 10.0), ("full", "cpu", 10.0)]
    again = TimingBook.from_json(book.to_json())
    assert again.measurements("/m") == book.measurements("/m")
    assert again.measurements("/other") == []
    for broken in (None, "", "not json", "[1, 2]", '{"models": {"/m": [{"mode": "x"}]}}'):
        assert TimingBook.from_json(broken).models == {}


def test_book_forgets_the_least_recently_measured_models():
    book = TimingBook()
    for i in range(MAX_MODELS + 3):
        book.add(f"/m{i}", _m(when=float(i)))
    assert len(book.models) == MAX_MODELS and "/m2" not in book.models
    book.add("/m3", _m(when=99.0))   # measured again: now the most recent
    book.add("/new", _m(when=100.0))
    assert len(book.models) == MAX_MODELS
    assert "/m3" in book.models and "/m4" not in book.models and "/m5" in book.models
    assert list(book.models)[-2:] == ["/m3", "/new"]
