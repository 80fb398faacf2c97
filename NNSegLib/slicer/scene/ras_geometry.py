"""Slicer's IJK→RAS matrices ⇄ NNSegLib's :class:`~NNSegLib.data.io.Geometry` (pure numpy).

Arrays are numpy ``(z, y, x)`` = Slicer's ``(k, j, i)``; :class:`~NNSegLib.data.io.Geometry` is
ITK/LPS while Slicer is RAS: the x and y rows of the origin and of the direction matrix
change sign, the array stays the same. :mod:`NNSegLib.slicer.scene.mrml` applies these to
volume nodes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from NNSegLib.data.io import Geometry

_LPS_RAS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras(geometry: Geometry) -> np.ndarray:
    """The 4×4 IJK→RAS matrix of an NNSegLib (LPS) geometry."""
    direction_lps = np.asarray(geometry.direction, float).reshape(3, 3)
    spacing_xyz = np.asarray(geometry.spacing, float)[::-1]
    m = np.eye(4)
    m[:3, :3] = _LPS_RAS @ direction_lps @ np.diag(spacing_xyz)
    m[:3, 3] = _LPS_RAS @ np.asarray(geometry.origin, float)
    return m


def geometry_from_ijk_to_ras(matrix: np.ndarray, shape: Sequence[int]) -> Geometry:
    """Geometry (LPS) of a ``(z, y, x)`` array whose voxels map to RAS by ``matrix``."""
    matrix = np.asarray(matrix, float)
    columns = matrix[:3, :3]
    spacing_xyz = np.linalg.norm(columns, axis=0)
    direction_ras = columns / spacing_xyz
    direction_lps = _LPS_RAS @ direction_ras
    origin_lps = _LPS_RAS @ matrix[:3, 3]
    return Geometry(
        shape=tuple(int(s) for s in shape),
        spacing=tuple(float(s) for s in spacing_xyz[::-1]),
        origin=tuple(float(o) for o in origin_lps),
        direction=tuple(float(d) for d in direction_lps.ravel()),
    )


__all__ = ["geometry_from_ijk_to_ras", "ijk_to_ras"]
