"""Connected components (26-neighbourhood) and largest-component postprocessing rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from NNSegLib.postprocessing.connected_components import (
    component_sizes,
    label_components,
    largest_component,
)
from NNSegLib.postprocessing.postprocess import (
    PostprocessingRules,
    apply_postprocessing,
    class_mask,
    remove_all_but_largest_component,
)
from NNSegLib.util.errors import NNSegError


def _two_blobs() -> np.ndarray:
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[1:4, 1:4, 1:4] = 1  # 27 voxels
    labels[7:9, 7:9, 7:9] = 2  # 8 voxels, far away
    labels[7:9, 7:9, 9] = 1  # 4 voxels of class 1 touching the class-2 blob
    return labels


def test_diagonal_contact_is_one_component_with_26_connectivity():
    mask = np.zeros((5, 5, 5), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[3, 3, 3] = True  # corner contacts only
    labelled, n = label_components(mask)
    assert n == 1 and labelled[mask].tolist() == [1, 1, 1]
    mask[0, 4, 4] = True
    assert component_sizes(mask) == [3, 1]
    assert largest_component(mask).sum() == 3


def test_largest_component_empty_and_ties():
    assert not largest_component(np.zeros((3, 3, 3), bool)).any()
    mask = np.zeros((3, 3, 9), bool)
    mask[1, 1, 1] = mask[1, 1, 7] = True
    keep = largest_component(mask)
    assert keep[1, 1, 1] and not keep[1, 1, 7]  # tie: first in array order


def test_remove_all_but_largest_foreground():
    labels = _two_blobs()
    out = remove_all_but_largest_component(labels, "foreground")
    assert (out == 1).sum() == 27 and (out == 2).sum() == 0
    assert labels[7, 7, 7] == 2  # input unchanged


def test_remove_all_but_largest_per_class():
    labels = _two_blobs()
    out = remove_all_but_largest_component(labels, [1])
    assert (out == 1).sum() == 27
    assert (out == 2).sum() == 8  # other classes untouched
    out2 = remove_all_but_largest_component(labels, [2])
    np.testing.assert_array_equal(out2, labels)  # class 2 has one component
    grouped = remove_all_but_largest_component(labels, [1, 2])
    np.testing.assert_array_equal(grouped, remove_all_but_largest_component(labels))


def test_class_mask_rejects_bad_groups():
    labels = _two_blobs()
    assert class_mask(labels, [1, 2]).sum() == 27 + 8 + 4
    with pytest.raises(ValueError):
        class_mask(labels, [0, 1])
    with pytest.raises(ValueError):
        class_mask(labels, "everything")


def test_rules_json_round_trip_and_apply(tmp_path):
    rules = PostprocessingRules(((1, 2), (1,)), ({"rule": "x", "kept": True},))
    path = tmp_path / "postprocessing.json"
    rules.save(path)
    assert json.loads(path.read_text())["largest_component_groups"] == [[1, 2], [1]]
    assert PostprocessingRules.load(path) == rules
    out = apply_postprocessing(_two_blobs(), rules)
    assert (out == 1).sum() == 27 and (out == 2).sum() == 0
    empty = PostprocessingRules()
    assert empty.is_empty and apply_postprocessing(_two_blobs(), empty) is not None


def test_rules_load_errors_name_the_file(tmp_path):
    with pytest.raises(NNSegError, match="postprocessing.json: missing"):
        PostprocessingRules.load(tmp_path / "postprocessing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 99}))
    with pytest.raises(NNSegError, match="bad.json"):
        PostprocessingRules.load(bad)
    bad.write_text(json.dumps({"version": 1, "largest_component_groups": [[0]]}))
    with pytest.raises(NNSegError, match="bad.json"):
        PostprocessingRules.load(bad)


def test_large_volume_512x512x300():
    """A CT-sized mask: a big block, a smaller block and 1024 isolated single voxels."""
    labels = np.zeros((300, 512, 512), np.uint8)
    labels[20:280, 40:470, 30:500] = 1
    labels[100:110, 490:500, 5:15] = 1
    labels[5, ::16, ::16] = 2
    labels[290, 3::16, 3::16] = 1
    out = remove_all_but_largest_component(labels, "foreground")
    assert (out == 2).sum() == 0
    assert (out > 0).sum() == 260 * 430 * 470
    assert out[105, 495, 10] == 0
    per_class = remove_all_but_largest_component(labels, [2])
    assert (per_class == 2).sum() == 1 and (per_class == 1).sum() == (labels == 1).sum()
