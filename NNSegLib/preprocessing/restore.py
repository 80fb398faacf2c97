"""METHOD §3, inverted: network output on the preprocessed grid back to the original grid.

:func:`restore_to_original` (class probabilities) and :func:`restore_labels` (label map)
undo the resampling, crop and axis transposition of
:func:`NNSegLib.preprocessing.preprocess.preprocess_case` from the properties it returned
(``transpose_forward``; absent in properties made before it was recorded: identity), so the
result is on the original image's grid, in its own axis order. Both resample class by class
(numpy with SciPy, torch tensors on their own device) so at most one extra full-size class
map exists at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.planning.plans import ConfigurationPlan
from NNSegLib.preprocessing.resample import resample_torch, resample_volume
from NNSegLib.util.errors import NNSegError


# --- back to the original grid --------------------------------------------------------
def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _restore_class(volume: Any, properties: dict, order_z: int) -> Any:
    shape = tuple(properties["shape_after_crop"])
    axis = properties.get("separate_axis")
    if _is_torch(volume):
        return resample_torch(volume, shape, axis, order_z)
    return resample_volume(np.asarray(volume, dtype=np.float32), shape, 1, axis, order_z)


def _check_shape(probabilities: Any, properties: dict) -> tuple[int, ...]:
    """The original shape in plan axes (the canvas the crop box refers to)."""
    expected = tuple(properties["shape_after_resample"])
    if tuple(probabilities.shape[1:]) != expected:
        raise NNSegError(f"probabilities of shape {tuple(probabilities.shape[1:])} do not match "
                         f"the preprocessed shape {expected}")
    shape = Geometry.from_dict(properties["original_geometry"]).shape
    return tuple(shape[a] for a in _order(properties))


def _order(properties: dict) -> list[int]:
    return [int(a) for a in properties.get("transpose_forward", range(3))]


def _back(array: np.ndarray, properties: dict) -> np.ndarray:
    """``array`` (spatial axes last, in plan order) in the image's own axis order."""
    backward = [int(i) for i in np.argsort(_order(properties))]
    if backward == sorted(backward):
        return array
    lead = array.ndim - len(backward)
    return np.ascontiguousarray(array.transpose(*range(lead), *[b + lead for b in backward]))


def _box(properties: dict) -> tuple[slice, ...]:
    return tuple(slice(lo, hi) for lo, hi in properties["bbox"])


def restore_to_original(probabilities: Any, properties: dict,
                        config: ConfigurationPlan | None = None) -> np.ndarray:
    """Class probabilities ``(K, ...)`` on the original grid (background 1 outside the box)."""
    order_z = config.resample_order_z if config is not None else 0
    shape = _check_shape(probabilities, properties)
    out = np.zeros((probabilities.shape[0],) + shape, dtype=np.float32)
    out[0] = 1.0
    box = _box(properties)
    for k in range(probabilities.shape[0]):
        r = _restore_class(probabilities[k], properties, order_z)
        out[k][box] = r.detach().cpu().numpy() if _is_torch(r) else r
    return _back(out, properties)


def restore_labels(probabilities: Any, properties: dict,
                   config: ConfigurationPlan | None = None) -> np.ndarray:
    """Label map on the original grid: running argmax over classes resampled one by one."""
    order_z = config.resample_order_z if config is not None else 0
    shape = _check_shape(probabilities, properties)
    best = _restore_class(probabilities[0], properties, order_z)
    best = best.clone() if _is_torch(best) else best.copy()
    labels = best.new_zeros(best.shape, dtype=_torch_int16()) if _is_torch(best) \
        else np.zeros(best.shape, np.int16)
    for k in range(1, probabilities.shape[0]):
        r = _restore_class(probabilities[k], properties, order_z)
        better = r > best
        labels[better] = k
        best[better] = r[better]
    if _is_torch(labels):
        labels = labels.cpu().numpy()  # type: ignore[union-attr]  # a tensor here
    dtype = np.uint8 if probabilities.shape[0] <= 256 else np.int16
    out = np.zeros(shape, dtype=dtype)
    out[_box(properties)] = labels
    return _back(out, properties)


def _torch_int16():
    import torch

    return torch.int16


__all__ = ["restore_labels", "restore_to_original"]
