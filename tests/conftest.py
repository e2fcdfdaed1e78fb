import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Relative tolerances per dtype, scaled by the magnitude of the result.
RTOL = {
    np.dtype(np.float16): 2e-2,
    np.dtype(np.float32): 1e-5,
    np.dtype(np.float64): 1e-12,
    np.dtype(np.complex64): 1e-5,
    np.dtype(np.complex128): 1e-12,
}


def random_array(rng, shape, dtype=np.float32):
    """Standard-normal values of ``dtype`` (complex: independent real and imaginary parts)."""
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def make_case(rng, n, c_in_g, c_out_g, k, length, groups, dtype=np.float32, bias=True):
    """(x, w, b) of a call with ``groups`` groups of c_in_g -> c_out_g channels."""
    x = random_array(rng, (n, c_in_g * groups, length), dtype)
    w = random_array(rng, (c_in_g * groups, c_out_g, k), dtype)
    b = random_array(rng, (c_out_g * groups,), dtype) if bias else None
    return x, w, b


def assert_close(actual, expected, dtype=None):
    """|actual - expected| <= rtol * max(1, max|expected|) elementwise, shapes equal."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    dtype = np.dtype(dtype or actual.dtype)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    err = np.max(np.abs(actual.astype(np.complex128) - expected)) if actual.size else 0.0
    assert err <= RTOL[dtype] * scale, f"max abs error {err:.3e} > {RTOL[dtype]:.0e} * {scale:.3e}"


def assert_non_finite_redone(y, expected, y_gemm, singles, where):
    """A Winograd call's batch of 3 whose ``where`` ("input": elements 0 and 2,
    "weight": all, "overflow": element 0) holds inf, NaN or overflowing sums: it
    matches the definition's ``expected`` where that is finite and not infinite
    alike (float64 does not overflow where float32 does), each element is what it
    gets alone (``singles``), the elements reached are the GEMM path's ``y_gemm``
    bitwise, and the others keep their Winograd result."""
    if where != "overflow":
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
        np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expected))
        finite = np.isfinite(expected)
        assert_close(y[finite], expected[finite])
    redone = [n for n in range(3) if not np.isfinite(y[n]).all()]
    assert redone == ([0, 2] if where == "input" else [0, 1, 2] if where == "weight" else [0])
    for n in range(3):
        np.testing.assert_array_equal(y[n], singles[n])
        if n in redone:
            np.testing.assert_array_equal(y[n], y_gemm[n])
        else:
            assert not np.array_equal(y[n], y_gemm[n])  # kept its Winograd result


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


class DlpackOnly:
    """An array-like known only through DLPack."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()
