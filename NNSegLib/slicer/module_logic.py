"""The Slicer module's Logic API (camelCase, as Slicer modules name it), without ``qt``.

``NNSeg.py``'s ``NNSegLogic`` forwards every method it does not define itself to a
:class:`ModuleLogic`; so the module file stays a thin layer of wiring and everything the
panels decide is importable and tested headless. Each method delegates to the
``NNSegLib.slicer`` module named after what it does. None of them imports torch, SimpleITK or
MRML when imported (only the functions that need them do), so importing this module is cheap;
``NNSeg.py`` imports it on first use, because the Slicer module loads before NNSegLib's
dependencies are installed.
"""

from __future__ import annotations

import pathlib
import sys
from typing import List

from NNSegLib.jobs import board, process
from NNSegLib.jobs import detached as file_jobs
from NNSegLib.jobs.base import CommandStep
from NNSegLib.slicer import (
    cv_report,
    devices,
    fine_tune,
    folder_memo,
    folders,
    gui_summaries,
    panel_commands,
    panel_rules,
    requests,
    review_panel,
    segment_run,
    segment_sequence,
    segment_times,
    training_runs,
)
from NNSegLib.slicer.scene import case_list, training_chart
from NNSegLib.slicer.scene import dataset as scene_dataset
from NNSegLib.util.i18n import tr


class ModuleLogic:
    """Everything the module's panels do, with scene and nodes as arguments.

    Args:
        python: The interpreter background jobs run (``PythonSlicer`` in Slicer).
    """

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        #: What the panels read from folders, until a folder changes or a job ends.
        self.memo = folder_memo.FolderMemo()

    def forgetFolders(self) -> None:
        """A job ended: read the folders again on the next update."""
        self.memo.clear()

    # -- jobs ----------------------------------------------------------------------------
    def jobBoard(self):
        return board.JobBoard()

    def startJobs(self, steps: List[List[str]], cwd: str | None = None):
        return process.JobChain(steps, python=self.python, cwd=cwd)

    def startTraining(self, steps, work, detached: bool, kind: str = "train"):
        """Training (``kind`` ``train`` or ``finetune``) runs through a job record in the work
        folder, so a later session re-attaches to it."""
        return file_jobs.start_file_job(steps, work, kind, python=self.python,
                                                      detached=detached)

    def liveTrainingJobs(self, work) -> list:
        keys = board.TRAINING_KEYS
        return [j for j in file_jobs.live_jobs(work) if j.kind in keys]

    def jobsToReattach(self, live, running) -> list:
        """``(panel key, job)`` of live trainings/fine-tunes no panel follows yet."""
        return board.reattachable(list(live), set(running))

    def trainingKeys(self) -> frozenset:
        return board.TRAINING_KEYS

    def reattach(self, job, work) -> tuple:
        """``(job, context, chart records)`` to follow a training started earlier, from the
        :class:`~NNSegLib.slicer.requests.TrainContext` stored with the job's current step."""
        stored = job.context
        if stored is None:   # a step that trains nothing, or a record without contexts
            from NNSegLib.training.run_config import FINE_TUNE_EPOCHS

            default = FINE_TUNE_EPOCHS if job.kind == "finetune" else requests.DEFAULT_MAX_EPOCHS
            context = requests.TrainContext(job.kind, "?", "?", default)
        else:
            context = requests.TrainContext.from_json(stored)
        records = training_runs.chart_records(
            pathlib.Path(str(work)) / "results" / context.configuration / f"fold_{context.fold}")
        job.poll()  # skip the events already in the chart's log
        return job, {"work": work, "configuration": context.configuration,
                     "folds": context.fold, "maxEpochs": context.max_epochs}, records

    @staticmethod
    def cancelQuestion(key: str, context: dict) -> str | None:
        return board.cancel_question(key, context)

    @staticmethod
    def describeEvent(entry, event: dict) -> str | None:
        return gui_summaries.describe_event(entry.key, event, entry.job.elapsed,
                                                    entry.context.get("maxEpochs", 0))

    @staticmethod
    def progressValue(key: str, event: dict):
        return gui_summaries.progress_value(key, event)

    @staticmethod
    def finishText(job, what: str) -> tuple:
        return gui_summaries.finish_text(job, what)

    @staticmethod
    def parseFolds(text: str) -> List[str]:
        from NNSegLib.data.splits import parse_folds

        return [str(f) for f in parse_folds(text)]

    @staticmethod
    def parseChannelNames(text: str) -> List[str]:
        return [c.strip() for c in str(text).split(",") if c.strip()] or ["image"]

    def planSteps(self, dataset, work, recipe: str, memoryGB: float, configurations: str):
        return panel_commands.plan_commands(dataset, work, recipe, memoryGB, configurations)

    @staticmethod
    def trainRequest(params, folds: str | None = None, resume: bool = False, extra=()):
        """The :class:`~NNSegLib.slicer.requests.TrainRequest` of the Train panel's values."""
        return requests.TrainRequest.from_parameters(params, folds, resume, extra)

    def trainCommands(self, request) -> List[CommandStep]:
        """``nnseg`` commands of a training request (each ``train`` step with its context)."""
        return panel_commands.train_request_commands(request)

    def trainSteps(self, dataset, work, configuration: str, folds: str, maxEpochs: int,
                   device: str, resume: bool, extra=(), timeBudget: bool = False,
                   timeBudgetMinutes: int = 60) -> List[CommandStep]:
        """``nnseg train`` commands; "Train for N minutes" adds ``--time-budget N``."""
        return panel_commands.train_commands(
            dataset, work, configuration, folds, maxEpochs, device, resume, extra,
            timeBudgetMinutes if timeBudget else None)

    def findBestSteps(self, dataset, work):
        return panel_commands.find_best_commands(dataset, work)

    def reportSteps(self, dataset, work):
        return cv_report.report_commands(dataset, work)

    # -- state of the panels ---------------------------------------------------------------
    def panelState(self, scene, params, segmentVolumes, modelChannels, runs, running,
                   batchVolumes=(), reviewSession=None, datasetCaseName: str = ""):
        """The :class:`~NNSegLib.slicer.panel_rules.PanelState` the button rules look at."""
        report = self.reportPath(params.workFolder)
        configuration = params.trainConfiguration
        review = reviewSession.current_case(scene) if reviewSession is not None else None
        return panel_rules.state_from_parameters(
            scene, params, segmentVolumes, len(modelChannels) if modelChannels else None,
            self.resumableFolds(runs, configuration), running, str(report) if report else None,
            training_runs.started_folds(runs, configuration), list(batchVolumes),
            review, datasetCaseName, self.memo)

    def enabledInputs(self, state) -> dict:
        return panel_rules.enabled_inputs(state)

    def infoTexts(self, state) -> dict:
        return panel_rules.info_texts(state)

    def emptyState(self):
        return panel_rules.PanelState()

    def buttonRules(self, state) -> dict:
        return panel_rules.button_rules(state)

    def lockedWidgets(self, running) -> set:
        return panel_rules.locked_widgets(set(running))

    def lockableWidgets(self) -> set:
        return {n for names in panel_rules.LOCKS.values() for n in names}

    def settingsKeys(self) -> dict:
        return dict(folders.SETTINGS_KEYS)

    def isUnset(self, path) -> bool:
        return folders.is_unset(path)

    def initialFolders(self, dataset, work, remembered: dict, base=None) -> dict:
        base = remembered.get("base") or base or folders.nnseg_home()
        return folders.initial_folders(dataset, work, remembered, base)

    def initialModel(self, model, remembered: dict):
        return folders.initial_model(model, remembered)

    def initialBatchFolder(self, batch, remembered: dict, base=None):
        base = remembered.get("base") or base or folders.nnseg_home()
        return folders.initial_batch_folder(batch, remembered, base)

    def followDataset(self, oldDataset, newDataset, work, base=None):
        return folders.follow_dataset(oldDataset, newDataset, work, base or folders.nnseg_home())

    # -- devices ---------------------------------------------------------------------------
    def detectDevice(self, requested: str = "auto"):
        return devices.detect_device(requested)

    def describeDevice(self, info) -> str:
        return devices.describe_device(info)

    def memoryBudget(self, info) -> float:
        return devices.memory_budget_gb(info)

    def cpuTrainingWarning(self, info, work, configuration, folds, epochs,
                           timeBudget: bool = False, timeBudgetMinutes: int = 60) -> str | None:
        """The CPU warning with a time estimate from the plan (``None`` on a GPU)."""
        if info is None:
            return None
        budget = timeBudgetMinutes if timeBudget else None
        key = ("time warning", repr(info), str(work), configuration, folds, epochs, budget)
        return self.memo.get(key, [(work, 1)],
                             lambda: gui_summaries.training_time_warning(
                                 info, work, configuration, folds, epochs, budget))

    # -- dataset -------------------------------------------------------------------------
    def addCase(self, node, volumes, segmentation):
        return case_list.add_case(node, volumes, segmentation)

    def addAllCases(self, scene, node) -> tuple:
        return case_list.add_all_cases(scene, node)

    def removeCases(self, node, rows) -> None:
        case_list.remove_cases(node, rows)

    def clearCases(self, node) -> None:
        case_list.clear_cases(node)

    def caseRows(self, node) -> List[List[str]]:
        return [c.cells() for c in case_list.list_cases(node)]

    def describeLabels(self, scene, node) -> str:
        """Unified labels and every conflict of the listed cases, as shown under the table."""
        pairs = case_list.case_pairs(node)
        if not pairs:
            return tr("No cases yet.")
        return gui_summaries.describe_training_set(
            scene_dataset.collect_training_pairs(scene, pairs))

    def exportDataset(self, scene, node, outDir, channelNames: List[str]) -> str:
        """Write the nnU-Net raw dataset and return the dataset check's report."""
        from NNSegLib.data.check import check_dataset

        out = scene_dataset.export_dataset(scene, case_list.case_pairs(node),
                                                   outDir, channelNames)
        return check_dataset(out, workers=1).format()

    # -- plan / train results ------------------------------------------------------------
    def plansTable(self, work) -> tuple:
        return gui_summaries.plans_table(work)

    def updateChart(self, scene, records: List[dict], chartNode=None):
        return training_chart.training_chart(scene, records, chartNode)

    def crossValidationSummary(self, work, configuration: str) -> str:
        return gui_summaries.cross_validation_summary(work, configuration)

    def trainingRuns(self, work, jobs=()) -> list:
        return training_runs.find_runs(work, jobs)

    def describeRunLines(self, runs) -> List[str]:
        return [r.describe() for r in runs] or [training_runs.describe_runs([])]

    def resumableFolds(self, runs, configuration: str) -> List[str]:
        return training_runs.resume_choice(runs, configuration)

    def chartRecords(self, run) -> list:
        return training_runs.chart_records(run)

    def describeBest(self, work) -> str:
        return cv_report.describe_best(work)

    def reportPath(self, work):
        return None if self.isUnset(work) else cv_report.report_path(work)

    def modelFolder(self, work) -> pathlib.Path:
        return pathlib.Path(str(work)) / "results"

    # -- segment -------------------------------------------------------------------------
    @staticmethod
    def modelInfo(path) -> dict:
        return gui_summaries.model_info(path)

    def describePostprocessing(self, path) -> str:
        return segment_run.describe_postprocessing(path)

    def overwriteDecision(self, scene, node):
        return segment_run.overwrite_decision(scene, node)

    @staticmethod
    def segmentRequest(params):
        """The :class:`~NNSegLib.slicer.requests.SegmentRequest` of the Segment panel."""
        return requests.SegmentRequest.from_parameters(params)

    def captureSegment(self, scene, cases, outputs, request):
        """:meth:`captureSegmentRun` for a :class:`~NNSegLib.slicer.requests.SegmentRequest`."""
        r = request
        return self.captureSegmentRun(scene, cases, outputs, r.model, r.folds, r.device, r.tta,
                                      r.uncertainty, r.postprocessing, r.show_3d,
                                      r.allow_unfinished, r.preview_first)

    def captureSegmentRun(self, scene, cases, outputs, modelPath, folds: str = "",
                          device: str = "auto", tta: bool = True, uncertainty: bool = False,
                          postprocessing: bool = True, show3D: bool = False,
                          allowUnfinished: bool = False, previewFirst: bool = False):
        """Copy the inputs out of the scene now and build the job (see segment_run);
        "Preview first" adds the fast preview's commands."""
        return segment_run.capture_segment_run(scene, cases, outputs, modelPath, folds,
                                                       device, tta, uncertainty, postprocessing,
                                                       show3D, allowUnfinished, previewFirst)

    def startSegmentJob(self, run):
        """The Segment job: the preview first when the run has one, then the full result
        (:class:`~NNSegLib.slicer.segment_sequence.SegmentSequence`)."""
        return segment_sequence.SegmentSequence(run, self.startJobs)

    def deliverResults(self, scene, run) -> list:
        return segment_run.deliver_results(scene, run)

    def deliverPreview(self, scene, job) -> str:
        """Show a Segment job's preview in the output segmentation; returns the status line."""
        return segment_sequence.deliver_preview(scene, job)

    def segmentOutcome(self, job, finished: str) -> str | None:
        """The status line when the full result did not arrive but the preview did."""
        return segment_sequence.outcome_text(job, finished)

    def segmentTimesKey(self) -> str:
        """Slicer settings key of the Segment time measurements."""
        return segment_times.SETTINGS_KEY

    def recordSegmentTime(self, bookText, event: dict) -> str:
        """The measurements (settings text) with a finished phase's time added."""
        return segment_times.record(bookText, event)

    def describeSegmentTimes(self, bookText, modelPath, deviceInfo, volumes, folds: str = "",
                             tta: bool = True, allowUnfinished: bool = False) -> str:
        """The expected time of the preview and the full result for the chosen device (the
        model's folds are read again only when the model folder changed)."""
        volumes = list(volumes)
        key = ("segment times", str(bookText), str(modelPath), repr(deviceInfo),
               segment_times.volume_megavoxels(volumes), str(folds), bool(tta),
               bool(allowUnfinished))
        return self.memo.get(key, [(modelPath, 3)], lambda: segment_times.describe_expected_times(
            bookText, modelPath, deviceInfo, volumes, folds, tta, allowUnfinished))

    # -- batch and review ------------------------------------------------------------------
    def reviewSession(self):
        return review_panel.ReviewSession()

    def startBatch(self, session, params, volumes, modelChannels):
        """The batch job's steps for the panel's choices (scene volumes written now), from
        the :class:`~NNSegLib.slicer.requests.BatchRequest` of the parameter node."""
        r = requests.BatchRequest.from_parameters(params, modelChannels)
        return review_panel.start_batch(
            session, r.source, r.input_folder, volumes, r.batch_folder, r.model, r.folds,
            r.device, r.tta, r.allow_unfinished, r.channels)

    def reviewTable(self, batch):
        return review_panel.review_table(batch)

    def describeBatch(self, batch) -> str:
        return review_panel.describe_batch(batch)

    def openReviewCase(self, session, scene, batch, case: str, opacity: float, dataset) -> str:
        """Show a queue case; returns the name it would get in the dataset."""
        review = session.open(scene, batch, case, opacity)
        return review_panel.suggest_dataset_name(dataset, review.entry)

    def describeReviewCase(self, session) -> str:
        """One line on the case under review."""
        return gui_summaries.describe_review_case(session.current.case.entry)

    def addDecision(self, dataset, name: str):
        return review_panel.add_decision(dataset, name.strip())

    def addReviewedCase(self, session, scene, dataset, name: str, replace: bool) -> str:
        """Write the reviewed case into the dataset; returns the line to show."""
        added = session.add(scene, dataset, name.strip(), replace)
        return tr("Added as '{name}' ({n} training case(s) now).",
                               name=added.identifier, n=added.num_training)

    # -- fine-tune ---------------------------------------------------------------------------
    @staticmethod
    def fineTuneRequest(params, extra=()):
        """The :class:`~NNSegLib.slicer.requests.FineTuneRequest` of the panel's values."""
        return requests.FineTuneRequest.from_parameters(params, extra)

    def fineTuneJob(self, request):
        """:meth:`fineTuneSteps` for a :class:`~NNSegLib.slicer.requests.FineTuneRequest`."""
        r = request
        return self.fineTuneSteps(r.dataset, r.work or "", r.configuration, r.folds, r.epochs,
                                  r.device, r.adapt_head, r.extra)

    def fineTuneSteps(self, dataset, work, configuration: str, folds: str, epochs: int,
                      device: str, adaptHead: bool, extra=()):
        """The :class:`~NNSegLib.slicer.fine_tune.FineTuneJob` of *Fine-tune* (resume
        decided from the work folder)."""
        return fine_tune.fine_tune_steps(dataset, work, configuration, folds, epochs,
                                                 device, adaptHead, extra)

    def didItHelp(self, work, configuration: str) -> tuple:
        return fine_tune.did_it_help(work, configuration)


__all__ = ["ModuleLogic"]
