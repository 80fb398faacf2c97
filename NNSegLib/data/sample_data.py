"""The built-in synthetic sample dataset (nnU-Net v2 raw layout).

Each case is a slab of a simplified abdomen: a body (elliptic cylinder) with a
subcutaneous fat layer and a spine, an organ (label 1, irregular rotated ellipsoid) with a
lesion inside it (label 2), and a vessel running along z (label 3). Cases vary in shape,
anisotropic spacing (thick slices), origin, and some have a slightly rotated direction.

* ``mr``: arbitrary intensity scale per case, smooth multiplicative bias field,
  Rician noise, zero outside the body (so cropping to nonzero matters). Float32.
* ``ct``: Hounsfield units (air -1000, fat -100, soft tissue 40, organ 60, lesion 100,
  vessel 160, bone 700) plus Gaussian noise. Int16.

``small`` (default) is the demo dataset: 20 cases of about 32-48 x 64-80 x 64-80 voxels
that a short CPU training segments well. ``large`` writes a few 512 x 512 x ~300 CT-like
cases for checking the planner (cascade); it is slow and not used by default tests.
Everything is vectorized numpy and deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from NNSegLib.data.io import Geometry, SimpleITKIO
from NNSegLib.util import options
from NNSegLib.util.atomic import write_json
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress

KINDS = ("mr", "ct")
CASE_PREFIX = "sample"
GENERATOR_TAG = "nnseg sample-data"
LABELS = {"background": 0, "organ": 1, "lesion": 2, "vessel": 3}

#: Tissue values: (MR relative signal, CT Hounsfield units).
TISSUES = {
    "air": (0.0, -1000.0), "soft": (1.0, 40.0), "fat": (1.5, -100.0), "bone": (0.3, 700.0),
    "organ": (0.6, 60.0), "lesion": (1.3, 100.0), "vessel": (1.9, 160.0),
}


@dataclass(frozen=True)
class SizeSpec:
    """Ranges a case is drawn from (numpy order; spacing in mm)."""

    num_cases: int
    shape_z: tuple[int, int]
    shape_xy: tuple[int, int]
    spacing_z: tuple[float, float]
    spacing_xy: tuple[float, float]
    chunk: int = 64


SIZES = {
    "small": SizeSpec(20, (32, 48), (64, 80), (2.5, 4.0), (0.6, 0.9)),
    "large": SizeSpec(3, (280, 320), (512, 512), (1.0, 1.5), (0.7, 0.85), chunk=16),
}


@dataclass(frozen=True)
class Anatomy:
    """Random parameters of one case, in mm relative to the volume centre."""

    body: tuple[float, float]            # in-plane semi-axes (y, x)
    body_wobble: tuple[float, float]     # amplitude, phase of the radius change along z
    spine: tuple[float, float, float]    # centre y, x and radius
    organ_center: tuple[float, float, float]
    organ_axes: tuple[float, float, float]
    organ_angle: float                   # in-plane rotation (radians)
    organ_bumps: tuple[float, ...]       # frequencies and phases of the shape perturbation
    lesion_center: tuple[float, float, float]
    lesion_axes: tuple[float, float, float]
    vessel: tuple[float, float, float, float, float]  # y, x, radius, drift amplitude, phase
    bias: tuple[float, ...]              # MR bias field coefficients
    scale: float                         # MR intensity scale
    noise: float                         # noise std (relative for MR, HU for CT)


def draw_anatomy(rng: np.random.Generator, half_extent: tuple[float, float, float],
                 kind: str) -> Anatomy:
    """Draw one case's anatomy inside a volume of the given half extents ``(z, y, x)``."""
    hz, hy, hx = half_extent
    r = 0.85 * min(hy, hx)
    by, bx = r * rng.uniform(0.82, 0.95), r * rng.uniform(0.9, 1.0)
    oc = (rng.uniform(-0.15, 0.15) * hz, -0.1 * by + rng.uniform(-0.06, 0.06) * r,
          0.3 * bx + rng.uniform(-0.06, 0.06) * r)
    oa = (min(rng.uniform(0.6, 1.0) * r, 0.6 * hz), rng.uniform(0.3, 0.4) * r,
          rng.uniform(0.35, 0.45) * r)
    frac = rng.uniform(-0.35, 0.35, 3)
    la = (max(min(0.3 * r, 0.5 * oa[0]), 0.0), rng.uniform(0.13, 0.2) * r,
          rng.uniform(0.13, 0.2) * r)
    return Anatomy(
        body=(by, bx), body_wobble=(rng.uniform(0.02, 0.06), rng.uniform(0, 2 * np.pi)),
        spine=(0.62 * by, rng.uniform(-0.04, 0.04) * r, rng.uniform(0.12, 0.16) * r),
        organ_center=oc, organ_axes=oa, organ_angle=rng.uniform(-0.6, 0.6),
        organ_bumps=tuple(rng.uniform(1.5, 3.5, 3)) + tuple(rng.uniform(0, 2 * np.pi, 3)),
        lesion_center=tuple(c + f * a for c, f, a in zip(oc, frac, oa)), lesion_axes=la,
        vessel=(0.15 * by + rng.uniform(-0.05, 0.05) * r, -0.4 * bx + rng.uniform(-0.05, 0.05) * r,
                rng.uniform(0.1, 0.14) * r, rng.uniform(0.0, 0.06) * r, rng.uniform(0, 2 * np.pi)),
        bias=tuple(rng.uniform(-0.25, 0.25, 6)), scale=float(10 ** rng.uniform(1.5, 3.5)),
        noise=float(rng.uniform(0.025, 0.045) if kind == "mr" else rng.uniform(5.0, 8.0)),
    )


def render_chunk(a: Anatomy, z: np.ndarray, y: np.ndarray, x: np.ndarray, kind: str,
                 rng: np.random.Generator, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and label for the slices at ``z`` (mm, shape ``(nz, 1, 1)``).

    ``y`` and ``x`` are ``(1, ny, 1)`` and ``(1, 1, nx)`` mm coordinates; ``r`` is the body
    radius used to normalize the smooth fields.
    """
    from scipy.ndimage import gaussian_filter

    ki = KINDS.index(kind)
    wobble = 1.0 + a.body_wobble[0] * np.sin(z / r + a.body_wobble[1])
    ring = (y / a.body[0]) ** 2 + (x / a.body[1]) ** 2
    body = ring <= wobble**2
    fat = body & (ring > (0.88 * wobble) ** 2)
    spine = (y - a.spine[0]) ** 2 + (x - a.spine[1]) ** 2 <= a.spine[2] ** 2
    organ = _organ(a, z, y, x, r) & body
    lesion = _ellipsoid(z, y, x, a.lesion_center, a.lesion_axes) & organ
    vy = a.vessel[0] + a.vessel[3] * np.sin(z / r + a.vessel[4])
    vessel = ((y - vy) ** 2 + (x - a.vessel[1]) ** 2 <= a.vessel[2] ** 2) & body
    label = np.zeros(body.shape, np.uint8)
    label[organ], label[lesion], label[vessel] = 1, 2, 3
    image = np.full(body.shape, TISSUES["air"][ki], np.float32)
    for name, mask in (("soft", body), ("fat", fat), ("bone", spine & body), ("organ", organ),
                       ("lesion", lesion), ("vessel", vessel)):
        image[mask] = TISSUES[name][ki]
    image = gaussian_filter(image, sigma=(0.0, 0.7, 0.7), mode="nearest")
    noise = rng.standard_normal((2,) + image.shape, dtype=np.float32)
    if kind == "ct":
        return np.rint(image + a.noise * noise[0]).astype(np.int16), label
    c = a.bias
    field = np.exp(c[0] * y / r + c[1] * x / r + c[2] * z / r + c[3] * (y / r) ** 2
                   + c[4] * (x / r) ** 2 + c[5] * (x / r) * (y / r)).astype(np.float32)
    image *= field
    image = np.sqrt((image + a.noise * noise[0]) ** 2 + (a.noise * noise[1]) ** 2) * a.scale
    image[~np.broadcast_to(body, image.shape)] = 0.0
    return image.astype(np.float32), label


def _ellipsoid(z, y, x, center, axes) -> np.ndarray:
    return (((z - center[0]) / axes[0]) ** 2 + ((y - center[1]) / axes[1]) ** 2
            + ((x - center[2]) / axes[2]) ** 2) <= 1.0


def _organ(a: Anatomy, z, y, x, r: float) -> np.ndarray:
    """A rotated ellipsoid whose radius is modulated by smooth sinusoidal bumps."""
    cz, cy, cx = a.organ_center
    cos, sin = np.cos(a.organ_angle), np.sin(a.organ_angle)
    yr = cos * (y - cy) + sin * (x - cx)
    xr = -sin * (y - cy) + cos * (x - cx)
    q = ((z - cz) / a.organ_axes[0]) ** 2 + (yr / a.organ_axes[1]) ** 2 \
        + (xr / a.organ_axes[2]) ** 2
    f, p = a.organ_bumps[:3], a.organ_bumps[3:]
    bumps = 0.12 * np.sin(f[0] * yr / r + p[0]) * np.cos(f[1] * xr / r + p[1]) \
        + 0.08 * np.sin(f[2] * (z - cz) / r + p[2])
    return q <= (1.0 + bumps) ** 2


def random_direction(rng: np.random.Generator, max_degrees: float) -> tuple[float, ...]:
    """Row-major 3x3 rotation about a random axis by up to ``max_degrees``."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    return tuple(float(v) for v in rot.ravel())


def generate_case(index: int, kind: str = "mr", seed: int = 0,
                  size: str = "small") -> tuple[np.ndarray, np.ndarray, Geometry]:
    """One case: ``(image, label, geometry)`` in numpy order, deterministic in its arguments."""
    _validate(kind, size)
    spec = SIZES[size]
    rng = np.random.default_rng([seed, KINDS.index(kind), list(SIZES).index(size), index])
    shape = (int(rng.integers(spec.shape_z[0], spec.shape_z[1] + 1)),
             int(rng.integers(spec.shape_xy[0], spec.shape_xy[1] + 1)),
             int(rng.integers(spec.shape_xy[0], spec.shape_xy[1] + 1)))
    s_xy = float(np.round(rng.uniform(*spec.spacing_xy), 4))
    spacing = (float(np.round(rng.uniform(*spec.spacing_z), 3)), s_xy, s_xy)
    origin = tuple(float(v) for v in np.round(rng.uniform(-150, 150, 3), 3))
    direction = random_direction(rng, 10.0) if index % 3 == 2 else (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    coords = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    half = (shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2, shape[2] * spacing[2] / 2)
    anatomy = draw_anatomy(rng, half, kind)
    r = 0.85 * min(half[1], half[2])
    image = np.empty(shape, np.int16 if kind == "ct" else np.float32)
    label = np.empty(shape, np.uint8)
    y, x = coords[1][None, :, None], coords[2][None, None, :]
    for z0 in range(0, shape[0], spec.chunk):
        z = coords[0][z0:z0 + spec.chunk, None, None]
        image[z0:z0 + len(z)], label[z0:z0 + len(z)] = render_chunk(anatomy, z, y, x, kind, rng, r)
    return image, label, Geometry(shape, spacing, origin, tuple(float(d) for d in direction))


def dataset_json(kind: str, num_cases: int, seed: int, size: str, name: str) -> dict:
    """The sample dataset's ``dataset.json``."""
    return {
        "name": name,
        "description": f"Synthetic {kind.upper()}-like abdomen slabs: organ with a lesion "
                       "inside, and a vessel (NNSeg sample data)",
        "channel_names": {"0": "MRI" if kind == "mr" else "CT"},
        "labels": dict(LABELS),
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
        "licence": "CC0-1.0 (synthetic)",
        "reference": f"{GENERATOR_TAG} --kind {kind} --size {size} --seed {seed}",
    }


def generate_sample_dataset(out: Path | str, kind: str = "mr", num_cases: int | None = None,
                            seed: int = 0, size: str = "small", progress=None) -> Path:
    """Write the synthetic sample dataset in nnU-Net v2 raw layout.

    Args:
        out: Dataset folder to create (must be empty, absent, or an earlier sample dataset).
        kind: ``"mr"`` or ``"ct"``.
        num_cases: Training cases (default: 20 for ``small``, 3 for ``large``).
        seed: Random seed; the same seed gives identical files.
        size: ``"small"`` (demo) or ``"large"`` (512 x 512 x ~300 CT-like).
        progress: Optional :class:`~NNSegLib.util.progress.Progress`.

    Returns:
        ``out``. ``dataset.json`` is written last, so its presence marks a complete dataset.
    """
    _validate(kind, size)
    out = Path(out)
    num_cases = SIZES[size].num_cases if num_cases is None else int(num_cases)
    if num_cases < 1:
        raise NNSegError(f"--cases must be at least 1, got {num_cases}")
    _prepare_folder(out)
    io = SimpleITKIO()
    if progress is not None:
        progress.start("sample-data", num_cases)
    for i in range(num_cases):
        if progress is not None:
            progress.check_cancelled()
        image, label, geometry = generate_case(i, kind, seed, size)
        ident = f"{CASE_PREFIX}_{i:03d}"
        io.write(image, geometry, out / "imagesTr" / f"{ident}_0000.nii.gz")
        io.write(label, geometry, out / "labelsTr" / f"{ident}.nii.gz")
        if progress is not None:
            progress.advance()
    write_json(out / "dataset.json", dataset_json(kind, num_cases, seed, size, out.name))
    if progress is not None:
        progress.done(cases=num_cases)
    return out


def _prepare_folder(out: Path) -> None:
    """Refuse a non-empty foreign folder; clear the case files of an earlier sample dataset."""
    if not out.exists() or not any(out.iterdir()):
        return
    try:
        earlier = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
        ours = str(earlier.get("reference", "")).startswith(GENERATOR_TAG)
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise NNSegError(f"{out}: folder exists and is not an NNSeg sample dataset; "
                         "give an empty or new folder")
    (out / "dataset.json").unlink()
    for sub in ("imagesTr", "labelsTr"):
        for p in sorted((out / sub).glob(f"{CASE_PREFIX}_*.nii.gz")):
            p.unlink()


def _validate(kind: str, size: str) -> None:
    if kind not in KINDS:
        raise NNSegError(f"unknown sample kind {kind!r}; choose from {KINDS}")
    if size not in SIZES:
        raise NNSegError(f"unknown sample size {size!r}; choose from {tuple(SIZES)}")


# -- CLI ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="dataset folder to write (e.g. Dataset900_Sample)")
    parser.add_argument("--kind", choices=KINDS, default="mr",
                        help="MR-like (bias field, Rician noise) or CT-like (HU) (default: mr)")
    parser.add_argument("--cases", type=options.positive_int, default=None,
                        help="number of training cases (default: 20 small, 3 large)")
    parser.add_argument("--seed", type=options.non_negative_int, default=0,
                        help="random seed (default: 0)")
    parser.add_argument("--size", choices=tuple(SIZES), default="small",
                        help="small: ~40x72x72 demo cases; large: 512x512x~300 CT-like "
                             "cases for planner checks (default: small)")


def run(args: argparse.Namespace, progress: Progress) -> int:

    try:
        out = generate_sample_dataset(args.out, args.kind, args.cases, args.seed, args.size,
                                      progress)
    finally:
        progress.close()
    progress.message(f"wrote {out}")
    return 0
