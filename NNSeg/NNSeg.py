"""NNSeg: self-configuring U-Net segmentation (the nnU-Net method) in 3D Slicer.

A thin module: the Widget only wires the four panels (Dataset, Plan, Train, Segment) to
``NNSegLogic``; the Logic calls ``NNSegLib`` and runs long stages as a subprocess
``PythonSlicer -m NNSegLib <command> --progress-json -`` (``NNSegLib.slicer.jobs``), so Slicer
stays responsive and Cancel really stops the work.
"""

import logging
import pathlib
import shutil
import sys
import tempfile
import threading
import time
from typing import Annotated, Dict, List, Optional, Sequence

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: The Train panel's choices, the usual one first: NNSegLib.planning.plans.CONFIGURATIONS
#: reordered (spelled out so the module loads before NNSegLib's dependencies are installed;
#: Testing/extension/test_slicer_module.py checks that the two hold the same names).
TRAIN_CONFIGURATIONS = ["3d_fullres", "2d", "3d_lowres", "3d_cascade_fullres"]

DEVICES = ["auto", "cpu", "cuda", "mps"]
#: Packages Slicer ships: never (re)installed by this module.
SLICER_OWNED = ("numpy", "simpleitk", "vtk", "torch")


#
# NNSeg
#
class NNSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and help."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "NNSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["NNSeg contributors"]
        self.parent.helpText = (
            "Train and apply self-configuring U-Nets (the nnU-Net method) on segmentations "
            "made in Slicer. <b>Dataset</b>: pair volumes with segmentations and export an "
            "nnU-Net raw dataset. <b>Plan</b>: fingerprint the data and plan each "
            "configuration. <b>Train</b>: train folds with a live loss/Dice chart. "
            "<b>Segment</b>: apply a trained, imported (zip) or nnU-Net v2 model. "
            "The same steps run headless with the <code>nnseg</code> command."
        )
        self.parent.acknowledgementText = (
            "Implements the method of Isensee et al., nnU-Net (Nature Methods 2021). "
            "Module layout follows Slicer's scripted module template."
        )


#
# Parameter node
#
@parameterNodeWrapper
class NNSegParameterNode:
    """Every setting of the four panels (saved with the scene)."""

    # Dataset
    trainingVolume: vtkMRMLScalarVolumeNode
    trainingSegmentation: vtkMRMLSegmentationNode
    channelNames: str = "CT"
    datasetFolder: pathlib.Path
    # Plan
    workFolder: pathlib.Path
    recipe: Annotated[str, Choice(["paper", "v2"])] = "paper"
    memoryBudgetGB: Annotated[float, WithinRange(1.0, 200.0)] = 8.0
    configurations: str = ""
    # Train
    trainConfiguration: Annotated[str, Choice(TRAIN_CONFIGURATIONS)] = "3d_fullres"
    folds: str = "0"
    maxEpochs: Annotated[int, WithinRange(1, 10000)] = 1000
    device: Annotated[str, Choice(DEVICES)] = "auto"
    # Segment
    modelPath: pathlib.Path
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    predictDevice: Annotated[str, Choice(DEVICES)] = "auto"
    predictFolds: str = ""
    tta: bool = True
    uncertainty: bool = False


#
# Widget
#
class NNSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI wiring only: every action calls :class:`NNSegLogic`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.pairs: List[Dict[str, object]] = []
        self.jobs: Dict[str, object] = {}
        self.epochRecords: List[dict] = []
        self.chartNode = None
        self.channelSelectors: List[object] = []

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NNSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = NNSegLogic()
        self.timer = qt.QTimer()
        self.timer.setInterval(300)
        self.timer.connect("timeout()", self.onTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.pairsTableWidget.setHorizontalHeaderLabels(
            ["Volume(s)", "Segmentation", "Segments"])
        self.ui.addPairButton.connect("clicked(bool)", self.onAddPair)
        self.ui.addFromFolderButton.connect("clicked(bool)", self.onAddFromFolder)
        self.ui.removePairButton.connect("clicked(bool)", self.onRemovePair)
        self.ui.clearPairsButton.connect("clicked(bool)", self.onClearPairs)
        self.ui.exportDatasetButton.connect("clicked(bool)", self.onExportDataset)
        self.ui.planButton.connect("clicked(bool)", self.onPlan)
        self.ui.trainButton.connect("clicked(bool)", lambda: self.onTrain(resume=False))
        self.ui.resumeButton.connect("clicked(bool)", lambda: self.onTrain(resume=True))
        self.ui.useTrainedModelButton.connect("clicked(bool)", self.onUseTrainedModel)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelChanged)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.initializeParameterNode()

    # -- parameter node (template pattern) ---------------------------------------------
    def cleanup(self) -> None:
        for job in self.jobs.values():
            threading.Thread(target=job.cancel, daemon=True).start()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.pairs = []
        self.chartNode = None
        self.refreshPairs()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[NNSegParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # -- (1) Dataset ---------------------------------------------------------------------
    def onAddPair(self) -> None:
        p = self._parameterNode
        if not p.trainingVolume or not p.trainingSegmentation:
            slicer.util.errorDisplay("Select a volume and its segmentation first.")
            return
        volumes = [p.trainingVolume] + list(self.ui.pairExtraChannelsSelector.checkedNodes())
        self.pairs.append({"volumes": [v.GetID() for v in volumes],
                           "segmentation": p.trainingSegmentation.GetID()})
        self.refreshPairs()

    def onAddFromFolder(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(None, "Folder of images and segmentations")
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay("Loading cases failed.", waitCursor=True):
            for volumes, segmentation in self.logic.loadCasesFromFolder(slicer.mrmlScene, folder):
                self.pairs.append({"volumes": [v.GetID() for v in volumes],
                                   "segmentation": segmentation.GetID()})
        self.refreshPairs()

    def onRemovePair(self) -> None:
        rows = sorted({i.row() for i in self.ui.pairsTableWidget.selectedIndexes()}, reverse=True)
        for row in rows:
            del self.pairs[row]
        self.refreshPairs()

    def onClearPairs(self) -> None:
        self.pairs = []
        self.refreshPairs()

    def refreshPairs(self) -> None:
        import qt

        table = self.ui.pairsTableWidget
        table.setRowCount(len(self.pairs))
        scene = slicer.mrmlScene
        for row, pair in enumerate(self.pairs):
            vols = [scene.GetNodeByID(i) for i in pair["volumes"]]
            seg = scene.GetNodeByID(pair["segmentation"])
            cells = [", ".join(v.GetName() if v else "(deleted)" for v in vols),
                     seg.GetName() if seg else "(deleted)",
                     ", ".join(self.logic.segmentNames(seg)) if seg else ""]
            for col, text in enumerate(cells):
                table.setItem(row, col, qt.QTableWidgetItem(text))
        self.ui.labelsStatusLabel.text = self.logic.describeLabels(scene, self.pairs)

    def onExportDataset(self) -> None:
        p = self._parameterNode
        if not str(p.datasetFolder) or str(p.datasetFolder) == ".":
            slicer.util.errorDisplay("Choose the dataset folder to write (e.g. Dataset010_Liver).")
            return
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            report = self.logic.exportDataset(slicer.mrmlScene, self.pairs, p.datasetFolder,
                                              self.logic.parseChannelNames(p.channelNames))
            self.ui.checkResultsTextEdit.setPlainText(report)

    # -- background jobs -----------------------------------------------------------------
    def startJob(self, key: str, steps: List[List[str]], button, onDone) -> None:
        with slicer.util.tryWithErrorDisplay("Could not start the job.", waitCursor=False):
            if not self.logic.ensureDependencies():
                return
            job = self.logic.startJobs(steps)
            job.button, job.buttonText, job.onDone = button, button.text, onDone
            self.jobs[key] = job
            button.text = "Cancel"
            self.timer.start()

    def cancelJob(self, key: str) -> bool:
        """Cancel the job of a panel if one runs (the Apply button is its Cancel)."""
        job = self.jobs.get(key)
        if job is None:
            return False
        job.button.text = "Cancelling..."
        job.button.enabled = False
        threading.Thread(target=job.cancel, daemon=True).start()
        return True

    def onTimer(self) -> None:
        for key, job in list(self.jobs.items()):
            for event in job.poll():
                self.onEvent(key, event)
            if job.finished:
                del self.jobs[key]
                job.button.text, job.button.enabled = job.buttonText, True
                job.onDone(job)
        if not self.jobs:
            self.timer.stop()

    def onEvent(self, key: str, event: dict) -> None:
        from NNSegLib.slicer.jobs import estimate_eta, format_eta

        bar = {"plan": self.ui.planProgressBar, "train": self.ui.trainProgressBar,
               "segment": self.ui.segmentProgressBar}[key]
        label = {"plan": self.ui.planStatusLabel, "train": self.ui.trainStatusLabel,
                 "segment": self.ui.segmentStatusLabel}[key]
        kind = event.get("event")
        if kind in ("start", "progress") and event.get("total"):
            bar.maximum, bar.value = int(event["total"]), int(event.get("current", 0))
            if key != "train":
                eta = estimate_eta(self.jobs[key].elapsed, bar.value, bar.maximum)
                label.text = (f"{event.get('stage', '')}: {bar.value}/{bar.maximum}, "
                              f"ETA {format_eta(eta)}")
        elif kind == "epoch":
            self.epochRecords.append(event)
            self.chartNode = self.logic.updateChart(
                slicer.mrmlScene, self.epochRecords, self.chartNode)
            label.text = self.logic.describeEpoch(event, self._parameterNode.maxEpochs)
        elif kind == "message":
            logging.info(event.get("text", ""))
        elif kind == "log":
            logging.debug(event.get("text", ""))
        elif kind == "error":
            label.text = event.get("message", "")

    def finishMessage(self, job, label, what: str) -> bool:
        from NNSegLib.slicer.jobs import JobStatus

        if job.status is JobStatus.OK:
            label.text = f"{what} completed in {job.elapsed:.0f} s"
            return True
        label.text = f"{what} {job.status.value}: {job.error_message() or ''}"
        if job.status is not JobStatus.CANCELLED:
            slicer.util.errorDisplay(f"{what} failed:\n{job.error_message()}",
                                     detailedText="\n".join(job.current.log[-50:]))
        return False

    # -- (2) Plan ------------------------------------------------------------------------
    def onPlan(self) -> None:
        if self.cancelJob("plan"):
            return
        p = self._parameterNode
        steps = self.logic.planSteps(p.datasetFolder, p.workFolder, p.recipe, p.memoryBudgetGB,
                                     p.configurations)
        self.startJob("plan", steps, self.ui.planButton, self.onPlanDone)

    def onPlanDone(self, job) -> None:
        import qt

        if not self.finishMessage(job, self.ui.planStatusLabel, "Planning"):
            return
        header, rows = self.logic.plansTable(self._parameterNode.workFolder)
        table = self.ui.plansTableWidget
        table.setColumnCount(len(header) - 1)
        table.setHorizontalHeaderLabels(header[1:])
        table.setRowCount(len(rows))
        table.setVerticalHeaderLabels([r[0] for r in rows])
        for i, row in enumerate(rows):
            for j, text in enumerate(row[1:]):
                table.setItem(i, j, qt.QTableWidgetItem(text))

    # -- (3) Train -----------------------------------------------------------------------
    def onTrain(self, resume: bool) -> None:
        if self.cancelJob("train"):
            return
        p = self._parameterNode
        self.epochRecords = []
        steps = self.logic.trainSteps(p.datasetFolder, p.workFolder, p.trainConfiguration,
                                      p.folds, p.maxEpochs, p.device, resume)
        button = self.ui.resumeButton if resume else self.ui.trainButton
        self.startJob("train", steps, button, self.onTrainDone)
        if self.chartNode is None:
            self.chartNode = self.logic.updateChart(slicer.mrmlScene, [], None)
        slicer.modules.plots.logic().ShowChartInLayout(self.chartNode)

    def onTrainDone(self, job) -> None:
        self.finishMessage(job, self.ui.trainStatusLabel, "Training")
        p = self._parameterNode
        self.ui.cvSummaryLabel.text = self.logic.crossValidationSummary(
            p.workFolder, p.trainConfiguration)

    # -- (4) Segment ---------------------------------------------------------------------
    def onUseTrainedModel(self) -> None:
        self.ui.modelPathLineEdit.currentPath = str(
            self.logic.modelFolder(self._parameterNode.workFolder))

    def onModelChanged(self, path: str) -> None:
        info = self.logic.modelInfo(path)
        self.ui.modelInfoLabel.text = info.get("description", "")
        self.rebuildChannelSelectors(info.get("channels", ["image"]))

    def rebuildChannelSelectors(self, channels: Sequence[str]) -> None:
        layout = self.ui.channelSelectorsWidget.layout()
        for selector in self.channelSelectors:
            layout.removeWidget(selector)
            selector.deleteLater()
        self.channelSelectors = []
        self.ui.inputVolumeSelector.toolTip = f"Channel 0: {channels[0]}"
        for c, name in enumerate(channels[1:], start=1):
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.addEnabled = selector.removeEnabled = False
            selector.setMRMLScene(slicer.mrmlScene)
            layout.addRow(f"Channel {c} ({name}):", selector)
            self.channelSelectors.append(selector)

    def onSegment(self) -> None:
        if self.cancelJob("segment"):
            return
        p = self._parameterNode
        volumes = [p.inputVolume] + [s.currentNode() for s in self.channelSelectors]
        if any(v is None for v in volumes):
            slicer.util.errorDisplay("Select an input volume for every channel.")
            return
        with slicer.util.tryWithErrorDisplay("Could not prepare the inputs.", waitCursor=True):
            self.segmentRun = self.logic.prepareSegmentation(
                volumes, p.modelPath, p.predictFolds, p.predictDevice, p.tta, p.uncertainty)
            self.startJob("segment", self.segmentRun["steps"], self.ui.segmentButton,
                          self.onSegmentDone)

    def onSegmentDone(self, job) -> None:
        run, p = self.segmentRun, self._parameterNode
        try:
            if not self.finishMessage(job, self.ui.segmentStatusLabel, "Segmentation"):
                return
            with slicer.util.tryWithErrorDisplay("Loading the result failed.", waitCursor=True):
                seg, unc = self.logic.loadSegmentationResult(
                    slicer.mrmlScene, run, p.inputVolume, p.outputSegmentation)
                p.outputSegmentation = seg
                if unc is not None:
                    slicer.util.setSliceViewerLayers(foreground=unc, foregroundOpacity=0.4)
            logging.info(f"Processing completed in {job.elapsed:.1f} s")
        finally:
            shutil.rmtree(run["tmp"], ignore_errors=True)


#
# Logic
#
class NNSegLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the GUI (scene and nodes as arguments)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.python = shutil.which("PythonSlicer") or sys.executable

    def getParameterNode(self) -> NNSegParameterNode:
        return NNSegParameterNode(super().getParameterNode())

    # -- dependencies --------------------------------------------------------------------
    @staticmethod
    def missingRequirements(requirementsPath: pathlib.Path) -> List[str]:
        """Requirement lines of ``requirements.txt`` whose module cannot be imported."""
        from NNSegLib.slicer.dependencies import missing_requirements

        return missing_requirements(requirementsPath, skip=SLICER_OWNED)

    def ensureDependencies(self, confirm: bool = True) -> bool:
        """Install missing packages on first use (asks first); torch via the PyTorch extension."""
        requirements = pathlib.Path(__file__).parent / "Resources" / "requirements.txt"
        missing = self.missingRequirements(requirements)
        if missing:
            if confirm and not slicer.util.confirmOkCancelDisplay(
                    "NNSeg needs these Python packages:\n" + "\n".join(missing) + "\nInstall now?"):
                return False
            slicer.util.pip_install(missing)
        try:
            import torch  # noqa: F401
        except ImportError:
            try:
                import PyTorchUtils
            except ImportError:
                slicer.util.errorDisplay(
                    "Install the PyTorch extension (Extensions Manager) first.")
                return False
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if torchLogic.installTorch(askConfirmation=confirm) is None:
                return False
        return True

    # -- jobs ----------------------------------------------------------------------------
    def startJobs(self, steps: List[List[str]], cwd: Optional[str] = None):
        from NNSegLib.slicer.jobs import JobChain

        return JobChain(steps, python=self.python, cwd=cwd)

    @staticmethod
    def parseFolds(text: str) -> List[str]:
        from NNSegLib.data.splits import parse_folds

        return [str(f) for f in parse_folds(text)]

    @staticmethod
    def parseChannelNames(text: str) -> List[str]:
        return [c.strip() for c in str(text).split(",") if c.strip()] or ["image"]

    @staticmethod
    def planSteps(dataset, work, recipe: str, memoryGB: float,
                  configurations: str) -> List[List[str]]:
        """Commands of the Plan panel: fingerprint, then plan with the overrides."""
        from NNSegLib.slicer.panel_commands import plan_commands

        return plan_commands(dataset, work, recipe, memoryGB, configurations)

    @staticmethod
    def trainSteps(dataset, work, configuration: str, folds: str, maxEpochs: int,
                   device: str, resume: bool) -> List[List[str]]:
        """Commands of the Train panel: preprocess, then one training run per fold."""
        from NNSegLib.slicer.panel_commands import train_commands

        return train_commands(dataset, work, configuration, folds, maxEpochs, device, resume)

    # -- dataset -------------------------------------------------------------------------
    @staticmethod
    def segmentNames(segmentationNode) -> List[str]:
        from NNSegLib.slicer import mrml

        return mrml.segment_names(segmentationNode)

    @staticmethod
    def _pairs(scene, pairs: Sequence[dict]):
        return [([scene.GetNodeByID(i) for i in p["volumes"]], scene.GetNodeByID(p["segmentation"]))
                for p in pairs]

    def describeLabels(self, scene, pairs: Sequence[dict]) -> str:
        """Unified labels and every conflict, as shown under the table."""
        from NNSegLib.slicer.gui_summaries import describe_training_set
        from NNSegLib.slicer.scene_dataset import collect_training_pairs

        if not pairs:
            return "No cases yet."
        return describe_training_set(collect_training_pairs(scene, self._pairs(scene, pairs)))

    def exportDataset(self, scene, pairs: Sequence[dict], outDir, channelNames: List[str]) -> str:
        """Write the nnU-Net raw dataset and return the dataset check's report."""
        from NNSegLib.data.check import check_dataset
        from NNSegLib.slicer.scene_dataset import export_dataset

        out = export_dataset(scene, self._pairs(scene, pairs), outDir, channelNames)
        return check_dataset(out, workers=1).format()

    def loadCasesFromFolder(self, scene, folder) -> list:
        """Load ``<case>.nii.gz``/``.nrrd`` + ``<case>.seg.nrrd`` pairs, or an nnU-Net raw
        dataset (``imagesTr``/``labelsTr``); needs the Slicer application (file readers)."""
        from NNSegLib.slicer.scene_dataset import load_cases_from_folder

        return load_cases_from_folder(scene, folder, slicer.util.loadVolume)

    # -- plan / train results ------------------------------------------------------------
    @staticmethod
    def workspace(work):
        from NNSegLib.util.workspace import Workspace

        return Workspace(pathlib.Path(work))

    def plansTable(self, work) -> tuple:
        """``(header, rows)`` of the plan: one column per configuration."""
        from NNSegLib.slicer.gui_summaries import plans_table

        return plans_table(work)

    def updateChart(self, scene, records: List[dict], chartNode=None):
        from NNSegLib.slicer import mrml

        return mrml.training_chart(scene, records, chartNode)

    @staticmethod
    def describeEpoch(event: dict, maxEpochs: int) -> str:
        from NNSegLib.slicer.gui_summaries import describe_epoch

        return describe_epoch(event, maxEpochs)

    def crossValidationSummary(self, work, configuration: str) -> str:
        """Mean foreground Dice of each fold's final validation, and their mean."""
        from NNSegLib.slicer.gui_summaries import cross_validation_summary

        return cross_validation_summary(work, configuration)

    def modelFolder(self, work) -> pathlib.Path:
        return self.workspace(work).results

    # -- segment -------------------------------------------------------------------------
    @staticmethod
    def modelInfo(path) -> dict:
        """Channels, labels and a one-line description of a model folder (or zip)."""
        from NNSegLib.slicer.gui_summaries import model_info

        return model_info(path)

    def prepareSegmentation(self, volumes, modelPath, folds: str, device: str, tta: bool,
                            uncertainty: bool) -> dict:
        """Write the input volumes to a temporary folder and build the job's commands."""
        from NNSegLib.slicer.scene_predict import prepare_predict_job

        return prepare_predict_job(volumes, modelPath, folds, device, tta, uncertainty)

    def loadSegmentationResult(self, scene, run: dict, referenceVolume, node=None) -> tuple:
        """Read the prediction written by the job into a segmentation node (+ uncertainty)."""
        from NNSegLib.slicer.scene_predict import load_predict_job_result

        return load_predict_job_result(scene, run, referenceVolume, node)

    def segmentInProcess(self, scene, volumes, modelPath, device: str = "auto", tta: bool = True,
                         folds: str = "", node=None, uncertainty: bool = False) -> tuple:
        """Segment in this process (blocking; scripts and tests)."""
        from NNSegLib.slicer.scene_predict import segment_in_process

        start = time.time()
        result = segment_in_process(scene, volumes, modelPath, device, tta, folds, node,
                                    uncertainty)
        logging.info(f"Processing completed in {time.time() - start:.1f} s")
        return result


#
# Test
#
class NNSegTest(ScriptedLoadableModuleTest):
    """Tiny end-to-end checks of the logic inside Slicer."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_ExportAndSegmentTinyCase()

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
        out = pathlib.Path(tempfile.mkdtemp()) / "Dataset999_Tiny"
        pairs = [{"volumes": [volume.GetID()], "segmentation": seg.GetID()}]
        report = logic.exportDataset(scene, pairs, out, ["CT"])
        self.assertIn("OK", report)
        meta = json.loads((out / "dataset.json").read_text())
        self.assertEqual(meta["labels"], {"background": 0, "liver": 1})
        self.delayDisplay("Segmenting with a threshold stand-in for a model")
        def threshold(images, geometry):
            return (images[0] > 50).astype(np.uint8), None

        result, _ = predict_volumes(scene, [volume], threshold, {0: "background", 1: "liver"})
        back, _ = mrml.labels_from_segmentation(scene, result, {"liver": 1}, volume)
        self.assertTrue(np.array_equal(back, labels))
        self.assertEqual(logic.parseFolds("0-2,4"), ["0", "1", "2", "4"])
        shutil.rmtree(out.parent, ignore_errors=True)
        self.delayDisplay("Test passed")
