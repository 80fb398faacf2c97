"""nnU-Net v2's preprocessing and export of one case, for imported nnU-Net models.

Used by :func:`NNSegLib.inference.nnunet_model.load_nnunet_model`: an nnU-Net v2 model folder is run
through :class:`NNUNetPipeline`, which reproduces ``nnUNetv2_predict``'s own case pipeline so
that label maps agree with nnU-Net's:

- preprocessing in nnU-Net's order: transpose, crop to the hole-filled nonzero box,
  normalize (before resampling, :data:`NORMALIZERS`), resample (spline order 3 with edge
  mode and clipping to the input range, the anisotropic axis separately with order 0), see
  :func:`resample_like_nnunet` and :func:`separate_z_axis`; label maps are resized label by
  label (:func:`resize_segmentation`);
- export: averaged logits are resampled back (order 1, class by class), then
  softmax/argmax, then uncropped and transposed back.

NNSeg's own preprocessing (``preprocess.py``, ``resample.py``, ``normalize.py``) is separate;
nnunetv2 itself is never imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from scipy import ndimage

from NNSegLib.planning.plans import Plans
from NNSegLib.util.errors import NNSegError

if TYPE_CHECKING:
    from NNSegLib.data.io import Geometry

ANISOTROPY_THRESHOLD = 3.0


# --- resampling and normalization as nnU-Net does them --------------------------------------

def _resize(image: np.ndarray, new_shape: Sequence[int], order: int) -> np.ndarray:
    """Spline resize with voxel-centre alignment, edge replication, clipped to the input range."""
    image = np.asarray(image, dtype=np.float64)
    zoom = [1.0 / (s / n) for s, n in zip(image.shape, new_shape)]
    out = ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)
    if tuple(out.shape) != tuple(new_shape):
        raise NNSegError(f"internal resize error: {out.shape} != {tuple(new_shape)}")
    if order > 0:
        np.clip(out, image.min(), image.max(), out=out)
    return out


def separate_z_axis(current: Sequence[float], new: Sequence[float],
                    force: bool | None = None) -> int | None:
    """nnU-Net's choice of the axis resampled on its own (``None``: resample jointly)."""
    def lowres(spacing: Sequence[float]) -> int | None:
        sp = np.asarray(spacing, dtype=np.float64)
        axes = np.where(sp.max() / sp == 1)[0]
        return int(axes[0]) if len(axes) == 1 else None

    def anisotropic(spacing: Sequence[float]) -> bool:
        return np.max(spacing) / np.min(spacing) > ANISOTROPY_THRESHOLD

    if force is not None:
        return lowres(current) if force else None
    if anisotropic(current):
        return lowres(current)
    if anisotropic(new):
        return lowres(new)
    return None


def _along_axis(volume: np.ndarray, new_shape: Sequence[int], axis: int,
                order: int, order_z: int) -> np.ndarray:
    in_plane = [s for i, s in enumerate(new_shape) if i != axis]
    moved = np.moveaxis(volume, axis, 0)
    planes = np.stack([_resize(plane, in_plane, order) for plane in moved])
    planes = np.moveaxis(planes, 0, axis)
    if planes.shape[axis] == new_shape[axis]:
        return planes
    grids = np.meshgrid(*[(np.arange(n) + 0.5) * (s / n) - 0.5
                          for s, n in zip(planes.shape, new_shape)], indexing="ij")
    return ndimage.map_coordinates(planes, np.stack(grids), order=order_z, mode="nearest")


def resample_like_nnunet(data: np.ndarray, new_shape: Sequence[int],
                         current_spacing: Sequence[float], new_spacing: Sequence[float],
                         order: int = 3, order_z: int = 0,
                         force_separate_z: bool | None = None) -> np.ndarray:
    """Resample ``(C, z, y, x)`` data channel by channel the way nnU-Net v2 does by default.

    Returns the input unchanged when the shape does not change; otherwise float32 (or the
    input's float dtype) computed in float64.
    """
    new_shape = tuple(int(v) for v in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data
    axis = separate_z_axis(current_spacing, new_spacing, force_separate_z)
    out = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        if axis is None:
            out[c] = _resize(data[c], new_shape, order)
        else:
            out[c] = _along_axis(np.asarray(data[c], np.float64), new_shape, axis, order,
                                 order_z)
    return out


def _zscore(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    if mask is not None:
        mean, std = image[mask].mean(), image[mask].std()
        image[mask] = (image[mask] - mean) / max(std, 1e-8)
        return image
    mean, std = image.mean(), image.std()
    image -= mean
    image /= max(std, 1e-8)
    return image


def _ct(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    np.clip(image, props["percentile_00_5"], props["percentile_99_5"], out=image)
    image -= props["mean"]
    image /= max(props["std"], 1e-8)
    return image


def _rescale01(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    image -= image.min()
    image /= np.clip(image.max(), a_min=1e-8, a_max=None)
    return image


def _rgb01(image: np.ndarray, mask: np.ndarray | None, props: dict) -> np.ndarray:
    return image / 255.0


#: nnU-Net normalization scheme name → function(image, mask or None, intensity properties).
NORMALIZERS: dict[str, Callable[[np.ndarray, Any, dict], np.ndarray]] = {
    "ZScoreNormalization": _zscore,
    "CTNormalization": _ct,
    "NoNormalization": lambda image, mask, props: image,
    "RescaleTo01Normalization": _rescale01,
    "RGBTo01Normalization": _rgb01,
}


def resize_segmentation(seg: np.ndarray, new_shape: Sequence[int], order: int = 1) -> np.ndarray:
    """Label map resize as nnU-Net does: per label, interpolate its mask, threshold at 0.5."""
    if tuple(seg.shape) == tuple(new_shape):
        return seg
    if order == 0:
        return _resize(seg.astype(np.float64), new_shape, 0).astype(seg.dtype)
    out = np.zeros(tuple(new_shape), dtype=seg.dtype)
    for value in np.unique(seg):
        out[_resize((seg == value).astype(np.float64), new_shape, order) >= 0.5] = value
    return out


# --- the case pipeline --------------------------------------------------------------------

class NNUNetPipeline:
    """nnU-Net v2's preprocessing and export for one configuration (see the module doc)."""

    output = "logits"

    def __init__(self, raw_plans: dict, cfg: dict, plans: Plans) -> None:
        self.transpose_forward = [int(v) for v in raw_plans.get("transpose_forward", [0, 1, 2])]
        self.transpose_backward = [int(v) for v in raw_plans.get("transpose_backward",
                                                                 [0, 1, 2])]
        self.cfg = cfg
        self.intensity = raw_plans.get("foreground_intensity_properties_per_channel", {})
        self.num_classes = plans.num_classes
        for scheme in cfg.get("normalization_schemes", []):
            if scheme not in NORMALIZERS:
                raise NNSegError(f"normalization {scheme!r} is not supported "
                                 f"(known: {sorted(NORMALIZERS)})")

    def _target_spacing(self, spacing: Sequence[float]) -> list[float]:
        target = [float(v) for v in self.cfg["spacing"]]
        return target if len(target) == 3 else [float(spacing[0]), *target]

    def _normalize(self, data: np.ndarray, nonzero: np.ndarray) -> np.ndarray:
        for c in range(data.shape[0]):
            scheme = self.cfg["normalization_schemes"][c]
            use_mask = bool(self.cfg.get("use_mask_for_norm", [False] * data.shape[0])[c])
            mask = nonzero if use_mask and scheme == "ZScoreNormalization" else None
            data[c] = NORMALIZERS[scheme](data[c], mask, self.intensity.get(str(c), {}))
        return data

    def preprocess(self, images: np.ndarray, geometry: Geometry, seg: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """Return ``(data, seg or None, properties)`` on nnU-Net's preprocessed grid."""
        tf = self.transpose_forward
        data = np.asarray(images, dtype=np.float32).transpose([0, *[i + 1 for i in tf]]).copy()
        spacing = [float(geometry.spacing[i]) for i in tf]
        shape_before = tuple(data.shape[1:])
        mask = ndimage.binary_fill_holes(np.any(data != 0, axis=0))
        box = _bbox(mask)
        data = data[tuple([slice(None), *box])]
        mask = mask[box]
        target = self._target_spacing(spacing)
        new_shape = [int(round(s / t * n)) for s, t, n in zip(spacing, target, data.shape[1:])]
        data = self._normalize(data, mask)
        kwargs = self.cfg.get("resampling_fn_data_kwargs", {})
        data = resample_like_nnunet(data, new_shape, spacing, target, int(kwargs.get("order", 3)),
                                    int(kwargs.get("order_z", 0)), kwargs.get("force_separate_z"))
        if seg is not None:
            seg = np.asarray(seg)
            seg = seg.reshape(seg.shape[-3:])
            seg = seg.transpose(tf)[box].astype(np.int16)
            seg[(seg == 0) & ~mask] = -1
            seg = resize_segmentation(seg, new_shape, int(
                self.cfg.get("resampling_fn_seg_kwargs", {}).get("order", 1)))[None]
        properties = {"shape_before_cropping": list(shape_before),
                      "bbox": [[s.start, s.stop] for s in box],
                      "shape_after_crop": list(mask.shape), "spacing": spacing,
                      "shape_after_resample": list(new_shape)}
        return data, seg, properties

    def _logits_on_crop(self, logits: Any, properties: dict) -> np.ndarray:
        logits = logits.numpy() if hasattr(logits, "numpy") else np.asarray(logits)
        kwargs = self.cfg.get("resampling_fn_probabilities_kwargs", {})
        spacing = properties["spacing"]
        return resample_like_nnunet(logits, properties["shape_after_crop"],
                                    self._target_spacing(spacing), spacing,
                                    int(kwargs.get("order", 1)), int(kwargs.get("order_z", 0)),
                                    kwargs.get("force_separate_z"))

    def _uncrop(self, array: np.ndarray, properties: dict, fill_background: bool) -> np.ndarray:
        lead = array.shape[:-3]
        out = np.zeros((*lead, *properties["shape_before_cropping"]), dtype=array.dtype)
        if fill_background:
            out[0] = 1
        region: tuple = (Ellipsis, *[slice(a, b) for a, b in properties["bbox"]])
        out[region] = array
        axes = [i + len(lead) for i in self.transpose_backward]
        return out.transpose([*range(len(lead)), *axes])

    def restore_labels(self, logits: Any, properties: dict) -> np.ndarray:
        """Averaged logits → label map on the original grid."""
        labels = np.argmax(self._logits_on_crop(logits, properties), axis=0)
        dtype = np.uint8 if self.num_classes <= 256 else np.uint16
        return self._uncrop(labels.astype(dtype), properties, False)

    def restore_probabilities(self, logits: Any, properties: dict) -> np.ndarray:
        """Averaged logits → softmax probabilities ``(K, z, y, x)`` on the original grid."""
        import torch

        crop = torch.from_numpy(np.ascontiguousarray(self._logits_on_crop(logits, properties)))
        probs = torch.softmax(crop.float(), dim=0).numpy()
        return self._uncrop(probs, properties, True)


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.where(np.any(mask, axis=other))[0]
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


__all__ = [
    "ANISOTROPY_THRESHOLD",
    "NORMALIZERS",
    "NNUNetPipeline",
    "resample_like_nnunet",
    "resize_segmentation",
    "separate_z_axis",
]
