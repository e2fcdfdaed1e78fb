"""The peers benchmark's layer zoo, its random set and its ONNX model builder."""
import importlib.util
import os
import sys

import numpy as np
import pytest

import convt_blas

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def zoo():
    return _load("zoo")


@pytest.fixture(scope="module")
def bench_peers():
    sys.path.insert(0, BENCH)  # bench_peers imports zoo as its neighbour
    try:
        yield _load("bench_peers")
    finally:
        sys.path.remove(BENCH)


def _valid(layer):
    return (layer.in_channels % layer.groups == 0 and layer.out_channels % layer.groups == 0
            and layer.output_padding < max(layer.stride, layer.dilation)
            and convt_blas.output_length(layer.length, layer.kernel_size, layer.stride,
                                         layer.padding, layer.output_padding,
                                         layer.dilation) > 0)


def test_zoo_has_40_valid_layers(zoo):
    layers = zoo.zoo()
    assert len(layers) >= 40
    assert all(_valid(layer) for layer in layers)
    assert len({layer.family for layer in layers}) >= 15


def test_random_set_is_reproducible_bounded_and_seeded(zoo):
    first, again, other = zoo.random_set(0), zoo.random_set(0), zoo.random_set(1)
    assert len(first) == 40 and first == again and first != other
    for layer in first + other:
        assert _valid(layer)
        assert layer.flops <= zoo.RANDOM_MAX_FLOPS
        assert layer.batch * layer.out_channels * layer.out_length <= zoo.RANDOM_MAX_OUTPUT


@pytest.mark.parametrize("params", [
    dict(in_channels=4, out_channels=6, kernel_size=5, stride=3, padding=2, output_padding=1,
         length=7, batch=2),
    dict(in_channels=6, out_channels=4, kernel_size=3, stride=2, padding=1, groups=2,
         dilation=2, length=5),
    dict(in_channels=8, out_channels=8, kernel_size=4, stride=2, padding=1, groups=8,
         length=9),
])
def test_onnx_model_matches_convt_blas(zoo, bench_peers, params):
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e '.[bench]')")
    pytest.importorskip("onnxruntime",
                        reason="onnxruntime is not installed (pip install -e '.[bench]')")
    layer = zoo.ZooLayer("test", **params)
    x, w, b = bench_peers.layer_arrays(layer, 0, 0)
    got = bench_peers.onnxruntime_call(layer, x, w, b, 1)()
    expected = convt_blas.conv_transpose1d(x, w, b, layer.stride, layer.padding,
                                           layer.output_padding, layer.groups, layer.dilation)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
