"""Sizing arrays against the memory available before they are made.

An allocation the system overcommits succeeds, and the process is killed
when it writes the pages; a large array is measured against what is
available first instead, so that the caller gets a MemoryError.
"""
import ctypes
import os
import threading

import numpy as np

_workspaces = threading.local()

# Arrays below this size are not worth a look at the system's memory.
CHECKED_BYTES = 1 << 28

# glibc serves a request of its mmap threshold or more by a fresh mapping, whose pages
# fault in again on every allocation; freeing such a mapping raises the threshold to
# its size, up to 32 MiB on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX). A request this
# size is mapped with its header within that limit.
_GLIBC_DYNAMIC_MMAP_MAX = (4 << 20) * ctypes.sizeof(ctypes.c_long) - (64 << 10)
_heap_settled = threading.Event()


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


def settle_heap():
    """Once per process: malloc and free (untouched) a buffer at glibc's largest
    dynamic mmap threshold, so that later allocations below it reuse the heap.

    torch's own transposed convolutions allocate and free buffers on every call,
    which raises the threshold; a model whose layers run on convt_blas (which
    keeps its workspace) would otherwise have the rest of its tensors mapped and
    faulted in afresh on every call (SpeechT5 HiFi-GAN, 2 threads: 10x the page
    faults, 25% slower). As after any such free, up to twice the threshold of
    freed heap memory then stays with the process. A threshold the user set
    (mallopt, MALLOC_MMAP_THRESHOLD_) is left alone, as are C libraries other
    than glibc.
    """
    if _heap_settled.is_set():
        return
    _heap_settled.set()
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only
    except (OSError, AttributeError):
        return
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(_GLIBC_DYNAMIC_MMAP_MAX))

