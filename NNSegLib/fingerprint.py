"""METHOD §1: the dataset fingerprint (``dataset_fingerprint.json``).

Schema: :class:`Fingerprint`. The computation is filled in below the dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from NNSegLib.atomic import write_json
from NNSegLib.plans import IntensityProperties

FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class CaseFingerprint:
    """One case: shapes and spacing in numpy order ``(z, y, x)``."""

    identifier: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    shape_after_crop: tuple[int, ...]


@dataclass(frozen=True)
class Fingerprint:
    """What the planner needs to know about a dataset.

    Attributes:
        dataset_name: From dataset.json.
        channel_names: Channel index (string) → name.
        labels: Label name → value.
        cases: Per-case shapes and spacings.
        intensity_properties: Per channel (string) foreground intensity statistics.
        median_relative_size_after_cropping: Median over cases of
            (voxels after crop / voxels before).
        version: Schema version.
    """

    dataset_name: str
    channel_names: dict[str, str]
    labels: dict[str, int]
    cases: tuple[CaseFingerprint, ...]
    intensity_properties: dict[str, IntensityProperties]
    median_relative_size_after_cropping: float
    version: int = FINGERPRINT_VERSION

    @property
    def spacings(self) -> list[tuple[float, ...]]:
        return [c.spacing for c in self.cases]

    @property
    def shapes_after_crop(self) -> list[tuple[int, ...]]:
        return [c.shape_after_crop for c in self.cases]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cases"] = [
            {**c, "shape": list(c["shape"]), "spacing": list(c["spacing"]),
             "shape_after_crop": list(c["shape_after_crop"])}
            for c in d["cases"]
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        if d.get("version") != FINGERPRINT_VERSION:
            raise ValueError(f"fingerprint version {d.get('version')!r} is not supported")
        return cls(
            dataset_name=d["dataset_name"],
            channel_names={str(k): str(v) for k, v in d["channel_names"].items()},
            labels={str(k): int(v) for k, v in d["labels"].items()},
            cases=tuple(
                CaseFingerprint(
                    c["identifier"], tuple(int(v) for v in c["shape"]),
                    tuple(float(v) for v in c["spacing"]),
                    tuple(int(v) for v in c["shape_after_crop"]),
                )
                for c in d["cases"]
            ),
            intensity_properties={
                str(k): IntensityProperties(**v) for k, v in d["intensity_properties"].items()
            },
            median_relative_size_after_cropping=float(d["median_relative_size_after_cropping"]),
            version=d["version"],
        )

    def save(self, path: Path | str) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> Fingerprint:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no fingerprint; run `nnseg fingerprint` first")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
