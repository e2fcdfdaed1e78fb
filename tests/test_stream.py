"""ConvTranspose1dStream: any chunking of a signal gives conv_transpose1d of the whole."""
import types

import numpy as np
import pytest
from conftest import assert_close, random_array
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import conv_transpose1d_reference

import convt_blas
from convt_blas import ConvTranspose1dStream

DTYPES = [np.float16, np.float32, np.float64, np.complex64, np.complex128]


def stream_whole(stream, x, cuts):
    """Push x split at ``cuts`` (positions along the last axis), flush, concatenate."""
    bounds = [0, *cuts, x.shape[-1]]
    parts = [stream.push(x[..., a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    parts.append(stream.flush())
    return np.concatenate(parts, axis=-1)


@st.composite
def conv_parameters(draw, max_groups=3, max_extra_length=14):
    """Kernel, stride, dilation, paddings, channels, bias, batch, seed and a signal length
    with a positive output length (as short as that allows, or up to max_extra_length more)."""
    k = draw(st.integers(1, 6))
    s = draw(st.integers(1, 5))
    d = draw(st.integers(1, 3))
    op = draw(st.integers(0, max(s, d) - 1))
    p = draw(st.integers(0, 7))
    groups = draw(st.integers(1, max_groups))
    shortest = 1 + max(0, -(-(2 * p - d * (k - 1) - op) // s))
    return dict(k=k, s=s, d=d, op=op, p=p, groups=groups,
                c_in=groups * draw(st.integers(1, 2)), c_out_g=draw(st.integers(1, 3)),
                length=draw(st.integers(shortest, shortest + max_extra_length)),
                batch=draw(st.integers(1, 3)), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 32 - 1)))


@st.composite
def conv_cases(draw):
    case = draw(conv_parameters())
    case["cuts"] = sorted(draw(st.lists(st.integers(0, case["length"]), max_size=6)))
    return case


@settings(max_examples=150, deadline=None)
@given(conv_cases())
def test_random_chunkings_match_reference(case):
    rng = np.random.default_rng(case["seed"])
    k, s, d, p, op = case["k"], case["s"], case["d"], case["p"], case["op"]
    x = rng.standard_normal((case["batch"], case["c_in"], case["length"]))
    w = rng.standard_normal((case["c_in"], case["c_out_g"], k))
    b = rng.standard_normal(case["c_out_g"] * case["groups"]) if case["bias"] else None
    stream = ConvTranspose1dStream(w, b, s, p, op, case["groups"], d)
    overlap = d * (k - 1) + 1 - s
    bounds = [0, *case["cuts"], case["length"]]
    parts = []
    for a, e in zip(bounds[:-1], bounds[1:]):
        parts.append(stream.push(x[..., a:e]))
        # Emitted: everything final (before e*s) that lies in the output whatever follows.
        emitted = sum(part.shape[-1] for part in parts)
        end_if_flushed = e * s + overlap - p + op
        assert emitted == max(0, min(e * s, end_if_flushed) - p)
        assert stream.buffered <= max(overlap, p - op, 0)
    parts.append(stream.flush())
    expected = conv_transpose1d_reference(x, w, b, s, p, op, case["groups"], d)
    assert_close(np.concatenate(parts, axis=-1), expected, np.float64)
    assert stream.in_length == 0  # flush starts a new signal


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_chunk_length_one(rng, dtype):
    x = random_array(rng, (2, 4, 13), dtype)
    w = random_array(rng, (4, 3, 7), dtype)
    b = random_array(rng, (6,), dtype)
    stream = ConvTranspose1dStream(w, b, stride=3, padding=2, output_padding=1, groups=2,
                                   dilation=2)
    y = stream_whole(stream, x, list(range(1, 13)))
    assert y.dtype == dtype
    assert_close(y, conv_transpose1d_reference(x, w, b, 3, 2, 1, 2, 2), dtype)


def test_hifigan_first_layer_keeps_only_the_overlap(rng):
    x = rng.standard_normal((1, 512, 9)).astype(np.float32)
    w = (rng.standard_normal((512, 256, 16)) * 0.05).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    stream = ConvTranspose1dStream(w, b, stride=8, padding=4)
    parts = []
    for i in range(9):
        parts.append(stream.push(x[..., i:i + 1]))
        assert stream.buffered == 16 - 8  # d*(K-1) + 1 - stride
        assert parts[-1].shape == (1, 256, 8 if i else 4)  # the first 4 are padding
    parts.append(stream.flush())
    expected = convt_blas.conv_transpose1d(x, w, b, stride=8, padding=4)
    assert_close(np.concatenate(parts, axis=-1), expected, np.float32)


def test_unbatched_chunks_and_empty_pushes(rng):
    x = rng.standard_normal((3, 10))
    w = rng.standard_normal((3, 2, 4))
    stream = ConvTranspose1dStream(w, stride=2, padding=1)
    assert stream.push(x[:, :0]).shape == (2, 0)
    y = stream_whole(stream, x, [0, 0, 4, 4, 10])
    assert_close(y, conv_transpose1d_reference(x, w, None, 2, 1), np.float64)
    assert stream.push(np.zeros((5, 3, 0))).shape == (5, 2, 0)


def test_bad_chunks_leave_the_state_unchanged(rng):
    x = rng.standard_normal((2, 4, 12)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    stream = ConvTranspose1dStream(w, b, stride=2, padding=3)
    parts = [stream.push(x[..., :5])]
    state = (stream.in_length, stream.buffered)
    bad_chunks = [
        x[:, :3, 5:7],  # wrong channels
        x[..., 5:7].astype(np.float64),  # wrong dtype
        x[..., 5:7].astype(np.int32),
        x[:1, :, 5:7],  # batch size changes
        x[0, :, 5:7],  # unbatched after batched
        x[0, 0, 5:7],  # wrong rank
    ]
    for chunk in bad_chunks:
        # A wrong dtype is a TypeError, as conv_transpose1d raises for it.
        error = TypeError if chunk.dtype != np.float32 else ValueError
        with pytest.raises(error):
            stream.push(chunk)
        assert (stream.in_length, stream.buffered) == state
    parts += [stream.push(x[..., 5:]), stream.flush()]
    assert_close(np.concatenate(parts, axis=-1),
                 conv_transpose1d_reference(x, w, b, 2, 3), np.float32)


def test_flush_errors_keep_the_signal(rng):
    w = rng.standard_normal((2, 2, 3))
    stream = ConvTranspose1dStream(w, stride=1, padding=2)
    with pytest.raises(ValueError, match="push"):
        stream.flush()
    x = rng.standard_normal((1, 2, 4))
    first = stream.push(x[..., :1])
    with pytest.raises(ValueError, match="output length"):
        stream.flush()  # 1 sample gives (1-1)*1 - 4 + 2 + 1 = -1 outputs
    rest = [stream.push(x[..., 1:]), stream.flush()]
    assert_close(np.concatenate([first, *rest], axis=-1),
                 conv_transpose1d_reference(x, w, None, 1, 2), np.float64)


def test_reset_starts_a_new_signal(rng):
    w = rng.standard_normal((2, 3, 5))
    stream = ConvTranspose1dStream(w, stride=2, padding=1)
    stream.push(rng.standard_normal((4, 2, 7)))
    stream.reset()
    assert (stream.in_length, stream.buffered) == (0, 0)
    x = rng.standard_normal((1, 2, 6))  # another batch size is fine after reset
    assert_close(stream_whole(stream, x, [2, 3]),
                 conv_transpose1d_reference(x, w, None, 2, 1), np.float64)


def test_from_module_accepts_ints_and_tuples(rng):
    w = rng.standard_normal((4, 1, 5)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    x = rng.standard_normal((1, 4, 11)).astype(np.float32)
    expected = conv_transpose1d_reference(x, w, b, 3, 2, 1, 2, 2)
    for wrap in (int, lambda v: (v,)):
        module = types.SimpleNamespace(weight=w, bias=b, stride=wrap(3), padding=wrap(2),
                                       output_padding=wrap(1), groups=2, dilation=wrap(2))
        stream = ConvTranspose1dStream.from_module(module)
        assert_close(stream_whole(stream, x, [1, 6]), expected, np.float32)


def test_from_torch_module(rng):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    module = torch.nn.ConvTranspose1d(6, 4, 8, stride=4, padding=2, output_padding=1,
                                      groups=2, dilation=1)
    x = rng.standard_normal((2, 6, 9)).astype(np.float32)
    stream = ConvTranspose1dStream.from_module(module)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert_close(stream_whole(stream, x, [3, 4, 8]), expected, np.float32)


def test_bad_parameters_raise_at_construction(rng):
    w = rng.standard_normal((4, 2, 3))
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose1dStream(w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="groups"):
        ConvTranspose1dStream(w, groups=3)
    with pytest.raises(ValueError, match="bias"):
        ConvTranspose1dStream(w, bias=np.zeros(3))
    with pytest.raises(TypeError):
        ConvTranspose1dStream(w.astype(np.int64))


def test_chunks_of_128_or_more_take_f32_on_a_kept_transform(rng):
    # 128 -> 64 channels, K = 2*stride: chunks from 128 samples on take Winograd's F(3,2)
    # with the weight transformed once, as ConvTranspose1d does.
    x = random_array(rng, (2, 128, 1200), np.float32)
    w = random_array(rng, (128, 64, 8), np.float32)
    b = random_array(rng, (64,), np.float32)
    stream = ConvTranspose1dStream(w, b, stride=4, padding=2)
    stream.push(x[..., :100])
    assert stream._weight_cache.prepared is None  # short chunks: the plain path, nothing kept
    stream.reset()
    y = stream_whole(stream, x, [150, 450, 490, 1100])
    prepared = stream._weight_cache.prepared
    assert prepared is not None and prepared[1].size == 2 * w.size
    assert_close(y, conv_transpose1d_reference(x, w, b, 4, 2))
    # A chunk's part is the layer's result on it, unpadded.
    layer = convt_blas.ConvTranspose1d(128, 64, 8, stride=4)
    layer.load_state_dict({"weight": w, "bias": np.zeros(64, np.float32)})
    whole = ConvTranspose1dStream(w, stride=4)
    part = whole.push(x[..., :300])
    np.testing.assert_array_equal(part, layer(x[..., :300])[..., :part.shape[-1]])
