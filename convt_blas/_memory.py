"""Sizing arrays against the memory available before they are made.

An allocation the system overcommits succeeds, and the process is killed
when it writes the pages; a large array is measured against what is
available first instead, so that the caller gets a MemoryError.
"""
import os
import threading

import numpy as np

_workspaces = threading.local()

# Arrays below this size are not worth a look at the system's memory.
CHECKED_BYTES = 1 << 28


def available_memory():
    """Bytes the system can still give without swapping out others (Linux:
    MemAvailable plus free swap), else its physical memory, else None."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return sum(int(fields[key].split()[0]) * 1024 for key in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits(nbytes, what):
    """MemoryError if an array of ``nbytes`` cannot fit in the memory available now."""
    if nbytes < CHECKED_BYTES:
        return
    available = available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs {nbytes / 2 ** 30:.1f} GiB, more than the "
                          f"{available / 2 ** 30:.1f} GiB of memory available")


def fresh_copy(arr, dtype=None, order="C"):
    """An aligned copy of ``arr`` (as ``dtype``; C-contiguous, or in ``arr``'s own
    axis order for "K"), sized before it is made: a broadcast operand copies in full."""
    dtype = np.dtype(dtype or arr.dtype)
    check_fits(arr.size * dtype.itemsize, f"a contiguous copy of an array of shape {arr.shape}")
    return np.array(arr, dtype=dtype, order=order, copy=True)


def workspace(dtype, size):
    """A per-thread scratch buffer of at least ``size`` elements, reused across calls
    (the forward's and the backward's alike: a thread runs one call at a time)."""
    cache = getattr(_workspaces, "buffers", None)
    if cache is None:
        cache = _workspaces.buffers = {}
    buf = cache.get(dtype)
    if buf is None or buf.size < size:
        cache.pop(dtype, None)  # free the old one before allocating the new one
        buf = np.empty(max(size, 1), dtype=dtype)
        cache[dtype] = buf
    return buf
