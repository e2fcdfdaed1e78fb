"""HiFi-GAN's upsampling stack on convt_blas, checked against torch end to end.

The four ``ConvTranspose1d`` layers of HiFi-GAN V1's generator (512 -> 256 -> 128 -> 64 -> 32
channels, x8 x8 x2 x2 = x256 upsampling), each preceded by a leaky ReLU of slope 0.1 as in the
generator's forward pass. The layers are weight-normalised, so their state dict holds
``weight_g``/``weight_v`` as HiFi-GAN checkpoints do; convt_blas folds them into plain weights.

    python examples/hifigan_stack.py                  # torch-built stack, HiFi-GAN's init
    python examples/hifigan_stack.py generator.pt     # the 'ups.*' layers of a V1 checkpoint

torch builds the reference (and reads a checkpoint); the convt_blas stack itself runs on NumPy.
"""
import argparse
import sys
import time
import warnings

import numpy as np

from convt_blas import ConvTranspose1d

LRELU_SLOPE = 0.1
# HiFi-GAN V1: upsample_rates (8, 8, 2, 2), upsample_kernel_sizes (16, 16, 4, 4),
# upsample_initial_channel 512; layer i maps 512 / 2**i channels to half as many.
UPSAMPLE_RATES = (8, 8, 2, 2)
UPSAMPLE_KERNELS = (16, 16, 4, 4)
INITIAL_CHANNELS = 512


def torch_stack(seed=0):
    """The reference stack in torch: weight-normalised layers with HiFi-GAN's N(0, 0.01) init."""
    import torch

    torch.manual_seed(seed)
    layers = torch.nn.ModuleList()
    with warnings.catch_warnings():  # the classic weight_norm is deprecated, checkpoints use it
        warnings.simplefilter("ignore", FutureWarning)
        for i, (rate, kernel) in enumerate(zip(UPSAMPLE_RATES, UPSAMPLE_KERNELS)):
            layer = torch.nn.ConvTranspose1d(INITIAL_CHANNELS >> i, INITIAL_CHANNELS >> (i + 1),
                                             kernel, rate, padding=(kernel - rate) // 2)
            torch.nn.init.normal_(layer.weight, 0.0, 0.01)
            layers.append(torch.nn.utils.weight_norm(layer))
    return layers


def stack_from_state_dict(state_dict, prefix="ups.", dtype=np.float32):
    """convt_blas layers from a generator state dict's ``{prefix}{i}.*`` entries.

    Channels and kernel sizes come from the stored weights; strides are HiFi-GAN V1's and
    padding is HiFi-GAN's ``(kernel - stride) // 2``.
    """
    layers = []
    for i, rate in enumerate(UPSAMPLE_RATES):
        head = f"{prefix}{i}."
        entries = {key[len(head):]: value for key, value in state_dict.items()
                   if key.startswith(head)}
        shape = tuple((entries.get("weight_v") if "weight_v" in entries
                       else entries["weight"]).shape)
        in_channels, out_channels, kernel = shape
        layer = ConvTranspose1d(in_channels, out_channels, kernel, rate, (kernel - rate) // 2,
                                dtype=dtype)
        layer.load_state_dict(entries)  # folds weight_g / weight_v
        layers.append(layer)
    return layers


def leaky_relu(x, slope=LRELU_SLOPE):
    """max(x, slope * x): the leaky ReLU for 0 < slope < 1."""
    return np.maximum(x, slope * x)


def run_stack(layers, x):
    """HiFi-GAN's order: leaky ReLU, then the upsampling layer, for each layer."""
    for layer in layers:
        x = layer(leaky_relu(x))
    return x


def run_torch_stack(layers, x):
    import torch

    with torch.no_grad():
        for layer in layers:
            x = layer(torch.nn.functional.leaky_relu(x, LRELU_SLOPE))
    return x


def compare(frames=100, batch=1, seed=0, checkpoint=None, repeats=3):
    """Run both stacks on the same mel-rate input; return (relative error, timings in s)."""
    import torch

    reference = torch_stack(seed)
    if checkpoint is not None:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        saved = saved.get("generator", saved)
        ups = {key[len("ups."):]: value for key, value in saved.items() if key.startswith("ups.")}
        if "0.weight" in ups:  # saved after remove_weight_norm: plain weights
            for layer in reference:
                torch.nn.utils.remove_weight_norm(layer)
        reference.load_state_dict(ups)
        state = saved
    else:
        state = {f"ups.{key}": value for key, value in reference.state_dict().items()}
    layers = stack_from_state_dict(state)

    x = torch.randn(batch, INITIAL_CHANNELS, frames, generator=torch.Generator().manual_seed(seed))
    timings = {}
    for name, run, stack in (("convt_blas", run_stack, layers),
                             ("torch", run_torch_stack, reference)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            y = run(stack, x.numpy() if name == "convt_blas" else x)
            best = min(best, time.perf_counter() - start)
        timings[name] = (best, y)
    ours, expected = timings["convt_blas"][1], timings["torch"][1].numpy()
    assert ours.shape == expected.shape == (batch, INITIAL_CHANNELS >> 4, frames * 256)
    error = float(np.max(np.abs(ours - expected)) / np.max(np.abs(expected)))
    return error, {name: t for name, (t, _) in timings.items()}, layers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="HiFi-GAN generator checkpoint (optional)")
    parser.add_argument("--frames", type=int, default=100, help="input length in mel frames")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)

    error, timings, layers = compare(args.frames, args.batch, checkpoint=args.checkpoint)
    for layer in layers:
        print(layer)
    print(f"input ({args.batch}, {INITIAL_CHANNELS}, {args.frames}) -> output "
          f"({args.batch}, {INITIAL_CHANNELS >> 4}, {args.frames * 256})")
    print(f"max |convt_blas - torch| / max |torch| = {error:.2e}")
    for name, seconds in timings.items():
        print(f"{name:>10}: {seconds * 1e3:.1f} ms (best of 3)")
    tolerance = 1e-5
    print("matches torch" if error <= tolerance else f"MISMATCH (tolerance {tolerance:.0e})")
    return 0 if error <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
