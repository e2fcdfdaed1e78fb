"""Winograd's F(3,2) path (layers with K == 2*stride): when it is taken, and that it is right."""
import contextlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

import convt_blas
from convt_blas import kernels
from conftest import assert_close, assert_non_finite_redone, make_case
from reference import conv_transpose1d_reference


def plan(n, c_in, length, c_out, k, stride, padding=0, output_padding=0, dilation=1, groups=1):
    return kernels._plan_info((n, c_in, length, c_out, k, stride, padding, output_padding,
                              dilation, groups))


@contextlib.contextmanager
def plain_path():
    """Winograd off inside, on again after (the default)."""
    convt_blas.set_winograd(False)
    try:
        yield
    finally:
        convt_blas.set_winograd(True)


@pytest.fixture(autouse=True)
def deep_inputs_allowed():
    """F(3,2) for any depth of input, as the rule was before WINOGRAD_MAX_INPUT: these
    tests cover its machinery (one component at a time, both unit orders) on deep
    layers too, which the default rule keeps on the GEMM path. Yields the default."""
    default = kernels._set_winograd_max_input(1 << 40)
    convt_blas._functional._call_plan.cache_clear()
    try:
        yield default
    finally:
        kernels._set_winograd_max_input(default)
        convt_blas._functional._call_plan.cache_clear()


def test_deep_prepared_layers_need_longer_inputs(rng, deep_inputs_allowed):
    """From 384 input channels per group a layer's GEMM path (weight rows) beats F(3,2)
    on a prepared weight below 250 positions (plan.pxi), 128 below 384 channels."""
    kernels._set_winograd_max_input(deep_inputs_allowed)
    convt_blas._functional._call_plan.cache_clear()
    assert deep_inputs_allowed == 384

    def takes(c_in, length, c_out, groups=1, prepared=True):
        shape = (1, c_in, length, c_out, 16, 8, 4, 0, 1, groups)
        return kernels._plan_info(shape, prepared)["winograd"]

    assert takes(383, 128, 128) and not takes(384, 249, 128) and takes(384, 250, 128)
    assert takes(766, 128, 256, groups=2) and not takes(768, 249, 256, groups=2)
    x, w, b = make_case(rng, 1, 384, 128, 16, 249, 1)
    layer = layer_with(w, b, 8, 4, 0, 1)
    y = layer(x)
    assert layer._weight_cache.prepared is None or layer._weight_cache.prepared[1] is None
    with plain_path():
        np.testing.assert_array_equal(y, convt_blas.conv_transpose1d(x, w, b, 8, 4))
    kernels._set_winograd_max_input(1 << 40)


@pytest.fixture
def gemm_only():
    with plain_path():
        yield


def test_rule():
    assert convt_blas.get_winograd()
    assert plan(1, 256, 800, 128, 16, 8, 4)["winograd"]
    assert plan(1, 64, 512, 32, 4, 2, 1)["winograd"]  # both sides exactly 64
    assert not plan(1, 1024, 511, 512, 8, 4)["winograd"]  # input too short for 4 Mi weights
    assert plan(1, 1024, 512, 512, 8, 4)["winograd"]
    assert plan(1, 512, 256, 256, 16, 8, 4)["winograd"]  # at most 2 Mi weights: from 256
    assert not plan(1, 512, 255, 256, 16, 8, 4)["winograd"]
    assert not plan(1, 1024, 256, 512, 8, 4)["winograd"]
    assert not plan(1, 63, 12800, 32, 4, 2, 1)["winograd"]  # 63 input channels
    assert not plan(1, 128, 6400, 31, 4, 2, 1)["winograd"]  # C_out * stride = 62
    assert not plan(1, 256, 800, 128, 15, 8, 4)["winograd"]  # K != 2*stride
    assert not plan(1, 256, 800, 128, 16, 8, 4, dilation=2)["winograd"]
    assert not plan(1, 512, 800, 512, 6, 3, groups=512)["winograd"]  # depthwise: direct taps
    assert plan(1, 512, 800, 256, 16, 8, groups=2)["winograd"]  # 256 in, 128*8 out per group


def test_rule_does_not_depend_on_batch_or_threads():
    single = plan(1, 256, 800, 128, 16, 8, 4)
    many = plan(16, 256, 800, 128, 16, 8, 4)
    for key in ("winograd", "block_channels", "tile_spans", "span_first", "span_count"):
        assert single[key] == many[key]


def test_set_winograd(gemm_only):
    assert not convt_blas.get_winograd()
    assert not plan(1, 256, 800, 128, 16, 8, 4)["winograd"]
    with pytest.raises(TypeError):
        convt_blas.set_winograd(1)


# (n, C_in/g, C_out/g, stride, L_in, padding, output_padding, groups): paddings below,
# at and beyond a stride, output padding past the padding (a trailing stride of bias
# only), odd and even lengths, merged batch elements, several tiles and channel blocks.
CASES = [
    (1, 128, 64, 2, 512, 1, 0, 1),
    (2, 128, 40, 4, 601, 0, 3, 1),
    (3, 130, 33, 5, 700, 7, 2, 1),
    (2, 160, 48, 8, 513, 4, 0, 2),
    (4, 128, 256, 1, 517, 0, 0, 1),
    (1, 144, 64, 3, 3000, 8, 1, 1),
    (5, 200, 96, 4, 530, 2, 1, 1),
    (7, 256, 128, 8, 512, 4, 0, 1),
    (2, 64, 32, 2, 3000, 1, 1, 1),  # shallow: many short tiles (see test_shallow_tiles)
]


@pytest.mark.parametrize("case", CASES)
def test_matches_reference_and_gemm_path(rng, case):
    n, c_in_g, c_out_g, s, length, p, op, groups = case
    info = plan(n, c_in_g * groups, length, c_out_g * groups, 2 * s, s, p, op, 1, groups)
    assert info["winograd"]
    x, w, b = make_case(rng, n, c_in_g, c_out_g, 2 * s, length, groups)
    args = (s, p, op, groups)
    y = convt_blas.conv_transpose1d(x, w, b, *args)
    assert_close(y, conv_transpose1d_reference(x, w, b, *args))
    with plain_path():
        y_gemm = convt_blas.conv_transpose1d(x, w, b, *args)
    assert not np.array_equal(y, y_gemm)  # really another path
    assert_close(y, y_gemm)


def test_shallow_tiles():
    # Below 96 input channels per group a unit's four products stay within 48 Ki
    # elements; deeper layers keep the GEMM plan's tiles.
    for c_in, c_out, s in ((64, 32, 2), (80, 40, 2), (64, 16, 4)):
        info = plan(1, c_in, 12800, c_out, 2 * s, s, s // 2)
        rows = info["block_channels"] * s
        assert info["n_tiles"] > 8 and 4 * rows * info["tile_spans"] <= 49152
    deep = plan(1, 96, 12800, 48, 4, 2, 1)
    assert 4 * deep["block_channels"] * 2 * deep["tile_spans"] > 49152


def test_both_unit_orders_and_merged_samples_are_covered():
    infos = [plan(c[0], c[1] * c[7], c[4], c[2] * c[7], 2 * c[3], c[3], c[5], c[6], 1, c[7])
             for c in CASES]
    assert {i["tile_major"] for i in infos} == {0, 1}
    assert any(i["samples_per_unit"] > 1 for i in infos)
    assert any(i["n_tiles"] > 1 for i in infos) and any(i["n_blocks"] > 1 for i in infos)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64, np.complex128, np.float16])
def test_dtypes(rng, dtype):
    x, w, b = make_case(rng, 2, 128, 64, 4, 520, 1, dtype)
    y = convt_blas.conv_transpose1d(x, w, b, stride=2, padding=1)
    assert y.dtype == dtype
    assert_close(y, conv_transpose1d_reference(x, w, b, 2, 1), dtype)


@pytest.mark.parametrize("c_in", [128, 70, 100, 101])
def test_channels_last_unbatched_and_no_bias(rng, c_in):
    # Channels-first float32 input is transformed four channels at a time
    # (SSE), other layouts one at a time: the same bits, whatever channels
    # are left over.
    x, w, _ = make_case(rng, 2, c_in, 64, 8, 600, 1, bias=False)
    expected = conv_transpose1d_reference(x, w, None, 4, 2)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    y = convt_blas.conv_transpose1d(channels_last, w, None, stride=4, padding=2)
    assert_close(y, expected)
    np.testing.assert_array_equal(y, convt_blas.conv_transpose1d(x, w, stride=4, padding=2))
    every_other = np.repeat(x, 2, axis=2)[:, :, ::2]  # positions 2 elements apart
    np.testing.assert_array_equal(y, convt_blas.conv_transpose1d(every_other, w, stride=4, padding=2))
    assert_close(convt_blas.conv_transpose1d(x[1], w, stride=4, padding=2), expected[1])


def test_bitwise_across_threads_and_batch_splits(rng):
    x, w, b = make_case(rng, 6, 160, 64, 8, 700, 1)
    runs = []
    try:
        for threads in (1, 2, 3):
            convt_blas.set_num_threads(threads)
            runs.append(convt_blas.conv_transpose1d(x, w, b, stride=4, padding=2))
    finally:
        convt_blas.set_num_threads(None)
    for y in runs[1:]:
        np.testing.assert_array_equal(y, runs[0])
    parts = [convt_blas.conv_transpose1d(x[i:j], w, b, stride=4, padding=2)
             for i, j in ((0, 1), (1, 4), (4, 6))]
    np.testing.assert_array_equal(np.concatenate(parts), runs[0])


def test_rounding_error_close_to_gemm_path(rng, gemm_only):
    # F(3,2) adds and subtracts inputs and taps before the GEMMs; its error
    # against a float64 result stays within a small factor of the GEMM path's.
    x, w, b = make_case(rng, 2, 256, 128, 16, 800, 1)
    expected = conv_transpose1d_reference(x.astype(np.float64), w.astype(np.float64),
                                          b.astype(np.float64), 8, 4)
    gemm_error = np.abs(convt_blas.conv_transpose1d(x, w, b, 8, 4) - expected).max()
    convt_blas.set_winograd(True)
    winograd_error = np.abs(convt_blas.conv_transpose1d(x, w, b, 8, 4) - expected).max()
    assert winograd_error <= 3 * gemm_error


def test_c_api_workspace_follows_the_rule():
    shape = (1, 256, 800, 128, 16, 8, 4, 0, 1, 1)
    _, with_winograd = kernels.plan_sizes(shape)
    with plain_path():
        _, without = kernels.plan_sizes(shape)
    assert with_winograd == plan(*shape)["worker_elements"] and with_winograd != without


def test_workspace_smaller_than_the_plan_is_refused(rng):
    # The kernel checks the workspace against the plan it is handed, not overrun.
    shape = (1, 256, 800, 128, 16, 8, 4, 0, 1, 1)
    call = kernels.plan_call(shape, False, True)
    gemm_elements = kernels.plan_sizes(shape, winograd=False)[1]
    assert call.info()["winograd"] and call.worker_elements > gemm_elements
    x = rng.standard_normal((1, 256, 800)).astype(np.float32)
    w = rng.standard_normal((256, 128, 16)).astype(np.float32)
    out = np.empty((1, 128, plan(*shape)["out_length"]), np.float32)
    with pytest.raises(ValueError, match="workspace too small"):
        kernels.run_plan(call, x, (256 * 800, 800, 1), w, None, out,
                    np.empty(gemm_elements, np.float32), 1)


@contextlib.contextmanager
def winograd_workspace(elements):
    """F(3,2) plans fit a worker's workspace to ``elements`` inside (see WINOGRAD_WORKSPACE)."""
    previous = kernels._set_winograd_workspace(elements)
    convt_blas._functional._call_plan.cache_clear()
    try:
        yield
    finally:
        kernels._set_winograd_workspace(previous)
        convt_blas._functional._call_plan.cache_clear()


def winograd_elements(info, stride, components, prepared=False):
    """A worker's F(3,2) workspace as the planner counts it."""
    columns = info["samples_per_unit"] * info["tile_spans"]
    rows = info["block_channels"] * stride
    weight = 0 if prepared else info["c_in_g"] * rows
    # Four input channels' transform, transposed into rows (from 96 input channels).
    chunk = 0 if prepared or info["c_in_g"] < 96 else 4 * rows
    return components * (weight + columns * info["c_in_g"] + chunk) + 4 * columns * rows


# Deep benchmark layers (C_in, C_out, stride, padding, L_in): Demucs and DAC.
DEEP_LAYERS = [(1024, 512, 4, 0, 1000), (768, 384, 8, 4, 688), (384, 192, 4, 2, 5504),
               (256, 128, 4, 0, 16000)]


@pytest.mark.parametrize("prepared", [False, True])
@pytest.mark.parametrize("layer", DEEP_LAYERS)
def test_workspace_stays_a_few_mib_whatever_the_length(layer, prepared):
    # Four transformed weight blocks and input tiles took up to 15.8 MiB of
    # float32 per worker on these layers; one component at a time (and
    # smaller GEMMs where needed) they fit 4 MiB, at any input length.
    c_in, c_out, s, p, length = layer
    for n, scale in ((1, 1), (1, 8), (4, 1)):
        shape = (n, c_in, length * scale, c_out, 2 * s, s, p, 0, 1, 1)
        info = kernels._plan_info(shape, prepared)
        assert info["winograd"] and info["pass_components"] in (1, 4)
        assert winograd_elements(info, s, info["pass_components"], prepared) <= 2 ** 20
        assert kernels.plan_sizes(shape, prepared)[1] * 4 <= 4.1 * 2 ** 20
    assert winograd_elements(kernels._plan_info(shape, prepared), s, 4, prepared) > 2 ** 20 or prepared


def test_one_output_channel_at_a_long_stride_plans_and_runs(rng):
    # One output channel, K = 2 * 256: every block is one channel of 256 rows, and
    # a workspace that still did not fit made the planner halve that block forever
    # (planned in a child process, so that a relapse fails instead of hanging).
    shape = (1, 4096, 300, 1, 512, 256, 0, 0, 1, 1)
    script = ("from convt_blas import kernels; "
              f"info = kernels._plan_info({shape!r}); "
              "print(info['winograd'], info['block_channels'])")
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("planning did not finish")
    assert result.stdout.split() == ["True", "1"], result.stderr
    x = rng.standard_normal((1, 4096, 300)).astype(np.float32)
    w = rng.standard_normal((4096, 1, 512)).astype(np.float32)
    y = convt_blas.conv_transpose1d(x, w, stride=256)
    with plain_path():
        assert_close(y, convt_blas.conv_transpose1d(x, w, stride=256))


@pytest.mark.parametrize("case", [CASES[2], CASES[3], CASES[6]])
def test_one_component_at_a_time_keeps_the_bits(rng, case):
    # A workspace too small for all four components but large enough for one
    # keeps the plan's GEMMs: every product is the same GEMM, so the same bits.
    n, c_in_g, c_out_g, s, length, p, op, groups = case
    shape = (n, c_in_g * groups, length, c_out_g * groups, 2 * s, s, p, op, 1, groups)
    x, w, b = make_case(rng, n, c_in_g, c_out_g, 2 * s, length, groups)
    args = (s, p, op, groups)
    for prepared in (False, True):
        info = kernels._plan_info(shape, prepared)
        assert info["pass_components"] == 4
        apply = layer_with(w, b, *args) if prepared else (
            lambda v: convt_blas.conv_transpose1d(v, w, b, *args))
        y = apply(x)
        with winograd_workspace(winograd_elements(info, s, 1, prepared)):
            one = kernels._plan_info(shape, prepared)
            assert one["pass_components"] == 1
            for key in ("block_channels", "tile_spans", "samples_per_unit", "tile_major"):
                assert one[key] == info[key]
            np.testing.assert_array_equal(apply(x), y)


def test_one_component_at_a_time_with_merged_samples(rng):
    # Batch elements sharing each GEMM, fewer of them to fit the workspace:
    # still the bits of one element at a time and of all four components.
    shape = (8, 256, 300, 64, 16, 8, 4, 0, 1, 1)
    x, w, b = make_case(rng, 8, 256, 64, 16, 300, 1)
    y = convt_blas.conv_transpose1d(x, w, b, 8, 4)
    assert plan(*shape)["samples_per_unit"] == 4 and plan(*shape)["pass_components"] == 4
    with winograd_workspace(196608):
        info = plan(*shape)
        assert info["pass_components"] == 1 and info["samples_per_unit"] == 2
        np.testing.assert_array_equal(convt_blas.conv_transpose1d(x, w, b, 8, 4), y)
        parts = [convt_blas.conv_transpose1d(x[i:i + 1], w, b, 8, 4) for i in range(8)]
        np.testing.assert_array_equal(np.concatenate(parts), y)
    assert_close(y, conv_transpose1d_reference(x, w, b, 8, 4))


@pytest.mark.parametrize("case", CASES)
def test_small_workspace_cuts_smaller_gemms(rng, case):
    # A workspace of 16 Ki elements halves the channel blocks and tiles down
    # to 64-row and 64-span GEMMs: results stay right and keep their bits
    # across threads and batch splits, function and layer alike.
    n, c_in_g, c_out_g, s, length, p, op, groups = case
    shape = (n, c_in_g * groups, length, c_out_g * groups, 2 * s, s, p, op, 1, groups)
    x, w, b = make_case(rng, n, c_in_g, c_out_g, 2 * s, length, groups)
    args = (s, p, op, groups)
    expected = conv_transpose1d_reference(x, w, b, *args)
    default = plan(*shape)
    with winograd_workspace(2 ** 14):
        info = plan(*shape)
        assert info["winograd"] and info["pass_components"] == 1
        assert (info["n_blocks"] * info["n_tiles"] > default["n_blocks"] * default["n_tiles"]
                or info["block_channels"] * s < 128 or info["tile_spans"] < 128)
        y = convt_blas.conv_transpose1d(x, w, b, *args)
        assert_close(y, expected)
        assert_close(layer_with(w, b, *args)(x), expected)
        try:
            convt_blas.set_num_threads(2)
            np.testing.assert_array_equal(convt_blas.conv_transpose1d(x, w, b, *args), y)
        finally:
            convt_blas.set_num_threads(None)
        if n > 1:
            parts = [convt_blas.conv_transpose1d(x[i:i + 1], w, b, *args) for i in range(n)]
            np.testing.assert_array_equal(np.concatenate(parts), y)


@pytest.mark.parametrize("where", ["input", "weight", "overflow"])
@pytest.mark.parametrize("k,stride,padding", [(8, 4, 2), (4, 2, 1)])  # stride 2: SSE pairs
def test_non_finite_values_as_the_convolution_gives_them(rng, where, k, stride, padding):
    # F(3,2) mixes every input into three strides and subtracts products: an
    # inf or NaN would spread to outputs that stay finite, so the batch
    # elements it reaches are computed again on the GEMM path, one by one
    # (bitwise that path's result, and the same for any split of the batch).
    x, w, b = make_case(rng, 3, 128, 64, k, 600, 1)
    if where == "input":
        x[0, 5, 100], x[2, 7, 301], x[2, 9, 450] = np.inf, np.nan, -np.inf
    elif where == "weight":
        w[3, 10, 2] = np.inf
    else:
        x[0, :, 200] = 3e38  # finite, but the sums overflow
    assert plan(3, 128, 600, 64, k, stride, padding)["winograd"]
    y = convt_blas.conv_transpose1d(x, w, b, stride=stride, padding=padding)
    singles = [convt_blas.conv_transpose1d(x[n:n + 1], w, b, stride=stride, padding=padding)[0]
               for n in range(3)]
    with plain_path():
        y_gemm = convt_blas.conv_transpose1d(x, w, b, stride=stride, padding=padding)
    assert_non_finite_redone(y, conv_transpose1d_reference(x, w, b, stride, padding), y_gemm,
                             singles, where)


# -- the transformed weight held by ConvTranspose1d ------------------------------------

def layer_with(w, b, stride, padding=0, output_padding=0, groups=1):
    c_in, c_out_g, k = w.shape
    layer = convt_blas.nn.ConvTranspose1d(c_in, c_out_g * groups, k, stride, padding,
                                          output_padding, groups, bias=b is not None,
                                          dtype=w.dtype)
    layer.load_state_dict({"weight": w} if b is None else {"weight": w, "bias": b})
    return layer


def test_prepared_rule():
    shape = (1, 256, 128, 128, 16, 8, 4, 0, 1, 1)
    assert kernels.takes_prepared_weight(shape) and kernels._plan_info(shape, True)["winograd"]
    assert not plan(*shape)["winograd"]  # the function transforms per call: 512 and up
    assert not kernels.takes_prepared_weight((1, 256, 127, 128, 16, 8, 4, 0, 1, 1))
    assert not kernels.takes_prepared_weight((1, 256, 800, 128, 15, 8, 4, 0, 1, 1))
    with plain_path():
        assert not kernels.takes_prepared_weight(shape)
    # The rule does not look at the batch: results keep their bits for any split.
    assert kernels.takes_prepared_weight((16,) + shape[1:])
    assert kernels.prepare_weight((1, 256, 1, 128, 15, 8, 4, 0, 1, 1),
                                            np.zeros((256, 128, 15), np.float32)) is None


# (n, C_in/g, C_out/g, stride, L_in, padding, output_padding, groups)
PREPARED_CASES = [
    (1, 128, 64, 2, 128, 1, 0, 1),
    (3, 96, 40, 4, 200, 3, 2, 2),
    (2, 144, 64, 8, 300, 4, 0, 1),
    (5, 64, 33, 2, 700, 0, 1, 1),
]


@pytest.mark.parametrize("case", PREPARED_CASES)
def test_layer_matches_reference_and_function(rng, case):
    n, c_in_g, c_out_g, s, length, p, op, groups = case
    x, w, b = make_case(rng, n, c_in_g, c_out_g, 2 * s, length, groups)
    layer = layer_with(w, b, s, p, op, groups)
    args = (s, p, op, groups)
    y = layer(x)
    assert_close(y, conv_transpose1d_reference(x, w, b, *args))
    assert layer._weight_cache.prepared is not None and layer._weight_cache.prepared[0] is layer.weight
    assert layer._weight_cache.prepared[1].size == 2 * w.size
    function = convt_blas.conv_transpose1d(x, w, b, *args)
    if plan(n, c_in_g * groups, length, c_out_g * groups, 2 * s, s, p, op, 1,
            groups)["winograd"]:  # the same F(3,2), weight transformed before or during the call
        np.testing.assert_array_equal(y, function)
    else:  # F(3,2) against the function's GEMM path
        assert not np.array_equal(y, function)
        assert_close(y, function)
    np.testing.assert_array_equal(layer(x), y)  # the held transform, reused


@pytest.mark.parametrize("c_in,c_out,stride,length", [
    (64, 32, 2, 600),    # GEMMs of 51 triples x 64 rows x 64: BLAS's small-matrix kernels
    (256, 128, 8, 800),  # blocked GEMMs
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prepared_rows_give_the_function_bits(rng, c_in, c_out, stride, length, dtype):
    """A prepared weight is laid out as its rows; the function transforms its weight into
    (C_in/g, rows) where the GEMMs are blocked (same bits either way) and into rows where
    they are not, so the layer and the function agree bitwise at any size."""
    shape = (1, c_in, length, c_out, 2 * stride, stride, stride // 2, 0, 1, 1)
    for prepared in (False, True):
        assert kernels._plan_info(shape, prepared)["winograd"]
    x, w, b = make_case(rng, 1, c_in, c_out, 2 * stride, length, 1, dtype)
    layer = layer_with(w, b, stride, stride // 2)
    layer(x)
    assert layer._weight_cache.prepared[1] is not None
    np.testing.assert_array_equal(layer(x), convt_blas.conv_transpose1d(x, w, b, stride,
                                                                         stride // 2))


def test_layer_drops_the_transform_of_a_replaced_weight(rng):
    x, w, b = make_case(rng, 2, 128, 64, 8, 200, 1)
    layer = layer_with(w, b, 4, 2)
    layer(x)
    for replace in ("assign", "load_state_dict", "reset_parameters"):
        if replace == "assign":
            layer.weight = w[::-1] * 0.5
        elif replace == "load_state_dict":
            layer.load_state_dict({"weight": w * 2.0, "bias": b})
        else:
            layer.reset_parameters(rng=7)
        expected = conv_transpose1d_reference(x, layer.weight, layer.bias, 4, 2)
        assert_close(layer(x), expected)


def test_layer_parameters_are_read_only(rng):
    layer = convt_blas.nn.ConvTranspose1d(128, 64, 8, 4, 2, rng=0)
    for arr in (layer.weight, layer.bias, layer.state_dict()["weight"]):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1.0
    layer.load_state_dict({"weight": np.ones((128, 64, 8), np.float32),
                           "bias": np.ones(64, np.float32)})
    layer.weight = np.zeros((128, 64, 8), np.float32)
    assert not layer.weight.flags.writeable and not layer.bias.flags.writeable


def test_layer_bitwise_across_threads_and_batch_splits(rng):
    x, w, b = make_case(rng, 5, 128, 64, 8, 300, 1)
    layer = layer_with(w, b, 4, 2)
    runs = []
    try:
        for threads in (1, 2, 3):
            convt_blas.set_num_threads(threads)
            runs.append(layer(x))
    finally:
        convt_blas.set_num_threads(None)
    for y in runs[1:]:
        np.testing.assert_array_equal(y, runs[0])
    parts = [layer(x[i:j]) for i, j in ((0, 1), (1, 3), (3, 5))]
    np.testing.assert_array_equal(np.concatenate(parts), runs[0])


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.complex128])
def test_layer_dtypes(rng, dtype):
    x, w, b = make_case(rng, 2, 128, 64, 4, 200, 1, dtype)
    layer = layer_with(w, b, 2, 1)
    y = layer(x)
    assert y.dtype == dtype
    assert_close(y, conv_transpose1d_reference(x, w, b, 2, 1), dtype)


def test_layer_without_winograd_is_the_function(rng):
    x, w, b = make_case(rng, 2, 128, 64, 8, 200, 1)
    layer = layer_with(w, b, 4, 2)
    with plain_path():
        np.testing.assert_array_equal(layer(x), convt_blas.conv_transpose1d(x, w, b, 4, 2))
        assert layer._weight_cache.prepared is None


def test_layer_non_finite_values(rng):
    # As the function: elements an inf or NaN reaches are redone on the GEMM path.
    x, w, b = make_case(rng, 3, 128, 64, 8, 200, 1)
    x[1, 5, 100] = np.inf
    layer = layer_with(w, b, 4, 2)
    y = layer(x)
    expected = conv_transpose1d_reference(x, w, b, 4, 2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
    np.testing.assert_array_equal(y[1], convt_blas.conv_transpose1d(x[1:2], w, b, 4, 2)[0])
    assert_close(y[[0, 2]], expected[[0, 2]])


def test_prepared_weight_of_another_layer_is_refused(rng):
    shape = (1, 128, 200, 64, 8, 4, 2, 0, 1, 1)
    x, w, b = make_case(rng, 1, 128, 64, 8, 200, 1)
    other = kernels.prepare_weight((1, 128, 200, 32, 8, 4, 2, 0, 1, 1), w[:, :32].copy())
    out = np.empty((1, 64, plan(*shape)["out_length"]), np.float32)
    workspace = np.empty(kernels.plan_sizes(shape, True)[1], np.float32)
    for prepared in (other, other.astype(np.float64), np.zeros(2 * w.size, np.float32)[::2]):
        with pytest.raises(ValueError, match="prepared weight"):
            kernels.run_plan(kernels.plan_call(shape, True), x, (128 * 200, 200, 1), w, b, out,
                        workspace, 1, prepared)


def test_layer_can_keep_no_transform(rng):
    x, w, b = make_case(rng, 2, 128, 64, 8, 200, 1)
    layer = layer_with(w, b, 4, 2)
    layer(x)
    assert layer._weight_cache.prepared is not None
    layer.keep_weight_cache = False
    assert layer._weight_cache.prepared is None and not layer.keep_weight_cache
    np.testing.assert_array_equal(layer(x), convt_blas.conv_transpose1d(x, w, b, 4, 2))
    assert layer._weight_cache.prepared is None
    with pytest.raises(TypeError, match="True or False"):
        layer.keep_weight_cache = 1


def test_prepared_weight_is_the_same_for_any_thread_count(rng):
    shape = (1, 96 * 3, 200, 40 * 3, 8, 4, 2, 0, 1, 3)  # three groups, rows in chunks
    _, w, _ = make_case(rng, 1, 96, 40, 8, 200, 3)
    one = kernels.prepare_weight(shape, w, 1)
    for threads in (2, 3):
        np.testing.assert_array_equal(kernels.prepare_weight(shape, w, threads), one)
    # Group 1's W1 (taps s..2s-1) as rows: input channel i, channel c at
    # [4*g*step + (c*s + r)*C_in/g + i].
    step = 96 * 40 * 4
    np.testing.assert_array_equal(one[4 * step: 5 * step].reshape(40 * 4, 96)[:, 5],
                                  w[96 + 5, :, 4:].ravel())


def test_layer_pickles_without_its_transform(rng):
    import copy
    import pickle

    x, w, b = make_case(rng, 2, 128, 64, 8, 200, 1)
    layer = layer_with(w, b, 4, 2)
    expected = layer(x)
    data = pickle.dumps(layer)
    assert len(data) < 1.5 * (w.nbytes + b.nbytes)  # no transformed copy inside
    for other in (pickle.loads(data), copy.deepcopy(layer)):
        assert not other.weight.flags.writeable and not other.bias.flags.writeable
        np.testing.assert_array_equal(other(x), expected)


@pytest.mark.parametrize("seed", range(12))
def test_layer_random_configurations(seed):
    # Random layers that take F(3,2) on the kept transform (and some that do not):
    # strides 1-6, paddings past a stride, output padding, groups, channels-last
    # input, shallow and deeper channel counts, lengths around both thresholds.
    rng = np.random.default_rng(1000 + seed)
    s = int(rng.integers(1, 7))
    groups = int(rng.integers(1, 3))
    c_in_g = int(rng.choice([64, 72, 96, 130]))
    c_out_g = int(rng.integers(-(-64 // s), -(-64 // s) + 24))
    length = int(rng.choice([100, 128, 200, 511, 512, 700]))
    padding, output_padding = int(rng.integers(0, 2 * s + 2)), int(rng.integers(0, s))
    dtype = rng.choice([np.float32, np.float64, np.complex64])
    x, w, b = make_case(rng, int(rng.integers(1, 4)), c_in_g, c_out_g, 2 * s, length, groups,
                        dtype, bias=bool(rng.integers(0, 2)))
    if rng.integers(0, 2):
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    if (length - 1) * s - 2 * padding + 2 * s + output_padding < 1:
        padding = 0
    layer = layer_with(w, b, s, padding, output_padding, groups)
    args = (s, padding, output_padding, groups)
    assert_close(layer(x), conv_transpose1d_reference(x, w, b, *args), dtype)
    assert (layer._weight_cache.prepared is not None) == (length >= 128)


# The GEMM path on the weight's rows (kernels.lay_out_weight_rows), which the layer keeps for
# calls that do not take F(3,2): BLAS packs it faster, and the results keep their bits.

ROWS_CASES = [  # (n, c_in_g, c_out_g, k, stride, padding, length, groups, channels_last, merged)
    (1, 512, 256, 16, 8, 4, 100, 1, False, 1),  # HiFi-GAN's first layer, position-major columns
    (4, 384, 64, 16, 8, 4, 80, 1, False, 4),    # batch elements sharing one GEMM
    (2, 40, 24, 7, 3, 2, 900, 2, False, 1),     # channel-major columns, two groups
    (2, 256, 64, 16, 8, 4, 100, 1, True, 2),    # channels-last input, one GEMM for both
]


@pytest.mark.parametrize("case", ROWS_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
def test_weight_rows_give_the_same_bits(rng, case, dtype):
    n, c_in_g, c_out_g, k, s, p, length, groups, channels_last, merged = case
    x, w, b = make_case(rng, n, c_in_g, c_out_g, k, length, groups, dtype)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    shape = (n, c_in_g * groups, length, c_out_g * groups, k, s, p, 0, 1, groups)
    assert kernels.takes_weight_rows(shape)
    assert plan(*shape)["samples_per_unit"] == merged
    rows = kernels.lay_out_weight_rows(shape, w)
    assert rows[:c_in_g].tolist() == w[:c_in_g, 0, 0].tolist()  # (C_out/g * K, C_in/g) per group
    out_length = plan(*shape)["out_length"]
    strides = tuple(step // x.itemsize for step in x.strides)
    results = []
    for weight_rows in (None, rows):
        out = np.empty((n, c_out_g * groups, out_length), dtype)
        workspace = np.empty(kernels.plan_sizes(shape)[1] * 2, dtype)
        kernels.run_plan(kernels.plan_call(shape, False), x, strides, w, b, out, workspace, 2, None, weight_rows)
        results.append(out)
    np.testing.assert_array_equal(results[1], results[0])
    assert_close(results[1], conv_transpose1d_reference(x, w, b, s, p, groups=groups), dtype)
    # The GEMMs read the rows, not the weight: rows of 2w give exactly twice the taps.
    doubled, plain = np.empty_like(results[0]), np.empty_like(results[0])
    kernels.run_plan(kernels.plan_call(shape, False), x, strides, w, None, plain, workspace, 2)
    kernels.run_plan(kernels.plan_call(shape, False), x, strides, w, None, doubled, workspace, 2, None,
                kernels.lay_out_weight_rows(shape, 2 * w))
    np.testing.assert_array_equal(doubled, 2 * plain)


def test_weight_rows_rule_and_checks(rng):
    assert not kernels.takes_weight_rows((1, 256, 800, 128, 16, 8, 4, 0, 1, 1))  # F(3,2)
    assert kernels.takes_weight_rows((1, 256, 100, 128, 16, 8, 4, 0, 1, 1))  # too short for it
    assert not kernels.takes_weight_rows((1, 512, 32, 512, 6, 3, 2, 1, 1, 512))  # direct taps
    shape = (1, 128, 100, 64, 16, 8, 4, 0, 1, 1)
    x, w, b = make_case(rng, 1, 128, 64, 16, 100, 1)
    out = np.empty((1, 64, plan(*shape)["out_length"]), np.float32)
    workspace = np.empty(kernels.plan_sizes(shape)[1], np.float32)
    rows = kernels.lay_out_weight_rows(shape, w)
    np.testing.assert_array_equal(rows, w.reshape(128, -1).T.ravel())
    np.testing.assert_array_equal(kernels.lay_out_weight_rows(shape, w, 2), rows)
    for wrong in (rows[:-1], rows.astype(np.float64), np.zeros(2 * w.size, np.float32)[::2]):
        with pytest.raises(ValueError, match="weight rows"):
            kernels.run_plan(kernels.plan_call(shape, False), x, (128 * 100, 100, 1), w, b, out,
                        workspace, 1, None, wrong)


def test_layer_keeps_weight_rows_for_the_gemm_path(rng):
    x, w, b = make_case(rng, 2, 256, 64, 16, 100, 1)
    layer = layer_with(w, b, 8, 4)
    y = layer(x)
    np.testing.assert_array_equal(y, convt_blas.conv_transpose1d(x, w, b, 8, 4))
    assert layer._weight_cache.rows == (layer.weight, None)  # a first call makes none
    np.testing.assert_array_equal(layer(x), y)  # the second makes and keeps them
    assert layer._weight_cache.prepared is None and layer._weight_cache.rows[0] is layer.weight
    assert layer._weight_cache.rows[1].size == w.size
    np.testing.assert_array_equal(layer(x), y)  # the held rows, reused
    assert pickle.loads(pickle.dumps(layer))._weight_cache.rows is None
    layer.weight = w[:, ::-1].copy()  # a new weight drops them; calls use the new one's
    assert layer._weight_cache.rows is None
    for _ in range(2):
        np.testing.assert_array_equal(layer(x), convt_blas.conv_transpose1d(x, layer.weight, b,
                                                                            8, 4))
    assert layer._weight_cache.rows[0] is layer.weight and layer._weight_cache.rows[1] is not None
    layer.keep_weight_cache = False
    assert layer._weight_cache.rows is None
    layer(x)
    layer(x)
    assert layer._weight_cache.rows is None


@pytest.mark.parametrize("shape,dtype", [
    ((2, 96, 140, 32, 3, 2, 4, 1, 1, 1), np.float64),   # edge tiles of one or two columns
    ((2, 260, 40, 140, 3, 8, 4, 4, 1, 2), np.float32),  # small GEMMs beside large ones
])
def test_layer_calls_keep_their_bits_once_rows_are_kept(rng, shape, dtype):
    """GEMMs that BLAS would run unblocked (matrix-vector rows, small-matrix kernels) keep
    the weight itself, so the call that lays out the rows and those after it give the
    first call's bits."""
    n, c_in, length, c_out, k, s, p, op, d, groups = shape
    layer = convt_blas.nn.ConvTranspose1d(c_in, c_out, k, s, p, op, groups, dtype=dtype, rng=rng)
    x = rng.standard_normal((n, c_in, length)).astype(dtype)
    first = layer(x)
    for _ in range(2):
        np.testing.assert_array_equal(layer(x), first)
    assert layer._weight_cache.rows[1] is not None  # the later calls did read rows
    np.testing.assert_array_equal(first, convt_blas.conv_transpose1d(x, layer.weight, layer.bias,
                                                                     s, p, op, groups))
