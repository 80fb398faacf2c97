"""NNSeg: self-configuring U-Net segmentation (the nnU-Net method) in 3D Slicer.

A thin module: the Widget wires the five panels (Dataset, Plan, Train, Segment, Batch and
review) to ``NNSegLogic``, which delegates to ``NNSegLib.slicer`` — every decision (when a
button is enabled and why, default folders, captured inputs, overwrite rules, run discovery,
device text, the review queue, resuming a fine-tune) is made there without ``qt`` and tested
headless. Long stages run as a subprocess
``PythonSlicer -m NNSegLib <command>`` (``NNSegLib.jobs.process``; training through
``NNSegLib.jobs.detached`` so it can outlive Slicer), so Slicer stays responsive
and Cancel really stops the work.
"""

import contextlib
import importlib
import logging
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Annotated, Dict, List

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer before 5.4: no translation infrastructure
    def _(text):
        return text

    def translate(context, text):
        return text

#: Used from a clone (Slicer's *Additional module paths* = ``<clone>/NNSeg``), the library is
#: the clone's ``NNSegLib`` beside this folder; an installed extension has it in this folder.
_CLONE = pathlib.Path(__file__).resolve().parent.parent
if (_CLONE / "NNSegLib" / "__init__.py").is_file() and str(_CLONE) not in sys.path:
    sys.path.insert(0, str(_CLONE))

#: The Train panel's choices, the usual one first: NNSegLib.planning.plans.CONFIGURATIONS
#: reordered (spelled out so the module loads before NNSegLib's dependencies are installed;
#: Testing/extension/test_slicer_module.py checks that the two hold the same names).
TRAIN_CONFIGURATIONS = ["3d_fullres", "2d", "3d_lowres", "3d_cascade_fullres"]

DEVICES = ["auto", "cpu", "cuda", "mps"]
#: Packages Slicer ships: never (re)installed by this module.
SLICER_OWNED = ("numpy", "simpleitk", "vtk", "torch")
#: Panel → (Apply button, its text); while the panel's job runs the button is Cancel.
APPLY_BUTTONS = {"plan": ("planButton", _("Plan")), "train": ("trainButton", _("Train")),
                 "findbest": ("findBestButton", _("Find best configuration")),
                 "segment": ("segmentButton", _("Segment")),
                 "batch": ("batchButton", _("Segment batch")),
                 "finetune": ("fineTuneButton", _("Fine-tune"))}
#: Panel → (progress bar, status label) of its job.
JOB_WIDGETS = {"plan": ("planProgressBar", "planStatusLabel"),
               "train": ("trainProgressBar", "trainStatusLabel"),
               "findbest": ("trainProgressBar", "trainStatusLabel"),
               "segment": ("segmentProgressBar", "segmentStatusLabel"),
               "batch": ("batchProgressBar", "batchStatusLabel"),
               "finetune": ("fineTuneProgressBar", "fineTuneStatusLabel")}


@contextlib.contextmanager
def showingErrors(message: str, waitCursor: bool = True):
    """Slicer's tryWithErrorDisplay (the error shown with its details), without re-raising:
    for one step of a handler whose other steps must still run."""
    try:
        with slicer.util.tryWithErrorDisplay(message, waitCursor=waitCursor):
            yield
    except Exception:
        logging.debug("NNSeg: %s (shown to the user)", message, exc_info=True)


def _lib(name: str):
    """``NNSegLib.slicer.<name>``, imported on first use (after dependencies are installed)."""
    return importlib.import_module(f"NNSegLib.slicer.{name}")


#
# NNSeg
#
class NNSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and help."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("NNSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["NNSeg contributors"]
        self.parent.helpText = _(
            "Train and apply self-configuring U-Nets (the nnU-Net method) on segmentations "
            "made in Slicer. <b>Dataset</b>: collect volumes with their segmentations and "
            "export an nnU-Net raw dataset. <b>Plan</b>: fingerprint the data and plan each "
            "configuration for the detected device. <b>Train</b>: train folds with a live "
            "loss/Dice chart, resume or re-attach to runs, choose the best configuration and "
            "open its evaluation report. <b>Segment</b>: apply a trained, imported (zip) or "
            "nnU-Net v2 model. <b>Batch and review</b>: segment a folder or several volumes, "
            "review the least certain cases first with their uncertainty map, add corrected "
            "cases to the dataset and fine-tune. The same steps run headless with the "
            "<code>nnseg</code> command.")
        self.parent.acknowledgementText = _(
            "Implements the method of Isensee et al., nnU-Net (Nature Methods 2021). "
            "Module layout follows Slicer's scripted module template.")


#
# Parameter node
#
@parameterNodeWrapper
class NNSegParameterNode:
    """Every setting of the five panels (saved with the scene; the training case list is
    kept as node references of the same node, NNSegLib.slicer.case_list)."""

    # Dataset
    trainingVolume: vtkMRMLScalarVolumeNode
    trainingSegmentation: vtkMRMLSegmentationNode
    channelNames: str = "CT"
    datasetFolder: pathlib.Path
    # Plan
    workFolder: pathlib.Path
    recipe: Annotated[str, Choice(["paper", "v2"])] = "paper"
    memoryBudgetGB: Annotated[float, WithinRange(1.0, 200.0)] = 8.0
    memoryBudgetAuto: bool = True
    configurations: str = ""
    # Train
    trainConfiguration: Annotated[str, Choice(TRAIN_CONFIGURATIONS)] = "3d_fullres"
    folds: str = "0"
    maxEpochs: Annotated[int, WithinRange(1, 10000)] = 1000
    device: Annotated[str, Choice(DEVICES)] = "auto"
    detachTraining: bool = False
    timeBudget: bool = False
    timeBudgetMinutes: Annotated[int, WithinRange(1, 100000)] = 60
    # Segment
    modelPath: pathlib.Path
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    predictDevice: Annotated[str, Choice(DEVICES)] = "auto"
    predictFolds: str = ""
    tta: bool = True
    uncertainty: bool = False
    postprocessing: bool = True
    show3D: bool = False
    allowUnfinished: bool = False
    previewFirst: bool = False
    # Batch and review
    batchSource: Annotated[str, Choice(["folder", "scene volumes"])] = "folder"
    batchInputFolder: pathlib.Path
    batchFolder: pathlib.Path
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    fineTuneEpochs: Annotated[int, WithinRange(0, 10000)] = 0
    fineTuneAdaptHead: bool = False


#
# Widget
#
class NNSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI wiring only: every decision comes from :class:`NNSegLogic`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.board = None
        self.epochRecords: List[dict] = []
        self.chartNode = None
        self.channelSelectors: List[object] = []
        self.modelInfo: Dict[str, object] = {}
        self.runs: list = []
        self.deviceInfo = None
        self.deviceInfos: Dict[str, object] = {}
        self._busy = False
        self.defaultTips: Dict[str, str] = {}
        self.trainOptions: List[str] = []  # extra `nnseg train` options (the self-test's)
        self._seen = {"dataset": None, "work": None, "batch": None}
        self.review = None
        self.reviewTable = None

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NNSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = NNSegLogic()
        self.board = self.logic.jobBoard()
        self.review = self.logic.reviewSession()
        self.timer = qt.QTimer()
        self.timer.setInterval(300)
        self.timer.connect("timeout()", self.onTimer)
        scene = slicer.mrmlScene
        self.addObserver(scene, scene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(scene, scene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(scene, scene.NodeAddedEvent, self.updateGui)
        self.addObserver(scene, scene.NodeRemovedEvent, self.updateGui)
        self.connectSignals()
        self.defaultTips = {name: getattr(self.ui, name).toolTip
                            for name in self.logic.buttonRules(self.logic.emptyState())}
        self.initializeParameterNode()
        qt.QTimer.singleShot(0, self.onStartup)

    def connectSignals(self) -> None:
        import qt

        self.ui.pairsTableWidget.setHorizontalHeaderLabels(
            [_("Volume(s)"), _("Segmentation"), _("Segments")])
        for table in (self.ui.pairsTableWidget, self.ui.plansTableWidget,
                      self.ui.reviewTableWidget, self.ui.fineTuneTableWidget):
            # columns as wide as their texts (the default 100 px cut headers and names)
            table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        self.ui.reviewTableWidget.verticalHeader().setVisible(False)  # its "#" column ranks
        for name, handler in (
                ("addPairButton", self.onAddPair), ("addAllButton", self.onAddAll),
                ("addFromFolderButton", self.onAddFromFolder),
                ("removePairButton", self.onRemovePair), ("clearPairsButton", self.onClearPairs),
                ("exportDatasetButton", self.onExportDataset), ("planButton", self.onPlan),
                ("trainButton", lambda: self.onTrain(resume=False)),
                ("resumeButton", lambda: self.onTrain(resume=True)),
                ("findBestButton", self.onFindBest), ("openReportButton", self.onOpenReport),
                ("useTrainedModelButton", self.onUseTrainedModel),
                ("segmentButton", self.onSegment), ("batchButton", self.onBatch),
                ("acceptButton", lambda: self.onMark("accepted")),
                ("needsCorrectionButton", lambda: self.onMark("needs_correction")),
                ("addToDatasetButton", self.onAddToDataset),
                ("fineTuneButton", self.onFineTune)):
            getattr(self.ui, name).connect("clicked(bool)", handler)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelChanged)
        self.ui.runsListWidget.connect("currentRowChanged(int)", self.onRunSelected)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateGui)
        self.ui.batchVolumesSelector.connect("checkedNodesChanged()", self.updateGui)
        self.ui.datasetCaseNameLineEdit.connect("textChanged(QString)", self.updateGui)
        self.ui.reviewTableWidget.connect("cellClicked(int,int)", self.onReviewRowClicked)
        self.ui.overlayOpacitySliderWidget.connect("valueChanged(double)", self.onOpacityChanged)

    def onStartup(self) -> None:
        """After the panel shows: detect the device, list runs, re-attach to running ones."""
        with showingErrors(_("Could not inspect the device.")):
            self.deviceInfo = self.logic.detectDevice()
            self.ui.deviceInfoLabel.text = self.logic.describeDevice(self.deviceInfo)
            self.applyDeviceBudget()
        self.refreshRuns(reattach=True)
        self.refreshReview()

    # -- parameter node (template pattern) ---------------------------------------------
    def cleanup(self) -> None:
        kept = self.board.shutdown() if self.board else []
        if kept:
            logging.info("NNSeg: left running after Slicer closes: " + ", ".join(kept))
        self.timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        for key in self.board.scene_closing():
            self.statusLabel(key).text = _("Cancelled: the scene was closed.")
        self.chartNode = None
        self.review.reset()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        import qt

        self.setParameterNode(self.logic.getParameterNode())
        p, settings = self._parameterNode, qt.QSettings()
        remembered = {k: settings.value(v) for k, v in self.logic.settingsKeys().items()}
        folders = self.logic.initialFolders(p.datasetFolder, p.workFolder, remembered)
        p.datasetFolder, p.workFolder = folders["dataset"], folders["work"]
        model = self.logic.initialModel(p.modelPath, remembered)
        if model is not None and model != p.modelPath:
            p.modelPath = model
        batch = self.logic.initialBatchFolder(p.batchFolder, remembered)
        if batch != p.batchFolder:
            p.batchFolder = batch
        self.updateGui()

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.onParameterChanged)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self.onParameterChanged)

    def onParameterChanged(self, caller=None, event=None) -> None:
        import qt

        p = self._parameterNode
        dataset, work = str(p.datasetFolder), str(p.workFolder)
        if dataset != self._seen["dataset"]:
            new_work = self.logic.followDataset(self._seen["dataset"], dataset, work)
            self._seen["dataset"] = dataset
            if new_work is not None:
                p.workFolder = new_work  # triggers this handler again
                return
        settings, batch = qt.QSettings(), str(p.batchFolder)
        for key, value in (("dataset", dataset), ("work", work), ("batch", batch)):
            if not self.logic.isUnset(value):
                settings.setValue(self.logic.settingsKeys()[key], value)
        if work != self._seen["work"]:
            self._seen["work"] = work
            self.refreshRuns()
        if batch != self._seen["batch"]:
            self._seen["batch"] = batch
            self.refreshReview()
        self.applyDeviceBudget()
        self.updateGui()

    # -- enabling, locking, texts ------------------------------------------------------
    @contextlib.contextmanager
    def busy(self):
        """Adding/removing many nodes: update the panels once at the end, not per node."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False
            self.updateGui()

    def updateGui(self, caller=None, event=None) -> None:
        """Buttons enabled (with the reason as tooltip), inputs of running jobs locked."""
        if self._parameterNode is None or self.board is None or self._busy:
            return
        p, running = self._parameterNode, self.board.running
        self.refreshCases()
        state = self.logic.panelState(
            slicer.mrmlScene, p, self.segmentVolumes(), self.modelInfo.get("channels"),
            self.runs, running, self.batchVolumes(), self.review,
            self.ui.datasetCaseNameLineEdit.text)
        locked, inputs = self.logic.lockedWidgets(running), self.logic.enabledInputs(state)
        for name, rule in self.logic.buttonRules(state).items():
            button = getattr(self.ui, name)
            button.enabled = rule.enabled and name not in locked
            button.toolTip = rule.reason or self.defaultTips.get(name, "")
        for name in self.logic.lockableWidgets():
            if not name.endswith("Button"):
                getattr(self.ui, name).enabled = name not in locked and inputs.get(name, True)
        for key, (name, text) in APPLY_BUTTONS.items():
            getattr(self.ui, name).text = _("Cancel") if key in running else text
        self.ui.trainWarningLabel.text = self.logic.cpuTrainingWarning(
            self.deviceFor(p.device), p.workFolder, p.trainConfiguration, p.folds,
            p.maxEpochs, p.timeBudget, p.timeBudgetMinutes) or ""
        for name, text in self.logic.infoTexts(state).items():
            getattr(self.ui, name).text = text
        self.ui.segmentTimeLabel.text = self.logic.describeSegmentTimes(
            self.segmentTimes(), p.modelPath, self.deviceFor(p.predictDevice),
            self.segmentVolumes(), p.predictFolds, p.tta, p.allowUnfinished)

    def deviceFor(self, requested: str):
        """The device a panel's choice resolves to (detected once per choice)."""
        if self.deviceInfo is None:
            return None
        if requested not in self.deviceInfos:
            self.deviceInfos[requested] = self.logic.detectDevice(requested)
        return self.deviceInfos[requested]

    def applyDeviceBudget(self) -> None:
        p = self._parameterNode
        if p is not None and self.deviceInfo is not None and p.memoryBudgetAuto:
            budget = self.logic.memoryBudget(self.deviceInfo)
            if abs(p.memoryBudgetGB - budget) > 1e-6:
                p.memoryBudgetGB = budget

    def statusLabel(self, key: str):
        return getattr(self.ui, JOB_WIDGETS[key][1])

    def confirm(self, text: str) -> bool:
        return slicer.app.testingEnabled() or slicer.util.confirmOkCancelDisplay(text)

    # -- (1) Dataset ---------------------------------------------------------------------
    def caseNode(self):
        return self._parameterNode.parameterNode

    def onAddPair(self) -> None:
        p = self._parameterNode
        volumes = [p.trainingVolume] + list(self.ui.pairExtraChannelsSelector.checkedNodes())
        with showingErrors(_("Could not add the case."), waitCursor=False):
            self.logic.addCase(self.caseNode(), volumes, p.trainingSegmentation)

    def onAddAll(self) -> None:
        with self.busy():
            added, skipped = self.logic.addAllCases(slicer.mrmlScene, self.caseNode())
        if skipped:
            slicer.util.infoDisplay(_("Added {n} case(s). Not added:").format(n=len(added))
                                    + "\n" + "\n".join(skipped))

    def onAddFromFolder(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(None, _("Folder of images and segmentations"))
        if not folder:
            return
        with self.busy(), showingErrors(_("Loading cases failed."),
                                                          waitCursor=True):
            for volumes, segmentation in self.logic.loadCasesFromFolder(slicer.mrmlScene, folder):
                self.logic.addCase(self.caseNode(), volumes, segmentation)

    def onRemovePair(self) -> None:
        rows = {i.row() for i in self.ui.pairsTableWidget.selectedIndexes()}
        self.logic.removeCases(self.caseNode(), sorted(rows))

    def onClearPairs(self) -> None:
        self.logic.clearCases(self.caseNode())

    def refreshCases(self) -> None:
        import qt

        rows = self.logic.caseRows(self.caseNode())
        table = self.ui.pairsTableWidget
        table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for col, text in enumerate(cells):
                table.setItem(row, col, qt.QTableWidgetItem(text))
        self.ui.labelsStatusLabel.text = self.logic.describeLabels(slicer.mrmlScene,
                                                                   self.caseNode())

    def onExportDataset(self) -> None:
        p = self._parameterNode
        with self.busy(), showingErrors(_("Export failed."), waitCursor=True):
            report = self.logic.exportDataset(slicer.mrmlScene, self.caseNode(), p.datasetFolder,
                                              self.logic.parseChannelNames(p.channelNames))
            self.ui.checkResultsTextEdit.setPlainText(report)

    # -- background jobs -----------------------------------------------------------------
    def startJob(self, key: str, job, context: dict, onDone, cleanup=None) -> None:
        self.board.start(key, job, context, on_done=onDone, on_event=self.onJobEvent,
                         cleanup=cleanup)
        self.statusLabel(key).text = _("Running...")
        self.timer.start()
        self.updateGui()

    def cancelJob(self, key: str) -> bool:
        """Cancel the panel's job if one runs (its Apply button is the Cancel button)."""
        entry = self.board.get(key)
        if entry is None:
            return False
        question = self.logic.cancelQuestion(key, entry.context)
        if question and not self.confirm(question):
            return True
        self.statusLabel(key).text = _("Cancelling...")
        self.board.cancel(key)
        return True

    def onTimer(self) -> None:
        ended = self.board.poll()
        if ended:
            self.updateGui()
            if any(e.key in self.logic.trainingKeys() for e in ended):
                self.refreshRuns()
        if not self.board.running:
            self.timer.stop()

    def onJobEvent(self, entry, event: dict) -> None:
        if event.get("event") == "phase_done":
            self.onSegmentPhaseDone(entry, event)
            return
        text = self.logic.describeEvent(entry, event)
        if text is not None:
            self.statusLabel(entry.key).text = text
        value = self.logic.progressValue(entry.key, event)
        if value is not None:
            bar = getattr(self.ui, JOB_WIDGETS[entry.key][0])
            bar.maximum, bar.value = value[1], value[0]
            if entry.key == "batch":
                self.refreshReview()  # the finished case joins the table
        elif event.get("event") == "step" and entry.key in self.logic.trainingKeys():
            self.epochRecords = []
        elif event.get("event") == "epoch":
            self.epochRecords.append(event)
            self.showChart(self.epochRecords)

    def finishMessage(self, entry, what: str) -> bool:
        ok, text = self.logic.finishText(entry.job, what)
        self.statusLabel(entry.key).text = text
        if not ok and not entry.job.cancel_requested:
            slicer.util.errorDisplay(text, detailedText="\n".join(entry.job.log_tail(50)))
        return ok

    # -- (2) Plan ------------------------------------------------------------------------
    def onPlan(self) -> None:
        if self.cancelJob("plan") or not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        steps = self.logic.planSteps(p.datasetFolder, p.workFolder, p.recipe, p.memoryBudgetGB,
                                     p.configurations)
        self.startJob("plan", self.logic.startJobs(steps), {"work": p.workFolder},
                      self.onPlanDone)

    def onPlanDone(self, entry) -> None:
        if not self.finishMessage(entry, _("Planning")):
            return
        header, rows = self.logic.plansTable(entry.context["work"])
        self.fillTable(self.ui.plansTableWidget, header[1:], [r[1:] for r in rows])
        self.ui.plansTableWidget.setVerticalHeaderLabels([r[0] for r in rows])

    @staticmethod
    def fillTable(table, header: list, rows: list) -> None:
        import qt

        table.setColumnCount(len(header))
        table.setHorizontalHeaderLabels(header)
        table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                table.setItem(i, j, qt.QTableWidgetItem(text))

    # -- (3) Train -----------------------------------------------------------------------
    def onTrain(self, resume: bool) -> None:
        if self.cancelJob("train") or not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        folds = ",".join(self.logic.resumableFolds(self.runs, p.trainConfiguration)) \
            if resume else p.folds
        warning = self.ui.trainWarningLabel.text
        if warning and not self.confirm(warning + "\n\n" + _("Train anyway?")):
            return
        request = self.logic.trainRequest(p, folds, resume, self.trainOptions)
        job = self.logic.startTraining(self.logic.trainCommands(request), p.workFolder,
                                       p.detachTraining)
        self.followTraining("train", job, {"work": p.workFolder,
                                           "configuration": p.trainConfiguration,
                                           "folds": folds, "maxEpochs": p.maxEpochs}, [])

    def followTraining(self, key: str, job, context: dict, records: list) -> None:
        self.epochRecords = list(records)
        done = self.onFineTuneDone if key == "finetune" else self.onTrainDone
        self.startJob(key, job, context, done)
        self.showChart(self.epochRecords)

    def showChart(self, records: list) -> None:
        self.chartNode = self.logic.updateChart(slicer.mrmlScene, records, self.chartNode)
        slicer.modules.plots.logic().ShowChartInLayout(self.chartNode)

    def onTrainDone(self, entry) -> None:
        self.finishMessage(entry, _("Training"))
        self.ui.cvSummaryLabel.text = self.logic.crossValidationSummary(
            entry.context["work"], entry.context["configuration"])

    def refreshRuns(self, reattach: bool = False) -> None:
        p, self.runs = self._parameterNode, []
        if p is not None and not self.logic.isUnset(p.workFolder):
            with showingErrors(_("Could not read the runs."), waitCursor=True):
                live = self.logic.liveTrainingJobs(p.workFolder)
                jobs = self.logic.jobsToReattach(live, self.board.running) if reattach else []
                for key, job in jobs:
                    self.followTraining(key, *self.logic.reattach(job, p.workFolder))
                self.runs = self.logic.trainingRuns(p.workFolder, live)
        self.ui.runsListWidget.clear()
        for text in self.logic.describeRunLines(self.runs):
            self.ui.runsListWidget.addItem(text)
        self.showDidItHelp()
        self.updateGui()

    def onRunSelected(self, row: int) -> None:
        if 0 <= row < len(self.runs) and not self.board.running & self.logic.trainingKeys():
            self.showChart(self.logic.chartRecords(self.runs[row]))

    def onFindBest(self) -> None:
        if self.cancelJob("findbest") or not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        context = {"work": p.workFolder, "dataset": p.datasetFolder}
        self.startJob("findbest", self.logic.startJobs(
            self.logic.findBestSteps(p.datasetFolder, p.workFolder)), context, self.onFindBestDone)

    def onFindBestDone(self, entry) -> None:
        report = entry.context.get("report")
        if not self.finishMessage(entry, _("Evaluation") if report else _("Find best")):
            return
        work, dataset = entry.context["work"], entry.context["dataset"]
        self.ui.findBestResultTextEdit.setPlainText(self.logic.describeBest(work))
        if report:
            return
        with showingErrors(_("Could not start the evaluation."), waitCursor=True):
            steps = self.logic.reportSteps(dataset, work)
            self.startJob("findbest", self.logic.startJobs(steps), dict(entry.context, report=True),
                          self.onFindBestDone)

    def onOpenReport(self) -> None:
        import qt

        path = self.logic.reportPath(self._parameterNode.workFolder)
        if path is not None:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(path)))

    # -- (4) Segment ---------------------------------------------------------------------
    def onUseTrainedModel(self) -> None:
        self._parameterNode.modelPath = self.logic.modelFolder(self._parameterNode.workFolder)

    def onModelChanged(self, path: str) -> None:
        import qt

        if not self.logic.isUnset(path):
            qt.QSettings().setValue(self.logic.settingsKeys()["model"], path)
        self.modelInfo = self.logic.modelInfo(path)
        self.ui.modelInfoLabel.text = self.modelInfo.get("description", "")
        self.ui.postprocessingInfoLabel.text = self.logic.describePostprocessing(path)
        self.rebuildChannelSelectors(self.modelInfo.get("channels", ["image"]))
        self.updateGui()

    def rebuildChannelSelectors(self, channels) -> None:
        layout = self.ui.channelSelectorsWidget.layout()
        for selector in self.channelSelectors:
            layout.removeWidget(selector)
            selector.deleteLater()
        self.channelSelectors = []
        self.ui.inputVolumeSelector.toolTip = _("Channel 0: {name}").format(name=channels[0])
        for c, name in enumerate(channels[1:], start=1):
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.addEnabled = selector.removeEnabled = False
            selector.setMRMLScene(slicer.mrmlScene)
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateGui)
            layout.addRow(_("Channel {c} ({name}):").format(c=c, name=name), selector)
            self.channelSelectors.append(selector)

    def segmentVolumes(self) -> list:
        p = self._parameterNode
        return [p.inputVolume] + [s.currentNode() for s in self.channelSelectors]

    def onSegment(self) -> None:
        if self.cancelJob("segment") or not self.logic.ensureDependencies():
            return
        p, scene = self._parameterNode, slicer.mrmlScene
        decision = self.logic.overwriteDecision(scene, p.outputSegmentation)
        if decision.action == "ask" and not slicer.util.confirmYesNoDisplay(decision.reason):
            return
        with showingErrors(_("Could not prepare the inputs."), waitCursor=True):
            run = self.logic.captureSegment(scene, [self.segmentVolumes()],
                                            [p.outputSegmentation], self.logic.segmentRequest(p))
            try:
                job = self.logic.startSegmentJob(run)
            except Exception:
                run.cleanup()
                raise
            self.startJob("segment", job, {"run": run}, self.onSegmentDone, cleanup=run.cleanup)

    def segmentTimes(self):
        """The Segment time measurements kept in Slicer's settings (JSON text)."""
        import qt

        return qt.QSettings().value(self.logic.segmentTimesKey())

    def onSegmentPhaseDone(self, entry, event: dict) -> None:
        """A Segment phase ended: keep its time; show the preview at once."""
        import qt

        key = self.logic.segmentTimesKey()
        qt.QSettings().setValue(key, self.logic.recordSegmentTime(self.segmentTimes(), event))
        if event.get("phase") != "preview":
            return
        with self.busy(), showingErrors(_("Loading the preview failed."),
                                                          waitCursor=True):
            self.statusLabel("segment").text = self.logic.deliverPreview(slicer.mrmlScene,
                                                                         entry.job)

    def onSegmentDone(self, entry) -> None:
        ok = self.finishMessage(entry, _("Segmentation"))
        kept = self.logic.segmentOutcome(entry.job, self.statusLabel("segment").text)
        if kept:
            self.statusLabel("segment").text = kept
        if not ok:
            return
        done, failed = self.statusLabel("segment").text, _("Loading the result failed.")
        self.statusLabel("segment").text = failed  # until the result is in the scene
        with self.busy(), showingErrors(failed):
            results = self.logic.deliverResults(slicer.mrmlScene, entry.context["run"])
            notes = [n for r in results for n in r.notes]
            unc = next((r.uncertainty for r in results if r.uncertainty is not None), None)
            if unc is not None:
                slicer.util.setSliceViewerLayers(foreground=unc, foregroundOpacity=0.4)
            if notes:
                slicer.util.warningDisplay("\n".join(notes))
            self.statusLabel("segment").text = done
        logging.info(f"Processing completed in {entry.job.elapsed:.1f} s")

    # -- (5) Batch and review ------------------------------------------------------------
    def batchVolumes(self) -> list:
        return list(self.ui.batchVolumesSelector.checkedNodes())

    def onBatch(self) -> None:
        if self.cancelJob("batch") or not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        with showingErrors(_("Could not prepare the batch."), waitCursor=True):
            job = self.logic.startBatch(self.review, p, self.batchVolumes(),
                                        self.modelInfo.get("channels"))
            self.startJob("batch", self.logic.startJobs(job["steps"]), {"batch": job["batch"]},
                          self.onBatchDone)

    def onBatchDone(self, entry) -> None:
        self.finishMessage(entry, _("Batch"))
        self.refreshReview()

    def refreshReview(self) -> None:
        """The review table from the batch folder's queue file (survives restarts)."""
        p = self._parameterNode
        if p is None:
            return
        with showingErrors(_("Could not read the review queue."), waitCursor=False):
            self.reviewTable = self.logic.reviewTable(p.batchFolder)
            self.fillTable(self.ui.reviewTableWidget, self.reviewTable.header,
                           self.reviewTable.rows)
            self.ui.batchInfoLabel.text = self.logic.describeBatch(p.batchFolder)
        self.updateGui()

    def onReviewRowClicked(self, row: int, column: int = 0) -> None:
        if self.reviewTable is None or not 0 <= row < len(self.reviewTable.cases):
            return
        p = self._parameterNode
        with self.busy(), showingErrors(_("Could not load the case."),
                                                          waitCursor=True):
            name = self.logic.openReviewCase(self.review, slicer.mrmlScene, p.batchFolder,
                                             self.reviewTable.cases[row], p.overlayOpacity,
                                             p.datasetFolder)
            self.ui.datasetCaseNameLineEdit.text = name
            self.ui.reviewCaseLabel.text = self.logic.describeReviewCase(self.review)
            self.ui.reviewStatusLabel.text = ""

    def onOpacityChanged(self, value: float) -> None:
        self.review.set_opacity(slicer.mrmlScene, value)

    def onMark(self, state: str) -> None:
        with showingErrors(_("Could not save the review state."), waitCursor=False):
            self.review.mark(state)
        self.ui.reviewCaseLabel.text = self.logic.describeReviewCase(self.review)
        self.refreshReview()

    def onAddToDataset(self) -> None:
        p, name = self._parameterNode, self.ui.datasetCaseNameLineEdit.text
        decision = self.logic.addDecision(p.datasetFolder, name)
        if decision.action == "refuse":
            slicer.util.errorDisplay(decision.reason)
            return
        if decision.action == "ask" and not slicer.util.confirmYesNoDisplay(decision.reason):
            return
        with self.busy(), showingErrors(_("Could not add the case."), waitCursor=True):
            self.ui.reviewStatusLabel.text = self.logic.addReviewedCase(
                self.review, slicer.mrmlScene, p.datasetFolder, name, decision.action == "ask")
            self.ui.reviewCaseLabel.text = self.logic.describeReviewCase(self.review)
        self.refreshReview()

    def onFineTune(self) -> None:
        if self.cancelJob("finetune") or not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        with showingErrors(_("Could not start fine-tuning."), waitCursor=True):
            tune = self.logic.fineTuneJob(self.logic.fineTuneRequest(p, self.trainOptions))
            job = self.logic.startTraining(tune.steps, p.workFolder, p.detachTraining, "finetune")
            self.followTraining("finetune", job, {
                "work": p.workFolder, "configuration": p.trainConfiguration, "folds": p.folds,
                "maxEpochs": tune.epochs}, [])

    def onFineTuneDone(self, entry) -> None:
        self.finishMessage(entry, _("Fine-tuning"))
        self.refreshRuns()

    def showDidItHelp(self) -> None:
        """The fine-tuned model's cross-validation Dice beside its parent's."""
        p = self._parameterNode
        if p is None:  # the panel is not shown (exit() or a closing scene)
            return
        with showingErrors(_("Could not compare the models."), waitCursor=False):
            text, header, rows = self.logic.didItHelp(p.workFolder, p.trainConfiguration)
            self.ui.fineTuneSummaryLabel.text = text
            self.fillTable(self.ui.fineTuneTableWidget, header, rows)
            self.ui.fineTuneTableWidget.visible = bool(rows)  # no empty box before a fine-tune


#
# Logic
#
class NNSegLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the GUI (scene and nodes as arguments).

    Defines what needs the Slicer application (parameter node, dialogs, file readers);
    every other method is ``NNSegLib.slicer.module_logic.ModuleLogic``'s, reached through
    ``__getattr__`` (imported on first use, so the module loads before NNSegLib's
    dependencies are installed).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.python = shutil.which("PythonSlicer") or sys.executable
        self._impl = None
        try:
            importlib.import_module("NNSegLib.util.i18n").set_translator(_)
        except ImportError:  # pragma: no cover - NNSegLib not installed next to the module
            pass

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._impl is None:
            self._impl = _lib("module_logic").ModuleLogic()
        self._impl.python = self.python
        return getattr(self._impl, name)

    def getParameterNode(self) -> NNSegParameterNode:
        return NNSegParameterNode(super().getParameterNode())

    def ensureDependencies(self, confirm: bool = True) -> bool:
        """Install missing or too old packages on first use (asks first); torch via the
        PyTorch extension with NNSegLib's version requirement. Says when a restart is due."""
        deps = _lib("dependencies")
        requirements = pathlib.Path(__file__).parent / "Resources" / "requirements.txt"
        unmet = deps.unmet_requirements(requirements, skip=SLICER_OWNED)
        restart = []
        if unmet:
            if confirm and not slicer.util.confirmOkCancelDisplay(
                    _("NNSeg needs these Python packages:") + "\n" + deps.install_message(unmet)
                    + "\n" + _("Install now?")):
                return False
            lines = [line for line, _version in unmet]
            restart += deps.restart_needed(lines)
            slicer.util.pip_install(lines)
        problem = deps.torch_problem()
        if problem:
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay(problem + "\n" + _(
                    "Install the PyTorch extension (Extensions Manager) first."))
                return False
            restart += deps.restart_needed([deps.TORCH_REQUIREMENT])
            requirement = deps.parse_requirement(deps.TORCH_REQUIREMENT).specifier
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(
                    askConfirmation=confirm, torchVersionRequirement=requirement) is None:
                return False
        if restart:
            slicer.util.infoDisplay(_(
                "Installed. Restart Slicer before using the new versions of {names} in this "
                "session (background jobs already use them).").format(names=", ".join(restart)))
        return True

    def loadCasesFromFolder(self, scene, folder) -> list:
        """Load ``<case>.nrrd`` + ``<case>.seg.nrrd`` pairs or an nnU-Net raw dataset."""
        return _lib("scene_dataset").load_cases_from_folder(scene, folder, slicer.util.loadVolume)


    def segmentInProcess(self, scene, volumes, modelPath, device: str = "auto", tta: bool = True,
                         folds: str = "", node=None, uncertainty: bool = False) -> tuple:
        """Segment in this process (blocking; scripts and tests)."""
        start = time.time()
        result = _lib("scene_predict").segment_in_process(scene, volumes, modelPath, device, tta,
                                                          folds, node, uncertainty)
        logging.info(f"Processing completed in {time.time() - start:.1f} s")
        return result


#
# Test
#
class NNSegTest(ScriptedLoadableModuleTest):
    """End-to-end checks inside Slicer: the logic on a tiny case, then the whole click path."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_ExportAndSegmentTinyCase()
        self.setUp()
        self.test_ClickPath()
        self.setUp()
        self.test_ClinicianLoop()

    def test_ExportAndSegmentTinyCase(self) -> None:
        import json

        import numpy as np

        from NNSegLib.data.io import Geometry
        from NNSegLib.slicer import mrml
        from NNSegLib.slicer.scene_predict import predict_volumes

        self.delayDisplay("Building a tiny case")
        scene = slicer.mrmlScene
        geometry = Geometry((6, 8, 10), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                            (1, 0, 0, 0, 1, 0, 0, 0, 1))
        image = np.zeros(geometry.shape, np.float32)
        image[2:4, 2:6, 3:8] = 100
        volume = mrml.volume_node_from_array(scene, image, geometry, "tiny")
        labels = (image > 50).astype(np.uint8)
        seg = mrml.segmentation_from_labels(scene, labels, geometry, {0: "background", 1: "liver"},
                                            reference_volume=volume)
        logic = NNSegLogic()
        node = logic.getParameterNode().parameterNode
        logic.clearCases(node)
        logic.addCase(node, [volume], seg)
        out = pathlib.Path(tempfile.mkdtemp()) / "Dataset999_Tiny"
        report = logic.exportDataset(scene, node, out, ["CT"])
        self.assertIn("OK", report)
        meta = json.loads((out / "dataset.json").read_text())
        self.assertEqual(meta["labels"], {"background": 0, "liver": 1})
        self.delayDisplay("Segmenting with a threshold stand-in for a model")

        def threshold(images, geometry):
            return (images[0] > 50).astype(np.uint8), None

        result, _unc = predict_volumes(scene, [volume], threshold, {0: "background", 1: "liver"})
        back, _geo = mrml.labels_from_segmentation(scene, result, {"liver": 1}, volume)
        self.assertTrue(np.array_equal(back, labels))
        self.assertEqual(logic.parseFolds("0-2,4"), ["0", "1", "2", "4"])
        shutil.rmtree(out.parent, ignore_errors=True)
        self.delayDisplay("Test passed")

    def waitFor(self, widget, key: str, timeout: float = 1800.0) -> None:
        """Process events until the panel's job ended; fail on a timeout or a failed job."""
        deadline = time.time() + timeout
        while widget.board.get(key) is not None:
            self.assertLess(time.time(), deadline, f"{key} still running after {timeout} s")
            slicer.app.processEvents()
            time.sleep(0.1)
            widget.onTimer()
        text = widget.statusLabel(key).text
        self.assertIn("completed", text, f"{key}: {text}")

    def test_ClickPath(self) -> None:
        """Dataset → Plan → Train (1 short epoch) → Segment, by clicking the module's buttons."""
        from NNSegLib.data.sample_data import generate_sample_dataset

        root = pathlib.Path(tempfile.mkdtemp(prefix="nnseg_selftest_"))
        self.delayDisplay("Loading 5 sample cases")
        samples = generate_sample_dataset(root / "samples", num_cases=5, seed=3)
        slicer.util.selectModule("NNSeg")
        widget = slicer.modules.nnseg.widgetRepresentation().self()
        widget.confirm = lambda text: True  # the CPU-time warning would wait for a click
        logic, p = widget.logic, widget._parameterNode
        logic.clearCases(p.parameterNode)
        for volumes, seg in logic.loadCasesFromFolder(slicer.mrmlScene, samples):
            p.trainingVolume, p.trainingSegmentation = volumes[0], seg
            self.assertTrue(widget.ui.addPairButton.enabled, widget.ui.addPairButton.toolTip)
            widget.ui.addPairButton.click()
        self.assertEqual(len(logic.caseRows(p.parameterNode)), 5)
        p.channelNames = "MR"
        p.datasetFolder = root / "Dataset990_SelfTest"
        p.workFolder = root / "work"
        widget.ui.exportDatasetButton.click()
        self.assertIn("OK", widget.ui.checkResultsTextEdit.toPlainText())

        self.delayDisplay("Plan")
        p.configurations = "3d_fullres"
        widget.ui.planButton.click()
        self.waitFor(widget, "plan")
        self.assertGreater(widget.ui.plansTableWidget.columnCount, 0)

        self.delayDisplay("Train one short epoch")
        p.trainConfiguration, p.folds, p.maxEpochs, p.device = "3d_fullres", "0", 1, "cpu"
        from NNSegLib.training.train_cli import train_options_argv

        widget.trainOptions = train_options_argv(iterations_per_epoch=5, val_iterations=2)
        widget.updateGui()
        self.assertTrue(widget.ui.trainButton.enabled, widget.ui.trainButton.toolTip)
        widget.ui.trainButton.click()
        self.waitFor(widget, "train")
        self.assertTrue((root / "work" / "results" / "3d_fullres" / "fold_0" /
                         "checkpoint_final.pt").is_file())

        self.delayDisplay("Segment (preview first, then the full result in the same node)")
        widget.ui.useTrainedModelButton.click()
        p.inputVolume = p.trainingVolume
        p.outputSegmentation = None
        p.previewFirst = True
        before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
        widget.updateGui()
        self.assertTrue(widget.ui.segmentButton.enabled, widget.ui.segmentButton.toolTip)
        widget.ui.segmentButton.click()
        self.waitFor(widget, "segment")
        count = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
        self.assertEqual(count, before + 1)
        result = slicer.mrmlScene.GetNthNodeByClass(count - 1, "vtkMRMLSegmentationNode")
        self.assertNotIn("(preview)", result.GetName())
        self.assertIn("preview", widget.ui.segmentTimeLabel.text)
        shutil.rmtree(root, ignore_errors=True)
        self.delayDisplay("Click path passed")

    def test_ClinicianLoop(self) -> None:
        """Issue 12's loop on the application's scene (NNSegLib.slicer.loop_walk: train, batch,
        rank, correct, add, fine-tune, segment again), then the Batch and review panel on the
        fine-tuned model: segment a folder, click the least certain case, accept it."""
        from NNSegLib.slicer import loop_walk, mrml

        root = pathlib.Path(tempfile.mkdtemp(prefix="nnseg_loop_"))
        self.delayDisplay("The clinician's loop (about a minute on a CPU)")
        ctx = mrml.SceneContext(slicer.mrmlScene, slicer.app.applicationLogic(),
                                slicer.modules.segmentations.logic())
        result = loop_walk.run_walk(root, ctx)
        self.assertEqual(loop_walk.walk_problems(result), [])

        self.delayDisplay("Batch and review panel")
        slicer.util.selectModule("NNSeg")
        widget = slicer.modules.nnseg.widgetRepresentation().self()
        p = widget._parameterNode
        p.modelPath = root / "work" / "results"
        widget.onModelChanged(str(p.modelPath))
        p.predictDevice, p.predictFolds, p.tta, p.batchSource = "cpu", "0", False, "folder"
        p.batchInputFolder, p.batchFolder = root / "batch1" / "images", root / "batch3"
        widget.updateGui()
        self.assertTrue(widget.ui.batchButton.enabled, widget.ui.batchButton.toolTip)
        widget.ui.batchButton.click()
        self.waitFor(widget, "batch")
        self.assertEqual(widget.ui.reviewTableWidget.rowCount, 3)
        widget.onReviewRowClicked(0, 0)
        self.assertTrue(widget.ui.acceptButton.enabled, widget.ui.acceptButton.toolTip)
        widget.ui.acceptButton.click()
        self.assertEqual(widget.ui.reviewTableWidget.item(0, 2).text(), "accepted")
        shutil.rmtree(root, ignore_errors=True)
        self.delayDisplay("Clinician's loop passed")
