#!/usr/bin/env python3
"""Where a training step's time goes: real `nnseg train` steps under torch.profiler.

Runs ``train_fold`` on a preprocessed work folder (default: the benchmark's work folder
matched to nnU-Net's plan, patch 40×56×40, batch 7) for ``--warmup + --steps`` iterations per
precision, and profiles the last ``--steps`` of them. Each profiled step is split into its
phases (augmentation incl. the large sampled input patch, forward, loss, backward, gradient
clipping + optimizer), timed by wall clock; inside forward + backward the profiler's
self time is grouped into kinds of work (convolutions per layer shape and direction,
instance norm, activation, concatenation, layout copies, elementwise, …). Convolutions get
their FLOPs from the recorded shapes, so each layer shows its GFLOP/s and the fraction of
the GEMM peak (2048² matmul) measured in the same process; the conv3d forward speed of the
dominant layer alone (32→32 channels, 3³, the plan's patch and batch, contiguous and
channels-last) is measured too. Batch sampling runs in the loader thread(s), timed there.

Writes ``bench/results/profile/profile-<date>.json`` and prints a summary; the hand-written
section of ``bench/RESULTS.md`` quotes it.

    .venv/bin/python bench/profile_train_step.py [--precisions fp32 bf16] [--steps 3]
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import cpu_profiles  # noqa: E402

DEFAULT_WORK = (Path.home() / ".cache/nnseg-bench/nnseg-matched/nnseg-9c4fbf0/"
                "Dataset004_Hippocampus")

# profiler op name (self time) -> kind of work
KINDS = {
    "aten::mkldnn_convolution": "conv forward",
    "aten::convolution_backward": "conv backward",
    "aten::native_group_norm": "instance norm forward",
    "aten::native_group_norm_backward": "instance norm backward",
    "aten::native_batch_norm": "instance norm forward",
    "aten::native_batch_norm_backward": "instance norm backward",
    "aten::leaky_relu": "activation forward",
    "aten::leaky_relu_": "activation forward",
    "aten::leaky_relu_backward": "activation backward",
    "aten::cat": "concatenation",
    "aten::copy_": "copies / layout",
    "aten::clone": "copies / layout",
    "aten::contiguous": "copies / layout",
    "aten::_to_copy": "copies / layout",
    "aten::to_dense": "copies / layout",
    "aten::to_mkldnn": "copies / layout",
}


def conv_layer(input_shape: list, weight_shape: list) -> str:
    """A readable layer key; a 2³ kernel is a transposed conv (the plans profiled here use
    3³ and 1³ kernels for convs, and kernel = stride = 2 for transposed convs)."""
    cin, spatial = input_shape[1], "x".join(map(str, input_shape[2:]))
    if weight_shape[2] == 2:
        return f"transp {cin}->{weight_shape[1]} @{spatial}"
    return f"conv{weight_shape[2]} {cin}->{weight_shape[0]} @{spatial}"


def conv_flops(input_shape: list, weight_shape: list, output_shape: list | None) -> float:
    """Forward FLOPs (2 per multiply-add) of one call; ``output_shape`` None = stride 1."""
    n, k = input_shape[0], weight_shape[2] * weight_shape[3] * weight_shape[4]
    if weight_shape[2] == 2:   # transposed, kernel = stride: every input voxel -> k outputs
        vox = input_shape[2] * input_shape[3] * input_shape[4]
        return 2.0 * n * weight_shape[0] * weight_shape[1] * k * vox
    out = output_shape or input_shape
    vox = out[2] * out[3] * out[4]
    return 2.0 * n * input_shape[1] * weight_shape[0] * k * vox


def peak_conv_gflops(batch: int, patch: tuple[int, ...], dtype: torch.dtype | None,
                     channels_last: bool, reps: int = 5) -> float:
    """conv3d forward 32→32, 3³, 'same' on (batch, 32, *patch): best GFLOP/s of ``reps``."""
    conv = torch.nn.Conv3d(32, 32, 3, padding=1, bias=False)
    x = torch.randn(batch, 32, *patch)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    flops = 2.0 * batch * 32 * 32 * 27 * x[0, 0].numel()
    best = float("inf")
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32,
                                         enabled=dtype is not None):
        for _ in range(reps):
            t = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def peak_gemm_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def make_work(source: Path) -> Path:
    """A scratch work folder sharing ``source``'s plan and preprocessed data (symlinks)."""
    work = Path(tempfile.mkdtemp(prefix="nnseg-profile-"))
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", "splits_final.json",
                 "preprocessed"):
        if (source / name).exists():
            (work / name).symlink_to(source / name)
    return work


class StepProfiler:
    """Replaces ``Trainer._train_step``: the same work, phase by phase, profiled."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.count = 0
        self.phases: list[dict[str, float]] = []
        self.cpu: list[float] = []
        self.events: list[Any] = []
        self.sample_seconds: list[float] = []
        self.page_faults: list[int] = []

    def install(self, trainer_cls: Any) -> None:
        from NNSegLib.training.batches import Batches

        profiler = self
        load_batch, train_step = Batches.load, trainer_cls._train_step

        def timed_load(batches: Any, *args: Any) -> Any:
            t = time.thread_time()
            out = load_batch(batches, *args)
            profiler.sample_seconds.append(time.thread_time() - t)
            return out

        def step(trainer: Any, images: torch.Tensor, seg: torch.Tensor) -> float:
            profiler.count += 1
            if profiler.count <= profiler.warmup:
                return train_step(trainer, images, seg)   # the trainer's own step
            return profiler.profiled_step(trainer, images, seg)

        trainer_cls._train_step = step
        Batches.load = timed_load  # type: ignore[method-assign]

    def profiled_step(self, trainer: Any, images: torch.Tensor, seg: torch.Tensor) -> float:
        from torch.profiler import ProfilerActivity, profile

        amp = trainer.amp
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        c0, t = time.process_time(), [time.perf_counter()]
        images, seg = trainer.batches.augmented(*trainer.batches.to_device(images, seg),
                                                trainer.state.step)
        t.append(time.perf_counter())
        trainer.optimizer.zero_grad(set_to_none=True)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            with torch.autocast(trainer.device.type, dtype=amp or torch.float32,
                                enabled=amp is not None):
                outputs = trainer.model(images)
                t.append(time.perf_counter())
                loss = trainer.loss_fn(list(outputs), seg)
                t.append(time.perf_counter())
            loss.backward()
            t.append(time.perf_counter())
        if trainer.rc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), trainer.rc.grad_clip)
        trainer.optimizer.step()
        t.append(time.perf_counter())
        self.cpu.append(time.process_time() - c0)
        self.page_faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        names = ["augment", "forward", "loss", "backward", "clip + optimizer"]
        self.phases.append({n: b - a for n, a, b in zip(names, t, t[1:])})
        self.events.append(prof.events())
        return float(loss.detach())


def conv_layer_rows(conv_events: list[tuple], out_shape: dict[str, list], steps: int,
                    gemm_peak: float) -> tuple[list[dict[str, Any]], float]:
    """The conv events (kind, input shapes, self seconds per step, FLOPs counted) summed per
    layer: one row each, slowest first (seconds, GFLOP, GFLOP/s, share of the GEMM peak per
    direction), and the FLOPs of all of them per step."""
    layers: dict[str, dict[str, float]] = collections.defaultdict(
        lambda: {"calls": 0, "forward_s": 0.0, "backward_s": 0.0, "forward_flops": 0.0,
                 "backward_flops": 0.0})
    for kind, shapes, self_s, counted in conv_events:
        if kind == "conv backward":
            shapes = shapes[1:]
        if len(shapes) < 2 or len(shapes[0]) != 5 or len(shapes[1]) != 5:
            continue
        key = conv_layer(shapes[0], shapes[1])
        flops = conv_flops(shapes[0], shapes[1], out_shape.get(key)) if counted else 0.0
        row = layers[key]
        if kind == "conv backward":
            first = shapes[0][1] <= 2 and not key.startswith("transp")   # input needs no grad
            row["backward_s"] += self_s
            row["backward_flops"] += flops * (1 if first else 2) / steps
        else:
            row["forward_s"] += self_s
            row["forward_flops"] += flops / steps
            row["calls"] += counted / steps
    conv_rows, total_flops = [], 0.0
    for key, v in sorted(layers.items(), key=lambda kv: -(kv[1]["forward_s"]
                                                          + kv[1]["backward_s"])):
        f, b, fwd, bwd = v["forward_flops"], v["backward_flops"], v["forward_s"], v["backward_s"]
        total_flops += f + b
        conv_rows.append({
            "layer": key, "calls_per_step": round(v["calls"], 2),
            "forward_s": round(fwd, 4), "backward_s": round(bwd, 4),
            "forward_gflop": round(f / 1e9, 2), "backward_gflop": round(b / 1e9, 2),
            "forward_gflop_per_s": round(f / fwd / 1e9, 1) if fwd else None,
            "backward_gflop_per_s": round(b / bwd / 1e9, 1) if bwd else None,
            "forward_fraction_of_gemm_peak": round(f / fwd / 1e9 / gemm_peak, 3) if fwd else None,
            "backward_fraction_of_gemm_peak": (round(b / bwd / 1e9 / gemm_peak, 3)
                                               if bwd else None),
        })
    return conv_rows, total_flops


def summarise(sp: StepProfiler, peak: float, gemm_peak: float) -> dict[str, Any]:
    steps = len(sp.phases)
    phases = {k: sum(p[k] for p in sp.phases) / steps for k in sp.phases[0]}
    wall = sum(phases.values())
    kinds: dict[str, float] = collections.Counter()
    copies: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    out_shape: dict[str, list] = {}
    conv_events = []
    for events in sp.events:
        for e in events:
            self_s = e.self_cpu_time_total / 1e6 / steps
            if self_s <= 0:
                continue
            name = e.name
            kind = KINDS.get(name)
            if kind is None and "conv" in name:
                kind = "conv backward" if "backward" in name else "conv forward"
            if kind is None:
                kind = ("elementwise / reductions (loss, norm helpers, …)" if name.startswith(
                    "aten::") else "autograd / python overhead")
            kinds[kind] += self_s
            shapes = [list(x) for x in (e.input_shapes or [])]
            if kind == "copies / layout":
                c = copies[f"{name} {shapes[:2]}"]
                c[0] += self_s
                c[1] += 1 / steps
            if kind in ("conv forward", "conv backward"):
                # every conv's self time counts; its FLOPs once, from the one event per call
                # (aten::conv3d -> convolution -> _convolution -> the kernel's op)
                counted = name in ("aten::_convolution", "aten::convolution_backward")
                conv_events.append((kind, shapes, self_s, counted))
                if kind == "conv backward" and len(shapes) > 2 and len(shapes[2]) == 5:
                    # inputs: grad_output, input, weight, …: the output shape is known here
                    out_shape[conv_layer(shapes[1], shapes[2])] = shapes[0]
    conv_rows, total_flops = conv_layer_rows(conv_events, out_shape, steps, gemm_peak)
    conv_s = kinds.get("conv forward", 0) + kinds.get("conv backward", 0)
    return {
        "steps": steps,
        "step_wall_s": round(wall, 3),
        "step_cpu_s": round(sum(sp.cpu) / steps, 3),
        "threads_busy": round(sum(sp.cpu) / steps / wall, 2),
        "page_faults_per_step": round(sum(sp.page_faults) / steps),
        "phases_s": {k: round(v, 4) for k, v in phases.items()},
        "phases_share": {k: round(v / wall, 3) for k, v in phases.items()},
        "kinds_self_s": {k: round(v, 4) for k, v in kinds.most_common()},
        "kinds_share_of_step": {k: round(v / wall, 3) for k, v in kinds.most_common()},
        "top_copies": [{"op": k, "self_s": round(v[0], 4), "calls_per_step": round(v[1], 1)}
                       for k, v in sorted(copies.items(), key=lambda kv: -kv[1][0])[:12]],
        "conv_layers": conv_rows,
        "conv_gflop_per_step": round(total_flops / 1e9, 1),
        "conv_gflop_per_s": round(total_flops / conv_s / 1e9, 1) if conv_s else None,
        "conv_fraction_of_gemm_peak": (round(total_flops / conv_s / 1e9 / gemm_peak, 3)
                                       if conv_s else None),
        "conv_fraction_of_conv3d_peak": (round(total_flops / conv_s / 1e9 / peak, 3)
                                         if conv_s else None),
        "step_gflop_per_s": round(total_flops / wall / 1e9, 1),
        "step_fraction_of_gemm_peak": round(total_flops / wall / 1e9 / gemm_peak, 3),
        "step_fraction_of_conv3d_peak": round(total_flops / wall / 1e9 / peak, 3),
        "batch_sampling_thread_s": (round(sum(sp.sample_seconds[-steps:]) / steps, 3)
                                    if sp.sample_seconds else None),
    }


def profile_precision(work_source: Path, precision: str, warmup: int, steps: int,
                      extra: dict[str, Any], gemm_peak: float) -> dict[str, Any]:
    from NNSegLib.training import trainer as trainer_module
    from NNSegLib.training.train import train_fold
    from NNSegLib.util.progress import Progress

    work = make_work(work_source)
    sp = StepProfiler(warmup)
    saved = trainer_module.Trainer._train_step, trainer_module.Trainer._load_batch
    sp.install(trainer_module.Trainer)
    try:
        overrides = {"amp": "off" if precision == "fp32" else precision, "max_epochs": 1,
                     "iterations_per_epoch": warmup + steps, "val_iterations": 0,
                     "final_validation": False, "device": "cpu", **extra}
        train_fold(None, work, "3d_fullres", 0, mode="fresh", overrides=overrides,
                   progress=Progress())
    finally:
        trainer_module.Trainer._train_step, trainer_module.Trainer._load_batch = saved
        shutil.rmtree(work, ignore_errors=True)
    plans = json.loads((work_source / "plans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    patch, batch = tuple(cfg["patch_size"]), int(cfg["batch_size"])
    dtype = torch.bfloat16 if precision == "bf16" else None
    peaks = {layout: peak_conv_gflops(batch, patch, dtype, layout == "channels_last")
             for layout in ("contiguous", "channels_last")}
    out = summarise(sp, max(peaks.values()), gemm_peak)
    out.update({"precision": precision, "patch": patch, "batch": batch,
                "conv3d_32to32_forward_gflop_per_s": {k: round(v, 1) for k, v in peaks.items()},
                "gemm_peak_gflop_per_s": round(gemm_peak, 1), "overrides": extra})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help="preprocessed NNSeg work folder (plans.json, preprocessed/)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                    choices=["fp32", "bf16"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="RunConfig overrides (JSON values), e.g. channels_last='\"on\"'")
    ap.add_argument("--host-memory", choices=["reuse", "system"], default="reuse",
                    help="'system': leave glibc's defaults (unmap freed large blocks), the "
                         "behaviour before NNSeg reused freed host memory; one setting per "
                         "process, since it cannot be undone")
    ap.add_argument("--out", type=Path, default=None)
    args = cpu_profiles.parse_args(ap, argv)
    from NNSegLib.util.device import configure_threads

    configure_threads(0)
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    extra.setdefault("host_memory", args.host_memory)
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith(
            "model name")), platform.processor())
    result: dict[str, Any] = {
        "benchmark": "profile_train_step",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
        "gemm_peak_gflop_per_s": {"fp32": round(peak_gemm_gflops(torch.float32), 1),
                                  "bf16": round(peak_gemm_gflops(torch.bfloat16), 1)},
        "work": str(args.work), "host_memory": args.host_memory, "runs": [],
    }
    from benchlib.versions import repo_code_version

    result["nnseg_code"] = repo_code_version()
    for precision in args.precisions:
        run = profile_precision(args.work, precision, args.warmup, args.steps, extra,
                                result["gemm_peak_gflop_per_s"][precision])
        result["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "conv_layers"}, indent=1))
        for row in run["conv_layers"]:
            print("  ", row)
    result["load_average_end"] = os.getloadavg()
    out = args.out or (REPO / "bench/results/profile"
                       / f"profile-{_dt.datetime.now():%Y%m%d-%H%M%S}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
