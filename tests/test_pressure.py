"""Reliability under pressure: cold thread pools under an address-space limit, racing
settings, hostile thread counts and operands. Each case once hung, exited the
process, lost state or overwrote the caller's data."""
import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import convt_blas
from convt_blas import _threads, kernels
from conftest import assert_close
from reference import conv_transpose1d_reference
from test_reliability import ROOT, needs_plain_memory, random_case

INT_MAX = 2 ** 31 - 1
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="RLIMIT_AS and /proc are Linux")


def run_script(script, *args, timeout=60):
    """(exit status, stdout, stderr) of ``script`` in a fresh interpreter; None status on a hang."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    try:
        proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return None, exc.stdout or "", exc.stderr or ""
    return proc.returncode, proc.stdout, proc.stderr


# ---------------------------------------------------------------------------
# Memory pressure with cold pools: MemoryError or a right result, never a hang or an exit

CAPPED_PREAMBLE = r"""
import resource, sys
import numpy as np

def cap_address_space(headroom_mib):
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * resource.getpagesize()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom_mib * 2 ** 20, hard))

def lift_cap():
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
"""

COLD_CALL_SCRIPT = CAPPED_PREAMBLE + r"""
import convt_blas
threads, headroom = int(sys.argv[1]), int(sys.argv[2])
convt_blas.set_num_threads(threads)  # no call before the cap: every pool is cold
x = np.ones((1, 8, 100_000), np.float32)
w = np.ones((8, 64, 16), np.float32)
cap_address_space(headroom)
try:
    y = convt_blas.conv_transpose1d(x, w, stride=8, padding=4)
except MemoryError:
    print("MemoryError")
else:
    # Away from the ends every output receives two taps from each of the 8 channels.
    # (checked in slices: the cap leaves no room for a mask of the whole output)
    right = all(bool(np.all(y[:, :, i:i + 4096] == 16)) for i in range(8, 800_000 - 4104, 4096))
    print("ok" if y.shape == (1, 64, 800_000) and right else "wrong")
"""


@linux_only
@needs_plain_memory
def test_cold_pools_under_an_address_space_limit():
    """Around the output's 195 MiB: OpenBLAS's first buffer (once retried forever) and
    OpenMP's new thread stacks (once 'Thread creation failed' and exit status 1)."""
    cases = [(t, h) for t in (1, 2) for h in range(190, 300, 10)]
    cases += [(16, h) for h in (240, 280, 900)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: run_script(COLD_CALL_SCRIPT, *c), cases))
    outcomes = {}
    for (threads, headroom), (status, stdout, stderr) in zip(cases, results):
        assert status == 0, (threads, headroom, status, stderr[-2000:])
        outcomes[threads, headroom] = stdout.strip().splitlines()[-1]
    assert set(outcomes.values()) <= {"ok", "MemoryError"}, outcomes
    assert outcomes[1, 290] == "ok" and outcomes[16, 900] == "ok", outcomes
    assert outcomes[1, 190] == "MemoryError", outcomes


STREAM_SCRIPT = CAPPED_PREAMBLE + r"""
import json
import convt_blas
convt_blas.set_num_threads(1)
headroom = int(sys.argv[1])
w = np.ones((8, 64, 16), np.float32)
stream = convt_blas.ConvTranspose1dStream(w, stride=8, padding=4)
chunks = [np.ones((1, 8, 10), np.float32), np.ones((1, 8, 100_000), np.float32),
          np.ones((1, 8, 7), np.float32)]
parts = [stream.push(chunks[0])]
cap_address_space(headroom)
try:
    parts.append(stream.push(chunks[1]))
    raised = None
except MemoryError:
    raised = "MemoryError"
    del chunks[1]
lift_cap()
parts += [stream.push(chunks[-1]), stream.flush()]
y = np.concatenate(parts, axis=-1)
expected = convt_blas.conv_transpose1d(np.concatenate(chunks, axis=-1), w, stride=8, padding=4)
print(json.dumps({"raised": raised, "length": y.shape[-1],
                  "equal": bool(y.shape == expected.shape and np.allclose(y, expected))}))
"""


@linux_only
@needs_plain_memory
def test_stream_keeps_its_state_through_a_memory_error():
    """A push that raises MemoryError leaves the stream as before the push (it once
    advanced its input length first and returned 800,136 samples instead of 136)."""
    headrooms = list(range(180, 480, 20))  # the chunk's output is 195 MiB, twice over
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda h: run_script(STREAM_SCRIPT, h), headrooms))
    reports = []
    for headroom, (status, stdout, stderr) in zip(headrooms, results):
        assert status == 0, (headroom, status, stderr[-2000:])
        report = json.loads(stdout.strip().splitlines()[-1])
        assert report["equal"], (headroom, report)
        assert report["length"] == (136 if report["raised"] else 800_136), (headroom, report)
        reports.append(report["raised"])
    assert "MemoryError" in reports and None in reports, reports


# ---------------------------------------------------------------------------
# Racing settings

def test_plan_cache_follows_the_switch_it_was_read_with(rng, monkeypatch):
    """The cache key and the plan read the Winograd switch once: a flip between them
    (here: the key sees True, the kernel False) once stored the GEMM path's sizes
    under the key of F(3,2), and every later call of the shape failed."""
    shape = (1, 256, 800, 128, 16, 8, 4, 0, 1, 1)
    with_winograd = kernels.plan_sizes(shape, winograd=True)[1]
    assert with_winograd > kernels.plan_sizes(shape, winograd=False)[1]
    x, w, b = random_case(rng, 1, 256, 128, 16, 800)
    convt_blas._functional._call_plan.cache_clear()
    try:
        convt_blas.set_winograd(False)
        monkeypatch.setattr(kernels, "winograd_enabled", lambda: True)
        convt_blas.conv_transpose1d(x, w, b, stride=8, padding=4)  # as if flipped meanwhile
        monkeypatch.undo()
        convt_blas.set_winograd(True)
        y = convt_blas.conv_transpose1d(x, w, b, stride=8, padding=4)
    finally:
        convt_blas.set_winograd(True)
        convt_blas._functional._call_plan.cache_clear()
    assert_close(y, conv_transpose1d_reference(x, w, b, stride=8, padding=4), np.float32)


def test_layer_transforms_its_weight_under_the_switch_its_call_read(rng, monkeypatch):
    """A layer's call that read the switch on transforms its weight even if the switch
    is off by the time it does (the transform once read it again, found it off and
    failed with 'invalid convolution parameters')."""
    layer = convt_blas.ConvTranspose1d(128, 128, 16, stride=8, padding=4,
                                       rng=np.random.default_rng(5))
    x = rng.standard_normal((1, 128, 300)).astype(np.float32)
    convt_blas._functional._call_plan.cache_clear()
    try:
        convt_blas.set_winograd(False)
        monkeypatch.setattr(kernels, "winograd_enabled", lambda: True)
        y = layer(x)
    finally:
        monkeypatch.undo()
        convt_blas.set_winograd(True)
        convt_blas._functional._call_plan.cache_clear()
    assert layer._weight_cache.prepared[1] is not None  # prepared, and kept
    assert_close(y, conv_transpose1d_reference(x, layer.weight, layer.bias, stride=8,
                                               padding=4), np.float32)


def test_calls_while_another_thread_flips_winograd(rng):
    """Every call succeeds and is right while the switch flips; none fails afterwards.
    Layers (None as the weight below) transform and keep their weight as they go."""
    shapes = [(1, 256, 600, 64, 4, 2), (2, 64, 520, 64, 8, 4), (1, 128, 300, 128, 16, 8)]
    cases = []
    for n, c_in, length, c_out, k, stride in shapes:
        x, w, b = random_case(rng, n, c_in, c_out, k, length)
        cases.append((x, w, b, stride, conv_transpose1d_reference(x, w, b, stride=stride)))
    for n, c_in, length, c_out, k, stride in shapes[1:]:
        layer = convt_blas.ConvTranspose1d(c_in, c_out, k, stride, rng=rng)
        x = rng.standard_normal((n, c_in, length)).astype(np.float32)
        cases.append((x, None, layer, stride,
                      conv_transpose1d_reference(x, layer.weight, layer.bias, stride=stride)))
    convt_blas._functional._call_plan.cache_clear()
    stop = threading.Event()
    failures, checked = [], []

    def flip():
        while not stop.is_set():
            convt_blas.set_winograd(not convt_blas.get_winograd())

    def call(seed):
        order = np.random.default_rng(seed)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            x, w, b, stride, expected = cases[order.integers(len(cases))]
            try:
                y = b(x) if w is None else convt_blas.conv_transpose1d(x, w, b, stride=stride)
                assert_close(y, expected, np.float32)
                checked.append(1)
            except Exception as exc:  # noqa: BLE001  collected and reported below
                failures.append(repr(exc))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(call, range(3)))
    finally:
        stop.set()
        flipper.join()
        sys.setswitchinterval(switch)
        convt_blas.set_winograd(True)
    assert not failures, (len(failures), len(checked), failures[:3])
    for x, w, b, stride, expected in cases:  # no poisoned plan left behind
        for enabled in (True, False):
            convt_blas.set_winograd(enabled)
            y = b(x) if w is None else convt_blas.conv_transpose1d(x, w, b, stride=stride)
            assert_close(y, expected, np.float32)
    convt_blas.set_winograd(True)


def test_load_state_dict_swaps_weight_and_bias_together(rng):
    """A call racing load_state_dict computes with both new or both old parameters."""
    layer = convt_blas.ConvTranspose1d(4, 6, 3, stride=2)
    x = rng.standard_normal((1, 4, 8)).astype(np.float32)
    states = [{"weight": rng.standard_normal((4, 6, 3)).astype(np.float32),
               "bias": rng.standard_normal(6).astype(np.float32)} for _ in range(2)]
    expected = []
    for state in states:
        layer.load_state_dict(state)
        expected.append(layer(x))
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            layer.load_state_dict(states[i % 2])
            i += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    loader = threading.Thread(target=load)
    loader.start()
    mixed = calls = 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            y = layer(x)
            calls += 1
            mixed += not any(np.array_equal(y, e) for e in expected)
    finally:
        stop.set()
        loader.join()
        sys.setswitchinterval(switch)
    assert mixed == 0, f"{mixed} of {calls} calls mixed one state's weight with the other's bias"


def test_a_stream_shared_by_two_threads_is_refused():
    w = np.ones((8, 4, 16), np.float32)
    stream = convt_blas.ConvTranspose1dStream(w, stride=8)
    entered, release = threading.Event(), threading.Event()
    original = stream._overlap_add

    def slow_overlap_add(part, start):  # holds the first push inside the stream
        entered.set()
        release.wait(10)
        return original(part, start)

    stream._overlap_add = slow_overlap_add
    first = ThreadPoolExecutor(1).submit(stream.push, np.ones((8, 20), np.float32))
    assert entered.wait(10)
    with pytest.raises(RuntimeError, match="another thread"):
        stream.push(np.ones((8, 5), np.float32))
    with pytest.raises(RuntimeError, match="another thread"):
        stream.flush()
    release.set()
    first.result(10)
    del stream._overlap_add
    stream.push(np.ones((8, 5), np.float32))  # usable again, state intact
    assert stream.in_length == 25


def test_blas_count_set_by_another_thread_during_a_call_is_kept():
    """A call's exit restores the count it lowered, not over one set meanwhile."""
    controls = _threads.blas_controls()
    if controls is None:
        pytest.skip("no OpenBLAS controls found behind scipy.linalg.cython_blas")
    original = controls[0]()
    pool = _threads.worker_pool
    try:
        controls[1](2)
        pool.enter()
        assert controls[0]() == 1
        controls[1](3)  # another thread's threadpool_limits(3, "blas") while the call runs
        pool.exit()
        assert controls[0]() == 3
        controls[1](2)
        pool.enter()
        pool.exit()
        assert controls[0]() == 2
    finally:
        controls[1](original)


# ---------------------------------------------------------------------------
# Hostile thread counts

THREAD_COUNT_SCRIPT = r"""
import os, sys
import numpy as np
from convt_blas import _threads, kernels
n_threads = int(sys.argv[1])
rng = np.random.default_rng(0)
shape = (1, 64, 600, 64, 4, 2, 1, 0, 1, 1)
w = rng.standard_normal((64, 64, 4)).astype(np.float32)
one = kernels.prepare_weight(shape, w, 1)
assert np.array_equal(kernels.prepare_weight(shape, w, n_threads), one)
assert np.array_equal(kernels.lay_out_weight_rows(shape, w, n_threads),
                      kernels.lay_out_weight_rows(shape, w, 1))
tiny = (300, 1, 2, 1, 1, 1, 0, 0, 1, 1)  # 300 batch elements of one multiply each
x = rng.standard_normal((300, 1, 2)).astype(np.float32)
call = kernels.plan_call(tiny, False)
outs = []
for threads in (1, n_threads):
    out = np.empty((300, 1, 2), np.float32)
    kernels.run_plan(call, x, (2, 2, 1), np.ones((1, 1, 1), np.float32), None, out,
                np.empty(call.worker_elements * 300 + 1, np.float32), threads)
    outs.append(out)
assert np.array_equal(outs[0], x) and np.array_equal(outs[1], x)
print(len(os.listdir("/proc/self/task")), kernels.max_threads())
"""


@linux_only
@pytest.mark.parametrize("n_threads", [-1, -2 ** 31, 0, INT_MAX], ids=str)
def test_kernel_thread_counts_are_clamped(n_threads):
    """Counts below 1 run on 1 thread, counts above CONVT_BLAS_MAX_THREADS on that many:
    INT_MAX once made OpenMP ask for ~900 GB of stacks and exit."""
    status, stdout, stderr = run_script(THREAD_COUNT_SCRIPT, n_threads, timeout=120)
    assert status == 0, stderr[-2000:]
    os_threads, most = map(int, stdout.split())
    assert os_threads <= most + 8


def test_set_num_threads_refuses_more_than_the_kernels_run(default_threads):
    most = kernels.max_threads()
    assert most == _threads.MAX_THREADS >= 64
    with pytest.raises(ValueError, match=f"at most {most}"):
        convt_blas.set_num_threads(10 ** 9)
    with pytest.raises(ValueError, match=f"at most {most}"):
        convt_blas.set_num_threads(most + 1)
    convt_blas.set_num_threads(most)
    assert convt_blas.get_num_threads() == (most if convt_blas.openmp_enabled() else 1)


@pytest.fixture
def default_threads():
    yield
    convt_blas.set_num_threads(None)


# ---------------------------------------------------------------------------
# Hostile operands

def test_out_overlapping_a_byte_swapped_input_is_refused(rng):
    raw = np.zeros(400, np.float32)
    x = raw.view(">f4")[:80].reshape(2, 4, 10)
    x[...] = rng.standard_normal(x.shape)
    before = raw.copy()
    w = rng.standard_normal((4, 3, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="out overlaps input"):
        convt_blas.conv_transpose1d(x, w, stride=2, out=raw[:138].reshape(2, 3, 23))
    np.testing.assert_array_equal(raw, before)
    with pytest.raises(ValueError, match="out overlaps weight"):
        swapped = np.zeros(200, np.float32)
        convt_blas.conv_transpose1d(np.ones((1, 2, 3), np.float32),
                                    swapped.view(">f4")[:24].reshape(2, 3, 4),
                                    out=swapped[10:28].reshape(1, 3, 6))


def test_masked_arrays_are_refused(rng):
    x = np.ma.masked_array(rng.standard_normal((1, 4, 10)).astype(np.float32))
    x[0, 0, 3] = np.ma.masked
    w = rng.standard_normal((4, 3, 4)).astype(np.float32)
    with pytest.raises(TypeError, match=r"masked array.*filled"):
        convt_blas.conv_transpose1d(x, w)
    with pytest.raises(TypeError, match="masked array"):
        convt_blas.ConvTranspose1dStream(np.ma.masked_array(w))
    np.testing.assert_array_equal(convt_blas.conv_transpose1d(x.filled(0), w),
                                  convt_blas.conv_transpose1d(np.ma.getdata(x) * ~x.mask, w))


def test_set_winograd_takes_numpy_bools():
    try:
        convt_blas.set_winograd(np.bool_(False))
        assert convt_blas.get_winograd() is False
        convt_blas.set_winograd(np.bool_(True))
        assert convt_blas.get_winograd() is True
        with pytest.raises(TypeError):
            convt_blas.set_winograd(1)
    finally:
        convt_blas.set_winograd(True)


BROADCAST_SCRIPT = r"""
import numpy as np
import convt_blas
from convt_blas._memory import available_memory
# A full copy 1 GiB beyond the memory available (an overcommitted allocation of
# that size succeeds, and writing it gets the process killed).
length = (available_memory() + 2 ** 30) // 4
x = np.broadcast_to(np.ones(1, np.float32), (1, 1, length))
try:
    convt_blas.conv_transpose1d(x, np.ones((1, 1, 1), np.float32))
except MemoryError as exc:
    print("MemoryError:", exc)
"""


@linux_only
def test_broadcast_operand_larger_than_memory_is_refused_before_the_copy():
    """A broadcast (stride-0) operand is copied in full: sized first, not OOM-killed."""
    status, stdout, stderr = run_script(BROADCAST_SCRIPT)
    assert status == 0, stderr[-2000:]
    assert "MemoryError: a contiguous copy" in stdout and "GiB" in stdout, stdout


def test_meta_device_state_dict_entry_names_its_key():
    torch = pytest.importorskip("torch", reason="needs torch for a meta-device tensor")
    layer = convt_blas.ConvTranspose1d(4, 6, 3)
    before = layer.weight.copy()
    state = {"weight": torch.empty(4, 6, 3, device="meta"), "bias": torch.zeros(6)}
    with pytest.raises(ValueError, match="'weight' is on the meta device"):
        layer.load_state_dict(state)
    np.testing.assert_array_equal(layer.weight, before)


def test_c_header_states_pointer_alignment():
    with open(os.path.join(ROOT, "include", "convt_blas.h")) as header:
        text = header.read()
    assert "aligned to its element type" in text and "CONVT_BLAS_MAX_THREADS" in text
