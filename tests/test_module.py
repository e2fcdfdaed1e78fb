"""ConvTranspose1d: torch's module semantics, init, state dicts, out= and zero-copy inputs."""
import importlib.util
import pathlib
import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import DlpackOnly, assert_close

import convt_blas
from convt_blas import ConvTranspose1d
from convt_blas.nn import fold_weight_norm
from reference import conv_transpose1d_reference

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch cross-checks need torch")


def torch_dtype(torch, dtype):
    return getattr(torch, np.dtype(dtype).name)


def torch_out(torch_module, x, **kwargs):
    import torch

    with torch.no_grad():
        return torch_module(x, **kwargs).numpy()


# (in, out, K, stride, padding, output_padding, groups, dilation, bias)
CONFIGS = [
    (3, 5, 4, 1, 0, 0, 1, 1, True),
    (4, 6, 3, 2, 1, 1, 2, 1, False),
    (6, 6, 5, 3, 2, 0, 3, 2, True),
    (4, 8, 3, 2, 0, 1, 4, 2, True),
    (2, 3, 1, 4, 0, 3, 1, 1, False),
    (8, 4, 16, 8, 4, 0, 1, 1, True),   # HiFi-GAN-like x8
    (5, 2, 3, 1, 3, 0, 1, 3, True),    # padding beyond the kernel's reach on short inputs
]


def make_pair(torch, config, dtype=np.float64, seed=0):
    c_in, c_out, k, s, p, op, g, d, bias = config
    torch.manual_seed(seed)
    ref = torch.nn.ConvTranspose1d(c_in, c_out, k, s, p, op, g, bias, d,
                                   dtype=torch_dtype(torch, dtype))
    return ConvTranspose1d.from_torch(ref), ref


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_torch_module(torch, config, dtype, rng):
    layer, ref = make_pair(torch, config, dtype)
    assert layer.dtype == dtype and repr(layer).startswith("ConvTranspose1d(")
    for shape in [(2, config[0], 7), (config[0], 6)]:  # batched and unbatched
        x = rng.standard_normal(shape).astype(dtype)
        assert_close(layer(x), torch_out(ref, torch.from_numpy(x)), dtype)


@pytest.mark.parametrize("config", CONFIGS)
def test_output_size_accepted_and_refused_as_torch(torch, config, rng):
    layer, ref = make_pair(torch, config)
    x = rng.standard_normal((2, config[0], 6))
    tx = torch.from_numpy(x)
    base = convt_blas.output_length(6, config[2], config[3], config[4], 0, config[7])
    for size in range(max(base - 2, 1), base + config[3] + 2):
        for request in ([size], (2, config[1], size), torch.Size([size])):
            try:
                expected = torch_out(ref, tx, output_size=request)
            except ValueError as exc:
                with pytest.raises(ValueError, match="valid sizes range") as ours:
                    layer(x, output_size=request)
                assert str(base) in str(ours.value) and str(base) in str(exc)
                continue
            got = layer(x, output_size=request)
            assert got.shape == expected.shape == (2, config[1], size)
            assert_close(got, expected, np.float64)
            assert_close(layer(x, output_size=size), expected, np.float64)  # plain int
    # unbatched input: the full shape has two entries
    expected = torch_out(ref, tx[0], output_size=[config[1], base])
    assert_close(layer(x[0], output_size=[config[1], base]), expected, np.float64)


def test_output_size_wrong_rank_and_type(rng):
    layer = ConvTranspose1d(2, 3, 3, stride=2, rng=0)
    x = rng.standard_normal((1, 2, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="must have 1 or 3 elements"):
        layer(x, output_size=[3, 11])
    with pytest.raises(ValueError, match="must have 1 or 2 elements"):
        layer(x[0], output_size=[1, 3, 11])
    with pytest.raises(TypeError, match="output_size"):
        layer(x, output_size=[11.0])
    with pytest.raises(ValueError, match="from 11 to 12"):
        layer(x, output_size=13)


def test_output_size_overrides_output_padding(rng):
    layer = ConvTranspose1d(2, 3, 3, stride=3, output_padding=2, rng=1)
    x = rng.standard_normal((1, 2, 4)).astype(np.float64)
    layer_64 = ConvTranspose1d(2, 3, 3, stride=3, output_padding=2, dtype=np.float64, rng=1)
    for extra in range(3):
        y = layer_64(x, output_size=12 + extra)
        expected = conv_transpose1d_reference(x, layer_64.weight, layer_64.bias, stride=3,
                                              output_padding=extra)
        assert_close(y, expected, np.float64)
    assert layer(x.astype(np.float32)).shape == (1, 3, 14)


def test_repr_matches_torch(torch):
    for config in CONFIGS:
        layer, ref = make_pair(torch, config, np.float32)
        assert repr(layer) == repr(ref)
    assert "dtype=float64" in repr(ConvTranspose1d(1, 1, 1, dtype=np.float64))


@pytest.mark.parametrize("kwargs, exc, text", [
    (dict(in_channels=3, out_channels=4, groups=2), ValueError, "in_channels must be divisible"),
    (dict(in_channels=4, out_channels=3, groups=2), ValueError, "out_channels must be divisible"),
    (dict(padding_mode="reflect"), ValueError, '"zeros" padding mode'),
    (dict(groups=0), ValueError, "groups must be a positive"),
    (dict(in_channels=0), ValueError, "in_channels must be a positive"),
    (dict(out_channels=0), ValueError, "out_channels must be a positive"),
    (dict(kernel_size=0), ValueError, "kernel_size must be a positive"),
    (dict(stride=0), ValueError, "stride must be positive"),
    (dict(dilation=0), ValueError, "dilation must be positive"),
    (dict(padding=-1), ValueError, "padding must be non-negative"),
    (dict(output_padding=2, stride=2), ValueError, "output_padding must be smaller"),
    (dict(kernel_size=(2, 2)), ValueError, "kernel_size"),
    (dict(in_channels=2.0), TypeError, "in_channels must be an int"),
    (dict(dtype=np.int32), TypeError, "dtype int32 is not supported"),
])
def test_constructor_errors(kwargs, exc, text):
    args = dict(in_channels=4, out_channels=4, kernel_size=3) | kwargs
    with pytest.raises(exc, match=text):
        ConvTranspose1d(**args)


def test_constructor_errors_match_torch(torch):
    for kwargs in [dict(groups=2, in_channels=3), dict(groups=2, out_channels=3),
                   dict(padding_mode="circular")]:
        args = dict(in_channels=4, out_channels=4, kernel_size=3) | kwargs
        with pytest.raises(ValueError) as theirs:
            torch.nn.ConvTranspose1d(**args)
        with pytest.raises(ValueError) as ours:
            ConvTranspose1d(**args)
        assert str(theirs.value).split(" for ")[0].rstrip(".") in str(ours.value)


def test_large_padding_is_valid_for_long_inputs():
    layer = ConvTranspose1d(1, 1, 3, padding=10, rng=0)
    assert layer(np.ones((1, 1, 30), np.float32)).shape == (1, 1, 12)
    with pytest.raises(ValueError, match="output length must be positive"):
        layer(np.ones((1, 1, 5), np.float32))


# -- initialisation ---------------------------------------------------------------------

def test_init_is_reproducible_and_seed_dependent():
    a, b, c = (ConvTranspose1d(8, 6, 5, groups=2, rng=seed) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, c.weight)
    generator = np.random.default_rng(3)
    d = ConvTranspose1d(8, 6, 5, groups=2, rng=generator)
    d.reset_parameters(np.random.default_rng(3))
    np.testing.assert_array_equal(d.weight, ConvTranspose1d(8, 6, 5, groups=2, rng=3).weight)


def uniform_stats(values):
    return float(values.min()), float(values.max()), float(values.mean()), float(values.var())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
def test_init_distribution_is_uniform_with_torch_bound(dtype):
    # weight (64, 40, 5): fan_in = (out_channels / groups) * K = 40 * 5, as torch computes it
    layer = ConvTranspose1d(64, 80, 5, groups=2, dtype=dtype, rng=11)
    bound = 1 / np.sqrt(40 * 5)
    assert layer.weight.shape == (64, 40, 5) and layer.weight.dtype == dtype
    bias_draws = np.concatenate([ConvTranspose1d(64, 80, 5, groups=2, dtype=dtype, rng=s).bias
                                 for s in range(60)])
    parts = [np.real, np.imag] if np.dtype(dtype).kind == "c" else [np.real]
    for values in (layer.weight, bias_draws):
        for part in parts:
            lo, hi, mean, var = uniform_stats(part(values).astype(np.float64))
            n = values.size
            assert -bound <= lo < -0.99 * bound and 0.99 * bound < hi <= bound
            assert abs(mean) < 5 * bound / np.sqrt(3 * n)
            assert abs(var / (bound ** 2 / 3) - 1) < 5 * np.sqrt(0.8 / n)


def test_init_distribution_matches_torch(torch):
    torch.manual_seed(0)
    theirs = [torch.nn.ConvTranspose1d(48, 60, 7, groups=3) for _ in range(20)]
    ours = [ConvTranspose1d(48, 60, 7, groups=3, rng=s) for s in range(20)]
    for name in ("weight", "bias"):
        t = np.concatenate([getattr(m, name).detach().numpy().ravel() for m in theirs])
        o = np.concatenate([getattr(m, name).ravel() for m in ours])
        t_lo, t_hi, t_mean, t_var = uniform_stats(t.astype(np.float64))
        o_lo, o_hi, o_mean, o_var = uniform_stats(o.astype(np.float64))
        bound = max(t_hi, -t_lo)
        assert abs(o_hi - t_hi) < 0.02 * bound and abs(o_lo - t_lo) < 0.02 * bound
        assert abs(o_mean - t_mean) < 10 * bound / np.sqrt(3 * t.size)
        assert abs(o_var / t_var - 1) < 10 * np.sqrt(0.8 / t.size)


# -- state dicts ------------------------------------------------------------------------

def weight_normed(torch, config, api, dim, seed=0):
    torch.manual_seed(seed)
    c_in, c_out, k, s, p, op, g, d, bias = config
    module = torch.nn.ConvTranspose1d(c_in, c_out, k, s, p, op, g, bias, d, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if api == "classic":
            module = torch.nn.utils.weight_norm(module, dim=dim)
        else:
            module = torch.nn.utils.parametrizations.weight_norm(module, dim=dim)
    with torch.no_grad():  # magnitudes away from their initial value ||v||
        gain = module.weight_g if api == "classic" else module.parametrizations.weight.original0
        gain.mul_(torch.rand(gain.shape, dtype=gain.dtype) + 0.5)
    return module


@pytest.mark.parametrize("api", ["classic", "parametrizations"])
@pytest.mark.parametrize("dim", [0, 1, 2, None])
def test_weight_norm_state_dict_reproduces_torch(torch, api, dim, rng):
    config = (4, 6, 3, 2, 1, 1, 2, 1, True)
    ref = weight_normed(torch, config, api, dim)
    state = ref.state_dict()
    assert ("weight_g" in state) == (api == "classic") and "weight" not in state
    x = rng.standard_normal((2, 4, 9))
    expected = torch_out(ref, torch.from_numpy(x))
    layer = ConvTranspose1d(4, 6, 3, 2, 1, 1, 2, dtype=np.float64)
    assert layer.load_state_dict(state) == ([], [])
    assert_close(layer(x), expected, np.float64)
    assert_close(ConvTranspose1d.from_torch(ref)(x), expected, np.float64)


def test_fold_weight_norm_matches_definition(rng):
    v = rng.standard_normal((4, 3, 5))
    g = rng.standard_normal((4, 1, 1))
    expected = np.stack([g[i, 0, 0] * v[i] / np.sqrt(np.sum(v[i] ** 2)) for i in range(4)])
    np.testing.assert_allclose(fold_weight_norm(g, v), expected, rtol=1e-13)
    np.testing.assert_allclose(fold_weight_norm(np.float64(2.0), v),
                               2 * v / np.sqrt(np.sum(v ** 2)), rtol=1e-13)
    with pytest.raises(ValueError, match="magnitude of shape"):
        fold_weight_norm(np.ones((3, 1, 1)), v)


def test_state_dict_from_torch_tensors_and_back(torch, rng):
    layer, ref = make_pair(torch, CONFIGS[2], np.float32, seed=3)
    plain = ConvTranspose1d(6, 6, 5, 3, 2, 0, 3, dilation=2, rng=0)
    assert plain.load_state_dict(ref.state_dict()) == ([], [])
    np.testing.assert_array_equal(plain.weight, ref.weight.detach().numpy())
    assert not np.shares_memory(plain.weight, ref.weight.detach().numpy())  # owns a copy
    # requires_grad parameters are accepted too
    plain.load_state_dict({"weight": ref.weight, "bias": ref.bias})
    # and torch loads ours
    other = torch.nn.ConvTranspose1d(6, 6, 5, 3, 2, 0, 3, dilation=2)
    other.load_state_dict({k: torch.tensor(v) for k, v in plain.state_dict().items()})
    x = rng.standard_normal((1, 6, 8)).astype(np.float32)
    assert_close(plain(x), torch_out(other, torch.from_numpy(x)), np.float32)


def test_state_dict_errors_name_the_key_and_change_nothing():
    layer = ConvTranspose1d(4, 6, 3, groups=2, rng=0)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    good_w, good_b = np.ones((4, 3, 3), np.float32), np.ones(6, np.float32)
    cases = [
        ({"weight": np.ones((4, 6, 3), np.float32), "bias": good_b}, ValueError, "weight"),
        ({"weight": good_w, "bias": np.ones(5, np.float32)}, ValueError, "bias"),
        ({"weight": good_w, "bias": np.ones(6, np.float64)}, TypeError, "bias.*float64"),
        ({"weight": good_w.astype(np.complex64), "bias": good_b}, TypeError, "weight"),
        ({"weight": good_w}, ValueError, "missing key.*'bias'"),
        ({"weight": good_w, "bias": good_b, "extra": good_b}, ValueError, "unexpected.*'extra'"),
        ({"weight_g": np.ones((4, 1, 1)), "bias": good_b}, ValueError, "missing.*'weight_v'"),
        ({"weight_g": np.ones((3, 1, 1), np.float32), "weight_v": good_w, "bias": good_b},
         ValueError, "weight_g"),
        ({"weight": good_w, "weight_v": good_w, "weight_g": np.ones(()), "bias": good_b},
         ValueError, "more than one form"),
        ({"weight": "text", "bias": good_b}, TypeError, "weight"),
    ]
    for state, exc, text in cases:
        with pytest.raises(exc, match=text):
            layer.load_state_dict(state)
        for key, value in layer.state_dict().items():
            np.testing.assert_array_equal(value, before[key])


def test_state_dict_non_strict_and_lossless_widening():
    layer = ConvTranspose1d(2, 2, 3, bias=False, dtype=np.float64, rng=0)
    weight = np.arange(12, dtype=np.float16).reshape(2, 2, 3)  # float16 -> float64 is exact
    result = layer.load_state_dict({"weight": weight, "bias": np.zeros(2), "step": 3},
                                   strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == ["bias", "step"]
    np.testing.assert_array_equal(layer.weight, weight)
    assert layer.weight.dtype == np.float64 and layer.weight.flags.c_contiguous
    assert layer.load_state_dict({}, strict=False).missing_keys == ["weight"]
    assert list(layer.state_dict()) == ["weight"]


def test_parameter_assignment_is_checked():
    layer = ConvTranspose1d(2, 4, 3, rng=0)
    layer.weight = np.zeros((2, 4, 3), np.float32)
    assert np.all(layer(np.ones((1, 2, 5), np.float32)) == layer.bias[:, None])
    with pytest.raises(ValueError, match="weight"):
        layer.weight = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match="bias"):
        layer.bias = None


def test_from_torch_rejects_other_modules(torch):
    with pytest.raises(TypeError, match="ConvTranspose1d"):
        ConvTranspose1d.from_torch(torch.nn.Conv1d(2, 2, 3))
    with pytest.raises(TypeError, match="ConvTranspose1d"):
        ConvTranspose1d.from_torch(torch.nn.ConvTranspose2d(2, 2, 3))


# -- out= and zero-copy inputs ----------------------------------------------------------

def peak_allocation(fn):
    """Peak bytes NumPy (and Python) allocated while running ``fn``."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("batched", [True, False])
def test_out_reuses_memory_across_calls(batched, rng):
    layer = ConvTranspose1d(16, 32, 8, stride=4, padding=2, rng=0)
    shape = (2, 16, 512) if batched else (16, 512)
    x = rng.standard_normal(shape).astype(np.float32)
    out = np.empty((2, 32, 2048) if batched else (32, 2048), np.float32)
    expected = conv_transpose1d_reference(x, layer.weight, layer.bias, stride=4, padding=2)
    for _ in range(3):
        out.fill(np.nan)
        result = layer(x, out=out)
        assert result is out and np.shares_memory(result, out)
        assert_close(out, expected, np.float32)
    functional = convt_blas.conv_transpose1d(x, layer.weight, layer.bias, 4, 2, out=out)
    assert functional is out
    # a warm call allocates nothing the size of the output (8 KiB of slack for small objects)
    assert peak_allocation(lambda: layer(x, out=out)) < 8192 < out.nbytes
    assert peak_allocation(lambda: layer(x)) >= out.nbytes  # the check can see an output


def test_out_with_output_size(rng):
    layer = ConvTranspose1d(3, 2, 3, stride=3, dtype=np.float64, rng=0)
    x = rng.standard_normal((1, 3, 4))
    out = np.empty((1, 2, 13))
    assert layer(x, output_size=13, out=out) is out
    assert_close(out, conv_transpose1d_reference(x, layer.weight, layer.bias, stride=3,
                                                 output_padding=1), np.float64)
    with pytest.raises(ValueError, match="shape"):
        layer(x, output_size=12, out=out)


def test_out_rejects_wrong_arrays_and_leaves_them_untouched(rng):
    layer = ConvTranspose1d(4, 6, 3, groups=2, rng=0)
    x = rng.standard_normal((2, 4, 10)).astype(np.float32)
    wrong = [
        (np.zeros((2, 6, 11), np.float32), ValueError, "shape"),
        (np.zeros((2, 6, 12), np.float64), ValueError, "dtype"),
        (np.zeros((2, 12, 12), np.float32)[:, ::2], ValueError, "C-contiguous"),
        (np.zeros((6, 12, 2), np.float32).transpose(2, 0, 1), ValueError, "C-contiguous"),
        (np.zeros((2, 6, 12), np.float32), ValueError, "writeable"),
    ]
    wrong[-1][0].flags.writeable = False
    for out, exc, text in wrong:
        marker = out.copy()
        with pytest.raises(exc, match=text):
            layer(x, out=out)
        np.testing.assert_array_equal(out, marker)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        layer(x, out=[[0.0]])


def test_torch_and_dlpack_inputs_are_read_without_a_copy(torch, rng):
    layer, ref = make_pair(torch, (16, 8, 4, 2, 1, 0, 1, 1, True), np.float32)
    tx = torch.from_numpy(rng.standard_normal((4, 16, 1024)).astype(np.float32))
    out = np.empty((4, 8, 2048), np.float32)
    expected = torch_out(ref, tx)
    layer(tx, out=out)  # warm the workspace
    assert peak_allocation(lambda: layer(tx, out=out)) < tx.nbytes // 4
    assert_close(out, expected, np.float32)

    producer = DlpackOnly(tx.numpy())  # a bare DLPack producer, not an ndarray
    assert peak_allocation(lambda: layer(producer, out=out)) < tx.nbytes // 4
    assert_close(out, expected, np.float32)
    # a non-contiguous tensor is still correct (copied once where the kernel needs it)
    strided = tx[:, :, ::2]
    assert_close(layer(strided), torch_out(ref, strided), np.float32)


# -- the HiFi-GAN example ---------------------------------------------------------------

def test_hifigan_example_matches_torch(torch, capsys):
    spec = importlib.util.spec_from_file_location("hifigan_stack",
                                                  ROOT / "examples" / "hifigan_stack.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--frames", "8"]) == 0
    printed = capsys.readouterr().out
    assert "matches torch" in printed and "(1, 32, 2048)" in printed
    error, _, layers = example.compare(frames=5, batch=2, seed=1, repeats=1)
    assert error < 1e-5
    assert [layer.weight.shape for layer in layers] == [
        (512, 256, 16), (256, 128, 16), (128, 64, 4), (64, 32, 4)]
