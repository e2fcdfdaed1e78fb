"""convt_blas inside PyTorch models: a ``torch.nn.ConvTranspose1d`` whose CPU
inference runs on convt_blas, and :func:`accelerate`, which gives a model's
layers that forward in place.

Needs torch (``pip install convt_blas[torch]``). The forward goes through the
custom op ``torch.ops.convt_blas.conv_transpose1d``, which has a fake
implementation, so ``torch.compile(..., fullgraph=True)`` and ``torch.export``
keep it in their graphs.

What runs where:

* CPU tensors of float32, float64, float16, bfloat16, complex64 or complex128,
  when no gradient is needed (``torch.no_grad()``, ``torch.inference_mode()``,
  or neither input nor parameters requiring grad): convt_blas. float16 and
  bfloat16 are computed in float32 and rounded once, as torch does on the CPU.
* Anything else (CUDA tensors, calls that need autograd, mixed dtypes): torch's
  own ``conv_transpose1d``, unchanged.

Threads: a call made through torch uses ``torch.get_num_threads()`` threads,
unless :func:`convt_blas.set_num_threads` was given a count, which then wins.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from . import _threads
from ._functional import conv_transpose1d_cpu
from ._validation import check_arguments, output_length, single

__all__ = ["ConvTranspose1d", "conv_transpose1d", "accelerate", "restore",
           "accelerated_layers"]

# torch dtypes convt_blas computes (bfloat16 in float32, as float16 is).
_DTYPES = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16,
                     torch.complex64, torch.complex128})


def _numpy_view(tensor):
    """The tensor's memory as an ndarray, without a copy (strides kept)."""
    return tensor.detach().resolve_conj().resolve_neg().numpy()


@torch.library.custom_op("convt_blas::conv_transpose1d", mutates_args=(), device_types="cpu")
def _conv_transpose1d_op(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         stride: int, padding: int, output_padding: int, groups: int,
                         dilation: int) -> torch.Tensor:
    given_dtype = input.dtype
    if given_dtype == torch.bfloat16:  # NumPy has no bfloat16 of its own: widen here
        input, weight = input.float(), weight.float()
        bias = None if bias is None else bias.float()
    x, w = _numpy_view(input), _numpy_view(weight)
    b = None if bias is None else _numpy_view(bias)
    spec = check_arguments(x.shape, w.shape, None if b is None else b.shape, stride, padding,
                           output_padding, groups, dilation)
    # torch allocates the result; convt_blas writes into it through a NumPy view.
    result = torch.empty(spec.out_shape, dtype=input.dtype)
    with _threads.caller_default_threads(torch.get_num_threads()):
        conv_transpose1d_cpu(x, w, b, stride, padding, output_padding, groups, dilation,
                             result.numpy())
    return result.to(given_dtype) if given_dtype != result.dtype else result


@_conv_transpose1d_op.register_fake
def _conv_transpose1d_fake(input, weight, bias, stride, padding, output_padding, groups,
                           dilation):
    length = output_length(input.shape[-1], weight.shape[2], stride, padding, output_padding,
                           dilation)
    channels = weight.shape[1] * groups
    shape = (input.shape[0], channels, length) if input.dim() == 3 else (channels, length)
    return input.new_empty(shape)


def _runs_on_convt_blas(input, weight, bias):
    """Whether convt_blas computes this call: CPU, one supported dtype, no autograd."""
    tensors = (input, weight) if bias is None else (input, weight, bias)
    if any(t.device.type != "cpu" or t.layout != torch.strided or t.dtype != input.dtype
           for t in tensors):
        return False
    if input.dtype not in _DTYPES:
        return False
    # No backward exists yet: a call that autograd records stays on torch.
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """``torch.nn.functional.conv_transpose1d`` computed by convt_blas where it can be.

    CPU tensors of a supported dtype, with no gradient needed, go through the
    custom op ``torch.ops.convt_blas.conv_transpose1d``; anything else is
    torch's own function.

    Parameters
    ----------
    input : torch.Tensor, shape (N, C_in, L_in) or (C_in, L_in)
    weight : torch.Tensor, shape (C_in, C_out / groups, K)
    bias : torch.Tensor, shape (C_out,), optional
    stride, padding, output_padding, dilation : int or 1-tuple of int
    groups : int

    Returns
    -------
    torch.Tensor
        Of the input's dtype.

    Examples
    --------
    >>> import torch, convt_blas.torch
    >>> x, w = torch.ones(1, 2, 3), torch.ones(2, 1, 4)
    >>> convt_blas.torch.conv_transpose1d(x, w, stride=2)
    tensor([[[2., 2., 4., 4., 4., 4., 2., 2.]]])
    """
    if not _runs_on_convt_blas(input, weight, bias):
        return F.conv_transpose1d(input, weight, bias, stride, padding, output_padding, groups,
                                  dilation)
    return _conv_transpose1d_op(input, weight, bias, single(stride, "stride"),
                                single(padding, "padding"),
                                single(output_padding, "output_padding"), groups,
                                single(dilation, "dilation"))


class ConvTranspose1d(torch.nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` whose CPU inference runs on convt_blas.

    The same constructor, parameters, state dict and ``output_size`` argument
    as torch's; :func:`accelerate` gives existing layers this class in place.
    See :func:`conv_transpose1d` for which calls run on convt_blas.

    Examples
    --------
    >>> import torch, convt_blas.torch
    >>> layer = convt_blas.torch.ConvTranspose1d(4, 2, kernel_size=4, stride=2, padding=1)
    >>> x = torch.randn(1, 4, 10)
    >>> with torch.no_grad():
    ...     y = layer(x)
    ...     expected = torch.nn.functional.conv_transpose1d(x, layer.weight, layer.bias, 2, 1)
    >>> y.shape, torch.allclose(y, expected, atol=1e-6)
    (torch.Size([1, 2, 20]), True)
    >>> layer(x, output_size=[21]).shape  # autograd records this call: torch computes it
    torch.Size([1, 2, 21])
    """

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros" or not _runs_on_convt_blas(input, self.weight,
                                                                   self.bias):
            return super().forward(input, output_size)  # torch's checks and messages
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 1, self.dilation)
        return _conv_transpose1d_op(input, self.weight, self.bias, self.stride[0],
                                    self.padding[0], output_padding[0], self.groups,
                                    self.dilation[0])


def _swappable_class(module):
    """(holder, base): the class whose base decides the forward, and that base.

    A parametrized module (``torch.nn.utils.parametrizations.weight_norm``) has
    a class of its own made by torch, ``Parametrized<Base>``, which holds the
    parametrized properties: its base is swapped, so they stay.
    """
    cls = type(module)
    if parametrize.is_parametrized(module) and len(cls.__bases__) == 1:
        return cls, cls.__bases__[0]
    return None, cls


def _swap(model, old, new):
    for module in model.modules():
        holder, base = _swappable_class(module)
        if base is not old:
            continue
        if holder is not None:
            holder.__bases__ = (new,)
        else:
            module.__class__ = new
    return model


def accelerate(model):
    """Run every ``torch.nn.ConvTranspose1d`` of ``model`` on convt_blas, in place.

    Plain layers and layers weight-normalised either way
    (``torch.nn.utils.weight_norm`` hooks or
    ``torch.nn.utils.parametrizations.weight_norm``) get
    :class:`ConvTranspose1d` as their class: parameters, hooks,
    parametrizations and state dict keys stay as they are, so checkpoints
    load before and after. Subclasses of torch's layer with a forward of
    their own are left alone. :func:`restore` undoes it.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``model`` itself; :func:`accelerated_layers` lists what was replaced.

    Examples
    --------
    >>> import torch, convt_blas.torch
    >>> model = torch.nn.Sequential(torch.nn.ConvTranspose1d(8, 4, 16, stride=8, padding=4),
    ...                             torch.nn.ELU(), torch.nn.ConvTranspose1d(4, 1, 4, stride=2))
    >>> model = convt_blas.torch.accelerate(model)
    >>> convt_blas.torch.accelerated_layers(model)
    ['0', '2']
    >>> with torch.inference_mode():
    ...     model(torch.randn(1, 8, 100)).shape
    torch.Size([1, 1, 1602])
    """
    return _swap(model, torch.nn.ConvTranspose1d, ConvTranspose1d)


def restore(model):
    """Give every :class:`ConvTranspose1d` of ``model`` torch's class back, undoing
    :func:`accelerate`.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Examples
    --------
    >>> import torch, convt_blas.torch
    >>> model = convt_blas.torch.accelerate(torch.nn.Sequential(torch.nn.ConvTranspose1d(2, 2, 3)))
    >>> convt_blas.torch.accelerated_layers(convt_blas.torch.restore(model))
    []
    """
    return _swap(model, ConvTranspose1d, torch.nn.ConvTranspose1d)


def accelerated_layers(model):
    """Names (as in ``model.named_modules()``) of the layers that run on convt_blas.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    list of str

    Examples
    --------
    >>> import torch, convt_blas.torch
    >>> from torch.nn.utils.parametrizations import weight_norm
    >>> model = torch.nn.Sequential(weight_norm(torch.nn.ConvTranspose1d(2, 2, 3)))
    >>> convt_blas.torch.accelerated_layers(convt_blas.torch.accelerate(model))
    ['0']
    >>> sorted(model.state_dict())  # the keys weight_norm gave it
    ['0.bias', '0.parametrizations.weight.original0', '0.parametrizations.weight.original1']
    """
    return [name for name, module in model.named_modules()
            if isinstance(module, ConvTranspose1d)]
