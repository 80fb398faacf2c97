"""The module's running jobs, one per panel, with what each was started with.

The Widget polls the :class:`JobBoard` from a timer. The board hands every progress event
and the end of each job to the panel's handlers together with the job's *context* (the
inputs captured when it started: folders, configuration, epochs, the segment run), so a
handler never reads the GUI or the parameter node of a later moment. Handlers that raise
are logged, never propagated into the timer.

Scene close: jobs whose result goes into the scene (:data:`SCENE_BOUND`, Segment) are
cancelled and their result dropped; the others (Plan, Train, Find best) only write files
and keep running. Module close (:meth:`JobBoard.shutdown`): attached jobs are cancelled,
detached trainings keep running (a later session re-attaches to them). No ``qt``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from NNSegLib.util.i18n import tr

#: Panels whose job delivers into the scene: cancelled when the scene closes.
SCENE_BOUND = frozenset({"segment"})
#: Training jobs: cancelling waits for the checkpoint, and asks first.
TRAINING_KEYS = frozenset({"train", "finetune"})

log = logging.getLogger("NNSeg")


@dataclass
class PanelJob:
    """A running job of one panel."""

    key: str
    job: Any
    context: dict[str, Any] = field(default_factory=dict)
    on_done: Callable[[PanelJob], None] | None = None
    on_event: Callable[[PanelJob, dict], None] | None = None
    cleanup: Callable[[], None] | None = None
    orphaned: bool = False
    cancelling: bool = False

    @property
    def detached(self) -> bool:
        return bool(getattr(self.job, "detached", False))


def _safe(what: str, fn: Callable[..., Any] | None, *args: Any) -> None:
    if fn is None:
        return
    try:
        fn(*args)
    except Exception:  # never let a handler break the timer loop
        log.exception("NNSeg: %s failed", what)


class JobBoard:
    """Running jobs by panel key (``plan``, ``train``, ``findbest``, ``segment``, ``batch``,
    ``finetune``)."""

    def __init__(self, cancel_grace: float = 60.0) -> None:
        self.jobs: dict[str, PanelJob] = {}
        self.cancel_grace = cancel_grace

    def start(self, key: str, job: Any, context: dict[str, Any] | None = None,
              on_done: Callable[[PanelJob], None] | None = None,
              on_event: Callable[[PanelJob, dict], None] | None = None,
              cleanup: Callable[[], None] | None = None) -> PanelJob:
        """Register ``job`` for ``key``.

        Raises:
            RuntimeError: when the panel already has a running job.
        """
        if key in self.jobs:
            raise RuntimeError(tr("A {key} job is already running.", key=key))
        entry = PanelJob(key, job, dict(context or {}), on_done, on_event, cleanup)
        self.jobs[key] = entry
        return entry

    @property
    def running(self) -> set[str]:
        return set(self.jobs)

    def get(self, key: str) -> PanelJob | None:
        return self.jobs.get(key)

    def poll(self) -> list[PanelJob]:
        """Deliver new events; finish ended jobs. Returns the jobs that ended now."""
        ended = []
        for key, entry in list(self.jobs.items()):
            try:
                events = entry.job.poll()
                finished = entry.job.finished
            except Exception:
                log.exception("NNSeg: polling the %s job failed", key)
                events, finished = [], True
            if not entry.orphaned:
                for event in events:
                    _safe(f"{key} progress", entry.on_event, entry, event)
            if finished:
                del self.jobs[key]
                if not entry.orphaned:
                    _safe(f"{key} result", entry.on_done, entry)
                _safe(f"{key} cleanup", entry.cleanup)
                ended.append(entry)
        return ended

    def cancel(self, key: str, background: bool = True) -> bool:
        """Stop a panel's job (in a thread by default: stopping waits for the checkpoint)."""
        entry = self.jobs.get(key)
        if entry is None:
            return False
        if not entry.cancelling:
            entry.cancelling = True
            grace = self.cancel_grace if key in TRAINING_KEYS else 10.0
            if background:
                threading.Thread(target=entry.job.cancel, args=(grace,), daemon=True).start()
            else:
                entry.job.cancel(grace)
        return True

    def scene_closing(self) -> list[str]:
        """The scene closes: cancel the scene-bound jobs, drop their results."""
        closed = []
        for key, entry in self.jobs.items():
            if key in SCENE_BOUND:
                entry.orphaned = True
                self.cancel(key)
                closed.append(key)
        return closed

    def shutdown(self) -> list[str]:
        """The module closes: cancel attached jobs; returns the detached ones left running."""
        kept = []
        for key, entry in list(self.jobs.items()):
            entry.orphaned = True
            if entry.detached:
                kept.append(key)
                continue
            # Slicer may exit before a cancelling thread runs: ask synchronously first.
            _safe(f"stopping the {key} job", getattr(entry.job, "request_stop", None))
            self.cancel(key)
        return kept


def cancel_question(key: str, context: dict[str, Any]) -> str | None:
    """The confirmation asked before cancelling, or ``None`` when none is needed."""
    if key not in TRAINING_KEYS:
        return None
    if key == "finetune":
        return tr("Stop fine-tuning {configuration} (fold(s) {folds})? The latest checkpoint "
                  "is kept and Fine-tune continues from it; the epochs since it are lost.",
                  configuration=context.get("configuration", "?"),
                  folds=context.get("folds", "?"))
    return tr("Stop training {configuration} (fold(s) {folds})? The latest checkpoint is "
              "kept and Resume continues from it; the epochs since it are lost.",
        configuration=context.get("configuration", "?"), folds=context.get("folds", "?"))


def reattachable(live_jobs: list[Any], running: set[str]) -> list[tuple[str, Any]]:
    """``(panel key, job)`` of the newest live training and fine-tune jobs no panel follows.

    Args:
        live_jobs: Running background jobs of the work folder, oldest first (each with a
            ``kind``: ``train`` or ``finetune``).
        running: Panels that follow a job already.
    """
    newest = {job.kind: job for job in live_jobs if job.kind in TRAINING_KEYS}
    return [(kind, job) for kind, job in sorted(newest.items()) if kind not in running]


__all__ = ["JobBoard", "PanelJob", "SCENE_BOUND", "TRAINING_KEYS", "cancel_question",
           "reattachable"]
