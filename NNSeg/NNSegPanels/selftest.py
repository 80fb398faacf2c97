"""NNSegTest's walks (NNSeg.py), run inside Slicer: the logic on a tiny case, the click path
Dataset → Plan → Train → Segment, and the clinician's loop with the Batch and review panel."""

import pathlib
import shutil
import tempfile
import time

import slicer


def exportAndSegmentTinyCase(test, logic) -> None:
    """The logic on a tiny case: export it, segment it with a threshold stand-in."""
    import json

    import numpy as np

    from NNSegLib.data.io import Geometry
    from NNSegLib.slicer.scene import mrml
    from NNSegLib.slicer.scene.prediction import predict_volumes

    test.delayDisplay("Building a tiny case")
    scene = slicer.mrmlScene
    geometry = Geometry((6, 8, 10), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                        (1, 0, 0, 0, 1, 0, 0, 0, 1))
    image = np.zeros(geometry.shape, np.float32)
    image[2:4, 2:6, 3:8] = 100
    volume = mrml.volume_node_from_array(scene, image, geometry, "tiny")
    labels = (image > 50).astype(np.uint8)
    seg = mrml.segmentation_from_labels(scene, labels, geometry, {0: "background", 1: "liver"},
                                        reference_volume=volume)
    node = logic.getParameterNode().parameterNode
    logic.lib.dataset.clear_cases(node)
    logic.lib.dataset.add_case(node, [volume], seg)
    out = pathlib.Path(tempfile.mkdtemp()) / "Dataset999_Tiny"
    report = logic.lib.dataset.export_dataset(scene, node, out, ["CT"])
    test.assertIn("OK", report)
    meta = json.loads((out / "dataset.json").read_text())
    test.assertEqual(meta["labels"], {"background": 0, "liver": 1})
    test.delayDisplay("Segmenting with a threshold stand-in for a model")

    def threshold(images, geometry):
        return (images[0] > 50).astype(np.uint8), None

    result, _unc = predict_volumes(scene, [volume], threshold, {0: "background", 1: "liver"})
    back, _geo = mrml.labels_from_segmentation(scene, result, {"liver": 1}, volume)
    test.assertTrue(np.array_equal(back, labels))
    from NNSegLib.data.splits import parse_folds

    test.assertEqual([str(f) for f in parse_folds("0-2,4")], ["0", "1", "2", "4"])
    shutil.rmtree(out.parent, ignore_errors=True)
    test.delayDisplay("Test passed")


def waitFor(test, widget, key: str, timeout: float = 1800.0) -> None:
    """Process events until the panel's job ended; fail on a timeout or a failed job."""
    deadline = time.time() + timeout
    while widget.board.get(key) is not None:
        test.assertLess(time.time(), deadline, f"{key} still running after {timeout} s")
        slicer.app.processEvents()
        time.sleep(0.1)
        widget.onTimer()
    text = widget.statusLabel(key).text
    test.assertIn("completed", text, f"{key}: {text}")


def clickPath(test) -> None:
    """Dataset → Plan → Train (1 short epoch) → Segment, by clicking the module's buttons."""
    from NNSegLib.data.sample_data import generate_sample_dataset

    root = pathlib.Path(tempfile.mkdtemp(prefix="nnseg_selftest_"))
    test.delayDisplay("Loading 5 sample cases")
    samples = generate_sample_dataset(root / "samples", num_cases=5, seed=3)
    slicer.util.selectModule("NNSeg")
    widget = slicer.modules.nnseg.widgetRepresentation().self()
    widget.confirm = lambda text: True  # the CPU-time warning would wait for a click
    logic, p = widget.logic, widget._parameterNode
    logic.lib.dataset.clear_cases(p.parameterNode)
    for volumes, seg in logic.loadCasesFromFolder(slicer.mrmlScene, samples):
        p.trainingVolume, p.trainingSegmentation = volumes[0], seg
        test.assertTrue(widget.ui.addPairButton.enabled, widget.ui.addPairButton.toolTip)
        widget.ui.addPairButton.click()
    test.assertEqual(len(logic.lib.dataset.case_rows(p.parameterNode)), 5)
    p.channelNames = "MR"
    p.datasetFolder = root / "Dataset990_SelfTest"
    p.workFolder = root / "work"
    widget.ui.exportDatasetButton.click()
    test.assertIn("OK", widget.ui.checkResultsTextEdit.toPlainText())

    test.delayDisplay("Plan")
    p.configurations = "3d_fullres"
    widget.ui.planButton.click()
    waitFor(test, widget, "plan")
    test.assertGreater(widget.ui.plansTableWidget.columnCount, 0)

    test.delayDisplay("Train one short epoch")
    p.trainConfiguration, p.folds, p.maxEpochs, p.device = "3d_fullres", "0", 1, "cpu"
    from NNSegLib.training.train_cli import train_options_argv

    widget.trainOptions = train_options_argv(iterations_per_epoch=5, val_iterations=2)
    widget.updateGui()
    test.assertTrue(widget.ui.trainButton.enabled, widget.ui.trainButton.toolTip)
    widget.ui.trainButton.click()
    waitFor(test, widget, "train")
    test.assertTrue((root / "work" / "results" / "3d_fullres" / "fold_0" /
                     "checkpoint_final.pt").is_file())

    test.delayDisplay("Segment (preview first, then the full result in the same node)")
    widget.ui.useTrainedModelButton.click()
    p.inputVolume = p.trainingVolume
    p.outputSegmentation = None
    p.previewFirst = True
    before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    widget.updateGui()
    test.assertTrue(widget.ui.segmentButton.enabled, widget.ui.segmentButton.toolTip)
    widget.ui.segmentButton.click()
    waitFor(test, widget, "segment")
    count = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    test.assertEqual(count, before + 1)
    result = slicer.mrmlScene.GetNthNodeByClass(count - 1, "vtkMRMLSegmentationNode")
    test.assertNotIn("(preview)", result.GetName())
    test.assertIn("preview", widget.ui.segmentTimeLabel.text)
    shutil.rmtree(root, ignore_errors=True)
    test.delayDisplay("Click path passed")


def clinicianLoop(test) -> None:
    """Issue 12's loop on the application's scene (the module's Testing/Python/loop_walk.py:
    train, batch, rank, correct, add, fine-tune, segment again), then the Batch and review panel
    on the fine-tuned model: segment a folder, click the least certain case, accept it."""
    import sys

    from NNSegLib.slicer.scene import mrml

    walks = pathlib.Path(__file__).resolve().parent.parent / "Testing" / "Python"
    if str(walks) not in sys.path:
        sys.path.insert(0, str(walks))
    import loop_walk

    root = pathlib.Path(tempfile.mkdtemp(prefix="nnseg_loop_"))
    test.delayDisplay("The clinician's loop (about a minute on a CPU)")
    ctx = mrml.SceneContext(slicer.mrmlScene, slicer.app.applicationLogic(),
                            slicer.modules.segmentations.logic())
    result = loop_walk.run_walk(root, ctx)
    test.assertEqual(loop_walk.walk_problems(result), [])

    test.delayDisplay("Batch and review panel")
    slicer.util.selectModule("NNSeg")
    widget = slicer.modules.nnseg.widgetRepresentation().self()
    p = widget._parameterNode
    p.modelPath = root / "work" / "results"
    widget.onModelChanged(str(p.modelPath))
    p.predictDevice, p.predictFolds, p.tta, p.batchSource = "cpu", "0", False, "folder"
    p.batchInputFolder, p.batchFolder = root / "batch1" / "images", root / "batch3"
    widget.updateGui()
    test.assertTrue(widget.ui.batchButton.enabled, widget.ui.batchButton.toolTip)
    widget.ui.batchButton.click()
    waitFor(test, widget, "batch")
    test.assertEqual(widget.ui.reviewTableWidget.rowCount, 3)
    widget.onReviewRowClicked(0, 0)
    test.assertTrue(widget.ui.acceptButton.enabled, widget.ui.acceptButton.toolTip)
    widget.ui.acceptButton.click()
    test.assertEqual(widget.ui.reviewTableWidget.item(0, 2).text(), "accepted")
    shutil.rmtree(root, ignore_errors=True)
    test.delayDisplay("Clinician's loop passed")
