"""convt_blas inside PyTorch models: a ``torch.nn.ConvTranspose1d`` whose CPU
forward and backward run on convt_blas, and :func:`accelerate`, which gives a
model's layers that forward in place.

Needs torch (``pip install convt_blas[torch]``). The forward goes through the
custom op ``torch.ops.convt_blas.conv_transpose1d``, which has a fake
implementation, so ``torch.compile(..., fullgraph=True)`` and ``torch.export``
keep it in their graphs.

What runs where:

* CPU tensors of float32, float64, float16, bfloat16, complex64 or complex128,
  all of one dtype: convt_blas, in inference and in training. The op has an
  autograd formula (``torch.library.register_autograd``) whose backward is
  :func:`convt_blas.conv_transpose1d_backward`, itself the custom op
  ``torch.ops.convt_blas.conv_transpose1d_backward``, so training steps
  compile too. float16 and bfloat16 are computed in float32 and rounded once,
  as torch does on the CPU. There is no double backward: differentiating the
  gradients again (``create_graph=True`` through them) raises a RuntimeError.
* Anything else (CUDA tensors, mixed dtypes, non-strided layouts,
  ``padding_mode`` other than ``"zeros"``): torch's own ``conv_transpose1d``,
  unchanged.

Threads: a call made through torch uses ``torch.get_num_threads()`` threads,
unless :func:`convt_blas.set_num_threads` was given a count, which then wins.
"""
import contextvars
import threading
import weakref
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from . import _memory, _threads
from ._backward import conv_transpose1d_backward
from ._functional import conv_transpose1d_cpu
from ._weight_cache import WeightCache
from ._validation import check_arguments, output_length, single

__all__ = ["ConvTranspose1d", "conv_transpose1d", "accelerate", "restore",
           "accelerated_layers"]

# torch dtypes convt_blas computes (bfloat16 in float32, as float16 is).
_DTYPES = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16,
                     torch.complex64, torch.complex128})


def _numpy_view(tensor):
    """The tensor's memory as an ndarray, without a copy (strides kept)."""
    return tensor.detach().resolve_conj().resolve_neg().numpy()


# Set by the layer and function around the op: whether the call records no autograd
# (inside the op, torch has turned grad mode off either way).
_inference_call = contextvars.ContextVar("convt_blas_inference_call", default=False)


def _call_op(input, weight, bias, stride, padding, output_padding, groups, dilation,
             keep=True):
    """The op, telling it whether this call records autograd (see _ParameterCaches);
    ``keep=False``: keep nothing either way."""
    if torch.compiler.is_compiling():  # a compiled graph calls the op itself: keep nothing
        return _conv_transpose1d_op(input, weight, bias, stride, padding, output_padding,
                                    groups, dilation)
    token = _inference_call.set(keep and not (torch.is_grad_enabled()
                                              and weight.requires_grad))
    try:
        return _conv_transpose1d_op(input, weight, bias, stride, padding, output_padding,
                                    groups, dilation)
    finally:
        _inference_call.reset(token)


class _ParameterCaches:
    """The :term:`weight cache` of each weight Parameter called without autograd, as a
    convt_blas.ConvTranspose1d keeps one: an entry lives as long as its Parameter,
    and its key changes with the Parameter's memory or version counter (an
    optimizer step, ``load_state_dict``, ``.data =``), so forms of an old weight
    are never read. Calls that record autograd (the weight changes every step),
    compiled graphs, and weights that are not Parameters (a weight-normed
    layer's, recomputed per call) keep nothing.
    """

    def __init__(self):
        self._entries = {}  # id(parameter): [weakref, state, key, WeightCache]
        # Reentrant: a weakref callback (_drop) may run from garbage collection
        # triggered inside lookup, on the thread that holds the lock.
        self._lock = threading.RLock()

    def lookup(self, weight):
        """(WeightCache, key) for ``weight``, or (None, None) if it keeps nothing."""
        if (not _inference_call.get() or not isinstance(weight, torch.nn.Parameter)
                or weight.is_inference()):  # an inference tensor has no version counter
            return None, None
        state = (weight.data_ptr(), weight._version, weight.dtype, tuple(weight.shape))
        with self._lock:
            entry = self._entries.get(id(weight))
            if entry is None or entry[0]() is not weight:
                ident = id(weight)
                entry = [weakref.ref(weight, lambda _, ident=ident: self._drop(ident)),
                         state, object(), WeightCache()]
                self._entries[ident] = entry
            elif entry[1] != state:
                entry[1], entry[2] = state, object()
                entry[3].clear()
            return entry[3], entry[2]

    def forget(self, weight):
        """Drop what is kept for ``weight`` (the model's layers no longer run here)."""
        with self._lock:
            entry = self._entries.get(id(weight))
            if entry is not None and entry[0]() is weight:
                del self._entries[id(weight)]

    def _drop(self, ident):
        with self._lock:
            entry = self._entries.get(ident)
            if entry is not None and entry[0]() is None:
                del self._entries[ident]


_parameter_caches = _ParameterCaches()


@torch.library.custom_op("convt_blas::conv_transpose1d", mutates_args=(), device_types="cpu")
def _conv_transpose1d_op(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         stride: int, padding: int, output_padding: int, groups: int,
                         dilation: int) -> torch.Tensor:
    _memory.settle_heap()  # as torch's own op leaves it (see there)
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
    cache, key = (_parameter_caches.lookup(weight) if given_dtype != torch.bfloat16
                  else (None, None))
    with _threads.caller_default_threads(torch.get_num_threads()):
        conv_transpose1d_cpu(x, w, b, stride, padding, output_padding, groups, dilation,
                             result.numpy(), weight_cache=cache, weight_key=key)
    return result.to(given_dtype) if given_dtype != result.dtype else result


@_conv_transpose1d_op.register_fake
def _conv_transpose1d_fake(input, weight, bias, stride, padding, output_padding, groups,
                           dilation):
    length = output_length(input.shape[-1], weight.shape[2], stride, padding, output_padding,
                           dilation)
    channels = weight.shape[1] * groups
    shape = (input.shape[0], channels, length) if input.dim() == 3 else (channels, length)
    return input.new_empty(shape)


@torch.library.custom_op("convt_blas::conv_transpose1d_backward", mutates_args=(),
                         device_types="cpu")
def _conv_transpose1d_backward_op(grad_output: torch.Tensor, input: torch.Tensor,
                                  weight: torch.Tensor, stride: int, padding: int,
                                  output_padding: int, groups: int, dilation: int,
                                  output_mask: List[bool]
                                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_input, grad_weight, grad_bias); a gradient not in ``output_mask``
    is an empty tensor (a custom op returns tensors only)."""
    _memory.settle_heap()
    given_dtype = input.dtype
    if given_dtype == torch.bfloat16:  # widened as the forward does
        grad_output, input, weight = grad_output.float(), input.float(), weight.float()
    with _threads.caller_default_threads(torch.get_num_threads()):
        grads = conv_transpose1d_backward(_numpy_view(grad_output), _numpy_view(input),
                                          _numpy_view(weight), stride, padding, output_padding,
                                          groups, dilation, output_mask=tuple(output_mask))
    return tuple(torch.empty(0, dtype=given_dtype) if g is None
                 else torch.from_numpy(g).to(given_dtype) for g in grads)


@_conv_transpose1d_backward_op.register_fake
def _conv_transpose1d_backward_fake(grad_output, input, weight, stride, padding,
                                    output_padding, groups, dilation, output_mask):
    shapes = (input.shape, weight.shape, (weight.shape[1] * groups,))
    return tuple(input.new_empty(shape if wanted else (0,))
                 for shape, wanted in zip(shapes, output_mask))


def _no_double_backward(ctx, *grads):
    raise RuntimeError("convt_blas::conv_transpose1d has no double backward: its gradients "
                       "cannot be differentiated again (create_graph=True through them); use "
                       "torch.nn.functional.conv_transpose1d, or convt_blas.torch.restore(model), "
                       "for higher-order gradients")


def _no_double_backward_context(ctx, inputs, output):
    pass


_conv_transpose1d_backward_op.register_autograd(_no_double_backward,
                                                setup_context=_no_double_backward_context)


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, output_padding, groups, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.params = (stride, padding, output_padding, groups, dilation)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad
    mask = [bool(needs[0]), bool(needs[1]), bool(ctx.has_bias and needs[2])]
    if not any(mask):
        return (None,) * 8
    grads = _conv_transpose1d_backward_op(grad_output, input, weight, *ctx.params, mask)
    return tuple(g if wanted else None for g, wanted in zip(grads, mask)) + (None,) * 5


_conv_transpose1d_op.register_autograd(_backward, setup_context=_setup_context)


def _runs_on_convt_blas(input, weight, bias):
    """Whether convt_blas computes this call: CPU tensors of one supported dtype."""
    tensors = (input, weight) if bias is None else (input, weight, bias)
    if any(t.device.type != "cpu" or t.layout != torch.strided or t.dtype != input.dtype
           for t in tensors):
        return False
    # Every dtype of the forward has a backward (convt_blas.conv_transpose1d_backward).
    return input.dtype in _DTYPES


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """``torch.nn.functional.conv_transpose1d`` computed by convt_blas where it can be.

    CPU tensors of one supported dtype, with or without autograd, go through the
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
    return _call_op(input, weight, bias, single(stride, "stride"), single(padding, "padding"),
                    single(output_padding, "output_padding"), groups,
                    single(dilation, "dilation"))


class ConvTranspose1d(torch.nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` whose CPU forward and backward run on convt_blas.

    The same constructor, parameters, state dict and ``output_size`` argument
    as torch's; :func:`accelerate` gives existing layers this class in place.
    See :func:`conv_transpose1d` for which calls run on convt_blas. Calls
    without autograd (``torch.no_grad``, ``torch.inference_mode``, or a weight
    that does not require grad) keep the weight's :term:`weight cache`, as
    :class:`convt_blas.ConvTranspose1d` does: its prepared weight and weight
    rows, up to three times the weight's memory while the Parameter lives,
    remade when the weight changes; :func:`restore` or ``keep_weight_cache =
    False`` drops them.

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
    >>> y = layer(x, output_size=[21])  # autograd records it; the backward is convt_blas's too
    >>> y.shape
    torch.Size([1, 2, 21])
    >>> y.sum().backward()
    >>> layer.weight.grad.shape
    torch.Size([4, 2, 4])
    """

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros" or not _runs_on_convt_blas(input, self.weight,
                                                                   self.bias):
            return super().forward(input, output_size)  # torch's checks and messages
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 1, self.dilation)
        return _call_op(input, self.weight, self.bias, self.stride[0], self.padding[0],
                        output_padding[0], self.groups, self.dilation[0],
                        self.keep_weight_cache)

    @property
    def keep_weight_cache(self):
        """Whether inference calls keep the weight's :term:`weight cache` (True, the
        default); False drops what is kept and keeps nothing."""
        return self.__dict__.get("_keep_weight_cache", True)

    @keep_weight_cache.setter
    def keep_weight_cache(self, value):
        self.__dict__["_keep_weight_cache"] = bool(value)
        if not value:
            _parameter_caches.forget(self._parameters.get("weight"))


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
    for parameter in model.parameters():  # what its layers' calls kept
        _parameter_caches.forget(parameter)
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
