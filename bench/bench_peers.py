"""Benchmark convt_blas against torch, ONNX Runtime and OpenVINO on a zoo of published
layers and a seeded random set (bench/zoo.py).

Every library gets the same inputs. ONNX Runtime and OpenVINO run a one-node
ConvTranspose model (built here with onnx.helper; OpenVINO compiles the same
model), torch runs F.conv_transpose1d, convt_blas runs conv_transpose1d and a
convt_blas.nn.ConvTranspose1d holding the weights. Outputs are checked against
convt_blas (max relative error).

At 1 thread all libraries run interleaved in this process (median of repeated
calls). At more threads each library runs in a process of its own, the
processes alternating, ``--rounds`` times, and each figure is the median of the
rounds: the libraries' thread pools spin after a call and would take each
other's cores if they shared a process. Writes Markdown tables to
bench/results/peers*.md (and the raw figures beside them as JSON).

Run with the OpenBLAS pinning variables unset in this command only:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_peers.py
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

import convt_blas  # noqa: E402
from convt_blas import _timing  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LIBRARIES = ("convt_blas", "torch", "onnxruntime", "openvino")
PEERS = ("torch", "onnxruntime", "openvino")
# Columns: convt_blas's function and layer, then each peer.
COLUMNS = ("convt_blas", "convt_blas layer") + PEERS


def layer_arrays(layer, seed, index):
    """The layer's input, weight and bias: the same in every process for (seed, index)."""
    rng = np.random.default_rng([seed, index])
    dtype = np.dtype(layer.dtype)
    x = rng.standard_normal((layer.batch, layer.in_channels, layer.length)).astype(dtype)
    scale = 1 / np.sqrt(max(1, layer.in_channels * layer.kernel_size // layer.stride))
    w = (rng.standard_normal((layer.in_channels, layer.out_channels // layer.groups,
                              layer.kernel_size)) * scale).astype(dtype)
    b = rng.standard_normal(layer.out_channels).astype(dtype)
    return x, w, b


def onnx_model(layer, w, b):
    """A one-node ONNX ConvTranspose model of ``layer`` holding ``w`` and ``b``."""
    from onnx import TensorProto, helper, numpy_helper

    element = TensorProto.DOUBLE if layer.dtype == "float64" else TensorProto.FLOAT
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[layer.kernel_size],
        strides=[layer.stride], pads=[layer.padding, layer.padding],
        output_padding=[layer.output_padding], dilations=[layer.dilation], group=layer.groups)
    graph = helper.make_graph(
        [node], "conv_transpose1d",
        [helper.make_tensor_value_info("x", element, [layer.batch, layer.in_channels,
                                                      layer.length])],
        [helper.make_tensor_value_info("y", element, [layer.batch, layer.out_channels,
                                                      layer.out_length])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # read by every ONNX Runtime and OpenVINO of the last years
    return model


def onnxruntime_call(layer, x, w, b, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_model(layer, w, b).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"x": x}
    return lambda: session.run(None, feed)[0]


def openvino_call(layer, x, w, b, threads):
    import openvino as ov

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "layer.onnx")
        with open(path, "wb") as f:
            f.write(onnx_model(layer, w, b).SerializeToString())
        core = ov.Core()
        # f32 inference precision: on CPUs with bf16 units OpenVINO would otherwise
        # compute in bf16, not the same arithmetic as the others.
        compiled = core.compile_model(core.read_model(path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32" if layer.dtype == "float32" else "f64"})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x}, share_inputs=True, share_outputs=True)[0]


def torch_call(layer, x, w, b, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    args = (layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation)

    def call():
        with torch.no_grad():
            return F.conv_transpose1d(tx, tw, tb, *args).numpy()

    return call


def convt_blas_calls(layer, x, w, b, threads):
    convt_blas.set_num_threads(threads)
    args = (layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation)
    module = convt_blas.nn.ConvTranspose1d(
        layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
        layer.output_padding, layer.groups, dilation=layer.dilation, dtype=np.dtype(layer.dtype))
    module.load_state_dict({"weight": w, "bias": b})
    return {"convt_blas": lambda: convt_blas.conv_transpose1d(x, w, b, *args),
            "convt_blas layer": lambda: module(x)}


def calls_for(library, layer, x, w, b, threads):
    """{column: callable} for one library; a peer that cannot build the layer is left out
    (ONNX Runtime has no float64 ConvTranspose, for one)."""
    if library == "convt_blas":
        return convt_blas_calls(layer, x, w, b, threads)
    make = {"torch": torch_call, "onnxruntime": onnxruntime_call,
            "openvino": openvino_call}[library]
    try:
        call = make(layer, x, w, b, threads)
        call()
    except Exception as error:  # noqa: BLE001  the table says which peer could not
        print(f"  {library}: {type(error).__name__}: {str(error).splitlines()[0][:120]}",
              file=sys.stderr)
        return {}
    return {library: call}


def available(library):
    try:
        __import__(library)
        return True
    except ImportError:
        return False


def layer_sets(args):
    """[(set name, layers)] for the run."""
    sets = [("zoo", zoo.zoo()), (f"random (seed {args.seed})", zoo.random_set(args.seed))]
    if args.quick:
        sets = [(name, zoo.quick(layers)) for name, layers in sets]
    if args.only:
        sets = [(name, [la for la in layers if any(o in la.label for o in args.only)])
                for name, layers in sets]
    return sets


def time_one_thread(sets, libraries, seed, seconds):
    """All libraries interleaved in this process, 1 thread each: times and errors."""
    results = {}
    for set_index, (name, layers) in enumerate(sets):
        for i, layer in enumerate(layers):
            print(f"[1 thread, {name} {i + 1}/{len(layers)}] {layer.label}", file=sys.stderr,
                  flush=True)
            x, w, b = layer_arrays(layer, seed + 1000 * set_index, i)
            calls = {}
            for library in libraries:
                calls.update(calls_for(library, layer, x, w, b, 1))
            expected = calls["convt_blas"]()
            scale = float(np.max(np.abs(expected))) or 1.0
            errors = {column: float(np.max(np.abs(call() - expected))) / scale
                      for column, call in calls.items() if column != "convt_blas"}
            times = _timing.time_interleaved(list(calls.values()), seconds)
            results[(set_index, i)] = dict(times=dict(zip(calls, times)), errors=errors)
    return results


def worker(args):
    """One library alone in this process at ``args.threads`` threads: writes its times."""
    times = {}
    for set_index, (name, layers) in enumerate(layer_sets(args)):
        for i, layer in enumerate(layers):
            x, w, b = layer_arrays(layer, args.seed + 1000 * set_index, i)
            calls = calls_for(args.worker, layer, x, w, b, args.threads[0])
            if calls:
                measured = _timing.time_interleaved(list(calls.values()), args.seconds)
                times[f"{set_index},{i}"] = dict(zip(calls, measured))
    with open(args.output, "w") as f:
        json.dump(times, f)


def time_in_processes(sets, libraries, args, threads):
    """Each library in a process of its own, alternating, ``args.rounds`` times; median."""
    samples = {}
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.rounds):
            order = libraries if round_ % 2 == 0 else libraries[::-1]
            for library in order:
                print(f"[{threads} threads, round {round_ + 1}/{args.rounds}] {library}",
                      file=sys.stderr, flush=True)
                output = os.path.join(directory, f"{library}.json")
                command = [sys.executable, os.path.abspath(__file__), "--worker", library,
                           "--threads", str(threads), "--seed", str(args.seed),
                           "--seconds", str(args.seconds), "--output", output]
                command += ["--quick"] if args.quick else []
                command += ["--only", *args.only] if args.only else []
                subprocess.run(command, check=True)
                with open(output) as f:
                    for key, times in json.load(f).items():
                        for column, seconds in times.items():
                            samples.setdefault(key, {}).setdefault(column, []).append(seconds)
    results = {}
    for set_index, (_, layers) in enumerate(sets):
        for i in range(len(layers)):
            times = samples.get(f"{set_index},{i}", {})
            results[(set_index, i)] = dict(times={c: float(np.median(s))
                                                  for c, s in times.items()}, errors={})
    return results


def geomean(values):
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def markdown_set(name, layers, results, set_index, threads, errors_from):
    """A set's table and summary lines at one thread count."""
    present = [c for c in COLUMNS
               if any(c in results[(set_index, i)]["times"] for i in range(len(layers)))]
    peers = [c for c in PEERS if c in present]
    lines = [f"#### {name}, {threads} thread(s)", "",
             "| layer | MFLOP | " + " | ".join(f"{c} ms" for c in present) + " | "
             + " | ".join(f"vs {p}" for p in peers) + " | max rel. error |",
             "| --- | ---: | " + " | ".join("---:" for _ in present + peers) + " | ---: |"]
    speedups = {p: [] for p in peers}
    layer_speedups = {p: [] for p in peers}
    slower = []
    for i, layer in enumerate(layers):
        times = results[(set_index, i)]["times"]
        errors = errors_from.get((set_index, i), {}).get("errors", {})
        ours = times["convt_blas"]
        cells = [f"{times[c] * 1e3:.3f}" if c in times else "-" for c in present]
        ratios = []
        for p in peers:
            if p in times:
                speedups[p].append(times[p] / ours)
                if "convt_blas layer" in times:
                    layer_speedups[p].append(times[p] / times["convt_blas layer"])
                ratios.append(f"{times[p] / ours:.2f}x")
                if times[p] < ours:
                    slower.append((times[p] / ours, p, layer.label))
            else:
                ratios.append("-")
        error = max(errors.values()) if errors else None
        lines.append(f"| {layer.label} | {layer.flops / 1e6:.1f} | " + " | ".join(cells)
                     + " | " + " | ".join(ratios) + " | "
                     + ("-" if error is None else f"{error:.1e}") + " |")
    lines.append("")
    summary = ", ".join(f"{p} {geomean(s):.2f}x ({len(s)} layers)"
                        for p, s in speedups.items() if s)
    lines.append(f"- geometric-mean speed-up of convt_blas over {summary}")
    lines.append("- the same for convt_blas.ConvTranspose1d: " + ", ".join(
        f"{p} {geomean(s):.2f}x" for p, s in layer_speedups.items() if s))
    if slower:
        worst = min(slower)
        lines.append(f"- slowest layer against any peer: {worst[2]}, {worst[0]:.2f}x "
                     f"against {worst[1]}")
        lines.append("- slower than a peer: " + "; ".join(
            f"{label} ({ratio:.2f}x against {peer})" for ratio, peer, label in sorted(slower)))
    else:
        lines.append("- convt_blas is no slower than any peer on any layer of this set")
    lines.append("")
    return lines, speedups, slower


def whole_product_gemm(layer, x, w):
    """scipy's gemm over the layer's whole W^T X product, per group, into preallocated
    columns: what the BLAS makes of the GEMM step uncut, with no col2im."""
    from scipy.linalg import blas

    gemm = blas.dgemm if layer.dtype == "float64" else blas.sgemm
    c_in_g, c_out_g = layer.in_channels // layer.groups, layer.out_channels // layer.groups
    products = []
    for g in range(layer.groups):
        weight_t = w[g * c_in_g:(g + 1) * c_in_g].reshape(c_in_g, -1).T  # (C_out_g*K, C_in_g)
        inputs_t = np.asfortranarray(
            x[:, g * c_in_g:(g + 1) * c_in_g].transpose(0, 2, 1).reshape(-1, c_in_g))
        columns = np.empty((c_out_g * layer.kernel_size, inputs_t.shape[0]), w.dtype, order="F")
        products.append((weight_t, inputs_t, columns))

    def call():
        for weight_t, inputs_t, columns in products:
            gemm(1.0, weight_t, inputs_t, c=columns, trans_b=1, overwrite_c=1)

    return call


def explain_worst(path, count, seed, seconds):
    """For the ``count`` layers slowest against a peer at 1 thread: the plan and the
    BLAS's own rate on the layer's whole product, timed now at 1 thread."""
    from threadpoolctl import threadpool_limits

    from convt_blas import kernels

    with open(path) as f:
        raw = json.load(f)
    worst = []
    for set_name, rows in raw.items():
        if not set_name.endswith(", 1 thread(s)"):
            continue
        set_index = 0 if set_name.startswith("zoo") else 1
        for i, row in enumerate(rows):
            ours = row["times"]["convt_blas"]
            ratios = [(row["times"][p] / ours, p) for p in PEERS if p in row["times"]]
            if ratios:
                worst.append((*min(ratios), set_index, i, row))
    worst.sort(key=lambda entry: entry[0])
    sets = [zoo.zoo(), zoo.random_set(seed)]
    convt_blas.set_num_threads(1)
    lines = []
    for ratio, peer, set_index, _, row in worst[:count]:
        # By label: a run with --only numbered its layers within its own shorter list.
        i = [layer.label for layer in sets[set_index]].index(row["label"])
        layer = sets[set_index][i]
        x, w, b = layer_arrays(layer, seed + 1000 * set_index, i)
        args = (layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation)
        with threadpool_limits(1, user_api="blas"):
            t_ours, t_gemm = _timing.time_interleaved(
                [lambda: convt_blas.conv_transpose1d(x, w, b, *args),
                 whole_product_gemm(layer, x, w)], seconds)
        plan = kernels._plan_info(layer.shape, False)
        lines += [f"- {layer.label}: {ratio:.2f}x against {peer} "
                  f"({row['times'][peer] * 1e3:.3f} ms vs {row['times']['convt_blas'] * 1e3:.3f}"
                  f" ms); now convt_blas {t_ours * 1e3:.3f} ms = "
                  f"{layer.flops / t_ours / 1e9:.1f} GFLOP/s, the BLAS's gemm on the whole "
                  f"W^T X product {t_gemm * 1e3:.3f} ms = {layer.flops / t_gemm / 1e9:.1f} "
                  f"GFLOP/s",
                  "  plan: " + ", ".join(f"{k}={v}" for k, v in plan.items())]
    return lines


def versions():
    found = [f"convt_blas {convt_blas.__version__}"]
    for library in PEERS:
        try:
            found.append(f"{library} {__import__(library).__version__}")
        except ImportError:
            pass
    return ", ".join(found)


def load_note():
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random set")
    parser.add_argument("--seconds", type=float, default=0.15, help="timing time per layer")
    parser.add_argument("--rounds", type=int, default=2,
                        help="processes per library at more than 1 thread; median of rounds")
    parser.add_argument("--quick", action="store_true", help="every third layer of each set")
    parser.add_argument("--only", nargs="*", help="substrings of layer labels to run")
    parser.add_argument("--tag", help="written to bench/results/peers_TAG.md and .json")
    parser.add_argument("--explain", type=int, metavar="N",
                        help="no timing of peers: for the N layers slowest against a peer in "
                             "bench/results/peers.json, the plan and the BLAS's rate on the "
                             "layer's whole product")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.explain:
        print(f"BLAS: {_timing.describe_blas()}")
        print("\n".join(explain_worst(os.path.join(RESULTS, "peers.json"), args.explain,
                                      args.seed, max(args.seconds, 0.3))))
        return 0

    libraries = [lib for lib in LIBRARIES if available(lib)]
    sets = layer_sets(args)
    started = time.perf_counter()
    loads = [load_note()]
    by_threads = {}
    for threads in args.threads:
        by_threads[threads] = (time_one_thread(sets, libraries, args.seed, args.seconds)
                               if threads == 1 else
                               time_in_processes(sets, libraries, args, threads))
        loads.append(load_note())
    errors_from = by_threads.get(1, {})
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}; {versions()}",
        f"BLAS: {_timing.describe_blas()}; {_timing.openblas_env_note()}",
        f"Random set seed {args.seed}; {'quick run; ' if args.quick else ''}"
        f"{args.seconds} s per layer and library; at more than 1 thread median of "
        f"{args.rounds} rounds of one process per library",
        "OMP_WAIT_POLICY=" + os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP's default)"),
        f"Load during the run ({time.perf_counter() - started:.0f} s): " + "; ".join(loads),
        "",
        "Speed-up: a peer's time over convt_blas.conv_transpose1d's. Error: largest "
        "|peer - convt_blas| over max |convt_blas| (1-thread pass).",
        "",
    ]
    raw = {}
    for threads, results in by_threads.items():
        for set_index, (name, layers) in enumerate(sets):
            set_lines, speedups, slower = markdown_set(name, layers, results, set_index,
                                                       threads, errors_from)
            lines += set_lines
            raw[f"{name}, {threads} thread(s)"] = [
                dict(label=layer.label, shape=layer.shape, dtype=layer.dtype,
                     flops=layer.flops, **results[(set_index, i)])
                for i, layer in enumerate(layers)]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    stem = os.path.join(RESULTS, "_".join(["peers"] + (["quick"] if args.quick else [])
                                          + ([args.tag] if args.tag else [])))
    with open(stem + ".md", "w") as f:
        f.write(text)
    with open(stem + ".json", "w") as f:
        json.dump(raw, f, indent=1)
    print(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
