"""Transposed-convolution layers of published models, for the demo and the benchmark.

Each layer: (model, C_in, C_out, K, stride, padding, output_padding, groups, L_in, batch).
"""
from typing import NamedTuple

from ._validation import output_length


class Layer(NamedTuple):
    model: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    output_padding: int = 0
    groups: int = 1
    length: int = 1
    batch: int = 1

    @property
    def flops(self):
        """2 * N * L_in * C_in * (C_out / groups) * K: the GEMM's multiply-adds, twice."""
        return (2 * self.batch * self.length * self.in_channels
                * (self.out_channels // self.groups) * self.kernel_size)

    @property
    def label(self):
        extra = f",op{self.output_padding}" if self.output_padding else ""
        extra += f",g{self.groups}" if self.groups > 1 else ""
        return (f"{self.model} {self.in_channels}->{self.out_channels} k{self.kernel_size} "
                f"s{self.stride} p{self.padding}{extra} L={self.length} N={self.batch}")


def chain(model, specs, frames, batch=1):
    """Layers fed one into the next, starting from ``frames`` input frames."""
    layers, length = [], frames
    for c_in, c_out, k, s, p in specs:
        layers.append(Layer(model, c_in, c_out, k, s, p, length=length, batch=batch))
        length = output_length(length, k, s, p)
    return layers


HIFIGAN_V1 = [(512, 256, 16, 8, 4), (256, 128, 16, 8, 4), (128, 64, 4, 2, 1), (64, 32, 4, 2, 1)]
ENCODEC_24K = [(512, 256, 16, 8, 0), (256, 128, 10, 5, 0), (128, 64, 8, 4, 0), (64, 32, 4, 2, 0)]

# The demo of `python -m convt_blas`: two decoders on real frame counts.
DEMO_LAYERS = chain("HiFi-GAN V1", HIFIGAN_V1, 100) + chain("EnCodec 24k", ENCODEC_24K, 75)


def benchmark_layers():
    """The benchmark's layer set: vocoders, codecs, source separation, edge cases."""
    layers = []
    for batch in (1, 16):
        layers += [Layer("HiFi-GAN V1", *spec, length=length, batch=batch)
                   for spec, length in zip(HIFIGAN_V1, (100, 800, 6400, 12800))]
    layers += [Layer("EnCodec 24k", *spec, length=length)
               for spec, length in zip(ENCODEC_24K, (75, 600, 3000, 12000))]
    layers += [Layer("DAC 44k", *spec, length=length) for spec, length in zip(
        [(1536, 768, 16, 8, 4), (768, 384, 16, 8, 4), (384, 192, 8, 4, 2), (192, 96, 4, 2, 1)],
        (86, 688, 5504, 22016))]
    layers += [Layer("Demucs v3", *spec, length=length) for spec, length in zip(
        [(2048, 1024, 8, 4, 0), (1024, 512, 8, 4, 0), (256, 128, 8, 4, 0)], (250, 1000, 16000))]
    layers.append(Layer("depthwise", 512, 512, 6, 3, 2, output_padding=1, groups=512,
                        length=32, batch=16))
    layers.append(Layer("long signal", 64, 32, 4, 2, 1, length=40000))
    layers.append(Layer("stream chunk", 512, 256, 16, 8, 4, length=8))
    return layers
