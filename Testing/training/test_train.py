from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_plans, write_preprocessed

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.training.pseudo_dice import confusion_counts, dice_from_counts
from NNSegLib.training.run_config import RunConfig
from NNSegLib.training.train import train_fold
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import CHECKPOINT_BEST, CHECKPOINT_FINAL, CHECKPOINT_LATEST
from NNSegLib.util.progress import Cancelled, CancelToken, Progress
from NNSegLib.util.workspace import Workspace


def make_work(tmp_path, spatial_dims=3, patch=(16, 16, 16), num_cases=6):
    work = tmp_path / "work"
    ws = Workspace(work)
    plans = tiny_plans(patch=patch, spatial_dims=spatial_dims)
    plans.save(ws.plans)
    write_preprocessed(ws.preprocessed("3d_fullres"), num_cases=num_cases)
    ws.dataset_json.write_text(json.dumps({"labels": {"background": 0, "c1": 1, "c2": 2},
                                           "channel_names": {"0": "MRI"},
                                           "file_ending": ".nii.gz", "numTraining": 6}))
    return ws, plans


FAST = {"max_epochs": 2, "iterations_per_epoch": 4, "val_iterations": 2, "num_threads": 1,
        "device": "cpu"}


def _train(ws, fold=0, config="3d_fullres", **kw):
    overrides = {**FAST, **kw.pop("overrides", {})}
    return train_fold(None, ws.root, config, fold, overrides=overrides, **kw)


def test_pseudo_dice_counts():
    logits = torch.zeros(1, 3, 4)
    logits[0, 1, :2] = 1  # predict class 1 at 0, 1
    logits[0, 2, 2] = 1   # class 2 at 2, background at 3
    target = torch.tensor([[[1, 0, 2, 2]]]).float()
    counts = confusion_counts(logits, target, 3).numpy()
    assert counts[1].tolist() == [1, 1, 0] and counts[2].tolist() == [1, 0, 1]
    assert dice_from_counts(counts) == pytest.approx([2 / 3, 2 / 3])
    assert dice_from_counts(np.zeros((2, 3)))[0] is None


def test_tiny_plan_trains_and_loss_decreases(tmp_path):
    ws, plans = make_work(tmp_path)
    result = _train(ws, overrides={"max_epochs": 5, "iterations_per_epoch": 8, "lr": 3e-3})
    run_dir = ws.run_dir("3d_fullres", 0)
    assert result.epochs == 5 and "max_epochs" in result.stop_reason
    for name in ("run_config.json", CHECKPOINT_LATEST, CHECKPOINT_BEST, CHECKPOINT_FINAL,
                 "log.jsonl", "progress.png", "validation_summary.json"):
        assert (run_dir / name).is_file(), name
    assert (ws.results / "plans.json").is_file() and (ws.results / "dataset.json").is_file()
    assert (ws.splits).is_file()
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(5))
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"]
    assert 0.0 <= log[0]["data_wait_share"] <= 1.0 and len(log[0]["pseudo_dice"]) == 2
    assert 0.0 < log[0]["augment_share"] < 1.0
    rc = RunConfig.load(run_dir / "run_config.json")
    assert rc.max_epochs == 5 and rc.recipe == plans.recipe
    state = ckpt.load_checkpoint(run_dir / CHECKPOINT_FINAL)
    assert state["meta"]["configuration"] == "3d_fullres" and state["meta"]["epoch"] == 5
    assert state["meta"]["num_classes"] == 3 and state["meta"]["num_input_channels"] == 1
    summary = json.loads((run_dir / "validation_summary.json").read_text())
    assert len(summary["cases"]) == len(json.loads(ws.splits.read_text())[0]["val"])

    # The final checkpoint reloads to identical network outputs.
    from NNSegLib.network.network import build_network

    net = build_network(plans.configuration("3d_fullres"), 1, 3, deep_supervision=False)
    net.load_state_dict(state["network"])
    net.eval()
    x = torch.from_numpy(np.load(ws.preprocessed("3d_fullres") / "case_000.npy")[None, :, :16, :16,
                                 :16].copy())
    with torch.no_grad():
        out = net(x)
    net2 = build_network(plans.configuration("3d_fullres"), 1, 3, deep_supervision=False)
    net2.load_state_dict(ckpt.load_checkpoint(run_dir / CHECKPOINT_FINAL)["network"])
    net2.eval()
    with torch.no_grad():
        assert torch.equal(net2(x), out)
    assert not torch.equal(build_network(plans.configuration("3d_fullres"), 1, 3,
                                         deep_supervision=False).eval()(x), out)

    # A second new run is refused; --extend adds epochs.
    with pytest.raises(NNSegError, match="already holds"):
        _train(ws)
    again = _train(ws, mode="extend", extend_epochs=2)
    assert again.epochs == 7
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 7
    with pytest.raises(NNSegError, match="already finished"):
        _train(ws, mode="continue")


class _CancelAt:
    def __init__(self, token, epoch, iteration):
        self.token, self.epoch, self.iteration, self.epoch_now = token, epoch, iteration, -1

    def __call__(self, event):
        if event["event"] == "start" and event.get("stage") == "train":
            self.epoch_now = event.get("epoch", -1)
        if (event["event"] == "progress" and self.epoch_now == self.epoch
                and event["current"] == self.iteration):
            self.token.cancel("test")


def test_cancel_mid_epoch_then_continue_is_exact(tmp_path):
    ws_a, _ = make_work(tmp_path / "a")
    ws_b, _ = make_work(tmp_path / "b")
    kw = {"overrides": {"final_validation": False, "max_epochs": 3}}
    _train(ws_a, **kw)
    token = CancelToken()
    progress = Progress(token, [_CancelAt(token, 1, 2)])
    with pytest.raises(Cancelled, match="--continue"):
        _train(ws_b, progress=progress, **kw)
    latest = ckpt.load_checkpoint(ws_b.run_dir("3d_fullres", 0) / CHECKPOINT_LATEST)
    assert latest["meta"]["epoch"] == 1 and latest["meta"]["iteration"] == 2
    assert len(latest["trainer"]["epoch_losses"]) == 2
    _train(ws_b, mode="continue", **kw)
    a = ckpt.load_checkpoint(ws_a.run_dir("3d_fullres", 0) / CHECKPOINT_FINAL)
    b = ckpt.load_checkpoint(ws_b.run_dir("3d_fullres", 0) / CHECKPOINT_FINAL)
    for k, v in a["network"].items():
        assert torch.equal(v, b["network"][k]), k
    log_a = (ws_a.run_dir("3d_fullres", 0) / "log.jsonl").read_text().splitlines()
    log_b = (ws_b.run_dir("3d_fullres", 0) / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["train_loss"] for x in log_a] == [json.loads(x)["train_loss"]
                                                          for x in log_b]


def test_fold_all_2d_and_time_budget(tmp_path):
    ws, _ = make_work(tmp_path, spatial_dims=2, patch=(16, 16))
    result = _train(ws, fold="all", config="2d", overrides={"max_epochs": 1})
    run_dir = ws.run_dir("2d", "all")
    assert result.epochs == 1 and (run_dir / CHECKPOINT_FINAL).is_file()
    assert not (run_dir / "validation_summary.json").exists()
    assert not ws.splits.exists()
    with pytest.raises(NNSegError, match=r"--time-budget 1e-06: must be at least 3 minutes, "
                                         r"one validation interval"):
        _train(ws, fold=1, config="2d", time_budget_minutes=1e-6, overrides={"max_epochs": 50})
    assert not ws.run_dir("2d", 1).exists()   # refused before anything was written
    budget = _train(ws, fold=1, config="2d", time_budget_minutes=1e-6,
                    overrides={"max_epochs": 50, "epoch_minutes": 1e-6})
    assert budget.stop_reason == "time budget used"
    state = ckpt.load_checkpoint(ws.run_dir("2d", 1) / CHECKPOINT_FINAL)
    assert state["meta"]["epoch"] == 0 and state["meta"]["iteration"] == 1
    with pytest.raises(NNSegError, match="fold 7 does not exist"):
        _train(ws, fold=7, config="2d")
    with pytest.raises(NNSegError, match="not in the plan"):
        _train(ws, config="3d_lowres")


@pytest.mark.slow
def test_cli_sigterm_mid_epoch_then_continue(tmp_path):
    ws, _ = make_work(tmp_path)
    cmd = [sys.executable, "-m", "NNSegLib", "train", str(tmp_path / "raw"), "3d_fullres", "0",
           "--work", str(ws.root), "--epochs", "2", "--iterations-per-epoch", "400",
           "--val-iterations", "1", "--device", "cpu", "--num-threads", "1",
           "--no-final-validation", "--progress-json", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["current"] >= 2:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "cancelled" in err and "--continue" in err
    state = ckpt.load_checkpoint(ws.run_dir("3d_fullres", 0) / CHECKPOINT_LATEST)
    assert state["meta"]["epoch"] == 0 and state["meta"]["iteration"] >= 2
    done = subprocess.run(cmd[:12] + ["4"] + cmd[13:] + ["--continue"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming 3d_fullres fold 0 at epoch 0" in done.stderr
    events = [json.loads(x) for x in done.stdout.splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [0, 1]


@pytest.mark.parametrize("setting, expected", [("reuse", 1), ("system", 0)])
def test_host_memory_setting_decides_reuse_on_cpu(monkeypatch, setting, expected):
    from NNSegLib.training import train as train_module
    from NNSegLib.util import host_memory

    calls = []
    monkeypatch.setattr(host_memory, "reuse_freed_memory", lambda: calls.append(1) or True)
    device, _ = train_module._device_and_threads(RunConfig(device="cpu", num_threads=1,
                                                           host_memory=setting))
    assert device.type == "cpu"
    assert len(calls) == expected


def test_host_memory_setting_is_checked():
    with pytest.raises(NNSegError, match="host_memory 'keep' not in"):
        RunConfig(host_memory="keep").validated()


def test_continue_with_fewer_epochs_than_done_ends_without_another_epoch(tmp_path):
    ws, _ = make_work(tmp_path)
    token = CancelToken()
    with pytest.raises(Cancelled):
        _train(ws, progress=Progress(token, [_CancelAt(token, 1, 2)]),
               overrides={"final_validation": False, "max_epochs": 3})
    result = _train(ws, mode="continue", overrides={"max_epochs": 1})
    assert result.stop_reason == "reached max_epochs=1" and result.epochs == 1
    log = (ws.run_dir("3d_fullres", 0) / "log.jsonl").read_text().splitlines()
    assert len(log) == 1   # no epoch of 0 iterations (and no NaN loss) was logged
    assert ckpt.load_checkpoint(ws.run_dir("3d_fullres", 0) / CHECKPOINT_FINAL)["meta"][
        "finished"]
