"""What BLAS itself makes of the benchmark's large layers: the GEMM path's ceiling.

For every ungrouped layer of ``convt_blas._models.benchmark_layers()`` with at
least 1 GFLOP, at one thread, as percents of the 2048^3 sgemm rate measured
in the same run:

- product: one sgemm over the layer's whole product, (C_out*K x C_in) by
  (C_in x N*L_in), with the weight as stored, (C_in, C_out, K), and as rows,
  (C_out*K, C_in), the layout OpenBLAS packs fastest;
- in cache: sgemm on blocks of the product's inner size, with the product's
  columns when they are few, on operands that stay in cache from call to
  call (the best of a few block sizes). On layers of few columns and a
  weight larger than the caches, which every call reads from memory, a cut
  of the product through this BLAS can only lose to it (its blocks come from
  memory); where the columns are many, the whole product can beat these
  small blocks;
- streamed: in cache, plus one pass over the layer's memory (weight and input
  read, output written) at the bandwidths measured here, not overlapped with
  the arithmetic: an estimate, since OpenBLAS packs an operand before its
  micro-kernel multiplies it, but a call may still overlap some of the pass
  (col2im's writes, for one);
- convt_blas: the function and a ConvTranspose1d on the layer.

F(3,2) layers can pass all of these: they do a third fewer multiply-adds than
the GFLOP count credits. Writes bench/results/ceiling.md. Run with the
OpenBLAS pinning variables unset in this command only:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_ceiling.py
"""
import argparse
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_layers import RESULTS, layer_arrays, module_for, sgemm_rate  # noqa: E402

import convt_blas  # noqa: E402
from convt_blas import _models, _timing  # noqa: E402

TARGET_PCT = 85.0
STREAM_BYTES = 128 * 2 ** 20
ROW_BLOCKS = (128, 256, 512, 1024)
COLUMN_BLOCKS = (256, 512, 1024)


def large_layers(min_flops=1e9):
    return [layer for layer in _models.benchmark_layers()
            if layer.groups == 1 and layer.flops >= min_flops]


def product_shape(layer):
    """(rows, columns, inner) of the layer's whole GEMM: C_out*K, N*L_in, C_in."""
    return (layer.out_channels * layer.kernel_size, layer.batch * layer.length,
            layer.in_channels)


def streamed_bytes(layer):
    """(read, written): the weight and input each read once, the output written once."""
    out_length = convt_blas.output_length(layer.length, layer.kernel_size, layer.stride,
                                          layer.padding, layer.output_padding)
    read = 4 * (layer.in_channels * layer.out_channels * layer.kernel_size
                + layer.batch * layer.in_channels * layer.length)
    return read, 4 * layer.batch * layer.out_channels * out_length


def memory_bandwidth(seconds):
    """Bytes per second one thread reads (a sum) and writes (a fill) over 128 MiB."""
    big = np.ones(STREAM_BYTES // 4, np.float32)
    t_read, t_write = _timing.time_interleaved([lambda: np.add.reduce(big),
                                                lambda: big.fill(1.0)], seconds)
    return big.nbytes / t_read, big.nbytes / t_write


def whole_products(weight, inputs):
    """Calls computing the whole product ``weight.T @ inputs`` (weight: C-ordered
    (C_in, C_out*K); inputs: (C_in, N*L_in)) with the weight as stored and as rows."""
    from scipy.linalg.blas import sgemm

    weight_rows = np.ascontiguousarray(weight.T)
    inputs = np.asfortranarray(inputs)
    out = np.empty((weight.shape[1], inputs.shape[1]), np.float32, order="F")
    return (lambda: sgemm(1.0, weight.T, inputs, c=out, overwrite_c=1),
            lambda: sgemm(1.0, weight_rows.T, inputs, trans_a=1, c=out, overwrite_c=1))


def in_cache_rate(rows, columns, inner, seconds, rng):
    """The best FLOP/s of sgemm on in-cache blocks of the product's inner size: a
    block of weight rows by the columns (or by a block of them, when many)."""
    best = 0.0
    column_blocks = [columns] if columns <= COLUMN_BLOCKS[-1] else COLUMN_BLOCKS
    for row_block in [b for b in ROW_BLOCKS if b <= rows] or [rows]:
        for column_block in column_blocks:
            weight = rng.standard_normal((inner, row_block), np.float32)
            inputs = rng.standard_normal((inner, column_block), np.float32)
            call = whole_products(weight, inputs)[1]  # the same operands every call
            t = _timing.time_interleaved([call], seconds)[0]
            best = max(best, 2.0 * row_block * column_block * inner / t)
    return best


def streamed_pct(flops, rate_in_cache, read, written, bandwidth, peak):
    """Percent of ``peak`` (FLOP/s) when the in-cache arithmetic and one pass over
    memory (``read`` and ``written`` bytes at ``bandwidth``) do not overlap."""
    seconds = flops / rate_in_cache + read / bandwidth[0] + written / bandwidth[1]
    return 100.0 * flops / seconds / peak


def measure(layer, seconds, rng):
    """Seconds of the whole product (weight as stored, as rows), the in-cache
    FLOP/s, and seconds of the function and of a ConvTranspose1d, for one layer."""
    x, w, b = layer_arrays(layer, rng)
    # The layer's own weight and input positions, side by side as the columns.
    as_stored, as_rows = whole_products(w.reshape(layer.in_channels, -1),
                                        np.concatenate(list(x), axis=1))
    t_stored, t_rows = _timing.time_interleaved([as_stored, as_rows], seconds)
    del as_stored, as_rows  # their copies and results: up to ~100 MB each
    cached = in_cache_rate(*product_shape(layer), seconds, rng)
    module = module_for(layer, w, b)
    args = (layer.stride, layer.padding, layer.output_padding, layer.groups)
    t_function, t_module = _timing.time_interleaved(
        [lambda: convt_blas.conv_transpose1d(x, w, b, *args), lambda: module(x)], seconds)
    return dict(stored=t_stored, rows=t_rows, cached=cached, function=t_function,
                module=t_module)


def run(seconds, only, rounds):
    """One row per layer: each figure the median of ``rounds`` passes over all layers
    (a burst of load on a shared machine then spoils one sample, not one layer)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    layers = [layer for layer in large_layers()
              if not only or any(o in layer.label for o in only)]
    samples = [[] for _ in layers]
    convt_blas.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            peak = sgemm_rate(1) * 1e9
            bandwidth = memory_bandwidth(seconds)
            for round_ in range(rounds):
                for i, layer in enumerate(layers):
                    print(f"[round {round_ + 1}/{rounds}, {i + 1}/{len(layers)}] {layer.label}",
                          file=sys.stderr, flush=True)
                    samples[i].append(measure(layer, seconds, rng))
    finally:
        convt_blas.set_num_threads(None)
    table = []
    for layer, layer_samples in zip(layers, samples):
        median = {key: float(np.median([s[key] for s in layer_samples]))
                  for key in layer_samples[0]}
        pct = lambda t: 100.0 * layer.flops / t / peak  # noqa: E731
        table.append(dict(
            layer=layer.label, gflop=layer.flops / 1e9,
            stored_pct=pct(median["stored"]), rows_pct=pct(median["rows"]),
            cached_pct=100.0 * median["cached"] / peak,
            streamed_pct=streamed_pct(layer.flops, median["cached"], *streamed_bytes(layer),
                                      bandwidth, peak),
            function_pct=pct(median["function"]), module_pct=pct(median["module"])))
    return table, peak, bandwidth


def markdown(rows, peak, bandwidth):
    lines = [
        f"Machine: {platform.machine()}, 1 thread; " + _timing.describe_blas(),
        _timing.openblas_env_note(),
        f"sgemm rate (2048^3, same run): {peak / 1e9:.0f} GFLOP/s; one thread reads "
        f"{bandwidth[0] / 1e9:.1f} GB/s and writes {bandwidth[1] / 1e9:.1f} GB/s",
        "",
        "Percent of the 2048^3 sgemm rate:",
        "",
        "| layer | GFLOP | product, weight as stored | product, weight as rows | in cache "
        "| streamed | function | ConvTranspose1d |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['gflop']:.1f} | {r['stored_pct']:.0f}% | {r['rows_pct']:.0f}% "
            f"| {r['cached_pct']:.0f}% | {r['streamed_pct']:.0f}% | {r['function_pct']:.0f}% "
            f"| {r['module_pct']:.0f}% |")
    below = [r["layer"] for r in rows if r["streamed_pct"] < TARGET_PCT]
    lines += ["", f"Streamed ceiling below {TARGET_PCT:.0f}%: "
              + ("; ".join(below) if below else "none")]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="timing time per figure")
    parser.add_argument("--only", nargs="*", help="substrings of layer labels to run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="passes over all layers; per figure the median of the rounds")
    args = parser.parse_args(argv)
    rows, peak, bandwidth = run(args.seconds, args.only, args.rounds)
    text = markdown(rows, peak, bandwidth)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "ceiling.md"), "w") as f:
        f.write(text)
    print(f"wrote {RESULTS}/ceiling.md")


if __name__ == "__main__":
    main()
