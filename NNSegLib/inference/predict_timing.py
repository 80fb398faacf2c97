"""How long a prediction takes: measured on one case, estimated for the next (METHOD §5).

``nnseg predict`` reports per run (its ``done`` event) the seconds spent on the cases, the
part of them spent in the sliding window, the input size in megavoxels and the *passes* of
its setting. A :class:`Measurement` adds the whole job's wall time; the Slicer module keeps
the latest one per (mode, device) and model in a :class:`TimingBook` (in Slicer's settings).

A job's time splits into three parts, each scaled on its own for a new volume:

* **overhead** = job − cases: process start, imports, loading the model (fixed);
* **per-voxel work** = cases − network: reading, preprocessing, restoring, writing
  (∝ megavoxels);
* **network** (∝ megavoxels × passes): ``passes = folds × mirrors × (1 / step)^dims``, the
  patch evaluations per window-sized block of the image (:func:`network_passes`).

:func:`estimate_seconds` uses the latest measurement of the same mode on the same device
(``basis="measured"``); without one, the other mode's on that device, rescaled by the ratio
of passes (``"scaled"``: rougher, the network share of the other mode decides); without
either the time is unknown until the first case (``"unknown"``). No torch, no files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

#: Modes of the Segment panel: the fast preview (``--fast``) and the full-quality run.
MODES = ("fast", "full")
#: Models a :class:`TimingBook` remembers (least recently measured ones are dropped).
MAX_MODELS = 20


def device_kind(device: Any) -> str:
    """``"cuda:0"`` → ``"cuda"``; ``torch.device("cpu")`` → ``"cpu"``."""
    return str(device).split(":", 1)[0].strip().lower() or "cpu"


def mirror_count(tta: bool, dims: int) -> int:
    """Mirror combinations of test-time augmentation: ``2^dims`` with TTA, else 1."""
    return 2 ** int(dims) if tta else 1


def network_passes(folds: int, mirrors: int, step: float, dims: int) -> float:
    """Patch evaluations per window-sized block of a large image.

    ``folds × mirrors × (1 / step)^dims``: each fold evaluates every window in every mirror
    combination, and a step of 0.5 puts 2 windows per patch length on each of the ``dims``
    tiled axes. The default 3D setting (5 folds, 8 mirrors, step 0.5) gives 320; the fast
    preview (1 fold, 1 mirror, step 1.0) gives 1.
    """
    if folds < 1 or mirrors < 1 or not 0 < step <= 1 or dims < 1:
        raise ValueError(f"invalid setting: folds {folds}, mirrors {mirrors}, step {step}, "
                         f"dims {dims}")
    return float(folds * mirrors) * (1.0 / float(step)) ** int(dims)


@dataclass(frozen=True)
class Measurement:
    """One segment job's times.

    Attributes:
        mode: ``"fast"`` or ``"full"``.
        device: Device kind the job ran on (``cpu``, ``cuda``, ``mps``).
        job_seconds: Wall time of the whole job (process start to end).
        case_seconds: Time spent on the cases (read, predict, write).
        network_seconds: Part of it spent in the sliding window.
        megavoxels: Input voxels of the cases, in millions.
        passes: :func:`network_passes` of the job's setting.
        when: Unix time of the measurement.
    """

    mode: str
    device: str
    job_seconds: float
    case_seconds: float
    network_seconds: float
    megavoxels: float
    passes: float
    when: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        numbers = (self.job_seconds, self.case_seconds, self.network_seconds,
                   self.megavoxels, self.passes)
        if not all(math.isfinite(v) and v >= 0 for v in numbers) or self.megavoxels <= 0 \
                or self.passes <= 0:
            raise ValueError(f"invalid measurement {numbers}")

    @property
    def overhead_seconds(self) -> float:
        """Fixed part: the job's time outside the cases."""
        return max(0.0, self.job_seconds - self.case_seconds)

    @property
    def seconds_per_megavoxel(self) -> float:
        """Case time per megavoxel of input (network included)."""
        return self.case_seconds / self.megavoxels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        for key in names - {"mode", "device"}:
            if key in values:
                values[key] = float(values[key])
        return cls(**values)


@dataclass(frozen=True)
class Estimate:
    """Expected seconds of a mode, and what they rest on.

    Attributes:
        mode: ``"fast"`` or ``"full"``.
        seconds: Expected wall time of the job, ``None`` when unknown.
        basis: ``"measured"`` (this mode on this device), ``"scaled"`` (from the other
            mode's measurement) or ``"unknown"``.
    """

    mode: str
    seconds: float | None
    basis: str


def _latest(measurements: Sequence[Measurement], device: str,
            mode: str | None = None) -> Measurement | None:
    found = [m for m in measurements if m.device == device and (mode is None or m.mode == mode)]
    return max(found, key=lambda m: m.when) if found else None


def estimate_seconds(measurements: Sequence[Measurement], mode: str, device: str,
                     megavoxels: float, passes: float) -> Estimate:
    """Expected job time of ``mode`` on ``device`` for a volume (see the module doc).

    Args:
        measurements: Earlier measurements of this model (any modes and devices).
        mode: ``"fast"`` or ``"full"``.
        device: Device kind (``cpu``, ``cuda``, ``mps``).
        megavoxels: Input voxels of the new volume, in millions.
        passes: :func:`network_passes` of the setting the job will run.
    """
    device = device_kind(device)
    base = _latest(measurements, device, mode)
    basis = "measured"
    if base is None:
        base, basis = _latest(measurements, device), "scaled"
    if base is None or megavoxels <= 0 or passes <= 0:
        return Estimate(mode, None, "unknown")
    size = megavoxels / base.megavoxels
    network = base.network_seconds * size * passes / base.passes
    per_voxel = max(0.0, base.case_seconds - base.network_seconds) * size
    return Estimate(mode, base.overhead_seconds + per_voxel + network, basis)


class TimingBook:
    """The latest :class:`Measurement` per (mode, device) of each model, as JSON text.

    Args:
        models: Model key → its measurements, least recently measured model first.
    """

    def __init__(self, models: dict[str, list[Measurement]] | None = None) -> None:
        self.models: dict[str, list[Measurement]] = dict(models or {})

    @classmethod
    def from_json(cls, text: Any) -> TimingBook:
        """Read :meth:`to_json`'s text; anything unreadable gives an empty book."""
        try:
            raw = json.loads(str(text)) if text else {}
            models = {str(k): [Measurement.from_dict(m) for m in v]
                      for k, v in raw.get("models", {}).items()}
        except (ValueError, TypeError, AttributeError):
            return cls()
        return cls(models)

    def to_json(self) -> str:
        return json.dumps({"format": "nnseg-segment-times", "version": 1,
                           "models": {k: [m.to_dict() for m in v]
                                      for k, v in self.models.items()}}, sort_keys=True)

    def add(self, model: str, measurement: Measurement) -> None:
        """Keep ``measurement`` as the latest of its (mode, device) for ``model``."""
        kept = [m for m in self.models.pop(str(model), [])
                if (m.mode, m.device) != (measurement.mode, measurement.device)]
        self.models[str(model)] = kept + [measurement]
        while len(self.models) > MAX_MODELS:
            del self.models[next(iter(self.models))]

    def measurements(self, model: str) -> list[Measurement]:
        return list(self.models.get(str(model), []))


__all__ = ["Estimate", "MAX_MODELS", "MODES", "Measurement", "TimingBook", "device_kind",
           "estimate_seconds", "mirror_count", "network_passes"]
