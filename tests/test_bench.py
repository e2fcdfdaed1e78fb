"""The benchmarks' own arithmetic: the products they time as the GEMM's ceiling, and their tables."""
import importlib.util
import os

import numpy as np
import pytest

import convt_blas
from convt_blas import _models

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                     "bench_layers.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_layers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("batch", [1, 3])
def test_product_gemm_is_the_layers_whole_product(bench, batch):
    layer = _models.Layer("test", 5, 4, 3, 2, 1, length=7, batch=batch)
    rng = np.random.default_rng(0)
    x, w, _ = bench.layer_arrays(layer, rng)
    columns = bench.product_gemm(layer, x, w)()
    # (C_out*K, C_in) @ (C_in, N*L): column n*L + l is batch element n's position l.
    expected = w.reshape(5, 12).T.astype(np.float64) @ np.concatenate(list(x), axis=1)
    assert columns.shape == (12, batch * 7)
    np.testing.assert_allclose(columns, expected, rtol=1e-5, atol=1e-5)


def test_product_gemm_skips_grouped_layers(bench):
    layer = _models.Layer("test", 4, 4, 3, 2, 1, groups=2, length=5)
    x, w, _ = bench.layer_arrays(layer, np.random.default_rng(0))
    assert bench.product_gemm(layer, x, w) is None


def test_markdown_reports_both_rates_and_bias(bench):
    def row(layer, threads, gemm_pct, flops=2e9):
        return dict(layer=layer, threads=threads, flops=flops, ms=2.0, gflops=1.0, peak_pct=50.0,
                    gemm_pct=gemm_pct, torch_ms=3.0, speedup=1.5, first_ms=2.2, extra_mib=0.5)

    rows = [row("a", 1, 80.0), row("b", 1, None), row("a", 2, 90.0), row("b", 2, None)]
    text = bench.markdown(rows, {1: 100.0, 2: 190.0}, [1, 2], bias=False)
    assert "Layers without bias" in text
    assert "| a | 1 | 2.000 | 1.0 | 50% | 80% | 3.000 | 1.50x |" in text
    assert "| b | 2 | 2.000 | 1.0 | 50% | - | 3.000 | 1.50x |" in text
    assert "(80-80% of one sgemm over their own product)" in text
    assert "first call / steady state at most 1.10x" in text


@pytest.fixture(scope="module")
def ceiling():
    path = os.path.join(os.path.dirname(BENCH), "bench_ceiling.py")
    spec = importlib.util.spec_from_file_location("bench_ceiling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ceiling_products_compute_the_layers_product_in_both_layouts(ceiling):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((6, 10), np.float32)  # (C_in, C_out*K)
    inputs = rng.standard_normal((6, 7), np.float32)
    expected = weight.T.astype(np.float64) @ inputs
    for call in ceiling.whole_products(weight, inputs):
        np.testing.assert_allclose(call(), expected, rtol=1e-5, atol=1e-5)


def test_ceiling_shape_and_bytes_follow_the_layer(ceiling, bench):
    layer = _models.Layer("test", 6, 4, 3, 2, 1, output_padding=1, length=9, batch=2)
    assert ceiling.product_shape(layer) == (4 * 3, 2 * 9, 6)
    x, w, _ = bench.layer_arrays(layer, np.random.default_rng(0))
    out = convt_blas.conv_transpose1d(x, w, None, 2, 1, 1)
    assert ceiling.streamed_bytes(layer) == (x.nbytes + w.nbytes, out.nbytes)


def test_ceiling_streamed_adds_memory_time_to_the_arithmetic(ceiling):
    # 1 GFLOP at 100 GFLOP/s (10 ms) + 0.2 GB read at 20 GB/s (10 ms)
    # + 0.1 GB written at 10 GB/s (10 ms): 30 ms, a third of a 100 GFLOP/s peak.
    pct = ceiling.streamed_pct(1e9, 1e11, 2e8, 1e8, (2e10, 1e10), 1e11)
    assert pct == pytest.approx(100 / 3)


def test_ceiling_large_layers_are_ungrouped_and_large(ceiling):
    layers = ceiling.large_layers()
    assert layers and all(layer.groups == 1 and layer.flops >= 1e9 for layer in layers)
    labels = {layer.label for layer in layers}
    assert any(label.startswith("DAC 44k 1536->768") for label in labels)
    assert not any(label.startswith("stream chunk") for label in labels)


def test_ceiling_markdown_names_layers_below_the_target(ceiling):
    def row(name, streamed):
        return dict(layer=name, gflop=3.2, stored_pct=65.0, rows_pct=75.0, cached_pct=86.0,
                    streamed_pct=streamed, function_pct=63.0, module_pct=74.0)

    text = ceiling.markdown([row("a", 78.0), row("b", 93.0)], 1e11, (2e10, 2.5e10))
    assert "| a | 3.2 | 65% | 75% | 86% | 78% | 63% | 74% |" in text
    assert "Streamed ceiling below 85%: a\n" in text
    assert "reads 20.0 GB/s and writes 25.0 GB/s" in text
