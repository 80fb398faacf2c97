"""The fast preview of ``nnseg predict --fast`` (METHOD §5): one network, one pass per window.

A preview trades accuracy for time in the three places where the full prediction multiplies
its work:

* **one fold** instead of the ensemble (5× fewer networks with five folds): the
  *lowest-numbered usable fold* of the configuration (``0`` unless that one is missing or
  unfinished; ``all`` only when no numbered fold is usable). Not "the best fold by
  validation Dice": each fold is validated on different cases, so the folds' Dice values
  say more about their validation cases than about the networks, and a choice that moves
  when a fold is retrained would make previews hard to compare. The same rule on every
  machine gives the same preview.
* **no mirror TTA** (8× fewer passes in 3D, 4× in 2D);
* **step 1.0**: windows touch instead of overlapping by half (about 2³ = 8× fewer windows
  on a large 3D image). A voxel is then predicted by one window, so borders between windows
  lose the context and the averaging the overlap gives; the Gaussian weights divide out
  (one window per voxel), so the result stays a proper softmax.

Together about 320× fewer patch evaluations than the default on a large 3D image with five
folds. When ``find-best`` chose an ensemble of configurations, the preview uses its first
configuration only. Explicit ``--folds``, ``--step`` and ``--configuration`` win over these
choices; the output (label map, geometry, format, postprocessing) is that of the normal path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

#: Sliding-window step of the preview: windows touch, no overlap.
FAST_STEP = 1.0


@dataclass(frozen=True)
class FastChoice:
    """What ``--fast`` runs.

    Attributes:
        configuration: Configuration to load (``None``: the folder's only one, nnU-Net).
        folds: Folds to load.
        step: Sliding-window step.
        description: One line for the log, e.g. ``"fast preview: 3d_fullres fold 0, …"``.
    """

    configuration: str | None
    folds: list[str]
    step: float
    description: str


def _fold_order(fold: str) -> tuple:
    return (not fold.isdigit(), int(fold) if fold.isdigit() else 0, fold)


def first_fold(model_dir: Path | str, configuration: str | None,
               allow_unfinished: bool = False) -> str:
    """The fold a preview uses: the lowest-numbered usable fold (see the module doc).

    Raises:
        NNSegError: when the configuration has no usable fold (the message of the normal
            path, naming unfinished folds).
    """
    from NNSegLib.inference.loaded_model import choose_folds
    from NNSegLib.inference.model_loader import is_nnunet_model

    model_dir = Path(model_dir)
    if is_nnunet_model(model_dir):
        from NNSegLib.inference.nnunet_model import nnunet_folds

        available = choose_folds(sorted(nnunet_folds(model_dir), key=_fold_order), None,
                                 model_dir)
    else:
        from NNSegLib.inference.nnseg_model import usable_folds
        from NNSegLib.util.model_folder import ModelFolder

        folder = ModelFolder(model_dir)
        available, _names, _notes = usable_folds(
            folder, configuration or folder.default_configuration(), None, allow_unfinished)
    return min(available, key=_fold_order)


def fast_choice(model_dir: Path | str, configuration: str | None = None,
                folds: Sequence[str | int] | None = None, step: float | None = None,
                allow_unfinished: bool = False) -> FastChoice:
    """Resolve ``--fast`` against the model and the options given explicitly.

    Args:
        model_dir: NNSeg model folder or nnU-Net v2 results folder.
        configuration: ``--configuration`` if given (else the default one; the first of an
            ensemble).
        folds: ``--folds`` if given (then used as they are).
        step: ``--step`` if given (else :data:`FAST_STEP`).
        allow_unfinished: ``--allow-unfinished``.
    """
    from NNSegLib.inference.model_loader import is_nnunet_model
    from NNSegLib.util.model_folder import ModelFolder

    model_dir = Path(model_dir)
    if configuration is None and not is_nnunet_model(model_dir):
        configuration = ModelFolder(model_dir).default_configuration()
    chosen = [str(f) for f in folds] if folds else [
        first_fold(model_dir, configuration, allow_unfinished)]
    step = FAST_STEP if step is None else float(step)
    where = f"{configuration} " if configuration else ""
    description = (f"fast preview: {where}fold(s) {', '.join(chosen)}, no test-time "
                   f"augmentation, step {step:g}")
    return FastChoice(configuration, chosen, step, description)


@dataclass(frozen=True)
class RunSettings:
    """What a ``predict`` / ``segment-batch`` command line asks for, ``--fast`` resolved.

    Attributes:
        configuration: Configuration to load (``None``: the model folder's default).
        folds: Folds to load (``None``: every finished fold).
        step: Sliding-window step.
        tta: Mirror test-time augmentation.
    """

    configuration: str | None
    folds: list[str] | None
    step: float
    tta: bool


def run_settings(model_dir: Path | str, configuration: str | None,
                 folds: Sequence[str] | None, step: float | None, tta: bool, fast: bool,
                 allow_unfinished: bool = False, progress: Any = None) -> RunSettings:
    """The settings of a command line: as given, or the preview's with ``fast``.

    Args:
        model_dir: NNSeg model folder or nnU-Net v2 results folder.
        configuration: ``--configuration`` (``None`` when not given).
        folds: ``--folds`` (``None`` when not given).
        step: ``--step`` (``None`` when not given: 0.5, or :data:`FAST_STEP` with ``fast``).
        tta: Not ``--no-tta``.
        fast: ``--fast``.
        allow_unfinished: ``--allow-unfinished``.
        progress: Told the preview's description (a ``Progress``), if given.
    """
    if not fast:
        return RunSettings(configuration, list(folds) if folds else None,
                           0.5 if step is None else float(step), tta)
    choice = fast_choice(model_dir, configuration, folds, step, allow_unfinished)
    if progress is not None:
        progress.message(choice.description)
    return RunSettings(choice.configuration, choice.folds, choice.step, False)


__all__ = ["FAST_STEP", "FastChoice", "RunSettings", "fast_choice", "first_fold",
           "run_settings"]
