"""Training patches from preprocessed cases (METHOD §4 sampling) and background prefetch.

Cases are read with ``np.load(mmap_mode="r")`` so only the patch is touched. Patch
placement follows nnU-Net: along an axis where the image is smaller than the patch, the
patch start may go below 0 by half the missing size (the outside is zero-padded: image 0,
label 0), so every voxel of the image can lie in a patch; a random patch starts uniformly
in the allowed range; a foreground patch is centred on a random voxel of a random class
present in the case (from ``<case>_locs.npz``) and then shifted into the allowed range. The
last ``ceil(batch_size * oversample_foreground)`` samples of every batch are foreground
patches. 2D configurations take an axis-0 slice of the 3D arrays.

A cascade stage also reads the previous stage's segmentation of each case
(``previous_stage`` folder, ``<case>.npy`` int8 ``(1, z, y, x)`` on the same grid, see
:mod:`~NNSegLib.inference.cascade`); its patch is cut at the same place and returned as a
second label channel, so spatial augmentation moves it with the labels (nearest-neighbour)
before the trainer turns it into one-hot input channels.

Each batch is drawn from its own generator, derived from ``(seed, stream, epoch, iteration,
rank)`` by :func:`batch_rng`, so batches do not depend on the order in which background
threads produce them, and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Iterator, Sequence, TypeVar

import numpy as np

from NNSegLib.util.errors import NNSegError

T = TypeVar("T")

#: Stream ids mixed into :func:`batch_rng` seeds.
TRAIN_STREAM, VAL_STREAM = 0, 1


def batch_rng(seed: int, stream: int, epoch: int, iteration: int, rank: int = 0
              ) -> np.random.Generator:
    """An independent generator for one batch."""
    return np.random.default_rng([seed, stream, epoch, iteration, rank])


def list_preprocessed_cases(folder: Path) -> list[str]:
    """Sorted case ids of a preprocessed folder (``<case>.npy`` with ``<case>_seg.npy``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NNSegError(f"{folder}: preprocessed data not found; run `nnseg preprocess` first")
    return sorted(p.name[: -len("_seg.npy")] for p in folder.glob("*_seg.npy")
                  if (folder / (p.name[: -len("_seg.npy")] + ".npy")).is_file())


@dataclass(frozen=True)
class CaseArrays:
    """One preprocessed case: memory-mapped arrays and foreground locations per class."""

    identifier: str
    data: np.ndarray  # (C, z, y, x) float32, memory-mapped
    seg: np.ndarray  # (1, z, y, x) int8, memory-mapped
    locations: dict[int, np.ndarray]  # class → (N, 3) int32 voxel indices
    previous: np.ndarray | None = None  # (1, z, y, x) int8 previous-stage labels (cascade)


def load_case(folder: Path, identifier: str, previous_stage: Path | None = None
              ) -> CaseArrays:
    """Open one case of ``folder`` per the preprocessed contract.

    Args:
        folder: ``preprocessed/<data_identifier>``.
        identifier: Case id.
        previous_stage: Folder of the previous cascade stage's segmentations, if any.

    Raises:
        NNSegError: naming the file that is missing or malformed.
    """
    folder = Path(folder)
    paths = {k: folder / f"{identifier}{s}" for k, s in
             (("data", ".npy"), ("seg", "_seg.npy"), ("locs", "_locs.npz"))}
    arrays = {}
    for key in ("data", "seg"):
        try:
            arrays[key] = np.load(paths[key], mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise NNSegError(f"{paths[key]}: cannot read preprocessed array ({e})") from e
    data, seg = arrays["data"], arrays["seg"]
    if data.ndim != 4 or seg.ndim != 4 or seg.shape[0] != 1 or seg.shape[1:] != data.shape[1:]:
        raise NNSegError(f"{paths['data']}: expected (C, z, y, x) data and (1, z, y, x) seg, "
                         f"got {data.shape} and {seg.shape}")
    locations: dict[int, np.ndarray] = {}
    if paths["locs"].is_file():
        try:
            with np.load(paths["locs"], allow_pickle=False) as npz:
                for name in npz.files:
                    if name.startswith("class_"):
                        locs = np.asarray(npz[name], dtype=np.int64).reshape(-1, 3)
                        if len(locs):
                            locations[int(name[len("class_"):])] = locs
        except (OSError, ValueError) as e:
            raise NNSegError(f"{paths['locs']}: cannot read class locations ({e})") from e
    previous = None
    if previous_stage is not None:
        path = Path(previous_stage) / f"{identifier}.npy"
        try:
            previous = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise NNSegError(f"{path}: cannot read the previous stage's segmentation ({e})"
                             ) from e
        if previous.shape != seg.shape:
            raise NNSegError(f"{path}: shape {previous.shape} does not match "
                             f"{paths['seg']} {seg.shape}; the previous stage's predictions "
                             "were made for other preprocessed data (re-run its validation)")
    return CaseArrays(identifier, data, seg, locations, previous)


def patch_bounds(shape: Sequence[int], patch: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest allowed patch start per axis (padding where the image is small)."""
    shape_a, patch_a = np.asarray(shape), np.asarray(patch)
    need = np.maximum(patch_a - shape_a, 0)
    lower = -(need // 2)
    upper = shape_a + need // 2 + need % 2 - patch_a
    return lower, upper


def extract_patch(array: np.ndarray, start: Sequence[int], patch: Sequence[int]) -> np.ndarray:
    """Copy ``array[:, start:start+patch]`` (leading channel axis), zero outside the array."""
    out = np.zeros((array.shape[0], *patch), dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for s, p, n in zip(start, patch, array.shape[1:]):
        lo, hi = max(s, 0), min(s + p, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Draws batches of patches from a set of preprocessed cases.

    Args:
        folder: ``preprocessed/<data_identifier>``.
        case_ids: Cases to sample from.
        patch_size: 3 values (3D) or 2 values (2D: axis-0 slices).
        batch_size: Samples per batch.
        oversample_foreground: Minimum share of foreground-centred samples per batch.
        previous_stage: Folder of the previous cascade stage's segmentations (adds a
            second label channel to every batch).
        foreground_placement: ``clip`` (a foreground-centred patch is moved back into the
            allowed range) or ``centre`` (the chosen voxel stays at the patch centre).
    """

    def __init__(self, folder: Path, case_ids: Sequence[str], patch_size: Sequence[int],
                 batch_size: int, oversample_foreground: float = 0.33,
                 previous_stage: Path | None = None,
                 foreground_placement: str = "clip") -> None:
        if not case_ids:
            raise NNSegError(f"{folder}: no cases to sample from")
        if len(patch_size) not in (2, 3):
            raise NNSegError(f"patch size must have 2 or 3 values, got {tuple(patch_size)}")
        self.folder = Path(folder)
        self.case_ids = list(case_ids)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.num_foreground = int(math.ceil(self.batch_size * oversample_foreground - 1e-9))
        self.previous_stage = Path(previous_stage) if previous_stage is not None else None
        if foreground_placement not in ("clip", "centre"):
            raise NNSegError(f"foreground_placement {foreground_placement!r} not in "
                             "('clip', 'centre')")
        self.foreground_placement = foreground_placement
        self._cases: dict[str, CaseArrays] = {}

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size)

    def case(self, identifier: str) -> CaseArrays:
        """The (cached) arrays of one case."""
        if identifier not in self._cases:
            self._cases[identifier] = load_case(self.folder, identifier, self.previous_stage)
        return self._cases[identifier]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One batch: images ``(B, C, *patch)`` float32 and labels ``(B, 1, *patch)`` int8.

        With a previous stage the labels are ``(B, 2, *patch)``: channel 1 holds the
        previous stage's segmentation.
        """
        images, segs = [], []
        first_fg = self.batch_size - self.num_foreground
        for i in range(self.batch_size):
            case = self.case(self.case_ids[int(rng.integers(len(self.case_ids)))])
            image, seg = self._sample_one(case, rng, force_fg=i >= first_fg)
            images.append(image)
            segs.append(seg)
        return np.stack(images).astype(np.float32, copy=False), np.stack(segs)

    def _sample_one(self, case: CaseArrays, rng: np.random.Generator,
                    force_fg: bool) -> tuple[np.ndarray, np.ndarray]:
        voxel = None
        if force_fg and case.locations:
            classes = sorted(case.locations)
            locs = case.locations[classes[int(rng.integers(len(classes)))]]
            voxel = locs[int(rng.integers(len(locs)))]
        data, seg, previous = case.data, case.seg, case.previous
        if self.spatial_dims == 2:
            z = int(voxel[0]) if voxel is not None else int(rng.integers(data.shape[1]))
            data, seg = data[:, z], seg[:, z]
            previous = previous[:, z] if previous is not None else None
            voxel = voxel[1:] if voxel is not None else None
        lower, upper = patch_bounds(data.shape[1:], self.patch_size)
        if voxel is None:
            start = [int(rng.integers(lo, hi + 1)) for lo, hi in zip(lower, upper)]
        else:
            centred = np.asarray(voxel) - np.asarray(self.patch_size) // 2
            if self.foreground_placement == "clip":
                centred = np.clip(centred, lower, upper)
            start = [int(v) for v in centred]
        seg_patch = extract_patch(seg, start, self.patch_size)
        if previous is not None:
            seg_patch = np.concatenate([seg_patch,
                                        extract_patch(previous, start, self.patch_size)])
        return extract_patch(data, start, self.patch_size), seg_patch


class Prefetcher(Generic[T]):
    """Produce ``make(i)`` for ``i`` in ``range(start, stop)`` on background threads, in order.

    Keeps up to ``depth`` items in flight; iteration returns them in index order and adds
    the time spent waiting for an item that was not ready to :attr:`wait_seconds`.
    NumPy slicing and copying release the GIL, so one thread keeps a CPU network busy.
    """

    def __init__(self, make: Callable[[int], T], start: int, stop: int,
                 threads: int = 1, depth: int = 3) -> None:
        self._make = make
        self._next = start
        self._stop = stop
        self._depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads),
                                        thread_name_prefix="nnseg-loader")
        self._pending: deque[Future] = deque()
        self.wait_seconds = 0.0
        self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self._depth and self._next < self._stop:
            self._pending.append(self._pool.submit(self._make, self._next))
            self._next += 1

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if not self._pending:
            raise StopIteration
        future = self._pending.popleft()
        t0 = time.perf_counter()
        item = future.result()
        self.wait_seconds += time.perf_counter() - t0
        self._fill()
        return item

    def close(self) -> None:
        """Drop pending work and stop the threads."""
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["TRAIN_STREAM", "VAL_STREAM", "CaseArrays", "PatchSampler", "Prefetcher",
           "batch_rng", "extract_patch", "list_preprocessed_cases", "load_case", "patch_bounds"]
