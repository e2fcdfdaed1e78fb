"""A reference conv_transpose1d written from the definition, independent of the kernels.

    y[n, g*C_out_g + o, l*stride + k*dilation - padding] += x[n, g*C_in_g + i, l] * w[g*C_in_g + i, o, k]

It accumulates in float64 / complex128 with plain loops over (n, i, k),
vectorised only over output channels and input positions.
"""
import numpy as np


def conv_transpose1d_reference(x, w, bias=None, stride=1, padding=0, output_padding=0,
                               groups=1, dilation=1):
    """conv_transpose1d from its definition, in float64 (complex128), to check others against.

    Slow (a Python loop over batch, input channels and taps) and unchecked:
    arguments are plain ints, valid for :func:`convt_blas.conv_transpose1d`.

    Parameters
    ----------
    x : array_like, shape (N, C_in, L_in) or (C_in, L_in)
    w : array_like, shape (C_in, C_out / groups, K)
    bias : array_like, shape (C_out,), optional
    stride, padding, output_padding, groups, dilation : int

    Returns
    -------
    numpy.ndarray, shape (N, C_out, L_out) or (C_out, L_out)
        float64, or complex128 when an operand is complex.

    Examples
    --------
    >>> import numpy as np, convt_blas
    >>> from convt_blas.reference import conv_transpose1d_reference
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 4, 30)), rng.standard_normal((4, 3, 5))
    >>> expected = conv_transpose1d_reference(x, w, stride=2, padding=1)
    >>> expected.dtype, np.allclose(convt_blas.conv_transpose1d(x, w, stride=2, padding=1),
    ...                             expected)
    (dtype('float64'), True)
    """
    x = np.asarray(x)
    w = np.asarray(w)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[None]
    acc = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(w) else np.float64
    n, c_in, length = x.shape
    _, c_out_g, k_size = w.shape
    c_in_g = c_in // groups
    full = (length - 1) * stride + dilation * (k_size - 1) + 1 + output_padding
    y = np.zeros((n, c_out_g * groups, full), dtype=acc)
    span = (length - 1) * stride + 1
    for b in range(n):
        for i in range(c_in):
            g = i // c_in_g
            rows = slice(g * c_out_g, (g + 1) * c_out_g)
            for k in range(k_size):
                start = k * dilation
                y[b, rows, start:start + span:stride] += (
                    w[i, :, k, None].astype(acc) * x[b, i, None, :].astype(acc))
    l_out = full - 2 * padding
    y = y[:, :, padding:padding + l_out]
    if bias is not None:
        y = y + np.asarray(bias).astype(acc)[None, :, None]
    return y[0] if unbatched else y
