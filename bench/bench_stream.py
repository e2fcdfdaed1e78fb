"""Per-chunk latency of streaming the HiFi-GAN first upsampling layer.

ConvTranspose1d(512 -> 256, K=16, stride 8, padding 4), batch 1, float32, fed
1..10 mel frames per chunk. Compared:

- ``ConvTranspose1dStream.push`` (convt_blas);
- torch's ``conv_transpose1d`` on each chunk (padding 0) with a hand-written
  overlap-add of the 8-sample tail, padding crop and bias, as one would write
  it without a streaming building block.

Each push is measured on its own (after warm-up, the two taking turns chunk
by chunk); the table shows the median over all timed pushes. Prints a Markdown table.
``--gap-ms G`` sleeps G ms before every push, as a real-time stream waits for
its next chunk: the push then also pays for waking threads that went idle.

    python bench/bench_stream.py [--repeats 200] [--threads N] [--gap-ms G]
"""
import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout
import convt_blas  # noqa: E402
from convt_blas import ConvTranspose1dStream  # noqa: E402

C_IN, C_OUT, K, STRIDE, PADDING = 512, 256, 16, 8, 4


class TorchOverlapAdd:
    """torch on each chunk plus the overlap-add written by hand (no output_padding)."""

    def __init__(self, weight, bias):
        self.weight, self.bias = weight, bias[:, None]
        self.overlap = K - STRIDE
        self.tail = None
        self.to_drop = PADDING  # the first `padding` samples are cropped

    def push(self, chunk):
        y = torch.nn.functional.conv_transpose1d(chunk, self.weight, stride=STRIDE)
        if self.tail is not None:
            y[:, :, :self.overlap] += self.tail
        ready = chunk.shape[-1] * STRIDE
        self.tail = y[:, :, ready:].clone()
        out = y[:, :, self.to_drop:ready] + self.bias
        self.to_drop = 0
        return out

    def flush(self):
        return self.tail[:, :, :self.overlap - PADDING] + self.bias


def check_both(weight, bias, frames):
    """Both streams reproduce the whole-signal layer before anything is timed."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, C_IN, 5 * frames + 3)).astype(np.float32)
    expected = convt_blas.conv_transpose1d(x, weight, bias, stride=STRIDE, padding=PADDING)
    ours = ConvTranspose1dStream(weight, bias, stride=STRIDE, padding=PADDING)
    theirs = TorchOverlapAdd(torch.from_numpy(weight), torch.from_numpy(bias))
    parts_ours, parts_theirs = [], []
    with torch.inference_mode():
        for start in range(0, x.shape[-1], frames):
            chunk = x[..., start:start + frames]
            parts_ours.append(ours.push(chunk))
            parts_theirs.append(theirs.push(torch.from_numpy(chunk)).numpy())
        parts_theirs.append(theirs.flush().numpy())
    parts_ours.append(ours.flush())
    scale = np.abs(expected).max()
    for parts in (parts_ours, parts_theirs):
        got = np.concatenate(parts, axis=-1)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4 * scale


def time_pushes(streams, chunks, warmup, gap=0.0):
    """Seconds per push for each stream, each push measured on its own.

    The streams take turns chunk by chunk, so both see the same machine load;
    the first ``warmup`` pushes are not timed. ``gap``: seconds of sleep
    before each push.
    """
    times = [[] for _ in streams]
    for i, chunk_set in enumerate(chunks):
        for (push, chunk), record in zip(zip(streams, chunk_set), times):
            if gap:
                time.sleep(gap)
            start = time.perf_counter()
            push(chunk)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                record.append(elapsed)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed pushes per size")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both libraries (default: each library's default)")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="sleep before each push, as between chunks of a real-time stream")
    parser.add_argument("--max-frames", type=int, default=10, help="chunks of 1..F frames")
    args = parser.parse_args()
    if args.threads:
        convt_blas.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((C_IN, C_OUT, K)) / np.sqrt(C_IN * K)).astype(np.float32)
    bias = rng.standard_normal(C_OUT).astype(np.float32) * 0.1
    w_t, b_t = torch.from_numpy(weight), torch.from_numpy(bias)

    print(f"HiFi-GAN first layer: ConvTranspose1d({C_IN}, {C_OUT}, {K}, stride={STRIDE}, "
          f"padding={PADDING}), batch 1, float32; {platform.processor() or platform.machine()}, "
          f"convt_blas {convt_blas.get_num_threads()} threads, torch {torch.__version__} "
          f"{torch.get_num_threads()} threads; median of {args.repeats} pushes"
          + (f", each after {args.gap_ms:g} ms of sleep" if args.gap_ms else "") + "\n")
    print("| frames/chunk | samples out | convt_blas stream (µs) | torch + overlap-add (µs) "
          "| torch / convt_blas |")
    print("|---:|---:|---:|---:|---:|")
    n = args.warmup + args.repeats
    for frames in range(1, args.max_frames + 1):
        check_both(weight, bias, frames)
        chunks = [rng.standard_normal((1, C_IN, frames)).astype(np.float32) for _ in range(n)]
        ours = ConvTranspose1dStream(weight, bias, stride=STRIDE, padding=PADDING)
        theirs = TorchOverlapAdd(w_t, b_t)
        with torch.inference_mode():
            ours_t, theirs_t = time_pushes((ours.push, theirs.push),
                                           [(c, torch.from_numpy(c)) for c in chunks],
                                           args.warmup, args.gap_ms / 1e3)
        ours_s, theirs_s = np.median(ours_t), np.median(theirs_t)
        print(f"| {frames} | {frames * STRIDE} | {ours_s * 1e6:.1f} | {theirs_s * 1e6:.1f} "
              f"| {theirs_s / ours_s:.2f} |")


if __name__ == "__main__":
    main()
