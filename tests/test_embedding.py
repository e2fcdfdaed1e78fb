"""The C and Cython APIs, exercised by real extension modules built here.

``examples/c_api`` and ``tests/c_api_harness.c`` reach the kernels through
the function table in the ``convt_blas._C_API`` capsule (``import_convt_blas()``
from ``convt_blas.h``, no linking); ``examples/cython_api`` cimports
``convt_blas.kernels`` and calls the kernel without the GIL from a ``prange``.
Results are compared bit for bit with ``convt_blas.conv_transpose1d``.
"""
import contextlib
import ctypes
import importlib
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import random_array

import convt_blas
from convt_blas import kernels
from convt_blas._validation import check_arguments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPSULE_NAME = b"convt_blas._C_API"  # outlives every capsule made here
HARNESS_SETUP = """
import convt_blas
from setuptools import Extension, setup

setup(name="c_api_harness", ext_modules=[Extension(
    "c_api_harness", ["c_api_harness.c"], include_dirs=[convt_blas.get_include()])])
"""

capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))
capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p,
                                ctypes.c_void_p)(("PyCapsule_New", ctypes.pythonapi))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The two examples and the harness, each built by its setup.py (concurrently), imported."""
    tmp = tmp_path_factory.mktemp("embedding")
    dirs = {"convt_c_example": tmp / "c_api", "convt_cython_example": tmp / "cython_api",
            "c_api_harness": tmp / "harness"}
    shutil.copytree(os.path.join(ROOT, "examples", "c_api"), dirs["convt_c_example"])
    shutil.copytree(os.path.join(ROOT, "examples", "cython_api"), dirs["convt_cython_example"])
    dirs["c_api_harness"].mkdir()
    shutil.copy(os.path.join(ROOT, "tests", "c_api_harness.c"), dirs["c_api_harness"])
    (dirs["c_api_harness"] / "setup.py").write_text(HARNESS_SETUP)

    # Built as a user builds them: in this environment, whose convt_blas (installed, or
    # editable as in development) gives get_include() and the .pxd, nothing added to the
    # path. -O0: these modules only pass pointers, and unoptimised they build in half the time.
    env = dict(os.environ, CFLAGS=os.environ.get("CFLAGS", "") + " -O0")
    builds = [(directory, subprocess.Popen(
        [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=directory, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for directory in dirs.values()]
    for directory, process in builds:
        output = process.communicate(timeout=600)[0]
        if process.returncode:
            pytest.fail(f"building {directory} failed:\n{output}")

    modules = {}
    for name, directory in dirs.items():
        sys.path.insert(0, str(directory))
        modules[name] = importlib.import_module(name)
    yield SimpleNamespace(c_example=modules["convt_c_example"],
                          cython_example=modules["convt_cython_example"],
                          harness=modules["c_api_harness"])
    for name, directory in dirs.items():
        sys.path.remove(str(directory))
        sys.modules.pop(name, None)


# (batch, C_in, L_in, C_out / groups, K, stride, padding, output_padding, dilation, groups):
# several work units (batch, groups, tiles of a long input) so two threads share the work.
CASES = [
    (3, 4, 17, 5, 3, 2, 1, 1, 1, 1),
    (2, 6, 700, 2, 4, 3, 2, 0, 2, 3),
    (1, 8, 40, 16, 7, 1, 3, 0, 1, 1),
]


def _problem(rng, case, dtype, bias=True, channels_last=False):
    """Arrays, the checked ConvSpec and keyword arguments of the Python API for a case."""
    n, c_in, l_in, c_out_g, k, stride, padding, output_padding, dilation, groups = case
    x = random_array(rng, (n, c_in, l_in), dtype)
    if channels_last:  # unit stride along channels
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    w = random_array(rng, (c_in, c_out_g, k), dtype)
    b = random_array(rng, (c_out_g * groups,), dtype) if bias else None
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  groups=groups, dilation=dilation)
    spec = check_arguments(x.shape, w.shape, None if b is None else b.shape, **kwargs)
    return x, w, b, spec, kwargs


def _with_params(params, **changes):
    """The kernel parameter tuple ``params`` with some fields changed."""
    fields = ("batch in_channels in_length out_channels kernel_size stride padding "
              "output_padding dilation groups").split()
    values = dict(zip(fields, params), **changes)
    return tuple(values[f] for f in fields)


def _element_strides(x):
    return tuple(s // x.itemsize for s in x.strides)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n_threads, own_workspace, channels_last",
                         [(1, True, False), (2, False, False), (2, True, True)])
def test_c_api_matches_python_bitwise(built, rng, dtype, case, n_threads, own_workspace,
                                      channels_last):
    h = built.harness
    x, w, b, spec, kwargs = _problem(rng, case, dtype, channels_last=channels_last)
    expected = convt_blas.conv_transpose1d(x, w, b, **kwargs)
    params = spec.kernel_params
    workspace = None
    if own_workspace:
        workspace = np.empty(h.sizes("workspace_length", params, n_threads), dtype)
    out = np.full(spec.out_shape, np.nan, dtype)
    status = h.call(np.dtype(dtype).char, params, x, _element_strides(x), w, b, out,
                    workspace, n_threads)
    assert status == h.OK
    assert out.tobytes() == expected.tobytes()


def test_c_api_sizes_match_the_kernel(built, rng):
    h = built.harness
    for case in CASES:
        spec = _problem(rng, case, np.float64)[3]
        units, per_worker = kernels.plan_sizes(spec.kernel_params)
        assert h.sizes("output_length", spec.kernel_params) == spec.out_length
        assert h.sizes("units_per_sample", spec.kernel_params) == units
        assert h.sizes("workspace_length", spec.kernel_params, 1) == per_worker
    for name in ("output_length", "workspace_length", "units_per_sample"):
        assert h.sizes(name, None) == -1


def test_c_api_status_codes(built, rng):
    """Each bad argument gets its status, and ``out`` is left as it was."""
    h = built.harness
    x, w, b, spec, kwargs = _problem(rng, CASES[0], np.float64)
    params, strides = spec.kernel_params, _element_strides(x)
    out = np.full(spec.out_shape, np.nan)
    untouched = out.tobytes()
    workspace = np.empty(h.sizes("workspace_length", params, 1))

    def status(params=params, x=x, strides=strides, w=w, b=b, out=out, workspace=workspace,
               n_threads=1):
        return h.call("d", params, x, strides, w, b, out, workspace, n_threads)

    def with_params(**changes):
        return _with_params(params, **changes)

    assert status(params=None) == h.ERR_NULL_POINTER
    assert status(x=None) == h.ERR_NULL_POINTER
    assert status(w=None) == h.ERR_NULL_POINTER
    assert status(out=None) == h.ERR_NULL_POINTER
    for bad in (dict(groups=3), dict(stride=0), dict(in_length=0), dict(kernel_size=0),
                dict(output_padding=2), dict(padding=-1), dict(out_channels=0)):
        assert status(params=with_params(**bad)) == h.ERR_BAD_SHAPE, bad
        assert h.sizes("workspace_length", with_params(**bad), 1) == -1
    assert status(params=with_params(batch=2 ** 62)) == h.ERR_OVERFLOW
    assert status(strides=(strides[0], 2, 2)) == h.ERR_BAD_STRIDES
    assert status(strides=(strides[0], x.shape[2] - 1, 1)) == h.ERR_BAD_STRIDES
    # Too small for this plan and for the plan of the other Winograd setting
    # (which a workspace sized before set_winograd changed would run instead).
    smallest = min(workspace.size, h.sizes("workspace_length", params, 1))
    with winograd_off():
        smallest = min(smallest, h.sizes("workspace_length", params, 1))
    assert status(workspace=workspace[:smallest - 1]) == h.ERR_WORKSPACE_TOO_SMALL
    assert status(workspace=workspace, n_threads=2) == h.ERR_WORKSPACE_TOO_SMALL
    assert out.tobytes() == untouched
    assert status(b=None) == h.OK  # and bias may be NULL
    assert out.tobytes() == convt_blas.conv_transpose1d(x, w, **kwargs).tobytes()


def test_strerror_matches_the_python_messages(built):
    h = built.harness
    codes = [h.ERR_NULL_POINTER, h.ERR_BAD_SHAPE, h.ERR_WORKSPACE_TOO_SMALL, h.ERR_OVERFLOW]
    for code in codes:
        assert h.strerror(code) == kernels.status_message(code)
    assert h.strerror(h.OK) == "success"
    assert "unknown" in h.strerror(12345)


def test_import_uses_the_capsule_table(built):
    h = built.harness
    address, abi, api = h.table()
    assert address == capsule_pointer(convt_blas._C_API, CAPSULE_NAME)
    assert (abi, api) == (h.ABI_VERSION, h.API_VERSION)


def test_import_checks_the_table_versions(built, monkeypatch):
    h = built.harness
    real = capsule_pointer(convt_blas._C_API, CAPSULE_NAME)
    for abi, api, accepted in [(h.ABI_VERSION + 1, h.API_VERSION, False),
                               (h.ABI_VERSION, h.API_VERSION - 1, False),
                               (h.ABI_VERSION, h.API_VERSION + 1, True)]:
        fake = ctypes.create_string_buffer(ctypes.string_at(real, h.TABLE_SIZE))
        versions = (ctypes.c_uint * 2)(abi, api)  # the table's first two fields
        ctypes.memmove(fake, versions, ctypes.sizeof(versions))
        monkeypatch.setattr(convt_blas, "_C_API",
                            capsule_new(ctypes.addressof(fake), CAPSULE_NAME, None))
        try:
            if accepted:  # a newer library with appended entries serves older callers
                h.reimport()
                assert h.table() == (ctypes.addressof(fake), abi, api)
            else:
                with pytest.raises(ImportError, match="version"):
                    h.reimport()
                assert h.table()[0] == real
        finally:
            monkeypatch.undo()
            h.reimport()
    assert h.table()[0] == real


# Layers that keep their weight transformed for F(3,2): 128 input positions take it with
# the transform kept (512 without), several channel blocks, two groups; and for F(3,4)
# and F(4,3), which only a prepared weight takes (1.5 and 2 times the weight).
PREPARED_CASES = [
    (2, 128, 200, 64, 8, 4, 2, 0, 1, 1),
    (1, 192, 600, 48, 4, 2, 1, 1, 1, 2),
    (2, 256, 260, 64, 16, 4, 5, 1, 1, 1),
    (1, 256, 300, 256, 3, 1, 1, 0, 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("case", PREPARED_CASES)
def test_c_api_prepared_weight_matches_the_layer_bitwise(built, rng, dtype, case):
    h = built.harness
    x, w, b, spec, kwargs = _problem(rng, case, dtype)
    params = spec.kernel_params
    length = h.sizes("prepared_weight_length", params)
    assert length == (1.5 if case[4] == 4 * case[5] else 2) * w.size
    prepared = np.full(length, np.nan, dtype)
    assert h.prepare(np.dtype(dtype).char, params, w, prepared, 2) == h.OK
    assert prepared.tobytes() == kernels.prepare_weight(params, w).tobytes()
    layer = convt_blas.ConvTranspose1d(x.shape[1], spec.out_channels, w.shape[2],
                                       bias=True, dtype=dtype, **kwargs)
    layer.load_state_dict({"weight": w, "bias": b})
    expected = layer(x)
    for n_threads in (1, 2):
        workspace = np.empty(h.sizes("workspace_length_prepared", params, n_threads), dtype)
        out = np.full(spec.out_shape, np.nan, dtype)
        status = h.call_prepared(np.dtype(dtype).char, params, x, _element_strides(x), w,
                                 prepared, b, out, workspace, n_threads)
        assert status == h.OK
        assert out.tobytes() == expected.tobytes()
    assert kernels.takes_prepared_weight(params)


@contextlib.contextmanager
def winograd_off():
    convt_blas.set_winograd(False)
    try:
        yield
    finally:
        convt_blas.set_winograd(True)


def test_c_api_workspace_sized_under_the_other_winograd_setting(built, rng):
    """A workspace sized before set_winograd changed (another thread's change) runs
    the plan it was sized for instead of failing."""
    h = built.harness
    params = (1, 256, 800, 128, 16, 8, 4, 0, 1, 1)
    x = rng.standard_normal((1, 256, 800)).astype(np.float32)
    w = rng.standard_normal((256, 128, 16)).astype(np.float32)
    with winograd_off():
        gemm_workspace = np.empty(h.sizes("workspace_length", params, 1), np.float32)
        expected = convt_blas.conv_transpose1d(x, w, stride=8, padding=4)
    assert h.sizes("workspace_length", params, 1) > gemm_workspace.size  # F(3,2) needs more
    out = np.empty_like(expected)
    assert h.call("f", params, x, _element_strides(x), w, None, out, gemm_workspace, 1) == h.OK
    np.testing.assert_array_equal(out, expected)


def test_c_api_prepared_weight_status_codes(built, rng):
    h = built.harness
    x, w, b, spec, kwargs = _problem(rng, PREPARED_CASES[0], np.float64)
    params, strides = spec.kernel_params, _element_strides(x)
    prepared = np.empty(h.sizes("prepared_weight_length", params))
    assert h.prepare("d", params, w, prepared, 1) == h.OK
    workspace = np.empty(h.sizes("workspace_length_prepared", params, 1))
    out = np.full(spec.out_shape, np.nan)
    untouched = out.tobytes()

    def status(params=params, prepared=prepared, workspace=workspace):
        return h.call_prepared("d", params, x, strides, w, prepared, b, out, workspace, 1)

    assert h.prepare("d", None, w, prepared, 1) == h.ERR_NULL_POINTER
    assert h.prepare("d", params, None, prepared, 1) == h.ERR_NULL_POINTER
    assert h.prepare("d", params, w, prepared[:-1], 1) == h.ERR_BAD_PREPARED
    plain = tuple(params[:4]) + (7,) + tuple(params[5:])  # K != 2 * stride: never F(3,2)
    assert h.sizes("prepared_weight_length", plain) == 0
    assert h.prepare("d", plain, w, prepared, 1) == h.ERR_BAD_SHAPE
    assert h.sizes("prepared_weight_length", None) == -1
    assert h.sizes("workspace_length_prepared", None, 1) == -1
    assert status(params=None) == h.ERR_NULL_POINTER
    assert status(prepared=prepared[:-1]) == h.ERR_BAD_PREPARED
    # Too small for this plan and for the plan of the other Winograd setting
    # (which a workspace sized before set_winograd changed would run instead).
    smallest = min(workspace.size, h.sizes("workspace_length", params, 1))
    with winograd_off():
        smallest = min(smallest, h.sizes("workspace_length", params, 1))
    assert status(workspace=workspace[:smallest - 1]) == h.ERR_WORKSPACE_TOO_SMALL
    assert out.tobytes() == untouched
    assert h.strerror(h.ERR_BAD_PREPARED) == kernels.status_message(h.ERR_BAD_PREPARED)
    # Without a prepared weight it is the plain kernel.
    plain_workspace = np.empty(h.sizes("workspace_length", params, 1))
    assert status(prepared=None, workspace=plain_workspace) == h.OK
    assert out.tobytes() == convt_blas.conv_transpose1d(x, w, b, **kwargs).tobytes()
    # A short input takes the plain path; the prepared weight is checked all the same.
    short = (params[0], params[1], 100) + tuple(params[3:])
    x_short = np.ascontiguousarray(x[:, :, :100])
    out_short = np.empty((params[0], spec.out_channels, h.sizes("output_length", short)))
    for passed, expected in ((prepared[:5], h.ERR_BAD_PREPARED), (prepared, h.OK)):
        assert h.call_prepared("d", short, x_short, _element_strides(x_short), w, passed, b,
                               out_short, None, 1) == expected
    assert out_short.tobytes() == convt_blas.conv_transpose1d(x_short, w, b, **kwargs).tobytes()


@pytest.mark.parametrize("case", CASES)
def test_c_example_matches_python_bitwise(built, rng, case):
    x, w, _, spec, kwargs = _problem(rng, case, np.float64, bias=False)
    out = np.full(spec.out_shape, np.nan)
    built.c_example.conv_transpose1d(x, w, out, n_threads=2, **kwargs)
    assert out.tobytes() == convt_blas.conv_transpose1d(x, w, **kwargs).tobytes()


def test_c_example_errors(built, rng):
    c_example = built.c_example
    x, w, _, spec, kwargs = _problem(rng, CASES[0], np.float64, bias=False)
    with pytest.raises(ValueError, match="does not fit"):
        c_example.conv_transpose1d(x, w, np.empty(spec.out_shape[:2] + (1,)), **kwargs)
    with pytest.raises(ValueError, match="float64"):
        c_example.conv_transpose1d(x.astype(np.float32), w, np.empty(spec.out_shape), **kwargs)
    x3 = random_array(rng, (2, 3, 10), np.float64)  # 3 channels in 2 groups: the kernel refuses
    w3 = random_array(rng, (3, 2, 3), np.float64)
    with pytest.raises(ValueError, match=r"invalid convolution parameters \(status -2\)"):
        c_example.conv_transpose1d(x3, w3, np.empty((2, 4, 12)), groups=2)


@pytest.mark.parametrize("case", CASES)
def test_cython_example_prange_matches_python_bitwise(built, rng, case):
    items = 5  # each with its own input and weight
    problems = [_problem(rng, case, np.float64, bias=False) for _ in range(items)]
    x = np.stack([p[0] for p in problems])
    w = np.stack([p[1] for p in problems])
    spec, kwargs = problems[0][3], problems[0][4]
    out = np.full((items, *spec.out_shape), np.nan)
    built.cython_example.conv_transpose1d_many(x, w, out, num_threads=2, **kwargs)
    for item in range(items):
        expected = convt_blas.conv_transpose1d(x[item], w[item], **kwargs)
        assert out[item].tobytes() == expected.tobytes()


def test_cython_example_errors(built, rng):
    many = built.cython_example.conv_transpose1d_many
    x = random_array(rng, (2, 2, 3, 10), np.float64)  # 3 channels in 2 groups: the kernel refuses
    w = random_array(rng, (2, 3, 2, 3), np.float64)
    with pytest.raises(ValueError, match=r"invalid convolution parameters \(status -2\)"):
        many(x, w, np.empty((2, 2, 4, 12)), groups=2)
    with pytest.raises(ValueError, match="does not fit"):
        many(x, w, np.empty((2, 2, 4, 13)))


def test_docs_show_the_examples_tested_here():
    # The C and Cython API page includes the files themselves, so it shows what is tested.
    with open(os.path.join(ROOT, "docs", "c_api.rst"), encoding="utf-8") as f:
        page = f.read()
    for name in ("c_api/convt_c_example.c", "c_api/setup.py",
                 "cython_api/convt_cython_example.pyx", "cython_api/setup.py"):
        assert f".. literalinclude:: ../examples/{name}\n" in page, \
            f"docs/c_api.rst does not include examples/{name}"


# The backward pass (API version 3): groups, dilation, output_padding, batch 2.
BACKWARD_CASES = CASES + [
    (2, 6, 9, 4, 3, 2, 1, 1, 2, 3),
    (2, 4, 300, 3, 5, 3, 0, 2, 1, 2),
    (2, 8, 40, 16, 8, 2, 3, 1, 1, 2),  # grad_input by phases, the weight laid out by tap
]


def _backward_problem(rng, case, dtype):
    x, w, _, spec, kwargs = _problem(rng, case, dtype, bias=False)
    go = random_array(rng, spec.out_shape, dtype)
    return go, x, w, spec, kwargs


def _ordered_bias(go):
    """grad_output summed over batch and length in order, as the C entries sum it."""
    rows = np.ascontiguousarray(go.transpose(1, 0, 2)).reshape(go.shape[1], -1)
    return rows.cumsum(axis=1, dtype=go.dtype)[:, -1] if rows.shape[1] else rows.sum(axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("case", BACKWARD_CASES)
@pytest.mark.parametrize("n_threads, own_workspace", [(1, True), (2, False), (3, True)])
def test_c_api_backward_matches_python_bitwise(built, rng, dtype, case, n_threads,
                                               own_workspace):
    h = built.harness
    go, x, w, spec, kwargs = _backward_problem(rng, case, dtype)
    gi_expected, gw_expected, _ = convt_blas.conv_transpose1d_backward(go, x, w, **kwargs)
    params = spec.kernel_params
    workspace = None
    if own_workspace:
        workspace = np.empty(h.sizes("backward_workspace_length", params, n_threads), dtype)
    gi, gw = np.full(x.shape, np.nan, dtype), np.full(w.shape, np.nan, dtype)
    gb = np.full(go.shape[1], np.nan, dtype)
    assert h.call_backward(np.dtype(dtype).char, params, go, x, w, gi, gw, gb, workspace,
                           n_threads) == h.OK
    assert gi.tobytes() == gi_expected.tobytes()
    assert gw.tobytes() == gw_expected.tobytes()
    assert gb.tobytes() == _ordered_bias(go).tobytes()
    np.testing.assert_allclose(gb, go.sum(axis=(0, 2)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False),
                                  (False, False, True), (False, False, False)])
def test_c_api_backward_masks_by_null_pointers(built, rng, dtype, mask):
    """NULL gradients are not computed; the operands they alone need may be NULL too."""
    h = built.harness
    go, x, w, spec, kwargs = _backward_problem(rng, BACKWARD_CASES[3], dtype)
    gi_expected, gw_expected, _ = convt_blas.conv_transpose1d_backward(go, x, w, **kwargs)
    gi = np.full(x.shape, np.nan, dtype) if mask[0] else None
    gw = np.full(w.shape, np.nan, dtype) if mask[1] else None
    gb = np.full(go.shape[1], np.nan, dtype) if mask[2] else None
    assert h.call_backward(np.dtype(dtype).char, spec.kernel_params, go,
                           x if mask[1] else None, w if mask[0] else None, gi, gw, gb,
                           None, 2) == h.OK
    if mask[0]:
        assert gi.tobytes() == gi_expected.tobytes()
    if mask[1]:
        assert gw.tobytes() == gw_expected.tobytes()
    if mask[2]:
        assert gb.tobytes() == _ordered_bias(go).tobytes()


def test_c_api_backward_empty_batch(built, rng):
    h = built.harness
    go, x, w, spec, kwargs = _backward_problem(rng, (0, 4, 17, 5, 3, 2, 1, 1, 1, 1),
                                               np.float64)
    gw, gb = np.full(w.shape, np.nan), np.full(go.shape[1], np.nan)
    assert h.call_backward("d", spec.kernel_params, go, x, w, np.empty(x.shape), gw, gb,
                           None, 1) == h.OK
    assert not gw.any() and not gb.any()


def test_c_api_backward_sizes_and_threads(built, rng):
    """The workspace length: both gradients' shared elements (grad_weight's split sums,
    grad_input's weight by tap), then backward_sizes' per-worker elements times the
    clamped workers."""
    h = built.harness
    for case in BACKWARD_CASES:
        params = _problem(rng, case, np.float64)[3].kernel_params
        (in_units, in_elements, in_shared, w_units, w_elements,
         w_shared) = kernels.backward_sizes(params)
        shared = in_shared + w_shared
        per_worker, units = max(in_elements, w_elements), max(in_units, w_units)
        for n_threads, workers in [(1, 1), (2, 2), (0, 1), (-1, 1), (2 ** 31 - 1, 256)]:
            assert (h.sizes("backward_workspace_length", params, n_threads)
                    == shared + per_worker * max(1, min(workers, units))), (case, n_threads)
    assert h.sizes("backward_workspace_length", None) == -1


def test_c_api_backward_status_codes(built, rng):
    """Each bad argument gets its status, and the gradients are left as they were."""
    h = built.harness
    go, x, w, spec, kwargs = _backward_problem(rng, BACKWARD_CASES[3], np.float64)
    params = spec.kernel_params
    gi, gw = np.full(x.shape, np.nan), np.full(w.shape, np.nan)
    gb = np.full(go.shape[1], np.nan)
    untouched = [a.tobytes() for a in (gi, gw, gb)]
    workspace = np.empty(h.sizes("backward_workspace_length", params, 1))

    def status(params=params, go=go, x=x, w=w, gi=gi, gw=gw, gb=gb, workspace=workspace,
               n_threads=1):
        return h.call_backward("d", params, go, x, w, gi, gw, gb, workspace, n_threads)

    def with_params(**changes):
        return _with_params(params, **changes)

    assert status(params=None) == h.ERR_NULL_POINTER
    assert status(go=None) == h.ERR_NULL_POINTER
    assert status(x=None) == h.ERR_NULL_POINTER  # grad_weight needs the input
    assert status(w=None) == h.ERR_NULL_POINTER  # grad_input needs the weight
    for bad in (dict(groups=4), dict(stride=0), dict(in_length=0), dict(kernel_size=0),
                dict(output_padding=-1), dict(padding=-1), dict(out_channels=0),
                dict(dilation=0), dict(batch=-1), dict(padding=100)):
        assert status(params=with_params(**bad)) == h.ERR_BAD_SHAPE, bad
        assert h.sizes("backward_workspace_length", with_params(**bad), 1) == -1, bad
    assert status(params=with_params(batch=2 ** 62)) == h.ERR_OVERFLOW
    assert status(params=with_params(kernel_size=2 ** 40)) == h.ERR_OVERFLOW
    assert status(workspace=workspace[:-1]) == h.ERR_WORKSPACE_TOO_SMALL
    assert status(workspace=workspace, n_threads=2) == h.ERR_WORKSPACE_TOO_SMALL
    assert [a.tobytes() for a in (gi, gw, gb)] == untouched
    # Thread counts out of range are clamped: 1 for -1, CONVT_BLAS_MAX_THREADS for INT_MAX.
    expected = convt_blas.conv_transpose1d_backward(go, x, w, **kwargs)
    for n_threads in (-1, 2 ** 31 - 1):
        big = np.empty(h.sizes("backward_workspace_length", params, n_threads))
        gi[...] = gw[...] = np.nan
        assert status(workspace=big, n_threads=n_threads) == h.OK
        assert gi.tobytes() == expected[0].tobytes()
        assert gw.tobytes() == expected[1].tobytes()
        assert status(workspace=None, n_threads=n_threads) == h.OK
        assert gi.tobytes() == expected[0].tobytes()
    with pytest.raises(ValueError, match="unknown dtype"):
        h.call_backward("q", params, go, x, w, gi, gw, gb, None, 1)
