"""Progress events and cancellation, shared by the CLI (tqdm) and the GUI (JSON lines).

Library functions take a ``progress: Progress`` argument and call
``progress.start(stage, total)``, ``progress.advance(n, **info)``, ``progress.event(kind,
**data)`` and ``progress.check_cancelled()``. The CLI passes a :class:`TqdmProgress`
(plus JSON lines on stdout/a file with ``--progress-json``); the Slicer module reads those
JSON lines from the subprocess.

Event format (one JSON object per line)::

    {"event": "start", "stage": "preprocess", "total": 208}
    {"event": "progress", "stage": "preprocess", "current": 17, "total": 208, ...}
    {"event": "epoch", "stage": "train", "epoch": 3, "train_loss": ..., ...}
    {"event": "message", "level": "info", "text": "..."}
    {"event": "done", "stage": "preprocess", ...}
    {"event": "error", "message": "..."}
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import IO, Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Cancelled(RuntimeError):
    """Raised by :meth:`Progress.check_cancelled` once cancellation was requested."""


class CancelToken:
    """A thread-safe flag a GUI, a signal handler or a test sets to stop long work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Progress:
    """Base progress sink: keeps counters, forwards events to listeners. Silent by itself."""

    def __init__(
        self,
        cancel: CancelToken | None = None,
        listeners: Iterable[Callable[[dict], None]] = (),
    ) -> None:
        self.cancel_token = cancel or CancelToken()
        self.listeners = list(listeners)
        self.stage = ""
        self.total: int | None = None
        self.current = 0

    # -- events -------------------------------------------------------------------------
    def event(self, kind: str, **data: Any) -> None:
        payload = {"event": kind, "stage": self.stage, **data}
        for listener in self.listeners:
            listener(payload)

    def start(self, stage: str, total: int | None = None, **info: Any) -> None:
        self.stage, self.total, self.current = stage, total, 0
        self.event("start", total=total, **info)

    def advance(self, n: int = 1, **info: Any) -> None:
        self.current += n
        self.event("progress", current=self.current, total=self.total, **info)

    def message(self, text: str, level: str = "info") -> None:
        self.event("message", level=level, text=text)

    def done(self, **info: Any) -> None:
        self.event("done", **info)

    def close(self) -> None:
        """Release resources (progress bars)."""

    # -- cancellation -------------------------------------------------------------------
    def check_cancelled(self) -> None:
        if self.cancel_token.cancelled:
            raise Cancelled(self.cancel_token.reason or "cancelled")

    def track(self, items: Iterable[T], stage: str, total: int | None = None) -> Iterator[T]:
        """Iterate ``items`` with start/progress events and cancellation checks."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        self.start(stage, total)
        for item in items:
            self.check_cancelled()
            yield item
            self.advance()
        self.done()


class TqdmProgress(Progress):
    """Renders start/progress events as a tqdm bar on stderr, messages as lines."""

    def __init__(self, *args: Any, disable: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bar = None
        self._disable = disable

    def start(self, stage: str, total: int | None = None, **info: Any) -> None:
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=stage, unit="it", file=sys.stderr,
                         disable=self._disable, dynamic_ncols=True)
        super().start(stage, total, **info)

    def advance(self, n: int = 1, **info: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
            post = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
            if post:
                self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                                       for k, v in list(post.items())[:4]}, refresh=False)
        super().advance(n, **info)

    def message(self, text: str, level: str = "info") -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
        super().message(text, level)

    def done(self, **info: Any) -> None:
        super().done(**info)
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def child_progress(progress):
    """A second progress sink for patches: a nested tqdm bar for the CLI, else the same."""
    if progress is None or not isinstance(progress, TqdmProgress):
        return progress
    return NestedTqdmProgress(progress.cancel_token, progress.listeners,
                              disable=getattr(progress, "_disable", None))


class NestedTqdmProgress:
    """Per-patch tqdm bar under the per-case bar, reused for every case and fold."""

    def __init__(self, token, listeners, disable=None) -> None:
        self._base = Progress(token, listeners)
        self._bar = None
        self._disable = disable

    def start(self, stage: str, total: int | None = None, **info: Any) -> None:
        import sys

        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=stage, unit="patch", file=sys.stderr,
                             leave=False, position=1, disable=self._disable,
                             dynamic_ncols=True)
        else:
            self._bar.reset(total=total)
        self._base.start(stage, total, **info)

    def advance(self, n: int = 1, **info: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
        self._base.advance(n, **info)

    def done(self, **info: Any) -> None:
        self._base.done(**info)

    def check_cancelled(self) -> None:
        self._base.check_cancelled()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JsonLinesWriter:
    """A listener writing each event as one JSON line (flushed) to a stream."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, payload: dict) -> None:
        payload = {"time": round(time.time(), 3), **payload}
        line = json.dumps(payload, default=_jsonable)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def install_signal_handlers(token: CancelToken) -> None:
    """Make SIGINT/SIGTERM (and SIGBREAK on Windows) request cancellation.

    A second SIGINT aborts at once. SIGBREAK is what ``CTRL_BREAK_EVENT`` raises in a
    Windows child started with ``CREATE_NEW_PROCESS_GROUP`` (the Slicer module's graceful
    cancel there, :mod:`NNSegLib.jobs.process`).
    """

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        token.cancel(f"received {name}")

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGBREAK", None)):
            if signum is not None:
                signal.signal(signum, handler)


def watch_stop_file(token: CancelToken, path: str, interval: float = 0.5) -> threading.Thread:
    """Cancel ``token`` as soon as the file ``path`` exists (checked every ``interval`` s).

    The platform-independent way to stop a command cleanly from another process: the Slicer
    module creates the file (``nnseg … --stop-file FILE``), also for a training that keeps
    running after Slicer was closed and is cancelled from a later Slicer session.

    Returns:
        The daemon thread doing the watching (it ends once the token is cancelled).
    """
    import os

    def watch() -> None:
        while not token.cancelled:
            if os.path.exists(path):
                token.cancel(f"stop file {path}")
                return
            time.sleep(interval)

    thread = threading.Thread(target=watch, name="nnseg-stop-file", daemon=True)
    thread.start()
    return thread
