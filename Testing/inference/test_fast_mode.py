"""``nnseg predict --fast`` (and ``segment-batch --fast``): one fold, no TTA, step 1.0 — fewer
windows, same output format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_model_folder, write_image

from NNSegLib.data.io import SimpleITKIO
from NNSegLib.inference import nnseg_model
from NNSegLib.inference.fast_mode import FAST_STEP, fast_choice, first_fold
from NNSegLib.inference.predict import add_arguments, run
from NNSegLib.inference.sliding_window import (
    SlidingWindowSettings,
    SlidingWindowStats,
    predict_sliding_window,
)
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress

SHAPE = (24, 40, 40)   # the model's patch is 16³ at 1 mm: no resampling, no padding
DIRECTION = (0.0, -1.0, 0.0, 0.866025403784, 0.0, -0.5, 0.5, 0.0, 0.866025403784)


def _easy_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two boxes of distinct brightness (100 apart, noise σ 30), and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:14, 6:22, 8:30] = 1
    labels[12:20, 20:34, 14:36] = 2
    image = rng.normal(100.0, 30.0, SHAPE).astype(np.float32) + 100.0 * labels
    return image, labels


def _predict(tmp_path: Path, model: Path, name: str, *extra: str) -> tuple[Path, list[dict]]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / name
    args = parser.parse_args(["-i", str(tmp_path / "in"), "-o", str(out), "-m", str(model),
                              "--device", "cpu", "--precision", "fp32", *extra])
    events: list[dict] = []
    assert run(args, Progress(listeners=[events.append])) == 0
    return out, events


def _done(events: list[dict]) -> dict:
    [done] = [e for e in events if e["event"] == "done" and "megavoxels" in e]
    return done


@pytest.fixture
def counted(monkeypatch):
    """Every network the loader builds records the batch size of each forward call."""
    calls: list[tuple[int, int]] = []   # (network index, patches in the call)
    real = nnseg_model.network_from_state
    built: list[object] = []

    def counting(*args, **kwargs):
        net = real(*args, **kwargs)
        index = len(built)
        built.append(net)
        net.register_forward_pre_hook(lambda _m, inp: calls.append((index, inp[0].shape[0])))
        return net

    monkeypatch.setattr(nnseg_model, "network_from_state", counting)
    return calls


def test_fast_runs_fewer_windows_and_writes_the_same_geometry(tmp_path, counted):
    model = make_model_folder(tmp_path / "model", folds=("0", "1"))
    image, _labels = _easy_case()
    write_image(tmp_path / "in" / "patient_0000.nii.gz", image, (1.0, 1.0, 1.0),
                (10.0, -5.0, 2.0), DIRECTION)
    full_dir, full_events = _predict(tmp_path, model, "full")
    full_calls = list(counted)
    counted.clear()
    fast_dir, fast_events = _predict(tmp_path, model, "fast", "--fast")
    # windows per axis: step 0.5 -> 2, 4, 4 (32); step 1.0 -> 2, 3, 3 (18)
    full, fast = _done(full_events), _done(fast_events)
    assert (full["windows"], full["patch_passes"]) == (2 * 32, 2 * 32 * 8)
    assert (fast["windows"], fast["patch_passes"]) == (18, 18)
    assert sum(n for _, n in full_calls) == 512 and {i for i, _ in full_calls} == {0, 1}
    assert sum(n for _, n in counted) == 18 and {i for i, _ in counted} == {2}  # one network
    assert (full["passes"], fast["passes"]) == (2 * 8 * 2.0 ** 3, 1.0)
    assert fast["megavoxels"] == pytest.approx(np.prod(SHAPE) / 1e6)
    assert fast["device"] == "cpu" and 0 < fast["network_seconds"] <= fast["seconds"]
    messages = [e["text"] for e in fast_events if e["event"] == "message"]
    assert "fast preview: 3d_fullres fold(s) 0, no test-time augmentation, step 1" in messages
    assert any("folds ['0']" in m and "TTA off" in m and "step 1" in m for m in messages)
    # same files, same geometry and type as the full prediction
    assert sorted(p.name for p in fast_dir.iterdir()) == sorted(
        p.name for p in full_dir.iterdir()) == ["patient.nii.gz"]
    a, geo_a = SimpleITKIO().read(full_dir / "patient.nii.gz")
    b, geo_b = SimpleITKIO().read(fast_dir / "patient.nii.gz")
    source = SimpleITKIO().read(tmp_path / "in" / "patient_0000.nii.gz")[1]
    assert geo_b.mismatch(source) is None and geo_a.mismatch(source) is None
    assert a.shape == b.shape == SHAPE and a.dtype == b.dtype == np.uint8


def test_explicit_folds_and_step_win_over_fast(tmp_path, counted):
    model = make_model_folder(tmp_path / "model", folds=("0", "1"))
    write_image(tmp_path / "in" / "p_0000.nii.gz", _easy_case()[0])
    _out, events = _predict(tmp_path, model, "o1", "--fast", "--folds", "0", "1")
    assert (_done(events)["windows"], _done(events)["patch_passes"]) == (36, 36)
    _out, events = _predict(tmp_path, model, "o2", "--fast", "--step", "0.5")
    assert (_done(events)["windows"], _done(events)["patch_passes"]) == (32, 32)
    assert _done(events)["passes"] == 8.0


def _segment_batch(tmp_path: Path, model: Path, name: str, *extra: str
                   ) -> tuple[Path, list[dict]]:
    from NNSegLib.slicer import batch_job

    parser = argparse.ArgumentParser()
    batch_job.add_arguments(parser)
    out = tmp_path / name
    args = parser.parse_args(["-i", str(tmp_path / "in"), "-o", str(out), "-m", str(model),
                              "--device", "cpu", "--precision", "fp32", "--format", "image",
                              *extra])
    events: list[dict] = []
    assert batch_job.run(args, Progress(listeners=[events.append])) == 0
    return out, events


def test_segment_batch_fast_is_the_same_preview(tmp_path, counted):
    model = make_model_folder(tmp_path / "model", folds=("0", "1"))
    write_image(tmp_path / "in" / "patient_0000.nii.gz", _easy_case()[0])
    full_dir, _ = _segment_batch(tmp_path, model, "full")
    assert sum(n for _, n in counted) == 2 * 32 * 8   # two folds, step 0.5, mirrors
    counted.clear()
    fast_dir, events = _segment_batch(tmp_path, model, "fast", "--fast")
    assert sum(n for _, n in counted) == 18 and len({i for i, _ in counted}) == 1
    messages = [e["text"] for e in events if e["event"] == "message"]
    assert "fast preview: 3d_fullres fold(s) 0, no test-time augmentation, step 1" in messages
    # the same review batch: segmentation, uncertainty map and queue entry
    for folder in (full_dir, fast_dir):
        queue = json.loads((folder / "review_queue.json").read_text())
        [entry] = queue["cases"].values()
        assert (folder / entry["segmentation"]).is_file()
        assert (folder / entry["uncertainty"]).is_file()
    a = SimpleITKIO().read(full_dir / "patient.nii.gz")[0]
    b = SimpleITKIO().read(fast_dir / "patient.nii.gz")[0]
    assert a.shape == b.shape == SHAPE


class _ContextNet(torch.nn.Module):
    """Class k near intensity level k, then a 3×3×3 zero-padded mean of the probabilities:
    a network with context, whose output differs at window borders (as a U-Net's does)."""

    def __init__(self, levels: list[float], scale: float) -> None:
        super().__init__()
        self.levels, self.scale = torch.tensor(levels), scale

    def forward(self, x):
        logits = -self.scale * (x[:, :1] - self.levels.view(1, -1, 1, 1, 1)) ** 2
        mean = torch.nn.functional.avg_pool3d(torch.softmax(logits, 1), 3, stride=1, padding=1)
        return torch.log(mean + 1e-6)


def test_fast_agrees_with_the_full_prediction_on_an_easy_case(tmp_path, monkeypatch):
    from NNSegLib.planning.plans import Plans
    from NNSegLib.preprocessing.preprocess import preprocess_case

    model = make_model_folder(tmp_path / "model", folds=("0", "1"))
    image, labels = _easy_case()
    path = write_image(tmp_path / "in" / "easy_0000.nii.gz", image)
    plans = Plans.load(model / "plans.json")
    geometry = SimpleITKIO().read(path)[1]
    data, _seg, _props = preprocess_case(image[None], geometry, plans,
                                         plans.configurations["3d_fullres"])
    levels = [float(np.asarray(data)[0][labels == k].mean()) for k in range(3)]
    built: list[float] = []

    def context_net(*args, **kwargs):
        built.append(1.0 + len(built))   # each fold a little different
        return _ContextNet(levels, 4.0 * built[-1]).eval()

    monkeypatch.setattr(nnseg_model, "network_from_state", context_net)
    full_dir, _ = _predict(tmp_path, model, "full")
    fast_dir, _ = _predict(tmp_path, model, "fast", "--fast")
    full = SimpleITKIO().read(full_dir / "easy.nii.gz")[0]
    fast = SimpleITKIO().read(fast_dir / "easy.nii.gz")[0]
    for k in (1, 2):
        a, b = full == k, fast == k
        dice = 2.0 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.98, (k, dice)
        truth = labels == k
        assert 2.0 * (b & truth).sum() / (b.sum() + truth.sum()) > 0.95
    assert (full != fast).mean() < 0.01


def test_fast_choice_is_the_lowest_usable_fold(tmp_path):
    model = make_model_folder(tmp_path / "m", folds=("2", "10", "all"))
    assert first_fold(model, "3d_fullres") == "2"
    choice = fast_choice(model)
    assert (choice.configuration, choice.folds, choice.step) == ("3d_fullres", ["2"], FAST_STEP)
    # an unfinished fold 0 is skipped unless unfinished folds are allowed
    make_model_folder(tmp_path / "m", folds=("0",), checkpoint="checkpoint_best.pt")
    assert fast_choice(model).folds == ["2"]
    assert fast_choice(model, allow_unfinished=True).folds == ["0"]
    # explicit choices win
    explicit = fast_choice(model, folds=["10", "all"], step=0.25)
    assert (explicit.folds, explicit.step) == (["10", "all"], 0.25)
    # an ensemble of configurations: the preview uses the first one
    ens = make_model_folder(tmp_path / "e", folds=("1",), configs=("3d_fullres", "2d"))
    (ens / "best_configuration.json").write_text(json.dumps(
        {"configurations": ["2d", "3d_fullres"]}))
    assert fast_choice(ens).configuration == "2d"
    assert fast_choice(ens, configuration="3d_fullres").configuration == "3d_fullres"
    empty = tmp_path / "none"
    make_model_folder(empty, folds=("0",), checkpoint="checkpoint_latest.pt")
    with pytest.raises(NNSegError, match="allow-unfinished"):
        fast_choice(empty)


def test_sliding_window_stats_count_windows_mirrors_and_calls():
    net = torch.nn.Conv3d(1, 2, 1)
    data = torch.zeros(1, 20, 20, 20)
    stats = SlidingWindowStats()
    settings = SlidingWindowSettings((16, 16, 16), step=0.5, mirror_axes=(0, 1, 2),
                                     precision="fp32", max_batch_voxels=16 ** 3 * 8)
    predict_sliding_window(net, data, 2, settings, stats=stats)
    assert (stats.windows, stats.patch_passes, stats.network_calls) == (8, 64, 8)
    predict_sliding_window(net, data, 2, SlidingWindowSettings((16, 16, 16), step=1.0,
                                                               precision="fp32"), stats=stats)
    assert (stats.windows, stats.patch_passes, stats.network_calls) == (16, 72, 9)
    assert stats.seconds > 0 and stats.to_dict()["windows"] == 16
