"""NNSegLib.inference.batch and .review_queue: segment a batch, rank, mark, add back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_model_folder, write_dataset, write_image

from NNSegLib.inference import review_queue as rq
from NNSegLib.inference.batch import batch_inputs, segment_batch
from NNSegLib.inference.model_loader import load_model
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Cancelled, CancelToken, Progress


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(folder, n=3):
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(folder / f"scan{i}_0000.nii.gz",
                    rng.normal(100, 20 * (i + 1), (12, 16, 16)).astype(np.float32))
    (folder / "scan0.seg.nrrd").write_bytes(b"not an input")   # left out by batch_inputs
    write_image(folder / "scan0_uncertainty.nii.gz", np.zeros((12, 16, 16), np.float32))
    return folder


def _batch(tmp_path, model_dir=None, **kw):
    model_dir = model_dir or make_model_folder(tmp_path / "model", folds=("0",))
    model = load_model(model_dir, folds=["0"], device="cpu", tta=False)
    cases = batch_inputs([_inputs(tmp_path / "in")], 1)
    batch = tmp_path / "batch"
    return batch, segment_batch(cases, batch, model, model_dir, **kw), model_dir


def test_batch_writes_files_and_a_ranked_queue(tmp_path, capsys):
    events = []
    batch, done, model_dir = _batch(tmp_path, progress=Progress(listeners=[events.append]))
    assert done == ["scan0", "scan1", "scan2"]
    for case in done:
        assert (batch / f"{case}.nii.gz").is_file()
        assert (batch / f"{case}_uncertainty.nii.gz").is_file()
    starts = [e for e in events if e["event"] == "start" and e["stage"] == "segment-batch"]
    assert len(starts) == 1 and starts[0]["total"] == 3
    assert events[-1]["event"] == "done" and events[-1]["segmented"] == 3
    doc = json.loads((batch / rq.QUEUE_FILE).read_text())
    assert doc["format"] == rq.QUEUE_FORMAT and doc["version"] == rq.QUEUE_VERSION
    assert doc["model"]["version"] == "v1" and doc["model"]["folds"] == ["0"]
    assert doc["labels"] == {"0": "background", "1": "a", "2": "b"}
    entry = doc["cases"]["scan1"]
    assert entry["state"] == "pending" and entry["segmentation"] == "scan1.nii.gz"
    assert entry["images"][0].endswith("in/scan1_0000.nii.gz")
    ranked = rq.ranked_entries(batch)
    keys = [e.sort_key for e in ranked]
    assert keys == sorted(keys) and all(e.stats is not None for e in ranked)
    header, rows = rq.queue_table(batch)
    assert header[:5] == ["#", "case", "state", "entropy (fg)", "uncertain"]
    assert header[5:] == ["a (ml)", "b (ml)", "added"]
    assert [r[1] for r in rows] == [e.case for e in ranked] and rows[0][0] == "1"

    # restart: finished cases are skipped; another model is refused unless --overwrite
    model = load_model(model_dir, folds=["0"], device="cpu", tta=False)
    cases = batch_inputs([tmp_path / "in"], 1)
    assert segment_batch(cases, batch, model, model_dir) == []
    (batch / "scan2_uncertainty.nii.gz").unlink()
    assert segment_batch(cases, batch, model, model_dir) == ["scan2"]
    tta = load_model(model_dir, folds=["0"], device="cpu", tta=True)
    with pytest.raises(NNSegError, match="segmented by .* v1.*--overwrite"):
        segment_batch(cases, batch, tta, model_dir)

    # marking survives in the file; the CLI prints the ranked table
    rq.mark_case(batch, "scan1", rq.NEEDS_CORRECTION)
    assert rq.get_entry(batch, "scan1").state == "needs_correction"
    with pytest.raises(NNSegError, match="not one of"):
        rq.mark_case(batch, "scan1", "done")
    with pytest.raises(NNSegError, match="no case 'nope'"):
        rq.mark_case(batch, "nope", rq.ACCEPTED)
    from NNSegLib.cli import main

    assert main(["review", str(batch), "--mark", "scan0", "accepted", "--region", "scan0",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "scan0: accepted" in out and "needs_correction" in out and "entropy (fg)" in out
    assert rq.get_entry(batch, "scan0").state == "accepted"
    assert segment_batch(cases, batch, tta, model_dir, overwrite=True) == done
    assert rq.get_entry(batch, "scan0").state == "pending"


def test_cancel_keeps_finished_cases_and_a_rerun_continues(tmp_path):
    token = CancelToken()

    def cancel_after_first(event):
        if event["event"] == "progress" and event.get("stage") == "segment-batch":
            token.cancel("test")

    with pytest.raises(Cancelled):
        _batch(tmp_path, progress=Progress(token, [cancel_after_first]))
    batch = tmp_path / "batch"
    assert list(json.loads((batch / rq.QUEUE_FILE).read_text())["cases"]) == ["scan0"]
    model_dir = tmp_path / "model"
    model = load_model(model_dir, folds=["0"], device="cpu", tta=False)
    done = segment_batch(batch_inputs([tmp_path / "in"], 1), batch, model, model_dir)
    assert done == ["scan1", "scan2"]


def test_add_reviewed_case_to_a_dataset(tmp_path):
    batch, _done, _model = _batch(tmp_path)
    ds = write_dataset(tmp_path / "Dataset002_Review", num_cases=2, shape=(12, 16, 16))
    spec = json.loads((ds / "dataset.json").read_text())
    spec["labels"] = {"background": 0, "b": 1, "a": 2}          # same names, other values
    (ds / "dataset.json").write_text(json.dumps(spec))
    added = rq.add_reviewed_case(batch, "scan1", ds)
    assert added.identifier == "scan1" and added.num_training == 3
    assert added.label_values == {0: 0, 1: 2, 2: 1}
    provenance = json.loads((ds / "nnseg_provenance.json").read_text())["cases"]["scan1"]
    assert provenance["origin"] == "accepted_prediction" and provenance["changed_voxels"] == 0
    assert provenance["model"]["version"] == "v1" and provenance["batch_case"] == "scan1"
    entry = rq.get_entry(batch, "scan1")
    assert entry.added_to_dataset["case"] == "scan1"
    assert rq.queue_table(batch)[1][[r[1] for r in rq.queue_table(batch)[1]].index("scan1")][-1] \
        == "scan1"
    # a corrected label file: changed voxels are counted, the case name is new
    from NNSegLib.data.io import SimpleITKIO

    labels, geo = SimpleITKIO().read(entry.segmentation)
    labels[:] = 0
    labels[3:6, 4:8, 4:8] = 1
    SimpleITKIO().write(labels, geo, tmp_path / "fixed.nii.gz")
    rq.add_reviewed_case(batch, "scan2", ds, tmp_path / "fixed.nii.gz", identifier="scan2b")
    provenance = json.loads((ds / "nnseg_provenance.json").read_text())["cases"]["scan2b"]
    assert provenance["origin"] == "corrected_prediction" and provenance["changed_voxels"] > 0
    with pytest.raises(NNSegError, match="already exists"):
        rq.add_reviewed_case(batch, "scan1", ds)
    with pytest.raises(NNSegError, match="no review queue"):
        rq.ranked_entries(tmp_path)
