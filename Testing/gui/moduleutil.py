"""Helpers of the GUI tests: the NNSeg module loaded from its folder, scene content."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def open_module(env):
    """NNSeg as a clinician opens it: loaded from its folder, then its panel shown."""
    env.load_module(REPO / "NNSeg")
    env.select("NNSeg")
    import slicer

    return slicer.modules.NNSegWidget


def other_module(env) -> None:
    """Show another module (NNSeg's widget gets ``exit()``)."""
    import slicer
    from harness import application

    manager = slicer.app.moduleManager()
    if manager.module("Data") is None:
        manager.modules["Data"] = application.LogicModule(None)
    env.select("Data")


def case_arrays(seed: int, shape=(24, 32, 32)):
    """An MR-like image with two labelled blobs (``a`` = 1, ``b`` = 2) and its label map."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 10, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[6:14, 8:20, 8:20] = 1
    labels[14:18, 10:16, 18:26] = 2
    image[labels == 1] += 60
    image[labels == 2] += 120
    return image, labels


def add_case(scene, name: str, seed: int, shape=(24, 32, 32)):
    from NNSegLib.data.io import Geometry
    from NNSegLib.slicer.scene import mrml

    geo = Geometry(shape, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    image, labels = case_arrays(seed, shape)
    volume = mrml.volume_node_from_array(scene, image, geo, name)
    seg = mrml.segmentation_from_labels(scene, labels, geo, {0: "bg", 1: "a", 2: "b"},
                                        reference_volume=volume, name=f"{name} seg")
    return volume, seg


def bound_widgets(widget) -> dict:
    """SlicerParameterName → widget, as the parameterNodeWrapper finds them."""
    import qt

    found = {}
    for w in widget.parent.findChildren(qt.QWidget):
        name = w.property("SlicerParameterName")
        if name:
            found[name] = w
    return found


def write_scene_like_dataset(root: Path, num_cases: int = 5) -> Path:
    """An nnU-Net raw dataset of cases like :func:`add_case` makes (labels a, b)."""
    import json

    import SimpleITK as sitk

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(num_cases):
        image, labels = case_arrays(i)
        for array, path in ((image, root / "imagesTr" / f"case{i}_0000.nii.gz"),
                            (labels, root / "labelsTr" / f"case{i}.nii.gz")):
            itk = sitk.GetImageFromArray(array)
            itk.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(itk, str(path))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": num_cases, "file_ending": ".nii.gz", "name": root.name}, indent=2))
    return root


def assert_columns_fit(table) -> None:
    """Every header text of a table fits its column (nothing cut off)."""
    header = table.horizontalHeader()
    metrics = header.fontMetrics()
    for column in range(table.columnCount):
        item = table.horizontalHeaderItem(column)
        text = item.text() if item is not None else ""
        assert header.sectionSize(column) >= metrics.horizontalAdvance(text), (
            f"{table.name}: column {column} '{text}' is cut")
