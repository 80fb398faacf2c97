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
        folds = ",".join(self.lib.train.resumable_folds(self.w.runs, p.trainConfiguration)) \
            if resume else p.folds
        warning = self.ui.trainWarningLabel.text
        if warning and not self.w.confirm(warning + "\n\n" + _("Train anyway?")):
            return
        request = self.lib.train.train_request(p, folds, resume, self.w.trainOptions)
        job = self.lib.start_training(self.lib.train.train_request_commands(request),
                                      p.workFolder, p.detachTraining)
        self.followTraining("train", job, {"work": p.workFolder,
                                           "configuration": p.trainConfiguration,
                                           "folds": folds, "maxEpochs": p.maxEpochs}, [])

    def followTraining(self, key: str, job, context: dict, records: list) -> None:
        self.w.epochRecords = list(records)
        done = self.w.reviewPanel.onFineTuneDone if key == "finetune" else self.onTrainDone
        self.w.jobs.start(key, job, context, done)
        self.showChart(self.w.epochRecords)

    def showChart(self, records: list) -> None:
        self.w.chartNode = self.lib.train.show_chart(slicer.mrmlScene, records, self.w.chartNode)
        slicer.modules.plots.logic().ShowChartInLayout(self.w.chartNode)

    def onTrainDone(self, entry) -> None:
        self.w.jobs.finishMessage(entry, _("Training"))
        self.ui.cvSummaryLabel.text = self.lib.train.cross_validation_summary(
            entry.context["work"], entry.context["configuration"])

    def refreshRuns(self, reattach: bool = False) -> None:
        p, self.w.runs = self.p, []
        if p is not None and not self.lib.folders.is_unset(p.workFolder):
            with showingErrors(_("Could not read the runs."), waitCursor=True):
                live = self.lib.live_training_jobs(p.workFolder)
                running = set(self.w.board.running)
                jobs = self.lib.board.reattachable(live, running) if reattach else []
                for key, job in jobs:
                    self.followTraining(key, *self.lib.train.reattach(job, p.workFolder))
                self.w.runs = self.lib.train.find_runs(p.workFolder, live)
        self.ui.runsListWidget.clear()
        for text in self.lib.train.run_lines(self.w.runs):
            self.ui.runsListWidget.addItem(text)
        self.w.reviewPanel.showDidItHelp()
        self.w.updateGui()

    def onRunSelected(self, row: int) -> None:
        runs = self.w.runs
        if 0 <= row < len(runs) and not self.w.board.running & self.lib.board.TRAINING_KEYS:
            self.showChart(self.lib.train.chart_records(runs[row]))

    def onFindBest(self) -> None:
        if self.w.jobs.cancel("findbest") or not self.logic.ensureDependencies():
            return
        p = self.p
        context = {"work": p.workFolder, "dataset": p.datasetFolder}
        steps = self.lib.train.find_best_commands(p.datasetFolder, p.workFolder)
        self.w.jobs.start("findbest", self.lib.start_jobs(steps), context, self.onFindBestDone)

    def onFindBestDone(self, entry) -> None:
        report = entry.context.get("report")
        if not self.w.jobs.finishMessage(entry, _("Evaluation") if report else _("Find best")):
            return
        work, dataset = entry.context["work"], entry.context["dataset"]
        self.ui.findBestResultTextEdit.setPlainText(self.lib.train.describe_best(work))
        if report:
            return
        with showingErrors(_("Could not start the evaluation."), waitCursor=True):
            steps = self.lib.train.report_commands(dataset, work)
            self.w.jobs.start("findbest", self.lib.start_jobs(steps),
                              dict(entry.context, report=True), self.onFindBestDone)

    def onOpenReport(self) -> None:
        import qt

        path = self.lib.train.report_path(self.p.workFolder)
        if path is not None:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(path)))
