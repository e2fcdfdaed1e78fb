"""Reliability: leaks, allocation failure, Python threads, forked workers, determinism."""
import gc
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import convt_blas
from convt_blas import _threads
from convt_blas._validation import check_arguments
from conftest import assert_close, make_case
from reference import conv_transpose1d_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEAK_CALLS = 10_000
# Under AddressSanitizer freed memory waits in a quarantine and the address space
# is reserved up front, so resident size and RLIMIT_AS say nothing there.
try:
    with open("/proc/self/maps") as _maps:
        SANITIZED = "libasan" in _maps.read()
except OSError:
    SANITIZED = False
needs_plain_memory = pytest.mark.skipif(SANITIZED,
                                        reason="memory figures are meaningless under ASan")
needs_fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                reason="no fork start method on this platform")


def random_case(rng, n, c_in, c_out_g, k, length, groups=1, dtype=np.float32, bias=True):
    """conftest.make_case with the total input channels (divisible by groups)."""
    assert c_in % groups == 0, (c_in, groups)
    return make_case(rng, n, c_in // groups, c_out_g, k, length, groups, dtype, bias)


@pytest.fixture
def default_threads():
    """Restores the default thread count however the test ends."""
    yield
    convt_blas.set_num_threads(None)


# ---------------------------------------------------------------------------
# Leaks

def mixed_calls(rng):
    """Small calls over dtypes, layouts, bias, out=, unbatched input and failing arguments."""
    calls = []
    for i, dtype in enumerate([np.float32, np.float64, np.complex64, np.complex128, np.float16]):
        x, w, b = random_case(rng, 1 + i % 3, 4, 3, 3 + i % 2, 20 + 7 * i, 2, dtype)
        out = np.empty((x.shape[0], 6, convt_blas.output_length(x.shape[2], w.shape[2], 2, 1)),
                       x.dtype)
        calls += [
            lambda x=x, w=w, b=b: convt_blas.conv_transpose1d(x, w, b, stride=2, groups=2),
            lambda x=x, w=w: convt_blas.conv_transpose1d(x[0], w, padding=1, groups=2),
            lambda x=x, w=w, b=b, out=out: convt_blas.conv_transpose1d(
                x, w, b, 2, 1, groups=2, out=out),
            lambda x=x, w=w: convt_blas.conv_transpose1d(x.transpose(0, 2, 1).copy().transpose(
                0, 2, 1), w, groups=2, dilation=2),
            lambda x=x, w=w: convt_blas.conv_transpose1d(x[..., ::2], w, groups=2),
        ]
    x, w, b = random_case(rng, 2, 4, 3, 3, 30)
    failing = [
        lambda: convt_blas.conv_transpose1d(x, w, b, stride=0),
        lambda: convt_blas.conv_transpose1d(x, w.astype(np.float64)),
        lambda: convt_blas.conv_transpose1d(x, w, out=np.empty((1, 1, 1), np.float32)),
        lambda: convt_blas.conv_transpose1d(x, w, stride=2 ** 45),  # MemoryError
        lambda: convt_blas.conv_transpose1d(x, w, stride=2 ** 62, padding=2 ** 61),  # too large
    ]

    def expect_error(call):
        def wrapped():
            try:
                call()
            except (ValueError, TypeError, MemoryError):
                return
            raise AssertionError("the call should have failed")
        return wrapped

    return calls + [expect_error(call) for call in failing]


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")
@needs_plain_memory
def test_many_calls_leave_memory_flat(rng):
    calls = mixed_calls(rng)
    # Traced from before the warm-up: NumPy traces a failed allocation as one entry
    # at address 0, of the size it asked for, which later failures replace.
    tracemalloc.start()
    try:
        for _ in range(20):  # warm up: workspaces, allocator pools, thread pools
            for call in calls:
                call()
        gc.collect()
        rss_before = resident_bytes()
        traced_before = tracemalloc.get_traced_memory()[0]
        for i in range(LEAK_CALLS):
            calls[i % len(calls)]()
        gc.collect()
        traced_after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    rss_after = resident_bytes()
    print(f"{LEAK_CALLS} calls: resident {rss_before / 2**20:.2f} -> {rss_after / 2**20:.2f} MiB, "
          f"traced memory grew by {traced_after - traced_before} bytes")
    # A leak of 100 bytes a call would be 1 MB of traced memory; of 1 KiB, 10 MiB resident.
    assert traced_after - traced_before < 64 * 1024, (traced_before, traced_after)
    assert rss_after - rss_before < 4 * 2 ** 20, (rss_before, rss_after)


# ---------------------------------------------------------------------------
# Allocation failure

ALLOCATION_FAILURE_SCRIPT = r"""
import json, resource
import numpy as np
import convt_blas

def address_space():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()

rng = np.random.default_rng(1)
x = rng.standard_normal((6, 4, 200)).astype(np.float32)
w = rng.standard_normal((4, 3, 5)).astype(np.float32)
convt_blas.set_num_threads(2)
expected = convt_blas.conv_transpose1d(x, w, stride=2)  # also starts the thread pools

# Made before the cap: operands of calls whose own allocations are too large for it.
MARGIN = 64 * 2 ** 20
wide = np.ones((1, 8, 64))                     # more channels than the direct path takes
long_kernel = np.ones((8, 1, 2 ** 18 + 1))     # 16 MiB
params = (1, 8, 64, 1, 2 ** 18 + 1, 1, 2 ** 17, 0, 1, 1)  # output length 64
workspace_bytes = convt_blas.kernels.plan_sizes(params)[1] * 8
assert workspace_bytes > MARGIN, f"the workspace case needs only {workspace_bytes} bytes"
half = np.ones((1, 1, 2 ** 25), np.float16)   # 64 MiB; computed in float32: 2 x 128 MiB
half_out = np.full((1, 1, 2 ** 25), 7, np.float16)
small_out = np.full((1, 1, 64), 7.0)
one = np.ones((1, 1, 1), np.float32)
cases = {
    "output": lambda: convt_blas.conv_transpose1d(np.ones((1, 1, 64), np.float32), one,
                                                  stride=2 ** 22),  # 1 GiB output
    "workspace": lambda: convt_blas.conv_transpose1d(wide, long_kernel, padding=2 ** 17),
    "workspace, out=": lambda: convt_blas.conv_transpose1d(wide, long_kernel,
                                                           padding=2 ** 17, out=small_out),
    "float32 copy, out=": lambda: convt_blas.conv_transpose1d(half, one.astype(np.float16),
                                                              out=half_out),
}
resource.setrlimit(resource.RLIMIT_AS, (address_space() + MARGIN,
                                        resource.getrlimit(resource.RLIMIT_AS)[1]))
raised = {}
for name, call in cases.items():
    try:
        call()
        raised[name] = None
    except Exception as exc:
        raised[name] = type(exc).__name__
again = [convt_blas.conv_transpose1d(x, w, stride=2) for _ in range(20)]
print(json.dumps({
    "cap_mib": resource.getrlimit(resource.RLIMIT_AS)[0] // 2 ** 20,
    "workspace_mib": workspace_bytes // 2 ** 20,
    "raised": raised,
    "out_untouched": bool(np.all(small_out == 7) and np.all(half_out == 7)),
    "still_correct": all(np.array_equal(y, expected) for y in again),
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
@needs_plain_memory
def test_allocation_failure_raises_memory_error_and_process_goes_on():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", ALLOCATION_FAILURE_SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(report)
    assert report["raised"] == {name: "MemoryError" for name in report["raised"]}, report
    assert report["out_untouched"], report
    assert report["still_correct"], report


def test_out_untouched_on_every_error(rng):
    x, w, b = random_case(rng, 2, 4, 3, 3, 30)
    out = np.full((2, 3, 32), 7, np.float32)
    bad_calls = [
        dict(stride=0), dict(padding=-1), dict(output_padding=5), dict(dilation=0),
        dict(groups=3), dict(stride=1.5), dict(padding="1"), dict(stride=(1, 2)),
        dict(w=w.astype(np.float64)), dict(b=b[:2]), dict(x=x[:, :3]), dict(x=x.astype(np.int32)),
        dict(x=x.astype(np.float64)),  # out has the float32 result's dtype
        dict(stride=2 ** 62, padding=2 ** 61),  # a parameter too large
        dict(x=x[0]),  # out has the batched shape
    ]
    for override in bad_calls:
        args = dict(x=x, w=w, b=b)
        args.update(override)
        params = {k: v for k, v in args.items() if k not in ("x", "w", "b")}
        with pytest.raises((ValueError, TypeError)):
            convt_blas.conv_transpose1d(args["x"], args["w"], args["b"], **params, out=out)
        assert np.all(out == 7), override
    overlapping = np.zeros(x.size + out.size, np.float32)
    overlapping[:x.size] = x.reshape(-1)
    x_view = overlapping[:x.size].reshape(x.shape)
    out_view = overlapping[x.size - 1:x.size - 1 + out.size].reshape(out.shape)
    saved = overlapping.copy()
    with pytest.raises(ValueError, match="overlaps"):
        convt_blas.conv_transpose1d(x_view, w, b, out=out_view)
    np.testing.assert_array_equal(overlapping, saved)


# ---------------------------------------------------------------------------
# Python threads

THREAD_CASES = [  # (n, c_in, c_out/groups, K, L, groups, dtype, params)
    (8, 32, 32, 4, 400, 1, np.float32, dict(stride=2)),              # the first four: prange
    (6, 32, 16, 3, 500, 2, np.float64, dict(stride=3, padding=1)),
    (3, 64, 64, 3, 300, 1, np.float32, dict(padding=1)),
    (1, 128, 64, 5, 300, 1, np.float64, dict(stride=2, dilation=2)),
    (1, 4, 3, 1, 40, 1, np.float32, dict()),                         # the last four: serial
    (4, 8, 4, 2, 100, 2, np.complex64, dict(stride=2, output_padding=1)),
    (7, 4, 7, 5, 280, 1, np.float32, dict(stride=3, padding=2, dilation=2)),
    (2, 16, 8, 7, 200, 4, np.complex128, dict(stride=4)),
]


def openmp_workers(x, w, **params):
    """OpenMP workers of a call on these operands (BLAS always runs single-threaded)."""
    spec = check_arguments(x.shape, w.shape, None, **params)
    units = spec.batch * convt_blas.kernels.plan_sizes(spec.kernel_params)[0]
    flops = 2 * x.size * w.shape[1] * w.shape[2]
    return _threads.plan_threads(units, flops)


def test_eight_python_threads_many_shapes(rng, default_threads):
    """Calls in an OpenMP prange beside serial calls, from 8 threads at once, all
    sharing the hold on OpenBLAS's thread count: all correct, no deadlock."""
    convt_blas.set_num_threads(2)
    cases = []
    for n, c_in, c_out_g, k, length, groups, dtype, params in THREAD_CASES:
        x, w, b = random_case(rng, n, c_in, c_out_g, k, length, groups, dtype)
        params = dict(params, groups=groups)
        cases.append((x, w, b, params, conv_transpose1d_reference(x, w, b, **params)))
    if convt_blas.openmp_enabled():
        workers = {openmp_workers(x, w, **params) for x, w, _, params, _ in cases}
        assert workers == {1, 2}, workers
    failures = []
    start = threading.Barrier(8)

    def work(i):
        try:
            start.wait()
            for call in range(60):
                x, w, b, params, expected = cases[(i + call) % 8]
                assert_close(convt_blas.conv_transpose1d(x, w, b, **params), expected)
        except BaseException as exc:  # reported by the main thread
            failures.append((i, repr(exc)))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock: threads still running after 120 s"
    assert failures == []


# ---------------------------------------------------------------------------
# Forked workers

def forked_call(args):
    """Runs in a forked worker: the threads it may use and its result."""
    x, w, b = args
    return convt_blas.get_num_threads(), convt_blas.conv_transpose1d(x, w, b, stride=2)


@needs_fork
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads running
def test_forked_workers_after_parallel_use(rng, default_threads):
    convt_blas.set_num_threads(2)
    cases = [random_case(rng, 8, 32, 32, 4, 400 + 50 * i) for i in range(4)]
    if convt_blas.openmp_enabled():
        assert all(openmp_workers(x, w, stride=2) > 1 for x, w, _ in cases)
    expected = [convt_blas.conv_transpose1d(x, w, b, stride=2) for x, w, b in cases]
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        results = pool.map_async(forked_call, cases).get(timeout=60)
    finally:
        pool.terminate()
        pool.join()
    # A child of a GNU OpenMP process must stay out of the OpenMP runtime.
    child_threads = 2 if convt_blas.openmp_enabled() and not _threads.gnu_openmp() else 1
    for (threads, y), y_parent in zip(results, expected):
        np.testing.assert_array_equal(y, y_parent)
        assert threads == child_threads


def forked_compute(x, w, b, queue):
    queue.put(convt_blas.conv_transpose1d(x, w, b, stride=2))


@needs_fork
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_while_a_call_holds_blas(rng, default_threads):
    """A fork while another thread is inside a call: its lock and hold are not inherited."""
    convt_blas.set_num_threads(2)
    x, w, b = random_case(rng, 8, 32, 32, 4, 400)
    expected = convt_blas.conv_transpose1d(x, w, b, stride=2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    hold = _threads.worker_pool
    hold.enter()
    with hold._lock:  # as if a thread were between enter() and exit() at the fork
        child = context.Process(target=forked_compute, args=(x, w, b, queue))
        child.start()
    hold.exit()
    try:
        y = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(y, expected)
    assert child.exitcode == 0


# ---------------------------------------------------------------------------
# Determinism

DETERMINISM_CASES = [
    # (n, c_in, c_out/groups, K, L, groups, dtype, params)
    (7, 64, 32, 4, 2000, 1, np.float32, dict(stride=2, padding=1)),      # several tiles
    (7, 8, 170, 5, 300, 1, np.float64, dict(stride=3, dilation=2)),      # few, uneven units
    (7, 12, 5, 3, 90, 3, np.complex64, dict(stride=1, output_padding=1, dilation=2)),
    (7, 256, 64, 3, 300, 1, np.float32, dict(stride=1, padding=1)),      # one unit a sample
    (7, 16, 8, 7, 500, 2, np.float16, dict(stride=4, padding=3)),
    (7, 128, 64, 16, 12, 1, np.float32, dict(stride=8, padding=4)),      # elements share GEMMs
    (7, 128, 64, 16, 12, 1, np.float64, dict(stride=8, padding=20)),     # ... first column cropped
    # Blocks of 17 channels x 14 taps: a partial tile of 16 rows (shared whole, elements
    # differed from their bits alone): the whole tiles are shared, the rest not.
    (7, 300, 130, 14, 100, 1, np.float64, dict(stride=7, padding=2, output_padding=3)),
    (7, 1062, 38, 33, 15, 1, np.float64, dict(stride=15, padding=16)),
    (7, 200, 37, 6, 9, 1, np.complex128, dict(stride=3, padding=2)),
    (7, 40, 30, 3, 10, 2, np.complex64, dict(stride=1, padding=3)),      # small GEMMs: never shared
    (7, 24, 30, 4, 2, 1, np.float32, dict(stride=2)),                    # 2 columns: never shared
]


def test_short_inputs_share_gemms_across_the_batch():
    """Short inputs of many channels run several batch elements per GEMM (fewer
    units than one per element per channel block); a single element cannot."""
    from convt_blas import kernels

    def units_per_sample(batch, length):
        # (batch, C_in, L_in, C_out, K, stride, padding, output_padding, dilation, groups)
        return kernels.plan_sizes((batch, 512, length, 256, 16, 8, 4, 0, 1, 1))[0]

    alone = units_per_sample(1, 100)
    assert alone > 1
    assert units_per_sample(16, 100) < alone
    assert units_per_sample(16, 2) == units_per_sample(1, 2)  # matrix-vector path: kept apart
    # Channel blocks whose rows end in a partial tile of 16 share their whole tiles.
    partial = (300, 100, 130, 14, 7, 2, 3, 1, 1)
    assert kernels.plan_sizes((16,) + partial)[0] < kernels.plan_sizes((1,) + partial)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_elements_sharing_partial_row_tiles_keep_their_bits_alone(dtype):
    """Random short layers whose channel blocks end in a partial tile of 16 rows: the
    batch shares a GEMM over the whole tiles, and every element gets the bits it gets
    alone (shared whole, float64 elements differed in about half of such layers)."""
    from convt_blas import kernels

    rng = np.random.default_rng(2026)
    shared = 0
    for _ in range(200):
        c_in, c_out, k = int(rng.integers(200, 1200)), int(rng.integers(3, 90)), int(rng.integers(2, 20))
        stride = int(rng.integers(1, k + 1))
        padding = int(rng.integers(0, k))
        n, length = int(rng.integers(2, 7)), int(rng.integers(3, 30))
        shape = (n, c_in, length, c_out, k, stride, padding, 0, 1, 1)
        try:
            plan = kernels._plan_info(shape)
        except ValueError:
            continue  # padding past the output
        if plan["samples_per_unit"] < 2 or plan["block_channels"] * k % 16 == 0:
            continue
        shared += 1
        x, w, b = random_case(rng, n, c_in, c_out, k, length, dtype=dtype)
        params = dict(stride=stride, padding=padding)
        together = convt_blas.conv_transpose1d(x, w, b, **params)
        alone = np.concatenate([convt_blas.conv_transpose1d(x[i:i + 1], w, b, **params)
                                for i in range(n)])
        np.testing.assert_array_equal(together, alone)
        channels_last = x.transpose(0, 2, 1).copy().transpose(0, 2, 1)
        np.testing.assert_array_equal(convt_blas.conv_transpose1d(channels_last, w, b, **params),
                                      together)
        layer = convt_blas.ConvTranspose1d(c_in, c_out, k, **params, dtype=dtype)
        layer.load_state_dict({"weight": w, "bias": b})
        for _ in range(2):  # the second call reads the weight's rows
            np.testing.assert_array_equal(layer(x), together)
        if shared == 8:
            break
    assert shared == 8


def assert_bitwise_deterministic(x, w, b, groups, params):
    """The same bits for thread counts 1-4, repeated runs, channels-last input and
    the batch cut into chunks."""
    n = x.shape[0]
    channels_last = x.transpose(0, 2, 1).copy().transpose(0, 2, 1)
    convt_blas.set_num_threads(1)
    first = convt_blas.conv_transpose1d(x, w, b, groups=groups, **params)
    assert_close(first, conv_transpose1d_reference(x, w, b, groups=groups, **params), x.dtype)
    for threads in (1, 2, 3, 4):
        convt_blas.set_num_threads(threads)
        for _ in range(2):
            np.testing.assert_array_equal(
                convt_blas.conv_transpose1d(x, w, b, groups=groups, **params), first)
        np.testing.assert_array_equal(
            convt_blas.conv_transpose1d(channels_last, w, b, groups=groups, **params), first)
        for chunks in ([1] * n, [3, n - 3], [2, 2, n - 4]):
            edges = np.cumsum([0] + chunks)
            pieces = [convt_blas.conv_transpose1d(x[lo:hi], w, b, groups=groups, **params)
                      for lo, hi in zip(edges[:-1], edges[1:])]
            np.testing.assert_array_equal(np.concatenate(pieces), first)


@pytest.mark.parametrize("case", DETERMINISM_CASES, ids=lambda c: f"{np.dtype(c[6])}-{c[:6]}")
def test_bitwise_deterministic_with_single_threaded_blas(rng, default_threads, case):
    """OpenMP thread counts, runs and batch chunks, with BLAS held to one thread by the
    caller (what a service that needs reproducible results does)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    n, c_in, c_out_g, k, length, groups, dtype, params = case
    x, w, b = random_case(rng, n, c_in, c_out_g, k, length, groups, dtype)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert_bitwise_deterministic(x, w, b, groups, params)


@pytest.mark.parametrize("case", [(7, 8, 170, 5, 300, 1, dict(stride=3, dilation=2)),
                                  (5, 256, 64, 3, 300, 1, dict(stride=1, padding=1))],
                         ids=["few-uneven-units", "one-unit"])
def test_bitwise_deterministic_with_threaded_blas(rng, default_threads, case):
    """BLAS left at its own thread count: the kernels hold it to one thread themselves."""
    n, c_in, c_out_g, k, length, groups, params = case
    x, w, b = random_case(rng, n, c_in, c_out_g, k, length, groups, np.float64)
    assert_bitwise_deterministic(x, w, b, groups, params)


# ---------------------------------------------------------------------------
# Alignment

def unaligned_copy(a):
    """``a``'s values in C-contiguous memory one byte off its dtype's alignment."""
    buffer = np.zeros(a.nbytes + 1, np.uint8)
    shifted = buffer[1:].view(a.dtype).reshape(a.shape)
    shifted[...] = a
    return shifted


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("c_in", [3, 16], ids=["direct-taps", "gemm"])
def test_unaligned_weight_bias_and_out(rng, dtype, c_in):
    """Correct results from unaligned operands (as unpickled or received arrays can be).
    Under tools/sanitize.sh UBSan also checks that no unaligned value is accessed."""
    x, w, b = random_case(rng, 3, c_in, 4, 3, 200, dtype=dtype)
    expected = conv_transpose1d_reference(x, w, b, stride=2)
    out = unaligned_copy(np.zeros(expected.shape, dtype))
    assert not out.flags.aligned
    y = convt_blas.conv_transpose1d(x, unaligned_copy(w), unaligned_copy(b), stride=2, out=out)
    assert y is out
    assert_close(out, expected, dtype)
