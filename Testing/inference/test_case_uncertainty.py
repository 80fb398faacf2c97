"""NNSegLib.inference.case_uncertainty: what the review queue ranks and jumps to."""

from __future__ import annotations

import numpy as np
import pytest

from NNSegLib.data.io import Geometry
from NNSegLib.inference.case_uncertainty import (
    CaseUncertainty,
    index_to_lps,
    most_uncertain_region,
    summarize_uncertainty,
)

#: Rotated 90° about z (x ↔ y), anisotropic: positions must use direction and spacing.
GEO = Geometry((10, 20, 30), (3.0, 2.0, 1.0), (5.0, -4.0, 10.0), (0, -1, 0, 1, 0, 0, 0, 0, 1))
NAMES = {0: "background", 1: "liver", 2: "tumor"}


def test_index_to_lps_uses_spacing_direction_and_origin():
    # index (z, y, x) = (1, 2, 3) → ijk (3, 2, 1) mm-scaled (3, 4, 3) → rotated (-4, 3, 3)
    assert index_to_lps((1, 2, 3), GEO) == pytest.approx((5.0 - 4.0, -4.0 + 3.0, 10.0 + 3.0))


def test_summary_numbers():
    labels = np.zeros(GEO.shape, np.uint8)
    labels[2:4, 5:10, 5:10] = 1          # 50 voxels, 50 × 6 mm³ = 0.3 ml
    labels[6, 0:2, 0:5] = 2              # 10 voxels
    u = np.zeros(GEO.shape, np.float32)
    u[2:4, 5:10, 5:10] = 0.2             # inside liver: certain-ish
    u[6, 0:2, 0:5] = 0.8                 # the whole tumor uncertain
    u[0, 15:17, 20:22] = 0.6             # 4 uncertain background voxels
    s = summarize_uncertainty(labels, u, GEO, NAMES)
    assert s.foreground_voxels == 60 and s.uncertain_voxels == 14
    assert s.mean_entropy_foreground == pytest.approx((50 * 0.2 + 10 * 0.8) / 60)
    assert s.uncertain_fraction == pytest.approx(14 / 64)
    assert s.volumes_ml == pytest.approx({"liver": 0.3, "tumor": 0.06})
    assert s.score == pytest.approx(s.mean_entropy_foreground)
    # the region: the uncertain component with the largest summed entropy (tumor: 8.0 > 2.4)
    r = s.region
    assert r is not None and r.box_ijk == ((6, 7), (0, 2), (0, 5))
    assert r.center_ijk[0] == 6 and r.mean_uncertainty == pytest.approx(0.8)
    x, y, z = r.center_lps
    assert r.center_ras == pytest.approx((-x, -y, z))
    assert CaseUncertainty.from_dict(s.to_dict()) == s


def test_empty_predictions_rank_by_hesitation():
    labels = np.zeros(GEO.shape, np.uint8)
    calm = summarize_uncertainty(labels, np.zeros(GEO.shape, np.float32), GEO, NAMES)
    assert calm.mean_entropy_foreground is None and calm.score == 0.0
    assert calm.uncertain_fraction == 0.0 and calm.region is None
    u = np.zeros(GEO.shape, np.float32)
    u[4, 4, 4] = 0.9
    unsure = summarize_uncertainty(labels, u, GEO, NAMES)
    assert unsure.score == 1.0 and unsure.uncertain_fraction == 1.0
    low = np.zeros(GEO.shape, np.float32)
    low[3, 7, 9] = 0.3                  # nothing over the threshold: the maximum
    region = most_uncertain_region(low, GEO)
    assert region is not None and region.center_ijk == (3, 7, 9)
    assert region.box_ijk[0][0] <= 3 < region.box_ijk[0][1]
