from __future__ import annotations

import numpy as np

from NNSegLib.preprocessing.cropping import bbox_of, crop, nonzero_mask, paste


def test_bbox_of_two_channels():
    images = np.zeros((2, 10, 12, 14), np.float32)
    images[0, 2:5, 3:9, 4:6] = 1.0
    images[1, 7, 1, 10] = -3.0  # only in the second channel
    box = bbox_of(nonzero_mask(images))
    assert box == [[2, 8], [1, 9], [4, 11]]
    cropped = crop(images, box)
    assert cropped.shape == (2, 6, 8, 7)
    assert np.count_nonzero(cropped) == np.count_nonzero(images)


def test_paste_inverts_crop():
    rng = np.random.default_rng(0)
    volume = np.zeros((9, 11, 13), np.float32)
    volume[3:7, 2:10, 5:12] = rng.normal(size=(4, 8, 7))
    box = bbox_of(volume != 0)
    restored = paste(crop(volume, box), box, volume.shape)
    np.testing.assert_array_equal(restored, volume)
    assert restored.dtype == volume.dtype


def test_empty_mask_keeps_everything():
    assert bbox_of(np.zeros((3, 4, 5), bool)) == [[0, 3], [0, 4], [0, 5]]
