"""``nnseg demo``: what can be checked without running the whole pipeline (the timed run is
in ``bench/RESULTS.md``, section "demo")."""

from __future__ import annotations

import pytest
from conftest import tiny_plans

from NNSegLib import cli, demo
from NNSegLib.planning.planner import plan_argv
from NNSegLib.planning.plans import apply_overrides
from NNSegLib.util.workspace import Workspace

pytestmark = pytest.mark.usefixtures("keep_signal_handlers")


def test_demo_refuses_a_budget_below_one_validation_interval(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", str(out), "--train-minutes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nnseg demo: error: --train-minutes 1: must be at least 3 minutes, one "
                   "validation interval (run config epoch_minutes=3; --set epoch_minutes=M "
                   "lowers it)"]
    assert not out.exists()   # nothing written


def test_demo_network_is_the_plans_at_a_share_of_its_width(tmp_path):
    ws = Workspace(tmp_path)
    plans = tiny_plans()
    plans.save(ws.plans)
    full = plans.configuration("3d_fullres").features_per_stage
    override = demo._narrower(tmp_path, "3d_fullres", 0.5)
    args = plan_argv("D", tmp_path, overrides=[override])
    assert args[args.index("--override") + 1] == override
    narrow = apply_overrides(plans, [override]).configuration("3d_fullres").features_per_stage
    assert list(narrow) == [max(1, round(f / 2)) for f in full] and len(narrow) == len(full)
