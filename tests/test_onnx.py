"""convt_blas.onnx.conv_transpose: ONNX's ConvTranspose in 1-D, against a loop reference
written from the operator's definition and against ONNX Runtime."""
import doctest

import numpy as np
import pytest
from conftest import assert_close, random_array

import convt_blas
import convt_blas.onnx
from convt_blas.onnx import conv_transpose

MODES = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def onnx_reference(x, w, b=None, strides=1, pads=(0, 0), output_padding=0, dilations=1,
                   group=1, auto_pad="NOTSET", output_shape=None):
    """ConvTranspose from ONNX's text, one multiply-add at a time in float64/complex128.

    Input ``l`` tap ``k`` lands on output ``l*stride + k*dilation - pads[begin]``.
    Where the spec is silent (a negative total padding) the total is taken as 0,
    so the output runs past the full one with bias-only positions.
    """
    acc = np.complex128 if np.iscomplexobj(x) else np.float64
    n, c_in, length = x.shape
    _, c_out_g, k_size = w.shape
    c_in_g = c_in // group
    full = strides * (length - 1) + output_padding + ((k_size - 1) * dilations + 1)
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = length * strides
    if output_shape is not None:
        total = max(0, full - output_shape)
        if auto_pad == "SAME_UPPER":
            pad_begin = total // 2
        else:
            pad_begin = total - total // 2
        out_length = output_shape
    elif auto_pad == "VALID":
        pad_begin, out_length = 0, full
    else:
        pad_begin, out_length = pads[0], full - pads[0] - pads[1]
    y = np.zeros((n, c_out_g * group, out_length), dtype=acc)
    for batch in range(n):
        for ci in range(c_in):
            g = ci // c_in_g
            for co in range(c_out_g):
                for l in range(length):
                    for k in range(k_size):
                        o = l * strides + k * dilations - pad_begin
                        if 0 <= o < out_length:
                            y[batch, g * c_out_g + co, o] += (
                                acc(x[batch, ci, l]) * acc(w[ci, co, k]))
    if b is not None:
        y += np.asarray(b).astype(acc)[None, :, None]
    return y


def full_length(case):
    return case["s"] * (case["length"] - 1) + (case["k"] - 1) * case["d"] + 1


def random_case(rng, mode, onnxruntime_limits=False):
    """Sizes and attributes of a random call in ``mode``: an auto_pad value, or 'PADS' /
    'OUTPUT_SHAPE' (explicit pads / output_shape with a random auto_pad).

    ``onnxruntime_limits``: keep to what ONNX Runtime accepts, output_padding below the
    stride (it refuses more even below the dilation) and output_shape less than a stride
    past the full output (it refuses longer ones).
    """
    case = dict(n=int(rng.integers(1, 3)), group=int(rng.integers(1, 4)),
                c_in_g=int(rng.integers(1, 4)), c_out_g=int(rng.integers(1, 4)),
                length=int(rng.integers(1, 9)), k=int(rng.integers(1, 6)),
                s=int(rng.integers(1, 5)), d=int(rng.integers(1, 4)), bias=bool(rng.random() < 0.7))
    case["op"] = int(rng.integers(0, case["s"] if onnxruntime_limits
                                  else max(case["s"], case["d"])))
    attrs = dict(strides=[case["s"]], dilations=[case["d"]], group=case["group"])
    if case["op"] or rng.random() < 0.5:
        attrs["output_padding"] = [case["op"]]
    full = full_length(case) + case["op"]
    if mode == "PADS":
        begin = int(rng.integers(0, full))
        attrs["pads"] = [begin, int(rng.integers(0, full - begin))]
    elif mode == "OUTPUT_SHAPE":
        attrs["auto_pad"] = MODES[int(rng.integers(0, len(MODES)))]
        past_end = case["s"] - 1 if onnxruntime_limits else 3 * case["s"]
        # Half of them near the full length, where the total padding changes sign.
        shortest = 1 if rng.random() < 0.5 else max(1, full_length(case) - case["s"])
        attrs["output_shape"] = [int(rng.integers(shortest, full_length(case) + past_end + 1))]
    else:
        attrs["auto_pad"] = mode
    case["attrs"] = attrs
    return case


def case_arrays(rng, case, dtype):
    x = random_array(rng, (case["n"], case["c_in_g"] * case["group"], case["length"]), dtype)
    w = random_array(rng, (case["c_in_g"] * case["group"], case["c_out_g"], case["k"]), dtype)
    b = random_array(rng, (case["c_out_g"] * case["group"],), dtype) if case["bias"] else None
    return x, w, b


def reference_of(x, w, b, attrs):
    one = {name: value[0] for name, value in attrs.items()
           if name in ("strides", "dilations", "output_padding", "output_shape")}
    return onnx_reference(x, w, b, pads=attrs.get("pads", (0, 0)), group=attrs["group"],
                          auto_pad=attrs.get("auto_pad", "NOTSET"), **one)


# ---------------------------------------------------------------- against the loop reference

REFERENCE_MODES = ("PADS", "OUTPUT_SHAPE", *MODES)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", REFERENCE_MODES)
def test_random_against_reference(mode, dtype):
    rng = np.random.default_rng([REFERENCE_MODES.index(mode), np.dtype(dtype).itemsize])
    for _ in range(40):
        case = random_case(rng, mode)
        x, w, b = case_arrays(rng, case, dtype)
        y = conv_transpose(x, w, b, **case["attrs"])
        assert y.dtype == dtype and y.flags.c_contiguous, case
        assert_close(y, reference_of(x, w, b, case["attrs"]), dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.complex128])
def test_other_dtypes(dtype, rng):
    for mode in ("PADS", "OUTPUT_SHAPE", "SAME_LOWER"):
        case = random_case(rng, mode)
        x, w, b = case_arrays(rng, case, dtype)
        y = conv_transpose(x, w, b, **case["attrs"])
        assert y.dtype == dtype and y.flags.c_contiguous
        assert_close(y, reference_of(x, w, b, case["attrs"]), dtype)


def test_asymmetric_pads_crop_each_end(rng):
    x, w, b = case_arrays(rng, dict(n=2, group=2, c_in_g=3, c_out_g=2, length=7, k=4,
                                    bias=True), np.float64)
    full = convt_blas.conv_transpose1d(x, w, b, stride=3, output_padding=2, groups=2)
    for begin, end in [(0, 0), (2, 0), (0, 3), (1, 4), (5, 2), (4, 4), (19, 0)]:
        y = conv_transpose(x, w, b, strides=3, pads=[begin, end], output_padding=2, group=2)
        np.testing.assert_array_equal(y, full[..., begin:full.shape[-1] - end])


def test_symmetric_pads_are_the_libraries_padding(rng):
    x, w, b = case_arrays(rng, dict(n=2, group=1, c_in_g=5, c_out_g=3, length=9, k=5,
                                    bias=True), np.float32)
    expected = convt_blas.conv_transpose1d(x, w, b, stride=2, padding=2, output_padding=1,
                                           dilation=2)
    y = conv_transpose(x, w, b, strides=[2], pads=[2, 2], output_padding=[1], dilations=[2])
    np.testing.assert_array_equal(y, expected)


def test_unbatched_and_array_likes(rng):
    x, w, b = case_arrays(rng, dict(n=1, group=1, c_in_g=3, c_out_g=2, length=6, k=3,
                                    bias=True), np.float64)
    batched = conv_transpose(x, w, b, strides=2, auto_pad="SAME_LOWER")
    y = conv_transpose(x[0].tolist(), w.tolist(), b.tolist(), strides=2, auto_pad=b"SAME_LOWER")
    assert y.shape == batched.shape[1:]
    np.testing.assert_array_equal(y, batched[0])


@pytest.mark.parametrize("auto_pad", MODES)
def test_output_shape_past_the_full_output_is_bias(auto_pad, rng):
    """The open case: output_shape longer than the full output crops nothing at the begin
    and extends it with the bias alone, however far (here up to 3 strides past it)."""
    x, w, b = case_arrays(rng, dict(n=2, group=2, c_in_g=2, c_out_g=3, length=5, k=3,
                                    bias=True), np.float64)
    full = convt_blas.conv_transpose1d(x, w, b, stride=2, groups=2)
    for extra in range(1, 7):
        y = conv_transpose(x, w, b, strides=[2], group=2, auto_pad=auto_pad,
                           output_shape=[full.shape[-1] + extra])
        np.testing.assert_array_equal(y[..., :full.shape[-1]], full)
        np.testing.assert_array_equal(y[..., full.shape[-1]:],
                                      np.broadcast_to(b[:, None], (2, 6, extra)))
        no_bias = conv_transpose(x, w, strides=[2], group=2, auto_pad=auto_pad,
                                 output_shape=[full.shape[-1] + extra])
        assert not no_bias[..., full.shape[-1]:].any()


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_same_with_stride_past_the_kernel_is_bias(auto_pad, rng):
    """The open case for SAME: stride > (K - 1)*dilation + 1 + output_padding leaves a
    negative total padding; the output still has L_in*stride positions, the last bias only."""
    x, w, b = case_arrays(rng, dict(n=1, group=1, c_in_g=2, c_out_g=2, length=4, k=2,
                                    bias=True), np.float32)
    y = conv_transpose(x, w, b, strides=[5], auto_pad=auto_pad)
    full = convt_blas.conv_transpose1d(x, w, b, stride=5)
    assert y.shape == (1, 2, 20) and full.shape[-1] == 17
    np.testing.assert_array_equal(y[..., :17], full)
    np.testing.assert_array_equal(y[..., 17:], np.broadcast_to(b[None, :, None], (1, 2, 3)))


def test_empty_batch():
    y = conv_transpose(np.zeros((0, 2, 5), np.float32), np.ones((2, 3, 3), np.float32),
                       strides=2, auto_pad="SAME_UPPER")
    assert y.shape == (0, 3, 10)


# ---------------------------------------------------------------- ONNX's node test

def test_convtranspose_autopad_same():
    """ONNX's node test test_convtranspose_autopad_same: x (1, 1, 3, 3) = 0..8, W ones
    (1, 2, 3, 3), strides [2, 2], SAME_UPPER. Its kernel is the outer product of two 1-D
    all-ones kernels, so the 2-D result is the 1-D one along the height, then the width."""
    expected_rows = np.array([[0, 0, 1, 1, 3, 2],
                              [0, 0, 1, 1, 3, 2],
                              [3, 3, 8, 5, 12, 7],
                              [3, 3, 7, 4, 9, 5],
                              [9, 9, 20, 11, 24, 13],
                              [6, 6, 13, 7, 15, 8]], dtype=np.float32)
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    ones = np.ones((1, 1, 3), np.float32)
    along_height = conv_transpose(x.T[:, None, :], ones, strides=[2], auto_pad="SAME_UPPER")
    assert along_height.shape == (3, 1, 6)
    rows = along_height[:, 0, :].T  # (6 rows, 3 columns)
    y = conv_transpose(rows[:, None, :], np.ones((1, 2, 3), np.float32), strides=[2],
                       auto_pad="SAME_UPPER")
    np.testing.assert_array_equal(y.transpose(1, 0, 2), np.stack([expected_rows] * 2))

    # In 1-D: 7 full positions [0, 0, 1, 1, 3, 2, 2]; SAME_UPPER crops 0 at the start and
    # the odd one at the end, SAME_LOWER the other way round.
    x1 = np.array([[[0.0, 1.0, 2.0]]], np.float32)
    full = conv_transpose(x1, ones, strides=[2])
    np.testing.assert_array_equal(full[0, 0], [0, 0, 1, 1, 3, 2, 2])
    upper = conv_transpose(x1, ones, strides=[2], auto_pad="SAME_UPPER")
    np.testing.assert_array_equal(upper, full[..., 0:6])
    lower = conv_transpose(x1, ones, strides=[2], auto_pad="SAME_LOWER")
    np.testing.assert_array_equal(lower, full[..., 1:7])


def test_docstring_examples():
    failures, tried = doctest.testmod(convt_blas.onnx, verbose=False)
    assert tried > 0 and failures == 0


# ---------------------------------------------------------------- errors

X = np.zeros((1, 4, 5), np.float32)
W = np.zeros((4, 2, 3), np.float32)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(auto_pad="SAME"), ValueError, "auto_pad must be one of"),
    (dict(auto_pad="same_upper"), ValueError, "auto_pad must be one of"),
    (dict(auto_pad=3), TypeError, "auto_pad must be a string"),
    (dict(pads=[1, 2, 3]), ValueError, "pads must hold 2 values"),
    (dict(pads=[1]), ValueError, "pads must hold 2 values"),
    (dict(pads=[-1, 0]), ValueError, "pads must be non-negative"),
    (dict(pads=-2), ValueError, "pads must be non-negative"),
    (dict(pads=[1.5, 0]), TypeError, "pads must be an int"),
    (dict(pads=[1, 1], auto_pad="VALID"), ValueError, "pads cannot be given with auto_pad"),
    (dict(pads=[8, 8]), ValueError, "output length must be positive"),
    (dict(strides=[2, 2]), ValueError, "strides"),
    (dict(strides=0), ValueError, "strides must be positive"),
    (dict(strides="2"), TypeError, "strides must be an int"),
    (dict(dilations=[0]), ValueError, "dilations must be positive"),
    (dict(output_padding=[2], strides=[2]), ValueError, "output_padding must be"),
    (dict(output_padding=[-1]), ValueError, "output_padding must be"),
    (dict(output_padding=[1, 1]), ValueError, "output_padding"),
    (dict(output_shape=[1, 4, 9]), ValueError, "output_shape"),
    (dict(output_shape=[0]), ValueError, "output_shape must be positive"),
    (dict(kernel_shape=[2]), ValueError, "kernel_shape=\\[2\\] does not match w"),
    (dict(kernel_shape=[3, 3]), ValueError, "kernel_shape"),
    (dict(group=3), ValueError, "group=3 must be positive and divide"),
    (dict(group=0), ValueError, "group=0 must be positive"),
    (dict(group=2.0), TypeError, "group must be an int"),
])
def test_bad_attributes(kwargs, error, message):
    with pytest.raises(error, match=message):
        conv_transpose(X, W, **kwargs)


@pytest.mark.parametrize("x, w, b, error, message", [
    (np.zeros((4, 5, 1, 1), np.float32), W, None, ValueError, "x must be 3-dimensional"),
    (np.zeros(5, np.float32), W, None, ValueError, "x must be 3-dimensional"),
    (X, np.zeros((4, 2), np.float32), None, ValueError, "w must be 3-dimensional"),
    (np.zeros((1, 4, 0), np.float32), W, None, ValueError, "x must have a positive length"),
    (X, np.zeros((2, 2, 3), np.float32), None, ValueError, "channels"),
    (X, W, np.zeros(3, np.float32), ValueError, "bias"),
    (X, W.astype(np.float64), None, TypeError, "dtype"),
    (X.astype(np.int32), W.astype(np.int32), None, TypeError, "dtype"),
])
def test_bad_arrays(x, w, b, error, message):
    with pytest.raises(error, match=message):
        conv_transpose(x, w, b, strides=2, auto_pad="SAME_UPPER")


# ---------------------------------------------------------------- against ONNX Runtime

ORT_CASES = 240


def run_onnxruntime(x, w, b, attrs):
    """One ConvTranspose node (opset 11: its semantics, unchanged in 22) run by ONNX Runtime's
    CPU provider."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    helper = onnx.helper
    feeds = {"X": x, "W": w} if b is None else {"X": x, "W": w, "B": b}
    node = helper.make_node("ConvTranspose", list(feeds), ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "conv_transpose",
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(a.shape))
         for name, a in feeds.items()],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)])
    # IR version 7, not onnx's newest, which older onnxruntime releases refuse.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=7)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("index", range(ORT_CASES))
def test_random_against_onnxruntime(index):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    mode = REFERENCE_MODES[index % len(REFERENCE_MODES)]
    rng = np.random.default_rng(1000 + index)
    case = random_case(rng, mode, onnxruntime_limits=True)
    x, w, b = case_arrays(rng, case, np.float32)
    y = conv_transpose(x, w, b, **case["attrs"])
    expected = run_onnxruntime(x, w, b, case["attrs"])
    assert_close(y, reference_of(x, w, b, case["attrs"]), np.float32)
    if mode in ("SAME_UPPER", "SAME_LOWER") and expected.shape[-1] < y.shape[-1]:
        # The open case: ONNX Runtime returns the full output, not L_in*stride positions.
        assert expected.shape[-1] == full_length(case) + case["op"], case
        assert (y[..., expected.shape[-1]:] == (0 if b is None else b[:, None])).all(), case
        y = y[..., :expected.shape[-1]]
    assert_close(y, expected, np.float32)


@pytest.mark.parametrize("auto_pad", MODES)
def test_output_shape_past_the_full_output_against_onnxruntime(auto_pad, rng):
    """The open case where ONNX Runtime answers: output_shape up to stride - 1 past the
    full output (past output_padding's positions too) gets bias-only positions there."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    for stride in (2, 3, 4):
        for output_padding in range(stride - 1):
            for past_full in range(output_padding + 1, stride):
                case = dict(n=2, group=2, c_in_g=2, c_out_g=2, length=4, k=2, s=stride, d=1,
                            bias=True)
                x, w, b = case_arrays(rng, case, np.float32)
                attrs = dict(strides=[stride], output_padding=[output_padding], group=2,
                             auto_pad=auto_pad, output_shape=[full_length(case) + past_full])
                y = conv_transpose(x, w, b, **attrs)
                assert_close(y, run_onnxruntime(x, w, b, attrs), np.float32)
                assert_close(y, reference_of(x, w, b, attrs), np.float32)
