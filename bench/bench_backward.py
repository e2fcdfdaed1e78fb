"""Benchmark conv_transpose1d_backward against torch's backward on real model layers.

For every layer of ``convt_blas._models.benchmark_layers()`` at batch 1 and
16 and each thread count, ``convt_blas.conv_transpose1d_backward`` and
``torch.ops.aten.convolution_backward(..., transposed=True, ...)`` (what
torch's autograd runs for ``conv_transpose1d``) compute all three gradients
of float32 arrays; the median of repeated calls is kept. At 1 thread the two
are interleaved in this process; at more, each runs in processes of its own,
alternating (``--rounds`` each, median of rounds), since two OpenMP pools in
one process spin on each other's cores. Prints a Markdown table (and writes it with ``--out``): times,
torch's time over ours (above 1: convt_blas is faster) and the geometric mean.

Run with the OpenBLAS pinning variables unset in this command only:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_backward.py
"""
import argparse
import json
import math
import platform
import statistics
import subprocess
import sys

import numpy as np

import convt_blas
from convt_blas import _models, _timing


def layer_arrays(layer, batch, rng):
    """(grad_output, input, weight) of ``layer`` at ``batch``, float32."""
    x = rng.standard_normal((batch, layer.in_channels, layer.length), np.float32)
    w = rng.standard_normal((layer.in_channels, layer.out_channels // layer.groups,
                             layer.kernel_size), np.float32)
    length = convt_blas.output_length(layer.length, layer.kernel_size, layer.stride,
                                      layer.padding, layer.output_padding)
    go = rng.standard_normal((batch, layer.out_channels, length), np.float32)
    return go, x, w


def calls(layer, batch, index):
    """{"ours": ..., "torch": ...}: the three gradients of ``layer`` at ``batch``, on arrays
    that are the same in every process."""
    import torch

    go, x, w = layer_arrays(layer, batch, np.random.default_rng([index, batch]))
    tensors = [torch.from_numpy(a) for a in (go, x, w)]
    params = (layer.stride, layer.padding, layer.output_padding, layer.groups)

    def ours():
        convt_blas.conv_transpose1d_backward(go, x, w, *params)

    def theirs():
        torch.ops.aten.convolution_backward(
            *tensors, [layer.out_channels], [layer.stride], [layer.padding], [1], True,
            [layer.output_padding], layer.groups, [True, True, True])

    return {"ours": ours, "torch": theirs}


def set_threads(threads):
    import torch

    convt_blas.set_num_threads(threads)
    torch.set_num_threads(threads)


def time_interleaved(cases, min_seconds):
    """{(index, batch): (ours, torch's)} at 1 thread, the two taking turns."""
    set_threads(1)
    times = {}
    for index, layer, batch in cases:
        both = calls(layer, batch, index)
        times[index, batch] = tuple(_timing.time_interleaved(
            [both["ours"], both["torch"]], min_seconds=min_seconds, max_repeats=50,
            min_repeats=3))
    return times


def worker(library, threads, cases, min_seconds):
    """One process's times of ``library`` alone: {"index batch": seconds}."""
    set_threads(threads)
    times = {}
    for index, layer, batch in cases:
        times[f"{index} {batch}"] = _timing.time_interleaved(
            [calls(layer, batch, index)[library]], min_seconds=min_seconds, max_repeats=50,
            min_repeats=3)[0]
    return times


def time_in_processes(args, cases, threads):
    """{(index, batch): (ours, torch's)}: medians over ``args.rounds`` processes each."""
    runs = {"ours": [], "torch": []}
    for _ in range(args.rounds):
        for library in runs:
            command = [sys.executable, __file__, "--worker", library, "--threads", str(threads),
                       "--batches", *map(str, args.batches), "--min-seconds",
                       str(args.min_seconds)] + (["--only", args.only] if args.only else [])
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[library].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {(index, batch): tuple(statistics.median(run[f"{index} {batch}"] for run in runs[lib])
                                  for lib in runs)
            for index, _, batch in cases}


def main(argv=None):
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="time each layer for at least this long (default 0.3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="processes per library at more than 1 thread (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="only the first layer: a check that the script runs")
    parser.add_argument("--only", help="only the layers whose label contains this text")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--worker", choices=("ours", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    layers = list(dict.fromkeys(layer._replace(batch=1) for layer in _models.benchmark_layers()))
    if args.only:
        layers = [layer for layer in layers if args.only in layer.label]
    if args.quick:
        layers = layers[:1]
    cases = [(index, layer, batch) for index, layer in enumerate(layers)
             for batch in args.batches]
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads[0], cases, args.min_seconds)))
        return
    by_threads = {t: (time_interleaved(cases, args.min_seconds) if t == 1
                      else time_in_processes(args, cases, t)) for t in args.threads}
    lines = [f"torch {torch.__version__}, {platform.machine()}, {_timing.describe_blas()}; "
             f"{_timing.openblas_env_note()}. float32, all three gradients; ratio = torch's "
             "time / convt_blas's (above 1: convt_blas is faster). At 1 thread interleaved in "
             f"one process; at more, each library in its own processes, median of {args.rounds}.",
             "", "| layer | N | " + " | ".join(f"{t} thr: ours ms | torch ms | ratio"
                                             for t in args.threads) + " |",
             "|---|---|" + "---|---|---|" * len(args.threads)]
    ratios = {t: [] for t in args.threads}
    for index, layer, batch in cases:
        cells = []
        for threads in args.threads:
            ours, theirs = by_threads[threads][index, batch]
            ratios[threads].append(theirs / ours)
            cells.append(f"{ours * 1e3:.2f} | {theirs * 1e3:.2f} | {theirs / ours:.2f}")
        label = layer.label.rsplit(" N=", 1)[0]
        lines.append(f"| {label} | {batch} | " + " | ".join(cells) + " |")
    geo = [math.exp(sum(map(math.log, r)) / len(r)) for r in ratios.values()]
    lines.append("| geometric mean | | " + " | ".join(f"| | {g:.2f}" for g in geo) + " |")
    lines.append("")
    lines += [f"{t} thread(s): slower than torch on {sum(r < 1 for r in ratios[t])} of "
              f"{len(ratios[t])} layers" for t in args.threads]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
