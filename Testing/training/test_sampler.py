from __future__ import annotations

import numpy as np
import pytest
from conftest import write_preprocessed

from NNSegLib.training.sampler import (
    PatchSampler,
    Prefetcher,
    batch_rng,
    extract_patch,
    list_preprocessed_cases,
    load_case,
    patch_bounds,
)
from NNSegLib.util.errors import NNSegError


@pytest.fixture
def prep(tmp_path):
    folder = tmp_path / "prep"
    return folder, write_preprocessed(folder)


def test_patch_bounds_pad_small_axes():
    lower, upper = patch_bounds((36, 100, 40), (40, 56, 40))
    assert lower.tolist() == [-2, 0, 0]
    assert upper.tolist() == [-2, 44, 0]


def test_extract_patch_pads_with_zeros():
    a = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    p = extract_patch(a, (-1, 3), (3, 4))
    assert p.shape == (2, 3, 4)
    assert p[:, 0].sum() == 0 and p[:, :, 2:].sum() == 0
    np.testing.assert_array_equal(p[:, 1:, :2], a[:, 0:2, 3:5])


def test_load_case_and_listing(prep):
    folder, ids = prep
    assert list_preprocessed_cases(folder) == ids
    case = load_case(folder, ids[0])
    assert isinstance(case.data, np.memmap)
    assert case.data.shape == (1, 20, 24, 24) and sorted(case.locations) == [1, 2]
    with pytest.raises(NNSegError, match="case_999.npy"):
        load_case(folder, "case_999")


@pytest.mark.parametrize("patch", [(16, 16, 16), (12, 20)])
def test_foreground_oversampling_share(prep, patch):
    folder, ids = prep
    sampler = PatchSampler(folder, ids, patch, batch_size=3, oversample_foreground=0.33)
    assert sampler.num_foreground == 1
    centre = tuple(p // 2 for p in patch)
    fg_last, fg_any = 0, 0
    n = 200
    for it in range(n):
        images, segs = sampler.sample(batch_rng(0, 0, 0, it))
        assert images.shape == (3, 1, *patch) and images.dtype == np.float32
        assert segs.shape == (3, 1, *patch) and segs.dtype == np.int8
        fg_last += int(segs[-1, 0][centre] > 0 or (segs[-1] > 0).any())
        fg_any += int((segs > 0).any(axis=tuple(range(1, segs.ndim))).sum())
    # Every forced sample contains foreground (patches are centred on it where possible).
    assert fg_last == n
    # At least a third of all samples contain foreground.
    assert fg_any / (3 * n) >= 1 / 3


def test_forced_sample_is_centred_on_foreground(tmp_path):
    # Big enough images that the centred patch is never shifted: centre voxel is foreground.
    folder = tmp_path / "big"
    ids = write_preprocessed(folder, num_cases=2, shape=(40, 48, 48))
    sampler = PatchSampler(folder, ids, (8, 8, 8), batch_size=1, oversample_foreground=1.0)
    hits = sum(int(sampler.sample(batch_rng(1, 0, 0, i))[1][0, 0, 4, 4, 4] > 0)
               for i in range(50))
    assert hits >= 45


def test_without_oversampling_share_matches_volume_fraction(prep):
    folder, ids = prep
    sampler = PatchSampler(folder, ids, (4, 4, 4), batch_size=4, oversample_foreground=0.0)
    centre = [sampler.sample(batch_rng(2, 0, 0, i))[1][:, 0, 2, 2, 2] for i in range(150)]
    share = float(np.mean(np.concatenate(centre) > 0))
    volume = np.mean([(np.load(folder / f"{c}_seg.npy") > 0).mean() for c in ids])
    assert abs(share - volume) < 0.08


def test_batches_are_reproducible(prep):
    folder, ids = prep
    sampler = PatchSampler(folder, ids, (16, 16, 16), batch_size=2)
    a = sampler.sample(batch_rng(5, 0, 3, 7))
    b = sampler.sample(batch_rng(5, 0, 3, 7))
    c = sampler.sample(batch_rng(5, 0, 3, 8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_prefetcher_keeps_order_and_counts_wait():
    import time

    def make(i):
        time.sleep(0.002 * (i % 3))
        return i * i

    with Prefetcher(make, 2, 12, threads=2, depth=3) as pf:
        assert list(pf) == [i * i for i in range(2, 12)]
        assert pf.wait_seconds >= 0.0
