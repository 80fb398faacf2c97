"""METHOD §5: segment new images with a trained model (``nnseg predict``).

Per case: preprocess with the model's plan (plus the upsampled, one-hot low-resolution
prediction for a cascade), sliding-window inference of every fold with mirror TTA in the
same batches, average over folds, restore to the input grid, argmax, postprocess, write the
label map with exactly the input's geometry and file format.

``--fast`` is the preview of :mod:`NNSegLib.inference.fast_mode`: one fold, no mirror TTA,
step 1.0 (explicit ``--folds``/``--step``/``--configuration`` win); the output is written
exactly as in the normal path. Every run reports its cost in its ``done`` event (seconds,
sliding-window seconds, megavoxels, windows, network calls, passes; see
:mod:`NNSegLib.inference.predict_timing`).

Uncertainty (``--uncertainty``) is the *normalized entropy* of the averaged softmax,
``H = -Σ_k p_k ln p_k / ln K`` in ``[0, 1]``: 0 where every fold and mirror agrees with full
confidence, 1 where the average is uniform over the K classes. It is saved as
``<case>_uncertainty<ending>`` (float32) in the input geometry.

Python API for the GUI: :func:`predict_array` (arrays in, arrays out, no files).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.data.io import SUPPORTED_ENDINGS, Geometry, file_ending
from NNSegLib.inference.loaded_model import LoadedModel
from NNSegLib.inference.predict_options import (
    add_cpu_arguments,
    add_input_model_arguments,
    add_step_arguments,
)
from NNSegLib.inference.predict_timing import device_kind, network_passes
from NNSegLib.inference.sliding_window import SlidingWindowStats, mirror_combinations
from NNSegLib.inference.uncertainty import normalized_entropy
from NNSegLib.util import host_memory
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.precision import REQUESTS
from NNSegLib.util.progress import Progress, child_progress

PROBABILITIES_KEY = "probabilities"


@dataclass(frozen=True)
class CasePrediction:
    """One case's result on the input grid.

    Attributes:
        labels: ``(z, y, x)`` label map (uint8, or uint16 with more than 255 classes).
        probabilities: ``(K, z, y, x)`` float32 averaged softmax, when asked for.
        uncertainty: ``(z, y, x)`` float32 normalized entropy, when asked for.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


def _with_options(model: LoadedModel, tta: bool | None, step: float | None) -> LoadedModel:
    settings = model.settings
    if tta is not None:
        all_axes = tuple(range(len(settings.patch_size)))
        axes = tuple(model.extra.get("mirror_axes", all_axes)) if tta else ()
        settings = dataclasses.replace(settings, mirror_axes=tuple(axes))
    if step is not None:
        settings = dataclasses.replace(settings, step=float(step))
    members = [_with_options(m, tta, step) for m in model.ensemble]
    if settings == model.settings and all(a is b for a, b in zip(members, model.ensemble)):
        return model
    return dataclasses.replace(model, settings=settings, ensemble=members)


def network_scores(images: np.ndarray, geometry: Geometry, model: LoadedModel,
                   progress=None, stats: SlidingWindowStats | None = None) -> tuple[Any, dict]:
    """Preprocess a case and return the fold-averaged network output and the properties.

    ``stats`` (optional) counts the windows, patches, network calls and time.

    Returns:
        ``(scores, properties)``: ``(K, …)`` float32 CPU tensor on the preprocessed grid
        (probabilities or logits, as ``model.settings.output`` says).
    """
    from NNSegLib.inference.cascade import one_hot_channels
    from NNSegLib.inference.sliding_window import predict_sliding_window

    seg = None
    if model.previous_stage is not None:
        seg = predict_case(images, geometry, model.previous_stage, postprocess=False,
                           progress=progress, stats=stats).labels
    data, pseg, properties = model.pipeline.preprocess(images, geometry, seg=seg)
    if seg is not None:
        data = np.concatenate([np.asarray(data, np.float32),
                               one_hot_channels(pseg, model.num_classes)])
    total = None
    for _fold, network in model.networks:
        if progress is not None:
            progress.check_cancelled()
        scores = predict_sliding_window(network, data, model.num_classes, model.settings,
                                        device=model.device, progress=progress,
                                        channels_last=model.channels_last, stats=stats)
        total = scores if total is None else total.add_(scores)
    assert total is not None  # a model has at least one network
    total /= len(model.networks)
    return total, properties


def ensemble_probabilities(images: np.ndarray, geometry: Geometry,
                           members: Sequence[LoadedModel], progress=None,
                           stats: SlidingWindowStats | None = None) -> np.ndarray:
    """Mean of the members' probabilities on the original grid (configuration ensemble)."""
    total = None
    for member in members:
        scores, properties = network_scores(images, geometry, member, progress, stats)
        probs = member.pipeline.restore_probabilities(scores, properties)
        del scores
        if total is None:
            total = probs
        else:
            total += probs
            del probs
    assert total is not None  # at least one member
    total /= len(members)
    return total


def _label_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.uint16


def predict_case(images: np.ndarray, geometry: Geometry, model: LoadedModel, *,
                 probabilities: bool = False, uncertainty: bool = False,
                 postprocess: bool = True, progress=None,
                 stats: SlidingWindowStats | None = None) -> CasePrediction:
    """Segment one case given as arrays.

    Args:
        images: ``(C, z, y, x)`` image channels in numpy order.
        geometry: The images' geometry (the result is on exactly this grid).
        model: A :class:`~NNSegLib.inference.loaded_model.LoadedModel`.
        probabilities: Also return the averaged softmax on the input grid.
        uncertainty: Also return the normalized entropy map.
        postprocess: Apply the model's postprocessing rules (if it has any).
        progress: Progress sink (per patch) with cancellation.
        stats: Optional counters of the sliding windows (increased, see
            :class:`~NNSegLib.inference.sliding_window.SlidingWindowStats`).

    Raises:
        NNSegError: when the number of channels does not match the model.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] != model.num_input_channels:
        raise NNSegError(f"expected {model.num_input_channels} image channel(s) as a "
                         f"(C, z, y, x) array, got shape {images.shape}")
    probs = None
    if model.ensemble:
        probs = ensemble_probabilities(images, geometry, [model, *model.ensemble], progress,
                                       stats)
        labels = np.argmax(probs, axis=0)
    else:
        scores, properties = network_scores(images, geometry, model, progress, stats)
        if probabilities or uncertainty:
            probs = model.pipeline.restore_probabilities(scores, properties)
            labels = np.argmax(probs, axis=0)
        else:
            labels = model.pipeline.restore_labels(scores, properties)
        del scores
    labels = np.asarray(labels).astype(_label_dtype(model.num_classes), copy=False)
    if tuple(labels.shape) != tuple(geometry.shape):
        raise NNSegError(f"internal error: restored shape {labels.shape} != input shape "
                         f"{tuple(geometry.shape)}")
    if postprocess and model.postprocessing is not None:
        from NNSegLib.postprocessing.postprocess import apply_postprocessing

        labels = apply_postprocessing(labels, model.postprocessing)
    entropy = normalized_entropy(probs) if uncertainty else None
    return CasePrediction(labels, probs if probabilities else None, entropy)


def predict_array(images: np.ndarray, geometry: Geometry, model: LoadedModel, *,
                  tta: bool = True, step: float = 0.5, progress=None,
                  return_probabilities: bool = False,
                  postprocess: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Segment ``images`` ``(C, z, y, x)`` with ``model``; no files (the GUI's entry point).

    Args:
        images: Image channels in numpy order.
        geometry: Their geometry.
        model: A loaded model.
        tta: Mirror test-time augmentation.
        step: Sliding-window step (fraction of the patch).
        progress: :class:`~NNSegLib.util.progress.Progress`; cancel through its token
            (raises :class:`~NNSegLib.util.progress.Cancelled`).
        return_probabilities: Also return ``(K, z, y, x)`` float32 probabilities.
        postprocess: Apply the model's postprocessing.

    Returns:
        ``(labels, probabilities or None)``.
    """
    result = predict_case(images, geometry, _with_options(model, tta, step),
                          probabilities=return_probabilities, postprocess=postprocess,
                          progress=progress)
    return result.labels, result.probabilities


# --- files ------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputCase:
    """One input case: its channel files in channel order."""

    identifier: str
    images: tuple[Path, ...]

    @property
    def ending(self) -> str:
        return file_ending(self.images[0])


def _supported(path: Path) -> bool:
    return path.is_file() and file_ending(path) in SUPPORTED_ENDINGS


def collect_cases(inputs: Sequence[Path | str], num_channels: int) -> list[InputCase]:
    """Group input files (or the supported files of input folders) into cases.

    Files named ``<case>_XXXX<ending>`` are channels of ``<case>``; other files are
    single-channel cases.

    Raises:
        NNSegError: for missing inputs, no images, or a case whose channels are not
            exactly ``0 .. num_channels-1``.
    """
    from NNSegLib.data.dataset import CHANNEL_RE
    from NNSegLib.util.files import path_problem

    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            files += sorted(p for p in item.iterdir()
                            if _supported(p) and not p.name.startswith("."))
        elif _supported(item):
            files.append(item)
        elif file_ending(item) not in SUPPORTED_ENDINGS:
            raise NNSegError(f"-i {item}: '{file_ending(item) or item.name}' images are not "
                             f"supported (NNSeg reads {', '.join(SUPPORTED_ENDINGS)})")
        else:
            raise NNSegError(f"-i {item}: {path_problem(item) or 'not a file'}")
    grouped: dict[str, dict[int, Path]] = {}
    for f in files:
        stem = f.name[: -len(file_ending(f))]
        m = CHANNEL_RE.match(stem)
        case, channel = (m["case"], int(m["channel"])) if m else (stem, 0)
        if channel in grouped.setdefault(case, {}):
            raise NNSegError(f"{f}: case {case!r} has channel {channel} twice")
        grouped[case][channel] = f
    if not grouped:
        raise NNSegError(f"no input images found in {', '.join(str(p) for p in inputs)}")
    cases = []
    for case in sorted(grouped):
        channels = grouped[case]
        if sorted(channels) != list(range(num_channels)):
            raise NNSegError(f"case {case!r} ({channels[min(channels)]}): channels "
                             f"{sorted(channels)} found, the model needs 0..{num_channels - 1}"
                             " (files <case>_0000, <case>_0001, …)")
        cases.append(InputCase(case, tuple(channels[c] for c in range(num_channels))))
    return cases


def write_case(result: CasePrediction, geometry: Geometry, out_dir: Path, identifier: str,
               ending: str) -> list[Path]:
    """Write labels (``<case><ending>``) and any probabilities / uncertainty of a case."""
    from NNSegLib.data.io import SimpleITKIO
    from NNSegLib.util.atomic import save_arrays

    io = SimpleITKIO()
    written = [out_dir / f"{identifier}{ending}"]
    io.write(result.labels, geometry, written[0], durable=True)
    if result.probabilities is not None:
        written.append(out_dir / f"{identifier}_probabilities.npz")
        save_arrays(written[-1], {PROBABILITIES_KEY: result.probabilities.astype(np.float16)},
                    durable=True)
    if result.uncertainty is not None:
        written.append(out_dir / f"{identifier}_uncertainty{ending}")
        io.write(result.uncertainty.astype(np.float32), geometry, written[-1], durable=True)
    return written


def check_input_files(case: InputCase, images: np.ndarray) -> None:
    """Refuse input voxels a model must not see: non-finite values, truncated files.

    Raises:
        NNSegError: naming the file (ITK reads NaN in NIfTI files as 0 and fills cut-short
            voxel data with zeros, so both are looked for in the file's bytes too).
    """
    from NNSegLib.data.check import image_file_problems

    for path, channel in zip(case.images, images):
        problems = image_file_problems(path, channel)
        if problems:
            raise NNSegError(f"{path}: {'; '.join(problems)}; NNSeg does not segment images "
                             "with missing or non-finite voxels (replace them, e.g. with 0)")


def check_output_folder(out_dir: Path, inputs: Sequence[Path | str]) -> None:
    """The output folder must be a folder (or creatable) and must not hold the inputs.

    Raises:
        NNSegError: when ``-o`` is a file, cannot be made, or is an input folder (the label
            maps would be read as images by the next run).
    """
    from NNSegLib.util.files import require_output_dir

    for item in inputs:
        item = Path(item)
        folder = item if item.is_dir() else item.parent
        if Path(out_dir).resolve() == folder.resolve():
            raise NNSegError(f"-o {out_dir}: is the input folder {item}; write the label maps "
                             "to another folder (they would be read as images next time)")
    require_output_dir(out_dir, "-o", create=False)


def model_passes(model: LoadedModel) -> float:
    """:func:`~NNSegLib.inference.predict_timing.network_passes` of a loaded model: summed
    over its folds, the configurations it is ensembled with and a cascade's first stage."""
    total = 0.0
    for member in [model, *model.ensemble]:
        settings = member.settings
        total += network_passes(len(member.networks),
                                len(mirror_combinations(settings.mirror_axes)),
                                settings.step, len(settings.patch_size))
        if member.previous_stage is not None:
            total += model_passes(member.previous_stage)
    return total


def predict_files(cases: Sequence[InputCase], out_dir: Path, model: LoadedModel, *,
                  probabilities: bool = False, uncertainty: bool = False,
                  postprocess: bool = True, progress=None,
                  stats: SlidingWindowStats | None = None) -> list[Path]:
    """Predict every case and write its outputs into ``out_dir``; returns written files.

    Each case's ``progress`` event carries its ``seconds`` and ``megavoxels``; the ``done``
    event the run's totals, its sliding-window counts (``stats``, also increased when
    given), :func:`model_passes` and the device (what the Slicer module's time estimates
    are made of, :mod:`NNSegLib.inference.predict_timing`).
    """
    from NNSegLib.data.io import read_channels
    from NNSegLib.util.atomic import clean_stale_temps
    from NNSegLib.util.files import require_output_dir

    out_dir = require_output_dir(out_dir, "-o")
    clean_stale_temps(out_dir)
    patches = child_progress(progress)
    written: list[Path] = []
    stats = stats if stats is not None else SlidingWindowStats()
    seconds = megavoxels = 0.0
    if progress is not None:
        progress.start("predict", len(cases))
    for case in cases:
        if progress is not None:
            progress.check_cancelled()
        started = time.perf_counter()
        images, geometry = read_channels(list(case.images))
        check_input_files(case, images)
        result = predict_case(images, geometry, model, probabilities=probabilities,
                              uncertainty=uncertainty, postprocess=postprocess,
                              progress=patches, stats=stats)
        written += write_case(result, geometry, out_dir, case.identifier, case.ending)
        case_seconds = time.perf_counter() - started
        case_megavoxels = float(np.prod(geometry.shape)) / 1e6
        seconds, megavoxels = seconds + case_seconds, megavoxels + case_megavoxels
        if progress is not None:
            progress.advance(case=case.identifier, seconds=round(case_seconds, 3),
                             megavoxels=round(case_megavoxels, 6))
    if patches is not None:
        patches.close()
    if progress is not None:
        progress.done(written=len(written), seconds=round(seconds, 3),
                      network_seconds=round(stats.seconds, 3),
                      megavoxels=round(megavoxels, 6), windows=stats.windows,
                      patch_passes=stats.patch_passes, network_calls=stats.network_calls,
                      passes=model_passes(model), device=device_kind(model.device))
    return written


# --- CLI --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nnseg predict``."""
    add_input_model_arguments(parser, "output folder for <case><ending> label maps")
    parser.add_argument("-c", "--config", "--configuration", dest="configuration", default=None,
                        help="configuration (default: best_configuration.json, else "
                             "3d_fullres, else what exists)")
    parser.add_argument("--no-tta", action="store_true",
                        help="no mirror test-time augmentation (about 8x faster in 3D)")
    add_step_arguments(parser, "fast preview: one fold (the lowest-numbered finished fold of "
                       "the configuration; the first configuration of an ensemble), no mirror "
                       "TTA, step 1.0 (windows do not overlap); --folds, --step and --config "
                       "given explicitly win. No uncertainty map unless --uncertainty. Same "
                       "output format and geometry")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="compute device (default: cuda, else mps, else cpu)")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write <case>_probabilities.npz (float16, K×z×y×x)")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write <case>_uncertainty<ending>: normalized entropy of "
                             "the averaged softmax (0 = certain, 1 = uniform)")
    parser.add_argument("--no-postprocessing", action="store_true",
                        help="do not apply postprocessing.json")
    parser.add_argument("--precision", default="auto", choices=list(REQUESTS),
                        help="network arithmetic (default auto: fp16 on CUDA and Apple MPS, "
                             "bf16 on CPUs with AMX/AVX512-BF16 that oneDNN and ATen may use "
                             "(not under ONEDNN_MAX_CPU_ISA=AVX2 or ATEN_CPU_CAPABILITY=avx2), "
                             "else fp32; nnU-Net v2 models "
                             "fp16 on CUDA, else fp32); bf16 is refused on MPS")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="also use folds whose training has not finished (their best "
                             "checkpoint); by default they are refused or left out")
    add_cpu_arguments(parser)


def run(args: argparse.Namespace, progress: Progress) -> int:
    """``nnseg predict``."""
    from NNSegLib.inference.fast_mode import run_settings
    from NNSegLib.inference.model_loader import load_model
    from NNSegLib.util.device import configure_threads

    configure_threads(args.threads)
    check_output_folder(args.output, args.input)
    settings = run_settings(args.model, args.configuration, args.folds, args.step,
                            not args.no_tta, getattr(args, "fast", False),
                            args.allow_unfinished, progress)
    try:
        model = load_model(args.model, settings.configuration, settings.folds, args.device,
                           tta=settings.tta, step=settings.step,
                           use_postprocessing=not args.no_postprocessing,
                           precision=args.precision, allow_unfinished=args.allow_unfinished)
    except RuntimeError as e:   # device not available
        raise NNSegError(str(e)) from e
    host_memory.apply_setting(args.host_memory, model.device.type)
    cases = collect_cases(args.input, model.num_input_channels)
    for member in [model, *model.ensemble]:
        for note in member.extra.get("notes", []):
            progress.message(f"{member.configuration}: {note}", level="warning")
    try:
        progress.message(f"model {args.model} ({model.kind}), configuration(s) "
                         f"{'+'.join(model.configurations)}, folds {model.folds}, "
                         f"device {model.device}, "
                         f"TTA {'on' if model.settings.mirror_axes else 'off'}, "
                         f"step {model.settings.step:g}")
        predict_files(cases, args.output, model, probabilities=args.save_probabilities,
                      uncertainty=args.uncertainty,
                      postprocess=not args.no_postprocessing, progress=progress)
    finally:
        progress.close()
    return 0


__all__ = [
    "CasePrediction",
    "InputCase",
    "PROBABILITIES_KEY",
    "add_arguments",
    "collect_cases",
    "ensemble_probabilities",
    "model_passes",
    "network_scores",
    "predict_array",
    "predict_case",
    "predict_files",
    "run",
    "write_case",
]
