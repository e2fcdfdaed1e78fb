"""A/B timing of two convt_blas builds on the benchmark's layers.

    python tools/ab_speed.py --base /tmp/ab_base --new /work/main [--threads 1 2]
                             [--rounds 5] [--seconds 0.3] [--only LABEL ...] [--out FILE]
                             [--set bench | zoo | random:SEED]

Each build runs in a process of its own (PYTHONPATH=its tree), the processes
alternating A, B, A, B, ... for ``--rounds``; each process times every layer
of ``convt_blas._models.benchmark_layers()`` (or with ``--set``, bench/zoo.py's
zoo or random set), the function and a
ConvTranspose1d in steady state (weights kept from earlier calls), as the
median of repeated calls (``convt_blas._timing.time_interleaved``). Reported
per layer and thread count: the median over rounds for A and B, B/A, and the
spread of each build's rounds (max/min - 1: the noise a ratio is read
against; B/A beyond both builds' spread is marked ``!``); then the geometric
mean of the ratios. A Markdown table on stdout.

The children run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from
their environment, so that OpenBLAS picks its kernel for this CPU; the
kernel each build ran is in the table's header.
"""
import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(os.path.dirname(HERE), "bench")
BENCH_LAYERS = os.path.join(BENCH, "bench_layers.py")
OPENBLAS_PINNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ENTRIES = ("function", "layer")


# -- child: time one build ------------------------------------------------------------

def _bench_helpers():
    """bench/bench_layers.py beside this tool: its layer arrays and layer construction,
    so that both builds time the benchmark's own inputs."""
    spec = importlib.util.spec_from_file_location("bench_layers", BENCH_LAYERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zoo_layers(layer_set):
    """bench/zoo.py's zoo (``zoo``) or random set (``random:SEED``)."""
    sys.path.insert(0, BENCH)
    import zoo

    if layer_set == "zoo":
        return zoo.zoo()
    return zoo.random_set(int(layer_set.split(":", 1)[1]))


def _zoo_case(layer, rng):
    """Arrays, call arguments and a ConvTranspose1d holding the weights for a zoo layer."""
    import numpy as np

    import convt_blas

    dtype = np.dtype(layer.dtype)
    x = rng.standard_normal((layer.batch, layer.in_channels, layer.length)).astype(dtype)
    w = (rng.standard_normal((layer.in_channels, layer.out_channels // layer.groups,
                              layer.kernel_size))
         / np.sqrt(max(1, layer.in_channels * layer.kernel_size // layer.stride))).astype(dtype)
    b = rng.standard_normal(layer.out_channels).astype(dtype)
    module = convt_blas.ConvTranspose1d(
        layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
        padding=layer.padding, output_padding=layer.output_padding, groups=layer.groups,
        dilation=layer.dilation, dtype=dtype)
    module.weight, module.bias = w, b
    args = (layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation)
    return x, w, b, module, args


def time_build(threads_list, seconds, only, layer_set="bench"):
    import numpy as np

    import convt_blas
    from convt_blas import _models, _timing

    bench = _bench_helpers()
    source = _models.benchmark_layers() if layer_set == "bench" else _zoo_layers(layer_set)
    layers = [layer for layer in source if not only or any(o in layer.label for o in only)]
    timings = []
    for index, layer in enumerate(layers):
        # Seeded per layer, so that --only times the same arrays as a full run.
        if layer_set == "bench":
            x, w, b = bench.layer_arrays(layer, np.random.default_rng(index))
            module = bench.module_for(layer, w, b)
            args = (layer.stride, layer.padding, layer.output_padding, layer.groups)
        else:
            x, w, b, module, args = _zoo_case(layer, np.random.default_rng(index))

        def function_call():
            return convt_blas.conv_transpose1d(x, w, b, *args)

        def layer_call():
            return module(x)

        for threads in threads_list:
            convt_blas.set_num_threads(threads)
            layer_call()  # the kept F(3,2) transform or weight rows are made by the
            layer_call()  # first calls: the steady state starts from the third
            t_function, t_layer = _timing.time_interleaved([function_call, layer_call],
                                                           seconds)
            timings.append(dict(layer=layer.label, threads=threads, function=t_function,
                                layer_seconds=t_layer))
        del x, w, b, module
    convt_blas.set_num_threads(None)
    return dict(convt_blas_file=convt_blas.__file__, blas=_timing.describe_blas(),
                openblas_env=_timing.openblas_env_note(),
                openmp=convt_blas.openmp_enabled(), timings=timings)


# -- parent: alternate the builds -----------------------------------------------------

def _git_commit(tree):
    def git(*args):
        return subprocess.run(["git", "-C", tree, *args], capture_output=True, text=True,
                              timeout=20).stdout.strip()
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (commit or "?") + ("+dirty" if dirty else "")


def _child_env(tree):
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_PINNING}
    env["PYTHONPATH"] = tree  # this tree only: no other build may come first
    return env


def run_child(python, tree, threads_list, seconds, only, layer_set="bench"):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "timings.json")
        command = [python, os.path.abspath(__file__), "--child", out, "--seconds", str(seconds),
                   "--set", layer_set, "--threads", *map(str, threads_list)]
        if only:
            command += ["--only", *only]
        done = subprocess.run(command, cwd=tree, env=_child_env(tree), capture_output=True,
                              text=True)
        if done.returncode:
            raise RuntimeError(f"timing {tree} failed:\n{done.stderr[-4000:]}")
        with open(out) as f:
            result = json.load(f)
    imported = os.path.realpath(result["convt_blas_file"])
    if not imported.startswith(os.path.realpath(tree) + os.sep):
        raise RuntimeError(f"the process for {tree} imported {imported}: another build "
                           "comes first on its path")
    return result


def _spread(values):
    return max(values) / min(values) - 1


def _geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values))


def compare_builds(base, new, python, threads_list, rounds, seconds, only, layer_set="bench"):
    trees = {"A": os.path.abspath(base), "B": os.path.abspath(new)}
    runs = {"A": [], "B": []}
    start = time.perf_counter()
    for round_ in range(rounds):
        for name, tree in trees.items():
            print(f"[round {round_ + 1}/{rounds}] {name}: {tree}", file=sys.stderr, flush=True)
            runs[name].append(run_child(python, tree, threads_list, seconds, only, layer_set))
    elapsed = time.perf_counter() - start

    samples = {}  # (layer, threads, entry) -> {"A": [seconds per round], "B": [...]}
    order = []
    for name, results in runs.items():
        for result in results:
            for t in result["timings"]:
                for entry, key in (("function", "function"), ("layer", "layer_seconds")):
                    row = (t["layer"], t["threads"], entry)
                    if row not in samples:
                        samples[row] = {"A": [], "B": []}
                        order.append(row)
                    samples[row][name].append(t[key])
    rows = []
    for row in order:
        a, b = samples[row]["A"], samples[row]["B"]
        if len(a) != rounds or len(b) != rounds:
            continue  # a layer one build lacks
        a_ms, b_ms = statistics.median(a) * 1e3, statistics.median(b) * 1e3
        ratio, noise = b_ms / a_ms, max(_spread(a), _spread(b))
        rows.append(dict(layer=row[0], threads=row[1], entry=row[2], a_ms=a_ms, b_ms=b_ms,
                         ratio=ratio, a_spread=_spread(a), b_spread=_spread(b),
                         # one round has no spread to measure the noise by
                         beyond_noise=rounds > 1 and abs(math.log(ratio)) > math.log1p(noise)))
    return markdown(trees, runs, rows, threads_list, rounds, seconds, elapsed)


def markdown(trees, runs, rows, threads_list, rounds, seconds, elapsed):
    lines = ["# A/B timing: B/A < 1 means B is faster",
             "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python "
             f"{platform.python_version()}; {rounds} rounds, alternating A, B; "
             f"{seconds} s of calls per layer and round; {elapsed:.0f} s in all",
             ""]
    for name, tree in trees.items():
        first = runs[name][0]
        blas = sorted({r["blas"] for r in runs[name]})
        lines.append(f"- {name}: {tree} ({_git_commit(tree)}), imported "
                     f"{first['convt_blas_file']}; OpenMP {first['openmp']}; "
                     f"BLAS {', '.join(blas)}")
    lines.append(f"- {runs['A'][0]['openblas_env']}")
    if {r["blas"] for r in runs["A"]} != {r["blas"] for r in runs["B"]}:
        lines.append("- warning: the builds ran different BLAS kernels")
    lines += ["",
              "| layer | threads | entry | A ms | B ms | B/A | A spread | B spread |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['threads']} | {r['entry']} | {r['a_ms']:.3f} "
                     f"| {r['b_ms']:.3f} | {r['ratio']:.3f}{' !' if r['beyond_noise'] else ''} "
                     f"| {100 * r['a_spread']:.1f}% "
                     f"| {100 * r['b_spread']:.1f}% |")
    lines.append("")
    for threads in threads_list:
        for entry in ENTRIES:
            mine = [r for r in rows if r["threads"] == threads and r["entry"] == entry]
            if mine:
                ratios = [r["ratio"] for r in mine]
                lines.append(f"- {threads} thread(s), {entry}: geometric-mean B/A "
                             f"{_geomean(ratios):.3f} (range {min(ratios):.3f}-"
                             f"{max(ratios):.3f}); median spread of rounds "
                             f"A {100 * statistics.median(r['a_spread'] for r in mine):.1f}%, "
                             f"B {100 * statistics.median(r['b_spread'] for r in mine):.1f}%")
    if rows:
        lines.append(f"- all: geometric-mean B/A {_geomean([r['ratio'] for r in rows]):.3f} "
                     f"over {len(rows)} rows; {sum(r['beyond_noise'] for r in rows)} "
                     f"marked ! (B/A beyond both builds' spread of rounds)")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", help="tree of build A (its convt_blas/ built in place)")
    parser.add_argument("--new", help="tree of build B")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="timing time per layer, entry pair and thread count")
    parser.add_argument("--only", nargs="*", help="substrings of layer labels to run")
    parser.add_argument("--set", default="bench", dest="layer_set",
                        help="bench (the default), zoo, or random:SEED (bench/zoo.py)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the children (default: this one)")
    parser.add_argument("--out", help="also write the Markdown table here")
    parser.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with open(args.child, "w") as f:
            json.dump(time_build(args.threads, args.seconds, args.only, args.layer_set), f)
        return 0
    if not (args.base and args.new):
        parser.error("--base and --new are required")
    text = compare_builds(args.base, args.new, args.python, args.threads, args.rounds,
                          args.seconds, args.only, args.layer_set)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
