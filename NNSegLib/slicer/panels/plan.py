"""(2) Plan: fingerprint the exported dataset and plan each configuration for the device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from NNSegLib.planning.plans import Plans
from NNSegLib.slicer import devices
from NNSegLib.slicer.folders import work_arg
from NNSegLib.slicer.panels.common import (
    TRAINING,
    Rule,
    Shared,
    View,
    dataset_problem,
    folder_problem,
)
from NNSegLib.util.i18n import tr
from NNSegLib.util.workspace import Workspace

#: Widgets (``NNSeg.ui`` object names) a running plan locks.
LOCKS = {"plan": ["datasetFolderPathLineEdit", "workFolderPathLineEdit", "recipeComboBox",
                  "memoryBudgetSpinBox", "memoryBudgetAutoCheckBox", "configurationsLineEdit",
                  "exportDatasetButton"]}

#: Rows of :func:`plans_table`: title → ``ConfigurationPlan`` attribute.
PLAN_FIELDS = (("spacing (mm)", "spacing"), ("median shape", "median_shape"),
               ("patch size", "patch_size"), ("batch size", "batch_size"),
               ("stages", "num_stages"), ("features", "features_per_stage"),
               ("batch Dice", "batch_dice"), ("memory (GB)", "estimated_memory_gb"))


@dataclass
class PlanState:
    """What the Plan panel's rules look at (besides :class:`~.common.Shared`)."""

    memory_budget_auto: bool = True


def state(params: Any) -> PlanState:
    return PlanState(memory_budget_auto=bool(params.memoryBudgetAuto))


def rule_plan(shared: Shared) -> Rule:
    if "plan" in shared.running:
        return Rule(True, tr("Cancel planning."))
    if shared.running & (TRAINING | {"findbest"}):
        return Rule(False, tr("A training job uses this plan; wait for it or cancel it."))
    problem = dataset_problem(shared) or folder_problem(shared.work_folder, tr("work folder"))
    return Rule(problem is None, problem or "")


def view(s: PlanState, shared: Shared) -> View:
    """The Plan button's rule; the memory budget is typed only when not automatic."""
    return View(rules={"planButton": rule_plan(shared)},
                inputs={"memoryBudgetSpinBox": not s.memory_budget_auto})


def plan_commands(dataset: Path | str, work: Path | str | None = None, recipe: str = "paper",
                  memory_gb: float = 8.0, configurations: str = "") -> list[list[str]]:
    """Fingerprint, then plan with the panel's overrides."""
    from NNSegLib.planning.fingerprint import fingerprint_argv
    from NNSegLib.planning.planner import plan_argv

    w = work_arg(work)
    configs = configurations.replace(",", " ").split()
    return [fingerprint_argv(dataset, w),
            plan_argv(dataset, w, recipe, float(memory_gb), configurations=configs)]


def _plan_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (tuple, list)):
        return "×".join(_plan_value(x) for x in v)
    return str(v)


def plans_table(work: Path | str) -> tuple[list[str], list[list[str]]]:
    """The plan of a work folder as ``(header, rows)``: one column per configuration.

    Args:
        work: The work folder (its ``plans.json`` is read).

    Returns:
        ``header`` is ``["", <configuration names>]``; each row starts with its title
        (see :data:`PLAN_FIELDS`), floats with 3 significant digits, shapes as ``40×56×40``.
    """
    plans = Plans.load(Workspace(Path(work)).plans)
    names = list(plans.configurations)
    rows = [[title] + [_plan_value(getattr(plans.configurations[n], attr, "")) for n in names]
            for title, attr in PLAN_FIELDS]
    return ["", *names], rows


#: The memory budget *Auto* sets for the detected device.
memory_budget_gb = devices.memory_budget_gb

__all__ = ["LOCKS", "PLAN_FIELDS", "PlanState", "memory_budget_gb", "plan_commands", "plans_table",
           "rule_plan", "state", "view"]
