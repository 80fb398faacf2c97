"""Run one function over many cases in worker processes, with progress and cancellation.

One implementation for every stage that works case by case (check, fingerprint,
preprocess, evaluate, find-best). Workers are started with ``fork`` on Linux while torch is
not loaded (fast, shares the imported modules), else with ``spawn``. A
:class:`~concurrent.futures.ProcessPoolExecutor` is used rather than ``multiprocessing.Pool``
because a worker that dies (killed, out of memory) then raises ``BrokenProcessPool`` instead
of leaving the parent waiting forever for its lost task.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence


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
    with ProcessPoolExecutor(min(workers, total), mp_context=pool_context()) as pool:

        def submit() -> None:
            index, job = pending.pop()
            running[pool.submit(fn, *job)] = index

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
                    if pending:
                        submit()
                    yield index, future.result()
                    if progress is not None:
                        progress.advance()
        except BaseException:
            for future in running:
                future.cancel()
            raise


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
