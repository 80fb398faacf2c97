"""(1) Dataset: the training cases (volumes + segmentation) and the exported raw dataset.

The cases live in the parameter node as node references
(:mod:`NNSegLib.slicer.scene.case_list`); Export writes them as an nnU-Net raw dataset
(:mod:`NNSegLib.slicer.scene.dataset`) and runs the dataset check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from NNSegLib.slicer.panels.common import WORK_JOBS, Rule, Shared, View, folder_problem
from NNSegLib.slicer.scene import case_list
from NNSegLib.util.i18n import tr

if TYPE_CHECKING:
    from NNSegLib.slicer.scene.dataset import TrainingSet


@dataclass
class DatasetState:
    """What the Dataset panel's rules look at."""

    training_volume: Any = None
    training_segmentation: Any = None
    listed_segmentation_ids: Sequence[str] = ()
    complete_cases: int = 0
    incomplete_cases: int = 0
    case_channels: Sequence[int] = ()
    channel_names: Sequence[str] = ()
    scene_segmentations: int = 0


def channel_names(text: str) -> list[str]:
    """The channel names typed as ``"CT, PET"`` (``[]`` when none)."""
    return [c.strip() for c in str(text).split(",") if c.strip()]


def parse_channel_names(text: str) -> list[str]:
    """:func:`channel_names` for an export (``["image"]`` when none)."""
    return channel_names(text) or ["image"]


def state(scene: Any, params: Any) -> DatasetState:
    """The panel's state from the scene and the parameter node (its case list included)."""
    cases = case_list.list_cases(params.parameterNode)
    return DatasetState(
        training_volume=params.trainingVolume,
        training_segmentation=params.trainingSegmentation,
        listed_segmentation_ids=[c.segmentation.GetID() for c in cases
                                 if c.segmentation is not None],
        complete_cases=sum(c.complete for c in cases),
        incomplete_cases=sum(not c.complete for c in cases),
        case_channels=[len(c.volumes) for c in cases],
        channel_names=channel_names(params.channelNames),
        scene_segmentations=scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))


def rule_add_case(s: DatasetState) -> Rule:
    if s.training_volume is None or s.training_segmentation is None:
        return Rule(False, tr("Select a volume and its segmentation."))
    if s.training_segmentation.GetID() in set(s.listed_segmentation_ids):
        return Rule(False, tr("This segmentation is already in the list."))
    return Rule(True)


def rule_export(s: DatasetState, shared: Shared) -> Rule:
    if shared.running & WORK_JOBS:
        return Rule(False, tr("A job is reading this dataset; wait for it or cancel it."))
    if s.complete_cases == 0:
        return Rule(False, tr("Add at least one case."))
    if s.incomplete_cases:
        return Rule(False, tr("{n} case(s) lost a volume or segmentation (deleted): remove "
                              "them.", n=s.incomplete_cases))
    if len(set(s.case_channels)) > 1:
        return Rule(False, tr("Cases have different numbers of channels."))
    channels = s.case_channels[0] if s.case_channels else 1
    if len(s.channel_names) != channels:
        return Rule(False, tr("Enter {n} channel name(s), one per volume of a case.",
            n=channels))
    problem = folder_problem(shared.dataset_folder, tr("dataset folder"))
    return Rule(problem is None, problem or "")


def view(s: DatasetState, shared: Shared) -> View:
    """The panel's button rules."""
    has_cases = s.complete_cases + s.incomplete_cases > 0
    listed = Rule(has_cases, "" if has_cases else tr("The list is empty."))
    return View(rules={
        "addPairButton": rule_add_case(s),
        "addAllButton": Rule(s.scene_segmentations > 0, "" if s.scene_segmentations else
                             tr("The scene has no segmentation.")),
        "removePairButton": listed,
        "clearPairsButton": listed,
        "exportDatasetButton": rule_export(s, shared),
    })


def case_rows(node: Any) -> list[list[str]]:
    """The case table's rows: volume(s), segmentation, segments."""
    return [c.cells() for c in case_list.list_cases(node)]


def describe_training_set(training: TrainingSet) -> str:
    """Case count, unified labels and every warning (⚠) and problem (✖), one per line."""
    labels = ", ".join(f"{v}: {k}" for k, v in training.labels.items())
    lines = [f"{len(training.pairs)} case(s); labels {labels}"]
    lines += [f"⚠ {w}" for w in training.warnings] + [f"✖ {p}" for p in training.problems]
    return "\n".join(lines)


def describe_labels(scene: Any, node: Any) -> str:
    """Unified labels and every conflict of the listed cases, as shown under the table."""
    from NNSegLib.slicer.scene.dataset import collect_training_pairs

    pairs = case_list.case_pairs(node)
    if not pairs:
        return tr("No cases yet.")
    return describe_training_set(collect_training_pairs(scene, pairs))


def export_dataset(scene: Any, node: Any, out_dir: Path | str,
                   channel_names: Sequence[str]) -> str:
    """Write the nnU-Net raw dataset and return the dataset check's report."""
    from NNSegLib.data.check import check_dataset
    from NNSegLib.slicer.scene.dataset import export_dataset as write_dataset

    out = write_dataset(scene, case_list.case_pairs(node), out_dir, list(channel_names))
    return check_dataset(out, workers=1).format()


#: The case list's own operations (the parameter node's references), as the panel calls them.
add_case = case_list.add_case
add_all_cases = case_list.add_all_cases
remove_cases = case_list.remove_cases
clear_cases = case_list.clear_cases

__all__ = ["DatasetState", "add_all_cases", "add_case", "case_rows", "channel_names", "clear_cases",
           "describe_labels", "describe_training_set", "export_dataset", "parse_channel_names",
           "remove_cases", "rule_add_case", "rule_export", "state", "view"]
