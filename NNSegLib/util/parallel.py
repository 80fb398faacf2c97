"""Run one function over many cases in worker processes, with progress and cancellation.

One implementation for every stage that works case by case (check, fingerprint,
preprocess, evaluate, find-best). Workers are started with ``fork`` on Linux while torch is
not loaded (fast, shares the imported modules), else with ``spawn``. A
:class:`~concurrent.futures.ProcessPoolExecutor` is used rather than ``multiprocessing.Pool``
because a worker that dies (killed, out of memory) then raises ``BrokenProcessPool`` instead
of leaving the parent waiting forever for its lost task; it is reported as
:class:`WorkerDied` (an :class:`~NNSegLib.util.errors.NNSegError`), or as cancellation when the
user cancelled (Ctrl-C reaches the workers too).

Workers die with their parent: :func:`_worker_init` asks Linux for a parent-death signal
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``) and, everywhere, starts a watchdog thread that ends
the worker once its parent is gone, so ``kill -9`` of ``nnseg`` never leaves workers behind.
Workers also drop the parent's SIGINT/SIGTERM handlers (which only set the parent's cancel
flag) for the default ones, and close inherited folder locks.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence

from NNSegLib.util.errors import NNSegError

#: Seconds between the watchdog's checks that the parent still lives.
WATCHDOG_INTERVAL = 1.0
_PR_SET_PDEATHSIG = 1


class WorkerDied(NNSegError, BrokenProcessPool):
    """A worker process ended abruptly (killed, out of memory); names the stage and job."""


def _set_parent_death_signal() -> bool:
    """Linux: have the kernel send SIGKILL to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval: float) -> None:
    import time

    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def _worker_init(parent: int) -> None:
    """Pool initializer: die with the parent, default signal handlers, no inherited locks."""
    from NNSegLib.util.locking import close_inherited_locks

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    close_inherited_locks()
    _set_parent_death_signal()
    if os.getppid() != parent:   # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, WATCHDOG_INTERVAL), daemon=True,
                     name="nnseg-parent-watchdog").start()


def _job_name(job: tuple) -> str:
    """A short name of a job for messages: its case identifier where one is visible."""
    for item in job:
        if isinstance(item, str):
            return item
        ident = getattr(item, "identifier", None)
        if isinstance(ident, str):
            return ident
        if isinstance(item, tuple) and item and isinstance(item[0], str):
            return item[0]
    return "a job"


def pool_context():
    """Process start method: ``fork`` on Linux while torch is not loaded, else ``spawn``."""
    method = "fork" if sys.platform.startswith("linux") and "torch" not in sys.modules else "spawn"
    return multiprocessing.get_context(method)


def imap_cases(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int = 2,
               progress=None, stage: str = "cases") -> Iterator[tuple[int, Any]]:
    """Yield ``(index, fn(*jobs[index]))`` as jobs finish, at most one job per worker at a time.

    ``workers <= 1`` runs in this process, in order. Progress starts with the job count and
    advances per job (the caller ends it); cancellation is checked between jobs (pending
    jobs are dropped, running ones finish). ``fn`` must be a module-level function.
    """
    total = len(jobs)
    if progress is not None:
        progress.start(stage, total)
    if workers <= 1 or total <= 1:
        for index, job in enumerate(jobs):
            if progress is not None:
                progress.check_cancelled()
            yield index, fn(*job)
            if progress is not None:
                progress.advance()
        return
    pending = list(reversed(list(enumerate(jobs))))
    with ProcessPoolExecutor(min(workers, total), mp_context=pool_context(),
                             initializer=_worker_init, initargs=(os.getpid(),)) as pool:

        def submit() -> None:
            index, job = pending.pop()
            try:
                running[pool.submit(fn, *job)] = index
            except BrokenProcessPool:   # another worker died meanwhile
                if progress is not None:
                    progress.check_cancelled()
                raise WorkerDied(f"{stage}: a worker process died (killed, or out of memory: "
                                 "try fewer --workers)") from None

        running: dict = {}
        for _ in range(min(workers, total)):
            submit()
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    if progress is not None:
                        progress.check_cancelled()
                    result = _result(future, jobs[index], stage, progress)
                    if pending:
                        submit()
                    yield index, result
                    if progress is not None:
                        progress.advance()
        except BaseException:
            for future in running:
                future.cancel()
            raise


def _result(future: Any, job: tuple, stage: str, progress: Any) -> Any:
    """The job's result; a dead worker becomes :class:`WorkerDied` (or cancellation)."""
    try:
        return future.result()
    except BrokenProcessPool:
        if progress is not None:
            progress.check_cancelled()   # Ctrl-C ended the workers: that is a cancel
        raise WorkerDied(f"{stage}: a worker process died while working on {_job_name(job)} "
                         "(killed, or out of memory: try fewer --workers)") from None


def map_cases(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int = 2,
              progress=None, stage: str = "cases") -> Iterator[Any]:
    """Yield ``fn(*job)`` for every job, in the order they finish (see :func:`imap_cases`)."""
    for _, result in imap_cases(fn, jobs, workers, progress, stage):
        yield result


def map_ordered(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int = 2,
                progress=None, stage: str = "cases") -> list[Any]:
    """``[fn(*job) for job in jobs]`` in worker processes; ends the progress stage."""
    results: list[Any] = [None] * len(jobs)
    for index, result in imap_cases(fn, jobs, workers, progress, stage):
        results[index] = result
    if progress is not None:
        progress.done()
    return results
