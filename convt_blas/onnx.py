"""ONNX's ConvTranspose for 1-D signals, on convt_blas.conv_transpose1d.

ONNX (and TensorFlow's 'SAME') crop the full transposed convolution by a
different amount at each end, which torch's symmetric ``padding`` cannot say.
The full output here is the unpadded one, of length
``stride*(L_in - 1) + (K - 1)*dilation + 1``, followed by ``output_padding``
bias-only positions; ONNX keeps the window ``[begin, begin + L_out)`` of it.
One call of the kernel computes a torch-style window that contains it, and
one slice copy takes it out (none when the torch window is the ONNX one).
"""
import numbers

import numpy as np

from ._functional import conv_transpose1d
from ._validation import as_array, single

AUTO_PAD_MODES = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _positive(value, name):
    value = single(value, name)
    if value < 1:
        raise ValueError(f"{name} must be positive, got {name}={value}")
    return value


def _pads(pads):
    """(begin, end) from ONNX's ``[begin, end]`` or one int for both."""
    if isinstance(pads, (tuple, list)):
        if len(pads) != 2:
            raise ValueError(f"pads must hold 2 values [begin, end] for a 1-D convolution, "
                             f"got pads={list(pads)}")
        begin, end = (single(p, "pads") for p in pads)
    else:
        begin = end = single(pads, "pads")
    if begin < 0 or end < 0:
        raise ValueError(f"pads must be non-negative, got pads={[begin, end]}")
    return begin, end


def _auto_pad(auto_pad):
    if isinstance(auto_pad, bytes):  # attributes read from an ONNX model are bytes
        auto_pad = auto_pad.decode("ascii", "replace")
    if not isinstance(auto_pad, str):
        raise TypeError(f"auto_pad must be a string, got {auto_pad!r}")
    if auto_pad not in AUTO_PAD_MODES:
        raise ValueError(f"auto_pad must be one of {', '.join(AUTO_PAD_MODES)}, "
                         f"got auto_pad={auto_pad!r}")
    return auto_pad


def _begin_of_total(total_padding, auto_pad):
    """ONNX's split of a total padding: the odd one at the end for SAME_UPPER, else at the
    begin. A negative total (output longer than the full output) crops nothing at the begin."""
    if total_padding < 0:
        return 0
    if auto_pad == "SAME_UPPER":
        return total_padding // 2
    return total_padding - total_padding // 2


def _output_window(in_length, kernel_size, stride, pads, output_padding, dilation, auto_pad,
                   output_shape):
    """(begin, L_out): ONNX's output as positions ``[begin, begin + L_out)`` of the full output.

    Arguments are checked ints (``pads`` a (begin, end) pair, ``output_shape``
    an int or None). ``L_out`` may be below 1; the caller says why that is wrong.
    """
    full_length = stride * (in_length - 1) + (kernel_size - 1) * dilation + 1 + output_padding
    if output_shape is not None:  # the pads follow from the requested length
        out_length = output_shape
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out_length = in_length * stride
    elif auto_pad == "VALID":
        return 0, full_length
    else:
        begin, end = pads
        return begin, full_length - begin - end
    return _begin_of_total(full_length - out_length, auto_pad), out_length


def conv_transpose(x, w, b=None, *, strides=None, pads=None, output_padding=None, dilations=None,
                   group=1, auto_pad="NOTSET", output_shape=None, kernel_shape=None):
    """ONNX's ConvTranspose for 1-D inputs.

    Attributes take ONNX's list form (``strides=[2]``, ``pads=[begin, end]``)
    or plain ints (``pads=1`` for both ends).

    The output keeps positions ``[begin, begin + L_out)`` of the full output
    ``stride*(L_in - 1) + output_padding + (K - 1)*dilation + 1`` positions
    long, whose last ``output_padding`` positions hold the bias alone:

    - ``pads=[begin, end]`` (auto_pad NOTSET): ``L_out`` is the full length
      less ``begin + end``.
    - ``auto_pad='VALID'``: no cropping; ``pads`` must be left out.
    - ``auto_pad='SAME_UPPER'`` / ``'SAME_LOWER'``: ``L_out = L_in * stride``;
      the total padding (full length - ``L_out``) is split in halves, the odd
      one cropped at the end for SAME_UPPER and at the begin for SAME_LOWER.
    - ``output_shape=[L_out]``: the total padding is full length - ``L_out``,
      split as for SAME_UPPER when auto_pad is SAME_UPPER and with the odd one
      at the begin otherwise (NOTSET, SAME_LOWER, VALID); ``pads`` are ignored.

    The spec leaves open an output longer than the full output (a negative
    total padding: an ``output_shape`` past the full length, or SAME with
    ``stride > (K - 1)*dilation + 1 + output_padding``). Here nothing is cropped
    at the begin and the positions past the full output hold the bias alone
    (zeros without one), as the ``output_padding`` positions do. ONNX Runtime
    (1.20 to 1.32) gives the same values for the ``output_shape`` lengths it
    accepts (less than ``stride`` past the unpadded output) and refuses longer
    ones; for SAME it returns the full output, shorter than ``L_in * stride``,
    whose values are the first ones here.

    Parameters
    ----------
    x : array_like, shape (N, C_in, L_in) or unbatched (C_in, L_in)
    w : array_like, shape (C_in, C_out / group, K)
    b : array_like, shape (C_out,), optional
    strides, dilations : int or list of 1 int, optional
        Default 1.
    pads : int or list of 2 ints [begin, end], optional
        Non-negative; default 0.
    output_padding : int or list of 1 int, optional
        Default 0; smaller than the stride or the dilation.
    group : int
        Divides ``C_in``; ``C_out = group * w.shape[1]``.
    auto_pad : {'NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'}
    output_shape : int or list of 1 int, optional
        The output length (spatial only, as ONNX Runtime takes it).
    kernel_shape : int or list of 1 int, optional
        Must equal ``w.shape[2]`` when given.

    Returns
    -------
    numpy.ndarray, shape (N, C_out, L_out) or (C_out, L_out)
        C-contiguous, of the input's dtype (float16, float32, float64,
        complex64 or complex128, as ``convt_blas.conv_transpose1d``).

    Raises
    ------
    TypeError
        Attributes that are not ints (``auto_pad`` not a string), unsupported
        or mismatched dtypes.
    ValueError
        An unknown ``auto_pad``, attributes of the wrong length or value
        (negative pads, pads with auto_pad other than NOTSET, ``output_padding``
        not smaller than the stride or the dilation, ``kernel_shape`` not
        matching ``w``, ``group`` not dividing the channels), wrong shapes, or
        an output length below 1; the message names the attribute.

    Examples
    --------
    ONNX's ``test_convtranspose_autopad_same`` in 1-D: the full output has 7
    positions and SAME_UPPER keeps 6, cropping the odd one at the end.

    >>> import numpy as np
    >>> from convt_blas.onnx import conv_transpose
    >>> x = np.array([[[0.0, 1.0, 2.0]]], dtype=np.float32)
    >>> w = np.ones((1, 2, 3), dtype=np.float32)
    >>> conv_transpose(x, w, strides=[2], auto_pad="SAME_UPPER")
    array([[[0., 0., 1., 1., 3., 2.],
            [0., 0., 1., 1., 3., 2.]]], dtype=float32)
    >>> conv_transpose(x, w, strides=[2], pads=[1, 0])[0, 0]
    array([0., 1., 1., 3., 2., 2.], dtype=float32)
    """
    x = as_array(x, "x")
    w = as_array(w, "w")
    auto_pad = _auto_pad(auto_pad)
    if x.ndim not in (2, 3):
        raise ValueError(f"x must be 3-dimensional (N, C_in, L_in) or unbatched (C_in, L_in), "
                         f"got x of shape {x.shape}")
    if w.ndim != 3:
        raise ValueError(f"w must be 3-dimensional (C_in, C_out / group, K), "
                         f"got w of shape {w.shape}")
    stride = _positive(1 if strides is None else strides, "strides")
    dilation = _positive(1 if dilations is None else dilations, "dilations")
    extra = single(0 if output_padding is None else output_padding, "output_padding")
    if extra < 0 or extra >= max(stride, dilation):
        raise ValueError(f"output_padding must be non-negative and smaller than the stride or "
                         f"the dilation, got output_padding={extra}, strides={stride}, "
                         f"dilations={dilation}")
    if pads is not None and auto_pad != "NOTSET":
        raise ValueError(f"pads cannot be given with auto_pad={auto_pad!r}; "
                         "use auto_pad='NOTSET' for explicit pads")
    begin_end = _pads(0 if pads is None else pads)
    if output_shape is not None:
        output_shape = _positive(output_shape, "output_shape")
    kernel_size = w.shape[2]
    if kernel_shape is not None and single(kernel_shape, "kernel_shape") != kernel_size:
        raise ValueError(f"kernel_shape={kernel_shape} does not match w of shape {w.shape} "
                         f"(kernel size {kernel_size})")
    if isinstance(group, (bool, np.bool_)) or not isinstance(group, numbers.Integral):
        raise TypeError(f"group must be an int, got {group!r}")
    in_channels, in_length = x.shape[-2:]
    if in_length < 1:
        raise ValueError(f"x must have a positive length, got x of shape {x.shape}")
    if group < 1 or in_channels % group or w.shape[0] % group:
        raise ValueError(f"group={group} must be positive and divide the input channels of x "
                         f"(shape {x.shape}) and w (shape {w.shape})")

    begin, out_length = _output_window(in_length, kernel_size, stride, begin_end, extra, dilation,
                                       auto_pad, output_shape)
    if out_length < 1:  # only explicit pads can crop everything
        raise ValueError(f"output length must be positive, but pads={list(begin_end)} crop "
                         f"{sum(begin_end)} of the full output's {out_length + sum(begin_end)} "
                         "positions")
    return _cropped(x, w, b, stride, dilation, int(group), begin, out_length)


def _cropped(x, w, b, stride, dilation, group, begin, out_length):
    """Positions ``[begin, begin + out_length)`` of the unpadded output extended by bias-only
    positions, from one kernel call with the widest torch padding whose window holds them."""
    unpadded_length = stride * (x.shape[-1] - 1) + (w.shape[2] - 1) * dilation + 1
    past_end = begin + out_length - unpadded_length  # > 0: bias-only positions wanted
    max_output_padding = max(stride, dilation) - 1  # the most the kernel accepts
    if past_end <= max_output_padding:
        # Torch's window is [padding, unpadded_length + output_padding - padding).
        padding = max(0, min(begin, max_output_padding - past_end))
        y = conv_transpose1d(x, w, b, stride, padding, max(0, past_end + padding), group,
                             dilation)
        start = begin - padding
        if start == 0 and y.shape[-1] == out_length:
            return y
        return np.ascontiguousarray(y[..., start:start + out_length])
    # Longer than output_padding may reach (only a negative total padding, so begin == 0).
    y = conv_transpose1d(x, w, b, stride, 0, 0, group, dilation)
    result = np.empty(y.shape[:-1] + (out_length,), dtype=y.dtype)
    kept = max(0, unpadded_length - begin)
    result[..., :kept] = y[..., begin:]
    result[..., kept:] = 0 if b is None else as_array(b, "b")[:, None]
    return result
