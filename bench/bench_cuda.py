"""Benchmark the CUDA path against torch's (cuDNN) on the benchmark layers.

    python bench/bench_cuda.py [--dtype float32|float16|float64] [--no-tf32] [--seconds S]

Needs CuPy, torch with CUDA, and a GPU. Both libraries read the same device
memory (shared through DLPack) and run on the same TF32 setting: torch's
``torch.backends.cudnn.allow_tf32`` is set to ``convt_blas.cuda.allow_tf32``.
Times are medians of wall time per call, each call followed by a device
synchronisation, so they include launch overheads as a user sees them.
"""
import argparse
import statistics
import sys

import convt_blas
from convt_blas import _models, _timing, cuda


def _imports():
    try:
        import cupy
        import torch
    except ImportError as exc:
        sys.exit(f"bench_cuda needs CuPy and torch with CUDA: {exc}")
    if not torch.cuda.is_available() or cupy.cuda.runtime.getDeviceCount() < 1:
        sys.exit("bench_cuda needs a CUDA device visible to both CuPy and torch")
    return cupy, torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "float64"])
    parser.add_argument("--no-tf32", action="store_true", help="full float32 GEMMs in both")
    parser.add_argument("--seconds", type=float, default=0.3, help="timing time per layer")
    args = parser.parse_args(argv)
    cupy, torch = _imports()
    import torch.nn.functional as F

    cuda.allow_tf32 = not args.no_tf32
    torch.backends.cudnn.allow_tf32 = cuda.allow_tf32
    torch_dtype = getattr(torch, args.dtype)
    device = cupy.cuda.Device()
    print(f"convt_blas {convt_blas.__version__}, CuPy {cupy.__version__}, torch "
          f"{torch.__version__} (cuDNN {torch.backends.cudnn.version()}), "
          f"{torch.cuda.get_device_name()} (sm_{device.compute_capability}), {args.dtype}, "
          f"TF32 {'on' if cuda.allow_tf32 else 'off'}")
    print()
    print("| layer | GFLOP | torch ms | convt_blas ms | speed-up | max rel. diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")

    generator = torch.Generator(device="cuda").manual_seed(0)
    speedups = []
    for layer in _models.benchmark_layers():
        shape_x = (layer.batch, layer.in_channels, layer.length)
        shape_w = (layer.in_channels, layer.out_channels // layer.groups, layer.kernel_size)
        scale = (layer.in_channels * layer.kernel_size / layer.stride) ** -0.5
        tx = torch.randn(shape_x, generator=generator, device="cuda", dtype=torch_dtype)
        tw = torch.randn(shape_w, generator=generator, device="cuda", dtype=torch_dtype) * scale
        tb = torch.randn(layer.out_channels, generator=generator, device="cuda", dtype=torch_dtype)
        cx, cw, cb = (cupy.from_dlpack(t) for t in (tx, tw, tb))
        params = dict(stride=layer.stride, padding=layer.padding,
                      output_padding=layer.output_padding, groups=layer.groups)

        def run_torch():
            with torch.no_grad():
                F.conv_transpose1d(tx, tw, tb, **params)
            torch.cuda.synchronize()

        def run_convt_blas():
            convt_blas.conv_transpose1d(cx, cw, cb, **params)
            device.synchronize()

        expected = F.conv_transpose1d(tx, tw, tb, **params).double()
        got = torch.from_dlpack(convt_blas.conv_transpose1d(cx, cw, cb, **params)).double()
        diff = float((got - expected).abs().max() / expected.abs().max())
        t_torch, t_ours = _timing.time_interleaved([run_torch, run_convt_blas], args.seconds)
        speedups.append(t_torch / t_ours)
        print(f"| {layer.label} | {layer.flops / 1e9:.3f} | {t_torch * 1e3:.3f} "
              f"| {t_ours * 1e3:.3f} | {speedups[-1]:.2f}x | {diff:.1e} |", flush=True)
        del tx, tw, tb, cx, cw, cb, expected, got
    print(f"\n{len(speedups)} layers, speed-up over torch: geometric mean "
          f"{statistics.geometric_mean(speedups):.2f}x, from {min(speedups):.2f}x "
          f"to {max(speedups):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
