"""NNSegLib.jobs.sequence: phases run one after the other as one job (fake jobs, no processes)."""

from __future__ import annotations

import pytest

from NNSegLib.jobs.base import JobStatus
from NNSegLib.jobs.sequence import JobSequence, Phase


class _Fake:
    """A job that reports its events once and ends with ``status``."""

    def __init__(self, steps, status=JobStatus.OK, seconds=2.0):
        self.steps, self._status, self.elapsed = steps, status, seconds
        self.finished, self.cancelled, self._events = False, False, [{"event": "log", "n": 1}]

    def poll(self):
        events, self._events = self._events, []
        return events

    @property
    def status(self):
        return self._status if self.finished else JobStatus.RUNNING

    def cancel(self, grace=10.0):
        self.cancelled = self.finished = True
        self._status = JobStatus.CANCELLED
        return self._status

    def request_stop(self):
        self.cancelled = True

    def error_message(self):
        return None

    def log_tail(self, n=50):
        return []


def _sequence(n_phases=2, fail_start=False):
    started = []

    def start(steps):
        if fail_start and started:
            raise OSError("no interpreter")
        started.append(_Fake(steps))
        return started[-1]

    phases = [Phase(f"p{i}", [[f"cmd{i}"]]) for i in range(n_phases)]
    return JobSequence(phases, start), started


def test_phases_run_in_order_with_tagged_events_and_phase_done():
    seq, started = _sequence()
    assert seq.poll() == [{"event": "log", "n": 1, "phase": "p0"}] and not seq.finished
    started[0].finished = True
    events = seq.poll()
    assert events == [{"event": "phase_done", "phase": "p0", "seconds": 2.0}]
    assert len(started) == 2 and started[1].steps == [["cmd1"]] and seq.phase == "p1"
    assert seq.poll() == [{"event": "log", "n": 1, "phase": "p1"}]
    started[1].finished = True
    seq.poll()
    assert seq.finished and seq.status is JobStatus.OK and seq.completed == ["p0", "p1"]
    assert seq.elapsed == pytest.approx(4.0)


def test_one_phase_is_not_tagged_and_a_cancel_between_phases_is_cancelled():
    seq, started = _sequence(1)
    assert seq.poll() == [{"event": "log", "n": 1}]
    seq, started = _sequence(2)
    seq.request_stop()
    started[0].finished = True
    seq.poll()
    assert len(started) == 1 and seq.finished and seq.status is JobStatus.CANCELLED


def test_a_phase_that_cannot_start_fails_the_sequence():
    seq, started = _sequence(2, fail_start=True)
    started[0].finished = True
    seq.poll()
    assert seq.finished and seq.status is JobStatus.FAILED
    assert seq.error_message() == "could not start the p1 phase: no interpreter"
