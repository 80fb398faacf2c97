"""Image reading and writing behind one small interface.

Axis convention used everywhere in NNSegLib: arrays are in **numpy order** as returned by
SimpleITK's ``GetArrayFromImage``, i.e. ``(z, y, x)`` for 3D (``(y, x)`` for 2D images,
which are promoted to ``(1, y, x)``). ``Geometry.spacing`` and ``Geometry.shape`` use the
same order. ``origin`` and ``direction`` are kept exactly as ITK has them (LPS, ``(x, y, z)``
order, direction row-major 3x3) so that a written image has the input's geometry bit for bit.
"""

from __future__ import annotations

import abc
import gzip
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.util.errors import NNSegError

SUPPORTED_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha", ".mhd")


class ImageReadError(NNSegError, ValueError):
    """An image file could not be read or is not usable; the message names the file."""


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels are in space.

    Attributes:
        shape: Array shape, numpy order ``(z, y, x)``.
        spacing: Voxel size in mm, numpy order ``(z, y, x)``.
        origin: ITK (LPS) origin, ``(x, y, z)``.
        direction: ITK direction cosines, row-major 3x3 (9 values), ``(x, y, z)`` axes.
        ndim: Dimension of the file the image came from (2D images are held as
            ``(1, y, x)`` and written back as 2D).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    ndim: int = 3

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
            "ndim": self.ndim,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        return cls(
            shape=tuple(int(v) for v in d["shape"]),
            spacing=tuple(float(v) for v in d["spacing"]),
            origin=tuple(float(v) for v in d["origin"]),
            direction=tuple(float(v) for v in d["direction"]),
            ndim=int(d.get("ndim", 3)),
        )

    def mismatch(self, other: Geometry, rtol: float = 1e-4, atol: float = 1e-3) -> str | None:
        """Describe how ``other`` differs from this geometry, or ``None`` if it agrees.

        Shapes must be equal; spacing, origin and direction agree within tolerance
        (relative for spacing, absolute mm/cosine for origin and direction).
        """
        if tuple(self.shape) != tuple(other.shape):
            return f"shape {tuple(other.shape)} != {tuple(self.shape)}"
        if not np.allclose(self.spacing, other.spacing, rtol=rtol, atol=1e-6):
            return f"spacing {tuple(other.spacing)} != {tuple(self.spacing)}"
        if not np.allclose(self.origin, other.origin, rtol=0, atol=atol):
            return f"origin {tuple(other.origin)} != {tuple(self.origin)}"
        if not np.allclose(self.direction, other.direction, rtol=0, atol=atol):
            return f"direction {tuple(other.direction)} != {tuple(self.direction)}"
        return None


class ImageIO(abc.ABC):
    """Reads and writes single-channel images as numpy arrays plus :class:`Geometry`."""

    @abc.abstractmethod
    def read(self, path: Path) -> tuple[np.ndarray, Geometry]:
        """Read a scalar 2D/3D image. 2D images come back as ``(1, y, x)``."""

    @abc.abstractmethod
    def write(self, array: np.ndarray, geometry: Geometry, path: Path) -> None:
        """Write ``array`` (numpy order) with ``geometry`` to ``path`` (format by ending)."""


class SimpleITKIO(ImageIO):
    """:class:`ImageIO` backed by SimpleITK (.nii.gz, .nii, .nrrd, .mha, .mhd)."""

    def read(self, path: Path) -> tuple[np.ndarray, Geometry]:
        import SimpleITK as sitk

        from NNSegLib.util.files import path_problem

        path = Path(path)
        problem = path_problem(path)   # ITK calls all of these "does not exist"
        if problem:
            raise ImageReadError(f"{path}: {problem}")
        if "slicer" not in sys.modules:   # the command: one clear line, not ITK's noise
            sitk.ProcessObject.SetGlobalWarningDisplay(False)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as e:
            raise ImageReadError(f"{path}: unreadable or corrupt image ({_itk_reason(e)})"
                                 ) from e
        return image_to_array(image, path)

    def write(self, array: np.ndarray, geometry: Geometry, path: Path,
              durable: bool = False) -> None:
        import SimpleITK as sitk

        from NNSegLib.util.atomic import atomic_path

        path = Path(path)
        image = array_to_image(array, geometry)
        if file_ending(path) == ".mhd":
            _write_mhd(image, path)
            return
        with atomic_path(path, suffix=file_ending(path), durable=durable) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)


def _itk_reason(error: Exception) -> str:
    """The useful line of an ITK exception (they span many lines of source locations)."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    for line in lines:
        text = line.split("ERROR:", 1)[1].strip() if "ERROR:" in line else ""
        if text:
            return text
    return lines[-1] if lines else "unknown error"


def _write_mhd(image, path: Path) -> None:
    """Write header + data file in a temporary folder, then move the data, then the header.

    The header names its data file, so both are written under their final names and
    moved into place (data first: the header only appears once its data is complete).
    """
    import shutil

    import SimpleITK as sitk

    from NNSegLib.util.atomic import temp_dir

    tmp_dir = temp_dir(path)
    try:
        sitk.WriteImage(image, str(tmp_dir / path.name), useCompression=True)
        header = tmp_dir / path.name
        for f in sorted(tmp_dir.iterdir()):
            if f != header:
                os.replace(f, path.parent / f.name)
        os.replace(header, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def image_to_array(image, path: Path | str = "<image>") -> tuple[np.ndarray, Geometry]:
    """Convert a SimpleITK image to ``(array, Geometry)``, refusing vector/4D images."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path}: vector image with {image.GetNumberOfComponentsPerPixel()} components; "
            "give each channel as its own file (_0000, _0001, ...)"
        )
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise ImageReadError(f"{path}: {dim}D image; only 2D and 3D scalar images are supported")
    array = sitk.GetArrayFromImage(image)
    ndim = 3
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    origin = tuple(float(o) for o in image.GetOrigin())
    direction = tuple(float(d) for d in image.GetDirection())
    if dim == 2:
        array = array[None]
        ndim = 2
        spacing = (999.0,) + spacing
        origin = origin + (0.0,)
        d = direction
        direction = (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0)
    return array, Geometry(tuple(array.shape), spacing, origin, direction, ndim)


def array_to_image(array: np.ndarray, geometry: Geometry):
    """Build a SimpleITK image from a numpy-order array and a :class:`Geometry`."""
    array = np.asarray(array)
    if geometry.ndim == 2:
        if array.ndim != 3 or array.shape[0] != 1:
            raise ValueError(f"a 2D geometry needs a (1, y, x) array, got {array.shape}")
        image = _sitk_image(array[0])
        image.SetSpacing(tuple(float(s) for s in reversed(geometry.spacing[1:])))
        image.SetOrigin(tuple(geometry.origin[:2]))
        d = geometry.direction
        image.SetDirection((d[0], d[1], d[3], d[4]))
        return image
    image = _sitk_image(array)
    image.SetSpacing(tuple(float(s) for s in reversed(geometry.spacing)))
    image.SetOrigin(tuple(geometry.origin))
    image.SetDirection(tuple(geometry.direction))
    return image


def _sitk_image(array: np.ndarray):
    import SimpleITK as sitk

    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.int64:
        array = array.astype(np.int32)
    return sitk.GetImageFromArray(array)


#: NIfTI float datatypes → numpy dtype.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class NiftiScan:
    """What the voxel bytes of a NIfTI file hold.

    Attributes:
        expected_bytes: Voxel bytes the header declares (dimensions × bits per voxel).
        found_bytes: Voxel bytes actually present (at most ``expected_bytes``).
        nan: NaN voxels (float types only).
        inf: Infinite voxels (float types only).
    """

    expected_bytes: int
    found_bytes: int
    nan: int = 0
    inf: int = 0

    @property
    def truncated(self) -> bool:
        return self.found_bytes < self.expected_bytes


def is_nifti(path: Path | str) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _header(head: bytes, path: Path) -> tuple[str, int, tuple[int, ...], int, int] | None:
    """``(byte order, datatype, dims, bits per voxel, voxel offset)`` or ``None``."""
    if len(head) < 348:
        raise ImageReadError(f"{path}: too short for a NIfTI header")
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size in (348, 540):
            break
    else:
        return None
    if size == 348:
        dims = struct.unpack(order + "8h", head[40:56])
        datatype, bitpix = struct.unpack(order + "2h", head[70:74])
        offset = int(struct.unpack(order + "f", head[108:112])[0])
    else:
        if len(head) < 540:
            raise ImageReadError(f"{path}: too short for a NIfTI-2 header")
        datatype, bitpix = struct.unpack(order + "2h", head[12:16])
        dims = struct.unpack(order + "8q", head[16:80])
        offset = int(struct.unpack(order + "q", head[168:176])[0])
    return order, datatype, tuple(int(d) for d in dims), int(bitpix), offset


def scan_nifti(path: Path | str, chunk_bytes: int = 1 << 24) -> NiftiScan | None:
    """Count a NIfTI file's voxel bytes (and NaN/inf of float data); ``None`` for other files.

    Raises:
        ImageReadError: if the file is too short for its header or its gzip stream is
            broken.
        OSError: when the file cannot be read.
    """
    path = Path(path)
    if not is_nifti(path):
        return None
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return _scan(f, path, chunk_bytes)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ImageReadError(f"{path}: the gzip data is cut short or corrupt ({e})") from None


def _scan(f, path: Path, chunk_bytes: int) -> NiftiScan | None:
    header = _header(f.read(540), path)
    if header is None:
        return None
    order, datatype, dims, bitpix, offset = header
    ndim = max(1, min(dims[0], 7))
    count = int(np.prod([max(1, d) for d in dims[1:1 + ndim]], dtype=np.int64))
    expected = (count * max(bitpix, 1) + 7) // 8
    dtype = np.dtype(order + _NIFTI_FLOATS[datatype]) if datatype in _NIFTI_FLOATS else None
    f.seek(offset)
    nan = inf = found = 0
    item = dtype.itemsize if dtype is not None else 1
    step = max(item, chunk_bytes - chunk_bytes % item)
    carry = b""
    while found < expected:
        data = f.read(min(step, expected - found))
        if not data:
            break
        found += len(data)
        if dtype is not None:
            data = carry + data
            usable = len(data) - len(data) % item
            values = np.frombuffer(data[:usable], dtype)
            nan += int(np.count_nonzero(np.isnan(values)))
            inf += int(np.count_nonzero(np.isinf(values)))
            carry = data[usable:]
    return NiftiScan(expected, found, nan, inf)


def nifti_non_finite(path: Path | str, chunk_bytes: int = 1 << 24) -> tuple[int, int]:
    """``(NaN, infinite)`` voxel counts stored in a float NIfTI file (0s for other files).

    ITK's NIfTI reader silently replaces NaN and ±inf by 0 (see :func:`scan_nifti`).

    Raises:
        ImageReadError: if the file is too short for its header.
    """
    scan = scan_nifti(path, chunk_bytes)
    return (scan.nan, scan.inf) if scan is not None else (0, 0)


def file_ending(path: Path | str) -> str:
    """Return the supported ending of ``path`` (``.nii.gz`` counts as one), or its suffix."""
    name = Path(path).name.lower()
    for ending in sorted(SUPPORTED_ENDINGS, key=len, reverse=True):
        if name.endswith(ending):
            return ending
    return Path(path).suffix.lower()


def read_channels(
    paths: Sequence[Path], io: ImageIO | None = None
) -> tuple[np.ndarray, Geometry]:
    """Read one case's channel files into a ``(C, z, y, x)`` float32 array.

    All channels must share the first channel's geometry.

    Raises:
        ImageReadError: naming the file that is unreadable or whose geometry differs.
    """
    io = io or SimpleITKIO()
    arrays = []
    geometry: Geometry | None = None
    for p in paths:
        array, geo = io.read(Path(p))
        if geometry is None:
            geometry = geo
        else:
            problem = geometry.mismatch(geo)
            if problem:
                raise ImageReadError(f"{p}: geometry differs from {paths[0]}: {problem}")
        arrays.append(array.astype(np.float32, copy=False))
    if geometry is None:
        raise ImageReadError("no channel files given")
    return np.stack(arrays), geometry
