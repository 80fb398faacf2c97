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


def physical_memory_bytes() -> int:
    """Total physical memory of this machine (0 when it cannot be told)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return 0


#: Largest array one case may become when resampled (voxels), whatever the memory.
MAX_CASE_VOXELS = 2 ** 31


def case_memory_problem(shape, channels: int, what: str) -> str | None:
    """Why a ``(channels, *shape)`` float32 array of one case cannot be made, or ``None``.

    The limit is :data:`MAX_CASE_VOXELS` voxels and half the physical memory.
    """
    voxels = 1
    for s in shape:
        voxels *= int(s)
    size = voxels * 4 * max(1, int(channels))
    limit = physical_memory_bytes() // 2
    if voxels <= MAX_CASE_VOXELS and (not limit or size <= limit):
        return None
    shape_text = "×".join(str(int(s)) for s in shape)
    return (f"{what} would have shape {shape_text} ({size / 1e9:.3g} GB as float32), more "
            f"than NNSeg can hold (at most {MAX_CASE_VOXELS:.3g} voxels and half of the "
            f"{limit * 2 / 1e9:.3g} GB of memory)")
