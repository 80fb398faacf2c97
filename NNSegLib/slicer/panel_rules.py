"""When each button of the module may be clicked, and why not (shown as its tooltip).

The Widget takes a :class:`PanelState` snapshot (parameter node values, the case list,
running jobs, what the folders hold) after every change and applies :func:`button_rules`
(enabled + reason per button of ``NNSeg.ui``) and :func:`locked_widgets` (the inputs a
running job was started with, which must not change under it). The same rules are
tested headless. No ``qt``.

Reasons behind the rules:

* a panel's Apply button is its Cancel while its job runs, so it stays enabled then;
* Plan and Export rewrite files Train reads (``plans.json``, ``imagesTr``), and Train
  rewrites what *Find best* reads: those never run at the same time on one work folder;
  a fine-tune is a training (:data:`TRAINING`) and, since it moves the current model to
  ``model_versions``, also waits for segmentations that may be reading it;
* *Add to dataset* writes into the dataset like Export, under the same conditions;
* nothing runs on an unset folder (``.``: Slicer's working folder).

The Batch and review panel's own decisions (inputs, batch folder, the case under review)
live in :mod:`NNSegLib.slicer.review_panel`, the fine-tune's in
:mod:`NNSegLib.slicer.fine_tune`, the Segment panel's unfinished folds in
:mod:`NNSegLib.slicer.model_folds`; :func:`state_from_parameters` collects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.jobs.board import TRAINING_KEYS as TRAINING
from NNSegLib.slicer.fine_tune import FineTunePlan
from NNSegLib.slicer.folder_memo import FolderMemo, NoMemo
from NNSegLib.slicer.folders import is_unset
from NNSegLib.slicer.model_folds import FoldCheck
from NNSegLib.util.i18n import tr

#: Jobs that read the dataset or the work folder's model while they run.
WORK_JOBS = frozenset({"plan", "findbest"}) | TRAINING


@dataclass
class Rule:
    """Whether a button is enabled and, if not, the reason (its tooltip)."""

    enabled: bool
    reason: str = ""


@dataclass
class PanelState:
    """What the rules look at (built by the Logic from the parameter node and the scene)."""

    training_volume: Any = None
    training_segmentation: Any = None
    listed_segmentation_ids: Sequence[str] = ()
    complete_cases: int = 0
    incomplete_cases: int = 0
    case_channels: Sequence[int] = ()
    channel_names: Sequence[str] = ()
    scene_segmentations: int = 0
    dataset_folder: str = ""
    work_folder: str = ""
    train_configuration: str = "3d_fullres"
    folds: str = "0"
    resumable_folds: Sequence[str] = ()
    started_folds: Sequence[str] = ()
    model_path: str = ""
    model_channels: int | None = None
    segment_volumes: Sequence[Any] = ()
    report: str | None = None
    running: set[str] = field(default_factory=set)
    memory_budget_auto: bool = True
    time_budget: bool = False
    model_folds: FoldCheck = field(default_factory=FoldCheck)
    batch_source: str = "folder"
    batch_input_problem: str | None = None
    batch_folder_problem: str | None = None
    review_case: str | None = None
    dataset_case_name: str = ""
    fine_tune: FineTunePlan = field(default_factory=lambda: FineTunePlan(
        problem=tr("Choose the work folder first.")))


#: Widgets (``NNSeg.ui`` object names) each running job locks.
LOCKS = {
    "plan": ["datasetFolderPathLineEdit", "workFolderPathLineEdit", "recipeComboBox",
             "memoryBudgetSpinBox", "memoryBudgetAutoCheckBox", "configurationsLineEdit",
             "exportDatasetButton"],
    "train": ["datasetFolderPathLineEdit", "workFolderPathLineEdit",
              "trainConfigurationComboBox", "foldsLineEdit", "maxEpochsSpinBox",
              "deviceComboBox", "detachTrainingCheckBox", "exportDatasetButton",
              "timeBudgetCheckBox", "timeBudgetSpinBox"],
    "finetune": ["datasetFolderPathLineEdit", "workFolderPathLineEdit",
                 "trainConfigurationComboBox", "foldsLineEdit", "deviceComboBox",
                 "detachTrainingCheckBox", "exportDatasetButton", "fineTuneEpochsSpinBox",
                 "fineTuneAdaptHeadCheckBox"],
    "findbest": ["datasetFolderPathLineEdit", "workFolderPathLineEdit", "exportDatasetButton"],
    "segment": ["modelPathLineEdit", "useTrainedModelButton", "inputVolumeSelector",
                "channelSelectorsWidget", "outputSegmentationSelector", "predictDeviceComboBox",
                "predictFoldsLineEdit", "ttaCheckBox", "uncertaintyCheckBox",
                "postprocessingCheckBox", "allowUnfinishedCheckBox", "previewFirstCheckBox"],
    "batch": ["batchSourceComboBox", "batchInputFolderPathLineEdit", "batchVolumesSelector",
              "batchFolderPathLineEdit", "modelPathLineEdit", "useTrainedModelButton",
              "predictDeviceComboBox", "predictFoldsLineEdit", "ttaCheckBox",
              "allowUnfinishedCheckBox"],
}


def locked_widgets(running: set[str]) -> set[str]:
    """Object names of the widgets to disable while the ``running`` jobs run."""
    return {name for key in running for name in LOCKS.get(key, [])}


def enabled_inputs(state: PanelState) -> dict[str, bool]:
    """Inputs that only apply with another choice (disabled otherwise, locked or not)."""
    scene = state.batch_source == "scene volumes"
    return {"memoryBudgetSpinBox": not state.memory_budget_auto,
            "timeBudgetSpinBox": state.time_budget,
            "batchInputFolderPathLineEdit": not scene, "batchVolumesSelector": scene}


def info_texts(state: PanelState) -> dict[str, str]:
    """Texts of the labels that explain the current choices (object name → text)."""
    if "finetune" in state.running:
        tune = tr("Fine-tuning runs; the Fine-tune button cancels it.")
    else:
        tune = state.fine_tune.problem or state.fine_tune.text
    return {"modelFoldsLabel": state.model_folds.text, "fineTuneInfoLabel": tune}


def _folder_problem(path: str, what: str) -> str | None:
    if is_unset(path):
        return tr("Choose the {what} first.", what=what)
    return None


def _dataset_ready(state: PanelState) -> str | None:
    problem = _folder_problem(state.dataset_folder, tr("dataset folder"))
    if problem:
        return problem
    if not (Path(state.dataset_folder) / "dataset.json").is_file():
        return tr("The dataset folder has no dataset.json: export the dataset first.")
    return None


def _plan_configurations(work: str) -> list[str] | None:
    from NNSegLib.util.json_files import read_json
    from NNSegLib.util.workspace import Workspace

    path = Workspace(Path(work)).plans
    if not path.is_file():
        return None
    try:
        return list(read_json(path, expect=dict).get("configurations", {}))
    except Exception:  # a broken plan: Plan again
        return []


def rule_add_case(state: PanelState) -> Rule:
    if state.training_volume is None or state.training_segmentation is None:
        return Rule(False, tr("Select a volume and its segmentation."))
    if state.training_segmentation.GetID() in set(state.listed_segmentation_ids):
        return Rule(False, tr("This segmentation is already in the list."))
    return Rule(True)


def rule_export(state: PanelState) -> Rule:
    if state.running & WORK_JOBS:
        return Rule(False, tr("A job is reading this dataset; wait for it or cancel it."))
    if state.complete_cases == 0:
        return Rule(False, tr("Add at least one case."))
    if state.incomplete_cases:
        return Rule(False, tr("{n} case(s) lost a volume or segmentation (deleted): remove "
                              "them.", n=state.incomplete_cases))
    if len(set(state.case_channels)) > 1:
        return Rule(False, tr("Cases have different numbers of channels."))
    channels = state.case_channels[0] if state.case_channels else 1
    if len(state.channel_names) != channels:
        return Rule(False, tr("Enter {n} channel name(s), one per volume of a case.",
            n=channels))
    problem = _folder_problem(state.dataset_folder, tr("dataset folder"))
    return Rule(problem is None, problem or "")


def rule_plan(state: PanelState) -> Rule:
    if "plan" in state.running:
        return Rule(True, tr("Cancel planning."))
    if state.running & (TRAINING | {"findbest"}):
        return Rule(False, tr("A training job uses this plan; wait for it or cancel it."))
    problem = _dataset_ready(state) or _folder_problem(state.work_folder, tr("work folder"))
    return Rule(problem is None, problem or "")


def rule_train(state: PanelState) -> Rule:
    from NNSegLib.data.splits import parse_folds
    from NNSegLib.util.errors import NNSegError

    if "train" in state.running:
        return Rule(True, tr("Cancel training (asks first; the checkpoint is kept)."))
    if state.running & {"plan", "findbest", "finetune"}:
        return Rule(False, tr("Wait for the running job to finish."))
    problem = _dataset_ready(state) or _folder_problem(state.work_folder, tr("work folder"))
    if problem:
        return Rule(False, problem)
    configurations = _plan_configurations(state.work_folder)
    if configurations is None:
        return Rule(False, tr("No plan in the work folder: click Plan first."))
    if state.train_configuration not in configurations:
        return Rule(False, tr("The plan has no {configuration} (planned: {planned}).",
            configuration=state.train_configuration, planned=", ".join(configurations)))
    try:
        folds = [str(f) for f in parse_folds(state.folds)] or ["0"]
    except (NNSegError, ValueError) as e:
        return Rule(False, str(e))
    started = [f for f in folds if f in set(state.started_folds)]
    if started:  # `nnseg train` refuses to overwrite a run; Resume continues it
        return Rule(False, tr("Fold(s) {folds} of {configuration} already have a run: Resume "
                              "continues an interrupted one; choose other folds for a new run.",
                              folds=", ".join(started), configuration=state.train_configuration))
    return Rule(True)


def rule_resume(state: PanelState) -> Rule:
    if state.running & WORK_JOBS:
        return Rule(False, tr("Wait for the running job to finish."))
    if not state.resumable_folds:
        return Rule(False, tr("No interrupted training of {configuration} to resume.",
            configuration=state.train_configuration))
    return Rule(True, tr("Continue fold(s) {folds} from their latest checkpoint.",
                         folds=", ".join(state.resumable_folds)))


def rule_find_best(state: PanelState) -> Rule:
    if "findbest" in state.running:
        return Rule(True, tr("Cancel."))
    if state.running & (TRAINING | {"plan"}):
        return Rule(False, tr("Wait for the training to finish."))
    problem = _dataset_ready(state) or _folder_problem(state.work_folder, tr("work folder"))
    if problem:
        return Rule(False, problem)
    from NNSegLib.util.workspace import Workspace

    if not Workspace(Path(state.work_folder)).model.trained_configurations():
        return Rule(False, tr("Train at least one configuration first."))
    return Rule(True)


def _model_problem(state: PanelState) -> str | None:
    if is_unset(state.model_path):
        return tr("Choose a model (folder or .zip).")
    path = Path(state.model_path)
    if path.suffix.lower() != ".zip" and not (path / "dataset.json").is_file():
        return tr("No model here (dataset.json missing).")
    if path.suffix.lower() == ".zip" and not path.is_file():
        return tr("The model package does not exist.")
    return state.model_folds.problem


def rule_segment(state: PanelState) -> Rule:
    if "segment" in state.running:
        return Rule(True, tr("Cancel segmentation."))
    problem = _model_problem(state)
    if problem:
        return Rule(False, problem)
    needed = state.model_channels or 1
    given = [v for v in state.segment_volumes if v is not None]
    if len(given) < needed or len(state.segment_volumes) < needed:
        return Rule(False, tr("Select an input volume for each of the model's {n} "
                              "channel(s).", n=needed))
    return Rule(True)


def button_rules(state: PanelState) -> dict[str, Rule]:
    """Enabled state and reason of every rule-driven button of ``NNSeg.ui``."""
    has_cases = state.complete_cases + state.incomplete_cases > 0
    return {
        "addPairButton": rule_add_case(state),
        "addAllButton": Rule(state.scene_segmentations > 0,
                             "" if state.scene_segmentations else
                             tr("The scene has no segmentation.")),
        "removePairButton": Rule(has_cases, "" if has_cases else tr("The list is empty.")),
        "clearPairsButton": Rule(has_cases, "" if has_cases else tr("The list is empty.")),
        "exportDatasetButton": rule_export(state),
        "planButton": rule_plan(state),
        "trainButton": rule_train(state),
        "resumeButton": rule_resume(state),
        "findBestButton": rule_find_best(state),
        "openReportButton": Rule(bool(state.report),
                                 state.report or tr("No evaluation report yet: click Find "
                                                    "best configuration.")),
        "useTrainedModelButton": _rule_trained_model(state),
        "segmentButton": rule_segment(state),
        "batchButton": rule_batch(state),
        "acceptButton": _rule_reviewing(state),
        "needsCorrectionButton": _rule_reviewing(state),
        "addToDatasetButton": rule_add_to_dataset(state),
        "fineTuneButton": rule_fine_tune(state),
    }


def rule_batch(state: PanelState) -> Rule:
    if "batch" in state.running:
        return Rule(True, tr("Cancel the batch (finished cases stay; Segment batch again "
                             "continues with the rest)."))
    if "finetune" in state.running:
        return Rule(False, tr("A fine-tune is replacing the current model; wait for it."))
    problem = (_model_problem(state) or state.batch_input_problem
               or state.batch_folder_problem)
    return Rule(problem is None, problem or "")


def _rule_reviewing(state: PanelState) -> Rule:
    if state.review_case is None:
        return Rule(False, tr("Click a case in the review table first."))
    return Rule(True)


def rule_add_to_dataset(state: PanelState) -> Rule:
    if state.review_case is None:
        return Rule(False, tr("Click a case in the review table first, correct its "
                              "segmentation in Segment Editor, then add it."))
    if state.running & WORK_JOBS:
        return Rule(False, tr("A job is reading this dataset; wait for it or cancel it."))
    problem = _dataset_ready(state)
    if problem:
        return Rule(False, problem)
    if not state.dataset_case_name.strip():
        return Rule(False, tr("Enter the case's name in the dataset."))
    return Rule(True, tr("Write '{case}' as '{name}' into {dataset}.", case=state.review_case,
                         name=state.dataset_case_name.strip(), dataset=state.dataset_folder))


def rule_fine_tune(state: PanelState) -> Rule:
    if "finetune" in state.running:
        return Rule(True, tr("Cancel fine-tuning (asks first; the checkpoint is kept)."))
    if state.running & (WORK_JOBS | {"segment", "batch"}):
        return Rule(False, tr("Wait for the running job to finish (a fine-tune moves the "
                              "current model aside)."))
    problem = _dataset_ready(state) or state.fine_tune.problem
    if problem:
        return Rule(False, problem)
    return Rule(True, state.fine_tune.text)


def _rule_trained_model(state: PanelState) -> Rule:
    if is_unset(state.work_folder):
        return Rule(False, tr("Choose the work folder first."))
    from NNSegLib.util.workspace import Workspace

    if not Workspace(Path(state.work_folder)).model.dataset_json.is_file():
        return Rule(False, tr("Nothing trained in the work folder yet."))
    return Rule(True)



def state_from_parameters(scene: Any, params: Any, segment_volumes: Sequence[Any] = (),
                          model_channels: int | None = None,
                          resumable_folds: Sequence[str] = (), running: set[str] | None = None,
                          report: str | None = None,
                          started_folds: Sequence[str] = (), batch_volumes: Sequence[Any] = (),
                          review_case: str | None = None,
                          dataset_case_name: str = "", memo: FolderMemo | None = None
                          ) -> PanelState:
    """Build the :class:`PanelState` from the module's parameters.

    Args:
        scene: The MRML scene.
        params: The parameter node wrapper (attributes as in ``NNSegParameterNode``; the
            MRML node behind it as ``params.parameterNode``, holding the case list).
        segment_volumes: The Segment panel's volume per channel (``None`` where unset).
        model_channels: Channels of the chosen model, when known.
        resumable_folds: Folds of the chosen configuration Resume would continue.
        started_folds: Folds of the chosen configuration that already have a checkpoint.
        running: Panels with a running job.
        report: The cross-validation report's path, if there is one.
        batch_volumes: The scene volumes checked for a batch.
        review_case: The case under review (shown in the scene), if any.
        dataset_case_name: The name it would get in the dataset.
        memo: Keeps what was read from the model, work and batch folders until they change
            (default: read them again).
    """
    from NNSegLib.slicer import review_panel
    from NNSegLib.slicer.fine_tune import fine_tune_plan
    from NNSegLib.slicer.model_folds import check_folds
    from NNSegLib.slicer.scene.case_list import list_cases

    memo = memo or NoMemo()
    model, work, batch = params.modelPath, params.workFolder, params.batchFolder
    configuration, folds = str(params.trainConfiguration), str(params.folds)
    predict_folds, unfinished = str(params.predictFolds), bool(params.allowUnfinished)
    cases = list_cases(params.parameterNode)
    names = [c.strip() for c in str(params.channelNames).split(",") if c.strip()]
    return PanelState(
        training_volume=params.trainingVolume,
        training_segmentation=params.trainingSegmentation,
        listed_segmentation_ids=[c.segmentation.GetID() for c in cases
                                 if c.segmentation is not None],
        complete_cases=sum(c.complete for c in cases),
        incomplete_cases=sum(not c.complete for c in cases),
        case_channels=[len(c.volumes) for c in cases],
        channel_names=names,
        scene_segmentations=scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"),
        dataset_folder=str(params.datasetFolder or ""),
        work_folder=str(params.workFolder or ""),
        train_configuration=str(params.trainConfiguration),
        folds=str(params.folds),
        resumable_folds=list(resumable_folds),
        started_folds=list(started_folds),
        model_path=str(params.modelPath or ""),
        model_channels=model_channels,
        segment_volumes=list(segment_volumes),
        report=report,
        running=set(running or ()),
        memory_budget_auto=bool(params.memoryBudgetAuto),
        time_budget=bool(params.timeBudget),
        model_folds=memo.get(("folds", str(model), predict_folds, unfinished), [(model, 3)],
                             lambda: check_folds(model, predict_folds, unfinished))
        if not is_unset(model) else FoldCheck(),
        batch_source=str(params.batchSource),
        batch_input_problem=review_panel.batch_input_problem(
            str(params.batchSource), params.batchInputFolder, batch_volumes, model_channels),
        batch_folder_problem=memo.get(
            ("batch folder", str(batch), str(model)), [(batch, 1), (model, 1)],
            lambda: review_panel.batch_folder_problem(batch, model)),
        review_case=review_case,
        dataset_case_name=str(dataset_case_name),
        fine_tune=memo.get(
            ("fine-tune", str(work), configuration, folds), _work_folders(work),
            lambda: fine_tune_plan(work, configuration, folds)),
    )


def _work_folders(work: Any) -> list[tuple[Any, int]]:
    """The parts of a work folder the panels' answers come from (not its data)."""
    if is_unset(work):   # "./results" would be the current folder's
        return [(work, 1)]
    root = Path(str(work))
    return [(root, 1), (root / "results", 3), (root / "model_versions", 1)]


__all__ = ["LOCKS", "PanelState", "Rule", "TRAINING", "WORK_JOBS", "button_rules",
           "enabled_inputs", "info_texts", "locked_widgets", "state_from_parameters"]
