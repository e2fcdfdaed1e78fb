"""Winograd's F(4,3) and F(3,4) (layers with K == 3*stride or 4*stride, on a prepared
weight): their matrices, when they are taken, and that they are right."""
import contextlib
import itertools

import numpy as np
import pytest

import convt_blas
from convt_blas import kernels
from conftest import assert_close, assert_non_finite_redone, make_case
from reference import conv_transpose1d_reference


@contextlib.contextmanager
def form_rule(min_side=64, min_length=1, min_units=4):
    """F(4,3) and F(3,4) for smaller layers inside (quicker tests of the same code)."""
    previous = kernels._set_form_rule(min_side, min_length, min_units)
    convt_blas._functional._call_plan.cache_clear()
    try:
        yield
    finally:
        kernels._set_form_rule(*previous)
        convt_blas._functional._call_plan.cache_clear()


def layer_plan(n, c_in, length, c_out, k, stride, padding=0, output_padding=0, groups=1):
    """The plan of a call that brings the prepared weight, as ConvTranspose1d's do."""
    shape = (n, c_in, length, c_out, k, stride, padding, output_padding, 1, groups)
    return kernels.plan_call(shape, True).info()


def make_layer(w, b, stride, padding=0, output_padding=0, groups=1):
    c_in, c_out_g, k = w.shape
    layer = convt_blas.ConvTranspose1d(c_in, c_out_g * groups, k, stride=stride,
                                       padding=padding, output_padding=output_padding,
                                       groups=groups, bias=b is not None, dtype=w.dtype)
    layer.weight = w
    if b is not None:
        layer.bias = b
    return layer


@pytest.mark.parametrize("taps", [3, 4])
def test_matrices_compute_the_correlation(taps):
    # Y = AT ((G g) * (BT d)) is the correlation y_i = sum_j g_j d_{i+j} for any g, d.
    at, g, bt = kernels._form_matrices(taps)
    span = at.shape[0]
    assert (span, g.shape, bt.shape) == (7 - taps, (6, taps), (6, 6))
    rng = np.random.default_rng(taps)
    for _ in range(20):
        taps_ = rng.standard_normal(taps)
        d = rng.standard_normal(span + taps - 1)
        y = at @ ((g @ taps_) * (bt @ d))
        expected = [taps_ @ d[i:i + taps] for i in range(span)]
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # BT and AT are exact in float32 (the points are 0, +-1, 1/2, -2): the SSE and
    # scalar transforms read the same values.
    assert np.array_equal(bt.astype(np.float32), bt) and np.array_equal(at.astype(np.float32), at)


def test_rule():
    # K = 3s and 4s take F(4,3) and F(3,4) with a prepared weight, from 256 channels
    # on both GEMM sides and 256 positions; never the function (plan.pxi).
    for k, s, span in ((3, 1, 4), (12, 4, 4), (4, 1, 3), (1024, 256, 3)):
        c_out = max(1, 256 // s)
        info = layer_plan(1, 256, 256, c_out, k, s)
        assert info["winograd"] and (info["taps"], info["span"]) == (k // s, span)
        assert not kernels._plan_info((1, 256, 256, c_out, k, s, 0, 0, 1, 1))["winograd"]
        assert not layer_plan(1, 256, 255, c_out, k, s)["winograd"]
        assert not layer_plan(1, 255, 256, c_out, k, s)["winograd"]
    # From 1024 input channels, from 160 positions (the iSTFT layer: 224).
    assert layer_plan(1, 1026, 160, 1, 1024, 256)["winograd"]
    assert not layer_plan(1, 1026, 159, 1, 1024, 256)["winograd"]
    assert not layer_plan(1, 1023, 255, 1, 1024, 256)["winograd"]
    assert not layer_plan(1, 256, 256, 128, 3, 1)["winograd"]     # C_out * s < 256
    assert not layer_plan(1, 256, 256, 256, 5, 1)["winograd"]     # r = 5
    assert not layer_plan(1, 256, 256, 256, 3, 1, groups=2)["winograd"]  # 128 per group
    assert not kernels.plan_call((1, 256, 256, 256, 3, 1, 0, 0, 2, 1), True).info()["winograd"]
    with plain_winograd_off():
        assert not layer_plan(1, 256, 256, 256, 3, 1)["winograd"]


@contextlib.contextmanager
def plain_winograd_off():
    convt_blas.set_winograd(False)
    try:
        yield
    finally:
        convt_blas.set_winograd(True)


def test_cut_gives_threads_units_and_never_depends_on_batch():
    # One output channel of 256 phases (the iSTFT layer) is cut into row blocks; the
    # cut is the same for any batch.
    istft = layer_plan(1, 1026, 224, 1, 1024, 256)
    assert istft["n_blocks"] * istft["n_tiles"] >= 4 and istft["block_rows"] < 256
    deep = layer_plan(1, 512, 1000, 512, 3, 1)
    assert deep["n_blocks"] * deep["n_tiles"] >= 4
    for shape in ((1026, 224, 1, 1024, 256), (512, 1000, 512, 3, 1), (256, 300, 64, 12, 4)):
        one, many = layer_plan(1, *shape), layer_plan(16, *shape)
        for key in ("block_rows", "n_blocks", "tile_spans", "n_tiles", "span_first"):
            assert one[key] == many[key]


def test_prepared_weight_length():
    # alpha / r times the weight: 2x for F(4,3), 1.5x for F(3,4).
    for c_out, k, s, ratio in ((256, 3, 1, 2.0), (64, 12, 4, 2.0), (1, 1024, 256, 1.5)):
        w = np.zeros((256, c_out, k), np.float32)
        prepared = kernels.prepare_weight((1, 256, 256, c_out, k, s, 0, 0, 1, 1), w)
        assert prepared.size == ratio * w.size


# (n, C_in/g, C_out/g, K, stride, L_in, padding, output_padding, groups): paddings
# below, at and beyond a span, output padding past the padding, row blocks that cut
# channels (stride > 1) and that do not (stride 1), odd lengths, merged batch
# elements, groups, one output channel.
CASES = [
    (1, 128, 64, 3, 1, 300, 1, 0, 1),
    (2, 128, 40, 12, 4, 301, 0, 3, 1),
    (3, 130, 33, 15, 5, 250, 7, 2, 1),
    (2, 96, 48, 24, 8, 213, 4, 0, 2),
    (1, 300, 1, 256, 64, 90, 0, 0, 1),
    (2, 70, 64, 4, 1, 173, 2, 0, 1),
    (3, 100, 30, 16, 4, 140, 9, 3, 1),
    (4, 96, 96, 3, 1, 130, 1, 0, 1),
    (2, 80, 20, 12, 4, 9, 10, 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_layer_matches_reference_and_gemm_path(rng, case, dtype):
    n, c_in_g, c_out_g, k, s, length, p, op, groups = case
    x, w, b = make_case(rng, n, c_in_g, c_out_g, k, length, groups)
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    with form_rule():
        info = layer_plan(n, c_in_g * groups, length, c_out_g * groups, k, s, p, op, groups)
        assert info["winograd"] and info["taps"] == k // s
        y = make_layer(w, b, s, p, op, groups)(x)
    assert_close(y, conv_transpose1d_reference(x, w, b, s, p, op, groups))
    y_gemm = convt_blas.conv_transpose1d(x, w, b, s, p, op, groups)
    assert not np.array_equal(y, y_gemm)  # really another path
    assert_close(y, y_gemm)


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.complex128])
def test_other_dtypes(rng, dtype):
    x, w, b = make_case(rng, 2, 128, 32, 12, 200, 1)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    with form_rule():
        y = make_layer(w, b, 4, 2)(x)
    assert y.dtype == dtype
    assert_close(y, conv_transpose1d_reference(x, w, b, 4, 2))


@pytest.mark.parametrize("c_in", [128, 130])
def test_channels_last_unbatched_and_no_bias(rng, c_in):
    # Channels-last input and an odd channel count take the scalar input transform
    # where SSE takes four channels at a time: the bits are the same.
    x, w, _ = make_case(rng, 1, c_in, 64, 3, 400, 1)
    with form_rule():
        layer = make_layer(w, None, 1, 1)
        y = layer(x)
        strided = np.asfortranarray(x[0]).T.copy().T  # (C, L) with unit channel stride
        assert np.array_equal(layer(strided), y[0])
        assert np.array_equal(layer(x[0]), y[0])
    assert_close(y, conv_transpose1d_reference(x, w, None, 1, 1))


def test_bitwise_across_threads_and_batch_splits(rng):
    x, w, b = make_case(rng, 6, 256, 64, 12, 300, 1)
    with form_rule():
        layer = make_layer(w, b, 4, 3)
        convt_blas.set_num_threads(1)
        try:
            one = layer(x)
            convt_blas.set_num_threads(2)
            assert np.array_equal(layer(x), one)
            assert np.array_equal(np.concatenate([layer(x[i:i + 1]) for i in range(6)]), one)
            assert np.array_equal(np.concatenate([layer(x[:2]), layer(x[2:])]), one)
        finally:
            convt_blas.set_num_threads(None)


def test_rounding_error_within_a_few_times_the_gemm_path(rng):
    # Interpolating at 1/2 and -2 rounds more than F(3,2)'s points: measured on
    # these layers 2.6-5.2x the GEMM path's largest float32 error (docs: algorithm).
    for c_in, c_out, k, s, length in ((256, 256, 3, 1, 600), (512, 1, 1024, 256, 120)):
        x, w, b = make_case(rng, 1, c_in, c_out, k, length, 1)
        exact = conv_transpose1d_reference(x, w, b, s)
        x32, w32, b32 = x.astype(np.float32), w.astype(np.float32), b.astype(np.float32)
        with form_rule():
            y = make_layer(w32, b32, s)(x32)
        gemm = convt_blas.conv_transpose1d(x32, w32, b32, s)
        error, gemm_error = np.abs(y - exact).max(), np.abs(gemm - exact).max()
        assert gemm_error < error < 8 * gemm_error


@pytest.mark.parametrize("where", ["input", "weight", "overflow"])
def test_non_finite_values_as_the_convolution_gives_them(rng, where):
    # A span mixes its inputs into all its output strides, so the batch elements an
    # inf or NaN reaches are computed again on the GEMM path, one by one (bitwise
    # that path's result, the same for any split of the batch); the others keep
    # their Winograd result.
    x, w, b = make_case(rng, 3, 128, 32, 12, 200, 1)
    if where == "input":
        x[0, 5, 40], x[2, 7, 101], x[2, 9, 150] = np.inf, np.nan, -np.inf
    elif where == "weight":
        w[3, 2, 5] = np.inf
    else:
        x[0, :, 100] = 3e38  # finite, but the sums overflow
    with form_rule():
        layer = make_layer(w, b, 4, 2)
        y = layer(x)
        singles = [layer(x[n:n + 1])[0] for n in range(3)]
    assert_non_finite_redone(y, conv_transpose1d_reference(x, w, b, 4, 2),
                             convt_blas.conv_transpose1d(x, w, b, 4, 2), singles, where)


@pytest.mark.parametrize("seed", range(6))
def test_random_layers(seed):
    rng = np.random.default_rng(1000 + seed)
    taps = int(rng.choice([3, 4]))
    s = int(rng.choice([1, 2, 3, 4, 8]))
    groups = int(rng.choice([1, 2]))
    c_in_g, c_out_g = int(rng.integers(64, 200)), int(rng.integers(1, 80))
    c_out_g = max(c_out_g, -(-64 // s))
    n, length = int(rng.integers(1, 4)), int(rng.integers(1, 400))
    p = int(rng.integers(0, taps * s))
    op = int(rng.integers(0, s)) if s > 1 else 0
    x, w, b = make_case(rng, n, c_in_g, c_out_g, taps * s, length, groups)
    with form_rule():
        assert layer_plan(n, c_in_g * groups, length, c_out_g * groups, taps * s, s, p, op,
                          groups)["winograd"]
        y = make_layer(w, b, s, p, op, groups)(x)
    assert_close(y, conv_transpose1d_reference(x, w, b, s, p, op, groups))
