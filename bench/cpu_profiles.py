"""Named CPU profiles: run a benchmark as on another class of CPU (``--cpu-profile NAME``).

A profile holds the benchmark process and every process it starts (both tools: they inherit
the CPU affinity and the environment) to a number of threads and to an instruction set:

``clinician`` (issue 25): the workstation or laptop a clinician labels on, 2 cores with AVX2
and no AVX-512 or bf16. ``ONEDNN_MAX_CPU_ISA=AVX2`` holds oneDNN (the convolutions) to AVX2,
``ATEN_CPU_CAPABILITY=avx2`` ATen's vectorised kernels, ``MKL_ENABLE_INSTRUCTIONS=AVX2`` MKL.
NNSeg's ``auto`` precision is then fp32 (:func:`NNSegLib.util.precision.cpu_kernel_limit`).
On a 2-core AVX-512-bf16 EPYC this profile trains Hippocampus at about 4.1 s per iteration in
fp32, against 6.0 s on a real AVX2 EPYC: the profile's times are lower bounds of what an AVX2
machine takes.

Threads: the process is pinned to the first ``threads`` CPUs it may use (so NNSeg's default
``--num-threads 0`` means ``threads``), ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are set, and
``NNSEG_BENCH_THREADS`` makes the benchmark's nnU-Net trainer (``bench/nnunet_trainer``) set
torch's threads after ``nnUNetv2_train`` has set them to the machine's CPU count.
``nnUNetv2_predict`` still asks for the CPU count (it only runs in ``bench_predict.py``); on a
machine with more CPUs than ``threads`` its threads then share the pinned CPUs.

The limits are read when torch starts, so :func:`apply` re-executes a script that has already
imported torch (``bench_network.py``, ``profile_train_step.py`` run the network in-process).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

#: Marks a process (and its children) as running under a profile.
MARKER = "NNSEG_BENCH_CPU_PROFILE"


@dataclass(frozen=True)
class CpuProfile:
    """Threads and instruction-set limits of one named profile."""

    name: str
    threads: int
    env: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def environment(self) -> dict[str, str]:
        """Every variable the profile sets (the instruction-set limits and thread counts)."""
        n = str(self.threads)
        return {**self.env, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
                "NNSEG_BENCH_THREADS": n, MARKER: self.name}


PROFILES: dict[str, CpuProfile] = {
    "clinician": CpuProfile(
        "clinician", 2,
        {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
         "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        "a clinician's CPU: 2 cores, AVX2 (no AVX-512, no bf16), fp32"),
}


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--cpu-profile NAME`` (default: the machine as it is)."""
    parser.add_argument(
        "--cpu-profile", choices=sorted(PROFILES), default=None,
        help="run both tools as on another CPU: "
             + "; ".join(f"{p.name} = {p.text} ({p.threads} threads, "
                         + " ".join(f"{k}={v}" for k, v in p.env.items()) + ")"
                         for p in PROFILES.values()))


def apply(name: str | None) -> CpuProfile | None:
    """Put this process (and so every process it starts) under profile ``name``.

    Pins the process to the first ``threads`` CPUs it may use and sets the profile's
    variables. Re-executes the script when torch is already imported and the variables were
    not set yet (torch reads them when it starts). ``None``: nothing changes.
    """
    if name is None:
        return None
    profile = PROFILES[name]
    wanted = profile.environment()
    if "torch" in sys.modules and any(os.environ.get(k) != v for k, v in wanted.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})
    os.environ.update(wanted)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:profile.threads])
    return profile


def active() -> dict | None:
    """The profile this process runs under (for a result's machine record), or ``None``."""
    name = os.environ.get(MARKER)
    if not name or name not in PROFILES:
        return None
    profile = PROFILES[name]
    return {"name": name, "threads": profile.threads, "text": profile.text,
            "environment": {k: os.environ.get(k) for k in profile.environment()}}


def describe(info: dict) -> str:
    """A ``RESULTS.md`` line for ``machine_info()["cpu_profile"]`` (empty without one)."""
    profile = info.get("cpu_profile")
    if not profile:
        return ""
    limits = " ".join(f"{k}={v}" for k, v in PROFILES[profile["name"]].env.items())
    return (f"- CPU profile `{profile['name']}`: {profile['text']} — {profile['threads']} "
            f"threads (pinned CPUs), {limits}\n")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None
               ) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``--cpu-profile`` added and applied (:func:`apply`)."""
    add_argument(parser)
    args = parser.parse_args(argv)
    apply(args.cpu_profile)
    return args
