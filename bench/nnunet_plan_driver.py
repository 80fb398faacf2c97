"""Runs INSIDE nnU-Net's venv (bench/setup_nnunet.sh); called by make_planning_references.py.

    <nnunet-venv>/bin/python bench/nnunet_plan_driver.py JOB.json OUT.json

JOB.json: ``{"plans": [{"dataset": "Dataset901_X", "gpu_gb": 8, "plans_name": "..."}],
"topology": [{"spacing": [...], "patch": [...], "min_feature_map": 4, "max_numpool": N}]}``.
nnUNet_raw / nnUNet_preprocessed (set by the caller) hold each dataset's ``dataset.json``
and ``dataset_fingerprint.json``; no image is read. nnU-Net's default ``ExperimentPlanner``
plans each dataset as it is; ``get_pool_and_conv_props`` answers each topology query.
OUT.json gets the plans nnU-Net wrote and the topology answers, plus nnU-Net's version.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version


def _plain(obj):
    """numpy scalars/arrays and tuples → JSON types."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    return obj


def main(job_path: str, out_path: str) -> None:
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
        ExperimentPlanner,
    )
    from nnunetv2.experiment_planning.experiment_planners.network_topology import (
        get_pool_and_conv_props,
    )

    with open(job_path) as f:
        job = json.load(f)
    plans = []
    for item in job["plans"]:
        planner = ExperimentPlanner(item["dataset"], gpu_memory_target_in_gb=item["gpu_gb"],
                                    plans_name=item["plans_name"])
        plans.append({"dataset": item["dataset"], "gpu_gb": item["gpu_gb"],
                      "plans": _plain(planner.plan_experiment())})
        print(f"[nnunet] planned {item['dataset']} at {item['gpu_gb']} GB", flush=True)
    topology = []
    for q in job["topology"]:
        pools, strides, kernels, patch, divisor = get_pool_and_conv_props(
            q["spacing"], q["patch"], q["min_feature_map"], q["max_numpool"])
        topology.append({**q, "num_pool_per_axis": _plain(pools), "strides": _plain(strides),
                         "kernel_sizes": _plain(kernels), "patch_size": _plain(patch),
                         "divisor": _plain(divisor)})
    with open(out_path, "w") as f:
        json.dump({"nnunetv2_version": version("nnunetv2"), "plans": plans,
                   "topology": topology}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
