"""(2) Plan: fingerprint the exported dataset and plan each configuration."""

from NNSegPanels.common import Panel, _, fillTable


class PlanPanel(Panel):
    BUTTONS = (("planButton", "onPlan"),)
    TABLES = ("plansTableWidget",)

    def onPlan(self) -> None:
        if self.w.jobs.cancel("plan") or not self.logic.ensureDependencies():
            return
        p = self.p
        steps = self.lib.plan.plan_commands(p.datasetFolder, p.workFolder, p.recipe,
                                            p.memoryBudgetGB, p.configurations)
        self.w.jobs.start("plan", self.lib.start_jobs(steps), {"work": p.workFolder},
                          self.onPlanDone)

    def onPlanDone(self, entry) -> None:
        if not self.w.jobs.finishMessage(entry, _("Planning")):
            return
        header, rows = self.lib.plan.plans_table(entry.context["work"])
        fillTable(self.ui.plansTableWidget, header[1:], [r[1:] for r in rows])
        self.ui.plansTableWidget.setVerticalHeaderLabels([r[0] for r in rows])
