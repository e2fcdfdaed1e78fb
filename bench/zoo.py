"""Transposed-convolution layers of published models, and a seeded random set, for bench_peers.py.

Shapes come from each model's published code and default configuration (the
repository and file are named beside each family). Lengths are input frames of
a few seconds of audio (or a typical sequence), cut where a layer's work would
make the whole run long.
"""
import math
from typing import NamedTuple

import numpy as np

from convt_blas import output_length


class ZooLayer(NamedTuple):
    family: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    groups: int = 1
    dilation: int = 1
    length: int = 1
    batch: int = 1
    dtype: str = "float32"

    @property
    def flops(self):
        """2 * N * L_in * C_in * (C_out / groups) * K: the GEMM's multiply-adds, twice."""
        return (2 * self.batch * self.length * self.in_channels
                * (self.out_channels // self.groups) * self.kernel_size)

    @property
    def out_length(self):
        return output_length(self.length, self.kernel_size, self.stride, self.padding,
                             self.output_padding, self.dilation)

    @property
    def shape(self):
        """The kernels' call shape, as convt_blas.kernels._plan_info takes it."""
        return (self.batch, self.in_channels, self.length, self.out_channels, self.kernel_size,
                self.stride, self.padding, self.output_padding, self.dilation, self.groups)

    @property
    def label(self):
        extra = f",op{self.output_padding}" if self.output_padding else ""
        extra += f",g{self.groups}" if self.groups > 1 else ""
        extra += f",d{self.dilation}" if self.dilation > 1 else ""
        extra += ",f64" if self.dtype == "float64" else ""
        return (f"{self.family} {self.in_channels}->{self.out_channels} k{self.kernel_size} "
                f"s{self.stride} p{self.padding}{extra} L={self.length} N={self.batch}")


def _upsamplers(family, channels, rates, kernels, lengths, padding, output_padding=None,
                batch=1, dtype="float32"):
    """A decoder's chain of upsampling layers: channels halve at each, as in these models."""
    layers = []
    for i, (rate, k, length) in enumerate(zip(rates, kernels, lengths)):
        op = 0 if output_padding is None else output_padding(rate)
        layers.append(ZooLayer(family, channels // 2 ** i, channels // 2 ** (i + 1), k, rate,
                               padding(k, rate), op, length=length, batch=batch, dtype=dtype))
    return layers


def _hifigan_padding(k, u):
    return (k - u) // 2


def _half_up(k, s):
    return math.ceil(s / 2)


def zoo():
    """The published layers: vocoders, codecs, separation, iSTFT, U-Nets, time series,
    float64, batches 1-64 and streaming chunks."""
    layers = []
    # HiFi-GAN V1/V2/V3: jik876/hifi-gan models.py (ConvTranspose1d(h.upsample_initial_channel
    # // 2**i, ..., k, u, padding=(k-u)//2)) with config_v1.json, config_v2.json, config_v3.json;
    # 100 mel frames (1.16 s at 22.05 kHz).
    layers += _upsamplers("HiFi-GAN V1", 512, [8, 8, 2, 2], [16, 16, 4, 4],
                          [100, 800, 6400, 12800], _hifigan_padding)
    layers += _upsamplers("HiFi-GAN V2", 128, [8, 8, 2, 2], [16, 16, 4, 4],
                          [100, 800, 6400, 12800], _hifigan_padding)
    layers += _upsamplers("HiFi-GAN V3", 256, [8, 8, 4], [16, 16, 8], [100, 800, 6400],
                          _hifigan_padding)
    # MelGAN: descriptinc/melgan-neurips mel2wav/modules.py, Generator(ngf=32, ratios
    # [8, 8, 2, 2]): ConvTranspose1d(mult*ngf, mult*ngf//2, r*2, r, r//2 + r%2, r%2).
    layers += _upsamplers("MelGAN", 512, [8, 8], [16, 16], [100, 800],
                          lambda k, r: r // 2 + r % 2, lambda r: r % 2)
    # Multi-band MelGAN: kan-bayashi/ParallelWaveGAN parallel_wavegan/models/melgan.py with
    # egs/ljspeech/voc1/conf/multi_band_melgan.v2.yaml (channels 384, upsample_scales [8, 4, 2],
    # 4 sub-bands).
    layers += _upsamplers("MB-MelGAN", 384, [8, 4, 2], [16, 8, 4], [200, 1600, 6400],
                          lambda k, r: r // 2 + r % 2, lambda r: r % 2)
    # BigVGAN v2 24 kHz 100-band 256x: NVIDIA/BigVGAN bigvgan.py with
    # configs/bigvgan_v2_24khz_100band_256x.json (initial 1536, rates [4,4,2,2,2,2]).
    layers += _upsamplers("BigVGAN v2", 1536, [4, 4, 2, 2, 2, 2], [8, 8, 4, 4, 4, 4],
                          [94, 376, 1504, 3008, 6016, 12032], _hifigan_padding)[:4]
    # EnCodec: facebookresearch/encodec encodec/modules/seanet.py, SEANetDecoder(n_filters 32,
    # ratios [8, 5, 4, 2]); the transposed convs have no padding (trimmed after). 24 kHz model:
    # 75 frames/s, mono; 48 kHz model (encodec/model.py): 150 frames/s.
    layers += _upsamplers("EnCodec 24k", 512, [8, 5, 4, 2], [16, 10, 8, 4],
                          [75, 600, 3000, 12000], lambda k, r: 0)
    layers += _upsamplers("EnCodec 48k", 512, [8, 5, 4, 2], [16, 10, 8, 4],
                          [150, 1200, 6000, 24000], lambda k, r: 0)[:3]
    # DAC 44 kHz: descriptinc/descript-audio-codec dac/model/dac.py, DecoderBlock:
    # WNConvTranspose1d(d, d//2, 2*stride, stride, padding=ceil(stride/2)); decoder_dim 1536,
    # rates [8, 8, 4, 2], 86 frames/s.
    layers += _upsamplers("DAC 44k", 1536, [8, 8, 4, 2], [16, 16, 8, 4],
                          [86, 688, 5504, 22016], _half_up)
    # SNAC 24 kHz: hubertsiuzdak/snac snac/layers.py, DecoderBlock (as DAC's, output_padding
    # stride % 2), decoder_dim 1024, rates [8, 8, 4, 2], 47 frames/s.
    layers += _upsamplers("SNAC 24k", 1024, [8, 8, 4, 2], [16, 16, 8, 4], [47, 376, 3008],
                          _half_up, lambda r: r % 2)
    # Mimi: kyutai-labs/moshi moshi/models/loaders.py seanet_kwargs (n_filters 64, ratios
    # [8, 6, 5, 4]) and moshi/modules/resample.py ConvTrUpsample1d (depthwise, k 4, s 2 on
    # 512 channels): 12.5 frames/s upsampled to 25 for the decoder.
    layers.append(ZooLayer("Mimi upsample", 512, 512, 4, 2, 0, groups=512, length=25))
    layers += _upsamplers("Mimi", 1024, [8, 6], [16, 12], [50, 400], lambda k, r: 0)
    # Demucs v2/v3: facebookresearch/demucs demucs/demucs.py, decoder
    # ConvTranspose1d(channels, out, kernel_size 8, stride 4), channels 64 * 2**depth.
    layers += [ZooLayer("Demucs v3", 2048, 1024, 8, 4, length=250),
               ZooLayer("Demucs v3", 1024, 512, 8, 4, length=1000),
               ZooLayer("Demucs v3", 256, 128, 8, 4, length=16000)]
    # HTDemucs (v4) time branch: demucs/htdemucs.py HDecLayer(freq=False), channels 48..384,
    # kernel 8, stride 4; last layer to 4 sources x 2 channels.
    layers += [ZooLayer("HTDemucs time", 384, 192, 8, 4, length=1344),
               ZooLayer("HTDemucs time", 48, 8, 8, 4, length=21499)]
    # Conv-TasNet decoder: JusperLee/Conv-TasNet Conv_TasNet.py,
    # ConvTranspose1d(N=512, 1, L=16, stride=L//2), 4 s at 8 kHz, 2 sources as batch.
    layers.append(ZooLayer("Conv-TasNet dec", 512, 1, 16, 8, length=3999, batch=2))
    # iSTFTNet: rishikksh20/iSTFTNet-pytorch models.py with config_v1.json (rates [8, 8]);
    # Kokoro: hexgrad/kokoro kokoro/istftnet.py, Generator rates [10, 6] kernels [20, 12],
    # and AdainResBlk1d's depthwise upsampler ConvTranspose1d(dim, dim, 3, 2, groups=dim,
    # padding=1, output_padding=1) on 1090 channels.
    layers += _upsamplers("iSTFTNet", 512, [8, 8], [16, 16], [100, 800], _hifigan_padding)
    layers += _upsamplers("Kokoro", 512, [10, 6], [20, 12], [240, 2400], _hifigan_padding)
    layers += [ZooLayer("Kokoro pool dw", 1090, 1090, 3, 2, 1, 1, groups=1090, length=120),
               ZooLayer("StyleTTS2 F0 dw", 512, 512, 3, 2, 1, 1, groups=512, length=120)]
    # iSTFT as a transposed conv (real and imaginary parts of n_fft/2+1 bins in, frames
    # overlap-added): pseeth/torch-stft torch_stft/stft.py inverse(), K = n_fft,
    # stride = hop; Vocos (gemelo-ai/vocos) n_fft 1024 hop 256; iSTFTNet's n_fft 16 hop 4;
    # Kokoro's n_fft 20 hop 5; stereo as two groups.
    layers += [ZooLayer("iSTFT 1024/256", 1026, 1, 1024, 256, length=224),
               ZooLayer("iSTFT 1024/256 stereo", 2052, 2, 1024, 256, groups=2, length=224),
               ZooLayer("iSTFT 16/4", 18, 1, 16, 4, length=6400),
               ZooLayer("iSTFT 20/5", 22, 1, 20, 5, length=14400)]
    # 1-D U-Nets, up path ConvTranspose1d(c, c//2, kernel_size=2, stride=2) (the U-Net of
    # milesial/Pytorch-UNet unet_parts.py Up, in 1-D as in ECG/EEG segmenters).
    layers += [ZooLayer("U-Net 1d", 512, 256, 2, 2, length=256, batch=8),
               ZooLayer("U-Net 1d", 256, 128, 2, 2, length=512, batch=8),
               ZooLayer("U-Net 1d", 128, 64, 2, 2, length=1024, batch=8)]
    # Time-series conv autoencoder decoders: ConvTranspose1d(c, c', 3, stride, padding=1)
    # (K=3, s=1 or 2, padding 1, output_padding s-1), batches of windows.
    layers += [ZooLayer("TS decoder", 64, 32, 3, 2, 1, 1, length=64, batch=64),
               ZooLayer("TS decoder", 32, 16, 3, 2, 1, 1, length=128, batch=64),
               ZooLayer("TS decoder", 16, 1, 3, 1, 1, length=256, batch=64),
               ZooLayer("TS decoder", 128, 64, 3, 1, 1, length=96, batch=32)]
    # Float64: scientific uses of the same shapes.
    layers += [ZooLayer("HiFi-GAN V1", 128, 64, 4, 2, 1, length=6400, dtype="float64"),
               ZooLayer("TS decoder", 64, 32, 3, 2, 1, 1, length=64, batch=64, dtype="float64"),
               ZooLayer("iSTFT 16/4", 18, 1, 16, 4, length=6400, dtype="float64")]
    # Batches: HiFi-GAN V1 served 16 utterances at once.
    layers += [ZooLayer("HiFi-GAN V1", 512, 256, 16, 8, 4, length=100, batch=16),
               ZooLayer("HiFi-GAN V1", 128, 64, 4, 2, 1, length=800, batch=16)]
    # Streaming: chunks of 1-16 frames through a decoder's first layer.
    layers += [ZooLayer("stream HiFi-GAN V1", 512, 256, 16, 8, 4, length=1),
               ZooLayer("stream HiFi-GAN V1", 512, 256, 16, 8, 4, length=4),
               ZooLayer("stream HiFi-GAN V1", 512, 256, 16, 8, 4, length=16),
               ZooLayer("stream EnCodec 24k", 512, 256, 16, 8, length=2),
               ZooLayer("stream DAC 44k", 1536, 768, 16, 8, 4, length=8),
               ZooLayer("stream Mimi", 1024, 512, 16, 8, length=2)]
    return layers


# Work bounds of a random layer: its multiply-adds and its output, so that the set's
# timing stays within minutes.
RANDOM_MAX_FLOPS = 4e8
RANDOM_MAX_OUTPUT = 4_000_000


def _log_uniform_int(rng, low, high):
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


def random_layer(rng):
    """One layer drawn from a distribution shaped like real decoders' parameters."""
    kind = rng.choice(["upsample", "same", "free"], p=[0.5, 0.2, 0.3])
    stride = _log_uniform_int(rng, 1, 16)
    if kind == "upsample":  # K = stride or 2*stride, padding about (K - stride)/2
        kernel = stride * int(rng.choice([1, 2]))
        padding = (kernel - stride) // 2 if rng.random() < 0.7 else 0
    elif kind == "same":  # small odd kernel, stride 1 or 2
        stride = int(rng.choice([1, 2]))
        kernel = int(rng.choice([1, 3, 5, 7]))
        padding = kernel // 2
    else:
        kernel = _log_uniform_int(rng, 1, 1024)
        padding = int(rng.integers(0, kernel // 2 + 1))
    dilation = 1 if rng.random() < 0.85 or kernel == 1 else int(rng.choice([2, 3, 4, 8]))
    c_in = _log_uniform_int(rng, 1, 2048)
    c_out = _log_uniform_int(rng, 1, 2048)
    roll = rng.random()
    if roll < 0.12:  # depthwise
        c_out, groups = c_in, c_in
    elif roll < 0.22:  # a few groups: channels made divisible
        groups = int(rng.choice([2, 4, 8]))
        c_in, c_out = max(1, c_in // groups) * groups, max(1, c_out // groups) * groups
    else:
        groups = 1
    output_padding = int(rng.integers(0, max(stride, dilation))) if rng.random() < 0.2 else 0
    batch = int(rng.choice([1, 1, 1, 2, 4, 8, 16, 32, 64]))
    length = _log_uniform_int(rng, 1, 8192)
    dtype = "float64" if rng.random() < 0.1 else "float32"
    layer = ZooLayer("random", c_in, c_out, kernel, stride, padding, output_padding, groups,
                     dilation, length, batch, dtype)
    # Too much work: shorter inputs first, then smaller batches, then fewer channels.
    while layer.out_length <= 0 or (
            layer.flops > RANDOM_MAX_FLOPS
            or layer.batch * layer.out_channels * layer.out_length > RANDOM_MAX_OUTPUT):
        if layer.out_length <= 0:
            layer = layer._replace(padding=layer.padding // 2, length=layer.length + 1)
        elif layer.length > 16:
            layer = layer._replace(length=layer.length // 2)
        elif layer.batch > 1:
            layer = layer._replace(batch=layer.batch // 2)
        elif layer.in_channels > layer.groups and layer.in_channels // 2 % layer.groups == 0:
            layer = layer._replace(in_channels=layer.in_channels // 2)
        elif layer.groups > 1 and layer.groups % 2 == 0:
            layer = layer._replace(in_channels=layer.in_channels // 2,
                                   out_channels=layer.out_channels // 2,
                                   groups=layer.groups // 2)
        else:
            layer = layer._replace(out_channels=max(layer.groups,
                                                    layer.out_channels // 2 // layer.groups
                                                    * layer.groups))
    return layer


def random_set(seed, count=40):
    """``count`` layers drawn with ``seed``: the same seed gives the same layers."""
    rng = np.random.default_rng(seed)
    return [random_layer(rng) for _ in range(count)]


def quick(layers):
    """A short list for --quick: every third layer of the zoo."""
    return layers[::3]
