"""(5) Batch and review: segment a batch, review the least certain cases first, add corrected
cases to the dataset and fine-tune."""

import slicer

from NNSegPanels.common import Panel, _, fillTable, showingErrors


class ReviewPanel(Panel):
    BUTTONS = (("batchButton", "onBatch"), ("addToDatasetButton", "onAddToDataset"),
               ("fineTuneButton", "onFineTune"))
    TABLES = ("reviewTableWidget", "fineTuneTableWidget")

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.reviewTable = None

    def connect(self) -> None:
        super().connect()
        self.ui.reviewTableWidget.verticalHeader().setVisible(False)  # its "#" column ranks
        self.ui.acceptButton.connect("clicked(bool)", lambda: self.onMark("accepted"))
        self.ui.needsCorrectionButton.connect("clicked(bool)",
                                              lambda: self.onMark("needs_correction"))
        self.ui.batchVolumesSelector.connect("checkedNodesChanged()", self.w.updateGui)
        self.ui.datasetCaseNameLineEdit.connect("textChanged(QString)", self.w.updateGui)
        self.ui.reviewTableWidget.connect("cellClicked(int,int)", self.onReviewRowClicked)
        self.ui.overlayOpacitySliderWidget.connect("valueChanged(double)", self.onOpacityChanged)

    def batchVolumes(self) -> list:
        return list(self.ui.batchVolumesSelector.checkedNodes())

    def onBatch(self) -> None:
        if self.w.jobs.cancel("batch") or not self.logic.ensureDependencies():
            return
        p = self.p
        with showingErrors(_("Could not prepare the batch."), waitCursor=True):
            job = self.lib.review.start_batch(self.w.review, p, self.batchVolumes(),
                                      self.w.modelInfo.get("channels"))
            self.w.jobs.start("batch", self.lib.start_jobs(job["steps"]),
                              {"batch": job["batch"]}, self.onBatchDone)

    def onBatchDone(self, entry) -> None:
        self.w.jobs.finishMessage(entry, _("Batch"))
        self.refreshReview()

    def refreshReview(self) -> None:
        """The review table from the batch folder's queue file (survives restarts)."""
        p = self.p
        if p is None:
            return
        with showingErrors(_("Could not read the review queue."), waitCursor=False):
            self.reviewTable = self.lib.review.review_table(p.batchFolder)
            fillTable(self.ui.reviewTableWidget, self.reviewTable.header, self.reviewTable.rows)
            self.ui.batchInfoLabel.text = self.lib.review.describe_batch(p.batchFolder)
        self.w.updateGui()

    def onReviewRowClicked(self, row: int, column: int = 0) -> None:
        if self.reviewTable is None or not 0 <= row < len(self.reviewTable.cases):
            return
        p = self.p
        with self.w.busy(), showingErrors(_("Could not load the case."), waitCursor=True):
            name = self.lib.review.open_case(self.w.review, slicer.mrmlScene, p.batchFolder,
                                           self.reviewTable.cases[row], p.overlayOpacity,
                                           p.datasetFolder)
            self.ui.datasetCaseNameLineEdit.text = name
            self.ui.reviewCaseLabel.text = self.lib.review.describe_session_case(self.w.review)
            self.ui.reviewStatusLabel.text = ""

    def onOpacityChanged(self, value: float) -> None:
        self.w.review.set_opacity(slicer.mrmlScene, value)

    def onMark(self, state: str) -> None:
        with showingErrors(_("Could not save the review state."), waitCursor=False):
            self.w.review.mark(state)
        self.ui.reviewCaseLabel.text = self.lib.review.describe_session_case(self.w.review)
        self.refreshReview()

    def onAddToDataset(self) -> None:
        p, name = self.p, self.ui.datasetCaseNameLineEdit.text
        decision = self.lib.review.add_decision(p.datasetFolder, name)
        if decision.action == "refuse":
            slicer.util.errorDisplay(decision.reason)
            return
        if decision.action == "ask" and not slicer.util.confirmYesNoDisplay(decision.reason):
            return
        with self.w.busy(), showingErrors(_("Could not add the case."), waitCursor=True):
            self.ui.reviewStatusLabel.text = self.lib.review.add_reviewed_case(
                self.w.review, slicer.mrmlScene, p.datasetFolder, name, decision.action == "ask")
            self.ui.reviewCaseLabel.text = self.lib.review.describe_session_case(self.w.review)
        self.refreshReview()

    def onFineTune(self) -> None:
        if self.w.jobs.cancel("finetune") or not self.logic.ensureDependencies():
            return
        p = self.p
        with showingErrors(_("Could not start fine-tuning."), waitCursor=True):
            lib = self.lib.review
            tune = lib.fine_tune_job(lib.fine_tune_request(p, self.w.trainOptions))
            job = self.lib.start_training(tune.steps, p.workFolder, p.detachTraining, "finetune")
            self.w.trainPanel.followTraining("finetune", job, {
                "work": p.workFolder, "configuration": p.trainConfiguration, "folds": p.folds,
                "maxEpochs": tune.epochs}, [])

    def onFineTuneDone(self, entry) -> None:
        self.w.jobs.finishMessage(entry, _("Fine-tuning"))
        self.w.trainPanel.refreshRuns()

    def showDidItHelp(self) -> None:
        """The fine-tuned model's cross-validation Dice beside its parent's."""
        p = self.p
        if p is None:  # the panel is not shown (exit() or a closing scene)
            return
        with showingErrors(_("Could not compare the models."), waitCursor=False):
            text, header, rows = self.lib.review.did_it_help(p.workFolder, p.trainConfiguration)
            self.ui.fineTuneSummaryLabel.text = text
            fillTable(self.ui.fineTuneTableWidget, header, rows)
            self.ui.fineTuneTableWidget.visible = bool(rows)  # no empty box before a fine-tune
