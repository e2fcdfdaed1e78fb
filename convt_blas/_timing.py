"""Timing helpers shared by ``python -m convt_blas`` and ``bench/``."""
import os
import statistics
import time


def describe_blas():
    """One line naming the BLAS behind scipy and the kernel it runs."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS kernel unknown (install threadpoolctl to see it)"
    rows = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    rows.sort(key=lambda info: "scipy.libs" not in info.get("filepath", ""))
    if not rows:
        return "BLAS kernel unknown"
    info = rows[0]
    return (f"{info.get('internal_api')} {info.get('version')} "
            f"kernel={info.get('architecture')} threads={info.get('num_threads')}")


def openblas_env_note():
    """Warn when OpenBLAS is pinned to an older kernel by the environment."""
    pinned = [name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if name in os.environ]
    if not pinned:
        return "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset: OpenBLAS picks its kernel for this CPU"
    return (f"{' and '.join(pinned)} set: OpenBLAS runs the kernel they name, possibly slower "
            f"than this CPU allows")


def time_interleaved(functions, min_seconds=0.3, max_repeats=200, min_repeats=5):
    """Median seconds per call of each function, run alternately so drift hits all alike."""
    for f in functions:  # warm-up
        f()
    samples = [[] for _ in functions]
    start = time.perf_counter()
    repeats = 0
    while repeats < min_repeats or (time.perf_counter() - start < min_seconds
                                    and repeats < max_repeats):
        for i, f in enumerate(functions):
            t0 = time.perf_counter()
            f()
            samples[i].append(time.perf_counter() - t0)
        repeats += 1
    return [statistics.median(s) for s in samples]
