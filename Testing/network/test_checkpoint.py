from __future__ import annotations

import argparse
import random

import numpy as np
import pytest
import torch

from NNSegLib.network.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    make_meta,
    restore_rng_state,
    save_checkpoint,
)
from NNSegLib.util.errors import NNSegError


def test_round_trip_and_weights_only(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"network": net.state_dict(), "optimizer": opt.state_dict(),
             "meta": make_meta("3d_fullres", 0, 1, 2, epoch=4, patch_size=[8, 8, 8]),
             "rng": capture_rng_state(), "trainer": {"best": 0.5, "losses": [1.0, 0.9]}}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["meta"]["epoch"] == 4 and loaded["meta"]["fold"] == 0
    other = torch.nn.Linear(3, 2)
    other.load_state_dict(loaded["network"])
    x = torch.randn(4, 3)
    assert torch.equal(other(x), net(x))
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)


def test_rng_restore():
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_bad_files(tmp_path):
    with pytest.raises(NNSegError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NNSegError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(NNSegError, match="needs 'network'"):
        load_checkpoint(tmp_path / "other.pt")

    torch.save({"network": {}, "meta": argparse.Namespace(x=1)}, tmp_path / "evil.pt")
    with pytest.raises(NNSegError):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "x.pt", {"network": {}})
