"""Multi-process data-parallel training (``torchrun``): process group, reductions, DDP.

``python -m torch.distributed.run --nproc_per_node N -m NNSegLib train ...`` starts N
processes; torchrun tells each its ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (torch's own
launch protocol; NNSeg itself reads no configuration from the environment). Each rank draws
its own share of every batch, gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`, metrics are averaged with
:func:`all_reduce_mean`, and only rank 0 writes files and reports progress. Backend: NCCL
on CUDA, gloo otherwise. Without torchrun everything here is a cheap no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torch.distributed.run`` with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group when launched by torchrun; return the context and device.

    On CUDA each rank uses ``cuda:LOCAL_RANK``.
    """
    import torch.distributed as dist

    if not launched_by_torchrun():
        return DistContext(), device
    ctx = DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                      int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx, device


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op when not distributed)."""
    import torch.distributed as dist

    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(batch_size: int, ctx: DistContext) -> int:
    """This rank's share of the global batch (at least 1; earlier ranks take the remainder)."""
    base, extra = divmod(batch_size, ctx.world_size)
    return max(1, base + (1 if ctx.rank < extra else 0))


def all_reduce_mean(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Mean of each value over ranks (identity when not distributed)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return (t / ctx.world_size).tolist()


def all_reduce_sum(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Sum of each value over ranks (identity when not distributed)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True when ``flag`` is true on any rank (so all ranks stop at the same iteration)."""
    if not ctx.enabled:
        return bool(flag)
    return all_reduce_sum([1.0 if flag else 0.0], ctx)[0] > 0


def gather_floats(value: float, ctx: DistContext) -> list[float]:
    """``value`` of every rank, in rank order."""
    if not ctx.enabled:
        return [float(value)]
    import torch.distributed as dist

    out = [torch.zeros(1, dtype=torch.float64) for _ in range(ctx.world_size)]
    dist.all_gather(out, torch.tensor([float(value)], dtype=torch.float64))
    return [float(t.item()) for t in out]


def parameter_checksum(module: torch.nn.Module) -> float:
    """A float64 fingerprint of all parameters (equal weights give equal checksums)."""
    total = torch.zeros((), dtype=torch.float64)
    for i, p in enumerate(module.parameters()):
        flat = p.detach().double().flatten().cpu()
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64) % 7 + i + 1
        total += (flat * weights).sum()
    return float(total)


def wrap(module: torch.nn.Module, ctx: DistContext, device: torch.device,
         find_unused: bool = False) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module``."""
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain network inside DDP and/or ``torch.compile`` wrappers."""
    while True:
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if inner is None:
            return module
        module = inner


__all__ = ["DistContext", "all_reduce_mean", "all_reduce_sum", "any_rank", "gather_floats",
           "init_distributed", "launched_by_torchrun", "local_batch_size", "parameter_checksum",
           "shutdown", "unwrap", "wrap"]
