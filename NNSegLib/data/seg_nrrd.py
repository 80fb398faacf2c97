"""Read a 3D Slicer segmentation file (``.seg.nrrd``) without Slicer.

A ``.seg.nrrd`` is an NRRD label map whose header names every segment
(``Segment<i>_Name``, ``Segment<i>_LabelValue``, ``Segment<i>_Layer``). SimpleITK reads the
voxels and hands the header fields over as metadata, so a corrected segmentation saved by
Slicer can be added to a dataset by value *and name* (:mod:`NNSegLib.data.add_case`) on a
machine without Slicer. Overlapping segments (several layers, a 4-D file) are refused: a
training label map holds one label per voxel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from NNSegLib.data.io import Geometry, ImageReadError, image_to_array

SEG_NRRD = ".seg.nrrd"


def is_seg_nrrd(path: Path | str) -> bool:
    """True when ``path`` is named like a Slicer segmentation file."""
    return Path(path).name.lower().endswith(SEG_NRRD)


def segment_label_names(metadata: dict[str, str], path: Path | str = "<file>"
                        ) -> dict[int, str]:
    """``{label value: segment name}`` from ``.seg.nrrd`` header fields.

    Raises:
        ImageReadError: when segments lie in more than one layer, two segments share a
            value, or a segment's label value is not an integer.
    """
    names: dict[int, str] = {}
    layers: set[str] = set()
    i = 0
    while f"Segment{i}_Name" in metadata or f"Segment{i}_ID" in metadata:
        name = metadata.get(f"Segment{i}_Name") or metadata.get(f"Segment{i}_ID", f"segment{i}")
        layers.add(metadata.get(f"Segment{i}_Layer", "0").strip())
        text = metadata.get(f"Segment{i}_LabelValue", str(i + 1)).strip()
        try:
            value = int(text)
        except ValueError:
            raise ImageReadError(f"{path}: segment '{name}' has label value {text!r}, not an "
                                 "integer") from None
        if value in names:
            raise ImageReadError(f"{path}: segments '{names[value]}' and '{name}' share label "
                                 f"value {value}")
        names[value] = name.strip()
        i += 1
    if len(layers) > 1:
        raise ImageReadError(f"{path}: segments overlap ({len(layers)} layers); a training label "
                             "map needs one label per voxel: remove the overlaps in Slicer "
                             "(Segment Editor → Logical operators) and save again")
    return names


def read_seg_nrrd(path: Path | str) -> tuple[np.ndarray, Geometry, dict[int, str]]:
    """Read a single-layer ``.seg.nrrd``: labels ``(z, y, x)``, geometry, ``{value: name}``.

    Raises:
        ImageReadError: unreadable file, overlapping segments, or voxel values no segment
            declares.
    """
    import SimpleITK as sitk

    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ImageReadError(f"{path}: unreadable segmentation file ({e})") from e
    metadata = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()}
    names = segment_label_names(metadata, path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{path}: {image.GetNumberOfComponentsPerPixel()} layers of "
                             "overlapping segments; remove the overlaps and save again")
    labels, geometry = image_to_array(image, path)
    present = {int(v) for v in np.unique(labels)} - {0}
    unnamed = sorted(present - set(names))
    if unnamed:
        raise ImageReadError(f"{path}: voxel values {unnamed} belong to no segment")
    return labels, geometry, names


__all__ = ["SEG_NRRD", "is_seg_nrrd", "read_seg_nrrd", "segment_label_names"]
