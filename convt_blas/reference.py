"""A reference conv_transpose1d written from the definition, independent of the kernels.

    y[n, g*C_out_g + o, l*stride + k*dilation - padding] += x[n, g*C_in_g + i, l] * w[g*C_in_g + i, o, k]

It accumulates in float64 / complex128 with plain loops over (n, i, k),
vectorised only over output channels and input positions.
"""
import numpy as np


def conv_transpose1d_reference(x, w, bias=None, stride=1, padding=0, output_padding=0,
                               groups=1, dilation=1):
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
