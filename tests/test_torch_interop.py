"""convt_blas.torch: the accelerated layer, accelerate()/restore(), the custom op under
torch.compile and torch.export, bfloat16, and whole decoders from PyPI packages
(EnCodec, SNAC, transformers' SpeechT5 HiFi-GAN) built with random weights."""
import importlib
import importlib.util
import os
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="convt_blas.torch needs torch (the torch extra)")
import convt_blas  # noqa: E402
import convt_blas.torch as ct  # noqa: E402
from torch.nn.utils import parametrizations, weight_norm  # noqa: E402

from conftest import make_case  # noqa: E402

# The models' own code: EnCodec uses the deprecated weight_norm, SNAC torch.jit.script.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated"),
              pytest.mark.filterwarnings("ignore:`torch.jit.script")]


def import_model_code(package, module):
    """``package.module``; when the package's __init__ needs what is not installed
    (EnCodec's imports torchaudio for file I/O), the module alone, under an empty
    stand-in for the package."""
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError:
        pass
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} is not installed (encodec: pip install --no-deps encodec einops; "
                    "its requirements pull torchaudio)")
    stand_in = types.ModuleType(package)
    stand_in.__path__ = list(spec.submodule_search_locations)
    saved = sys.modules.get(package)
    sys.modules[package] = stand_in
    try:
        return importlib.import_module(f"{package}.{module}")
    except ImportError as exc:
        pytest.skip(f"{package}.{module} cannot be imported: {exc}")
    finally:
        if saved is not None:
            sys.modules[package] = saved


def encodec_decoder(compiled=False):
    """EnCodec's SEANet decoder (24 kHz layout: 320x upsampling, old-style weight_norm).

    Compiled without its LSTM: torch.compile's fullgraph mode cannot trace nn.LSTM."""
    seanet = import_model_code("encodec", "modules.seanet")
    return seanet.SEANetDecoder(dimension=64, n_filters=16, lstm=0 if compiled else 1), (1, 64, 25)


def snac_decoder(compiled=False):
    """SNAC's decoder (parametrized weight_norm, depthwise convolutions), made small."""
    snac = import_model_code("snac", "snac")
    # noise=False: its noise blocks draw fresh noise on every call.
    model = snac.SNAC(encoder_dim=16, decoder_dim=128, attn_window_size=None, noise=False)
    return model.decoder, (1, model.latent_dim, 20)


def hifigan_decoder(compiled=False):
    """transformers' SpeechT5 HiFi-GAN vocoder (256x upsampling, plain layers)."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(upsample_initial_channel=128)
    return SpeechT5HifiGan(config), (1, 20, config.model_in_dim)


MODELS = {"encodec": encodec_decoder, "snac": snac_decoder, "hifigan": hifigan_decoder}


def build(name, compiled=False):
    torch.manual_seed(0)
    model, input_shape = MODELS[name](compiled)
    model.eval()
    return model, torch.randn(input_shape)


def assert_float32_close(actual, expected):
    """Equal within float32 rounding, relative to the output's scale."""
    scale = expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= 1e-5 * max(scale, 1.0), (error, scale)
    return error


def test_layer_matches_torch_in_every_dtype():
    for dtype in (torch.float32, torch.float64, torch.float16, torch.complex64,
                  torch.complex128):
        torch.manual_seed(0)
        plain = torch.nn.ConvTranspose1d(6, 4, 5, stride=3, padding=1, groups=2, dtype=dtype)
        accelerated = ct.accelerate(torch.nn.Sequential(torch.nn.ConvTranspose1d(
            6, 4, 5, stride=3, padding=1, groups=2, dtype=dtype)))[0]
        accelerated.load_state_dict(plain.state_dict())
        x = torch.randn(2, 6, 40, dtype=dtype)
        with torch.no_grad():
            actual = accelerated(x)
            if dtype == torch.float16:  # computed in float32 and rounded once
                expected = plain.float()(x.float()).half()
                torch.testing.assert_close(actual, expected, rtol=0, atol=0)
                continue
            expected = plain(x)
        assert actual.dtype == dtype
        if True:
            torch.testing.assert_close(actual, expected)


def test_bfloat16_matches_float32_rounded():
    torch.manual_seed(0)
    layer = ct.ConvTranspose1d(16, 8, 8, stride=4, padding=2).bfloat16()
    x = torch.randn(2, 16, 50).bfloat16()
    with torch.no_grad():
        actual = layer(x)
        via_float32 = torch.nn.functional.conv_transpose1d(
            x.float(), layer.weight.float(), layer.bias.float(), 4, 2).bfloat16()
        torch_bf16 = torch.nn.functional.conv_transpose1d(x, layer.weight, layer.bias, 4, 2)
    assert actual.dtype == torch.bfloat16
    torch.testing.assert_close(actual, via_float32, rtol=0, atol=0)
    torch.testing.assert_close(actual.float(), torch_bf16.float(), rtol=1e-2, atol=1e-2)


def test_numpy_bfloat16_arrays_and_torch_bfloat16_tensors():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    x, w, b = make_case(rng, 2, 4, 3, 6, 30, 1)
    bf16 = ml_dtypes.bfloat16
    expected = convt_blas.conv_transpose1d(x.astype(bf16).astype(np.float32),
                                           w.astype(bf16).astype(np.float32),
                                           b.astype(bf16).astype(np.float32), stride=3)
    expected = expected.astype(bf16).astype(np.float32)
    y = convt_blas.conv_transpose1d(x.astype(bf16), w.astype(bf16), b.astype(bf16), stride=3)
    assert y.dtype == bf16
    np.testing.assert_array_equal(y.astype(np.float32), expected)
    from_tensors = convt_blas.conv_transpose1d(*(torch.from_numpy(a).bfloat16() for a in (x, w, b)),
                                               stride=3)
    np.testing.assert_array_equal(from_tensors.astype(np.float32), expected)
    torch_bf16 = torch.nn.functional.conv_transpose1d(
        *(torch.from_numpy(a).bfloat16() for a in (x, w, b)), stride=3)
    np.testing.assert_allclose(y.astype(np.float32), torch_bf16.float().numpy(), rtol=1e-2,
                               atol=1e-2)
    layer = convt_blas.ConvTranspose1d(4, 3, 6, stride=3, dtype=bf16)
    assert layer(x.astype(bf16)).dtype == bf16
    stream = convt_blas.ConvTranspose1dStream(w.astype(bf16), b.astype(bf16), stride=3)
    chunks = [stream.push(x[..., :11].astype(bf16)), stream.push(x[..., 11:].astype(bf16)),
              stream.flush()]
    np.testing.assert_array_equal(np.concatenate(chunks, -1).astype(np.float32), expected)


def test_output_size_and_unbatched_input_as_torch():
    torch.manual_seed(0)
    plain = torch.nn.ConvTranspose1d(3, 2, 4, stride=3)
    accelerated = ct.ConvTranspose1d(3, 2, 4, stride=3)
    accelerated.load_state_dict(plain.state_dict())
    x = torch.randn(3, 10)
    with torch.no_grad():
        for size in (None, [31], [33]):
            torch.testing.assert_close(accelerated(x, output_size=size), plain(x, output_size=size))
        with pytest.raises(ValueError, match="valid sizes"):
            accelerated(x, output_size=[40])


def test_autograd_on_convt_blas_and_fallbacks():
    layer = ct.ConvTranspose1d(3, 2, 4, stride=2)
    x = torch.randn(1, 3, 8, requires_grad=True)
    calls = []
    original = ct._conv_transpose1d_op
    ct._conv_transpose1d_op = lambda *args: calls.append(args) or original(*args)
    try:
        layer(x).sum().backward()  # autograd records it: convt_blas and its backward
        assert x.grad is not None and len(calls) == 1
        with torch.no_grad():
            layer(x)
        assert len(calls) == 2
        with pytest.raises(RuntimeError):  # mixed dtypes: torch's op and its message
            layer(x.double())
        assert len(calls) == 2
    finally:
        ct._conv_transpose1d_op = original
    with pytest.raises(ValueError, match="zeros"):
        ct.ConvTranspose1d(3, 2, 4, padding_mode="circular")(x)


def test_threads_follow_torch_unless_set():
    seen = []
    original = convt_blas._threads.plan_threads

    def spy(n_units, flops):
        seen.append(convt_blas.get_num_threads())
        return original(n_units, flops)

    layer = ct.ConvTranspose1d(64, 64, 8, stride=4)
    x = torch.randn(4, 64, 400)
    previous = torch.get_num_threads()
    convt_blas._threads.plan_threads = spy
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            layer(x)
            convt_blas.set_num_threads(2)
            layer(x)
    finally:
        convt_blas._threads.plan_threads = original
        convt_blas.set_num_threads(None)
        torch.set_num_threads(previous)
    expected_explicit = 2 if convt_blas.openmp_enabled() else 1
    assert seen == [1, expected_explicit]


def test_accelerate_and_restore_keep_state_dicts():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ConvTranspose1d(4, 4, 3),
                                weight_norm(torch.nn.ConvTranspose1d(4, 4, 3)),
                                parametrizations.weight_norm(torch.nn.ConvTranspose1d(4, 4, 3)),
                                torch.nn.Conv1d(4, 4, 1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 4, 9)
    with torch.no_grad():
        expected = model(x)
        assert ct.accelerate(model) is model
        assert ct.accelerated_layers(model) == ["0", "1", "2"]
        assert model.state_dict().keys() == state.keys()
        model.load_state_dict(state)
        assert_float32_close(model(x), expected)
        ct.restore(model)
    assert ct.accelerated_layers(model) == []
    assert type(model[0]) is torch.nn.ConvTranspose1d
    assert type(model[2]).__bases__ == (torch.nn.ConvTranspose1d,)
    model.load_state_dict(state)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_decoder_eager(name):
    model, x = build(name)
    with torch.inference_mode():
        expected = model(x)
        ct.accelerate(model)
        assert ct.accelerated_layers(model)
        actual = model(x)
    assert_float32_close(actual, expected)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_decoder_compiled_keeps_the_op(name):
    model, x = build(name, compiled=True)
    with torch.no_grad():
        expected = model(x)
        ct.accelerate(model)
        counts = []

        def backend(graph_module, example_inputs):
            counts.append(sum(node.target is torch.ops.convt_blas.conv_transpose1d.default
                              for node in graph_module.graph.nodes))
            return graph_module.forward

        torch._dynamo.reset()
        actual = torch.compile(model, backend=backend, fullgraph=True)(x)
        assert counts and counts[0] == len(ct.accelerated_layers(model))
        assert_float32_close(actual, expected)


def test_decoder_compiled_by_inductor():
    """Inductor's code around the op (one model: a compile takes tens of seconds)."""
    model, x = build("hifigan", compiled=True)
    with torch.no_grad():
        expected = model(x)
        torch._dynamo.reset()
        compiled = torch.compile(ct.accelerate(model), fullgraph=True)
        assert_float32_close(compiled(x), expected)


def test_export_keeps_the_op():
    torch.manual_seed(0)
    model = ct.accelerate(torch.nn.Sequential(
        parametrizations.weight_norm(torch.nn.ConvTranspose1d(8, 4, 8, stride=4, padding=2)),
        torch.nn.Tanh())).requires_grad_(False)
    x = torch.randn(2, 8, 30)
    exported = torch.export.export(model, (x,))
    targets = [node.target for node in exported.graph.nodes]
    assert torch.ops.convt_blas.conv_transpose1d.default in targets
    torch.testing.assert_close(exported.module()(x), model(x))


HEAP_PROBE = """
import ctypes, sys
import torch
import convt_blas.torch as ct


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.mallinfo2.restype = MallInfo2


def mapped_apart(nbytes):
    # Whether glibc serves nbytes by a mapping of its own. Never freed: freeing a
    # mapping would itself raise the threshold.
    before = libc.mallinfo2().hblkhd
    libc.malloc(nbytes)
    return libc.mallinfo2().hblkhd - before >= nbytes


before = mapped_apart(8 << 20)
if sys.argv[1] == "call":
    layer = ct.ConvTranspose1d(4, 2, 4, stride=2)
    with torch.inference_mode():
        layer(torch.randn(1, 4, 8))
print(before, mapped_apart(8 << 20))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc on Linux")
@pytest.mark.parametrize("action", ["call", "import"])
def test_a_call_leaves_glibc_reusing_its_heap_as_torchs_own_op_does(action):
    # torch's op frees large buffers every call, which raises glibc's mmap
    # threshold; without the same, the rest of an accelerated model maps and
    # faults in its tensors afresh on every call (25% slower at 2 threads).
    import platform
    import subprocess

    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(int(v) for v in version.split(".")[:2]) < (2, 33):
        pytest.skip("glibc's dynamic mmap threshold (mallinfo2: glibc 2.33 or later)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", HEAP_PROBE, action], capture_output=True,
                          text=True, check=True, env=env)
    before, after = done.stdout.split()
    assert before == "True"  # a fresh process maps 8 MiB apart
    assert after == ("False" if action == "call" else "True")  # importing changes nothing


# -- the weight cache kept for a Parameter ------------------------------------------------

def kept_forms(weight):
    """The WeightCache kept for ``weight`` (None: nothing kept)."""
    entry = ct._parameter_caches._entries.get(id(weight))
    return entry[3] if entry is not None and entry[0]() is weight else None


def test_inference_keeps_the_parameters_weight_cache_and_follows_its_changes():
    # The iSTFT layer runs F(3,4) on a prepared weight: with it kept, the accelerated
    # layer gives the NumPy layer's bits; every way of changing the weight is seen.
    torch.manual_seed(0)
    layer = ct.ConvTranspose1d(512, 1, 1024, stride=256)
    x = torch.randn(1, 512, 300)

    def numpy_layer():
        twin = convt_blas.ConvTranspose1d(512, 1, 1024, stride=256)
        twin.load_state_dict({"weight": layer.weight.detach().numpy().copy(),
                              "bias": layer.bias.detach().numpy().copy()})
        return twin(x.numpy())

    with torch.no_grad():
        y = layer(x)
        assert kept_forms(layer.weight).prepared is not None
        assert np.array_equal(layer(x).numpy(), numpy_layer())
        assert torch.equal(layer(x), y)
        layer.weight.mul_(2)  # in place: the version counter moves
        assert np.array_equal(layer(x).numpy(), numpy_layer())
        layer.weight.data = torch.randn(512, 1, 1024)  # other memory
        assert np.array_equal(layer(x).numpy(), numpy_layer())
        layer.load_state_dict({"weight": torch.randn(512, 1, 1024), "bias": layer.bias})
        assert np.array_equal(layer(x).numpy(), numpy_layer())
    weight = layer.weight
    ct.restore(layer)
    assert kept_forms(weight) is None


def test_training_and_weight_normed_calls_keep_nothing():
    layer = ct.ConvTranspose1d(64, 32, 4, stride=2)
    x = torch.randn(1, 64, 600)
    layer(x).sum().backward()  # autograd recorded: the weight changes every step
    assert kept_forms(layer.weight) is None
    normed = ct.accelerate(parametrizations.weight_norm(torch.nn.ConvTranspose1d(64, 32, 4, 2)))
    with torch.no_grad():
        normed(x)
    assert not any(kept_forms(p) for p in normed.parameters())


def test_a_kept_cache_goes_with_its_parameter():
    import gc
    layer = ct.ConvTranspose1d(64, 32, 4, stride=2)
    x = torch.randn(1, 64, 600)
    with torch.no_grad():
        layer(x)
        assert kept_forms(layer.weight) is not None
        layer.keep_weight_cache = False  # drops it, and keeps nothing more
        assert kept_forms(layer.weight) is None
        layer(x)
        assert kept_forms(layer.weight) is None
        layer.keep_weight_cache = True
        layer(x)
    ident = id(layer.weight)
    assert ident in ct._parameter_caches._entries
    del layer
    gc.collect()
    assert ident not in ct._parameter_caches._entries
