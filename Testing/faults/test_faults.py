"""The fault-injection suite: one test per kind of fault in :data:`catalogue.FAULTS`.

Each test copies the small world built once per session, breaks one thing, runs ``nnseg``
in-process and asserts: the exit code; that the output holds what the catalogue says NNSeg
says (which names the file or option and the problem); that no traceback (nor any text the
fault lists as ``absent``) is printed; that no file that existed before was changed or
deleted; and that no temporary file is left behind. ``docs/FAULTS.md`` must equal the
catalogue's rendering.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from catalogue import DOC, FAULTS, GROUPS, Fault, render  # noqa: E402
from conftest import kept_signal_handlers  # noqa: E402
from world import (  # noqa: E402
    World,
    build_world,
    copy_world,
    lost_or_changed,
    snapshot,
    temp_leftovers,
)

TESTING = Path(__file__).resolve().parents[1]
IN_PROCESS = [f for f in FAULTS if f.setup is not None]


@pytest.fixture(scope="session")
def golden(tmp_path_factory) -> World:
    with kept_signal_handlers():
        return build_world(tmp_path_factory.mktemp("golden"))


def says_pattern(says: str, world: World) -> str:
    """The catalogue's ``says`` as a regex: placeholders filled in, ``…`` matching anything."""
    places = world.placeholders()
    parts = re.split(r"(\{[A-Z]+\}|…)", says)
    regex = []
    for part in parts:
        if part == "…":
            regex.append(".*?")
        elif part[1:-1] in places and part.startswith("{"):
            regex.append(re.escape(places[part[1:-1]]))
        else:
            regex.append(re.escape(part))
    return "".join(regex)


@pytest.mark.parametrize("fault", IN_PROCESS, ids=[f.kind for f in IN_PROCESS])
def test_fault(fault: Fault, golden: World, tmp_path: Path, capfd) -> None:
    from NNSegLib.cli import main

    world = copy_world(golden, tmp_path / "world")
    assert fault.setup is not None
    argv = fault.setup(world)
    before = snapshot(world.root)
    capfd.readouterr()
    with kept_signal_handlers(), contextlib.ExitStack() as stack:
        for context in world.during:
            stack.enter_context(context)
        code = main(argv)
    out, err = capfd.readouterr()
    text = out + err
    assert code == fault.code, text
    assert re.search(says_pattern(fault.says, world), text, re.S), text
    for bad in ("Traceback", "internal error", *fault.absent):
        assert bad not in text, text
    if fault.code and argv[0] != "check":   # check prints its report of every problem
        errors = [line for line in err.splitlines() if line.startswith(f"nnseg {argv[0]}: ")]
        assert len(errors) == 1, err   # one error line
    lost = lost_or_changed(before, snapshot(world.root), fault.changes)
    assert not lost, lost
    assert not temp_leftovers(world.root)


def test_catalogue_is_consistent() -> None:
    kinds = [f.kind for f in FAULTS]
    assert len(kinds) == len(set(kinds)), "each kind once"
    sources = "\n".join(p.read_text(encoding="utf-8") for p in TESTING.rglob("test_*.py"))
    for fault in FAULTS:
        assert fault.code in (0, 2, 130, -9)
        assert (fault.setup is None) != (not fault.test), fault.kind
        assert fault.group in GROUPS, fault.kind
        if fault.setup is None:
            assert re.search(rf"def {fault.test}\(", sources), f"{fault.kind}: no {fault.test}"


def test_docs_match_the_catalogue() -> None:
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == render(), (
        "docs/FAULTS.md is out of date: run `python Testing/faults/catalogue.py`")


def test_a_2d_dataset_stays_2d_end_to_end(tmp_path: Path, capfd) -> None:
    """Issue 10, bug 4: 2D images are refused in a 3D dataset, and a 2D dataset is planned,
    trained and predicted as 2D (the label maps written back as 2D images)."""
    import json

    import numpy as np
    import SimpleITK as sitk
    from conftest import make_case

    from NNSegLib.cli import main

    ds = tmp_path / "Dataset002_Flat"
    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "labelsTr"):
        (ds / sub).mkdir(parents=True)
    for k in range(5):
        image, label = make_case(rng, (8, 32, 32))
        for array, path in ((image[4], ds / "imagesTr" / f"c{k}_0000.nii.gz"),
                            (label[4], ds / "labelsTr" / f"c{k}.nii.gz")):
            sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": 5, "file_ending": ".nii.gz"}))
    work = str(tmp_path / "work")
    with kept_signal_handlers():
        assert main(["check", str(ds), "--workers", "1", "--quiet"]) == 0
        assert main(["fingerprint", str(ds), "--work", work, "--workers", "1", "--quiet"]) == 0
        assert main(["plan", str(ds), "--work", work, "--quiet"]) == 0
        plans = json.loads((tmp_path / "work" / "plans.json").read_text())
        assert list(plans["configurations"]) == ["2d"]
        assert main(["preprocess", str(ds), "--work", work, "--workers", "1", "--quiet"]) == 0
        assert main(["train", str(ds), "2d", "all", "--work", work, "--epochs", "1",
                     "--iterations-per-epoch", "1", "--val-iterations", "0", "--device", "cpu",
                     "--num-threads", "1", "--set", "batch_size=2", "--quiet"]) == 0
        assert main(["predict", "-i", str(ds / "imagesTr" / "c0_0000.nii.gz"), "-o",
                     str(tmp_path / "pred"), "-m", str(tmp_path / "work" / "results"),
                     "--device", "cpu", "--no-tta", "--quiet"]) == 0
    written = sitk.ReadImage(str(tmp_path / "pred" / "c0.nii.gz"))
    assert written.GetDimension() == 2 and written.GetSize() == (32, 32)
    assert "Traceback" not in capfd.readouterr().err
