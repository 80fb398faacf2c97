"""NNSegLib.slicer.segment_sequence: preview first, then the full result (fake runner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from scene.test_ras_geometry import GEO  # noqa: E402
from test_segment_run import _labels, _model, _paint, _volume  # noqa: E402

from NNSegLib.data.io import SimpleITKIO  # noqa: E402
from NNSegLib.inference.predict_timing import Measurement, TimingBook  # noqa: E402
from NNSegLib.jobs.base import JobStatus  # noqa: E402
from NNSegLib.jobs.texts import describe_event  # noqa: E402
from NNSegLib.slicer import segment_run, segment_times  # noqa: E402
from NNSegLib.slicer.scene import mrml  # noqa: E402
from NNSegLib.slicer.segment_sequence import (  # noqa: E402
    FULL,
    PREVIEW,
    SegmentSequence,
    deliver_preview,
    outcome_text,
)

pytestmark = pytest.mark.slicer


class FakeJob:
    """A stand-in for a JobChain: the test decides when it ends and what it wrote."""

    def __init__(self, steps: list[list[str]]) -> None:
        self.steps = steps
        self.pending: list[dict] = [{"event": "start", "stage": "patches", "total": 4}]
        self.finished = False
        self.status = JobStatus.RUNNING
        self.elapsed = 0.0
        self.cancel_requested = False

    def poll(self) -> list[dict]:
        out, self.pending = self.pending, []
        return out

    def finish(self, shift: int = 0, seconds: float = 5.0, passes: float = 1.0) -> None:
        """End as `nnseg predict` does: label maps in its -o folder, a done event, exit 0."""
        [predict] = [s for s in self.steps if s[0] == "predict"]
        out = Path(predict[predict.index("-o") + 1])
        for case in sorted({p.name.split("_")[0] for p in Path(predict[2]).iterdir()}):
            SimpleITKIO().write(_labels(shift), GEO, out / f"{case}.nii.gz")
        self.pending.append({"event": "done", "stage": "predict", "seconds": seconds - 2.0,
                             "network_seconds": 1.0, "megavoxels": 0.5, "passes": passes,
                             "device": "cpu", "windows": 1})
        self.status, self.finished, self.elapsed = JobStatus.OK, True, seconds

    def fail(self, message: str) -> None:
        self.pending.append({"event": "error", "message": message})
        self.message = message
        self.status, self.finished = JobStatus.FAILED, True

    def error_message(self) -> str | None:
        return getattr(self, "message", None)

    def log_tail(self, n: int = 50) -> list[str]:
        return []

    def cancel(self, grace: float = 10.0) -> int:
        self.cancel_requested = True
        if not self.finished:   # a process that ended keeps its exit code
            self.status, self.finished = JobStatus.CANCELLED, True
        return 130 if self.status is JobStatus.CANCELLED else 0

    def request_stop(self) -> None:
        self.cancel(0)


class Runner:
    """Starts FakeJobs and remembers them (optionally failing from the n-th start on)."""

    def __init__(self, fail_from: int | None = None) -> None:
        self.jobs: list[FakeJob] = []
        self.fail_from = fail_from

    def __call__(self, steps):
        if self.fail_from is not None and len(self.jobs) >= self.fail_from:
            raise OSError("cannot start PythonSlicer")
        self.jobs.append(FakeJob(steps))
        return self.jobs[-1]


@pytest.fixture
def scene():
    return mrml.new_scene().scene


def _run(scene, tmp_path, preview=True, model=None, output=None, folds="0-4"):
    ct = _volume(scene)
    model = model or _model(tmp_path / "model")
    run = segment_run.capture_segment_run(scene, [[ct]], [output], model, folds=folds,
                                          device="cpu", tta=True, uncertainty=True,
                                          preview=preview)
    return ct, run


def _preview_shown(scene, run):
    """A sequence whose preview job finished and whose preview is in the scene."""
    runner = Runner()
    seq = SegmentSequence(run, runner)
    runner.jobs[0].finish(shift=1)
    seq.poll()
    deliver_preview(scene, seq)
    return runner, seq


def _segmentations(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]


def test_preview_commands_are_the_fast_predict_of_the_same_inputs(scene, tmp_path):
    _ct, run = _run(scene, tmp_path)
    [fast] = run.preview_steps
    [full] = run.steps
    assert fast[:5] == ["predict", "-i", str(run.tmp / "input"), "-o", str(run.tmp / "preview")]
    assert "--fast" in fast and fast[-2:] == ["--folds", "0"]   # the first of the panel's folds
    assert "--uncertainty" not in fast and "--no-tta" not in fast
    assert full[3:5] == ["-o", str(run.tmp / "output")] and "--fast" not in full
    assert full[-6:] == ["--folds", "0", "1", "2", "3", "4"] and "--uncertainty" in full
    run.cleanup()
    # a .zip is imported once, by the preview's job
    _ct, run = _run(scene, tmp_path, model=tmp_path / "m.zip")
    assert [s[0] for s in run.preview_steps] == ["import-model", "predict"]
    assert [s[0] for s in run.steps] == ["predict"] and run.source == str(tmp_path / "m.zip")
    assert run.steps[0][run.steps[0].index("-m") + 1] == str(run.tmp / "model")
    run.cleanup()
    _ct, run = _run(scene, tmp_path, preview=False)
    assert run.preview_steps == [] and [s[0] for s in run.steps] == ["predict"]
    run.cleanup()


def test_preview_shows_at_once_then_the_full_result_replaces_it(scene, tmp_path):
    ct, run = _run(scene, tmp_path)
    runner = Runner()
    seq = SegmentSequence(run, runner)
    assert [j.steps for j in runner.jobs] == [run.preview_steps]
    events = seq.poll()
    assert events == [{"event": "start", "stage": "patches", "total": 4, "phase": PREVIEW}]
    assert describe_event("segment", {**events[0], "event": "progress", "current": 1},
                          2.0).startswith("Preview: patches: 1/4")
    runner.jobs[0].finish(shift=1, seconds=6.0)
    assert not seq.finished
    events = seq.poll()
    [done] = [e for e in events if e["event"] == "phase_done"]
    assert done["phase"] == PREVIEW and done["model"] == str(tmp_path / "model")
    measurement = Measurement.from_dict(done["measurement"])
    assert (measurement.mode, measurement.device, measurement.job_seconds,
            measurement.case_seconds, measurement.megavoxels) == ("fast", "cpu", 6.0, 4.0, 0.5)
    assert [j.steps for j in runner.jobs] == [run.preview_steps, run.steps]
    assert not seq.finished and seq.status is JobStatus.RUNNING and seq.phase == FULL

    text = deliver_preview(scene, seq)
    [node] = _segmentations(scene)
    assert node.GetName() == "CT segmentation (preview)" == seq.preview_names[0]
    assert node.GetAttribute(segment_run.TAG_PREVIEW) == "CT segmentation"
    assert text.startswith("Preview in 'CT segmentation (preview)' after 6 s")
    back, _ = mrml.labels_from_segmentation(scene, node, {"organ": 1, "lesion": 2}, ct)
    np.testing.assert_array_equal(back, _labels(1))

    runner.jobs[1].finish(shift=0, seconds=60.0, passes=320.0)
    events = seq.poll()
    assert [e["phase"] for e in events if e["event"] == "phase_done"] == [FULL]
    assert seq.finished and seq.status is JobStatus.OK and seq.elapsed == 66.0
    assert outcome_text(seq, "Segmentation completed in 66 s") is None
    [result] = segment_run.deliver_results(scene, run)
    assert result.segmentation is node and result.notes == []
    assert node.GetName() == "CT segmentation" and node.GetAttribute(
        segment_run.TAG_PREVIEW) is None
    back, _ = mrml.labels_from_segmentation(scene, node, {"organ": 1, "lesion": 2}, ct)
    np.testing.assert_array_equal(back, _labels(0))
    assert len(_segmentations(scene)) == 1
    run.cleanup()


def test_a_chosen_output_node_gets_the_preview_then_its_name_back(scene, tmp_path):
    target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Liver")
    ct, run = _run(scene, tmp_path, output=target)
    runner, seq = _preview_shown(scene, run)
    assert target.GetName() == "Liver (preview)" and len(_segmentations(scene)) == 1
    runner.jobs[1].finish()
    seq.poll()
    [result] = segment_run.deliver_results(scene, run)
    assert result.segmentation is target and target.GetName() == "Liver"
    run.cleanup()


def test_cancel_during_the_full_phase_keeps_the_preview(scene, tmp_path):
    _ct, run = _run(scene, tmp_path)
    runner, seq = _preview_shown(scene, run)
    seq.cancel(1.0)
    assert seq.cancel_requested and runner.jobs[1].cancel_requested
    seq.poll()
    assert seq.finished and seq.status is JobStatus.CANCELLED
    text = outcome_text(seq, "Segmentation cancelled: ")
    assert text.startswith("Cancelled: the preview is kept in 'CT segmentation (preview)'")
    [node] = _segmentations(scene)
    assert node.GetAttribute(segment_run.TAG_PREVIEW) == "CT segmentation"
    run.cleanup()


def test_cancel_between_the_phases_starts_nothing_more(scene, tmp_path):
    _ct, run = _run(scene, tmp_path)
    runner = Runner()
    seq = SegmentSequence(run, runner)
    runner.jobs[0].finish()
    seq.request_stop()   # the preview had already ended; its exit was not polled yet
    events = seq.poll()
    assert [e["phase"] for e in events if e["event"] == "phase_done"] == [PREVIEW]
    assert len(runner.jobs) == 1 and seq.finished and seq.status is JobStatus.CANCELLED
    run.cleanup()


def test_cancel_during_the_preview_delivers_nothing(scene, tmp_path):
    _ct, run = _run(scene, tmp_path)
    runner = Runner()
    seq = SegmentSequence(run, runner)
    seq.cancel()
    events = seq.poll()
    assert not [e for e in events if e["event"] == "phase_done"]
    assert seq.finished and seq.status is JobStatus.CANCELLED and len(runner.jobs) == 1
    assert outcome_text(seq, "Segmentation cancelled: ") is None
    run.cleanup()


def test_failures_of_the_full_phase_keep_the_preview_and_say_why(scene, tmp_path):
    _ct, run = _run(scene, tmp_path)
    runner = Runner()
    seq = SegmentSequence(run, runner)
    runner.jobs[0].finish()
    seq.poll()
    deliver_preview(scene, seq)
    runner.jobs[1].fail("out of memory")
    seq.poll()
    assert seq.finished and seq.status is JobStatus.FAILED
    assert seq.error_message() == "out of memory"
    assert outcome_text(seq, "Segmentation failed: out of memory") == (
        "Segmentation failed: out of memory The preview is kept in 'CT segmentation (preview)'.")
    run.cleanup()
    # the full job cannot even start
    _ct, run = _run(scene, tmp_path)
    runner = Runner(fail_from=1)
    seq = SegmentSequence(run, runner)
    runner.jobs[0].finish()
    seq.poll()
    assert seq.finished and seq.status is JobStatus.FAILED
    assert "could not start the full-quality segmentation" in seq.error_message()
    run.cleanup()


def test_an_edited_preview_is_kept_and_the_result_goes_to_a_new_node(scene, tmp_path):
    _ct, run = _run(scene, tmp_path)
    runner, seq = _preview_shown(scene, run)
    [preview] = _segmentations(scene)
    _paint(preview, "organ")
    runner.jobs[1].finish()
    seq.poll()
    [result] = segment_run.deliver_results(scene, run)
    assert result.segmentation is not preview and "was edited while segmenting" in result.notes[0]
    assert preview.GetName() == "CT segmentation (preview)"
    assert result.segmentation.GetName().startswith("CT segmentation")
    assert "preview" not in result.segmentation.GetName()
    run.cleanup()


def test_without_preview_one_phase_untagged_events_and_its_time(scene, tmp_path):
    _ct, run = _run(scene, tmp_path, preview=False)
    runner = Runner()
    seq = SegmentSequence(run, runner)
    assert seq.poll() == [{"event": "start", "stage": "patches", "total": 4}]
    runner.jobs[0].finish(seconds=30.0, passes=320.0)
    events = seq.poll()
    [done] = [e for e in events if e["event"] == "phase_done"]
    assert done["phase"] == FULL and seq.finished and seq.status is JobStatus.OK
    book = segment_times.record(None, done)
    [m] = TimingBook.from_json(book).measurements(str(tmp_path / "model"))
    assert (m.mode, m.job_seconds, m.passes) == ("full", 30.0, 320.0)
    assert outcome_text(seq, "Segmentation completed in 30 s") is None
    run.cleanup()
