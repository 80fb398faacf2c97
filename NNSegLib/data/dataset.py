"""nnU-Net v2 raw dataset layout: ``dataset.json``, ``imagesTr``, ``labelsTr``, ``imagesTs``.

This module only *describes* a dataset (which files belong to which case). Validation of
the contents lives in :mod:`NNSegLib.data.check`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from NNSegLib.util.errors import NNSegError

CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class DatasetError(NNSegError, ValueError):
    """The dataset folder or its ``dataset.json`` is malformed; the message names the file."""


@dataclass(frozen=True)
class Case:
    """One case: its channel image files (ordered) and optional label file."""

    identifier: str
    images: tuple[Path, ...]
    label: Path | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """What ``dataset.json`` declares, plus the folder it lives in."""

    root: Path
    name: str
    channel_names: dict[int, str]
    labels: dict[str, int]
    file_ending: str
    num_training: int
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> list[int]:
        """Sorted declared label values (background 0 included)."""
        return sorted(set(self.labels.values()))

    @property
    def num_classes(self) -> int:
        """Number of output classes of a network (max label + 1)."""
        return max(self.label_values) + 1

    @property
    def label_names(self) -> dict[int, str]:
        return {v: k for k, v in self.labels.items()}

    def modality(self, channel: int) -> str:
        """Lower-case channel name, e.g. ``"ct"`` or ``"mri"``."""
        return self.channel_names[channel].lower()


def load_dataset_json(root: Path | str) -> DatasetSpec:
    """Read and validate the structure of ``root/dataset.json``.

    Raises:
        DatasetError: when the file is missing, not JSON, or lacks/garbles a required key.
    """
    from NNSegLib.data.io import SUPPORTED_ENDINGS
    from NNSegLib.util.files import path_problem

    root = Path(root)
    path = root / "dataset.json"
    if not root.is_dir():
        problem = ("is a file, expected the dataset folder" if root.is_file()
                   else path_problem(root) or "not a folder")
        raise DatasetError(f"{root}: {problem}")
    unreadable = "is a folder, expected a file" if path.is_dir() else path_problem(path)
    if unreadable == "does not exist":
        raise DatasetError(f"{path}: missing (expected an nnU-Net v2 dataset.json)")
    if unreadable:
        raise DatasetError(f"{path}: {unreadable}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: malformed JSON ({e})") from e
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: top level must be an object")
    problems = []
    channels = raw.get("channel_names", raw.get("modality"))
    if not isinstance(channels, dict) or not channels:
        problems.append("'channel_names' must be a non-empty object like {\"0\": \"CT\"}")
        channels = {}
    labels = raw.get("labels")
    if not isinstance(labels, dict) or not labels:
        problems.append("'labels' must be a non-empty object like {\"background\": 0, ...}")
        labels = {}
    ending = raw.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        problems.append("'file_ending' must be a string like \".nii.gz\"")
    elif ending.lower() not in SUPPORTED_ENDINGS:
        problems.append(f"'file_ending' {ending!r} is not supported; NNSeg reads "
                        f"{', '.join(SUPPORTED_ENDINGS)} (convert the images, e.g. with "
                        "SimpleITK)")
    try:
        channel_names = {int(k): str(v) for k, v in channels.items()}
        if channel_names and sorted(channel_names) != list(range(len(channel_names))):
            problems.append(f"'channel_names' keys must be 0..N-1, got {sorted(channel_names)}")
    except (TypeError, ValueError):
        problems.append("'channel_names' keys must be integers as strings")
        channel_names = {}
    label_map: dict[str, int] = {}
    for k, v in labels.items():
        if isinstance(v, (list, tuple)):
            problems.append(f"label {k!r}: region-based labels (lists) are not supported")
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            problems.append(f"label {k!r}: value must be a non-negative integer, got {v!r}")
            continue
        label_map[str(k)] = v
    if label_map and 0 not in label_map.values():
        problems.append("'labels' must declare background as 0")
    if len(set(label_map.values())) != len(label_map):
        problems.append("'labels' has two names for the same value")
    num_training = raw.get("numTraining", 0)
    if not isinstance(num_training, int) or num_training < 0:
        problems.append(f"'numTraining' must be a non-negative integer, got {num_training!r}")
        num_training = 0
    if problems:
        raise DatasetError(f"{path}: " + "; ".join(problems))
    return DatasetSpec(
        root=root,
        name=str(raw.get("name", root.name)),
        channel_names=channel_names,
        labels=label_map,
        file_ending=str(ending),
        num_training=num_training,
        raw=raw,
    )


def list_cases(spec: DatasetSpec, subset: str = "Tr") -> list[Case]:
    """List the cases of ``imagesTr`` (with ``labelsTr``) or ``imagesTs`` by file name.

    Missing channels or labels are *not* errors here (the case lists what exists);
    :mod:`NNSegLib.data.check` reports them.
    """
    image_dir = spec.root / f"images{subset}"
    label_dir = spec.root / f"labels{subset}"
    ending = spec.file_ending
    grouped: dict[str, dict[int, Path]] = {}
    if image_dir.is_dir():
        for p in sorted(image_dir.iterdir()):
            if not p.name.endswith(ending):
                continue
            m = CHANNEL_RE.match(p.name[: -len(ending)])
            if not m:
                continue
            grouped.setdefault(m["case"], {})[int(m["channel"])] = p
    cases = []
    for ident in sorted(grouped):
        channels = grouped[ident]
        images = tuple(channels[c] for c in sorted(channels))
        label = label_dir / f"{ident}{ending}"
        cases.append(Case(ident, images, label if label.is_file() else None))
    return cases


def case_from_files(paths: list[Path]) -> Case:
    """Group explicit channel files ``X_0000.ext, X_0001.ext`` (or a single file) as a case."""
    from NNSegLib.data.io import file_ending

    paths = sorted(Path(p) for p in paths)
    stem = paths[0].name[: -len(file_ending(paths[0]))]
    m = CHANNEL_RE.match(stem)
    return Case(m["case"] if m else stem, tuple(paths))
