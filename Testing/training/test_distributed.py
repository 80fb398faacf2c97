from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from test_train import make_work

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.training.distributed import (
    DistContext,
    all_reduce_mean,
    any_rank,
    gather_floats,
    launched_by_torchrun,
    local_batch_size,
    parameter_checksum,
    unwrap,
)
from NNSegLib.util.model_folder import CHECKPOINT_FINAL


def test_single_process_helpers_are_identity():
    ctx = DistContext()
    assert not ctx.enabled and ctx.is_main and not launched_by_torchrun()
    assert all_reduce_mean([1, 2.5], ctx) == [1.0, 2.5]
    assert any_rank(True, ctx) and not any_rank(False, ctx)
    assert gather_floats(3.0, ctx) == [3.0]


def test_local_batch_size_splits_the_global_batch():
    assert [local_batch_size(5, DistContext(r, 2)) for r in (0, 1)] == [3, 2]
    assert [local_batch_size(2, DistContext(r, 2)) for r in (0, 1)] == [1, 1]
    assert local_batch_size(1, DistContext(1, 4)) == 1


def test_parameter_checksum_sees_any_change():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    assert parameter_checksum(a) == parameter_checksum(b)
    with torch.no_grad():
        b.weight[1, 2] += 1e-6
    assert parameter_checksum(a) != parameter_checksum(b)
    assert unwrap(torch.nn.parallel.DataParallel(a)) is a


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(tmp_path):
    ws, _ = make_work(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "NNSegLib", "train", str(tmp_path / "raw"),
           "3d_fullres", "0", "--work", str(ws.root), "--epochs", "2",
           "--iterations-per-epoch", "3", "--val-iterations", "1", "--device", "cpu",
           "--batch-size", "4", "--no-final-validation", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # never leave orphaned ranks behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    run_dir = ws.run_dir("3d_fullres", 0)
    summary = json.loads((run_dir / "training_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 2
    checksums = summary["rank_parameter_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    state = ckpt.load_checkpoint(run_dir / CHECKPOINT_FINAL)
    assert state["meta"]["epoch"] == 2 and "optimizer" in state
    assert not any(k.startswith("module.") for k in state["network"])
    from NNSegLib.network.network import build_network
    from NNSegLib.planning.plans import Plans
    from NNSegLib.training.distributed import parameter_checksum as checksum

    net = build_network(Plans.load(ws.plans).configuration("3d_fullres"), 1, 3)
    net.load_state_dict(state["network"])
    assert checksum(net) == pytest.approx(checksums[0], rel=1e-12)
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2  # only rank 0 wrote
