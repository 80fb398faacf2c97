"""Segment volumes of the scene in this process (scripts, tests).

:func:`segment_in_process` loads a model and calls :func:`predict_volumes`, which takes any
predictor. The Slicer module segments through an ``nnseg predict`` job instead, so it stays
responsive: see :mod:`NNSegLib.slicer.segment_run`. Never imports ``slicer``: nodes are
converted by :mod:`NNSegLib.slicer.scene.mrml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.inference.uncertainty import normalized_entropy
from NNSegLib.slicer.scene import mrml
from NNSegLib.util.errors import NNSegError


def predict_volumes(
    scene: Any,
    volumes: Sequence[Any],
    predictor: Callable[[np.ndarray, Geometry], tuple[np.ndarray, np.ndarray | None]],
    label_names: dict[int, str],
    model_info: dict[str, str] | None = None,
    node: Any = None,
    uncertainty: bool = False,
    name: str | None = None,
) -> tuple[Any, Any]:
    """Segment channel volumes in-process and put the result in a segmentation node.

    Args:
        scene: The MRML scene.
        volumes: One volume node per channel (same geometry).
        predictor: ``f(images (C, z, y, x) float32, geometry) -> (labels, probabilities)``
            such as ``functools.partial(NNSegLib.inference.predict.predict_array, model=...)``.
        label_names: ``{value: name}`` of the model.
        model_info: Tags (``name``, ``version``).
        node: Segmentation node to fill, new if ``None``.
        uncertainty: Also create a normalized-entropy volume from the probabilities.
        name: Name of a new segmentation node.

    Returns:
        ``(segmentation node, uncertainty volume node or None)``.
    """
    arrays = []
    geometry = None
    for v in volumes:
        array, geo = mrml.array_from_volume_node(v)
        if geometry is not None and geometry.mismatch(geo):
            raise NNSegError(f"{mrml.node_label(v)}: geometry differs from the first channel: "
                             f"{geometry.mismatch(geo)}")
        geometry = geometry or geo
        arrays.append(array.astype(np.float32, copy=False))
    if geometry is None:
        raise NNSegError("no input volume given")
    labels, probabilities = predictor(np.stack(arrays), geometry)
    base = name or f"{volumes[0].GetName()} segmentation"
    seg = mrml.segmentation_from_labels(scene, np.asarray(labels), geometry, label_names,
                                        reference_volume=volumes[0], model_info=model_info,
                                        node=node, name=base)
    unc = None
    if uncertainty and probabilities is not None:
        unc = mrml.volume_node_from_array(scene, normalized_entropy(probabilities),
                                          geometry, f"{base} uncertainty")
    return seg, unc


def model_tags(model_path: Path | str) -> dict[str, str]:
    """Tags of a model's results: its ``name`` and ``version`` (``v<N>``, see
    :meth:`~NNSegLib.util.model_folder.ModelFolder.identity`) and NNSeg's ``software``
    version."""
    from NNSegLib import __version__
    from NNSegLib.util.model_folder import ModelFolder

    return {**ModelFolder(Path(str(model_path))).identity(), "software": __version__}


def segment_in_process(
    scene: Any,
    volumes: Sequence[Any],
    model_path: Path | str,
    device: str = "auto",
    tta: bool = True,
    folds: str = "",
    node: Any = None,
    uncertainty: bool = False,
) -> tuple[Any, Any]:
    """Load a model and segment channel volumes with it in this process (blocking).

    Args:
        scene: The MRML scene.
        volumes: One volume node per channel of the model.
        model_path: Model folder (NNSeg or nnU-Net v2 results) as
            :func:`~NNSegLib.inference.model_loader.load_model` takes it; its name and
            version become the segments' tags (:func:`model_tags`).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        tta: Mirror test-time augmentation.
        folds: Folds to use as typed in the GUI (``"0-2,4"``); all when empty.
        node: Segmentation node to fill, new if ``None``.
        uncertainty: Also create the normalized-entropy volume.

    Returns:
        ``(segmentation node, uncertainty volume node or None)``.
    """
    from NNSegLib.data.splits import parse_folds
    from NNSegLib.inference.model_loader import load_model
    from NNSegLib.inference.predict import predict_array

    chosen = [str(f) for f in parse_folds(folds)] or None
    model = load_model(model_path, folds=chosen, device=device, tta=tta)

    def predictor(images, geometry):
        return predict_array(images, geometry, model, tta=tta,
                             return_probabilities=uncertainty)

    labels = {v: k for k, v in model.labels.items()}
    return predict_volumes(scene, volumes, predictor, labels, model_tags(model_path),
                           node=node, uncertainty=uncertainty)


__all__ = ["model_tags", "predict_volumes", "segment_in_process"]
