"""``ConvTranspose1d``: the module counterpart of ``torch.nn.ConvTranspose1d``.

Parameters are read-only NumPy arrays, replaced by assignment; a forward call
is one call of :func:`convt_blas.conv_transpose1d`, which may reuse the
prepared weight (or weight rows) an earlier call kept. Weights load
from torch state dicts, including weight-normalised ones, which are folded
into a plain weight.
"""
import math
import numbers
from typing import NamedTuple

import numpy as np

from ._backward import Gradients, conv_transpose1d_backward
from ._functional import conv_transpose1d, conv_transpose1d_cpu
from ._validation import (SUPPORTED_NAMES, as_array, check_parameters, is_supported,
                          host_array, output_length, parameters_repr, single)
from ._weight_cache import WeightCache

# Weight-norm key pairs (magnitude g, direction v), as the two torch APIs store them:
# torch.nn.utils.weight_norm and torch.nn.utils.parametrizations.weight_norm.
_WEIGHT_NORM_KEYS = (("weight_g", "weight_v"),
                     ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def _read_only(arr):
    arr.flags.writeable = False
    return arr


class IncompatibleKeys(NamedTuple):
    """Keys :meth:`ConvTranspose1d.load_state_dict` did not find or did not use."""

    missing_keys: list
    unexpected_keys: list


def _positive(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {name}={value}")
    return int(value)


def fold_weight_norm(g, v):
    """The weight ``g * v / ||v||`` that a weight-normalised layer computes.

    The norm runs over the axes where ``g`` has size 1 (all axes when ``g`` is
    a scalar), which covers torch's ``dim=0`` default, any other ``dim`` and
    ``dim=None``. Computed in double precision.

    Parameters
    ----------
    g : numpy.ndarray
        Magnitude: shape ``()`` or the shape of ``v`` with the normed axes set to 1.
    v : numpy.ndarray
        Direction, of the weight's shape.

    Returns
    -------
    numpy.ndarray
        Of ``v``'s shape, float64 (complex128 for complex inputs).

    Examples
    --------
    >>> import numpy as np
    >>> from convt_blas.nn import fold_weight_norm
    >>> v = np.array([[[3.0, 4.0]], [[0.0, 2.0]]])  # norms 5 and 2 over axes 1 and 2
    >>> fold_weight_norm(np.array([[[10.0]], [[1.0]]]), v)
    array([[[6., 8.]],
    <BLANKLINE>
           [[0., 1.]]])
    """
    wide = np.complex128 if np.iscomplexobj(g) or np.iscomplexobj(v) else np.float64
    g, v = np.asarray(g, dtype=wide), np.asarray(v, dtype=wide)
    if g.ndim == 0:
        axes = tuple(range(v.ndim))
    else:
        if g.ndim != v.ndim or any(a not in (1, b) for a, b in zip(g.shape, v.shape)):
            raise ValueError(f"weight-norm magnitude of shape {g.shape} does not match "
                             f"direction of shape {v.shape}")
        axes = tuple(i for i, size in enumerate(g.shape) if size == 1)
    norm = np.sqrt(np.sum(np.abs(v) ** 2, axis=axes, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero direction gives NaN, as torch
        return v * (g / norm)


class ConvTranspose1d:
    """1-D transposed convolution layer, as ``torch.nn.ConvTranspose1d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Both positive and divisible by ``groups``.
    kernel_size : int or 1-tuple of int
    stride, padding, output_padding, dilation : int or 1-tuple of int
        As in :func:`convt_blas.conv_transpose1d`.
    groups : int
    bias : bool
        Whether the layer adds a learnable bias.
    padding_mode : str
        Only ``'zeros'``, as torch.
    dtype : numpy dtype
        float16, float32 (default), float64, complex64, complex128 or
        ``ml_dtypes.bfloat16``.
    rng : numpy.random.Generator or int, optional (keyword-only)
        Source (or seed) of the initial weights, for reproducible layers.

    Attributes
    ----------
    weight : numpy.ndarray, shape (in_channels, out_channels / groups, kernel_size)
    bias : numpy.ndarray of shape (out_channels,), or None
        Both read-only: assign an array (copied) or use :meth:`load_state_dict`
        to change them.
    kernel_size, stride, padding, output_padding, dilation : 1-tuples of int, as torch.

    Notes
    -----
    Initialisation is torch's: ``kaiming_uniform_(weight, a=sqrt(5))`` and a
    uniform bias, i.e. both uniform in ``±1/sqrt(fan_in)`` with
    ``fan_in = (out_channels / groups) * kernel_size`` (torch takes a transposed
    convolution's fan-in from the weight's second axis). Complex layers draw the
    real and imaginary parts independently, as torch's ``uniform_`` does.

    A layer keeps a :term:`weight cache`. Layers that take Winograd's F(3,2)
    (``kernel_size == 2 * stride``, no dilation, at least 64 channels per
    group on both sides) keep their :term:`prepared weight` after the first
    call of 128 or more input positions: twice the weight's memory, which
    spares later calls the transform and lets inputs from 128 positions on
    take F(3,2) (512 for :func:`convt_blas.conv_transpose1d`, or 256 for
    weights of at most 2**21 elements per group); with ``kernel_size`` 3 or 4
    times ``stride`` and 256 channels per group on both GEMM sides, from 256
    positions (160 from 1024 input channels) on, for F(4,3) or F(3,4), which
    the function never takes (:ref:`winograd-forms`). From the second call on
    the :term:`GEMM path`, a layer keeps its :term:`weight rows` (the weight
    laid out as the GEMMs read it fastest, ``C_in/groups`` long): once the
    weight's memory, 6-16% faster on the benchmark's short deep inputs, and
    the same bits as the function (GEMMs small enough for OpenBLAS's
    small-matrix kernels, as in a streaming chunk of a few positions, keep
    the weight itself). A new weight drops both; ``keep_weight_cache =
    False`` turns them off. Results equal the function's within rounding;
    bitwise where the function takes the same path (F(3,2) or the GEMM path).
    Calls from several threads are safe: each reads weight and bias as one
    pair, and the cache is keyed by the weight array.

    Examples
    --------
    >>> import numpy as np, convt_blas
    >>> up = convt_blas.ConvTranspose1d(16, 8, kernel_size=4, stride=2, padding=1, rng=0)
    >>> up
    ConvTranspose1d(16, 8, kernel_size=(4,), stride=(2,), padding=(1,))
    >>> up(np.zeros((3, 16, 50), np.float32)).shape
    (3, 8, 100)
    >>> up.weight.shape, up.bias.shape
    ((16, 8, 4), (8,))
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 dtype=np.float32, *, rng=None):
        if padding_mode != "zeros":
            raise ValueError('Only "zeros" padding mode is supported for ConvTranspose1d, '
                             f"got padding_mode={padding_mode!r}")
        self.in_channels = _positive(in_channels, "in_channels")
        self.out_channels = _positive(out_channels, "out_channels")
        self.groups = _positive(groups, "groups")
        if self.in_channels % self.groups:
            raise ValueError(f"in_channels must be divisible by groups, got "
                             f"in_channels={in_channels}, groups={groups}")
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels must be divisible by groups, got "
                             f"out_channels={out_channels}, groups={groups}")
        self.kernel_size = (_positive(single(kernel_size, "kernel_size"), "kernel_size"),)
        self.stride = (single(stride, "stride"),)
        self.padding = (single(padding, "padding"),)
        self.output_padding = (single(output_padding, "output_padding"),)
        self.dilation = (single(dilation, "dilation"),)
        self.padding_mode = padding_mode
        self.dtype = np.dtype(dtype)
        if not is_supported(self.dtype):
            raise TypeError(f"dtype {self.dtype} is not supported; use {SUPPORTED_NAMES}")
        # The functional's own range checks (stride, padding, output_padding,
        # dilation) and messages.
        check_parameters(self.weight_shape, None, self.stride, self.padding,
                         self.output_padding, self.groups, self.dilation)
        # (weight, bias), replaced as one: a call reads both from one assignment.
        self._params = (np.empty(self.weight_shape, self.dtype),
                        np.empty(self.out_channels, self.dtype) if bias else None)
        # The weight's prepared weight and rows, kept by calls (see Notes).
        self._weight_cache = WeightCache()
        self.reset_parameters(rng)

    # -- parameters -------------------------------------------------------------------

    @property
    def weight_shape(self):
        """``(in_channels, out_channels // groups, kernel_size)``: the weight's shape.

        Examples
        --------
        >>> import convt_blas
        >>> convt_blas.ConvTranspose1d(16, 8, 4, groups=2).weight_shape
        (16, 4, 4)
        """
        return (self.in_channels, self.out_channels // self.groups, self.kernel_size[0])

    @property
    def weight(self):
        """The weight, ``(in_channels, out_channels // groups, kernel_size)``, read-only;
        assigning an array copies it in the layer's dtype."""
        return self._params[0]

    @weight.setter
    def weight(self, value):
        self._set_params(self._checked_parameter("weight", value, self.weight_shape),
                         self._params[1])

    @property
    def keep_weight_cache(self):
        """Whether calls keep the :term:`prepared weight` and the :term:`weight rows`
        (default True; see Notes).

        False drops them and makes every call the function's, for layers whose
        weight should not take its memory again.

        Examples
        --------
        >>> import convt_blas
        >>> layer = convt_blas.ConvTranspose1d(64, 64, 8, stride=4)
        >>> layer.keep_weight_cache = False  # every call is conv_transpose1d's
        """
        return self._weight_cache.keep

    @keep_weight_cache.setter
    def keep_weight_cache(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"keep_weight_cache takes True or False, "
                            f"not {type(value).__name__}")
        self._weight_cache.keep = value

    def __setstate__(self, state):
        if "_params" not in state:  # pickled before weight and bias were one pair
            state["_params"] = (state.pop("_weight"), state.pop("_bias"))
        if "_weight_cache" not in state:  # pickled before the cache was an object
            state["_weight_cache"] = WeightCache()
            state["_weight_cache"].keep = state.pop("_keep_transformed", True)
            state.pop("_transformed", None)
            state.pop("_weight_rows", None)
        self.__dict__.update(state)
        for arr in self._params:  # unpickled arrays come back writeable
            if arr is not None:
                _read_only(arr)

    def _set_params(self, weight, bias):
        changed = weight is not self._params[0]
        self._params = (weight, bias)
        if changed:
            self._weight_cache.clear()  # frees it now; calls match it by the weight anyway

    @property
    def bias(self):
        """The bias, ``(out_channels,)``, read-only, or None for a layer built with
        ``bias=False``; assigning an array copies it in the layer's dtype."""
        return self._params[1]

    @bias.setter
    def bias(self, value):
        if value is None and self.bias is None:
            return
        if value is None or self.bias is None:
            raise ValueError("bias can be replaced but not added or removed; "
                             "build the layer with bias=True or bias=False")
        self._set_params(self.weight,
                         self._checked_parameter("bias", value, (self.out_channels,)))

    def _checked_parameter(self, key, value, shape):
        """``value`` as a fresh C-contiguous array of this layer's dtype and ``shape``.

        Raises ValueError for a wrong shape and TypeError for a dtype that does not
        convert losslessly (``numpy.can_cast(..., 'safe')``), naming ``key``.
        """
        arr = host_array(value, key)
        if not np.can_cast(arr.dtype, self.dtype, "safe"):
            hint = (f" (build it with dtype={arr.dtype} to keep that precision)"
                    if is_supported(arr.dtype) else "")
            raise TypeError(f"dtype mismatch for {key}: got {arr.dtype}, "
                            f"the layer holds {self.dtype}{hint}")
        if arr.shape != tuple(shape):
            raise ValueError(f"size mismatch for {key}: got shape {arr.shape}, "
                             f"the layer expects {tuple(shape)}")
        return _read_only(np.array(arr, dtype=self.dtype, order="C", copy=True))

    @property
    def fan_in(self):
        """``(out_channels / groups) * kernel_size``: torch's fan-in of a transposed conv weight.

        Examples
        --------
        >>> import convt_blas
        >>> convt_blas.ConvTranspose1d(16, 8, 4).fan_in
        32
        """
        return self.weight_shape[1] * self.weight_shape[2]

    def reset_parameters(self, rng=None):
        """Redraw weight and bias from torch's default distribution (see class Notes).

        Parameters
        ----------
        rng : numpy.random.Generator or int, optional
            Source (or seed) of the new values.

        Examples
        --------
        >>> import numpy as np, convt_blas
        >>> a, b = convt_blas.ConvTranspose1d(4, 2, 3), convt_blas.ConvTranspose1d(4, 2, 3)
        >>> a.reset_parameters(rng=7)
        >>> b.reset_parameters(rng=7)
        >>> np.array_equal(a.weight, b.weight)
        True
        """
        rng = np.random.default_rng(rng)
        bound = 1.0 / math.sqrt(self.fan_in)

        def draw(shape):
            arr = np.empty(shape, self.dtype)
            if arr.dtype.kind == "c":
                arr.real = rng.uniform(-bound, bound, shape)
                arr.imag = rng.uniform(-bound, bound, shape)
            else:
                arr[...] = rng.uniform(-bound, bound, shape)
            return _read_only(arr)

        weight = draw(self.weight_shape)
        self._set_params(weight, None if self.bias is None else draw(self.bias.shape))

    # -- state dicts ------------------------------------------------------------------

    def state_dict(self):
        """The parameters under torch's key names.

        Returns
        -------
        dict
            ``{'weight': ..., 'bias': ...}`` (no ``'bias'`` without bias): the
            read-only arrays themselves, not copies.

        Examples
        --------
        >>> import convt_blas
        >>> sorted(convt_blas.ConvTranspose1d(4, 2, 3).state_dict())
        ['bias', 'weight']
        """
        weight, bias = self._params
        state = {"weight": weight}
        if bias is not None:
            state["bias"] = bias
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters from a mapping with torch's key names.

        Parameters
        ----------
        state_dict : mapping of str to array
            NumPy arrays, torch tensors (any device; detached and copied), or any
            DLPack producer / array-like. The weight is read from ``'weight'``, or
            folded from ``'weight_g'``/``'weight_v'`` or
            ``'parametrizations.weight.original0'``/``'...original1'`` (weight norm,
            as :func:`convt_blas.nn.fold_weight_norm`); the bias from ``'bias'``.
        strict : bool
            Raise on missing or unexpected keys (torch's default). Otherwise ignore
            them and load what is there.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``, as torch returns.

        Raises
        ------
        ValueError
            Wrong shapes, missing or unexpected keys when ``strict``, or a weight
            given in more than one form; the message names the key.
        TypeError
            A dtype that does not convert losslessly to the layer's dtype.

        Nothing is changed unless every entry is valid.

        Examples
        --------
        >>> import numpy as np, convt_blas
        >>> layer = convt_blas.ConvTranspose1d(4, 2, 3)
        >>> state = {"weight": np.ones((4, 2, 3), np.float32), "bias": np.zeros(2, np.float32)}
        >>> layer.load_state_dict(state)
        IncompatibleKeys(missing_keys=[], unexpected_keys=[])
        >>> float(layer.weight.sum())
        24.0
        """
        keys = set(state_dict)
        sources = [("weight",)] + list(_WEIGHT_NORM_KEYS)
        present = [src for src in sources if any(k in keys for k in src)]
        if len(present) > 1:
            raise ValueError("state_dict holds the weight in more than one form: "
                             + ", ".join(repr(k) for src in present for k in src if k in keys))
        missing, updates = [], {}
        if not present:
            missing.append("weight")
        elif present[0] == ("weight",):
            updates["_weight"] = self._checked_parameter(
                "weight", state_dict["weight"], self.weight_shape)
        else:
            g_key, v_key = present[0]
            absent = [k for k in (g_key, v_key) if k not in keys]
            if absent:
                missing.extend(absent)
            else:
                g = host_array(state_dict[g_key], g_key)
                v = self._checked_parameter(v_key, state_dict[v_key], self.weight_shape)
                self._checked_parameter(g_key, g, g.shape)  # dtype check, key named
                try:
                    folded = fold_weight_norm(g, v)
                except ValueError as exc:
                    raise ValueError(f"size mismatch for {g_key}: {exc}") from exc
                updates["_weight"] = _read_only(folded.astype(self.dtype))
        if self.bias is not None:
            if "bias" in keys:
                updates["_bias"] = self._checked_parameter(
                    "bias", state_dict["bias"], (self.out_channels,))
            else:
                missing.append("bias")
        used = set().union(*present) | ({"bias"} if self.bias is not None else set())
        unexpected = sorted(keys - used)
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing key(s) " + ", ".join(map(repr, missing)))
            if unexpected:
                parts.append("unexpected key(s) " + ", ".join(map(repr, unexpected)))
            raise ValueError(f"Error(s) in loading state_dict for ConvTranspose1d: "
                             + "; ".join(parts))
        self._set_params(updates.get("_weight", self.weight), updates.get("_bias", self.bias))
        return IncompatibleKeys(missing, unexpected)

    @classmethod
    def from_torch(cls, module):
        """A layer with the hyperparameters and weights of a ``torch.nn.ConvTranspose1d``.

        Weight-normalised modules (either torch API) are folded into a plain weight.
        The dtype follows the module's (float16/32/64, complex64/128).

        Examples
        --------
        .. doctest::
           :skipif: torch is None

           >>> import torch, convt_blas
           >>> module = torch.nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1)
           >>> convt_blas.ConvTranspose1d.from_torch(module)
           ConvTranspose1d(16, 8, kernel_size=(4,), stride=(2,), padding=(1,))
        """
        missing = [a for a in ("in_channels", "out_channels", "kernel_size", "stride",
                               "padding", "output_padding", "groups", "dilation", "state_dict")
                   if not hasattr(module, a)]
        if (missing or len(getattr(module, "kernel_size", ())) != 1
                or not getattr(module, "transposed", True)):
            raise TypeError(f"expected a torch.nn.ConvTranspose1d, got {type(module).__name__}")
        state = module.state_dict()
        dtype = host_array(module.weight, "weight").dtype  # a view: no copy
        layer = cls(module.in_channels, module.out_channels, module.kernel_size,
                    module.stride, module.padding, module.output_padding, module.groups,
                    getattr(module, "bias", None) is not None, module.dilation,
                    getattr(module, "padding_mode", "zeros"), dtype)
        layer.load_state_dict(state)
        return layer

    # -- forward ----------------------------------------------------------------------

    def _output_padding_for(self, x, output_size):
        """torch's ``_output_padding``: the output_padding giving the requested length."""
        if output_size is None or x.ndim not in (2, 3):
            return self.output_padding[0]
        if isinstance(output_size, numbers.Integral) and not isinstance(output_size, bool):
            sizes = [output_size]
        else:
            sizes = list(output_size)
        non_spatial = x.ndim - 1
        if len(sizes) == non_spatial + 1:
            sizes = sizes[non_spatial:]
        if len(sizes) != 1:
            raise ValueError(f"ConvTranspose1D: for {x.ndim}D input, output_size must have 1 "
                             f"or {non_spatial + 1} elements (got {len(sizes)})")
        size = sizes[0]
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
            raise TypeError(f"output_size must hold ints, got {size!r}")
        length = x.shape[-1]
        min_size = output_length(length, self.kernel_size[0], self.stride[0], self.padding[0],
                                 0, self.dilation[0])
        max_size = min_size + self.stride[0] - 1
        if not min_size <= size <= max_size:
            raise ValueError(f"requested an output size of {int(size)}, but valid sizes range "
                             f"from {min_size} to {max_size} (for an input of length {length})")
        return int(size) - min_size

    def __call__(self, input, output_size=None, *, out=None):
        """Apply the layer: :func:`convt_blas.conv_transpose1d` with this layer's parameters.

        Parameters
        ----------
        input : array_like, shape (N, in_channels, L_in) or (in_channels, L_in)
            Of the layer's dtype. Contiguous torch CPU tensors and other DLPack
            producers are read without a copy.
        output_size : int or sequence of int, optional
            The output length, as torch: ``[L_out]``, the full output shape whose
            last entry is ``L_out``, or a plain int. Reachable lengths run from
            the length without output_padding up to ``stride - 1`` more; others
            raise ValueError naming the range. Overrides ``output_padding``.
        out : numpy.ndarray, optional (keyword-only)
            C-contiguous array of the result's shape and dtype, written and returned.

        Returns
        -------
        numpy.ndarray, shape (N, out_channels, L_out) or (out_channels, L_out)
            A CuPy array on the input's device when ``input`` is a CuPy array.

        Examples
        --------
        >>> import numpy as np, convt_blas
        >>> up = convt_blas.ConvTranspose1d(4, 2, kernel_size=3, stride=2, rng=0)
        >>> x = np.ones((4, 10), np.float32)  # unbatched (C_in, L_in)
        >>> up(x).shape, up(x, output_size=[22]).shape
        ((2, 21), (2, 22))

        Lists and float64 arrays are not converted to the layer's dtype:

        >>> up([[0.5] * 10] * 4)
        Traceback (most recent call last):
        ...
        TypeError: input dtype float64 and weight dtype float32 must be the same; convert...
        """
        weight, bias = self._params  # one pair, whatever another thread loads meanwhile
        if type(input).__module__.startswith("cupy"):
            # A CuPy input computes on its GPU: the parameters, kept in host memory,
            # are copied to the input's device for the call.
            import cupy

            x = input
            with x.device:
                weight = cupy.asarray(weight)
                bias = None if bias is None else cupy.asarray(bias)
            output_padding = self._output_padding_for(x, output_size)
            return conv_transpose1d(x, weight, bias, self.stride, self.padding,
                                    output_padding, self.groups, self.dilation, out=out)
        x = as_array(input, "input")
        output_padding = self._output_padding_for(x, output_size)
        cache = self._weight_cache
        return conv_transpose1d_cpu(x, weight, bias, self.stride, self.padding, output_padding,
                                    self.groups, self.dilation, out,
                                    cache if cache.keep else None)

    forward = __call__

    def backward(self, input, grad_output, output_size=None):
        """The loss's gradients for a forward call's input and this layer's parameters:
        :func:`convt_blas.conv_transpose1d_backward` with the layer's parameters.

        Parameters
        ----------
        input : array_like
            The forward call's input.
        grad_output : array_like
            The loss's gradient with respect to that call's output (of its shape).
        output_size : optional
            As the forward call's.

        Returns
        -------
        Gradients
            A named tuple ``(input, weight, bias)``; ``bias`` is None without a bias.

        Examples
        --------
        >>> import numpy as np, convt_blas
        >>> up = convt_blas.ConvTranspose1d(4, 2, kernel_size=3, stride=2, rng=0)
        >>> x = np.ones((1, 4, 10), np.float32)
        >>> grads = up.backward(x, np.ones_like(up(x)))
        >>> grads.input.shape, grads.weight.shape, grads.bias
        ((1, 4, 10), (4, 2, 3), array([21., 21.], dtype=float32))
        """
        weight, bias = self._params
        x = as_array(input, "input")
        return Gradients(*conv_transpose1d_backward(
            grad_output, x, weight, self.stride, self.padding,
            self._output_padding_for(x, output_size), self.groups, self.dilation,
            output_mask=(True, True, bias is not None)))

    def __repr__(self):
        return parameters_repr(self, self.bias is not None)
