"""conv_transpose1d_backward against a loop reference from the definition, torch's
autograd, gradcheck, and across thread counts; ConvTranspose1d.backward; errors."""
import numpy as np
import pytest
from conftest import RTOL, assert_close, random_array

import convt_blas
from convt_blas import kernels

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

DTYPES = [np.float16, np.float32, np.float64, np.complex64, np.complex128]


def backward_reference(grad_output, x, w, stride, padding, output_padding, groups, dilation):
    """(grad_input, grad_weight, grad_bias) by direct loops over the forward's definition

        y[n, g*C_out/g + co, l*stride + k*dilation - padding] += x[n, ci, l] * w[ci, co, k]

    in float64/complex128: each product's gradient is grad_output at that output
    position times the other factor, conjugated for complex (torch's convention).
    """
    wide = np.complex128 if np.iscomplexobj(x) else np.float64
    go, x, w = (np.asarray(a, wide) for a in (grad_output, x, w))
    n_batch, c_in, l_in = x.shape
    _, c_out_g, k_size = w.shape
    c_in_g = c_in // groups
    l_out = go.shape[2]
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for ci in range(c_in):
        g = ci // c_in_g
        for co in range(c_out_g):
            for k in range(k_size):
                for l in range(l_in):
                    t = l * stride + k * dilation - padding
                    if 0 <= t < l_out:
                        row = go[:, g * c_out_g + co, t]
                        gx[:, ci, l] += np.conj(w[ci, co, k]) * row
                        gw[ci, co, k] += np.sum(np.conj(x[:, ci, l]) * row)
    return gx, gw, go.sum(axis=(0, 2))


def random_case(rng, dtype=np.float64, min_batch=0):
    """(grad_output, x, w, params) of a random small layer, batch min_batch-3."""
    groups = int(rng.integers(1, 4))
    c_in = groups * int(rng.integers(1, 4))
    c_out_g = int(rng.integers(1, 4))
    k = int(rng.integers(1, 6))
    stride = int(rng.integers(1, 4))
    dilation = int(rng.integers(1, 3))
    output_padding = int(rng.integers(0, max(stride, dilation)))
    length = int(rng.integers(1, 12))
    span = (length - 1) * stride + dilation * (k - 1) + output_padding + 1
    padding = int(rng.integers(0, max(1, (span - 1) // 2 + 1)))
    params = (stride, padding, output_padding, groups, dilation)
    batch = int(rng.integers(min_batch, 4))
    x = random_array(rng, (batch, c_in, length), dtype)
    w = random_array(rng, (c_in, c_out_g, k), dtype)
    l_out = convt_blas.output_length(length, k, stride, padding, output_padding, dilation)
    go = random_array(rng, (batch, c_out_g * groups, l_out), dtype)
    return go, x, w, params


def assert_gradients(actual, expected, dtype):
    for a, e in zip(actual, expected):
        assert a.dtype == np.dtype(dtype)
        assert_close(a, e, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(12))
def test_against_loop_reference(dtype, seed):
    rng = np.random.default_rng(seed)
    go, x, w, params = random_case(rng, dtype)
    got = convt_blas.conv_transpose1d_backward(go, x, w, *params)
    assert_gradients(got, backward_reference(go, x, w, *params), dtype)


def test_unbatched_is_batch_of_one():
    rng = np.random.default_rng(1)
    go, x, w, params = random_case(rng, min_batch=1)
    batched = convt_blas.conv_transpose1d_backward(go[:1], x[:1], w, *params)
    unbatched = convt_blas.conv_transpose1d_backward(go[0], x[0], w, *params)
    assert unbatched[0].shape == x.shape[1:]
    np.testing.assert_array_equal(unbatched[0], batched[0][0])
    np.testing.assert_array_equal(unbatched[1], batched[1])
    np.testing.assert_array_equal(unbatched[2], batched[2])


def test_empty_batch_gives_zero_weight_and_bias_gradients():
    w = np.ones((4, 3, 5))
    gx, gw, gb = convt_blas.conv_transpose1d_backward(np.ones((0, 6, 9)), np.ones((0, 4, 5)), w,
                                                      groups=2)
    assert gx.shape == (0, 4, 5)
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(6))


def test_output_mask_leaves_out_gradients():
    rng = np.random.default_rng(2)
    go, x, w, params = random_case(rng)
    full = convt_blas.conv_transpose1d_backward(go, x, w, *params)
    for mask in [(True, False, False), (False, True, False), (False, False, True),
                 (False, False, False), (True, True, False)]:
        got = convt_blas.conv_transpose1d_backward(go, x, w, *params, output_mask=mask)
        for wanted, g, f in zip(mask, got, full):
            if wanted:
                np.testing.assert_array_equal(g, f)
            else:
                assert g is None


def test_non_contiguous_and_channels_last_operands():
    rng = np.random.default_rng(3)
    x = random_array(rng, (2, 10, 40), np.float64)[:, ::2, ::2]  # (2, 5, 20), strided
    w = np.asfortranarray(random_array(rng, (5, 3, 4), np.float64))
    go = random_array(rng, (2, 40, 3), np.float64).transpose(0, 2, 1)  # channels-last
    go = go[:, :, :convt_blas.output_length(20, 4, 2, 1)]
    got = convt_blas.conv_transpose1d_backward(go, x, w, stride=2, padding=1)
    assert_gradients(got, backward_reference(go, x, w, 2, 1, 0, 1, 1), np.float64)


def test_large_layers_cut_into_tiles_and_blocks():
    """Layers long and wide enough for several input tiles and weight blocks per group,
    checked by the adjoint identities with the forward, y(x, w) linear in each:
    <y(x, w), go> = <x, grad_input> = <w, grad_weight> (and against torch)."""
    rng = np.random.default_rng(4)
    for (c_in, c_out_g, k, stride, padding, groups, length) in [(256, 128, 16, 8, 4, 1, 300),
                                                                (192, 96, 7, 1, 3, 3, 1500),
                                                                (64, 512, 4, 2, 1, 1, 70),
                                                                (64, 32, 4, 2, 1, 1, 3000),
                                                                (512, 256, 16, 8, 4, 1, 8)]:
        shape = (2, c_in, length, c_out_g * groups, k, stride, padding, 0, 1, groups)
        info = kernels._backward_plan_info(shape)
        assert info["input_cut"]["chunks"] > 2 or info["in_blocks"] * info["out_blocks"] > 1
        if c_out_g == 32:  # one weight block: its chunks summed in ranges side by side
            assert info["weight_splits"] > 1 and info["input_cut"]["chunks"] >= 8
        if length == 8:  # one chunk per element: grad_input by blocks of input channels
            assert info["input_in_blocks"] > 1
        assert info["input_worker_elements"] <= 2 << 20  # the workspace stays bounded
        x = random_array(rng, (2, c_in, length), np.float64)
        w = random_array(rng, (c_in, c_out_g, k), np.float64)
        y = convt_blas.conv_transpose1d(x, w, stride=stride, padding=padding, groups=groups)
        go = random_array(rng, y.shape, np.float64)
        gx, gw, _ = convt_blas.conv_transpose1d_backward(go, x, w, stride, padding, groups=groups)
        scale = np.abs(y).sum() * np.abs(go).max()
        assert abs(np.vdot(y, go) - np.vdot(x, gx)) <= 1e-12 * scale
        assert abs(np.vdot(y, go) - np.vdot(w, gw)) <= 1e-12 * scale
        if torch is not None:
            expected = _torch_gradients(go, x, w, (stride, padding, 0, groups, 1))
            for a, e in zip((gx, gw), expected):
                assert_close(a, e, np.float64)


@pytest.fixture
def phases_everywhere():
    """grad_input by phases wherever K is a multiple of the stride (dilation 1)."""
    previous = kernels._set_backward_phases(1, 0)
    yield
    kernels._set_backward_phases(*previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_grad_input_by_phases_against_the_reference(dtype, phases_everywhere):
    """Taps of one stride each, with padding past a stride, output_padding, groups, one
    output channel (the weight read in place), short inputs side by side in one GEMM
    and long ones in tiles."""
    rng = np.random.default_rng(6)
    taken = 0
    cases = [(2, 4, 9, 3, 6, 2, 5, 1, 2), (3, 6, 5, 1, 8, 4, 3, 2, 3), (1, 3, 7, 2, 3, 3, 0, 0, 1),
             (2, 2, 11, 4, 3, 1, 2, 0, 1), (4, 4, 3, 2, 12, 4, 9, 3, 2),
             (1, 16, 2000, 8, 4, 2, 1, 1, 1), (2, 8, 700, 1, 6, 3, 2, 0, 4)]
    for n, c_in, length, c_out_g, k, stride, padding, output_padding, groups in cases:
        taken += kernels._backward_plan_info(
            (n, c_in, length, c_out_g * groups, k, stride, padding, output_padding, 1,
             groups))["input_taps"] == k // stride
        x = random_array(rng, (n, c_in, length), dtype)
        w = random_array(rng, (c_in, c_out_g, k), dtype)
        l_out = convt_blas.output_length(length, k, stride, padding, output_padding)
        go = random_array(rng, (n, c_out_g * groups, l_out), dtype)
        params = (stride, padding, output_padding, groups, 1)
        got = convt_blas.conv_transpose1d_backward(go, x, w, *params)
        assert_gradients(got, backward_reference(go, x, w, *params), dtype)
    assert taken == len(cases)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_depthwise_by_direct_loops(dtype):
    """One input and one output channel a group: direct loops over the taps, with
    dilation, padding past the taps, output_padding and an empty batch."""
    rng = np.random.default_rng(9)
    for n, channels, length, k, stride, padding, output_padding, dilation in [
            (3, 5, 17, 6, 3, 2, 1, 1), (1, 4, 9, 3, 1, 5, 0, 2), (2, 7, 1, 4, 2, 0, 1, 1),
            (0, 3, 6, 2, 2, 1, 0, 3)]:
        assert kernels._backward_plan_info((max(n, 1), channels, length, channels, k, stride,
                                            padding, output_padding, dilation,
                                            channels))["depthwise"]
        x = random_array(rng, (n, channels, length), dtype)
        w = random_array(rng, (channels, 1, k), dtype)
        l_out = convt_blas.output_length(length, k, stride, padding, output_padding, dilation)
        go = random_array(rng, (n, channels, l_out), dtype)
        params = (stride, padding, output_padding, channels, dilation)
        got = convt_blas.conv_transpose1d_backward(go, x, w, *params)
        assert_gradients(got, backward_reference(go, x, w, *params), dtype)


def test_grad_input_by_phases_is_the_im2col_one(phases_everywhere):
    """The same gradients either way, within rounding, on random layers."""
    rng = np.random.default_rng(7)
    taken = 0
    for _ in range(40):
        go, x, w, params = random_case(rng, np.float64, min_batch=1)
        stride, padding, output_padding, groups, dilation = params
        taken += kernels._backward_plan_info(
            (x.shape[0], x.shape[1], x.shape[2], w.shape[1] * groups, w.shape[2], stride,
             padding, output_padding, dilation, groups))["input_taps"] > 0
        by_phases = convt_blas.conv_transpose1d_backward(go, x, w, *params,
                                                         output_mask=(True, False, False))[0]
        kernels._set_backward_phases(1 << 40, 0)
        try:
            by_im2col = convt_blas.conv_transpose1d_backward(
                go, x, w, *params, output_mask=(True, False, False))[0]
        finally:
            kernels._set_backward_phases(1, 0)
        assert_close(by_phases, by_im2col, np.float64)
    assert taken >= 5  # the layers whose K is a multiple of the stride, dilation 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_bitwise_equal_across_thread_counts(dtype):
    if not convt_blas.openmp_enabled():
        pytest.skip("built without OpenMP: one thread only")
    rng = np.random.default_rng(5)
    layers = [(4, 256, 128, 16, 8, 4, 1, 120), (3, 64, 64, 7, 1, 3, 4, 900),
              (2, 128, 64, 4, 2, 1, 1, 333),
              (1, 64, 32, 4, 2, 1, 1, 3000),  # grad_weight summed in splits
              (1, 512, 256, 16, 8, 4, 1, 8),  # grad_input by blocks of input channels
              (5, 64, 1, 6, 3, 2, 64, 40)]  # depthwise
    try:
        for n, c_in, c_out_g, k, stride, padding, groups, length in layers:
            x = random_array(rng, (n, c_in, length), dtype)
            w = random_array(rng, (c_in, c_out_g, k), dtype)
            l_out = convt_blas.output_length(length, k, stride, padding)
            go = random_array(rng, (n, c_out_g * groups, l_out), dtype)
            results = []
            for threads in (1, 2, 3):
                convt_blas.set_num_threads(threads)
                results.append(convt_blas.conv_transpose1d_backward(go, x, w, stride, padding,
                                                                    groups=groups))
            for other in results[1:]:
                for a, b in zip(results[0], other):
                    assert a.tobytes() == b.tobytes()
    finally:
        convt_blas.set_num_threads(None)


def _torch_gradients(go, x, w, params, bias=True):
    stride, padding, output_padding, groups, dilation = params
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_()
    wt = torch.from_numpy(np.ascontiguousarray(w)).requires_grad_()
    c_out = w.shape[1] * groups
    bt = torch.zeros(c_out, dtype=wt.dtype, requires_grad=True)
    y = torch.nn.functional.conv_transpose1d(xt, wt, bt, stride, padding, output_padding,
                                             groups, dilation)
    return [g.numpy() for g in torch.autograd.grad(y, (xt, wt, bt),
                                                   torch.from_numpy(np.ascontiguousarray(go)))]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("seed", range(25))
def test_against_torch_autograd(dtype, seed):
    rng = np.random.default_rng(100 + seed)
    go, x, w, params = random_case(rng, dtype, min_batch=1)
    if seed % 5 == 0:  # unbatched
        x, go = x[0], go[0]
    if seed % 3 == 0:  # non-contiguous input
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    got = convt_blas.conv_transpose1d_backward(go, x, w, *params)
    expected = _torch_gradients(go, x, w, params)
    for a, e in zip(got, expected):
        assert a.shape == e.shape
        assert_close(a, e, dtype)


@needs_torch
def test_against_convolution_backward_on_a_vocoder_layer():
    rng = np.random.default_rng(7)
    x = random_array(rng, (3, 512, 100), np.float32)
    w = random_array(rng, (512, 256, 16), np.float32)
    go = random_array(rng, (3, 256, 800), np.float32)
    expected = torch.ops.aten.convolution_backward(
        torch.from_numpy(go), torch.from_numpy(x), torch.from_numpy(w), [256], [8], [4], [1],
        True, [0], 1, [True, True, True])
    got = convt_blas.conv_transpose1d_backward(go, x, w, stride=8, padding=4)
    for a, e in zip(got, expected):
        assert_close(a, e.numpy(), np.float32)


if torch is not None:
    class _ConvTranspose1d(torch.autograd.Function):
        """conv_transpose1d with convt_blas's forward and backward."""

        @staticmethod
        def forward(ctx, x, w, b, params):
            ctx.save_for_backward(x, w)
            ctx.params = params
            return torch.from_numpy(convt_blas.conv_transpose1d(x.numpy(), w.numpy(), b.numpy(),
                                                                *params))

        @staticmethod
        def backward(ctx, grad_output):
            x, w = ctx.saved_tensors
            stride, padding, output_padding, groups, dilation = ctx.params
            grads = convt_blas.conv_transpose1d_backward(
                grad_output.numpy(), x.numpy(), w.numpy(), stride, padding, output_padding,
                groups, dilation)
            return (*(torch.from_numpy(g) for g in grads), None)


@needs_torch
@pytest.mark.parametrize("seed", range(6))
def test_gradcheck(seed):
    rng = np.random.default_rng(200 + seed)
    go, x, w, params = random_case(rng, np.float64, min_batch=1)
    b = random_array(rng, (w.shape[1] * params[3],), np.float64)
    inputs = tuple(torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w, b: _ConvTranspose1d.apply(x, w, b, params),
                                    inputs)


def test_layer_backward_matches_the_function():
    rng = np.random.default_rng(8)
    layer = convt_blas.ConvTranspose1d(6, 4, 5, stride=2, padding=1, groups=2, dilation=2)
    x = random_array(rng, (3, 6, 11), np.float32)
    go = random_array(rng, layer(x).shape, np.float32)
    grads = layer.backward(x, go)
    gx, gw, gb = convt_blas.conv_transpose1d_backward(go, x, layer.weight, stride=2, padding=1,
                                                      groups=2, dilation=2)
    np.testing.assert_array_equal(grads.input, gx)
    np.testing.assert_array_equal(grads.weight, gw)
    np.testing.assert_array_equal(grads.bias, gb)
    assert convt_blas.ConvTranspose1d(6, 4, 5, bias=False).backward(
        x, random_array(rng, (3, 4, 15), np.float32)).bias is None


def test_grad_output_of_the_wrong_shape_names_both_shapes():
    x, w = np.ones((2, 4, 10)), np.ones((4, 3, 5))
    with pytest.raises(ValueError, match=r"grad_output has shape \(2, 3, 13\), but the "
                                         r"forward's output .* has shape \(2, 3, 14\)"):
        convt_blas.conv_transpose1d_backward(np.ones((2, 3, 13)), x, w)
    with pytest.raises(ValueError, match=r"has shape \(3, 14\), .* has shape \(2, 3, 14\)"):
        convt_blas.conv_transpose1d_backward(np.ones((3, 14)), x, w)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"groups": 3}, ValueError, "multiple of groups"),
    ({"stride": 0}, ValueError, "stride must be positive"),
    ({"padding": -1}, ValueError, "padding must be non-negative"),
    ({"output_padding": 2, "stride": 2}, ValueError, "output_padding must be smaller"),
    ({"stride": 1.5}, TypeError, "stride must be an int"),
    ({"output_mask": (True, True)}, ValueError, "output_mask must be three bools"),
    ({"output_mask": (1, 1, 1)}, ValueError, "output_mask must be three bools"),
])
def test_argument_errors_are_the_forwards(kwargs, error, match):
    x, w = np.ones((2, 4, 10)), np.ones((4, 3, 5))
    with pytest.raises(error, match=match):
        convt_blas.conv_transpose1d_backward(np.ones((2, 3, 14)), x, w, **kwargs)


def test_dtype_errors():
    x, w, go = np.ones((2, 4, 10)), np.ones((4, 3, 5)), np.ones((2, 3, 14))
    with pytest.raises(TypeError, match="grad_output dtype float32 and input dtype float64"):
        convt_blas.conv_transpose1d_backward(go.astype(np.float32), x, w)
    with pytest.raises(TypeError, match="input dtype float64 and weight dtype float32"):
        convt_blas.conv_transpose1d_backward(go, x, w.astype(np.float32))
    with pytest.raises(TypeError, match="input has dtype int64"):
        convt_blas.conv_transpose1d_backward(go, x.astype(np.int64), w.astype(np.int64))
    with pytest.raises(ValueError, match="input of shape"):
        convt_blas.conv_transpose1d_backward(go, np.ones((2, 5, 10)), w)


def _bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
    return ml_dtypes.bfloat16


@pytest.mark.parametrize("low", [np.float16, "bfloat16"])
def test_low_precision_is_computed_in_float32(low):
    low = _bfloat16() if low == "bfloat16" else low
    rng = np.random.default_rng(9)
    go, x, w, params = (a.astype(low) if isinstance(a, np.ndarray) else a
                        for a in random_case(rng, np.float32, min_batch=1))
    got = convt_blas.conv_transpose1d_backward(go, x, w, *params)
    wide = convt_blas.conv_transpose1d_backward(go.astype(np.float32), x.astype(np.float32),
                                                w.astype(np.float32), *params)
    for a, b in zip(got, wide):
        assert a.dtype == low
        np.testing.assert_array_equal(a.astype(np.float32), b.astype(low).astype(np.float32))


def test_rtol_table_covers_every_dtype():
    assert set(map(np.dtype, DTYPES)) <= set(RTOL)
