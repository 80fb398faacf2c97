"""NNSegLib.jobs.board: jobs per panel, captured context, scene close, module close."""

from __future__ import annotations

import logging

import pytest

from NNSegLib.jobs.board import JobBoard, cancel_question, reattachable
from NNSegLib.util.i18n import set_translator, tr


class FakeJob:
    def __init__(self, events=(), detached=False):
        self.pending = list(events)
        self.finished = False
        self.detached = detached
        self.cancelled_with = None
        self.stop_requested = False

    def poll(self):
        out, self.pending = self.pending, []
        return out

    def cancel(self, grace=10.0):
        self.cancelled_with = grace
        self.finished = True

    def request_stop(self):
        self.stop_requested = True


def test_events_and_results_reach_the_panel_with_the_context_of_the_start():
    board, seen = JobBoard(), []
    job = FakeJob([{"event": "progress"}, {"event": "epoch"}])
    board.start("train", job, {"configuration": "3d_fullres", "work": "/w"},
                on_done=lambda e: seen.append(("done", e.context["work"])),
                on_event=lambda e, ev: seen.append((ev["event"], e.context["configuration"])))
    with pytest.raises(RuntimeError, match="already running"):
        board.start("train", FakeJob())
    assert board.poll() == [] and board.running == {"train"}
    assert seen == [("progress", "3d_fullres"), ("epoch", "3d_fullres")]
    job.finished = True
    [ended] = board.poll()
    assert ended.key == "train" and seen[-1] == ("done", "/w") and board.running == set()


def test_a_failing_handler_is_logged_never_raised(caplog):
    board, cleaned = JobBoard(), []

    def broken(entry, event=None):
        raise KeyError("the node is gone")

    job = FakeJob([{"event": "epoch"}])
    job.finished = True
    board.start("segment", job, on_done=broken, on_event=broken,
                cleanup=lambda: cleaned.append(True))
    with caplog.at_level(logging.ERROR, logger="NNSeg"):
        board.poll()
    assert cleaned == [True] and board.running == set()
    assert "segment progress failed" in caplog.text and "segment result failed" in caplog.text


def test_scene_close_cancels_scene_bound_jobs_and_drops_their_results():
    board, delivered, cleaned = JobBoard(), [], []
    segment, train = FakeJob(), FakeJob()
    board.start("segment", segment, on_done=delivered.append, cleanup=lambda: cleaned.append(1))
    board.start("train", train, on_done=delivered.append)
    assert board.scene_closing() == ["segment"]
    board.poll()  # the segment job ends (cancelled) — after the scene closed
    assert segment.cancelled_with == 10.0 and delivered == [] and cleaned == [1]
    assert board.running == {"train"} and train.cancelled_with is None


def test_module_close_stops_attached_jobs_and_leaves_detached_ones():
    board = JobBoard()
    attached, detached, plan = FakeJob(), FakeJob(detached=True), FakeJob()
    board.start("train", detached)
    board.start("plan", plan)
    assert board.shutdown() == ["train"]
    assert plan.stop_requested and not detached.stop_requested
    board2 = JobBoard(cancel_grace=1.0)
    board2.start("train", attached)
    board2.cancel("train", background=False)
    assert attached.cancelled_with == 1.0 and board2.cancel("nothing") is False


def test_cancel_question_only_for_training():
    text = cancel_question("train", {"configuration": "3d_fullres", "folds": "0-4"})
    assert "3d_fullres (fold(s) 0-4)" in text and "checkpoint is kept" in text
    assert cancel_question("segment", {}) is None


def test_translator_is_used_and_can_fail_safely():
    try:
        set_translator(lambda text: "» " + text)
        assert tr("Plan") == "» Plan"
        text = cancel_question("train", {"configuration": "2d", "folds": "0"})
        assert text.startswith("» Stop training 2d (fold(s) 0)")
        # a translation that broke a {field} falls back to the original text
        set_translator(lambda text: text.upper())
        assert tr("Plan") == "PLAN"
        assert cancel_question("train", {"configuration": "2d", "folds": "0"}).startswith(
            "Stop training 2d")

        def broken(text):
            raise RuntimeError

        set_translator(broken)
        assert tr("Plan") == "Plan"
    finally:
        set_translator(None)
    assert tr("Plan") == "Plan"


def test_fine_tune_is_a_training_job():
    """Cancelling a fine-tune asks and waits for the checkpoint like a training; after a
    restart each running training or fine-tune goes back to its own panel."""
    from types import SimpleNamespace

    text = cancel_question("finetune", {"configuration": "3d_fullres", "folds": "0"})
    assert "Stop fine-tuning 3d_fullres (fold(s) 0)?" in text and "Fine-tune continues" in text
    board = JobBoard(cancel_grace=42.0)
    job = FakeJob()
    board.start("finetune", job)
    board.cancel("finetune", background=False)
    assert job.cancelled_with == 42.0
    jobs = [SimpleNamespace(kind=k, n=i) for i, k in
            enumerate(["train", "finetune", "train", "plan"])]
    assert [(k, j.n) for k, j in reattachable(jobs, set())] == [("finetune", 1), ("train", 2)]
    assert [k for k, _ in reattachable(jobs, {"train"})] == ["finetune"]
    assert reattachable([], set()) == []
