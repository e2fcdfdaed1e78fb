"""Benchmark convt_blas against torch's CPU conv_transpose1d on real model layers.

For every layer of ``convt_blas._models.benchmark_layers()`` and each thread
count, both libraries run in this process, interleaved, and the median of
repeated calls is kept; with ``--rounds R`` the whole list is timed R times
and each figure is the median of the rounds. Reported per layer: time,
GFLOP/s, percent of the sgemm rate measured in the same run, percent of the
rate of one sgemm over the layer's whole product (timed in a pass of its own
after the others: what BLAS makes of the GEMM uncut), speed-up over torch,
the first call's time (median of 3 calls, each with no cached workspace) and
the peak extra memory of a call. The same for a convt_blas.nn.ConvTranspose1d
holding the layer's weights, timed in the same interleaving (its steady state
reuses its prepared weight for F(3,2); its first call makes it; the
memory it holds is reported beside its per-call memory). Writes a Markdown
table and a PNG chart to bench/results/.

Run with the OpenBLAS pinning variables unset in this command only:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_layers.py
"""
import argparse
import os
import platform
import sys
import time
import tracemalloc

import numpy as np

import convt_blas
from convt_blas import _memory, _models, _timing

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def sgemm_rate(threads, size=2048):
    """GFLOP/s of scipy's sgemm on a square product: the ceiling for the GEMM."""
    from scipy.linalg.blas import sgemm
    from threadpoolctl import threadpool_limits

    a = np.asfortranarray(np.random.default_rng(0).standard_normal((size, size), np.float32))
    with threadpool_limits(threads, user_api="blas"):
        seconds = _timing.time_interleaved([lambda: sgemm(1.0, a, a)], min_seconds=1.0,
                                           max_repeats=20)[0]
    return 2 * size ** 3 / seconds / 1e9


def product_gemm(layer, x, w):
    """One sgemm over an ungrouped layer's whole product, (C_out*K x C_in) by
    (C_in x N*L_in), into a preallocated result: the rate the GEMM step reaches
    with no cut, no col2im and no allocation. None for grouped layers."""
    from scipy.linalg.blas import sgemm

    if layer.groups != 1:
        return None
    weight_t = w.reshape(layer.in_channels, -1).T  # Fortran-ordered (C_out*K, C_in)
    inputs_t = np.asfortranarray(x.transpose(0, 2, 1).reshape(-1, layer.in_channels))
    columns = np.empty((weight_t.shape[0], inputs_t.shape[0]), np.float32, order="F")
    return lambda: sgemm(1.0, weight_t, inputs_t, c=columns, trans_b=1, overwrite_c=1)


def layer_arrays(layer, rng):
    x = rng.standard_normal((layer.batch, layer.in_channels, layer.length), np.float32)
    w = rng.standard_normal((layer.in_channels, layer.out_channels // layer.groups,
                             layer.kernel_size), np.float32)
    b = rng.standard_normal(layer.out_channels, np.float32)
    return x, w, b


def forget_workspaces():
    """Drop this thread's cached workspaces, so that the next call is a cold one."""
    _memory._workspaces.buffers = {}


def cold_call_seconds(call, repeats=3):
    """Median time of a call that finds no cached workspace: what a first call pays
    (a single first call on this shared machine is mostly noise)."""
    times = []
    for _ in range(repeats):
        forget_workspaces()
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def peak_extra_bytes(call, out_bytes):
    """Peak memory a cold call allocates beyond its output (workspace, copies)."""
    forget_workspaces()  # measure a cold call
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return max(0, peak - out_bytes)


def module_for(layer, w, b):
    """A ConvTranspose1d holding ``w`` and ``b``."""
    module = convt_blas.nn.ConvTranspose1d(layer.in_channels, layer.out_channels,
                                           layer.kernel_size, layer.stride, layer.padding,
                                           layer.output_padding, layer.groups,
                                           bias=b is not None)
    module.load_state_dict({"weight": w} if b is None else {"weight": w, "bias": b})
    return module


def held_bytes(module):
    """Memory a layer keeps beyond its parameters: its prepared weight for F(3,2) or its
    weight rows for the GEMM path, if any."""
    cache = module._weight_cache
    return sum(0 if held is None or held[1] is None else held[1].nbytes
               for held in (cache.prepared, cache.rows))


def run(threads_list, seconds, only, rounds, bias=True):
    import torch
    import torch.nn.functional as F
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    layers = [layer for layer in _models.benchmark_layers()
              if not only or any(o in layer.label for o in only)]
    peaks = {t: sgemm_rate(t) for t in threads_list}
    cases = []
    for layer in layers:
        x, w, b = layer_arrays(layer, rng)
        b = b if bias else None
        cases.append((layer, (x, w, b),
                      tuple(None if a is None else torch.from_numpy(a) for a in (x, w, b)),
                      module_for(layer, w, b)))
    # Rounds over the whole list, so that a burst of load on this shared
    # machine hits one sample of each layer, not all samples of one layer.
    samples = {}
    for round_ in range(rounds):
        for i, (layer, (x, w, b), (tx, tw, tb), module) in enumerate(cases, 1):
            args = (layer.stride, layer.padding, layer.output_padding, layer.groups)
            for threads in threads_list:
                print(f"[round {round_ + 1}/{rounds}, {i}/{len(cases)}] {layer.label}, "
                      f"{threads} thread(s)", file=sys.stderr, flush=True)
                convt_blas.set_num_threads(threads)
                torch.set_num_threads(threads)

                def ours():
                    return convt_blas.conv_transpose1d(x, w, b, *args)

                def theirs():
                    with torch.no_grad():
                        return F.conv_transpose1d(tx, tw, tb, *args)

                def layer_call():
                    return module(x)

                def cold_layer_call():
                    module._weight_cache.clear()  # as a layer just loaded
                    return module(x)

                sample = samples.setdefault(
                    (i, threads), dict(ours=[], torch=[], layer=[], first=[], layer_first=[],
                                       gemm=[]))
                sample["first"].append(cold_call_seconds(ours))
                sample["layer_first"].append(cold_call_seconds(cold_layer_call))
                t_ours, t_layer, t_torch = _timing.time_interleaved(
                    [ours, layer_call, theirs], seconds)
                sample["ours"].append(t_ours)
                sample["layer"].append(t_layer)
                sample["torch"].append(t_torch)
                if round_ == 0:
                    out_bytes = layer.batch * layer.out_channels * 4 * convt_blas.output_length(
                        layer.length, layer.kernel_size, layer.stride, layer.padding,
                        layer.output_padding)
                    sample["extra"] = peak_extra_bytes(ours, out_bytes)
                    sample["layer_extra"] = peak_extra_bytes(layer_call, out_bytes)
                    sample["held"] = held_bytes(module)
    # The products' sgemm in a pass of its own: OpenBLAS's threads spin for a
    # while after a threaded GEMM and would take a core from calls timed after it
    # (and each product's arrays, up to ~100 MB, live only during its own timing).
    for i, (layer, (x, w, _), _, _) in enumerate(cases, 1):
        gemm = product_gemm(layer, x, w)
        for threads in threads_list:
            if gemm:
                print(f"[product sgemm {i}/{len(cases)}] {layer.label}, {threads} thread(s)",
                      file=sys.stderr, flush=True)
                with threadpool_limits(threads, user_api="blas"):
                    samples[(i, threads)]["gemm"] = _timing.time_interleaved([gemm], seconds)
    convt_blas.set_num_threads(None)
    rows = []
    for i, (layer, _, _, _) in enumerate(cases, 1):
        for threads in threads_list:
            sample = samples[(i, threads)]
            t_ours, t_torch = np.median(sample["ours"]), np.median(sample["torch"])
            t_layer = np.median(sample["layer"])
            gflops = layer.flops / t_ours / 1e9
            rows.append(dict(layer=layer.label, threads=threads, flops=layer.flops,
                             ms=t_ours * 1e3, gflops=gflops,
                             peak_pct=100 * gflops / peaks[threads],
                             gemm_pct=(100 * float(np.median(sample["gemm"])) / t_ours
                                       if sample["gemm"] else None),
                             torch_ms=t_torch * 1e3,
                             speedup=float(np.median(np.divide(sample["torch"], sample["ours"]))),
                             first_ms=np.median(sample["first"]) * 1e3,
                             extra_mib=sample["extra"] / 2 ** 20,
                             layer_ms=t_layer * 1e3,
                             layer_peak_pct=100 * layer.flops / t_layer / 1e9 / peaks[threads],
                             layer_speedup=float(np.median(np.divide(sample["torch"],
                                                                     sample["layer"]))),
                             layer_first_ms=np.median(sample["layer_first"]) * 1e3,
                             layer_extra_mib=sample["layer_extra"] / 2 ** 20,
                             held_mib=sample["held"] / 2 ** 20))
    return rows, peaks


def markdown(rows, peaks, threads_list, bias=True):
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}",
        "Layers " + ("with" if bias else "without") + " bias, float32",
        f"BLAS: {_timing.describe_blas()}; {_timing.openblas_env_note()}",
        "sgemm rate (2048^3, same run): " + ", ".join(
            f"{peaks[t]:.0f} GFLOP/s at {t} thread(s)" for t in threads_list),
        "",
        "| layer | threads | ms | GFLOP/s | % sgemm | % product sgemm | torch ms | speed-up "
        "| first call ms | extra MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        gemm = "-" if r["gemm_pct"] is None else f"{r['gemm_pct']:.0f}%"
        lines.append(f"| {r['layer']} | {r['threads']} | {r['ms']:.3f} | {r['gflops']:.1f} "
                     f"| {r['peak_pct']:.0f}% | {gemm} | {r['torch_ms']:.3f} "
                     f"| {r['speedup']:.2f}x "
                     f"| {r['first_ms']:.3f} | {r['extra_mib']:.2f} |")
    lines.append("")
    for t in threads_list:
        sp = [r["speedup"] for r in rows if r["threads"] == t]
        big = [r["peak_pct"] for r in rows if r["threads"] == t and r["flops"] >= 1e9]
        own = [r["gemm_pct"] for r in rows
               if r["threads"] == t and r["flops"] >= 1e9 and r["gemm_pct"] is not None]
        first = [r["first_ms"] / r["ms"] for r in rows if r["threads"] == t]
        line = (f"- {t} thread(s): geometric-mean speed-up "
                f"{np.exp(np.mean(np.log(sp))):.2f}x")
        if big:
            line += (f", slowest layer {min(sp):.2f}x; layers >= 1 GFLOP at "
                     f"{min(big):.0f}-{max(big):.0f}% of sgemm")
            if own:
                line += f" ({min(own):.0f}-{max(own):.0f}% of one sgemm over their own product)"
            line += f"; first call / steady state at most {max(first):.2f}x"
        lines.append(line)
    if rows and "layer_ms" in rows[0]:
        lines += module_table(rows, threads_list)
    return "\n".join(lines) + "\n"


def module_table(rows, threads_list):
    """Markdown lines for the ConvTranspose1d timings (same torch times)."""
    lines = [
        "",
        "convt_blas.nn.ConvTranspose1d, the same layers and torch times: its weight "
        "transformed for F(3,2), or laid out as rows for the GEMM path, is kept from call "
        "to call (held MiB; made by the first call, which the first-call column times), "
        "inputs from 128 positions on take F(3,2)",
        "",
        "| layer | threads | ms | GFLOP/s | % sgemm | speed-up | first call ms "
        "| extra MiB | held MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['threads']} | {r['layer_ms']:.3f} "
                     f"| {r['gflops'] * r['ms'] / r['layer_ms']:.1f} "
                     f"| {r['layer_peak_pct']:.0f}% | {r['layer_speedup']:.2f}x "
                     f"| {r['layer_first_ms']:.3f} | {r['layer_extra_mib']:.2f} "
                     f"| {r['held_mib']:.2f} |")
    lines.append("")
    for t in threads_list:
        mine = [r for r in rows if r["threads"] == t]
        sp = [r["layer_speedup"] for r in mine]
        big = [r["layer_peak_pct"] for r in mine if r["flops"] >= 1e9]
        first = [r["layer_first_ms"] / r["layer_ms"] for r in mine]
        line = (f"- {t} thread(s), ConvTranspose1d: geometric-mean speed-up "
                f"{np.exp(np.mean(np.log(sp))):.2f}x, slowest layer {min(sp):.2f}x")
        if big:
            line += f"; layers >= 1 GFLOP at {min(big):.0f}-{max(big):.0f}% of sgemm"
        line += (f"; first call / steady state at most {max(first):.2f}x; "
                 f"extra memory per call at most {max(r['layer_extra_mib'] for r in mine):.1f} MiB")
        lines.append(line)
    return lines


def chart(rows, threads_list, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["layer"] for r in rows))
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(labels) + 1.5))
    series = [("speedup", t, f"function, {t} thread(s)") for t in threads_list]
    if "layer_speedup" in rows[0]:
        series += [("layer_speedup", t, f"ConvTranspose1d, {t} thread(s)")
                   for t in threads_list]
    height = 0.8 / len(series)
    for j, (key, t, name) in enumerate(series):
        speed = [next(r[key] for r in rows if r["layer"] == lab and r["threads"] == t)
                 for lab in labels]
        ax.barh(np.arange(len(labels)) + j * height, speed, height, label=name)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(labels)) + height * (len(series) - 1) / 2, labels,
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over torch 2.13 conv_transpose1d (higher is better)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=0.4, help="timing time per layer")
    parser.add_argument("--only", nargs="*", help="substrings of layer labels to run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="passes over all layers; per layer the median of the rounds")
    parser.add_argument("--no-bias", action="store_true",
                        help="layers without bias (torch takes other paths for some of them)")
    args = parser.parse_args(argv)
    rows, peaks = run(args.threads, args.seconds, args.only, args.rounds, not args.no_bias)
    text = markdown(rows, peaks, args.threads, not args.no_bias)
    print(text)
    suffix = "_nobias" if args.no_bias else ""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"layers{suffix}.md"), "w") as f:
        f.write(text)
    chart(rows, args.threads, os.path.join(RESULTS, f"speedup{suffix}.png"))
    print(f"wrote {RESULTS}/layers{suffix}.md and speedup{suffix}.png")


if __name__ == "__main__":
    main()
