"""``python -m convt_blas``: a demo and benchmark on real model layers.

For each built-in layer (HiFi-GAN V1 and EnCodec 24 kHz decoders) it runs
conv_transpose1d, checks the result against the float64 reference from the
definition, and reports time and GFLOP/s, with torch's time beside it when
torch is installed, and ONNX Runtime's (a one-node ConvTranspose model) when
onnx and onnxruntime are.
"""
import argparse
import sys

import numpy as np

import convt_blas
from convt_blas import _models, _timing
from convt_blas.reference import conv_transpose1d_reference


def _layer_arrays(layer, rng, dtype=np.float32):
    x = rng.standard_normal((layer.batch, layer.in_channels, layer.length)).astype(dtype)
    scale = 1 / np.sqrt(layer.in_channels * layer.kernel_size / layer.stride)
    w = (rng.standard_normal((layer.in_channels, layer.out_channels // layer.groups,
                              layer.kernel_size)) * scale).astype(dtype)
    b = rng.standard_normal(layer.out_channels).astype(dtype)
    return x, w, b


def _onnxruntime_call(layer, x, w, b):
    """ONNX Runtime running ``layer`` as a one-node ConvTranspose model on as many threads
    as convt_blas uses; None without onnx or onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"],
                            kernel_shape=[layer.kernel_size], strides=[layer.stride],
                            pads=[layer.padding, layer.padding],
                            output_padding=[layer.output_padding], group=layer.groups)
    graph = helper.make_graph(
        [node], "conv_transpose1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = convt_blas.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})[0]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convt_blas", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="minimum timing time per layer (default 0.5)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch comparison")
    parser.add_argument("--no-onnxruntime", action="store_true",
                        help="skip the ONNX Runtime comparison")
    args = parser.parse_args(argv)

    try:
        if args.no_torch:
            raise ImportError
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None

    print(f"convt_blas {convt_blas.__version__}: OpenMP {'on' if convt_blas.openmp_enabled() else 'off'}, "
          f"{convt_blas.get_num_threads()} thread(s)")
    print(f"BLAS: {_timing.describe_blas()}")
    print(f"      {_timing.openblas_env_note()}")
    if torch is not None:
        print(f"torch {torch.__version__} with {torch.get_num_threads()} thread(s)")
    else:
        print("torch not installed: no speed comparison (pip install -e '.[bench]')")
    try:
        if args.no_onnxruntime:
            raise ImportError
        import onnx  # noqa: F401
        import onnxruntime
        print(f"onnxruntime {onnxruntime.__version__}")
        with_onnxruntime = True
    except ImportError:
        with_onnxruntime = False
    print()

    rng = np.random.default_rng(0)
    header = "| layer | GFLOP | ms | GFLOP/s | max rel. error |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    if torch is not None:
        header += " torch ms | speed-up |"
        rule += " ---: | ---: |"
    if with_onnxruntime:
        header += " ONNX Runtime ms | speed-up |"
        rule += " ---: | ---: |"
    rows, speedups, ort_speedups = [], [], []
    layers = _models.DEMO_LAYERS
    for i, layer in enumerate(layers, 1):
        print(f"[{i}/{len(layers)}] {layer.label} ...", file=sys.stderr, flush=True)
        x, w, b = _layer_arrays(layer, rng)
        params = (layer.stride, layer.padding, layer.output_padding, layer.groups)
        y = convt_blas.conv_transpose1d(x, w, b, *params)
        expected = conv_transpose1d_reference(x, w, b, *params)
        error = float(np.max(np.abs(y - expected)) / np.max(np.abs(expected)))

        functions = [lambda: convt_blas.conv_transpose1d(x, w, b, *params)]
        if torch is not None:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

            def run_torch():
                with torch.no_grad():
                    F.conv_transpose1d(tx, tw, tb, *params)

            functions.append(run_torch)
        if with_onnxruntime:
            functions.append(_onnxruntime_call(layer, x, w, b))
        times = _timing.time_interleaved(functions, args.seconds)
        gflop = layer.flops / 1e9
        row = (f"| {layer.label} | {gflop:.3f} | {times[0] * 1e3:.3f} | {gflop / times[0]:.1f} "
               f"| {error:.1e} |")
        if torch is not None:
            speedups.append(times[1] / times[0])
            row += f" {times[1] * 1e3:.3f} | {speedups[-1]:.2f}x |"
        if with_onnxruntime:
            ort_speedups.append(times[-1] / times[0])
            row += f" {times[-1] * 1e3:.3f} | {ort_speedups[-1]:.2f}x |"
        rows.append(row)

    print("\n".join([header, rule, *rows]))
    print()
    for name, ratios in (("torch", speedups), ("ONNX Runtime", ort_speedups)):
        if ratios:
            geomean = float(np.exp(np.mean(np.log(ratios))))
            print(f"speed-up over {name}: geometric mean {geomean:.2f}x, "
                  f"min {min(ratios):.2f}x, max {max(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
