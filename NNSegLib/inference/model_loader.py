"""Load a trained model for inference: one entry point over both kinds of model folder.

:func:`load_model` takes an NNSeg model folder (:mod:`.nnseg_model`) or an nnU-Net v2
results folder (:mod:`.nnunet_model`) and returns a :class:`~.loaded_model.LoadedModel`;
when ``find-best`` chose an ensemble of configurations, the members ride along in
:attr:`LoadedModel.ensemble`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from NNSegLib.inference.loaded_model import LoadedModel
from NNSegLib.inference.nnseg_model import load_nnseg_model
from NNSegLib.inference.nnunet_model import load_nnunet_model
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.model_folder import ModelFolder


def is_nnunet_model(model_dir: Path) -> bool:
    """True when ``model_dir`` looks like an nnU-Net v2 results folder."""
    plans = Path(model_dir) / "plans.json"
    if not plans.is_file():
        return False
    try:
        raw = json.loads(plans.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and "plans_name" in raw and "version" not in raw


def load_model(model_dir: Path | str, configuration: str | None = None,
               folds: Sequence[str | int] | None = None, device: Any = "auto",
               tta: bool = True, step: float = 0.5, use_postprocessing: bool = True,
               precision: str = "auto", allow_unfinished: bool = False) -> LoadedModel:
    """Load ``configuration`` (default: see module doc) of a model folder.

    Args:
        model_dir: NNSeg model folder or nnU-Net v2 results folder.
        configuration: Configuration name; ``None`` picks the default.
        folds: Folds to ensemble (default: every trained fold).
        device: ``torch.device`` or ``"auto"``/``"cpu"``/``"cuda"``/``"mps"``.
        tta: Mirror test-time augmentation over all spatial axes.
        step: Sliding-window step as a fraction of the patch.
        use_postprocessing: Load ``postprocessing.json`` when present.
        precision: Network arithmetic, see :class:`SlidingWindowSettings` (``auto``:
            :func:`NNSegLib.util.precision.choose_precision` for inference).
        allow_unfinished: Also use folds whose training has not finished (their best,
            else latest checkpoint); by default such folds are refused when asked for and
            left out otherwise (``model.extra["notes"]`` says so).

    Raises:
        NNSegError: naming the missing or invalid file.
    """
    from NNSegLib.util.device import pick_device

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NNSegError(f"{model_dir}: model folder not found")
    if not hasattr(device, "type"):
        device = pick_device(str(device))
    best = ([] if configuration or is_nnunet_model(model_dir)
            else ModelFolder(model_dir).best_configurations())
    if len(best) > 1:   # find-best chose an ensemble of configurations
        members = [load_model(model_dir, c, folds, device, tta, step, use_postprocessing,
                              precision, allow_unfinished) for c in best]
        return dataclasses.replace(members[0], ensemble=members[1:])
    if is_nnunet_model(model_dir):
        model = load_nnunet_model(model_dir, folds=folds, device=device, tta=tta, step=step,
                                  configuration=configuration)
        settings = dataclasses.replace(model.settings, precision=precision)
        return dataclasses.replace(model, settings=settings)
    return load_nnseg_model(model_dir, configuration, folds, device, tta, step,
                            use_postprocessing, precision, allow_unfinished)


__all__ = ["is_nnunet_model", "load_model"]
