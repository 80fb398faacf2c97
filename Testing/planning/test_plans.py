from __future__ import annotations

import pytest

from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans, apply_overrides


def _plans() -> Plans:
    cfg = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres",
        spacing=(1.0, 1.0, 1.0), median_shape=(36, 50, 35), patch_size=(40, 56, 40),
        batch_size=2, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)),
        kernel_sizes=((3, 3, 3),) * 3, features_per_stage=(32, 64, 128),
    )
    return Plans(dataset_name="X", recipe="v2", memory_budget_gb=8.0,
                 channel_names={"0": "MRI"}, labels={"background": 0, "a": 1},
                 intensity_properties={"0": IntensityProperties(1.0, 2.0, 0.0, 3.0)},
                 configurations={"3d_fullres": cfg})


def test_json_round_trip(tmp_path):
    plans = _plans()
    plans.save(tmp_path / "plans.json")
    again = Plans.load(tmp_path / "plans.json")
    assert again == plans
    assert again.configuration("3d_fullres").strides[1] == (2, 2, 2)


def test_overrides_are_recorded():
    plans = apply_overrides(_plans(), ["3d_fullres.batch_size=4", "*.patch_size=[32,48,32]"])
    cfg = plans.configuration("3d_fullres")
    assert cfg.batch_size == 4 and cfg.patch_size == (32, 48, 32)
    assert plans.overrides[0] == {"field": "3d_fullres.batch_size", "old": 2, "new": 4}
    assert Plans.from_dict(plans.to_dict()) == plans


@pytest.mark.parametrize("bad", ["3d_fullres.nope=1", "2d.batch_size=2", "batch_size=2"])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(ValueError):
        apply_overrides(_plans(), [bad])


def test_wrong_version_is_refused():
    d = _plans().to_dict()
    d["version"] = 99
    with pytest.raises(ValueError, match="version"):
        Plans.from_dict(d)


def test_axis_order_round_trip_and_version_1():
    import dataclasses

    plans = dataclasses.replace(_plans(), transpose_forward=(2, 0, 1))
    d = plans.to_dict()
    assert d["version"] == 2 and d["transpose_forward"] == [2, 0, 1]
    assert d["transpose_backward"] == [1, 2, 0] == list(plans.transpose_backward)
    assert Plans.from_dict(d) == plans
    # a plan written before the axis order was recorded reads as the identity
    old = {k: v for k, v in _plans().to_dict().items()
           if k not in ("transpose_forward", "transpose_backward")}
    old["version"] = 1
    assert Plans.from_dict(old).transpose_forward == (0, 1, 2)
    for forward, backward, says in (([0, 0, 1], [0, 1, 2], "not an order"),
                                    ([1, 0, 2], [0, 2, 1], "does not undo")):
        with pytest.raises(ValueError, match=says):
            Plans.from_dict(dict(d, transpose_forward=forward, transpose_backward=backward))
