"""Whole decoders in torch, as published, against the same models after
``convt_blas.torch.accelerate(model)``: float32, batch 1, about one second of
audio, random weights (their published sizes), under ``torch.inference_mode()``.

- EnCodec 24 kHz decoder (``encodec``: SEANet, 320x upsampling, 2 LSTM layers);
- SNAC 24 kHz decoder (``snac``, the ``snac_24khz`` configuration, no noise);
- SpeechT5 HiFi-GAN vocoder (``transformers``, its default configuration).

At 1 thread the two run interleaved in one process; at 2 threads each runs in
its own process (torch's and convt_blas's OpenMP pools do not share cores
well within one), torch and convt_blas processes alternating. Each process
reports the median of its timed runs; the table shows the fastest process
(other jobs on a shared machine slow whole processes several-fold at times). Also prints the largest difference relative to the output's scale.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_torch_models.py [--rounds 3] [--threads 1,2]

The decoders' packages: ``pip install --no-deps encodec einops`` (encodec's
own requirements pull torchaudio) and ``pip install snac transformers``.
"""
import argparse
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout
import convt_blas.torch  # noqa: E402


def model_module(package, module):
    """``package.module`` without running the package's __init__ when that fails
    (EnCodec's imports torchaudio for file I/O only)."""
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError:
        stand_in = types.ModuleType(package)
        stand_in.__path__ = list(importlib.util.find_spec(package).submodule_search_locations)
        sys.modules[package] = stand_in
        return importlib.import_module(f"{package}.{module}")


def encodec_24khz():
    decoder = model_module("encodec", "modules.seanet").SEANetDecoder()
    return decoder, (1, decoder.dimension, 75)


def snac_24khz():
    snac = model_module("snac", "snac").SNAC(
        sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
        decoder_rates=[8, 8, 4, 2], attn_window_size=None, vq_strides=[4, 2, 1], noise=False)
    return snac.decoder, (1, snac.latent_dim, 47)


def speecht5_hifigan():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig()
    return SpeechT5HifiGan(config), (1, 62, config.model_in_dim)


MODELS = {"EnCodec 24 kHz decoder": encodec_24khz, "SNAC 24 kHz decoder": snac_24khz,
          "SpeechT5 HiFi-GAN": speecht5_hifigan}


def build(name, accelerated):
    torch.manual_seed(0)
    model, shape = MODELS[name]()
    model.eval()
    if accelerated:
        convt_blas.torch.accelerate(model)
    return model, torch.randn(shape)


def median_seconds(model, x, runs):
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(name, accelerated, threads, runs):
    """One process's measurement, printed as JSON for the parent."""
    torch.set_num_threads(threads)
    model, x = build(name, accelerated)
    print(json.dumps(median_seconds(model, x, runs)))


def interleaved_one_thread(name, runs):
    """(torch, convt_blas) medians at 1 thread, taking turns run by run."""
    torch.set_num_threads(1)
    models = [build(name, accelerated) for accelerated in (False, True)]
    times = ([], [])
    with torch.inference_mode():
        for model, x in models:
            model(x)
        for _ in range(runs):
            for side, (model, x) in enumerate(models):
                start = time.perf_counter()
                model(x)
                times[side].append(time.perf_counter() - start)
    return tuple(statistics.median(t) for t in times)


def separate_processes(name, threads, runs, rounds):
    times = ([], [])
    for _ in range(rounds):
        for side in (0, 1):
            command = [sys.executable, os.path.abspath(__file__), "--worker", name,
                       str(side), str(threads), str(runs)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            times[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return tuple(min(t) for t in times)


def largest_relative_difference(name):
    with torch.inference_mode():
        model, x = build(name, False)
        expected = model(x)
        actual = convt_blas.torch.accelerate(model)(x)
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per process")
    parser.add_argument("--rounds", type=int, default=3,
                        help="processes per side at 2 threads")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, side, threads, runs = args.worker
        return worker(name, side == "1", int(threads), int(runs))

    print("| model | threads | torch (ms) | convt_blas (ms) | speed-up | max rel. diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in MODELS:
        difference = largest_relative_difference(name)
        for threads in map(int, args.threads.split(",")):
            if threads == 1:
                plain, fast = interleaved_one_thread(name, args.runs)
            else:
                plain, fast = separate_processes(name, threads, args.runs, args.rounds)
            print(f"| {name} | {threads} | {plain * 1e3:.1f} | {fast * 1e3:.1f} | "
                  f"{plain / fast:.2f}x | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
