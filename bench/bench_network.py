"""Time one training step (forward + backward + Adam step) of the U-Net in several variants.

All variants run in the same process, interleaved round by round, on the same input; the
table shows the minimum over rounds (wall and process CPU time) and the ratio to the
nnU-Net-like reference (conv bias, contiguous memory, PyTorch instance norm, fp32), plus
the largest deviation of the eval-mode forward output from that reference (same weights).

Measured on the shared 2-core Sapphire Rapids VM (AVX512 + AMX-BF16) under a load of 5-9
from other jobs (wall times unreliable; ``cpu s`` with one thread is the steadiest figure):

==============================  ======================  ====================================
variant                         1 thread, batch 1:      2 threads, batch 9 (nnU-Net v2's
                                cpu s (speed-up)        Hippocampus plan): cpu s / wall s
==============================  ======================  ====================================
plain (nnU-Net-like)            1.87-2.06 (1.00)        24.6 / 37.1
default (no bias, group norm)   1.88 (1.06)             22.2 / 31.7 (1.10 / 1.17)
torch.compile of default        1.82 (1.08), 289 s compile  -
channels-last fp32              2.06-2.16 (0.95)        -
fused norm fp32                 2.18 (0.91)             -
bf16 autocast, default          0.78-0.99 (2.1-2.4)     16.2 / 16.8 (1.51 / 2.20)
bf16 autocast, channels-last    0.64-0.91 (2.1-3.2)     19.2 / 28.2
==============================  ======================  ====================================

fp32 convolutions already run close to the CPU's peak in oneDNN, so fp32 variants only
differ in the ~15 % spent outside them; bf16 (AMX) is the large lever. Logit deviation from
the reference: ~1e-5 for every fp32 variant, ~0.1 for bf16.

The table above predates the channels-last default. On 2026-11-28 (same VM, quiet, batch 7)
channels-last was faster once the instance-norm backward no longer used PyTorch's
channels-last group-norm kernel (``norm_impl="gemm"``, now ``auto`` on channels-last): see
``bench/RESULTS.md``, "Where a training step's time goes", and ``profile_train_step.py``.

Examples::

    .venv/bin/python bench/bench_network.py --preset hippocampus --batch 2 --rounds 3
    .venv/bin/python bench/bench_network.py --variants plain,default,bf16 --compile
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_profiles  # noqa: E402

from NNSegLib.network.network import (  # noqa: E402
    NNUNET_LIKE,
    NetworkOptions,
    autocast_context,
    build_network,
    count_parameters,
    prepare_network,
)
from NNSegLib.planning.plans import ConfigurationPlan  # noqa: E402
from NNSegLib.util.device import configure_threads, pick_device  # noqa: E402


def _plan(name: str, patch, batch, strides, kernels, feats) -> ConfigurationPlan:
    return ConfigurationPlan(
        name=name,
        spatial_dims=len(patch),
        data_identifier=name,
        spacing=(1.0, 1.0, 1.0),
        median_shape=tuple(patch) if len(patch) == 3 else (1, *patch),
        patch_size=tuple(patch),
        batch_size=batch,
        strides=tuple(map(tuple, strides)),
        kernel_sizes=tuple(map(tuple, kernels)),
        features_per_stage=tuple(feats),
    )


PRESETS: dict[str, ConfigurationPlan] = {
    # nnU-Net v2's 3d_fullres plan for MSD Hippocampus (Dataset004).
    "hippocampus": _plan(
        "hippocampus",
        (40, 56, 40),
        9,
        [(1, 1, 1)] + [(2, 2, 2)] * 3,
        [(3, 3, 3)] * 4,
        (32, 64, 128, 256),
    ),
    # The toy MR set of NNUNET_BASELINE.md (anisotropic, 5 stages up to 320).
    "toy": _plan(
        "toy",
        (48, 80, 64),
        2,
        [(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)],
        [(1, 3, 3)] + [(3, 3, 3)] * 4,
        (32, 64, 128, 256, 320),
    ),
    "2d": _plan("2d", (56, 40), 42, [(1, 1)] + [(2, 2)] * 3, [(3, 3)] * 4, (32, 64, 128, 256)),
}

# name -> (network options, precision)
_CF = NetworkOptions(memory_format="contiguous")
VARIANTS: dict[str, tuple[NetworkOptions, str]] = {
    "plain": (NNUNET_LIKE, "fp32"),
    "nobias": (_CF, "fp32"),
    "cl_bias": (dataclasses.replace(NNUNET_LIKE, memory_format="channels_last"), "fp32"),
    "cl": (NetworkOptions(memory_format="channels_last"), "fp32"),
    "fused": (dataclasses.replace(_CF, norm_impl="fused"), "fp32"),
    "cl_fused": (NetworkOptions(memory_format="channels_last", norm_impl="fused"), "fp32"),
    "group": (dataclasses.replace(_CF, norm_impl="group"), "fp32"),
    "cl_group": (NetworkOptions(memory_format="channels_last", norm_impl="group"), "fp32"),
    "bf16": (_CF, "bf16"),
    "bf16_group": (dataclasses.replace(_CF, norm_impl="group"), "bf16"),
    "bf16_cl": (NetworkOptions(memory_format="channels_last"), "bf16"),
    "bf16_cl_group": (NetworkOptions(memory_format="channels_last", norm_impl="group"), "bf16"),
    "bf16_cl_fused": (NetworkOptions(memory_format="channels_last", norm_impl="fused"), "bf16"),
    "default": (NetworkOptions(), "fp32"),
    "bf16_default": (NetworkOptions(), "bf16"),
    "compiled": (NetworkOptions(compile=True), "fp32"),
}


def make_step(
    config: ConfigurationPlan,
    options: NetworkOptions,
    precision: str,
    x: torch.Tensor,
    num_classes: int,
    device: torch.device,
    reference: torch.nn.Module | None,
) -> tuple[Callable[[], None], float, torch.nn.Module]:
    """A closure doing one training step, its output deviation from ``reference``, the net."""
    torch.manual_seed(0)
    net = build_network(config, x.shape[1], num_classes, True, options)
    if reference is not None:  # same weights (conv biases only exist in the reference)
        ref_state = reference.state_dict()
        net.load_state_dict({k: ref_state[k] for k in net.state_dict()})
    model = prepare_network(net, device)
    deviation = 0.0
    if reference is not None:
        net.eval()
        reference.eval()
        with torch.no_grad():
            expected = reference(x)
            with autocast_context(device, precision):
                deviation = float((model(x).float() - expected).abs().max())
        net.train()
        reference.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    target = torch.randint(0, num_classes, (x.shape[0], *x.shape[2:]), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, precision):
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out[0].float(), target)
            for o in out[1:]:
                loss = loss + o.float().square().mean()
        loss.backward()
        opt.step()

    return step, deviation, net


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="hippocampus", choices=sorted(PRESETS))
    p.add_argument("--batch", type=int, default=None, help="override the preset batch size")
    p.add_argument("--patch", type=int, nargs="+", default=None, help="override the patch")
    p.add_argument("--variants", default="plain,nobias,cl,group,fused,bf16,bf16_group")
    p.add_argument("--compile", action="store_true", help="also time the compiled variant")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--classes", type=int, default=3)
    args = cpu_profiles.parse_args(p, argv)

    threads = configure_threads(args.threads or None)
    device = pick_device(args.device)
    config = PRESETS[args.preset]
    if args.batch:
        config = dataclasses.replace(config, batch_size=args.batch)
    if args.patch:
        config = dataclasses.replace(config, patch_size=tuple(args.patch))
    names = [v for v in args.variants.split(",") if v]
    if args.compile and "compiled" not in names:
        names.append("compiled")
    if "plain" not in names:
        names.insert(0, "plain")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((config.batch_size, 1, *config.patch_size), generator=gen).to(device)
    print(
        f"preset {args.preset}: patch {config.patch_size} batch {config.batch_size} "
        f"features {config.features_per_stage} device {device} threads {threads}"
    )

    torch.manual_seed(0)
    reference = prepare_network(build_network(config, 1, args.classes, True, NNUNET_LIKE), device)
    with torch.no_grad():  # non-trivial biases and norm affines, so dropping biases is tested
        for param in reference.parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn(param.shape, generator=gen).to(device))
    steps, deviations, setup = {}, {}, {}
    for name in names:
        t0 = time.perf_counter()
        options, precision = VARIANTS[name]
        steps[name], deviations[name], net = make_step(
            config,
            options,
            precision,
            x,
            args.classes,
            device,
            None if name == "plain" else reference,
        )
        steps[name]()  # warm-up (and compilation)
        setup[name] = time.perf_counter() - t0
    print(
        f"parameters: {count_parameters(reference):,} (reference), "
        f"{count_parameters(net):,} (last variant)"
    )
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            t, c = time.perf_counter(), time.process_time()
            steps[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    base = min(wall["plain"])
    print(f"{'variant':<12}{'wall s':>9}{'cpu s':>9}{'speed-up':>10}{'max |Δ|':>11}{'setup s':>9}")
    for name in names:
        w = min(wall[name])
        print(
            f"{name:<12}{w:9.3f}{min(cpu[name]):9.3f}{base / w:10.2f}"
            f"{deviations[name]:11.2e}{setup[name]:9.1f}"
        )


if __name__ == "__main__":
    main()
