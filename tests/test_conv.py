"""conv_transpose1d against the reference from the definition, and against torch."""
import itertools
import os
import platform
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convt_blas
from conftest import RTOL, assert_close, make_case, random_array
from reference import conv_transpose1d_reference

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch cross-checks skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def test_seed_example():
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((20, 16, 50)).astype(np.float32)
    weights = rng.standard_normal((16, 33, 5)).astype(np.float32)
    y = convt_blas.conv_transpose1d(inputs, weights)
    assert y.shape == (20, 33, 54)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert_close(y, conv_transpose1d_reference(inputs, weights))


GRID = [
    # (K, stride, padding, output_padding, dilation, groups)
    (k, s, p, op, d, g)
    for k, s, p, d, g in itertools.product([1, 2, 5], [1, 2, 3], [0, 1, 3], [1, 2], [1, 2])
    for op in sorted({0, max(s, d) - 1})
    if (6 - 1) * s - 2 * p + d * (k - 1) + op + 1 > 0
]


@pytest.mark.parametrize("k,stride,padding,output_padding,dilation,groups", GRID)
@pytest.mark.parametrize("batch", [1, 3])
def test_grid_matches_reference(rng, k, stride, padding, output_padding, dilation, groups, batch):
    x, w, b = make_case(rng, batch, 3, 2, k, 6, groups)
    y = convt_blas.conv_transpose1d(x, w, b, stride, padding, output_padding, groups, dilation)
    assert_close(y, conv_transpose1d_reference(x, w, b, stride, padding, output_padding,
                                               groups, dilation))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_dtypes_match_reference(rng, dtype, bias):
    x, w, b = make_case(rng, 2, 5, 3, 4, 37, 2, dtype, bias)
    y = convt_blas.conv_transpose1d(x, w, b, stride=3, padding=2, output_padding=1, groups=2,
                                    dilation=2)
    assert y.dtype == dtype
    assert_close(y, conv_transpose1d_reference(x, w, b, 3, 2, 1, 2, 2))


def test_float16_computed_in_float32(rng):
    x, w, b = make_case(rng, 2, 4, 3, 5, 20, 1, np.float16)
    y = convt_blas.conv_transpose1d(x, w, b, stride=2)
    assert y.dtype == np.float16
    expected = conv_transpose1d_reference(x, w, b, 2)
    assert_close(y, expected)
    # float32 compute rounds once at the end: within half an ulp of float16.
    np.testing.assert_array_equal(y, expected.astype(np.float32).astype(np.float16))


@pytest.mark.parametrize("layout", ["unbatched", "sliced_length", "sliced_channels", "fortran",
                                    "channels_last", "reversed", "broadcast_batch"])
def test_layouts(rng, layout):
    base, w, b = make_case(rng, 3, 4, 3, 3, 40, 1)
    x = {
        "unbatched": base[1],
        "sliced_length": base[:, :, ::2],
        "sliced_channels": np.concatenate([base, base], axis=1)[:, ::2],
        "fortran": np.asfortranarray(base),
        "channels_last": np.ascontiguousarray(base.transpose(0, 2, 1)).transpose(0, 2, 1),
        "reversed": base[::-1, :, ::-1],
        "broadcast_batch": np.broadcast_to(base[:1], base.shape),
    }[layout]
    before = x.copy()
    y = convt_blas.conv_transpose1d(x, w, b, stride=2, padding=1)
    assert_close(y, conv_transpose1d_reference(x, w, b, 2, 1))
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(x, before)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 3), c_in_g=st.integers(1, 4), c_out_g=st.integers(1, 4),
    groups=st.integers(1, 3), k=st.integers(1, 7), length=st.integers(1, 30),
    stride=st.integers(1, 5), padding=st.integers(0, 6), dilation=st.integers(1, 4),
    op_frac=st.floats(0, 0.999), dtype=st.sampled_from(DTYPES), bias=st.booleans(),
    unbatched=st.booleans(), seed=st.integers(0, 2**32 - 1),
)
def test_property_matches_reference(n, c_in_g, c_out_g, groups, k, length, stride, padding,
                                    dilation, op_frac, dtype, bias, unbatched, seed):
    output_padding = int(op_frac * max(stride, dilation))
    l_out = (length - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    rng = np.random.default_rng(seed)
    x, w, b = make_case(rng, 1 if unbatched else n, c_in_g, c_out_g, k, length, groups, dtype, bias)
    if unbatched:
        x = x[0]
    args = (stride, padding, output_padding, groups, dilation)
    if l_out < 0 or (l_out == 0 and (x.ndim == 2 or n > 0)):
        with pytest.raises(ValueError, match="output length"):
            convt_blas.conv_transpose1d(x, w, b, *args)
        return
    y = convt_blas.conv_transpose1d(x, w, b, *args)
    assert_close(y, conv_transpose1d_reference(x, w, b, *args))


def test_empty_batch_shape(rng):
    x, w, b = make_case(rng, 0, 3, 2, 4, 9, 1)
    y = convt_blas.conv_transpose1d(x, w, b, stride=2)
    assert y.shape == (0, 2, 20) and y.dtype == np.float32


def test_tuple_parameters(rng):
    x, w, b = make_case(rng, 2, 3, 2, 4, 9, 1)
    y1 = convt_blas.conv_transpose1d(x, w, b, (2,), [1], (1,), 1, [2])
    y2 = convt_blas.conv_transpose1d(x, w, b, 2, 1, 1, 1, 2)
    np.testing.assert_array_equal(y1, y2)


def test_nan_and_inf_propagate(rng):
    x, w, b = make_case(rng, 1, 2, 2, 3, 8, 1)
    x[0, 0, 2] = np.nan
    x[0, 1, 5] = np.inf
    y = convt_blas.conv_transpose1d(x, w, b, stride=2)
    expected = conv_transpose1d_reference(x, w, b, 2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))


def test_out_argument(rng):
    x, w, b = make_case(rng, 2, 3, 2, 4, 9, 1)
    out = np.empty((2, 2, 20), np.float32)
    y = convt_blas.conv_transpose1d(x, w, b, stride=2, out=out)
    assert y is out
    assert_close(out, conv_transpose1d_reference(x, w, b, 2))
    for bad in (np.empty((2, 2, 21), np.float32), np.empty((2, 2, 20), np.float64),
                np.empty((2, 2, 40), np.float32)[:, :, ::2]):
        bad[...] = 7
        with pytest.raises(ValueError, match="out"):
            convt_blas.conv_transpose1d(x, w, b, stride=2, out=bad)
        assert np.all(bad == 7)


# ---------------------------------------------------------------------------
# Bad input: the error type and a message naming the problem.

BAD_CASES = [
    # (description, kwargs overriding a valid call, error, message pattern)
    ("input rank 1", dict(x=np.ones(5, np.float32)), ValueError, "2D .* or 3D"),
    ("input rank 4", dict(x=np.ones((1, 2, 3, 4), np.float32)), ValueError, "2D .* or 3D"),
    ("weight rank 2", dict(w=np.ones((3, 2), np.float32)), ValueError, "weight must be 3-dim"),
    ("channel mismatch", dict(x=np.ones((2, 4, 9), np.float32)), ValueError, "3 channels, but got 4"),
    ("stride 0", dict(stride=0), ValueError, "stride must be positive, got stride=0"),
    ("stride -2", dict(stride=-2), ValueError, "stride must be positive"),
    ("padding -1", dict(padding=-1), ValueError, "padding must be non-negative, got padding=-1"),
    ("output_padding -1", dict(output_padding=-1), ValueError, "output_padding must be non-negative"),
    ("output_padding too big", dict(stride=2, output_padding=2), ValueError,
     "output_padding must be smaller than either stride or dilation"),
    ("dilation 0", dict(dilation=0), ValueError, "dilation must be positive, got dilation=0"),
    ("groups 0", dict(groups=0), ValueError, "groups must be positive"),
    ("groups not dividing", dict(groups=2), ValueError, "groups=2"),
    ("stride 2-tuple", dict(stride=(1, 2)), ValueError, r"stride=\[1, 2\]"),
    ("padding empty tuple", dict(padding=()), ValueError, r"padding=\[\]"),
    ("stride float", dict(stride=2.0), TypeError, "stride must be an int"),
    ("stride bool", dict(stride=True), TypeError, "stride must be an int"),
    ("stride None", dict(stride=None), TypeError, "stride must be an int"),
    ("padding str", dict(padding="same"), TypeError, "padding must be an int"),
    ("groups float", dict(groups=1.0), TypeError, "groups must be an int"),
    ("bias wrong length", dict(b=np.ones(3, np.float32)), ValueError, "bias .* 2 elements"),
    ("bias 2-D", dict(b=np.ones((1, 2), np.float32)), ValueError, "bias .* 2 elements"),
    ("weight dtype", dict(w=np.ones((3, 2, 4), np.float64)), TypeError, "weight dtype float64"),
    ("bias dtype", dict(b=np.ones(2, np.float64)), TypeError, "bias dtype float64"),
    ("int input", dict(x=np.ones((2, 3, 9), np.int64), w=np.ones((3, 2, 4), np.int64)),
     TypeError, "int64"),
    ("bool input", dict(x=np.ones((2, 3, 9), bool), w=np.ones((3, 2, 4), bool)), TypeError, "bool"),
    ("object input", dict(x=np.ones((2, 3, 9), object)), TypeError, "object"),
    ("string input", dict(x=np.full((2, 3, 9), "a")), TypeError, "dtype <U1"),
    ("zero kernel", dict(w=np.ones((3, 2, 0), np.float32)), ValueError, "kernel size"),
    ("zero out channels", dict(w=np.ones((3, 0, 4), np.float32), b=None), ValueError,
     "out_channels / groups"),
    ("zero in channels", dict(x=np.ones((2, 0, 9), np.float32), w=np.ones((0, 2, 4), np.float32)),
     ValueError, "positive multiple of groups"),
    ("zero length", dict(x=np.ones((2, 3, 0), np.float32)), ValueError, "input length must be positive"),
    ("negative output length", dict(padding=20), ValueError,
     r"output length must be positive: .* = \(9 - 1\)\*1 - 2\*20 \+ 1\*\(4 - 1\) \+ 0 \+ 1 = -28"),
    ("zero output length", dict(x=np.ones((2, 3, 1), np.float32), w=np.ones((3, 2, 2), np.float32),
                                padding=1), ValueError, "= 0$"),
    ("output too large to index", dict(stride=2**62), ValueError, "too large"),
]


@pytest.mark.parametrize("desc,override,error,pattern", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input(desc, override, error, pattern):
    args = dict(x=np.ones((2, 3, 9), np.float32), w=np.ones((3, 2, 4), np.float32),
                b=np.ones(2, np.float32), stride=1, padding=0, output_padding=0, groups=1,
                dilation=1)
    args.update(override)
    x, w, b = args.pop("x"), args.pop("w"), args.pop("b")
    with pytest.raises(error, match=pattern):
        convt_blas.conv_transpose1d(x, w, b, **args)


def test_unallocatable_output_raises_memory_error():
    x = np.ones((1, 1, 2), np.float32)
    w = np.ones((1, 1, 1), np.float32)
    with pytest.raises(MemoryError):
        convt_blas.conv_transpose1d(x, w, stride=2**45)  # a 140 TB output


def test_not_an_array():
    with pytest.raises(TypeError):
        convt_blas.conv_transpose1d(object(), np.ones((3, 2, 4), np.float32))


# ---------------------------------------------------------------------------
# Threads

def test_openmp_build():
    """The build must keep OpenMP unless it was turned off on purpose."""
    if os.environ.get("CONVT_BLAS_NO_OPENMP"):
        pytest.skip("built without OpenMP on request")
    assert convt_blas.openmp_enabled()


def test_set_num_threads_validation():
    with pytest.raises(ValueError):
        convt_blas.set_num_threads(0)
    with pytest.raises(TypeError):
        convt_blas.set_num_threads(1.5)


@pytest.mark.parametrize("shape", [(1, 64, 32, 4, 2000, 1), (4, 16, 8, 16, 300, 2)])
def test_bitwise_equal_across_thread_counts(rng, shape):
    n, c_in_g, c_out_g, k, length, groups = shape
    x, w, b = make_case(rng, n, c_in_g, c_out_g, k, length, groups)
    results = []
    try:
        for threads in (1, 2, 3):
            convt_blas.set_num_threads(threads)
            results.append(convt_blas.conv_transpose1d(x, w, b, stride=2, padding=1, groups=groups))
    finally:
        convt_blas.set_num_threads(None)
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])
    assert_close(results[0], conv_transpose1d_reference(x, w, b, 2, 1, 0, groups))


def test_concurrent_python_threads(rng):
    cases = [make_case(rng, 2, 8, 4 + i, 3 + i % 4, 50 + 17 * i, 1 + i % 2) for i in range(4)]
    expected = [conv_transpose1d_reference(x, w, b, 2, 1, 0, g) for (x, w, b), g in
                zip(cases, [1 + i % 2 for i in range(4)])]
    errors = []

    def work(i):
        x, w, b = cases[i]
        for _ in range(30):
            y = convt_blas.conv_transpose1d(x, w, b, 2, 1, 0, 1 + i % 2)
            err = np.max(np.abs(y - expected[i]))
            if err > RTOL[np.dtype(np.float32)] * max(1, np.abs(expected[i]).max()):
                errors.append((i, err))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


# ---------------------------------------------------------------------------
# torch 2.13 cross-checks

@needs_torch
def test_torch_tensor_input_is_not_copied():
    from convt_blas._validation import as_array

    t = torch.randn(2, 3, 9)
    arr = as_array(t, "input")
    assert np.shares_memory(arr, t.numpy())
    w = torch.randn(3, 2, 4)
    y = convt_blas.conv_transpose1d(t, w, stride=2)
    np.testing.assert_allclose(y, F.conv_transpose1d(t, w, stride=2).numpy(), rtol=1e-5, atol=1e-5)


def _random_config(rng):
    """Parameters over the whole valid range, plus some just outside it."""
    groups = int(rng.integers(1, 5))
    c_in = groups * int(rng.integers(1, 4)) + (1 if rng.random() < 0.05 else 0)
    stride, dilation = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    output_padding = int(rng.integers(0, max(stride, dilation) + (1 if rng.random() < 0.1 else 0)))
    return dict(
        n=int(rng.integers(0, 4)), c_in=c_in, c_out_g=int(rng.integers(1, 4)),
        k=int(rng.integers(1, 6)), length=int(rng.integers(1, 12)), groups=groups,
        stride=stride, padding=int(rng.integers(0, 6)), output_padding=output_padding,
        dilation=dilation, unbatched=rng.random() < 0.15, bias=rng.random() < 0.7,
        noncontiguous=rng.random() < 0.3,
        dtype=[np.float32, np.float64, np.complex64][int(rng.integers(0, 3))],
    )


def _call_both(cfg, rng):
    n = 1 if cfg["unbatched"] else cfg["n"]
    shape = (n, cfg["c_in"], cfg["length"] * (2 if cfg["noncontiguous"] else 1))
    x = random_array(rng, shape, cfg["dtype"])
    if cfg["noncontiguous"]:
        x = x[:, :, ::2]
    if cfg["unbatched"]:
        x = x[0]
    w = random_array(rng, (cfg["c_in"] - cfg["c_in"] % cfg["groups"] or cfg["groups"],
                           cfg["c_out_g"], cfg["k"]), cfg["dtype"])
    b = random_array(rng, (cfg["c_out_g"] * cfg["groups"],), cfg["dtype"]) if cfg["bias"] else None
    args = (cfg["stride"], cfg["padding"], cfg["output_padding"], cfg["groups"], cfg["dilation"])
    try:
        ours = convt_blas.conv_transpose1d(x, w, b, *args)
    except (ValueError, TypeError) as exc:
        ours = exc
    # torch's float64 path is its reference implementation: it decides acceptance.
    tt = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))
    to64 = lambda a: None if a is None else a.to(
        torch.complex128 if np.iscomplexobj(x) else torch.float64)
    try:
        theirs = F.conv_transpose1d(to64(tt(x)), to64(tt(w)), to64(tt(b)), *args).numpy()
    except RuntimeError as exc:
        theirs = exc
    return x, ours, theirs


@needs_torch
def test_torch_parity_random_configurations():
    """1,200 random configurations: same accept/refuse decisions and values as torch."""
    rng = np.random.default_rng(2024)
    accepted = refused = deviations = 0
    for i in range(1200):
        cfg = _random_config(rng)
        x, ours, theirs = _call_both(cfg, rng)
        if isinstance(theirs, Exception):
            assert isinstance(ours, Exception), (i, cfg, "torch refused", theirs)
            refused += 1
            continue
        if isinstance(ours, Exception) and x.ndim == 3 and x.shape[0] == 0:
            # torch skips its output_padding check for an empty batch; we keep it.
            assert "output_padding must be smaller" in str(ours), (i, cfg, ours)
            deviations += 1
            continue
        assert not isinstance(ours, Exception), (i, cfg, "we refused", ours)
        assert ours.shape == theirs.shape, (i, cfg)
        assert_close(ours, theirs, x.dtype)
        accepted += 1
    # Both decisions must be well represented for the comparison to mean anything.
    assert accepted > 600 and refused > 100, (accepted, refused)
    assert deviations < 30, deviations


@needs_torch
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
def test_torch_values_model_layer(dtype):
    """A real model layer (HiFi-GAN V1, first upsampling) against torch in its own dtype."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 512, 30, generator=g).to(dtype)
    w = (torch.randn(512, 256, 16, generator=g) * 0.05).to(dtype)
    b = torch.randn(256, generator=g).to(dtype)
    expected = F.conv_transpose1d(x, w, b, stride=8, padding=4).numpy()
    y = convt_blas.conv_transpose1d(x, w, b, stride=8, padding=4)
    assert_close(y, expected, y.dtype)


@needs_torch
def test_torch_nan_inf_parity():
    x = torch.randn(1, 3, 10)
    x[0, 1, 3] = float("nan")
    x[0, 2, 7] = float("inf")
    w = torch.randn(3, 2, 4)
    expected = F.conv_transpose1d(x, w, stride=2, padding=1).numpy()
    y = convt_blas.conv_transpose1d(x, w, stride=2, padding=1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))


def test_unaligned_input(rng):
    x, w, b = make_case(rng, 2, 3, 2, 5, 5, 1)
    raw = np.zeros(x.nbytes + 1, np.uint8)[1:]
    unaligned = raw.view(np.float32).reshape(x.shape)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    y = convt_blas.conv_transpose1d(unaligned, w, b, stride=2)
    assert_close(y, conv_transpose1d_reference(x, w, b, 2))


@pytest.mark.parametrize("stride,dilation,padding", [(10**6, 1, 3), (7, 10**5, 2), (3, 1, 0)])
def test_extreme_stride_and_dilation(rng, stride, dilation, padding):
    """Sparse outputs: most positions receive no tap and hold only the bias."""
    x, w, b = make_case(rng, 2, 2, 3, 3, 4, 1)
    y = convt_blas.conv_transpose1d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    assert_close(y, conv_transpose1d_reference(x, w, b, stride, padding, 0, 1, dilation))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("c_out_g,k", [(5, 4), (1, 1)])
def test_single_position_matrix_vector_path(rng, channels_last, c_out_g, k):
    """One input position (or one column row) makes the GEMM a matrix-vector product."""
    x, w, b = make_case(rng, 3, 6, c_out_g, k, 1, 2)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    y = convt_blas.conv_transpose1d(x, w, b, stride=3, groups=2)
    assert_close(y, conv_transpose1d_reference(x, w, b, 3, 0, 0, 2))
    x_long, _, _ = make_case(rng, 2, 6, c_out_g, k, 9, 2)
    y = convt_blas.conv_transpose1d(x_long, w, b, stride=2, groups=2)
    assert_close(y, conv_transpose1d_reference(x_long, w, b, 2, 0, 0, 2))


@pytest.mark.parametrize("length", [3, 8, 24])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_inputs_of_many_channels(rng, length, dtype):
    """A few input positions of many channels (a streaming chunk of a vocoder's first
    layer) are cut into many small channel blocks; every block lands in its place."""
    x, w, b = make_case(rng, 2, 512, 96, 16, length, 1, dtype)
    y = convt_blas.conv_transpose1d(x, w, b, stride=8, padding=4)
    assert_close(y, conv_transpose1d_reference(x, w, b, 8, 4))


@pytest.mark.parametrize("batch,c_in_g,c_out_g,k,length,groups", [
    (1, 300, 90, 8, 60, 1),    # blocked GEMMs but the last block's (BLAS's small kernels)
    (1, 300, 96, 8, 60, 2),    # two groups of blocked GEMMs: each lays out its own input
    (2, 300, 90, 8, 60, 2),    # two elements share each GEMM instead
    (1, 512, 256, 16, 100, 1),  # HiFi-GAN's first layer
])
def test_one_tile_input_laid_out_as_rows(rng, batch, c_in_g, c_out_g, k, length, groups):
    """One-tile position-major units lay a channels-first input out as X^T rows once per
    worker: the same bits as channels-last or padded input, at any thread count."""
    shape = (batch, c_in_g * groups, length, c_out_g * groups, k, k // 2, k // 4, 0, 1, groups)
    info = convt_blas.kernels._plan_info(shape)
    assert info["input_rows"] == (batch == 1) and info["n_blocks"] > 1
    x, w, b = make_case(rng, batch, c_in_g, c_out_g, k, length, groups)
    padded = np.zeros(x.shape[:2] + (length + 3,), x.dtype)
    padded[:, :, :length] = x
    inputs = [x, np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1),
              padded[:, :, :length]]
    results = []
    try:
        for threads in (1, 2):
            convt_blas.set_num_threads(threads)
            for xi in inputs:
                results.append(convt_blas.conv_transpose1d(
                    xi, w, b, stride=k // 2, padding=k // 4, groups=groups))
    finally:
        convt_blas.set_num_threads(None)
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])
    assert_close(results[0], conv_transpose1d_reference(x, w, b, k // 2, k // 4, 0, groups))


@pytest.mark.parametrize("c_in_g,groups", [(1, 1), (1, 8), (2, 1), (4, 1), (4, 4)])
def test_direct_taps_for_one_input_channel_per_group(rng, c_in_g, groups):
    """Only groups of one input channel skip BLAS; from two on, the GEMM path is faster
    (4 -> 722 channels, K = 22: 18x)."""
    shape = (4, c_in_g * groups, 3, 90 * groups, 22, 11, 5, 0, 1, groups)
    assert convt_blas.kernels._plan_info(shape)["direct_taps"] == (c_in_g == 1)
    x, w, b = make_case(rng, 4, c_in_g, 90, 22, 3, groups)
    y = convt_blas.conv_transpose1d(x, w, b, stride=11, padding=5, groups=groups)
    assert_close(y, conv_transpose1d_reference(x, w, b, 11, 5, 0, groups))
    # Direct taps still compute any depth of group right (kernels._set_direct_max_in_channels).
    previous = convt_blas.kernels._set_direct_max_in_channels(4)
    convt_blas._functional._call_plan.cache_clear()
    try:
        assert convt_blas.kernels._plan_info(shape)["direct_taps"]
        y = convt_blas.conv_transpose1d(x, w, b, stride=11, padding=5, groups=groups)
    finally:
        convt_blas.kernels._set_direct_max_in_channels(previous)
        convt_blas._functional._call_plan.cache_clear()
    assert_close(y, conv_transpose1d_reference(x, w, b, 11, 5, 0, groups))


@pytest.mark.parametrize("batch,c_in_g,c_out_g,k,stride,padding,length,groups", [
    (1, 520, 1, 512, 128, 0, 112, 1),  # iSTFT as a transposed convolution, one output
    (2, 600, 2, 200, 1, 60, 40, 1),    # taps reaching further than the input is long
    (2, 400, 3, 300, 7, 13, 20, 2),    # two groups; the last row block a partial one
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
def test_shared_columns(rng, batch, c_in_g, c_out_g, k, stride, padding, length, groups,
                        dtype):
    """Few output channels, many taps, a short input: one GEMM per element and group,
    its row blocks shared among threads, then col2im. The same bits at any thread count,
    channels-last or not, through the function and a layer keeping the weight's rows."""
    shape = (batch, c_in_g * groups, length, c_out_g * groups, k, stride, padding, 0, 1, groups)
    info = convt_blas.kernels._plan_info(shape)
    assert info["row_block"] > 0 and info["n_row_blocks"] > 1
    assert info["row_block"] % 16 == 0
    x, w, b = make_case(rng, batch, c_in_g, c_out_g, k, length, groups, dtype)
    layer = convt_blas.ConvTranspose1d(c_in_g * groups, c_out_g * groups, k, stride=stride,
                                       padding=padding, groups=groups, dtype=dtype)
    layer.weight, layer.bias = w, b
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    results = []
    try:
        for threads in (1, 2, 3):
            convt_blas.set_num_threads(threads)
            for xi in (x, channels_last):
                results.append(convt_blas.conv_transpose1d(xi, w, b, stride, padding,
                                                           groups=groups))
                results.append(layer(xi))
    finally:
        convt_blas.set_num_threads(None)
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])
    assert_close(results[0], conv_transpose1d_reference(x, w, b, stride, padding, 0, groups))
    # Each element alone gets the bits it gets in the batch.
    np.testing.assert_array_equal(
        convt_blas.conv_transpose1d(x[-1:], w, b, stride, padding, groups=groups),
        results[0][-1:])


@pytest.mark.parametrize("channels,length,k,stride,padding,output_padding", [
    (512, 32, 6, 3, 2, 1),   # the depthwise layer of PyTorch issue 47341
    (70, 64, 4, 2, 1, 0),    # a unit of 64 channels and one of 6
    (3, 20, 16, 8, 4, 7),    # fewer channels than one unit
    (9, 40, 11, 2, 0, 1),    # six taps reach some outputs
    (130, 120, 3, 1, 1, 0),  # stride 1, three units of channels
    (70, 100, 6, 3, 0, 2),   # 305 outputs: two tiles
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_depthwise_channels_side_by_side(rng, channels, length, k, stride, padding,
                                         output_padding, dtype, layout):
    """Short depthwise inputs run many channels side by side; each output keeps the bits
    the one-channel-at-a-time path gives it, for any layout of the input."""
    x, w, b = make_case(rng, 2, 1, 1, k, length, channels, dtype)
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    elif layout == "strided":
        x = np.repeat(x, 2, axis=2)[:, :, ::2]
    args = dict(stride=stride, padding=padding, output_padding=output_padding, groups=channels)
    shape = (2, channels, length, channels, k, stride, padding, output_padding, 1, channels)
    assert convt_blas.kernels._plan_info(shape)["depthwise"]
    y = convt_blas.conv_transpose1d(x, w, b, **args)
    assert_close(y, conv_transpose1d_reference(x, w, b, stride, padding, output_padding,
                                               groups=channels))
    convt_blas.kernels._set_depthwise_by_channels(False)
    try:
        assert not convt_blas.kernels._plan_info(shape)["depthwise"]
        convt_blas._functional._call_plan.cache_clear()
        np.testing.assert_array_equal(y, convt_blas.conv_transpose1d(x, w, b, **args))
    finally:
        convt_blas.kernels._set_depthwise_by_channels(True)
        convt_blas._functional._call_plan.cache_clear()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels,length,k,stride,padding,output_padding", [
    (512, 32, 6, 3, 2, 1),   # every phase has two taps
    (68, 50, 5, 3, 0, 2),    # phases of one and two taps; a unit of 4 channels
])
def test_depthwise_two_taps_along_a_phase(rng, bias, channels, length, k, stride, padding,
                                          output_padding):
    """float32 outputs with two taps run along their phase four channels at a time,
    with and without bias: the bits of the one-channel-at-a-time path."""
    x, w, b = make_case(rng, 3, 1, 1, k, length, channels, np.float32, bias=bias)
    args = dict(stride=stride, padding=padding, output_padding=output_padding, groups=channels)
    y = convt_blas.conv_transpose1d(x, w, b, **args)
    convt_blas.kernels._set_depthwise_by_channels(False)
    try:
        convt_blas._functional._call_plan.cache_clear()
        np.testing.assert_array_equal(y, convt_blas.conv_transpose1d(x, w, b, **args))
    finally:
        convt_blas.kernels._set_depthwise_by_channels(True)
        convt_blas._functional._call_plan.cache_clear()
    assert_close(y, conv_transpose1d_reference(x, w, b, stride, padding, output_padding,
                                               groups=channels))


def test_depthwise_rule():
    """Channels side by side only where they win: short inputs, one channel in and out."""
    def depthwise(length, c_out=64, dilation=1):
        return convt_blas.kernels._plan_info(
            (1, 64, length, c_out, 6, 3, 2, 1, dilation, 64))["depthwise"]
    assert depthwise(128)
    assert not depthwise(129)  # long rows: the phase path vectorises along them
    assert not depthwise(32, c_out=128)  # two output channels per group
    assert not depthwise(32, dilation=2)


SMALL_GEMM_PROBE = """
import convt_blas
from convt_blas import kernels
# (batch, C_in, L_in, C_out, K, stride, padding, output_padding, dilation, groups)
print(kernels.blas_small_matrix_kernels(), kernels.plan_sizes((1, 512, 8, 256, 16, 8, 4, 0, 1, 1))[0])
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS x86-64 cores")
def test_short_input_cut_follows_the_blas_kernels():
    """Short inputs are cut into GEMMs for OpenBLAS's unpacked small-matrix kernels only
    where the BLAS has them: not with its Haswell (AVX2) kernels."""
    from convt_blas import kernels

    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    probe = subprocess.run([sys.executable, "-c", SMALL_GEMM_PROBE], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    assert probe[0] == "False"
    haswell_units = int(probe[1])
    units = kernels.plan_sizes((1, 512, 8, 256, 16, 8, 4, 0, 1, 1))[0]
    if kernels.blas_small_matrix_kernels():
        assert units > haswell_units
    else:
        assert units == haswell_units
