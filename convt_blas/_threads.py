"""The one place that decides thread counts.

A call runs its work units in an OpenMP ``prange`` with BLAS held to one
thread inside: nested BLAS threads would oversubscribe the cores, and a
threaded GEMM rounds differently, which would make results depend on the
thread count.

Nothing is looked up at import: the OpenBLAS behind SciPy, whose thread count
calls hold at one, is found by :func:`configure_blas` on a call's first need.
(The kernels ask it which GEMM kernels it runs themselves, as they load.)
"""
import contextlib
import ctypes
import functools
import glob
import mmap
import numbers
import os
import re
import threading

from . import kernels

_requested_threads = None
# A framework's own thread count (convt_blas.torch passes torch's), the default of
# calls made inside caller_default_threads on this thread; set_num_threads wins.
_caller_default = threading.local()
# True in a child forked while the kernels run on GNU OpenMP; see _after_fork_in_child.
_serial_after_fork = False


def openmp_enabled():
    """Whether the kernels were compiled with OpenMP (else they run serially).

    Returns
    -------
    bool

    Examples
    --------
    >>> import convt_blas
    >>> most = convt_blas.get_num_threads() if convt_blas.openmp_enabled() else 1
    >>> most >= 1
    True
    """
    return kernels.openmp_enabled()


def set_num_threads(n):
    """Use ``n`` threads in later calls; ``None`` restores the default.

    The default is OpenMP's limit for the calling thread: ``OMP_NUM_THREADS``
    when set, else the available cores, and it follows threadpoolctl's
    ``threadpool_limits(..., user_api="openmp")``. An explicit ``n`` overrides it.
    Results are the same bits for any thread count.

    Parameters
    ----------
    n : int or None
        From 1 to ``CONVT_BLAS_MAX_THREADS`` (256).

    Examples
    --------
    >>> import convt_blas
    >>> convt_blas.set_num_threads(2)
    >>> convt_blas.get_num_threads() in (1, 2)  # 1 without OpenMP
    True
    >>> convt_blas.set_num_threads(None)  # OpenMP's default again
    """
    global _requested_threads
    if n is None:
        _requested_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads expects a positive int, got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n}")
    if n > MAX_THREADS:
        raise ValueError(f"set_num_threads expects at most {MAX_THREADS} threads, got {n}")
    _requested_threads = int(n)


def get_num_threads():
    """Threads a call will use at most.

    Returns
    -------
    int
        What :func:`set_num_threads` set, else OpenMP's limit; 1 when built
        without OpenMP, and in a process forked from one whose kernels run on
        GNU OpenMP (whatever ``set_num_threads`` asked for).

    Examples
    --------
    >>> import convt_blas
    >>> convt_blas.get_num_threads() >= 1
    True
    """
    if not kernels.openmp_enabled() or _serial_after_fork:
        return 1
    if _requested_threads is not None:
        return _requested_threads
    framework_threads = getattr(_caller_default, "threads", None)
    if framework_threads is not None:
        return max(1, min(framework_threads, MAX_THREADS))
    return max(1, min(kernels.omp_max_threads(), MAX_THREADS))


@contextlib.contextmanager
def caller_default_threads(n):
    """Within the block, calls on this thread default to ``n`` threads (unless
    :func:`set_num_threads` set a count): a framework's setting, e.g. torch's."""
    previous = getattr(_caller_default, "threads", None)
    _caller_default.threads = int(n)
    try:
        yield
    finally:
        _caller_default.threads = previous


MAX_THREADS = kernels.max_threads()


def _find_openblas_controls():
    """(get, set, corename, config, buffer_alloc, buffer_free) of the OpenBLAS behind
    scipy.linalg.cython_blas, or None.

    ``corename`` and ``config`` are None when that OpenBLAS does not say which
    kernels it runs or how it was built; ``buffer_alloc`` and ``buffer_free``
    when it does not export its GEMM buffer pool.
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
            config = getattr(lib, f"{prefix}_get_config{suffix}", None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                put.argtypes = [ctypes.c_int]
                for text in (corename, config):
                    if text is not None:
                        text.restype = ctypes.c_char_p
                alloc = getattr(lib, "blas_memory_alloc", None)
                free = getattr(lib, "blas_memory_free", None)
                if alloc is not None and free is not None:
                    alloc.restype, alloc.argtypes = ctypes.c_void_p, [ctypes.c_int]
                    free.restype, free.argtypes = None, [ctypes.c_void_p]
                else:
                    alloc = free = None
                return get, put, corename, config, alloc, free
    return None


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


# OpenBLAS keeps one GEMM buffer per concurrently running GEMM (BUFFER_SIZE:
# 32 MiB in the builds SciPy ships, plus its alignment), mapped on first need
# and kept; a mapping that fails is retried forever.
BLAS_BUFFER_BYTES = 33 << 20
# What else a call may map beyond its arrays (bookkeeping, OpenMP's team).
CALL_SLACK_BYTES = 4 << 20


def _blas_buffer_slots(controls):
    """How many GEMM buffers that OpenBLAS can hold at once: 2*MAX_THREADS (50 at least)."""
    config = controls[3]() if controls is not None and controls[3] is not None else None
    found = re.search(rb"MAX_THREADS=(\d+)", config or b"")
    return max(50, 2 * int(found.group(1))) if found else 50


def _thread_stack_bytes():
    """Address space an OpenMP thread's stack takes: OMP_STACKSIZE, else the
    stack limit (glibc's default thread stack), plus a guard page."""
    units = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for name in ("GOMP_STACKSIZE", "OMP_STACKSIZE"):
        found = re.fullmatch(r"\s*(\d+)\s*([BKMG]?)\s*", os.environ.get(name, ""), re.I)
        if found:
            return int(found.group(1)) * units[(found.group(2) or "K").upper()] + (64 << 10)
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    except (ImportError, OSError, ValueError):
        soft = -1
    if soft == -1 or soft >= 1 << 40 or soft < 1 << 16:  # unlimited or odd: glibc's own
        soft = 8 << 20
    return soft + (64 << 10)


def _address_space_available(nbytes):
    """Whether ``nbytes`` of address space can be mapped now (RLIMIT_AS and the
    kernel's overcommit rules decide); maps and unmaps it without touching it."""
    if not hasattr(mmap, "MAP_ANONYMOUS"):
        return True  # no anonymous POSIX mappings here: nothing to check against
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    try:
        probe = mmap.mmap(-1, nbytes, flags=flags)
    except (OSError, ValueError, OverflowError):
        return False
    probe.close()
    return True


class _WorkerPool:
    """What a call's workers need, secured before the kernels commit to it.

    A worker's first GEMM maps an OpenBLAS buffer, and a calling thread's
    first parallel region of n threads starts n - 1 OpenMP threads. Neither
    fails cleanly (OpenBLAS retries a failed mapping forever, libgomp exits
    the process), so :meth:`enter` checks that the address space for what
    is missing is there, then makes the buffers and threads exist, and
    raises MemoryError instead if it is not.

    It also holds BLAS at one thread while any call is inside: OpenBLAS's
    thread count is process-global, so concurrent calls share one counter;
    the first to enter saves and lowers it, the last to leave restores it.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0  # calls inside
        self._active = 0  # their workers
        self._buffers = 0  # GEMM buffers known to be mapped
        self._saved = 1
        self._controls = None  # set by bind(), before the first call enters
        self._slots = _blas_buffer_slots(None)
        self._stack_bytes = _thread_stack_bytes()
        self._started = threading.local()  # .threads: OpenMP threads this thread's pool holds

    def bind(self, controls):
        """Use the OpenBLAS ``controls`` (see _find_openblas_controls), or None."""
        self._controls = controls
        self._slots = _blas_buffer_slots(controls)
        self._stack_bytes = _thread_stack_bytes()

    def enter(self, workers=1):
        """Secure ``workers`` workers for a call; returns how many it may run
        (fewer when concurrent calls fill OpenBLAS's buffer table).

        Raises MemoryError, leaving nothing changed, when the address space
        for missing buffers or threads is not there.
        """
        configure_blas()
        with self._lock:
            workers = max(1, min(workers, self._slots - self._active))
            self._secure(workers)
            controls = self._controls
            if controls is not None:
                current = controls[0]()
                if current != 1:
                    # The first call in, or another thread raised it while calls ran:
                    # that is the count to restore.
                    self._saved = current
                    controls[1](1)
            self._depth += 1
            self._active += workers
        return workers

    def exit(self, workers=1):
        with self._lock:
            self._depth -= 1
            self._active -= workers
            controls = self._controls
            if self._depth == 0 and controls is not None and self._saved != 1:
                if controls[0]() == 1:  # unless another thread set its own since
                    controls[1](self._saved)
                self._saved = 1

    def _secure(self, workers):
        new_threads = max(0, workers - getattr(self._started, "threads", 1))
        new_buffers = max(0, self._active + workers - self._buffers)
        if not (new_threads or new_buffers):
            return
        # Holding all buffers maps up to every one that others do not hold.
        mapped = (new_buffers + self._active) if new_buffers else 0
        needed = mapped * BLAS_BUFFER_BYTES + new_threads * self._stack_bytes + CALL_SLACK_BYTES
        if not _address_space_available(needed):
            raise MemoryError(
                f"a call on {workers} thread(s) needs {needed / 2 ** 20:.0f} MiB more address "
                "space (BLAS buffers, thread stacks) than is available; free memory, raise "
                "the limit or use fewer threads (convt_blas.set_num_threads)")
        if new_buffers:
            self._map_blas_buffers(self._active + workers)
        if new_threads:
            self._started.threads = kernels.start_threads(workers)

    def _map_blas_buffers(self, count):
        """Have OpenBLAS map ``count`` GEMM buffers by holding as many at once."""
        controls = self._controls
        if controls is not None and controls[4] is not None:
            held = [controls[4](0) for _ in range(count)]
            for buffer in held:
                if buffer:
                    controls[5](buffer)
        self._buffers = count

    def reset_after_fork(self):
        """Forget calls of the parent's threads, which do not exist in a forked child."""
        self._lock = threading.Lock()  # may have been held by one of them
        if self._depth and self._controls is not None and self._saved != 1:
            self._controls[1](self._saved)
        self._depth = 0
        self._active = 0
        self._saved = 1
        self._started = threading.local()  # the parent's OpenMP threads are gone


worker_pool = _WorkerPool()
_openblas = None  # the controls configure_blas found
_configured = False
_configure_lock = threading.Lock()


def configure_blas():
    """Find the OpenBLAS behind SciPy for the worker pool: once, on the first call's
    need, so that importing convt_blas changes nothing."""
    global _openblas, _configured
    if _configured:
        return
    with _configure_lock:
        if _configured:
            return
        controls = _find_openblas_controls()
        worker_pool.bind(controls)
        _openblas = controls
        _configured = True


def blas_controls():
    """The OpenBLAS controls (see _find_openblas_controls) calls use, or None."""
    configure_blas()
    return _openblas


@functools.lru_cache(maxsize=None)
def gnu_openmp():
    """Whether the kernels run on GNU OpenMP (libgomp)."""
    return kernels.openmp_enabled() and _gnu_openmp_runtime()


def _after_fork_in_child():
    # libgomp keeps the parent's thread pool in its state but the threads are
    # gone in a forked child, so the child's first parallel region waits on
    # them forever. The serial path of the kernels never enters the runtime.
    global _serial_after_fork
    _serial_after_fork = gnu_openmp()  # known: the parent asked before forking
    worker_pool.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=gnu_openmp, after_in_child=_after_fork_in_child)


# Below this much arithmetic per thread, waking threads costs more than it saves.
MIN_FLOPS_PER_THREAD = 1_000_000


def plan_threads(n_units, flops):
    """OpenMP workers for a call of ``n_units`` units and ``flops`` multiply-adds x 2.

    BLAS always runs single-threaded inside: a threaded GEMM rounds differently
    from a serial one, and results must not depend on the thread count. The
    kernel's plan cuts large work into enough units for the threads instead.
    """
    return max(1, min(get_num_threads(), MAX_THREADS, n_units, flops // MIN_FLOPS_PER_THREAD))
