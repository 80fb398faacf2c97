"""Planning for the device that will train: a CPU with a time budget (issue 25).

The plan's batch fills an 8 GB GPU (or the memory budget given). On a CPU, a budget of
minutes buys a few hundred steps of that batch (Hippocampus on two AVX2 cores: about 4 s per
step of 7-9 patches, so some 340 steps in 25 minutes); there, steps are scarcer than memory.
A new time-budgeted 3D run on a CPU therefore takes nnU-Net's smallest batch, 2, and makes
about 3-4x as many steps from the same minutes (``nnseg train`` applies it and says so;
``--batch-size`` chooses another). 2D batches are cheap per sample and stay as planned; so do
GPU runs. ``nnseg plan``'s table states the rule under the configurations it would change.
"""

from __future__ import annotations

#: The batch of a 3D run on a CPU with a time budget: nnU-Net's floor.
CPU_BUDGET_BATCH = 2


def cpu_budget_batch(plan_batch: int, spatial_dims: int, device_type: str) -> int | None:
    """The batch a new time-budgeted run uses instead of the plan's ``plan_batch``, or
    ``None`` (keep the plan's)."""
    if device_type != "cpu" or spatial_dims != 3 or plan_batch <= CPU_BUDGET_BATCH:
        return None
    return CPU_BUDGET_BATCH


def budget_note(configurations: dict) -> str | None:
    """The plan table's line on the rule (``None`` when no configuration is changed by it);
    ``configurations``: name → plan with ``batch_size`` and ``spatial_dims``."""
    changed = [name for name, c in configurations.items()
               if cpu_budget_batch(c.batch_size, c.spatial_dims, "cpu") is not None]
    if not changed:
        return None
    return (f"on a CPU with --time-budget: {', '.join(changed)} train batch "
            f"{CPU_BUDGET_BATCH} (more steps in the minutes given; --batch-size chooses)")


__all__ = ["CPU_BUDGET_BATCH", "budget_note", "cpu_budget_batch"]
