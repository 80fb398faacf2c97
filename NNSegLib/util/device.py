"""Pick the compute device and thread settings once, the same way everywhere."""

from __future__ import annotations

import os


def pick_device(requested: str = "auto"):
    """Return a ``torch.device``: ``cuda`` if available, else ``mps``, else ``cpu``.

    Args:
        requested: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Raises:
        RuntimeError: when an explicitly requested device is not available.
    """
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError("device 'mps' requested but MPS is not available")
    return torch.device(requested)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use). Returns it."""
    import torch

    if num_threads is None or num_threads <= 0:
        try:
            num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS / Windows
            num_threads = os.cpu_count() or 1
    torch.set_num_threads(num_threads)
    return num_threads
