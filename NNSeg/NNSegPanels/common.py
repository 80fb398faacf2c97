"""What every panel controller shares: translation, error display, tables, the job board."""

import contextlib
import logging

import slicer

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer before 5.4: no translation infrastructure
    def _(text):
        return text

    def translate(context, text):
        return text

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


def ensureDependencies(requirements, skip, confirm: bool = True) -> bool:
    """Install missing or too old packages of ``requirements`` (a requirements.txt; ``skip``:
    the packages Slicer ships) on first use, asking first; torch via the PyTorch extension
    with NNSegLib's version requirement. Says when a restart is due."""
    from NNSegLib.slicer import dependencies as deps  # pure Python: loads before the others

    unmet = deps.unmet_requirements(requirements, skip=skip)
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


def fillTable(table, header: list, rows: list) -> None:
    import qt

    table.setColumnCount(len(header))
    table.setHorizontalHeaderLabels(header)
    table.setRowCount(len(rows))
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            table.setItem(i, j, qt.QTableWidgetItem(text))


class Panel:
    """A panel's controller: the module widget ``w`` holds the state the panels share (the
    parameter node, the logic, the job board, the model and the runs)."""

    #: (button name, handler method name) connected to the button's click.
    BUTTONS: tuple = ()
    #: Tables whose columns are as wide as their texts (the default 100 px cut names).
    TABLES: tuple = ()

    def __init__(self, widget) -> None:
        self.w = widget
        self.ui = widget.ui
        self.logic = widget.logic

    @property
    def p(self):
        return self.w._parameterNode

    @property
    def lib(self):
        """``NNSegLogic.lib``: ``lib.<panel>`` is this panel's own module of the library."""
        return self.logic.lib

    def connect(self) -> None:
        import qt

        for name in self.TABLES:
            header = getattr(self.ui, name).horizontalHeader()
            header.setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        for name, handler in self.BUTTONS:
            getattr(self.ui, name).connect("clicked(bool)", getattr(self, handler))


class Jobs(Panel):
    """Each panel's background job: started, followed (status, progress, chart), cancelled."""

    def start(self, key: str, job, context: dict, onDone, cleanup=None) -> None:
        self.w.board.start(key, job, context, on_done=onDone, on_event=self.onJobEvent,
                           cleanup=cleanup)
        self.w.statusLabel(key).text = _("Running...")
        self.w.timer.start()
        self.w.updateGui()

    def cancel(self, key: str) -> bool:
        """Cancel the panel's job if one runs (its Apply button is the Cancel button)."""
        entry = self.w.board.get(key)
        if entry is None:
            return False
        question = self.lib.board.cancel_question(key, entry.context)
        if question and not self.w.confirm(question):
            return True
        self.w.statusLabel(key).text = _("Cancelling...")
        self.w.board.cancel(key)
        return True

    def onTimer(self) -> None:
        ended = self.w.board.poll()
        if ended:
            self.lib.forget_folders()   # what the job wrote is read again
            self.w.updateGui()
            if any(e.key in self.lib.board.TRAINING_KEYS for e in ended):
                self.w.trainPanel.refreshRuns()
        if not self.w.board.running:
            self.w.timer.stop()

    def onJobEvent(self, entry, event: dict) -> None:
        if event.get("event") == "phase_done":
            self.w.segmentPanel.onSegmentPhaseDone(entry, event)
            return
        text = self.lib.texts.describe_board_event(entry, event)
        if text is not None:
            self.w.statusLabel(entry.key).text = text
        value = self.lib.texts.progress_value(entry.key, event)
        if value is not None:
            bar = getattr(self.ui, JOB_WIDGETS[entry.key][0])
            bar.maximum, bar.value = value[1], value[0]
            if entry.key == "batch":
                self.w.reviewPanel.refreshReview()  # the finished case joins the table
        elif event.get("event") == "step" and entry.key in self.lib.board.TRAINING_KEYS:
            self.w.epochRecords = []
        elif event.get("event") == "epoch":
            self.w.epochRecords.append(event)
            self.w.trainPanel.showChart(self.w.epochRecords)

    def finishMessage(self, entry, what: str) -> bool:
        ok, text = self.lib.texts.finish_text(entry.job, what)
        self.w.statusLabel(entry.key).text = text
        if not ok and not entry.job.cancel_requested:
            slicer.util.errorDisplay(text, detailedText="\n".join(entry.job.log_tail(50)))
        return ok


class Rules(Panel):
    """Every panel's buttons enabled (with the reason as tooltip), inputs of running jobs
    locked, and the texts that follow the settings."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.defaultTips = {name: getattr(self.ui, name).toolTip
                            for name in self.lib.view(self.lib.State()).rules}
        self.deviceInfos: dict = {}

    def show(self) -> None:
        w, p, lib = self.w, self.p, self.lib
        running, volumes = w.board.running, w.segmentPanel.segmentVolumes()
        w.datasetPanel.refreshCases()
        view = lib.view(lib.state(
            slicer.mrmlScene, p, volumes, w.modelInfo.get("channels"), w.runs, running,
            w.reviewPanel.batchVolumes(), w.review, self.ui.datasetCaseNameLineEdit.text))
        locked = lib.locked(running)
        for name, rule in view.rules.items():
            button = getattr(self.ui, name)
            button.enabled = rule.enabled and name not in locked
            button.toolTip = rule.reason or self.defaultTips.get(name, "")
        for name in lib.lockable:
            if not name.endswith("Button"):
                getattr(self.ui, name).enabled = name not in locked and view.inputs.get(name, True)
        for key, (name, text) in APPLY_BUTTONS.items():
            getattr(self.ui, name).text = _("Cancel") if key in running else text
        self.ui.trainWarningLabel.text = lib.train.cpu_time_warning(
            lib.memo, self.deviceFor(p.device), p) or ""
        for name, text in view.texts.items():
            getattr(self.ui, name).text = text
        self.ui.segmentTimeLabel.text = lib.segment.expected_times(
            lib.memo, w.segmentPanel.segmentTimes(), self.deviceFor(p.predictDevice), volumes, p)

    def deviceFor(self, requested: str):
        """The device a panel's choice resolves to (detected once per choice)."""
        if self.w.deviceInfo is None:
            return None
        if requested not in self.deviceInfos:
            self.deviceInfos[requested] = self.lib.devices.detect_device(requested)
        return self.deviceInfos[requested]

    def applyDeviceBudget(self) -> None:
        p, info = self.p, self.w.deviceInfo
        if p is not None and info is not None and p.memoryBudgetAuto:
            budget = self.lib.plan.memory_budget_gb(info)
            if abs(p.memoryBudgetGB - budget) > 1e-6:
                p.memoryBudgetGB = budget


class Folders(Panel):
    """The dataset, work, model and batch folders: remembered in Slicer's settings, the work
    folder following the dataset, the runs and the review queue re-read when theirs changes."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.seen: dict = {"dataset": None, "work": None, "batch": None}

    def initialize(self) -> None:
        """A new parameter node: unset folders from the settings or the per-user defaults."""
        import qt

        p, settings = self.p, qt.QSettings()
        folders = self.lib.folders
        remembered = {k: settings.value(v) for k, v in folders.SETTINGS_KEYS.items()}
        base = remembered.get("base") or folders.nnseg_home()
        chosen = folders.initial_folders(p.datasetFolder, p.workFolder, remembered, base)
        p.datasetFolder, p.workFolder = chosen["dataset"], chosen["work"]
        model = folders.initial_model(p.modelPath, remembered)
        if model is not None and model != p.modelPath:
            p.modelPath = model
        batch = folders.initial_batch_folder(p.batchFolder, remembered, base)
        if batch != p.batchFolder:
            p.batchFolder = batch

    def changed(self) -> None:
        import qt

        p, seen = self.p, self.seen
        dataset, work = str(p.datasetFolder), str(p.workFolder)
        if dataset != seen["dataset"]:
            new_work = self.lib.folders.follow_dataset(seen["dataset"], dataset, work,
                                                       self.lib.folders.nnseg_home())
            seen["dataset"] = dataset
            if new_work is not None:
                p.workFolder = new_work  # triggers this handler again
                return
        settings, batch = qt.QSettings(), str(p.batchFolder)
        for key, value in (("dataset", dataset), ("work", work), ("batch", batch)):
            if not self.lib.folders.is_unset(value):
                settings.setValue(self.lib.folders.SETTINGS_KEYS[key], value)
        if work != seen["work"]:
            seen["work"] = work
            self.w.trainPanel.refreshRuns()
        if batch != seen["batch"]:
            seen["batch"] = batch
            self.w.reviewPanel.refreshReview()
        self.w.rules.applyDeviceBudget()
        self.w.updateGui()
