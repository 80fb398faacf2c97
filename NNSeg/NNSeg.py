"""NNSeg: self-configuring U-Net segmentation (the nnU-Net method) in 3D Slicer.

A thin module: the Widget wires the panel controllers of ``NNSegPanels`` (Dataset, Plan,
Train, Segment, Batch and review); each calls its own module of ``NNSegLib.slicer.panels``
through ``NNSegLogic.lib``, where every decision is made without ``qt`` and tested headless.
Long stages run as a subprocess ``PythonSlicer -m NNSegLib <command>`` (``NNSegLib.jobs``),
so Slicer stays responsive and Cancel really stops the work.
"""

import contextlib
import logging
import pathlib
import shutil
import sys
import time
from typing import Annotated, Dict, List

import slicer
import vtk
from NNSegPanels import common, selftest
from NNSegPanels.common import JOB_WIDGETS, Folders, Jobs, Rules, _, showingErrors, translate
from NNSegPanels.dataset import DatasetPanel
from NNSegPanels.path_field import OptionalPath  # registers its GUI connector
from NNSegPanels.plan import PlanPanel
from NNSegPanels.review import ReviewPanel
from NNSegPanels.segment import SegmentPanel
from NNSegPanels.train import TrainPanel
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

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
    kept as node references of the same node, NNSegLib.slicer.scene.case_list)."""

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
    #: at least one validation interval (RunConfig.epoch_minutes), as `nnseg train` requires
    timeBudgetMinutes: Annotated[int, WithinRange(3, 100000)] = 60
    # Segment
    modelPath: OptionalPath = None  # None: not chosen yet (an empty field, not ".")
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
    batchInputFolder: OptionalPath = None
    batchFolder: pathlib.Path
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    fineTuneEpochs: Annotated[int, WithinRange(0, 10000)] = 0
    fineTuneAdaptHead: bool = False


#
# Widget
#
class NNSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the panel controllers (NNSegPanels) to the .ui, the scene and the parameter node;
    every decision comes from :class:`NNSegLogic`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self.board = None
        self.epochRecords: List[dict] = []
        self.chartNode = self.deviceInfo = self.review = None
        self.modelInfo: Dict[str, object] = {}
        self.runs: list = []
        self._busy = False
        self.trainOptions: List[str] = []  # extra `nnseg train` options (the self-test's)

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NNSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = NNSegLogic()
        self.board = self.logic.lib.board.JobBoard()
        self.review = self.logic.lib.review.ReviewSession()
        self.timer = qt.QTimer()
        self.timer.setInterval(300)
        self.timer.connect("timeout()", self.onTimer)
        scene = slicer.mrmlScene
        self.addObserver(scene, scene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(scene, scene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(scene, scene.NodeAddedEvent, self.updateGui)
        self.addObserver(scene, scene.NodeRemovedEvent, self.updateGui)
        self.jobs = Jobs(self)
        self.datasetPanel, self.planPanel = DatasetPanel(self), PlanPanel(self)
        self.trainPanel, self.segmentPanel = TrainPanel(self), SegmentPanel(self)
        self.reviewPanel = ReviewPanel(self)
        for panel in (self.datasetPanel, self.planPanel, self.trainPanel, self.segmentPanel,
                      self.reviewPanel):
            panel.connect()
        self.rules, self.folders = Rules(self), Folders(self)
        self.initializeParameterNode()
        qt.QTimer.singleShot(0, self.onStartup)

    def onStartup(self) -> None:
        """After the panel shows: detect the device, list runs, re-attach to running ones."""
        with showingErrors(_("Could not inspect the device.")):
            self.deviceInfo = self.logic.lib.devices.detect_device()
            self.ui.deviceInfoLabel.text = self.logic.lib.devices.describe_device(self.deviceInfo)
            self.rules.applyDeviceBudget()
        self.trainPanel.refreshRuns(reattach=True)
        self.reviewPanel.refreshReview()

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
        self.setParameterNode(self.logic.getParameterNode())
        self.folders.initialize()
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
        self.folders.changed()

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
        self.rules.show()

    # -- what the panels share, and the handlers scripts and tests call -------------------
    def statusLabel(self, key: str):
        return getattr(self.ui, JOB_WIDGETS[key][1])

    def confirm(self, text: str) -> bool:
        return slicer.app.testingEnabled() or slicer.util.confirmOkCancelDisplay(text)

    def caseNode(self):
        return self._parameterNode.parameterNode

    def onTimer(self) -> None:
        self.jobs.onTimer()

    def onModelChanged(self, path: str) -> None:
        self.segmentPanel.onModelChanged(path)

    def onReviewRowClicked(self, row: int, column: int = 0) -> None:
        self.reviewPanel.onReviewRowClicked(row, column)


#
# Logic
#
class NNSegLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the GUI (scene and nodes as arguments).

    Defines what needs the Slicer application; each panel's decisions are its module in
    :attr:`lib` (NNSegLib's :class:`~NNSegLib.slicer.module_logic.ModuleLogic`, imported on
    first use: the module loads before NNSegLib's dependencies are installed)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.python = shutil.which("PythonSlicer") or sys.executable
        self._lib = None
        try:
            from NNSegLib.util.i18n import set_translator

            set_translator(_)
        except ImportError:  # pragma: no cover - NNSegLib not installed next to the module
            pass

    @property
    def lib(self):
        """The panels' modules (``lib.train``, …); background jobs run :attr:`python`."""
        if self._lib is None:
            from NNSegLib.slicer.module_logic import ModuleLogic

            self._lib = ModuleLogic()
        self._lib.python = self.python
        return self._lib

    def getParameterNode(self) -> NNSegParameterNode:
        return NNSegParameterNode(super().getParameterNode())

    def ensureDependencies(self, confirm: bool = True) -> bool:
        """Install missing or too old packages on first use (asks first)."""
        requirements = pathlib.Path(__file__).parent / "Resources" / "requirements.txt"
        return common.ensureDependencies(requirements, SLICER_OWNED, confirm)

    def loadCasesFromFolder(self, scene, folder) -> list:
        """Load ``<case>.nrrd`` + ``<case>.seg.nrrd`` pairs or an nnU-Net raw dataset."""
        from NNSegLib.slicer.scene.dataset import load_cases_from_folder

        return load_cases_from_folder(scene, folder, slicer.util.loadVolume)

    def segmentInProcess(self, scene, volumes, modelPath, device: str = "auto", tta: bool = True,
                         folds: str = "", node=None, uncertainty: bool = False) -> tuple:
        """Segment in this process (blocking; scripts and tests)."""
        start = time.time()
        from NNSegLib.slicer.scene.prediction import segment_in_process

        result = segment_in_process(scene, volumes, modelPath, device, tta, folds, node,
                                    uncertainty)
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
        selftest.exportAndSegmentTinyCase(self, NNSegLogic())

    def test_ClickPath(self) -> None:
        """Dataset → Plan → Train (1 short epoch) → Segment, by clicking the module's buttons."""
        selftest.clickPath(self)

    def test_ClinicianLoop(self) -> None:
        """Issue 12's loop, then the Batch and review panel on the fine-tuned model."""
        selftest.clinicianLoop(self)
