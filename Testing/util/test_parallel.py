from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from NNSegLib.util.parallel import map_cases, map_ordered
from NNSegLib.util.progress import Cancelled, CancelToken, Progress


@pytest.mark.parametrize("workers", [1, 2])
def test_results_keep_job_order_and_progress_counts_jobs(workers):
    events = []
    progress = Progress(listeners=[events.append])
    jobs = [(-v,) for v in range(7)]
    assert map_ordered(abs, jobs, workers, progress, "t") == list(range(7))
    assert [e["event"] for e in events].count("progress") == 7
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert sorted(map_cases(abs, jobs, workers)) == list(range(7))


def test_a_dying_worker_raises_instead_of_hanging():
    with pytest.raises(BrokenProcessPool):
        map_ordered(os._exit, [(3,), (3,), (3,)], workers=2)


def test_cancel_stops_between_jobs():
    token = CancelToken()
    token.cancel("user")
    with pytest.raises(Cancelled):
        map_ordered(abs, [(1,), (2,)], 1, Progress(token), "t")
