"""(4) Segment: choose a model, its input channels, and segment (a preview first if asked)."""

import logging

import slicer

from NNSegPanels.common import Panel, _, showingErrors


class SegmentPanel(Panel):
    BUTTONS = (("useTrainedModelButton", "onUseTrainedModel"), ("segmentButton", "onSegment"))

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.channelSelectors: list = []

    def connect(self) -> None:
        super().connect()
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelChanged)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.w.updateGui)

    def onUseTrainedModel(self) -> None:
        self.p.modelPath = self.lib.segment.model_folder(self.p.workFolder)

    def onModelChanged(self, path: str) -> None:
        import qt

        if not self.lib.folders.is_unset(path):
            qt.QSettings().setValue(self.lib.folders.SETTINGS_KEYS["model"], path)
        self.w.modelInfo = self.lib.segment.model_info(path)
        self.ui.modelInfoLabel.text = self.w.modelInfo.get("description", "")
        self.ui.postprocessingInfoLabel.text = self.lib.segment.describe_postprocessing(path)
        self.rebuildChannelSelectors(self.w.modelInfo.get("channels", ["image"]))
        self.w.updateGui()

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
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.w.updateGui)
            layout.addRow(_("Channel {c} ({name}):").format(c=c, name=name), selector)
            self.channelSelectors.append(selector)

    def segmentVolumes(self) -> list:
        return [self.p.inputVolume] + [s.currentNode() for s in self.channelSelectors]

    def onSegment(self) -> None:
        if self.w.jobs.cancel("segment") or not self.logic.ensureDependencies():
            return
        p, scene = self.p, slicer.mrmlScene
        decision = self.lib.segment.overwrite_decision(scene, p.outputSegmentation)
        if decision.action == "ask" and not slicer.util.confirmYesNoDisplay(decision.reason):
            return
        with showingErrors(_("Could not prepare the inputs."), waitCursor=True):
            lib = self.lib.segment
            run = lib.capture_segment(scene, [self.segmentVolumes()], [p.outputSegmentation],
                                      lib.segment_request(p))
            try:
                job = self.lib.start_segment_job(run)
            except Exception:
                run.cleanup()
                raise
            self.w.jobs.start("segment", job, {"run": run}, self.onSegmentDone,
                              cleanup=run.cleanup)

    def segmentTimes(self):
        """The Segment time measurements kept in Slicer's settings (JSON text)."""
        import qt

        return qt.QSettings().value(self.lib.segment.TIMES_KEY)

    def onSegmentPhaseDone(self, entry, event: dict) -> None:
        """A Segment phase ended: keep its time; show the preview at once."""
        import qt

        key = self.lib.segment.TIMES_KEY
        qt.QSettings().setValue(key, self.lib.segment.record_time(self.segmentTimes(), event))
        if event.get("phase") != "preview":
            return
        with self.w.busy(), showingErrors(_("Loading the preview failed."), waitCursor=True):
            self.w.statusLabel("segment").text = self.lib.segment.deliver_preview(
                slicer.mrmlScene, entry.job)

    def onSegmentDone(self, entry) -> None:
        status = self.w.statusLabel("segment")
        ok = self.w.jobs.finishMessage(entry, _("Segmentation"))
        kept = self.lib.segment.outcome_text(entry.job, status.text)
        if kept:
            status.text = kept
        if not ok:
            return
        done, failed = status.text, _("Loading the result failed.")
        status.text = failed  # until the result is in the scene
        with self.w.busy(), showingErrors(failed):
            results = self.lib.segment.deliver_results(slicer.mrmlScene, entry.context["run"])
            notes = [n for r in results for n in r.notes]
            unc = next((r.uncertainty for r in results if r.uncertainty is not None), None)
            if unc is not None:
                slicer.util.setSliceViewerLayers(foreground=unc, foregroundOpacity=0.4)
            if notes:
                slicer.util.warningDisplay("\n".join(notes))
            status.text = done
        logging.info(f"Processing completed in {entry.job.elapsed:.1f} s")
