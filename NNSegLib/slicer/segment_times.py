"""The Segment panel's expected time of each mode (preview, full quality) for the chosen device.

After every Segment phase the module adds its
:class:`~NNSegLib.inference.predict_timing.Measurement` to a
:class:`~NNSegLib.inference.predict_timing.TimingBook` kept as JSON text in Slicer's settings
under :data:`SETTINGS_KEY` (:func:`record`), keyed by the model as chosen. The line under the
Segment button (:func:`describe_expected_times`) estimates both modes for the selected
volume with :func:`~NNSegLib.inference.predict_timing.estimate_seconds`:

* before anything was measured with this model on this device: "unknown until the first
  case", with how many times fewer network passes the preview runs;
* after one mode was measured: that mode from its measurement, the other one rescaled by the
  ratio of passes (marked as rough);
* after both: each from its own.

The full mode's passes follow the panel's folds (empty: every usable fold of the model) and
test-time augmentation (:func:`full_passes`). No ``qt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from NNSegLib.inference.predict_timing import (
    Estimate,
    Measurement,
    TimingBook,
    device_kind,
    estimate_seconds,
    mirror_count,
    network_passes,
)
from NNSegLib.util.i18n import tr

#: Slicer settings (QSettings) key of the measurements (a :class:`TimingBook`'s JSON).
SETTINGS_KEY = "NNSeg/SegmentTimes"
#: Folds assumed when the model cannot be inspected (a ``.zip`` before its import).
ASSUMED_FOLDS = 5
#: The full mode's sliding-window step (the panel has no step option).
FULL_STEP = 0.5


def model_key(model_path: Path | str) -> str:
    """The key a model's measurements are kept under (its path as chosen)."""
    return str(Path(str(model_path)))


def record(book_text: Any, event: dict) -> str:
    """Add a ``phase_done`` event's measurement to the book; returns the book's new JSON."""
    book = TimingBook.from_json(book_text)
    data, model = event.get("measurement"), event.get("model")
    if data and model:
        try:
            book.add(model_key(model), Measurement.from_dict(data))
        except (TypeError, ValueError):
            pass
    return book.to_json()


def _configurations(model_path: Path, allow_unfinished: bool) -> list[tuple[int, int]]:
    """``(usable folds, spatial dims)`` of each configuration the full mode would run, or
    ``[]`` when the folder cannot tell (no plan, a ``.zip``, a broken file)."""
    from NNSegLib.inference.model_loader import is_nnunet_model
    from NNSegLib.util.errors import NNSegError
    from NNSegLib.util.model_folder import CHECKPOINT_FINAL, CHECKPOINT_PREFERENCE, ModelFolder

    folder = ModelFolder(model_path)
    if not model_path.is_dir() or not folder.plans.is_file():
        return []
    try:
        if is_nnunet_model(model_path):
            from NNSegLib.inference.nnunet_model import nnunet_folds

            return [(len(nnunet_folds(model_path)), 3)]
        from NNSegLib.planning.plans import Plans

        plans = Plans.load(folder.plans)
        names = folder.best_configurations() or [folder.default_configuration()]
        checkpoints = CHECKPOINT_PREFERENCE if allow_unfinished else (CHECKPOINT_FINAL,)
        return [(len(folder.trained_folds(n, checkpoints)),
                 len(plans.configuration(n).patch_size)) for n in names]
    except (NNSegError, KeyError, OSError, ValueError):
        return []


def full_passes(model_path: Path | str, folds: str = "", tta: bool = True,
                allow_unfinished: bool = False) -> float:
    """Network passes of the full mode with the panel's folds and TTA (see
    :func:`~NNSegLib.inference.predict_timing.network_passes`): summed over the
    configurations of an ensemble; every usable fold when ``folds`` is empty
    (:data:`ASSUMED_FOLDS` when the model cannot be inspected)."""
    from NNSegLib.data.splits import parse_folds
    from NNSegLib.util.errors import NNSegError

    try:
        chosen = len(parse_folds(folds))
    except (NNSegError, ValueError):
        chosen = 0
    found = _configurations(Path(str(model_path)), allow_unfinished) or [(ASSUMED_FOLDS, 3)]
    return sum(network_passes(chosen or max(1, usable), mirror_count(tta, dims), FULL_STEP,
                              dims) for usable, dims in found)


def volume_megavoxels(volumes: Sequence[Any]) -> float:
    """Voxels of the first selected volume, in millions (0 when none is selected)."""
    volume = next(iter(volumes), None)
    image = volume.GetImageData() if volume is not None else None
    if image is None:
        return 0.0
    x, y, z = image.GetDimensions()
    return float(x) * y * z / 1e6


def format_seconds(seconds: float) -> str:
    """``8.4`` → ``"8 s"``, ``150`` → ``"2.5 min"``, ``7200`` → ``"2.0 h"``."""
    if seconds < 90:
        return tr("{n} s", n=max(1, int(round(seconds))))
    if seconds < 90 * 60:
        return tr("{n:.1f} min", n=seconds / 60)
    return tr("{n:.1f} h", n=seconds / 3600)


def _device_name(kind: str) -> str:
    return {"cuda": tr("the GPU (CUDA)"), "mps": tr("the Apple GPU (MPS)")}.get(
        kind, tr("the CPU"))


def _estimate_text(estimate: Estimate, other: str) -> str:
    if estimate.seconds is None:
        return tr("unknown")
    text = "≈ " + format_seconds(estimate.seconds)
    if estimate.basis == "scaled":
        text += " " + tr("(rough, from the {other})", other=other)
    return text


def expected_times(book_text: Any, model_path: Path | str, device: str, megavoxels: float,
                   folds: str = "", tta: bool = True,
                   allow_unfinished: bool = False) -> dict[str, Estimate]:
    """``{"fast": Estimate, "full": Estimate}`` for a volume of ``megavoxels`` on ``device``."""
    measurements = TimingBook.from_json(book_text).measurements(model_key(model_path))
    passes = {"fast": 1.0, "full": full_passes(model_path, folds, tta, allow_unfinished)}
    return {mode: estimate_seconds(measurements, mode, device, megavoxels, passes[mode])
            for mode in ("fast", "full")}


def describe_expected_times(book_text: Any, model_path: Path | str, device_info: Any,
                            volumes: Sequence[Any], folds: str = "", tta: bool = True,
                            allow_unfinished: bool = False) -> str:
    """The Segment panel's line on the expected time of the preview and the full result.

    Args:
        book_text: The measurements (Slicer settings' :data:`SETTINGS_KEY`).
        model_path: The chosen model.
        device_info: The chosen device as detected
            (:class:`~NNSegLib.slicer.devices.DeviceInfo`), ``None`` before detection.
        volumes: The selected input volume(s).
        folds, tta, allow_unfinished: The panel's options for the full result.
    """
    from NNSegLib.slicer.folders import is_unset

    if device_info is None or is_unset(model_path):
        return ""
    kind = device_kind(device_info.kind)
    megavoxels = volume_megavoxels(volumes)
    if megavoxels <= 0:
        return tr("Expected time: select an input volume.")
    times = expected_times(book_text, model_path, kind, megavoxels, folds, tta, allow_unfinished)
    if all(e.seconds is None for e in times.values()):
        ratio = full_passes(model_path, folds, tta, allow_unfinished)
        return tr("Expected time on {device}: unknown until the first case is segmented (the "
                  "preview runs about {ratio:.0f}× fewer network passes than the full "
                  "result).", device=_device_name(kind), ratio=ratio)
    return tr("Expected on {device} for this volume ({megavoxels:.3g} Mvoxels): preview "
              "{fast}, full quality {full}.", device=_device_name(kind), megavoxels=megavoxels,
              fast=_estimate_text(times["fast"], tr("full result")),
              full=_estimate_text(times["full"], tr("preview")))


__all__ = ["ASSUMED_FOLDS", "FULL_STEP", "SETTINGS_KEY", "describe_expected_times",
           "expected_times", "format_seconds", "full_passes", "model_key", "record",
           "volume_megavoxels"]
