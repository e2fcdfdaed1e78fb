"""Arguments, checked and described alike by every path: CPU, CUDA, the layer, the
stream and Dask.

The checks work on shapes and dtypes alone, so each path gives the same errors
with the same messages, and nothing here touches the kernels.
"""
import numbers
from typing import NamedTuple

import numpy as np

from ._memory import fresh_copy

HALF = np.dtype(np.float16)
# The kernels compute in these; the low-precision dtypes are computed in float32.
COMPUTE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64),
                  np.dtype(np.complex64), np.dtype(np.complex128))
SUPPORTED_DTYPES = (HALF,) + COMPUTE_DTYPES  # and ml_dtypes.bfloat16: see is_supported
SUPPORTED_NAMES = (", ".join(d.name for d in SUPPORTED_DTYPES[:-1])
                   + ", " + SUPPORTED_DTYPES[-1].name + " or bfloat16 (ml_dtypes)")


def is_bfloat16(dtype):
    """Whether ``dtype`` is ml_dtypes' bfloat16. Asks nothing of ml_dtypes: an array
    of that dtype exists only once ml_dtypes is imported, so it stays optional."""
    dtype = np.dtype(dtype)
    return dtype.name == "bfloat16" and dtype.type.__module__.startswith("ml_dtypes")


def is_low_precision(dtype):
    """float16 and bfloat16: read and returned as they are, computed in float32."""
    return np.dtype(dtype) == HALF or is_bfloat16(dtype)


def compute_dtype(dtype):
    """The dtype the kernels compute ``dtype`` in (float32 for the low-precision ones)."""
    return np.dtype(np.float32) if is_low_precision(dtype) else np.dtype(dtype)


def is_supported(dtype):
    """Whether conv_transpose1d takes arrays of ``dtype``."""
    return np.dtype(dtype) in SUPPORTED_DTYPES or is_bfloat16(dtype)


def _bfloat16_from_torch(tensor):
    """A NumPy view of a torch bfloat16 CPU tensor as ml_dtypes.bfloat16 (neither
    NumPy nor DLPack carry it), or None for anything else."""
    if str(getattr(tensor, "dtype", "")) != "torch.bfloat16" or not hasattr(tensor, "view"):
        return None
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("a torch bfloat16 tensor needs ml_dtypes to be read as a NumPy array "
                        "(pip install ml_dtypes), or use convt_blas.torch") from None
    import torch

    bits = tensor.detach().resolve_conj().view(torch.int16).numpy()
    return bits.view(ml_dtypes.bfloat16)
# Element counts beyond this cannot be indexed safely in 64-bit byte offsets.
MAX_ELEMENTS = 2 ** 59


def as_array(obj, name):
    """An ndarray viewing ``obj`` without a copy where possible (DLPack, __array__)."""
    if isinstance(obj, np.ma.MaskedArray):
        # Its masked values would be read as numbers: say so rather than guess.
        raise TypeError(f"{name} is a masked array; conv_transpose1d has no notion of "
                        f"missing values: pass {name}.filled(0) (or another fill value)")
    if isinstance(obj, np.ndarray):
        return obj
    bfloat16_view = _bfloat16_from_torch(obj)
    if bfloat16_view is not None:
        return bfloat16_view
    if hasattr(obj, "__dlpack__"):
        try:
            return np.from_dlpack(obj)
        except Exception:  # noqa: BLE001  any producer failure: try __array__ instead
            pass  # e.g. a device other than the CPU, or an unsupported dtype
    try:
        return np.asarray(obj)
    except Exception as exc:  # any producer's own failure becomes one clear error
        raise TypeError(f"{name} must be an array of numbers, got {type(obj).__name__}: {exc}") from exc


def host_array(value, key):
    """A NumPy view (or copy) of a parameter given as an ndarray, a torch tensor on any
    device, a DLPack producer or an array-like; errors name ``key``."""
    if hasattr(value, "detach"):  # torch tensors: drop autograd, move to host memory
        value = value.detach()
        device = getattr(getattr(value, "device", None), "type", "cpu")
        if device == "meta":
            raise ValueError(f"state_dict entry {key!r} is on the meta device and holds no "
                             "data: load or materialise the model's weights first")
        if device != "cpu":
            try:
                value = value.cpu()
            except Exception as exc:  # noqa: BLE001  any device's failure, with the key
                raise ValueError(f"state_dict entry {key!r}: cannot copy it from its "
                                 f"{device} device: {exc}") from exc
    try:
        return as_array(value, key)
    except TypeError as exc:
        raise TypeError(f"state_dict entry {key!r}: {exc}") from exc


def native(arr):
    """``arr`` in native byte order (the kernels read machine floats)."""
    if not arr.dtype.isnative and arr.dtype.kind in "fc":
        return fresh_copy(arr, arr.dtype.newbyteorder("="), order="K")
    return arr


def single(value, name):
    """An int from an int or a 1-element tuple/list, as torch's _single does."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(
                f"expected {name} to be a single integer value or a list of 1 values "
                f"to match the convolution dimensions, but got {name}={list(value)}")
        value = value[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or a 1-element tuple of ints, got {value!r}")
    return int(value)


def output_length(length, kernel_size, stride=1, padding=0, output_padding=0, dilation=1):
    """The output length of a transposed convolution, as torch computes it.

    ``L_out = (L_in - 1)*stride - 2*padding + dilation*(K - 1) + output_padding + 1``.

    Parameters
    ----------
    length : int
        The input length ``L_in``.
    kernel_size : int
    stride, padding, output_padding, dilation : int

    Returns
    -------
    int
        ``L_out``; below 1 for parameters :func:`convt_blas.conv_transpose1d` refuses.

    Examples
    --------
    >>> import convt_blas
    >>> convt_blas.output_length(100, kernel_size=16, stride=8, padding=4)  # HiFi-GAN's 8x
    800
    """
    return (length - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def astype_hint(name, dtype):
    """How to give ``name`` the ``dtype`` a call needs: lists of Python floats become
    float64 arrays, which a float32 weight does not take."""
    target = f"np.{np.dtype(dtype).name}"
    return (f"; convert the {name}: {name}.astype({target}), or np.asarray({name}, {target}) "
            "for a list")


def check_out(out, shape, dtype, operands, xp=np):
    """ValueError/TypeError unless ``out`` can take the result; shared by every backend.

    ``xp`` is the array module of ``out`` (numpy, or cupy for the CUDA path), whose
    ``may_share_memory`` tells whether ``out`` overlaps one of ``operands``.
    """
    if xp is np and not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.c_contiguous or (xp is np and not out.flags.writeable):
        raise ValueError("out must be a writeable, C-contiguous array")
    for name, arr in operands:
        if arr is not None and xp.may_share_memory(out, arr):
            raise ValueError(f"out overlaps {name}; pass a separate array")


class ConvSpec(NamedTuple):
    """A checked convolution: every size the kernels need, with the output length."""

    batch: int
    in_channels: int
    in_length: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    output_padding: int
    dilation: int
    groups: int
    out_length: int
    batched: bool

    @property
    def kernel_params(self):
        """The 10-tuple ``convt_blas.kernels`` takes (everything but out_length, batched)."""
        return self[:10]

    @property
    def overlap(self):
        """Samples by which one input position's output span passes the next one's
        start: ``dilation*(K - 1) + 1 - stride`` (negative when spans leave gaps)."""
        return self.dilation * (self.kernel_size - 1) + 1 - self.stride

    @property
    def out_shape(self):
        """Shape of the result as returned: (N, C_out, L_out), or (C_out, L_out) unbatched."""
        if self.batched:
            return (self.batch, self.out_channels, self.out_length)
        return (self.out_channels, self.out_length)


def check_dtypes(input_dtype, weight_dtype, bias_dtype=None):
    """TypeError unless input, weight and bias share one supported dtype."""
    for name, dtype in (("input", input_dtype), ("weight", weight_dtype), ("bias", bias_dtype)):
        if dtype is not None and not is_supported(dtype):
            raise TypeError(f"{name} has dtype {dtype}; conv_transpose1d supports "
                            f"{SUPPORTED_NAMES}")
    if weight_dtype != input_dtype:
        raise TypeError(f"input dtype {input_dtype} and weight dtype {weight_dtype} must be the "
                        f"same{astype_hint('input', weight_dtype)}")
    if bias_dtype is not None and bias_dtype != input_dtype:
        raise TypeError(f"input dtype {input_dtype} and bias dtype {bias_dtype} must be the "
                        f"same{astype_hint('bias', input_dtype)}")


def check_arguments(input_shape, weight_shape, bias_shape=None, stride=1, padding=0,
                    output_padding=0, groups=1, dilation=1):
    """Check shapes and parameters as torch does; return a :class:`ConvSpec`.

    Works on shapes alone, so every backend (CPU, CUDA, streaming, Dask) shares
    these checks and their messages. ``bias_shape`` is None when there is no bias.
    """
    stride = single(stride, "stride")
    padding = single(padding, "padding")
    output_padding = single(output_padding, "output_padding")
    dilation = single(dilation, "dilation")
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"groups must be an int, got {groups!r}")
    groups = int(groups)

    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    if len(input_shape) not in (2, 3):
        raise ValueError("Expected 2D (unbatched) or 3D (batched) input to conv_transpose1d, "
                         f"but got input of shape {input_shape}")
    if len(weight_shape) != 3:
        raise ValueError(f"weight must be 3-dimensional (C_in, C_out/groups, K), "
                         f"got weight of shape {weight_shape}")
    if stride < 1:
        raise ValueError(f"stride must be positive, got stride={stride}")
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got padding={padding}")
    if output_padding < 0:
        raise ValueError(f"output_padding must be non-negative, got output_padding={output_padding}")
    if dilation < 1:
        raise ValueError(f"dilation must be positive, got dilation={dilation}")
    if groups < 1:
        raise ValueError(f"groups must be positive, got groups={groups}")
    for name, value in (("stride", stride), ("padding", padding),
                        ("output_padding", output_padding), ("dilation", dilation),
                        ("groups", groups)):
        if value > MAX_ELEMENTS:
            raise ValueError(f"{name}={value} is too large (at most 2**59)")

    batched = len(input_shape) == 3
    n, c_in, l_in = input_shape if batched else (1, *input_shape)
    w_in, c_out_g, k = weight_shape
    if w_in < groups or w_in % groups:
        raise ValueError(f"Given groups={groups}, expected weight.shape[0] to be a positive "
                         f"multiple of groups, but got weight of shape {weight_shape}")
    if c_in != w_in:
        raise ValueError(f"Given weight of shape {weight_shape}, expected input of shape "
                         f"{input_shape} to have {w_in} channels, but got {c_in} channels instead")
    if c_out_g < 1:
        raise ValueError(f"weight.shape[1] (out_channels / groups) must be positive, "
                         f"got weight of shape {weight_shape}")
    if k < 1:
        raise ValueError(f"kernel size weight.shape[2] must be positive, "
                         f"got weight of shape {weight_shape}")
    if output_padding >= stride and output_padding >= dilation:
        raise ValueError(f"output_padding must be smaller than either stride or dilation, but got "
                         f"output_padding={output_padding}, stride={stride}, dilation={dilation}")
    c_out = c_out_g * groups
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ValueError(f"Given weight of shape {weight_shape} and groups={groups}, expected bias "
                         f"to be 1-dimensional with {c_out} elements, but got bias of shape "
                         f"{tuple(bias_shape)}")
    if l_in < 1 and n > 0:
        raise ValueError(f"input length must be positive (only an empty batch may have length 0), "
                         f"got input of shape {input_shape}")
    l_out = output_length(l_in, k, stride, padding, output_padding, dilation)
    if l_out < 1 and (n > 0 or l_out < 0):
        raise ValueError(
            "output length must be positive: (L_in - 1)*stride - 2*padding + dilation*(K - 1) "
            f"+ output_padding + 1 = ({l_in} - 1)*{stride} - 2*{padding} + {dilation}*({k} - 1) "
            f"+ {output_padding} + 1 = {l_out}")
    if n * c_out * l_out > MAX_ELEMENTS or l_out > MAX_ELEMENTS:
        raise ValueError(f"output of shape ({n}, {c_out}, {l_out}) is too large to index")
    return ConvSpec(n, c_in, l_in, c_out, k, stride, padding, output_padding, dilation, groups,
                    l_out, batched)




def check_parameters(weight_shape, bias_shape=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """:func:`check_arguments` on the parameters alone (for a layer or a stream, before
    any input): an empty batch of ``2*padding + 1`` samples, whose output length is
    positive whatever the other parameters, so only they can fail."""
    padding = single(padding, "padding")
    weight_shape = tuple(weight_shape)
    probe = (0, weight_shape[0] if weight_shape else 0, 2 * max(padding, 0) + 1)
    return check_arguments(probe, weight_shape, bias_shape, stride, padding, output_padding,
                           groups, dilation)


def parameters_repr(layer, has_bias):
    """torch's repr of a transposed convolution, for an object with ConvTranspose1d's
    attribute names (ints or 1-tuples): parameters at their defaults are left out."""
    text = (f"{layer.in_channels}, {layer.out_channels}, kernel_size={layer.kernel_size}, "
            f"stride={layer.stride}")
    for name, default in (("padding", 0), ("dilation", 1), ("output_padding", 0), ("groups", 1)):
        value = getattr(layer, name)
        if value not in (default, (default,)):
            text += f", {name}={value}"
    if not has_bias:
        text += ", bias=False"
    if layer.dtype != np.float32:
        text += f", dtype={layer.dtype}"
    return f"{type(layer).__name__}({text})"
