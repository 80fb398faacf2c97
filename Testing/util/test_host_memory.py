"""reuse_freed_memory: a freed large block is reused instead of being faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from NNSegLib.util import host_memory

# A training step in miniature: several large tensors (above glibc's largest mmap threshold,
# like the full-resolution activations of a training batch) made, used and freed, eight
# times. Prints the page faults and the peak resident memory (MB) of each round, then the
# resident memory before and after release_freed_memory.
_PROBE = textwrap.dedent("""
    import json, resource, sys
    import torch
    from NNSegLib.util.host_memory import release_freed_memory, reuse_freed_memory
    applied = reuse_freed_memory() if sys.argv[1] == "reuse" else False
    n = 12 * 2 ** 20
    rounds = []
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ts = [torch.ones(n), torch.ones(2 * n), torch.ones(n)]
        ts.append(ts[0] + ts[2])
        total = float(ts[3].sum())
        del ts
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rounds.append([usage.ru_minflt - before, usage.ru_maxrss // 1024, total])
    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 2 ** 20
    held = resident_mb()
    released = release_freed_memory()
    print(json.dumps({"applied": applied, "rounds": rounds, "held_mb": held,
                      "released": released, "after_release_mb": resident_mb()}))
""")


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    """The probe run once with glibc's defaults and once with the reuse (shared by tests)."""
    return {mode: _probe(mode) for mode in ("default", "reuse")}


needs_glibc = pytest.mark.skipif(host_memory._glibc() is None, reason="needs glibc (Linux)")


@needs_glibc
def test_later_steps_reuse_the_freed_pages_without_growing(probes) -> None:
    pages = 5 * 12 * 2 ** 20 * 4 // 4096  # the tensors of one round (5n floats), in pages
    default, reused = probes["default"], probes["reuse"]
    assert default["applied"] is False and reused["applied"] is True
    assert all(r[2] == 2 * 12 * 2 ** 20 for r in default["rounds"] + reused["rounds"])
    # By default glibc unmaps every freed block, so each round faults its tensors in again.
    assert all(r[0] > pages // 2 for r in default["rounds"])
    # With the setting, rounds 3-8 reuse the freed pages: by default they fault in six
    # rounds' worth. glibc still extends the heap now and then (a freed block can be a few
    # bytes short of an aligned request), so single rounds are not all fault-free: 16
    # probes here faulted 0.2-0.8 rounds' worth in all six rounds together.
    assert sum(r[0] for r in reused["rounds"][2:]) < 2 * pages
    # The process grows by less than three rounds' tensors over eight rounds (16 probes:
    # 96-384 MB), not by one round per round.
    round_mb = pages * 4096 // 2 ** 20
    assert reused["rounds"][-1][1] - reused["rounds"][0][1] < 3 * round_mb


@needs_glibc
def test_release_hands_the_held_pages_back(probes) -> None:
    round_mb = 5 * 12 * 4  # the tensors of one round
    default, reused = probes["default"], probes["reuse"]
    assert default["released"] is False  # reuse not in effect: nothing to do
    assert reused["released"] is True
    # The freed tensors stay resident until released, then go back to the system.
    assert reused["held_mb"] - reused["after_release_mb"] > round_mb // 2
    assert reused["after_release_mb"] < default["held_mb"] + round_mb // 4


def test_is_a_no_op_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_memory, "_applied", False)
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    assert host_memory.reuse_freed_memory() is False


@pytest.mark.parametrize("setting, device, expected", [
    ("reuse", "cpu", 1), ("system", "cpu", 0), ("reuse", "cuda", 0), ("reuse", "mps", 0)])
def test_apply_setting_reuses_only_for_cpu_work(monkeypatch, setting, device, expected):
    calls = []
    monkeypatch.setattr(host_memory, "reuse_freed_memory", lambda: calls.append(1) or True)
    assert host_memory.apply_setting(setting, device) is bool(expected)
    assert len(calls) == expected
