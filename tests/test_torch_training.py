"""convt_blas.torch in training: the custom op's backward (gradcheck, gradients and
SGD steps as torch's own layer gives them, torch.compile of a training step)."""
import copy

import pytest

torch = pytest.importorskip("torch", reason="convt_blas.torch needs torch (the torch extra)")
import convt_blas.torch as ct  # noqa: E402
from torch.nn.utils import parametrizations  # noqa: E402

# torch.compile's own imports use the deprecated torch.jit.script_method.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script")

# (in, out, kernel, stride, padding, output_padding, groups, dilation, input shape)
CONFIGS = [
    (2, 3, 3, 1, 0, 0, 1, 1, (2, 2, 5)),
    (4, 6, 4, 2, 1, 1, 2, 1, (1, 4, 6)),
    (3, 3, 3, 3, 2, 1, 3, 2, (2, 3, 4)),
    (2, 4, 5, 2, 3, 0, 1, 2, (2, 7)),  # unbatched
]


@pytest.mark.parametrize("config", CONFIGS)
def test_gradcheck_float64(config):
    c_in, c_out, k, stride, padding, output_padding, groups, dilation, shape = config
    torch.manual_seed(0)
    layer = ct.ConvTranspose1d(c_in, c_out, k, stride=stride, padding=padding,
                               output_padding=output_padding, groups=groups,
                               dilation=dilation).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

    def f(x, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(f, (x, layer.weight, layer.bias))


def test_gradcheck_without_bias_and_input_only():
    torch.manual_seed(1)
    layer = ct.ConvTranspose1d(2, 2, 3, stride=2, bias=False).double().requires_grad_(False)
    x = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    assert layer.weight.grad is None


def make_models(seed=0):
    """(torch's model, the same model accelerated): two layers, one weight-normalised."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        parametrizations.weight_norm(torch.nn.ConvTranspose1d(8, 4, 8, stride=4, padding=2)),
        torch.nn.ELU(),
        torch.nn.ConvTranspose1d(4, 2, 5, stride=2, padding=2, output_padding=1, groups=2))
    accelerated = ct.accelerate(copy.deepcopy(model))
    assert ct.accelerated_layers(accelerated) == ["0", "2"]
    return model, accelerated


def assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_gradients_as_torch_gives_them():
    model, accelerated = make_models()
    x = torch.randn(3, 8, 50)
    xa = x.clone().requires_grad_()
    x.requires_grad_()
    model(x).square().mean().backward()
    accelerated(xa).square().mean().backward()
    assert_close(xa.grad, x.grad)
    params = dict(model.named_parameters())
    for name, param in accelerated.named_parameters():
        assert_close(param.grad, params[name].grad)


def train(model, steps=3, compile_step=False):
    torch.manual_seed(5)
    data = [(torch.randn(2, 8, 40), torch.randn(2, 2, 320)) for _ in range(steps)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss_fn(x, target):
        return torch.nn.functional.mse_loss(model(x), target)

    if compile_step:  # forward and loss in one graph; AOTAutograd makes its backward graph
        loss_fn = torch.compile(loss_fn, fullgraph=True)
    for x, target in data:
        opt.zero_grad()
        loss_fn(x, target).backward()
        opt.step()
    return dict(model.named_parameters())


def test_sgd_steps_as_torch():
    model, accelerated = make_models()
    expected = train(model)
    for name, param in train(accelerated).items():
        assert_close(param.detach(), expected[name].detach())


def test_double_backward_raises():
    layer = ct.ConvTranspose1d(2, 2, 3).double()
    x = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="no double backward"):
        g.sum().backward()


def test_compiled_training_step(monkeypatch):
    """torch.compile(fullgraph=True) of forward and loss: both ops in the graphs, the
    backward's included. (Tensor.backward() itself inside the compiled function is
    not traced by Dynamo unless torch._dynamo.config.trace_autograd_ops is set.)"""
    model, accelerated = make_models()
    expected = train(model)
    calls = []
    original = ct.conv_transpose1d_backward
    monkeypatch.setattr(ct, "conv_transpose1d_backward",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    torch._dynamo.reset()
    try:
        got = train(accelerated, compile_step=True)
    except Exception as error:  # no C++ compiler for inductor, or the like
        pytest.skip(f"torch.compile of a training step does not work here: {error!r:.300}")
    finally:
        torch._dynamo.reset()
    assert len(calls) == 6  # two layers, three steps
    for name, param in got.items():
        assert_close(param.detach(), expected[name].detach())


def test_gradcheck_complex128():
    torch.manual_seed(2)
    layer = ct.ConvTranspose1d(2, 4, 3, stride=2, padding=1, groups=2,
                               dtype=torch.complex128)
    x = torch.randn(2, 2, 5, dtype=torch.complex128, requires_grad=True)

    def f(x, weight, bias):
        return torch.func.functional_call(layer, {"weight": weight, "bias": bias}, (x,))

    assert torch.autograd.gradcheck(f, (x, layer.weight, layer.bias))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_gradients_as_torch(dtype):
    torch.manual_seed(3)
    plain = torch.nn.ConvTranspose1d(4, 6, 5, stride=2, padding=1, groups=2, dtype=dtype)
    accelerated = ct.accelerate(copy.deepcopy(plain))
    x = torch.randn(2, 4, 9, dtype=dtype)
    grads = []
    for model in (plain, accelerated):
        xi = x.clone().requires_grad_()
        out = model(xi)
        assert out.dtype == dtype
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape))
        grads.append((xi.grad, model.weight.grad, model.bias.grad))
    for got, expected in zip(grads[1], grads[0]):
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), expected.float(), rtol=1e-2, atol=1e-2)
