"""A Segment job from click to result: inputs captured at the start, results placed safely.

:func:`capture_segment_run` is called when *Segment* is clicked. It copies what the job
needs out of the scene right away — each case's volumes are written to a temporary folder,
the node IDs and names are remembered — so nothing the user does while the job runs
(choosing another volume, deleting one, closing the scene) changes what is segmented or
where the result goes. :func:`deliver_results` then reads the job's label maps into
segmentation nodes:

* a new node per case by default; an existing node only when the user chose it and
  :func:`overwrite_decision` allowed it (asking first when it holds work not written by
  NNSeg, or NNSeg's result edited since — detected by :func:`content_fingerprint`);
* placed in the input volume's study in the subject hierarchy (:func:`place_in_study`),
  shown in 3D on request (:func:`show_in_3d`);
* a deleted input volume or output node never raises: the result still arrives, in a
  new node, with a note saying so.

With *Preview first* the run also holds the commands of a fast preview (``nnseg predict
--fast``, into ``<tmp>/preview``); :func:`deliver_results` with ``preview=True`` puts its
label maps into the output node right away, named "… (preview)" and tagged
(:data:`TAG_PREVIEW`, :func:`mark_preview`), and makes that node the one the full result
replaces (:mod:`NNSegLib.slicer.segment_sequence` runs the two phases).

A run holds a list of cases, so segmenting several inputs in one job (a batch) uses the
same path. No ``qt``; MRML nodes through :mod:`NNSegLib.slicer.scene.mrml`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.data.splits import parse_folds
from NNSegLib.slicer.scene import mrml
from NNSegLib.util.i18n import tr

#: Node attribute holding the content fingerprint of the segments NNSeg wrote.
TAG_FINGERPRINT = "NNSeg.ResultFingerprint"
#: Node attribute of a preview result: the node's name without the "(preview)" mark.
TAG_PREVIEW = "NNSeg.Preview"
#: Job output folders (under the run's temporary folder) of the full result and the preview.
OUTPUT, PREVIEW_OUTPUT = "output", "preview"


@dataclass
class SegmentCase:
    """One input of a run: what was selected when the job started."""

    name: str                     # file stem of the job's input/output files
    volume_ids: list[str]
    volume_name: str
    output_id: str | None = None  # existing node to overwrite (allowed at start), else new
    output_fingerprint: str | None = None


@dataclass
class SegmentRun:
    """Everything a Segment job needs after it started (see the module doc)."""

    cases: list[SegmentCase]
    model: Path                   # folder the labels are read from (an imported zip's)
    tmp: Path
    steps: list[list[str]]
    uncertainty: bool = False
    show_3d: bool = False
    postprocessing: bool = True
    started: float = field(default_factory=time.time)
    preview_steps: list[list[str]] = field(default_factory=list)  # empty: no preview
    source: str = ""              # the model as chosen (folder or .zip)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass
class SegmentResult:
    segmentation: Any
    uncertainty: Any = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# Overwriting
# ----------------------------------------------------------------------------------------
@dataclass
class OverwriteDecision:
    """``new`` (no node chosen), ``overwrite`` (nothing to lose) or ``ask`` (with why)."""

    action: str
    reason: str = ""


def content_fingerprint(scene: Any, segmentation: Any) -> str:
    """A hash of a segmentation's segment names and voxels on its reference grid.

    Equal before and after saving and reloading the scene; any edit of a segment (paint,
    erase, rename, add, remove) changes it.
    """
    names = mrml.segment_names(segmentation)
    digest = hashlib.sha256("\n".join(names).encode())
    if names:
        values = {name: i + 1 for i, name in enumerate(dict.fromkeys(names))}
        labels, geometry = mrml.labels_from_segmentation(scene, segmentation, values)
        digest.update(str((labels.shape, geometry.spacing, geometry.origin)).encode())
        digest.update(labels.tobytes())
    return digest.hexdigest()


def overwrite_decision(scene: Any, node: Any) -> OverwriteDecision:
    """May the result replace the segments of ``node`` without asking?"""
    if node is None:
        return OverwriteDecision("new")
    if node.GetSegmentation().GetNumberOfSegments() == 0:
        return OverwriteDecision("overwrite")
    stored = node.GetAttribute(TAG_FINGERPRINT)
    if node.GetAttribute(mrml.TAG_MODEL) and stored:
        if stored == content_fingerprint(scene, node):
            return OverwriteDecision("overwrite")
        return OverwriteDecision("ask", tr(
            "'{name}' was edited since NNSeg wrote it. Replace its segments, and your "
            "corrections, with the new result?", name=node.GetName()))
    return OverwriteDecision("ask", tr(
        "'{name}' holds segments NNSeg did not write. Replace them with the result?",
        name=node.GetName()))


# ----------------------------------------------------------------------------------------
# Capture and deliver
# ----------------------------------------------------------------------------------------
def capture_segment_run(scene: Any, cases: Sequence[Sequence[Any]], outputs: Sequence[Any],
                        model_path: Path | str, folds: str = "", device: str = "auto",
                        tta: bool = True, uncertainty: bool = False, postprocessing: bool = True,
                        show_3d: bool = False, allow_unfinished: bool = False,
                        preview: bool = False) -> SegmentRun:
    """Write every case's volumes to a new temporary folder and build the job's commands.

    Args:
        scene: The MRML scene.
        cases: Per case, one volume per channel.
        outputs: Per case, the segmentation node to overwrite (already allowed by
            :func:`overwrite_decision` and the user) or ``None`` for a new node.
        model_path: Model folder or ``.zip`` package.
        folds, device, tta, uncertainty, postprocessing: The panel's options.
        show_3d: Show the results in 3D.
        allow_unfinished: Also use folds whose training has not finished ("Use unfinished
            folds"; see :mod:`NNSegLib.slicer.model_folds`).
        preview: "Preview first": also build the fast preview's commands
            (``run.preview_steps``, run before ``run.steps``; a ``.zip`` is imported by them).

    Case ``k``'s channel ``c`` becomes ``<tmp>/input/case<k:03d>_<c:04d>.nii.gz``; the job
    writes ``<tmp>/output/case<k:03d>.*`` (the preview ``<tmp>/preview/…``). The caller runs
    the steps and calls :meth:`SegmentRun.cleanup` when done.
    """
    from NNSegLib.data.io import SimpleITKIO

    tmp = Path(tempfile.mkdtemp(prefix="nnseg_segment_"))
    captured = []
    try:
        for k, (volumes, output) in enumerate(zip(cases, outputs)):
            name = f"case{k:03d}"
            for c, volume in enumerate(volumes):
                array, geometry = mrml.array_from_volume_node(volume)
                SimpleITKIO().write(array, geometry, tmp / "input" / f"{name}_{c:04d}.nii.gz")
            captured.append(SegmentCase(
                name, [v.GetID() for v in volumes], volumes[0].GetName(),
                output.GetID() if output is not None else None,
                content_fingerprint(scene, output) if output is not None else None))
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    model = Path(str(model_path))
    steps = predict_commands(tmp / "input", tmp / OUTPUT, model, folds, device, tta,
                             uncertainty, import_dir=tmp / "model",
                             postprocessing=postprocessing, allow_unfinished=allow_unfinished)
    preview_steps: list[list[str]] = []
    if preview:
        preview_steps = predict_commands(
            tmp / "input", tmp / PREVIEW_OUTPUT, model, folds, device, import_dir=tmp / "model",
            postprocessing=postprocessing, allow_unfinished=allow_unfinished, fast=True)
        steps = [s for s in steps if s[0] != "import-model"]  # the preview imported it
    source = str(model)
    model = tmp / "model" if model.suffix.lower() == ".zip" else model
    return SegmentRun(captured, model, tmp, steps, uncertainty, show_3d, postprocessing,
                      preview_steps=preview_steps, source=source)


def deliver_results(scene: Any, run: SegmentRun, preview: bool = False) -> list[SegmentResult]:
    """Read the job's label maps into segmentation nodes (see the module doc).

    Args:
        scene: The MRML scene.
        run: The captured run.
        preview: Deliver the fast preview (``<tmp>/preview``): the nodes are marked as
            preview and become the run's outputs, so the full result replaces them (unless
            edited or deleted by then). Without it, a preview mark on the node is removed.

    Raises:
        RuntimeError: when the job wrote no label map for a case.
    """
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.slicer.model_folds import model_info
    from NNSegLib.slicer.scene.prediction import model_tags

    info = model_info(run.model)
    if "labels" not in info:
        raise RuntimeError(f"{run.model}: {info.get('description', 'no model')}")
    results = []
    folder = run.tmp / (PREVIEW_OUTPUT if preview else OUTPUT)
    for case in run.cases:
        outputs = sorted(p for p in folder.glob(f"{case.name}.*"))
        if not outputs:
            raise RuntimeError(tr("{folder}: the prediction wrote no label map for {case}",
                                  folder=folder, case=case.name))
        labels, geometry = SimpleITKIO().read(outputs[0])
        notes: list[str] = []
        volume = scene.GetNodeByID(case.volume_ids[0])
        if volume is None:
            notes.append(tr("The input volume '{name}' was deleted while segmenting; the "
                            "result has no reference volume.", name=case.volume_name))
        node = _output_node(scene, case, notes)
        seg = mrml.segmentation_from_labels(
            scene, labels.astype("int32"), geometry, info["labels"], reference_volume=volume,
            node=node, model_info=model_tags(run.model),
            name=scene.GenerateUniqueName(f"{case.volume_name} segmentation"))
        mark_preview(seg, preview)
        seg.SetAttribute(TAG_FINGERPRINT, content_fingerprint(scene, seg))
        if preview:   # the full result replaces this node's segments
            case.output_id = seg.GetID()
            case.output_fingerprint = seg.GetAttribute(TAG_FINGERPRINT)
        if volume is not None:
            place_in_study(scene, seg, volume)
        show_in_3d(seg, run.show_3d)
        unc = None
        unc_path = next(folder.glob(f"{case.name}_uncertainty.*"), None)
        if run.uncertainty and not preview and unc_path is not None:
            array, geo = SimpleITKIO().read(unc_path)
            unc = mrml.volume_node_from_array(scene, array, geo,
                                              f"{case.volume_name} uncertainty")
            if volume is not None:
                place_in_study(scene, unc, volume)
        results.append(SegmentResult(seg, unc, notes))
    return results


def preview_name(name: str) -> str:
    """The name a preview result carries: ``"<name> (preview)"``."""
    return tr("{name} (preview)", name=name)


def mark_preview(node: Any, preview: bool) -> None:
    """Mark a segmentation as a fast preview, or remove the mark from it.

    Marking renames the node to :func:`preview_name` and keeps its name in
    :data:`TAG_PREVIEW`; unmarking restores that name (unless the user renamed the node
    meanwhile) and removes the tag. Marking twice or unmarking an unmarked node does nothing.
    """
    base = node.GetAttribute(TAG_PREVIEW)
    if preview and base is None:
        node.SetAttribute(TAG_PREVIEW, node.GetName())
        node.SetName(preview_name(node.GetName()))
    elif not preview and base is not None:
        if node.GetName() == preview_name(base):
            node.SetName(base)
        node.RemoveAttribute(TAG_PREVIEW)


def _output_node(scene: Any, case: SegmentCase, notes: list[str]) -> Any:
    """The node a case's result goes to: the chosen one if still there and unchanged."""
    if case.output_id is None:
        return None
    node = scene.GetNodeByID(case.output_id)
    if node is None:
        notes.append(tr("The output segmentation was deleted while segmenting; the result "
                        "is in a new segmentation."))
        return None
    if content_fingerprint(scene, node) != case.output_fingerprint:
        notes.append(tr("'{name}' was edited while segmenting; the result is in a new "
                        "segmentation so your edits are kept.", name=node.GetName()))
        return None
    return node


# ----------------------------------------------------------------------------------------
# Where results show
# ----------------------------------------------------------------------------------------
def place_in_study(scene: Any, node: Any, volume: Any) -> bool:
    """Move ``node`` next to ``volume`` in the subject hierarchy (its study or folder).

    Returns:
        ``True`` when it was moved (``False``: the volume is at the top of the hierarchy).
    """
    sh = scene.GetSubjectHierarchyNode()
    if sh is None:
        return False
    volume_item = sh.GetItemByDataNode(volume)
    parent = sh.GetItemParent(volume_item) if volume_item else 0
    if not parent or parent == sh.GetSceneItemID():
        return False
    item = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemParent(item, parent)
    return True


def show_in_3d(segmentation: Any, on: bool) -> None:
    """Show (build the closed surface) or hide a segmentation in the 3D views."""
    display = segmentation.GetDisplayNode()
    if display is None:
        segmentation.CreateDefaultDisplayNodes()
        display = segmentation.GetDisplayNode()
    if on:
        segmentation.CreateClosedSurfaceRepresentation()
    if display is not None:
        display.SetVisibility3D(bool(on))


def describe_postprocessing(model_path: Path | str) -> str:
    """What the postprocessing switch does for this model, in one or two lines."""
    from NNSegLib.util.model_folder import ModelFolder

    path = Path(str(model_path))
    if path.suffix.lower() == ".zip":
        return tr("Postprocessing: as chosen on cross-validation, if the package has it.")
    folder = ModelFolder(path)
    if not folder.postprocessing.is_file():
        return tr("No postprocessing chosen for this model (run Find best configuration).")
    from NNSegLib.postprocessing.postprocess import PostprocessingRules
    from NNSegLib.util.errors import NNSegError

    try:
        rules = PostprocessingRules.load(folder.postprocessing)
    except NNSegError as e:
        return str(e)
    best = ", ".join(folder.best_configurations()) or "?"
    if rules.is_empty:
        return tr("Cross-validation of {best} kept no postprocessing step.", best=best)
    groups = "; ".join("+".join(str(v) for v in g) for g in rules.largest_component_groups)
    return tr("Chosen on cross-validation of {best}: keep only the largest connected "
              "component of label(s) {groups}.", best=best, groups=groups)


def predict_commands(input_dir: Path | str, output_dir: Path | str, model: Path | str,
                     folds: str = "", device: str = "auto", tta: bool = True,
                     uncertainty: bool = False, import_dir: Path | str | None = None,
                     postprocessing: bool = True, allow_unfinished: bool = False,
                     fast: bool = False) -> list[list[str]]:
    """Predict a folder of ``<case>_XXXX`` files; a ``.zip`` model is imported first.

    ``postprocessing=False`` skips the model's connected-component rules
    (``--no-postprocessing``); ``allow_unfinished`` also uses folds whose training has not
    finished (``--allow-unfinished``: their best checkpoint). ``fast`` is the preview
    (``--fast``: one fold, no TTA, step 1.0, no uncertainty map): of the panel's folds only
    the first is passed on (explicit ``--folds`` would win over ``--fast``'s one fold).
    """
    from NNSegLib.inference.model_package import import_model_argv
    from NNSegLib.inference.predict_options import predict_argv

    commands = []
    model = Path(model)
    if model.suffix.lower() == ".zip":
        if import_dir is None:
            raise ValueError(f"{model}: a model package needs a folder to import it to")
        commands.append(import_model_argv(model, import_dir))
        model = Path(import_dir)
    fold_list = [str(f) for f in parse_folds(folds)][:1 if fast else None]
    commands.append(predict_argv(
        [input_dir], output_dir, model, fold_list, device=device, fast=fast,
        tta=tta or fast, uncertainty=uncertainty and not fast, postprocessing=postprocessing,
        allow_unfinished=allow_unfinished))
    return commands


__all__ = ["OUTPUT", "OverwriteDecision", "PREVIEW_OUTPUT", "SegmentCase", "SegmentResult",
           "SegmentRun", "TAG_FINGERPRINT", "TAG_PREVIEW", "capture_segment_run",
           "content_fingerprint", "deliver_results", "describe_postprocessing",
           "mark_preview", "overwrite_decision", "place_in_study", "predict_commands",
           "preview_name", "show_in_3d"]
