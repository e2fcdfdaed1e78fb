"""The benchmark's own arithmetic: the product it times as the GEMM's ceiling, and its table."""
import importlib.util
import os

import numpy as np
import pytest

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
