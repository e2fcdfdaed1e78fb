"""convt_blas.dask.conv_transpose1d: any chunking gives the in-memory result."""
import sys

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import conv_transpose1d_reference
from test_stream import conv_parameters

import convt_blas

da = pytest.importorskip("dask.array", reason="dask[array] is not installed")
from convt_blas.dask import conv_transpose1d  # noqa: E402  (needs dask)


def random_chunks(draw, size):
    """A chunking of ``size``: sorted distinct cut positions."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(size - 1, 1)), max_size=5))))
    bounds = [0, *[c for c in cuts if 0 < c < size], size]
    return tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))


@st.composite
def dask_cases(draw):
    case = draw(conv_parameters(max_groups=2, max_extra_length=20))
    case["chunks"] = tuple(random_chunks(draw, case[axis]) for axis in ("batch", "c_in", "length"))
    return case


@settings(max_examples=80, deadline=None)
@given(dask_cases())
def test_random_chunkings_threaded(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["batch"], case["c_in"], case["length"]))
    w = rng.standard_normal((case["c_in"], case["c_out_g"], case["k"]))
    b = rng.standard_normal(case["c_out_g"] * case["groups"]) if case["bias"] else None
    args = (case["s"], case["p"], case["op"], case["groups"], case["d"])
    y = conv_transpose1d(da.from_array(x, chunks=case["chunks"]), w, b, *args)
    expected = convt_blas.conv_transpose1d(x, w, b, *args)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    assert y.chunks[0] == case["chunks"][0]  # batch blocks map one to one
    assert_close(y.compute(scheduler="threads"), expected, np.float64)
    assert_close(expected, conv_transpose1d_reference(x, w, b, *args), np.float64)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.complex64, np.complex128])
def test_dtypes_and_unbatched(rng, dtype):
    x = rng.standard_normal((6, 40)).astype(dtype)
    w = rng.standard_normal((6, 2, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    args = dict(stride=3, padding=2, output_padding=1, groups=2, dilation=2)
    y = conv_transpose1d(da.from_array(x, chunks=(3, 7)), w, b, **args)
    assert y.dtype == dtype and y.ndim == 2
    assert_close(y.compute(scheduler="threads"), conv_transpose1d_reference(x, w, b, **args),
                 dtype)


def test_padding_spanning_several_chunks(rng):
    # Chunks of one sample with padding 9 > stride: the first output block starts
    # inside the fifth input block's span, and the overlap reaches three blocks.
    x = rng.standard_normal((2, 3, 12))
    w = rng.standard_normal((3, 2, 9))
    y = conv_transpose1d(da.from_array(x, chunks=(1, 3, 1)), w, stride=2, padding=9)
    assert_close(y.compute(scheduler="threads"),
                 conv_transpose1d_reference(x, w, None, 2, 9), np.float64)


def test_long_blocks_share_one_transformed_weight(rng, monkeypatch):
    # 128 -> 64 channels, K = 2*stride: blocks from 128 samples on take F(3,2) with the
    # weight transformed once per compute (a task of its own), as ConvTranspose1d keeps it.
    from convt_blas import dask as convt_dask

    calls = []
    real = convt_dask._prepare
    monkeypatch.setattr(convt_dask, "_prepare", lambda *a: calls.append(1) or real(*a))
    x = rng.standard_normal((2, 128, 900)).astype(np.float32)
    w = rng.standard_normal((128, 64, 8)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    y = conv_transpose1d(da.from_array(x, chunks=(1, 128, (300, 100, 500))), w, b, 4, 2)
    assert_close(y.compute(scheduler="threads"), conv_transpose1d_reference(x, w, b, 4, 2))
    assert len(calls) == 1
    layer = convt_blas.ConvTranspose1d(128, 64, 8, stride=4, padding=2)
    layer.load_state_dict({"weight": w, "bias": b})
    whole = conv_transpose1d(da.from_array(x, chunks=(2, 128, 900)), w, b, 4, 2)
    np.testing.assert_array_equal(whole.compute(scheduler="threads"), layer(x))
    calls.clear()  # blocks all shorter than 128: nothing transformed
    conv_transpose1d(da.from_array(x, chunks=(2, 128, 100)), w, b, 4, 2).compute()
    assert not calls


def test_errors_are_raised_before_computing(rng):
    x = da.from_array(rng.standard_normal((2, 4, 10)), chunks=(1, 4, 5))
    with pytest.raises(ValueError, match="channels"):
        conv_transpose1d(x, rng.standard_normal((3, 2, 3)))
    with pytest.raises(TypeError, match="dtype"):
        conv_transpose1d(x, rng.standard_normal((4, 2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="output length"):
        conv_transpose1d(x[..., :1], rng.standard_normal((4, 2, 3)), padding=3)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        conv_transpose1d(x[x[:, 0, 0] > -np.inf], rng.standard_normal((4, 2, 3)))


def test_local_cluster_two_processes(rng):
    distributed = pytest.importorskip("distributed", reason="distributed is not installed")
    x = rng.standard_normal((4, 8, 300)).astype(np.float32)
    w = rng.standard_normal((8, 4, 16)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    args = dict(stride=8, padding=4, groups=2)
    y = conv_transpose1d(da.from_array(x, chunks=(2, 8, 45)), w, b, **args)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        result = client.compute(y).result(timeout=60)
        # The blocks were computed in the worker processes, not in this one.
        ran_there = client.run(lambda: "convt_blas.kernels" in sys.modules)
    assert len(ran_there) == 2 and any(ran_there.values())
    assert_close(result, convt_blas.conv_transpose1d(x, w, b, **args), np.float32)
