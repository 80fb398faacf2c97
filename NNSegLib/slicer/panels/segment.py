"""(4) Segment: a model (trained here, imported or nnU-Net v2), its input channels, a Segment
job that captures its inputs at the click, a preview first if asked, results as segments.

The job itself: :mod:`NNSegLib.slicer.segment_run` (inputs captured, results placed) and
:mod:`NNSegLib.slicer.segment_sequence` (preview, then full quality); expected times:
:mod:`NNSegLib.slicer.segment_times`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.slicer import model_folds, segment_run, segment_sequence, segment_times
from NNSegLib.slicer.folder_memo import FolderMemo
from NNSegLib.slicer.folders import is_unset
from NNSegLib.slicer.panels.common import Rule, Shared, View, model_problem
from NNSegLib.slicer.requests import SegmentRequest
from NNSegLib.util.i18n import tr
from NNSegLib.util.workspace import Workspace

#: Widgets (``NNSeg.ui`` object names) a running Segment job locks.
LOCKS = {"segment": ["modelPathLineEdit", "useTrainedModelButton", "inputVolumeSelector",
                     "channelSelectorsWidget", "outputSegmentationSelector",
                     "predictDeviceComboBox", "predictFoldsLineEdit", "ttaCheckBox",
                     "uncertaintyCheckBox", "postprocessingCheckBox", "allowUnfinishedCheckBox",
                     "previewFirstCheckBox"]}


@dataclass
class SegmentState:
    """What the Segment panel's rules look at (the model is in :class:`~.common.Shared`)."""

    segment_volumes: Sequence[Any] = ()


def rule_segment(s: SegmentState, shared: Shared) -> Rule:
    if "segment" in shared.running:
        return Rule(True, tr("Cancel segmentation."))
    problem = model_problem(shared)
    if problem:
        return Rule(False, problem)
    needed = shared.model_channels or 1
    given = [v for v in s.segment_volumes if v is not None]
    if len(given) < needed or len(s.segment_volumes) < needed:
        return Rule(False, tr("Select an input volume for each of the model's {n} "
                              "channel(s).", n=needed))
    return Rule(True)


def rule_trained_model(shared: Shared) -> Rule:
    if is_unset(shared.work_folder):
        return Rule(False, tr("Choose the work folder first."))
    if not Workspace(Path(shared.work_folder)).model.dataset_json.is_file():
        return Rule(False, tr("Nothing trained in the work folder yet."))
    return Rule(True)


def view(s: SegmentState, shared: Shared) -> View:
    """The panel's button rules and the line on the model's folds."""
    return View(rules={"useTrainedModelButton": rule_trained_model(shared),
                       "segmentButton": rule_segment(s, shared)},
                texts={"modelFoldsLabel": shared.model_folds.text})


def model_folder(work: Any) -> Path:
    """The model a work folder trains (*Use the model trained here*)."""
    return Workspace(Path(str(work))).results


def segment_request(params: Any) -> SegmentRequest:
    """The :class:`~NNSegLib.slicer.requests.SegmentRequest` of the panel's values."""
    return SegmentRequest.from_parameters(params)


def capture_segment(scene: Any, cases: Sequence[Sequence[Any]], outputs: Sequence[Any],
                    request: SegmentRequest) -> segment_run.SegmentRun:
    """Copy the inputs out of the scene now and build the job
    (:func:`~NNSegLib.slicer.segment_run.capture_segment_run`); "Preview first" adds the fast
    preview's commands."""
    r = request
    return segment_run.capture_segment_run(
        scene, cases, outputs, r.model, r.folds, r.device, r.tta, r.uncertainty,
        r.postprocessing, r.show_3d, r.allow_unfinished, r.preview_first)


def expected_times(memo: FolderMemo, book_text: Any, device_info: Any, volumes: Sequence[Any],
                   params: Any) -> str:
    """The expected time of the preview and the full result for the panel's device (the
    model's folds are read again only when the model folder changed)."""
    p, volumes = params, list(volumes)
    key = ("segment times", str(book_text), str(p.modelPath), repr(device_info),
           segment_times.volume_megavoxels(volumes), str(p.predictFolds), bool(p.tta),
           bool(p.allowUnfinished))
    return memo.get(key, [(p.modelPath, 3)], lambda: segment_times.describe_expected_times(
        book_text, p.modelPath, device_info, volumes, p.predictFolds, p.tta,
        p.allowUnfinished))


#: The job and its results, as the panel calls them.
model_info = model_folds.model_info
describe_postprocessing = segment_run.describe_postprocessing
overwrite_decision = segment_run.overwrite_decision
deliver_results = segment_run.deliver_results
deliver_preview = segment_sequence.deliver_preview
outcome_text = segment_sequence.outcome_text
record_time = segment_times.record
TIMES_KEY = segment_times.SETTINGS_KEY

__all__ = ["LOCKS", "SegmentState", "TIMES_KEY", "capture_segment", "deliver_preview",
           "deliver_results", "describe_postprocessing", "expected_times", "model_folder",
           "model_info", "outcome_text", "overwrite_decision", "record_time", "rule_segment",
           "rule_trained_model", "segment_request", "view"]
