"""``nnseg segment-batch``: segment a folder (or the scene's volumes) for review (METHOD §8).

The command runs :func:`NNSegLib.inference.batch.segment_batch`. Segmentations are written as
``<case>.seg.nrrd`` through the MRML bridge when ``slicer-core`` (or Slicer itself) can be
imported, so a reviewer opens them in Slicer with names, colours, terminology and the model
name/version tags; without it, as label maps in the input's format (``--format image``
asks for that anyway). Either way the batch folder holds ``<case>_uncertainty<ending>`` and
``review_queue.json``.

For the Slicer panel, :func:`prepare_scene_batch` writes selected scene volumes into
``<batch>/images`` and returns the job's command lines (run them with
:class:`~NNSegLib.jobs.process.JobChain`); :func:`folder_batch` does the same for a folder.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.util import options
from NNSegLib.util.command_line import many, option, switch
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.precision import REQUESTS
from NNSegLib.util.progress import Progress

FORMATS = ("auto", "seg.nrrd", "image")


def slicer_available() -> bool:
    """True when MRML can be imported (Slicer, or the ``slicer-core`` package)."""
    from NNSegLib.slicer.scene import mrml

    return mrml.available()


def seg_nrrd_writer(ctx: Any = None) -> Any:
    """A :data:`~NNSegLib.inference.batch.LabelWriter` writing ``<case>.seg.nrrd`` via MRML.

    Each case's nodes are removed from the scene once written, so one scene serves the
    whole batch.
    """
    from NNSegLib.slicer.scene import mrml

    ctx = ctx or mrml.new_scene()

    def write(labels: np.ndarray, geometry: Geometry, label_names: dict, batch_dir: Path,
              case: str, ending: str, model: dict) -> Path:
        scene = ctx.scene
        reference = mrml.volume_node_from_array(scene, labels, geometry, f"{case} grid")
        tags = {k: str(model[k]) for k in ("name", "version", "software") if model.get(k)}
        seg = mrml.segmentation_from_labels(scene, labels, geometry, label_names,
                                            reference_volume=reference, model_info=tags,
                                            name=case)
        try:
            return mrml.write_segmentation(seg, Path(batch_dir) / f"{case}.seg.nrrd")
        finally:
            mrml.remove_node(scene, seg)
            mrml.remove_node(scene, reference)

    return write


def choose_writer(fmt: str = "auto") -> Any:
    """The label writer for ``--format`` (``None`` = label images)."""
    if fmt not in FORMATS:
        raise NNSegError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "image" or (fmt == "auto" and not slicer_available()):
        return None
    if not slicer_available():
        raise NNSegError("--format seg.nrrd needs Slicer or the slicer-core package "
                         "(pip install slicer-core); use --format image")
    return seg_nrrd_writer()


def _case_names(volumes: Sequence[Sequence[Any]], names: Sequence[str] | None) -> list[str]:
    """File-safe, unique case names (given, else the channel-0 volumes' names)."""
    from NNSegLib.data.add_case import check_case_name
    from NNSegLib.data.dataset import CHANNEL_RE

    chosen: list[str] = []
    for i, channels in enumerate(volumes):
        base = names[i] if names else (channels[0].GetName() or "")
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("_.") or f"case_{i:03d}"
        base += "x" if CHANNEL_RE.match(base) else ""
        name, k = base, 1
        while name in chosen:
            k += 1
            name = f"{base}_{k}"
        chosen.append(check_case_name(name))
    return chosen


def prepare_scene_batch(volumes: Sequence[Sequence[Any]], batch_dir: Path | str,
                        model_path: Path | str, folds: str = "", device: str = "auto",
                        tta: bool = True, names: Sequence[str] | None = None,
                        allow_unfinished: bool = False) -> dict[str, Any]:
    """Write scene volumes as a batch's inputs and build the job's commands.

    Args:
        volumes: Per case, its channel volume nodes (channel order).
        batch_dir: The batch folder (its ``images/`` receives ``<case>_<c:04d>.nii.gz``).
        model_path: Model folder or ``.zip`` package (imported into ``<batch>/model``).
        folds: Folds as typed in the GUI (``"0-2"``); all when empty.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        tta: Mirror test-time augmentation.
        names: Case names (default: the channel-0 volumes' names, made file-safe, unique).
        allow_unfinished: Also use folds whose training has not finished.

    Returns:
        ``batch`` (folder), ``cases`` (names in order), ``steps`` (command lines for
        :class:`~NNSegLib.jobs.process.JobChain`).
    """
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.slicer.scene import mrml

    if not volumes:
        raise NNSegError("no volumes to segment")
    batch = Path(batch_dir)
    cases = _case_names(volumes, names)
    for case, channels in zip(cases, volumes):
        for c, volume in enumerate(channels):
            array, geometry = mrml.array_from_volume_node(volume)
            SimpleITKIO().write(array, geometry, batch / "images" / f"{case}_{c:04d}.nii.gz")
    steps = segment_batch_commands(batch / "images", batch, model_path, folds, device, tta,
                                   allow_unfinished=allow_unfinished)
    return {"batch": batch, "cases": cases, "steps": steps}


def folder_batch(input_dir: Path | str, batch_dir: Path | str, model_path: Path | str,
                 folds: str = "", device: str = "auto", tta: bool = True,
                 allow_unfinished: bool = False) -> dict[str, Any]:
    """The job for every volume of a folder (``<case>_0000.nii.gz``… or one file per case)."""

    return {"batch": Path(batch_dir),
            "steps": segment_batch_commands(input_dir, batch_dir, model_path, folds, device,
                                            tta, allow_unfinished=allow_unfinished)}


# --- CLI --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnseg segment-batch``."""
    from NNSegLib.inference.predict_options import (
        add_cpu_arguments,
        add_input_model_arguments,
        add_step_arguments,
    )

    add_input_model_arguments(
        parser, "batch folder: segmentations, uncertainty maps, review_queue.json")
    parser.add_argument("-c", "--configuration", default=None,
                        help="configuration (default: as nnseg predict chooses)")
    parser.add_argument("--no-tta", action="store_true", help="no mirror test-time augmentation")
    add_step_arguments(parser, "fast first pass, as `nnseg predict --fast`: one fold, no "
                       "mirror TTA, step 1.0; --folds, --step and --configuration given "
                       "explicitly win. Uncertainty then comes from that one pass")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--precision", default="auto", choices=list(REQUESTS),
                        help="network arithmetic, as `nnseg predict --precision`")
    add_cpu_arguments(parser)
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="segmentation files: seg.nrrd (needs Slicer or slicer-core), "
                             "image (label map in the input's format) or auto (seg.nrrd when "
                             "possible)")
    parser.add_argument("--threshold", type=options.number(0.0, 1.0), default=0.5,
                        help="normalized entropy from which a voxel counts as uncertain")
    parser.add_argument("--overwrite", action="store_true",
                        help="start the batch again even if another model made it")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="also use folds whose training has not finished (their best "
                             "checkpoint); by default they are refused or left out")


def segment_batch_argv(inputs: Sequence[Path | str], batch_dir: Path | str, model: Path | str,
                       folds: Sequence[str | int] = (), device: str | None = None,
                       tta: bool = True, overwrite: bool = False,
                       allow_unfinished: bool = False) -> list[str]:
    """``nnseg segment-batch`` as an argument list."""
    return ["segment-batch", "-i", *[str(i) for i in inputs], "-o", str(batch_dir),
            "-m", str(model), *option("--device", device), *switch("--no-tta", not tta),
            *many("--folds", folds), *switch("--overwrite", overwrite),
            *switch("--allow-unfinished", allow_unfinished)]


def segment_batch_commands(inputs: Path | str | list[Path | str], batch_dir: Path | str,
                           model: Path | str, folds: str = "", device: str = "auto",
                           tta: bool = True, import_dir: Path | str | None = None,
                           overwrite: bool = False,
                           allow_unfinished: bool = False) -> list[list[str]]:
    """Segment every case of input folders/files into a batch folder for review (METHOD §8).

    A ``.zip`` model is imported first (into ``import_dir``, default ``<batch>/model``);
    ``allow_unfinished`` also uses unfinished folds (``--allow-unfinished``).
    """
    from NNSegLib.data.splits import parse_folds
    from NNSegLib.inference.model_package import import_model_argv

    commands = []
    model = Path(model)
    if model.suffix.lower() == ".zip":
        target = Path(import_dir) if import_dir is not None else Path(batch_dir) / "model"
        commands.append(import_model_argv(model, target))
        model = target
    items = inputs if isinstance(inputs, list) else [inputs]
    commands.append(segment_batch_argv(items, batch_dir, model,
                                       [str(f) for f in parse_folds(folds)], device, tta,
                                       overwrite, allow_unfinished))
    return commands


def run(args: argparse.Namespace, progress: Progress) -> int:
    """``nnseg segment-batch``."""
    from NNSegLib.inference.batch import batch_inputs, segment_batch
    from NNSegLib.inference.fast_mode import run_settings
    from NNSegLib.inference.model_loader import load_model
    from NNSegLib.util import host_memory
    from NNSegLib.util.device import configure_threads

    configure_threads(args.threads)
    writer = choose_writer(args.format)
    settings = run_settings(args.model, args.configuration, args.folds, args.step,
                            not args.no_tta, args.fast, args.allow_unfinished, progress)
    try:
        model = load_model(args.model, settings.configuration, settings.folds, args.device,
                           tta=settings.tta, step=settings.step, precision=args.precision,
                           allow_unfinished=args.allow_unfinished)
    except RuntimeError as e:   # device not available
        raise NNSegError(str(e)) from e
    host_memory.apply_setting(args.host_memory, model.device.type)
    cases = batch_inputs(args.input, model.num_input_channels)
    try:
        progress.message(f"{len(cases)} case(s), model {args.model} ({model.kind}), "
                         f"segmentations as {'.seg.nrrd' if writer else 'label images'}")
        segment_batch(cases, args.output, model, args.model, write_labels=writer,
                      threshold=args.threshold, overwrite=args.overwrite, progress=progress)
    finally:
        progress.close()
    return 0


__all__ = ["FORMATS", "add_arguments", "choose_writer", "folder_batch", "prepare_scene_batch",
           "run", "seg_nrrd_writer", "segment_batch_argv", "segment_batch_commands",
           "slicer_available"]
