"""METHOD §3: crop, normalize, resample and store each case (``nnseg preprocess``).

Per case: crop to the nonzero box of all channels (:mod:`.cropping`), normalize
per channel (:mod:`.normalize`; statistics from the original voxels, so no
interpolated value takes part), resample to the configuration's spacing
(:mod:`.resample`; skipped when the shape would not change, e.g. Hippocampus at
1 mm), and store per the contract in ``NNSegLib/README.md``::

    preprocessed/<data_identifier>/<case>.npy         float32 (C, z, y, x)
    preprocessed/<data_identifier>/<case>_seg.npy     int8    (1, z, y, x)
    preprocessed/<data_identifier>/<case>_locs.npz    class_<k>: int32 (N, 3)
    preprocessed/<data_identifier>/<case>.json        properties (written last = done)
    preprocessed/<data_identifier>/dataset_properties.json

Configurations sharing a ``data_identifier`` (``2d``, ``3d_fullres``,
``3d_cascade_fullres``) are written once; each case is read once for all identifiers.
Cases run in a process pool (``fork`` where available; workers import no torch), every
file is written atomically (:mod:`.case_files`) and finished cases are skipped unless
``--overwrite``, the plan's preprocessing settings changed, or one of the case's raw files
changed (each case's properties record the size and modification time of its source
files). One process at a
time preprocesses a folder (:mod:`NNSegLib.util.locking`); the size a case would have after
resampling is checked before resampling it. Adding cases to a dataset (``nnseg add-case``,
METHOD §8) therefore preprocesses only the new and replaced ones.

Before cropping, each case is transposed to the plan's axis order
(``Plans.transpose_forward``: the coarsest axis first, METHOD §2), so the stored arrays, the
crop box and the shapes in the properties are in plan axes; the properties keep the
original geometry and the order. Inference uses :func:`preprocess_case` and, to go back,
:func:`restore_to_original` and :func:`restore_labels` (:mod:`.restore`), which also
transpose back.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from NNSegLib.data.io import Geometry
from NNSegLib.planning.plans import ConfigurationPlan, Plans
from NNSegLib.preprocessing.case_files import case_done, source_stamps, write_case
from NNSegLib.preprocessing.cropping import bbox_of, crop, nonzero_mask
from NNSegLib.preprocessing.normalize import normalize
from NNSegLib.preprocessing.resample import (
    compute_new_shape,
    resample_images,
    resample_labels,
    separate_axis,
)
from NNSegLib.preprocessing.restore import restore_labels, restore_to_original
from NNSegLib.util import options
from NNSegLib.util.command_line import many, option, switch
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.progress import Progress


def _config(plans: Plans, config: ConfigurationPlan | str) -> ConfigurationPlan:
    return plans.configuration(config) if isinstance(config, str) else config


def _labels_to_int8(seg: np.ndarray, num_classes: int) -> np.ndarray:
    rounded = np.rint(seg) if np.issubdtype(seg.dtype, np.floating) else seg
    if rounded.size and (rounded.min() < 0 or rounded.max() >= num_classes):
        raise NNSegError(
            f"label values {sorted(np.unique(rounded).astype(int).tolist())[:10]} outside "
            f"0..{num_classes - 1} declared in dataset.json"
        )
    if num_classes > 127:
        raise NNSegError(f"{num_classes} classes do not fit the int8 label arrays (max 127)")
    return rounded.astype(np.int8)


def preprocess_case(
    images: np.ndarray,
    geometry: Geometry,
    plans: Plans,
    config: ConfigurationPlan | str,
    seg: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Crop, normalize and resample one case for ``config``.

    Args:
        images: ``(C, z, y, x)`` (a 3D array is taken as one channel).
        geometry: The images' geometry (``geometry.shape`` = spatial shape).
        plans: The plan (intensity statistics, classes).
        config: Configuration or its name.
        seg: Optional label map ``(z, y, x)`` or ``(1, z, y, x)`` on the same grid.

    Returns:
        ``data`` float32 ``(C, z, y, x)``, ``seg`` int8 ``(1, z, y, x)`` or ``None``, and the
        properties dict needed by :func:`restore_to_original`.
    """
    cfg = _config(plans, config)
    order = tuple(plans.transpose_forward)
    images = _transposed(_as_channels(images, geometry), order)
    spacing = _spacing_in(geometry, order)
    bbox, crop_shape, new_shape, axis = _target_grid(images, spacing, cfg)
    data = crop(images, bbox)
    mask = nonzero_mask(data) if any(cfg.use_mask_for_norm) else None
    data = normalize(data, cfg.normalization, cfg.use_mask_for_norm, plans.intensity_properties,
                     mask)
    if seg is not None:
        seg = _labels_to_grid(seg, geometry, order, bbox, new_shape, axis, cfg,
                              plans.num_classes)
    if new_shape != crop_shape:
        data = resample_images(data, new_shape, cfg.resample_order_image, axis,
                               cfg.resample_order_z)
    properties = {
        "original_geometry": geometry.to_dict(),
        "transpose_forward": list(order),
        "bbox": bbox,
        "shape_after_crop": list(crop_shape),
        "shape_after_resample": list(new_shape),
        "spacing": list(cfg.spacing),
        "separate_axis": axis,
        "data_identifier": cfg.data_identifier,
    }
    return data, (seg[None] if seg is not None else None), properties


def preprocess_labels(seg: np.ndarray, images: np.ndarray, geometry: Geometry, plans: Plans,
                      config: ConfigurationPlan | str) -> np.ndarray:
    """A label map on the grid :func:`preprocess_case` gives ``images`` (no image work).

    Used to hand a cascade's full-resolution stage the low-resolution prediction exactly as
    inference does (``preprocess_case(images, geometry, plans, config, seg=...)``), without
    normalizing or resampling the images.

    Returns:
        int8 ``(1, z, y, x)``.
    """
    cfg = _config(plans, config)
    order = tuple(plans.transpose_forward)
    images = _transposed(_as_channels(images, geometry), order)
    bbox, _crop_shape, new_shape, axis = _target_grid(images, _spacing_in(geometry, order), cfg)
    return _labels_to_grid(seg, geometry, order, bbox, new_shape, axis, cfg,
                           plans.num_classes)[None]


def _as_channels(images: np.ndarray, geometry: Geometry) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if tuple(images.shape[1:]) != tuple(geometry.shape):
        raise NNSegError(f"image shape {images.shape[1:]} != geometry shape {geometry.shape}")
    return images


def _transposed(array: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """``(C, …)`` with its spatial axes in plan ``order`` (a view; a no-op for identity)."""
    return array.transpose(0, *[a + 1 for a in order])


def _spacing_in(geometry: Geometry, order: Sequence[int]) -> tuple[float, ...]:
    return tuple(float(geometry.spacing[a]) for a in order)


def _target_grid(images: np.ndarray, spacing: Sequence[float], cfg: ConfigurationPlan
                 ) -> tuple[list[list[int]], tuple[int, ...], tuple[int, ...], int | None]:
    """Crop box, cropped shape, resampled shape and separate (anisotropic) axis of a case
    (``images`` and ``spacing`` in plan axes)."""
    from NNSegLib.util.device import case_memory_problem

    bbox = bbox_of(nonzero_mask(images))
    crop_shape = tuple(int(hi - lo) for lo, hi in bbox)
    new_shape = tuple(compute_new_shape(crop_shape, spacing, cfg.spacing))
    problem = case_memory_problem(new_shape, images.shape[0],
                                  f"resampled from spacing {tuple(spacing)} to "
                                  f"{tuple(cfg.spacing)}, the case")
    if problem:
        raise NNSegError(f"{problem}; check the spacing in the file header")
    axis = None
    if new_shape != crop_shape:
        axis = separate_axis(spacing, cfg.spacing, cfg.anisotropy_axis)
    return bbox, crop_shape, new_shape, axis


def _labels_to_grid(seg: np.ndarray, geometry: Geometry, order: Sequence[int],
                    bbox: list[list[int]], new_shape: tuple[int, ...], axis: int | None,
                    cfg: ConfigurationPlan, num_classes: int) -> np.ndarray:
    """Transpose, crop, check and resample a label map ``(z, y, x)`` (or ``(1, z, y, x)``)
    → int8 in plan axes."""
    seg = np.asarray(seg)
    seg = seg[0] if seg.ndim == 4 else seg
    if tuple(seg.shape) != tuple(geometry.shape):
        raise NNSegError(f"label shape {seg.shape} != image shape {geometry.shape}")
    seg = _labels_to_int8(crop(np.ascontiguousarray(seg.transpose(order)), bbox), num_classes)
    if tuple(new_shape) != tuple(seg.shape):
        seg = resample_labels(seg, new_shape, cfg.resample_order_label, axis,
                              cfg.resample_order_z)
    return seg


# --- the whole dataset -----------------------------------------------------------------
PREPROCESSING_FIELDS = ("spacing", "normalization", "use_mask_for_norm", "anisotropy_axis",
                        "resample_order_image", "resample_order_label", "resample_order_z")


def preprocessing_key(plans: Plans, cfg: ConfigurationPlan) -> dict[str, Any]:
    """Everything that determines a configuration's preprocessed data (the axis order only
    when it is not the identity, so data made before it was recorded stays valid)."""
    key: dict[str, Any] = {f: _jsonable(getattr(cfg, f)) for f in PREPROCESSING_FIELDS}
    if tuple(plans.transpose_forward) != (0, 1, 2):
        key["transpose_forward"] = list(plans.transpose_forward)
    if "ct" in cfg.normalization:
        key["intensity_properties"] = {
            k: [v.mean, v.std, v.percentile_00_5, v.percentile_99_5]
            for k, v in sorted(plans.intensity_properties.items())
        }
    return key


def _jsonable(v: Any) -> Any:
    return [_jsonable(x) for x in v] if isinstance(v, (list, tuple)) else v


def group_by_data(plans: Plans, configurations: Sequence[str]) -> dict[str, ConfigurationPlan]:
    """data_identifier → one configuration that produces it (others must agree)."""
    groups: dict[str, ConfigurationPlan] = {}
    for name in configurations:
        cfg = plans.configuration(name)
        first = groups.setdefault(cfg.data_identifier, cfg)
        if preprocessing_key(plans, first) != preprocessing_key(plans, cfg):
            raise NNSegError(
                f"configurations {first.name!r} and {name!r} share data_identifier "
                f"{cfg.data_identifier!r} but preprocess differently; give one its own"
            )
    return groups


def _process_case(task: tuple) -> str:
    """Pool job: read one case once, write it for every data identifier it lacks."""
    import SimpleITK as sitk

    from NNSegLib.data.io import SimpleITKIO, read_channels

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)   # parallel over cases instead
    identifier, image_paths, label_path, targets, plans, sources = task
    images, geometry = read_channels([Path(p) for p in image_paths])
    seg = None
    if label_path is not None:
        seg, label_geo = SimpleITKIO().read(Path(label_path))
        problem = geometry.mismatch(label_geo)
        if problem:
            raise NNSegError(f"{label_path}: label geometry differs from the image: {problem}")
    for folder, cfg in targets:
        try:
            data, s, props = preprocess_case(images, geometry, plans, cfg, seg)
        except NNSegError as e:
            raise NNSegError(f"case {identifier} ({label_path or image_paths[0]}): {e}") from None
        write_case(Path(folder), identifier, data, s, props, plans.num_classes, sources)
    return identifier


def _prepare_folder(folder: Path, key: dict, configs: list[str], overwrite: bool,
                    progress: Any) -> bool:
    """Write the pending summary; returns True when existing cases must be redone."""
    from NNSegLib.util.atomic import write_json
    from NNSegLib.util.json_files import read_json

    summary_path = folder / "dataset_properties.json"
    redo = overwrite
    if not redo and summary_path.is_file():
        if read_json(summary_path).get("preprocessing") != key:
            progress.message(f"{folder}: plan changed since the last run; redoing every case")
            redo = True
    write_json(summary_path, {"data_identifier": folder.name, "configurations": configs,
                              "preprocessing": key, "complete": False})
    return redo


def preprocess_dataset(
    dataset: Path,
    workspace: Any,
    plans: Plans,
    configurations: Sequence[str] | None = None,
    workers: int = 2,
    overwrite: bool = False,
    progress: Any = None,
) -> dict[str, dict]:
    """Preprocess every labelled training case for ``configurations`` (default: all).

    Holds the lock of every preprocessed folder it writes (another ``nnseg preprocess`` of
    the same configuration is refused, naming its PID).

    Returns:
        data_identifier → the summary written to its ``dataset_properties.json``.
    """
    from contextlib import ExitStack

    from NNSegLib.data.dataset import list_cases, load_dataset_json
    from NNSegLib.util.atomic import clean_stale_temps, write_json
    from NNSegLib.util.locking import folder_lock

    progress = progress or Progress()
    spec = load_dataset_json(dataset)
    cases = [c for c in list_cases(spec) if c.label is not None]
    if not cases:
        raise NNSegError(f"{spec.root}: no labelled training cases in imagesTr/labelsTr")
    names = list(configurations) if configurations else list(plans.configurations)
    groups = group_by_data(plans, names)
    folders = {ident: workspace.preprocessed(ident) for ident in groups}
    with ExitStack() as locks:
        for ident, folder in folders.items():
            locks.enter_context(folder_lock(folder, f"nnseg preprocess {ident}"))
            clean_stale_temps(folder)
        tasks = _plan_tasks(cases, plans, names, groups, folders, overwrite, progress)
        _run_tasks(tasks, workers, progress)
        summaries = {}
        for ident, cfg in groups.items():
            summaries[ident] = {
                "data_identifier": ident,
                "configurations": [n for n in names
                                   if plans.configuration(n).data_identifier == ident],
                "preprocessing": preprocessing_key(plans, cfg),
                "num_channels": plans.num_channels, "num_classes": plans.num_classes,
                "num_cases": len(cases), "cases": [c.identifier for c in cases],
                "complete": True,
            }
            write_json(folders[ident] / "dataset_properties.json", summaries[ident])
    return summaries


def _plan_tasks(cases: Sequence[Any], plans: Plans, names: list[str],
                groups: dict[str, ConfigurationPlan], folders: dict[str, Path], overwrite: bool,
                progress: Any) -> list[tuple]:
    """One task per case that some data identifier lacks (or has from changed files)."""
    redo = {}
    for ident, cfg in groups.items():
        configs = [n for n in names if plans.configuration(n).data_identifier == ident]
        redo[ident] = _prepare_folder(folders[ident], preprocessing_key(plans, cfg), configs,
                                      overwrite, progress)
    tasks, changed = [], 0
    for case in cases:
        sources = source_stamps([*case.images, case.label])
        targets, was_changed = [], False
        for ident, cfg in groups.items():
            if redo[ident] or not case_done(folders[ident], case.identifier):
                targets.append((str(folders[ident]), cfg))
            elif not case_done(folders[ident], case.identifier, sources):
                targets.append((str(folders[ident]), cfg))
                was_changed = True
        changed += was_changed
        if targets:
            tasks.append((case.identifier, [str(p) for p in case.images], str(case.label),
                          targets, plans, sources))
    skipped = len(cases) - len(tasks)
    if changed:
        progress.message(f"{changed} preprocessed case(s) have raw files that changed since "
                         "(size or modification time); redoing them", level="warning")
    if skipped:
        progress.message(f"{skipped} of {len(cases)} cases already preprocessed; skipping them")
    return tasks


def _run_tasks(tasks: list, workers: int, progress: Any) -> None:
    from NNSegLib.util.parallel import map_ordered

    map_ordered(_process_case, [(task,) for task in tasks], workers, progress, "preprocess")


# --- CLI -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="raw dataset folder (nnU-Net v2 layout)")
    parser.add_argument("--work", type=Path, default=None,
                        help="work folder (default ./nnseg_work/<dataset folder name>)")
    parser.add_argument("--configurations", nargs="+", default=None,
                        help="configurations to preprocess (default: all in plans.json)")
    parser.add_argument("--workers", type=options.positive_int, default=2,
                        help="worker processes (default 2; 1 = in this process)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo cases that are already preprocessed")


def preprocess_argv(dataset: Path | str, work: Path | str | None = None,
                    configurations: Sequence[str] = (), workers: int | None = None,
                    overwrite: bool = False) -> list[str]:
    """``nnseg preprocess`` as an argument list."""
    return ["preprocess", str(dataset), *option("--work", work),
            *many("--configurations", configurations), *option("--workers", workers),
            *switch("--overwrite", overwrite)]


def run(args: argparse.Namespace, progress: Progress) -> int:
    from NNSegLib.util.workspace import Workspace

    ws = Workspace.for_dataset(args.dataset, args.work)
    if not ws.plans.is_file():
        raise NNSegError(f"{ws.plans}: no plan; run `nnseg plan` first")
    for warning in ws.stale_inputs(args.dataset):
        progress.message(warning, level="warning")
    try:
        plans = Plans.load(ws.plans)
    except ValueError as e:
        raise NNSegError(str(e)) from e
    if args.configurations:
        for name in args.configurations:
            if name not in plans.configurations:
                raise NNSegError(f"configuration {name!r} is not in {ws.plans}; it has "
                                 f"{sorted(plans.configurations)}")
    try:
        summaries = preprocess_dataset(args.dataset, ws, plans, args.configurations,
                                       args.workers, args.overwrite, progress)
    finally:
        progress.close()
    for ident, s in summaries.items():
        used_by = ", ".join(s["configurations"])
        print(f"{ws.preprocessed(ident)}: {s['num_cases']} cases for {used_by}")
    return 0


__all__ = ["preprocess_argv",
    "add_arguments",
    "group_by_data",
    "preprocess_dataset",
    "preprocessing_key",
    "run",
    "preprocess_case",
    "restore_labels",
    "restore_to_original",
]

