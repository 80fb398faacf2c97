"""Keep freed host memory in the process so that large CPU tensors are not re-faulted.

PyTorch takes CPU tensors from ``malloc``. glibc serves blocks above its mmap threshold
(at most 32 MB) with a fresh ``mmap`` and unmaps them again when they are freed, so every
large tensor a CPU training step creates - a full-resolution activation of the training
benchmark's batch is 80 MB, and a step makes dozens - arrives as untouched pages that the
kernel zero-fills one 4 KiB page at a time on first write. On the 2-core Xeon of
``bench/RESULTS.md`` that was 578,000 page faults per profiled fp32 step, and the training
benchmark's fp32 steps took 3.68 s instead of 3.08 s.

:func:`reuse_freed_memory` tells glibc to serve large blocks from its heap and to keep
freed memory there, which is what a caching allocator (CUDA's, for instance) does: the
next step reuses the same, already mapped pages. The price is that the process keeps its
peak memory until it exits (peak resident memory grew by about 8 % in the measurement).
The training and prediction commands call it for CPU work; they run as processes of
their own (the Slicer module starts them as subprocesses), so the memory returns to the
system when they end, and training hands free pages back after every epoch
(:func:`release_freed_memory`). Other C libraries (macOS, Windows, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: Values of the ``host_memory`` setting: reuse freed memory, or the C library's defaults.
SETTINGS = ("reuse", "system")

# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Free memory at the top of the heap beyond this is still given back (mallopt takes an int).
TRIM_THRESHOLD_BYTES = 2 ** 31 - 1

_applied = False


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (the only one whose ``mallopt`` we tune).

    Looked up once per process (``find_library`` runs ``ldconfig``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        version = libc.gnu_get_libc_version
        libc.mallopt  # noqa: B018 - AttributeError when the symbol is missing
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    return libc if version() else None


def reuse_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse instead of unmapping them (idempotent).

    Returns:
        ``True`` when the setting is in effect (glibc on Linux), ``False`` otherwise.
    """
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success. The trim threshold goes first: setting it also turns off
    # glibc's dynamic mmap threshold.
    ok = (libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
          and libc.mallopt(_M_MMAP_MAX, 0) == 1)
    _applied = ok
    return ok


def apply_setting(setting: str, device_type: str) -> bool:
    """Carry out a ``host_memory`` setting (:data:`SETTINGS`) for work on ``device_type``.

    Only CPU work allocates its tensors from ``malloc``; ``"reuse"`` on the CPU calls
    :func:`reuse_freed_memory`, anything else leaves the C library as it is.

    Returns:
        Whether freed memory is now reused.
    """
    if setting == "reuse" and device_type == "cpu":
        return reuse_freed_memory()
    return False


def release_freed_memory() -> bool:
    """Give free pages inside the heap back to the system (``malloc_trim``).

    Meant for the end of a training epoch: with :func:`reuse_freed_memory` in effect, blocks
    freed by one-off work (validation, checkpoints) could otherwise stay resident, and the
    heap's free holes would add up over a long run. The next steps fault those pages in
    once more, which costs about one step's page faults per epoch.

    Returns:
        ``True`` when memory was trimmed; ``False`` when reuse is not in effect (nothing to
        do) or nothing could be released.
    """
    if not _applied:
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc.malloc_trim(0) == 1
