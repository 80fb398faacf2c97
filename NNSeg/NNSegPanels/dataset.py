"""(1) Dataset: the training cases (volumes + segmentation) and the exported raw dataset."""

import slicer

from NNSegPanels.common import Panel, _, showingErrors


class DatasetPanel(Panel):
    BUTTONS = (("addPairButton", "onAddPair"), ("addAllButton", "onAddAll"),
               ("addFromFolderButton", "onAddFromFolder"), ("removePairButton", "onRemovePair"),
               ("clearPairsButton", "onClearPairs"), ("exportDatasetButton", "onExportDataset"))
    TABLES = ("pairsTableWidget",)

    def connect(self) -> None:
        super().connect()
        self.ui.pairsTableWidget.setHorizontalHeaderLabels(
            [_("Volume(s)"), _("Segmentation"), _("Segments")])

    def onAddPair(self) -> None:
        p = self.p
        volumes = [p.trainingVolume] + list(self.ui.pairExtraChannelsSelector.checkedNodes())
        with showingErrors(_("Could not add the case."), waitCursor=False):
            self.lib.dataset.add_case(self.w.caseNode(), volumes, p.trainingSegmentation)

    def onAddAll(self) -> None:
        with self.w.busy():
            added, skipped = self.lib.dataset.add_all_cases(slicer.mrmlScene, self.w.caseNode())
        if skipped:
            slicer.util.infoDisplay(_("Added {n} case(s). Not added:").format(n=len(added))
                                    + "\n" + "\n".join(skipped))

    def onAddFromFolder(self) -> None:
        import qt

        folder = qt.QFileDialog.getExistingDirectory(None, _("Folder of images and segmentations"))
        if not folder:
            return
        with self.w.busy(), showingErrors(_("Loading cases failed."), waitCursor=True):
            for volumes, segmentation in self.logic.loadCasesFromFolder(slicer.mrmlScene, folder):
                self.lib.dataset.add_case(self.w.caseNode(), volumes, segmentation)

    def onRemovePair(self) -> None:
        rows = {i.row() for i in self.ui.pairsTableWidget.selectedIndexes()}
        self.lib.dataset.remove_cases(self.w.caseNode(), sorted(rows))

    def onClearPairs(self) -> None:
        self.lib.dataset.clear_cases(self.w.caseNode())

    def refreshCases(self) -> None:
        import qt

        rows = self.lib.dataset.case_rows(self.w.caseNode())
        table = self.ui.pairsTableWidget
        table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for col, text in enumerate(cells):
                table.setItem(row, col, qt.QTableWidgetItem(text))
        self.ui.labelsStatusLabel.text = self.lib.dataset.describe_labels(slicer.mrmlScene,
                                                                 self.w.caseNode())

    def onExportDataset(self) -> None:
        p = self.p
        with self.w.busy(), showingErrors(_("Export failed."), waitCursor=True):
            lib = self.lib.dataset
            report = lib.export_dataset(slicer.mrmlScene, self.w.caseNode(), p.datasetFolder,
                                        lib.parse_channel_names(p.channelNames))
            self.ui.checkResultsTextEdit.setPlainText(report)
