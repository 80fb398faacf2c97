"""NNSegLib.slicer.batch_job: .seg.nrrd through MRML, scene batches, the job end to end."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs slicer-core (pip install slicer-core) for real MRML nodes")

from conftest import make_model_folder  # noqa: E402
from scene.test_ras_geometry import GEO, assert_geometry_close  # noqa: E402

from NNSegLib.data.io import SimpleITKIO  # noqa: E402
from NNSegLib.data.seg_nrrd import read_seg_nrrd  # noqa: E402
from NNSegLib.jobs.base import JobStatus  # noqa: E402
from NNSegLib.jobs.process import JobChain  # noqa: E402
from NNSegLib.slicer import batch_job  # noqa: E402
from NNSegLib.slicer.scene import mrml  # noqa: E402

pytestmark = pytest.mark.slicer


def test_seg_nrrd_writer_keeps_values_names_geometry_and_tags(ctx, tmp_path):
    labels = np.zeros(GEO.shape, np.uint8)
    labels[1:3, 2:5, 3:6] = 2
    write = batch_job.seg_nrrd_writer(ctx)
    nodes = ctx.scene.GetNumberOfNodes()
    model = {"name": "Dataset007_X", "version": "v3", "software": "9.9"}
    path = write(labels, GEO, {0: "background", 1: "liver", 2: "tumor"}, tmp_path, "c1",
                 ".nii.gz", model)
    assert path == tmp_path / "c1.seg.nrrd" and ctx.scene.GetNumberOfNodes() == nodes
    back, geo, names = read_seg_nrrd(path)        # without Slicer
    np.testing.assert_array_equal(back, labels)
    assert names == {1: "liver", 2: "tumor"}
    assert_geometry_close(geo, GEO, 1e-5)
    seg = mrml.read_segmentation(ctx.scene, path)  # and with it
    segment = seg.GetSegmentation().GetNthSegment(1)
    assert segment.GetName() == "tumor"
    assert mrml.segment_tag(segment, mrml.TAG_MODEL_VERSION) == "v3"
    assert mrml.segment_tag(segment, mrml.TAG_MODEL) == "Dataset007_X"
    assert mrml.segment_tag(segment, mrml.TAG_SOFTWARE_VERSION) == "9.9"
    assert batch_job.choose_writer("image") is None
    assert callable(batch_job.choose_writer("auto"))


def test_scene_batch_job_end_to_end(ctx, tmp_path):
    rng = np.random.default_rng(0)
    volumes = [[mrml.volume_node_from_array(ctx.scene, rng.normal(100, 20, GEO.shape)
                                            .astype(np.float32), GEO, name)]
               for name in ("Patient 1", "Patient 1", "x_0001")]
    model = make_model_folder(tmp_path / "model", folds=("0",))
    job = batch_job.prepare_scene_batch(volumes, tmp_path / "batch", model, folds="0",
                                        device="cpu", tta=False)
    assert job["cases"] == ["Patient_1", "Patient_1_2", "x_0001x"]
    for case in job["cases"]:
        image, geo = SimpleITKIO().read(tmp_path / "batch" / "images" / f"{case}_0000.nii.gz")
        assert_geometry_close(geo, GEO, 1e-5)
    (step,) = job["steps"]
    assert step[:2] == ["segment-batch", "-i"] and "--no-tta" in step
    chain = JobChain([step + ["--threads", "1"]], python=sys.executable)
    events = chain.wait(timeout=300)
    assert chain.status is JobStatus.OK, chain.error_message() or events[-5:]
    cases = [e for e in events if e.get("stage") == "segment-batch"
             and e["event"] in ("start", "progress")]
    assert [(e["event"], e.get("current"), e["total"]) for e in cases] == [
        ("start", None, 3), ("progress", 1, 3), ("progress", 2, 3), ("progress", 3, 3)]
    queue = json.loads((tmp_path / "batch" / "review_queue.json").read_text())
    assert queue["cases"]["Patient_1"]["segmentation"] == "Patient_1.seg.nrrd"
    assert queue["cases"]["x_0001x"]["images"] == ["images/x_0001x_0000.nii.gz"]
    from NNSegLib.inference.review_queue import queue_table

    assert sorted(r[1] for r in queue_table(tmp_path / "batch")[1]) == sorted(job["cases"])
