"""Checkpoints: ``torch.save`` of tensors and plain Python values, loaded ``weights_only``.

Layout (see the contract in ``NNSegLib/README.md``)::

    {
      "network": state dict (tensors),
      "meta": {"configuration", "fold", "num_input_channels", "num_classes", "epoch",
               "nnseg_version", "patch_size", "spatial_dims", "kind"},
      # for resuming only:
      "optimizer": state dict, "schedule": dict, "trainer": dict (EMA, best metric,
      position inside the epoch), "rng": {"torch", "numpy", "python"}, "grad_scaler": dict
    }

Nothing in a checkpoint needs unpickling of arbitrary objects, so :func:`load_checkpoint`
always uses ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from NNSegLib import __version__
from NNSegLib.util.atomic import atomic_path
from NNSegLib.util.errors import NNSegError


def make_meta(configuration: str, fold: int | str, num_input_channels: int, num_classes: int,
              epoch: int, **extra: Any) -> dict[str, Any]:
    """The ``meta`` entry every checkpoint carries."""
    return {
        "configuration": configuration,
        "fold": fold,
        "num_input_channels": int(num_input_channels),
        "num_classes": int(num_classes),
        "epoch": int(epoch),
        "nnseg_version": __version__,
        **extra,
    }


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> None:
    """Atomically and durably write ``state`` (must contain ``network`` and ``meta``).

    The previous checkpoint of that name stays intact until the new one is complete on disk.

    Raises:
        OSError: when the file cannot be written (disk full …), also where torch reports
            it as a ``RuntimeError``.
    """
    missing = {"network", "meta"} - set(state)
    if missing:
        raise ValueError(f"checkpoint state lacks {sorted(missing)}")
    with atomic_path(path, suffix=".pt", durable=True) as tmp:
        with open(tmp, "wb") as f:
            try:
                torch.save(state, f)
            except RuntimeError as e:   # torch's writer wraps the OSError of a failed write
                cause = e.__cause__ or e.__context__
                if isinstance(cause, OSError):
                    raise cause from None
                raise OSError(errno.EIO, f"cannot write the checkpoint ({_first_sentence(e)})",
                              str(path)) from None


def describe_load_error(error: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` refused a file.

    Never passes on torch's advice to load with ``weights_only=False`` (which would run
    arbitrary code from the file) or to allow-list the globals it found.
    """
    text = str(error)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Please use", 1)[0]
        return ("it holds Python objects, not only tensors and plain values "
                f"({detail.strip().rstrip('.')}); NNSeg does not load such files")
    return _first_sentence(error)


def _first_sentence(error: Exception) -> str:
    text = " ".join(str(error).split())
    first = text.split(". ", 1)[0].rstrip(".")
    return first or type(error).__name__


def load_checkpoint(path: Path | str, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling objects.

    Raises:
        NNSegError: when the file is missing, unreadable or lacks ``network``/``meta``.
    """
    from NNSegLib.util.files import path_problem

    path = Path(path)
    if not path.is_file():
        problem = path_problem(path)
        raise NNSegError(f"{path}: checkpoint not found"
                         + (f" ({problem})" if problem and problem != "does not exist" else ""))
    problem = path_problem(path)
    if problem:
        raise NNSegError(f"{path}: {problem}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise NNSegError(f"{path}: not a readable NNSeg checkpoint ({describe_load_error(e)})"
                         ) from None
    if not isinstance(state, dict) or "network" not in state or "meta" not in state:
        raise NNSegError(f"{path}: not an NNSeg checkpoint (needs 'network' and 'meta')")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states of torch (CPU and CUDA), numpy's legacy generator and ``random``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(v) for v in obj] if isinstance(obj, (list, tuple)) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(v) for v in obj) if isinstance(obj, list) else obj


__all__ = ["capture_rng_state", "describe_load_error", "load_checkpoint", "make_meta",
           "restore_rng_state", "save_checkpoint"]
