"""NNSegLib.slicer.scene.ras_geometry: IJK→RAS matrices ⇄ (LPS) geometry, no Slicer needed."""

from __future__ import annotations

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.slicer.scene.ras_geometry import geometry_from_ijk_to_ras, ijk_to_ras


def rotation(ax: float, az: float) -> np.ndarray:
    """A proper rotation: about x by ``ax`` then about z by ``az`` (radians)."""
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ rx


# Rotated, anisotropic, non-zero origin; spacing in numpy order (z, y, x).
GEO = Geometry(
    shape=(7, 9, 11),
    spacing=(3.0, 0.7, 0.9),
    origin=(10.5, -20.25, 33.0),
    direction=tuple(rotation(0.3, -0.5).ravel()),
)


def assert_geometry_close(a: Geometry, b: Geometry, tol: float = 1e-6) -> None:
    assert tuple(a.shape) == tuple(b.shape)
    np.testing.assert_allclose(a.spacing, b.spacing, atol=tol)
    np.testing.assert_allclose(a.origin, b.origin, atol=tol)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol)


def test_ijk_to_ras_matches_lps_flip():
    m = ijk_to_ras(GEO)
    d = np.asarray(GEO.direction).reshape(3, 3)
    np.testing.assert_allclose(m[:3, 3], [-10.5, 20.25, 33.0])
    np.testing.assert_allclose(m[:3, 0], np.diag([-1, -1, 1]) @ d[:, 0] * 0.9)
    np.testing.assert_allclose(m[:3, 2], np.diag([-1, -1, 1]) @ d[:, 2] * 3.0)
    assert_geometry_close(geometry_from_ijk_to_ras(m, GEO.shape), GEO, 1e-12)


def test_axis_aligned_geometry_flips_x_and_y():
    geo = Geometry((4, 5, 6), (2.0, 1.0, 0.5), (1.0, 2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    m = ijk_to_ras(geo)
    np.testing.assert_allclose(m, [[-0.5, 0, 0, -1.0], [0, -1.0, 0, -2.0], [0, 0, 2.0, 3.0],
                                   [0, 0, 0, 1]])
    back = geometry_from_ijk_to_ras(m, geo.shape)
    assert back.shape == (4, 5, 6) and all(isinstance(s, int) for s in back.shape)
    assert back.spacing == (2.0, 1.0, 0.5) and back.origin == (1.0, 2.0, 3.0)
    assert back.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
