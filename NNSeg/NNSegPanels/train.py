"""(3) Train: train folds with a live chart, list and re-attach runs, find the best
configuration and open its report."""

import slicer

from NNSegPanels.common import Panel, _, showingErrors


class TrainPanel(Panel):
    BUTTONS = (("findBestButton", "onFindBest"), ("openReportButton", "onOpenReport"))

    def connect(self) -> None:
        super().connect()
        self.ui.trainButton.connect("clicked(bool)", lambda: self.onTrain(resume=False))
        self.ui.resumeButton.connect("clicked(bool)", lambda: self.onTrain(resume=True))
        self.ui.runsListWidget.connect("currentRowChanged(int)", self.onRunSelected)

    def onTrain(self, resume: bool) -> None:
        if self.w.jobs.cancel("train") or not self.logic.ensureDependencies():
            return
        p = self.p
        folds = ",".join(self.lib.resumableFolds(self.w.runs, p.trainConfiguration)) \
            if resume else p.folds
        warning = self.ui.trainWarningLabel.text
        if warning and not self.w.confirm(warning + "\n\n" + _("Train anyway?")):
            return
        request = self.lib.trainRequest(p, folds, resume, self.w.trainOptions)
        job = self.lib.startTraining(self.lib.trainCommands(request), p.workFolder,
                                     p.detachTraining)
        self.followTraining("train", job, {"work": p.workFolder,
                                           "configuration": p.trainConfiguration,
                                           "folds": folds, "maxEpochs": p.maxEpochs}, [])

    def followTraining(self, key: str, job, context: dict, records: list) -> None:
        self.w.epochRecords = list(records)
        done = self.w.reviewPanel.onFineTuneDone if key == "finetune" else self.onTrainDone
        self.w.jobs.start(key, job, context, done)
        self.showChart(self.w.epochRecords)

    def showChart(self, records: list) -> None:
        self.w.chartNode = self.lib.updateChart(slicer.mrmlScene, records, self.w.chartNode)
        slicer.modules.plots.logic().ShowChartInLayout(self.w.chartNode)

    def onTrainDone(self, entry) -> None:
        self.w.jobs.finishMessage(entry, _("Training"))
        self.ui.cvSummaryLabel.text = self.lib.crossValidationSummary(
            entry.context["work"], entry.context["configuration"])

    def refreshRuns(self, reattach: bool = False) -> None:
        p, self.w.runs = self.p, []
        if p is not None and not self.lib.isUnset(p.workFolder):
            with showingErrors(_("Could not read the runs."), waitCursor=True):
                live = self.lib.liveTrainingJobs(p.workFolder)
                jobs = self.lib.jobsToReattach(live, self.w.board.running) if reattach else []
                for key, job in jobs:
                    self.followTraining(key, *self.lib.reattach(job, p.workFolder))
                self.w.runs = self.lib.trainingRuns(p.workFolder, live)
        self.ui.runsListWidget.clear()
        for text in self.lib.describeRunLines(self.w.runs):
            self.ui.runsListWidget.addItem(text)
        self.w.reviewPanel.showDidItHelp()
        self.w.updateGui()

    def onRunSelected(self, row: int) -> None:
        runs = self.w.runs
        if 0 <= row < len(runs) and not self.w.board.running & self.lib.trainingKeys():
            self.showChart(self.lib.chartRecords(runs[row]))

    def onFindBest(self) -> None:
        if self.w.jobs.cancel("findbest") or not self.logic.ensureDependencies():
            return
        p = self.p
        context = {"work": p.workFolder, "dataset": p.datasetFolder}
        self.w.jobs.start("findbest", self.lib.startJobs(
            self.lib.findBestSteps(p.datasetFolder, p.workFolder)), context, self.onFindBestDone)

    def onFindBestDone(self, entry) -> None:
        report = entry.context.get("report")
        if not self.w.jobs.finishMessage(entry, _("Evaluation") if report else _("Find best")):
            return
        work, dataset = entry.context["work"], entry.context["dataset"]
        self.ui.findBestResultTextEdit.setPlainText(self.lib.describeBest(work))
        if report:
            return
        with showingErrors(_("Could not start the evaluation."), waitCursor=True):
            steps = self.lib.reportSteps(dataset, work)
            self.w.jobs.start("findbest", self.lib.startJobs(steps),
                              dict(entry.context, report=True), self.onFindBestDone)

    def onOpenReport(self) -> None:
        import qt

        path = self.lib.reportPath(self.p.workFolder)
        if path is not None:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(path)))
