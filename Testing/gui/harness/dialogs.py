"""The dialogs a test answers: message boxes and file dialogs shown to the user, answered
from queues the test fills (an unexpected one is recorded as a problem). Used by the
``qt`` module's static file dialogs and by ``ctkMessageBox``."""

from __future__ import annotations

from PyQt5 import QtWidgets

from .pythonqt import LOG


class Dialogs:
    """Message boxes shown to the user, answered from a queue the test fills."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.answers: list[int] = []
        self.files: list[str] = []

    def file_answer(self, caption: str) -> str:
        self.shown.append(caption)
        if not self.files:
            LOG.errors.append(f"unexpected file dialog: {caption}")
            return ""
        return self.files.pop(0)

    def expect(self, *answers: int) -> None:
        self.answers.extend(answers)

    def answer(self, text: str, buttons: int) -> int:
        self.shown.append(text)
        if not self.answers:
            LOG.errors.append(f"unexpected dialog: {text}")
            return int(QtWidgets.QMessageBox.Cancel)
        return self.answers.pop(0)

    def clear(self) -> None:
        self.shown.clear()
        self.answers.clear()
        self.files.clear()


DIALOGS = Dialogs()
