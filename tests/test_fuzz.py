"""Fuzzing conv_transpose1d over valid and invalid arguments.

Every call either returns the result of the reference (tests/reference.py) or
raises ValueError, TypeError or MemoryError. Nothing else: no other exception,
no crash, and no write to the caller's memory except a successful ``out=``
(inputs are compared byte for byte before and after every call).

``CONVT_BLAS_FUZZ_EXAMPLES`` sets hypothesis' ``max_examples`` per test
(default 100, which keeps CI fast); e.g. ``CONVT_BLAS_FUZZ_EXAMPLES=5000``.
"""
import numbers
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import convt_blas
from conftest import DlpackOnly, assert_close
from reference import conv_transpose1d_reference

FUZZ_EXAMPLES = int(os.environ.get("CONVT_BLAS_FUZZ_EXAMPLES", "100"))
fuzz_settings = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

ALLOWED_ERRORS = (ValueError, TypeError, MemoryError)
SUPPORTED = [np.float16, np.float32, np.float64, np.complex64, np.complex128]
UNSUPPORTED = [np.int8, np.int32, np.int64, np.uint8, np.bool_, np.longdouble, object, "U1",
               "M8[s]"]
PARAMS = ("stride", "padding", "output_padding", "dilation", "groups")
INT64_MAX = 2 ** 63 - 1
# Outputs in this window of bytes may be allocatable (overcommit) and would then be
# written in full; below it they are cheap, above it no machine can map them.
RISKY_OUTPUT_BYTES = (2 ** 26, 2 ** 48)

# Parameter values from anywhere: bad types, signs and sizes, and int-likes.
WILD_PARAMETER = st.one_of(
    st.integers(-3, 8),
    st.sampled_from([2 ** 31 - 1, 2 ** 31, 2 ** 32 + 1, 2 ** 62, INT64_MAX, 2 ** 63, 2 ** 64,
                     10 ** 30, -2 ** 63, -2 ** 64]),
    st.sampled_from([np.uint64(2 ** 64 - 1), np.int64(-1), np.int8(-128), np.int32(3)]),
    st.sampled_from([2.0, 1.5, float("nan"), float("inf"), True, False, None, "1", b"1", (),
                     (1, 2), [1, 1], (2.0,), ([1],), (True,), 1 + 0j]),
    st.builds(np.array, st.sampled_from([2, [2]])),
    st.builds(object),
)

# Memory layouts with the same values (or, for views with repeated memory, new ones).
LAYOUTS = ["contiguous", "fortran", "reversed", "strided", "channels_last", "broadcast",
           "overlapping", "unaligned", "big_endian", "readonly"]


class ArrayInterface:
    """An array-like known only through ``__array__``."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array


class BrokenDlpack:
    """A DLPack producer whose export fails with an exception of its own."""

    def __dlpack__(self, **kwargs):
        raise AttributeError("no buffer to export")

    def __dlpack_device__(self):
        return (1, 0)


class BrokenArray:
    """An array-like whose conversion fails with an unrelated exception."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("conversion failed")


def make_array(rng, shape, dtype, special):
    """Random values of ``dtype``; NaN and +-Inf sprinkled in when ``special``."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fc" or dtype == np.longdouble:
        return np.zeros(shape, dtype)
    values = rng.standard_normal(shape)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    if special and values.size:
        flat = values.reshape(-1)
        where = rng.integers(0, flat.size, size=1 + flat.size // 8)
        flat[where] = rng.choice([np.nan, np.inf, -np.inf], size=where.size)
    return values.astype(dtype)


def relayout(a, layout, rng):
    """``a`` in another memory layout (a view of fresh memory; values kept unless noted)."""
    if a.ndim == 0 or a.dtype == object:
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "reversed":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if layout == "strided":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if layout == "channels_last" and a.ndim >= 2:
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, -2, -1)), -1, -2)
    if layout == "broadcast" and a.shape[0] > 0:
        return np.broadcast_to(a[:1], a.shape)  # stride 0: every row is the first
    if layout == "overlapping" and a.ndim == 3 and a.size:
        # Batch elements one channel row apart, so they share memory.
        n, c, length = a.shape
        base = make_array(rng, (n - 1) * length + c * length, a.dtype, False)
        item = a.itemsize
        return np.lib.stride_tricks.as_strided(base, a.shape, (length * item, length * item, item),
                                               writeable=False)
    if layout == "unaligned" and a.itemsize > 1:
        buffer = np.zeros(a.nbytes + 1, np.uint8)
        shifted = buffer[1:].view(a.dtype).reshape(a.shape)
        shifted[...] = a
        return shifted
    if layout == "big_endian" and a.dtype.kind in "fciu":
        return a.astype(a.dtype.newbyteorder(">"))
    if layout == "readonly":
        frozen = a.copy()
        frozen.flags.writeable = False
        return frozen
    return a


def as_int(value, allow_tuple=True):
    """The int a parameter stands for, as torch reads it, or None if it is not one."""
    if allow_tuple and isinstance(value, (tuple, list)):
        if len(value) != 1:
            return None
        value = value[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def int_forms(value):
    """Ways to pass the int ``value``: int, NumPy int, 1-tuple, 1-list."""
    return st.sampled_from([value, np.int64(value), (value,), [value]])


@st.composite
def valid_calls(draw):
    """Arguments of a call that must succeed: shapes, layouts, dtypes, NaN/Inf, out=."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    tier = draw(st.sampled_from(["small"] * 6 + ["tiled", "blocked"]))
    groups = draw(st.integers(1, 3))
    c_in_g = draw(st.integers(1, 4))
    c_out_g = draw(st.integers(150, 170)) if tier == "blocked" else draw(st.integers(1, 4))
    k = draw(st.integers(1, 5))
    length = draw(st.integers(300, 800)) if tier == "tiled" else draw(st.integers(1, 24))
    stride, dilation = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))
    full = (length - 1) * stride + dilation * (k - 1) + output_padding + 1
    padding = draw(st.integers(0, (full - 1) // 2))
    batch = draw(st.integers(0, 3))
    dtype = np.dtype(draw(st.sampled_from(SUPPORTED)))
    special = draw(st.booleans())

    x_shape = (batch, c_in_g * groups, length) if draw(st.booleans()) else (c_in_g * groups, length)
    x = relayout(make_array(rng, x_shape, dtype, special), draw(st.sampled_from(LAYOUTS)), rng)
    w = relayout(make_array(rng, (c_in_g * groups, c_out_g, k), dtype, special),
                 draw(st.sampled_from(LAYOUTS)), rng)
    b = None
    if draw(st.booleans()):
        b = relayout(make_array(rng, (c_out_g * groups,), dtype, special),
                     draw(st.sampled_from(LAYOUTS)), rng)
    params = dict(stride=draw(int_forms(stride)), padding=draw(int_forms(padding)),
                  output_padding=draw(int_forms(output_padding)),
                  dilation=draw(int_forms(dilation)), groups=groups)
    out_shape = (x_shape[0], c_out_g * groups, full - 2 * padding)[-len(x_shape):]
    out = np.full(out_shape, 7, dtype.newbyteorder("=")) if draw(st.booleans()) else None
    wrapper = draw(st.sampled_from([None, None, ArrayInterface, DlpackOnly]))
    passed_x = x
    if wrapper is ArrayInterface or (wrapper is DlpackOnly and x.dtype.isnative):
        passed_x = wrapper(x)
    return dict(passed=(passed_x, w, b), seen=[x, w, b], params=params, out=out)


def mutate_operand(draw, case, rng):
    """Replace input, weight or bias by something wrong (or by an odd but valid form)."""
    index = draw(st.integers(0, 2))
    passed, seen = list(case["passed"]), case["seen"]
    a = seen[index]
    kind = draw(st.sampled_from(["dtype", "rank", "zero", "resize", "wrap", "huge_batch"]))
    if a is None:
        a = make_array(rng, draw(st.sampled_from([(2,), (1, 2), ()])), np.float32, False)
    elif a.size > 2 ** 24:
        a = a[:1]  # an earlier huge_batch view: keep it cheap to copy
    if kind == "dtype":
        a = make_array(rng, a.shape, draw(st.sampled_from(SUPPORTED + UNSUPPORTED)), False)
    elif kind == "rank":
        if draw(st.booleans()) or a.ndim == 0:
            a = a[np.newaxis]
        else:
            a = np.asarray(a[0]) if a.shape[0] else np.zeros(a.shape[1:], a.dtype)
    elif kind == "zero" and a.ndim:
        a = np.take(a, [], axis=draw(st.integers(0, a.ndim - 1)))
    elif kind == "resize" and a.ndim:
        axis = draw(st.integers(0, a.ndim - 1))
        shape = list(a.shape)
        shape[axis] = max(0, shape[axis] + draw(st.sampled_from([-1, 1, 2])))
        a = make_array(rng, tuple(shape), a.dtype, False)
    elif kind == "huge_batch" and a.ndim == 3 and a.size:
        # A batch as large as NumPy can describe, in no memory (stride 0).
        a = np.broadcast_to(a[:1], (max(2, 2 ** 60 // max(1, a[0].nbytes)),) + a.shape[1:])
    seen[index] = a
    passed[index] = a
    if kind == "wrap":
        choice = draw(st.sampled_from(["list", "ragged", "interface", "dlpack", "broken", "none",
                                       "string", "dict"]))
        seen[index] = None  # recomputed below when the wrapper stands for an array
        if choice == "list":
            passed[index] = a.tolist()
            seen[index] = np.asarray(passed[index])
        elif choice == "ragged":
            passed[index] = [[1.0, 2.0], [3.0]]
        elif choice in ("interface", "dlpack"):
            passed[index] = (ArrayInterface if choice == "interface" else DlpackOnly)(a)
            seen[index] = a
        else:
            passed[index] = {"broken": BrokenArray(), "none": None, "string": "abc",
                             "dict": {"data": 1}}[choice]
    case["passed"] = tuple(passed)


def mutate_out(draw, case, rng):
    """An ``out=`` that is wrong in one way (or sometimes right)."""
    x = case["seen"][0]
    shape = expected_shape(case)
    if shape is None or max(shape) > 2 ** 22 or np.prod(shape, dtype=object) > 2 ** 22:
        shape = (1, 1, 1)
    dtype = x.dtype.newbyteorder("=") if isinstance(x, np.ndarray) else np.dtype(np.float32)
    kind = draw(st.sampled_from(["good", "shape", "dtype", "strided", "fortran", "readonly",
                                 "overlaps_input", "list", "scalar"]))
    if kind == "shape":
        shape = shape[:-1] + (shape[-1] + 1,)
    if kind == "dtype":
        dtype = np.dtype(draw(st.sampled_from(SUPPORTED + UNSUPPORTED)))
    if kind in ("list", "scalar"):
        case["out"] = [7.0] if kind == "list" else 7.0
        return
    if (kind == "overlaps_input" and isinstance(x, np.ndarray) and x.dtype == dtype
            and 0 < x.size <= 2 ** 22):
        # One buffer: the input, then the output starting on the input's last element.
        size = int(np.prod(shape))
        buffer = np.empty(x.size + size, dtype)
        buffer[:x.size] = x.reshape(-1)
        case["seen"][0] = buffer[:x.size].reshape(x.shape)
        case["passed"] = (case["seen"][0],) + tuple(case["passed"][1:])
        out = buffer[x.size - 1:x.size - 1 + size].reshape(shape)
    else:
        out = np.zeros(shape, dtype)
        if kind in ("strided", "fortran"):
            out = relayout(out, kind, rng)
        elif kind == "readonly":
            out.flags.writeable = False
    if out.flags.writeable and out.dtype.kind in "fc":
        out[...] = 7
    case["out"] = out


@st.composite
def any_calls(draw):
    """A valid call with up to three things made wrong (parameters, operands, out=)."""
    case = draw(valid_calls())
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(["param", "param", "operand", "operand", "out"]))
        if target == "param":
            case["params"][draw(st.sampled_from(PARAMS))] = draw(WILD_PARAMETER)
        elif target == "operand":
            mutate_operand(draw, case, rng)
        else:
            mutate_out(draw, case, rng)
    return case


def read_params(case):
    """(stride, padding, output_padding, groups, dilation) as ints, or None if one is not."""
    p = case["params"]
    ints = [as_int(p["stride"]), as_int(p["padding"]), as_int(p["output_padding"]),
            as_int(p["groups"], allow_tuple=False), as_int(p["dilation"])]
    return None if None in ints else tuple(ints)


def expected_shape(case):
    """The result's shape if the shapes and parameters are all valid, else None."""
    x, w, b = case["seen"]
    ints = read_params(case)
    if ints is None or not all(isinstance(a, np.ndarray) for a in (x, w)):
        return None
    stride, padding, output_padding, groups, dilation = ints
    if x.ndim not in (2, 3) or w.ndim != 3 or min(stride, dilation, groups) < 1:
        return None
    n, c_in, length = x.shape if x.ndim == 3 else (1, *x.shape)
    c_out = w.shape[1] * groups
    l_out = convt_blas.output_length(length, w.shape[2], stride, padding, output_padding, dilation)
    smallest = 0 if n == 0 else 1  # an empty batch may have empty lengths, as in torch
    if (l_out < smallest or length < smallest or padding < 0 or output_padding < 0
            or (output_padding >= stride and output_padding >= dilation)
            or c_in != w.shape[0] or c_in % groups or min(c_in, c_out, w.shape[2]) < 1
            or (b is not None and getattr(b, "shape", None) != (c_out,))):
        return None
    return (n, c_out, l_out)[3 - x.ndim:]


def scattered_reference(x, w, b, stride, padding, output_padding, groups, dilation):
    """The definition summed term by term over (channel, position, tap).

    For parameters so large that the dense reference's uncropped output would
    not fit in memory; only terms that land inside the output are added.
    """
    x3 = x if x.ndim == 3 else x[np.newaxis]
    acc = np.complex128 if x.dtype.kind == "c" else np.float64
    c_in, c_out_g, k_size = w.shape
    c_in_g = c_in // groups
    l_out = convt_blas.output_length(x3.shape[2], k_size, stride, padding, output_padding,
                                     dilation)
    y = np.zeros((x3.shape[0], c_out_g * groups, l_out), acc)
    for i in range(c_in):
        rows = slice(i // c_in_g * c_out_g, (i // c_in_g + 1) * c_out_g)
        for pos_l in range(x3.shape[2]):
            for k in range(k_size):
                target = pos_l * stride + k * dilation - padding
                if 0 <= target < l_out:
                    y[:, rows, target] += w[i, :, k].astype(acc) * x3[:, i, pos_l, None].astype(acc)
    if b is not None:
        y += b.astype(acc)[None, :, None]
    return y if x.ndim == 3 else y[0]


def expected_result(case):
    x, w, b = case["seen"]
    stride, padding, output_padding, groups, dilation = read_params(case)
    uncropped = (x.shape[-1] - 1) * stride + dilation * (w.shape[2] - 1) + output_padding + 1
    reference = conv_transpose1d_reference
    if uncropped * int(np.prod(x.shape[:-1])) > 2 ** 22:
        reference = scattered_reference
    with np.errstate(all="ignore"):  # NaN and Inf inputs
        return reference(x, w, b, stride, padding, output_padding, groups, dilation)


def assert_matches_reference(actual, case):
    """Finite entries within the dtype's tolerance; NaN and Inf where the reference has them."""
    x = case["seen"][0]
    expected = expected_result(case)
    assert isinstance(actual, np.ndarray) and actual.flags.c_contiguous
    assert actual.dtype == x.dtype.newbyteorder("="), (actual.dtype, x.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(actual), finite)
    if actual.dtype.kind == "f":  # complex NaN/Inf parts depend on the multiplication formula
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
        np.testing.assert_array_equal(actual[np.isinf(expected)], expected[np.isinf(expected)])
    assert_close(np.where(finite, actual, 0), np.where(finite, expected, 0), actual.dtype)


def memory_snapshot(case):
    """(array, its bytes) for every array the caller passed, to show none was written."""
    arrays = [a for a in case["seen"] if isinstance(a, np.ndarray)]
    if isinstance(case["out"], np.ndarray):
        arrays.append(case["out"])
    return [(a, a.tobytes()) for a in arrays if a.size <= 2 ** 24]  # not huge_batch views


def output_bytes_risky(case):
    shape = expected_shape(case)
    if shape is None:
        return False
    nbytes = int(np.prod(shape, dtype=object)) * max(4, case["seen"][0].itemsize)
    return RISKY_OUTPUT_BYTES[0] < nbytes < RISKY_OUTPUT_BYTES[1]


def call(case):
    x, w, b = case["passed"]
    return convt_blas.conv_transpose1d(x, w, b, **case["params"], out=case["out"])


@fuzz_settings
@given(valid_calls())
def test_valid_arguments_match_reference(case):
    before = memory_snapshot(case)
    result = call(case)
    if case["out"] is not None:
        assert result is case["out"]
    assert_matches_reference(result, case)
    for array, saved in before:
        if array is not case["out"]:
            assert array.tobytes() == saved, "an input was written"


@fuzz_settings
@given(any_calls())
def test_any_arguments_give_reference_result_or_clean_error(case):
    assume(not output_bytes_risky(case))
    before = memory_snapshot(case)
    try:
        result = call(case)
    except ALLOWED_ERRORS as exc:
        event(type(exc).__name__)
        result = None
    else:
        event("result")
    if result is not None:
        assert expected_shape(case) is not None, "invalid arguments were accepted"
        if case["out"] is not None:
            assert result is case["out"]
        assert_matches_reference(result, case)
    for array, saved in before:
        if result is None or array is not case["out"]:
            assert array.tobytes() == saved, "the caller's memory was written"


def test_parameters_beyond_int64_raise_value_error():
    x = np.ones((1, 1, 2), np.float32)
    w = np.ones((1, 1, 1), np.float32)
    out = np.full((1, 1, 1), 7, np.float32)
    # (2 - 1)*2**63 - 2*2**62 + 1 = 1 output sample: the shape checks pass.
    with pytest.raises(ValueError):
        convt_blas.conv_transpose1d(x, w, stride=2 ** 63, padding=2 ** 62, out=out)


def test_huge_stride_does_not_hang():
    """A call's time must not grow with the stride (col2im once visited every phase of it,
    hours for this 3-sample output); in a subprocess so that a hang ends with the timeout."""
    call = ("import numpy as np, convt_blas; convt_blas.conv_transpose1d("
            "np.ones((1, 1, 1), np.float32), np.ones((1, 1, 3), np.float32), stride=2**40)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", call], cwd=root, check=True, timeout=30)


def test_failing_dlpack_producer_gives_type_error():
    with pytest.raises(TypeError):
        convt_blas.conv_transpose1d(BrokenDlpack(), np.ones((1, 1, 1), np.float32))
