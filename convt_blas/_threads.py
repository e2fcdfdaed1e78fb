"""The one place that decides thread counts.

A call runs its work units in an OpenMP ``prange`` with BLAS held to one
thread inside: nested BLAS threads would oversubscribe the cores, and a
threaded GEMM rounds differently, which would make results depend on the
thread count.
"""
import ctypes
import glob
import numbers
import os
import threading

from . import kernels

_requested_threads = None
# True in a child forked while the kernels run on GNU OpenMP; see _after_fork_in_child.
_serial_after_fork = False


def openmp_enabled():
    """Whether the kernels were compiled with OpenMP (else they run serially)."""
    return kernels.openmp_enabled()


def set_num_threads(n):
    """Use ``n`` threads in later calls; ``None`` restores the default.

    The default is OpenMP's limit for the calling thread: ``OMP_NUM_THREADS``
    when set, else the available cores, and it follows threadpoolctl's
    ``threadpool_limits(..., user_api="openmp")``. An explicit ``n`` overrides it.
    """
    global _requested_threads
    if n is None:
        _requested_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads expects a positive int, got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n}")
    _requested_threads = int(n)


def get_num_threads():
    """Threads a call will use at most.

    1 when built without OpenMP, and in a process forked from one whose
    kernels run on GNU OpenMP (whatever ``set_num_threads`` asked for).
    """
    if not kernels.openmp_enabled() or _serial_after_fork:
        return 1
    if _requested_threads is not None:
        return _requested_threads
    return max(1, kernels.omp_max_threads())


def _find_openblas_controls():
    """(get, set, corename) of the OpenBLAS behind scipy.linalg.cython_blas, or None.

    ``corename`` is None when that OpenBLAS does not say which kernels it runs.
    """
    import scipy

    scipy_dir = os.path.dirname(scipy.__file__)
    candidates = glob.glob(os.path.join(scipy_dir, os.pardir, "scipy.libs", "*openblas*"))
    candidates += glob.glob(os.path.join(scipy_dir, ".dylibs", "*openblas*"))
    try:
        with open("/proc/self/maps") as maps:
            loaded = {line.split()[-1] for line in maps if "openblas" in line.lower()}
        candidates += sorted(p for p in loaded if "scipy" in p) + sorted(loaded)
    except OSError:
        pass
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", ""), ("scipy_openblas", "64_"),
                               ("openblas", ""), ("openblas", "64_")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            corename = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                put.argtypes = [ctypes.c_int]
                if corename is not None:
                    corename.restype = ctypes.c_char_p
                return get, put, corename
    return None


# OpenBLAS cores whose sgemm/dgemm take GEMMs of at most 10^6 multiply-adds
# through small-matrix kernels that do not pack their operands.
_SMALL_MATRIX_CORES = {"skylakex", "cooperlake", "sapphirerapids"}


def _blas_has_small_matrix_kernels(controls):
    if controls is None or controls[2] is None:
        return False
    name = controls[2]()
    return name is not None and name.decode(errors="replace").lower() in _SMALL_MATRIX_CORES


def _gnu_openmp_runtime():
    """Whether the kernels' OpenMP runtime is GNU libgomp.

    dlsym on the extension's handle searches its dependencies too; LLVM's and
    Intel's runtimes also export GOMP_* entry points, but only they have
    __kmpc_fork_call.
    """
    try:
        lib = ctypes.CDLL(kernels.__file__)
    except OSError:
        return False
    return hasattr(lib, "GOMP_parallel") and not hasattr(lib, "__kmpc_fork_call")


class _BlasThreadLimit:
    """Holds BLAS at one thread while any call is inside a parallel region.

    OpenBLAS's thread count is process-global, so concurrent calls share one
    counter: the first to enter saves and lowers it, the last to leave
    restores it.
    """

    def __init__(self, controls):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = 1
        self._controls = controls

    def enter(self):
        controls = self._controls
        if controls is None:
            return
        with self._lock:
            if self._depth == 0:
                self._saved = controls[0]()
                if self._saved != 1:
                    controls[1](1)
            self._depth += 1

    def exit(self):
        controls = self._controls
        if controls is None:
            return
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved != 1:
                controls[1](self._saved)

    def reset_after_fork(self):
        """Forget calls of the parent's threads, which do not exist in a forked child."""
        self._lock = threading.Lock()  # may have been held by one of them
        if self._depth and self._controls is not None and self._saved != 1:
            self._controls[1](self._saved)
        self._depth = 0


# Looked up once at import so that no call pays for it.
_openblas = _find_openblas_controls()
blas_single_thread = _BlasThreadLimit(_openblas)
# The kernel's plan cuts inputs of a few positions into GEMMs small enough for
# those kernels only where BLAS has them.
kernels.set_blas_small_matrix_kernels(_blas_has_small_matrix_kernels(_openblas))
_GNU_OPENMP = kernels.openmp_enabled() and _gnu_openmp_runtime()


def _after_fork_in_child():
    # libgomp keeps the parent's thread pool in its state but the threads are
    # gone in a forked child, so the child's first parallel region waits on
    # them forever. The serial path of the kernels never enters the runtime.
    global _serial_after_fork
    _serial_after_fork = _GNU_OPENMP
    blas_single_thread.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# Below this much arithmetic per thread, waking threads costs more than it saves.
MIN_FLOPS_PER_THREAD = 1_000_000


def plan_threads(n_units, flops):
    """OpenMP workers for a call of ``n_units`` units and ``flops`` multiply-adds x 2.

    BLAS always runs single-threaded inside: a threaded GEMM rounds differently
    from a serial one, and results must not depend on the thread count. The
    kernel's plan cuts large work into enough units for the threads instead.
    """
    return max(1, min(get_num_threads(), n_units, flops // MIN_FLOPS_PER_THREAD))
