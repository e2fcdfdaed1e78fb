"""conv_transpose1d_backward: the gradients of conv_transpose1d, as torch's autograd gives them.

The arguments are checked as the forward's are (convt_blas._validation) plus
grad_output's shape; the nogil kernels (pyx/backward.pxi) then compute
grad_input and grad_weight, and NumPy sums grad_bias.
"""
from typing import NamedTuple

import numpy as np

from . import _threads, kernels
from ._memory import check_fits, fresh_copy, workspace
from ._validation import (as_array, astype_hint, check_arguments, check_dtypes, compute_dtype,
                          is_supported, native)


class Gradients(NamedTuple):
    """A layer's gradients (:meth:`convt_blas.ConvTranspose1d.backward`)."""

    input: np.ndarray
    weight: np.ndarray
    bias: object  # numpy.ndarray, or None for a layer without bias


def _output_mask(mask):
    """``output_mask`` as three bools, or a clear error."""
    try:
        values = tuple(mask)
    except TypeError:
        values = None
    if values is None or len(values) != 3 or not all(
            isinstance(v, (bool, np.bool_)) for v in values):
        raise ValueError("output_mask must be three bools (grad_input, grad_weight, grad_bias), "
                         f"got {mask!r}")
    return tuple(bool(v) for v in values)


def _compute_copy(arr, dtype, conjugate=False):
    """``arr`` as a C-contiguous, aligned array of ``dtype`` (conjugated if asked),
    without a copy when it already is one."""
    if conjugate:
        check_fits(arr.size * np.dtype(dtype).itemsize, f"a conjugate of an array of shape "
                                                        f"{arr.shape}")
        return np.conj(arr.astype(dtype, copy=False), order="C")
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned:
        return arr
    return fresh_copy(arr, dtype)


def conv_transpose1d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, *, output_mask=(True, True, True)):
    """Gradients of :func:`conv_transpose1d` with respect to its input, weight and bias.

    The backward of ``torch.nn.functional.conv_transpose1d``, as
    ``torch.ops.aten.convolution_backward(..., transposed=True, ...)`` and
    torch's autograd compute it: for a loss whose gradient with respect to
    the output is ``grad_output``, the gradients with respect to ``input``,
    ``weight`` and the bias. Complex gradients follow torch's convention
    (the conjugate Wirtinger derivative): ``grad_input`` correlates
    ``grad_output`` with ``conj(weight)``, ``grad_weight`` correlates
    ``conj(input)`` with ``grad_output``. float16 and bfloat16 are computed in float32.

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, L_out) or (C_out, L_out)
        The gradient of the loss with respect to the forward's output; its
        shape must be the forward's output shape.
    input : array_like, shape (N, C_in, L_in) or (C_in, L_in)
        The forward's input.
    weight : array_like, shape (C_in, C_out / groups, K)
        The forward's weight.
    stride, padding, output_padding, dilation : int or 1-tuple of int
    groups : int
        The forward's parameters.
    output_mask : sequence of three bools (keyword-only)
        Which of (grad_input, grad_weight, grad_bias) to compute; the others
        are returned as None.

    Returns
    -------
    grad_input : numpy.ndarray of input's shape, or None
    grad_weight : numpy.ndarray of weight's shape, or None
    grad_bias : numpy.ndarray, shape (C_out,), or None
        C-contiguous, of the input's dtype.

    Raises
    ------
    TypeError
        Unsupported or mismatched dtypes, or parameters that are not ints.
    ValueError
        Invalid shapes or parameter values (as :func:`conv_transpose1d`), a
        ``grad_output`` whose shape is not the forward's output shape, or an
        ``output_mask`` that is not three bools.
    MemoryError
        The gradients or the workspace cannot be allocated.

    See Also
    --------
    convt_blas.conv_transpose1d : the forward.
    convt_blas.ConvTranspose1d.backward : the layer's gradients.

    Examples
    --------
    >>> import numpy as np, convt_blas
    >>> x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)  # (N, C_in, L_in)
    >>> w = np.ones((2, 1, 4), np.float32)                   # (C_in, C_out, K)
    >>> y = convt_blas.conv_transpose1d(x, w, stride=2)      # (1, 1, 8)
    >>> gx, gw, gb = convt_blas.conv_transpose1d_backward(np.ones_like(y), x, w, stride=2)
    >>> gx  # each input position reaches K = 4 outputs
    array([[[4., 4., 4.],
            [4., 4., 4.]]], dtype=float32)
    >>> gw  # each tap sees every input position once
    array([[[ 3.,  3.,  3.,  3.]],
    <BLANKLINE>
           [[12., 12., 12., 12.]]], dtype=float32)
    >>> gb
    array([8.], dtype=float32)

    Only the weight's gradient:

    >>> convt_blas.conv_transpose1d_backward(np.ones_like(y), x, w, stride=2,
    ...                                      output_mask=(False, True, False))[0] is None
    True
    """
    _threads.configure_blas()  # the BLAS the workers are secured for
    mask = _output_mask(output_mask)
    given = {"grad_output": as_array(grad_output, "grad_output"),
             "input": as_array(input, "input"), "weight": as_array(weight, "weight")}
    go, x, w = (native(given[name]) for name in ("grad_output", "input", "weight"))
    check_dtypes(x.dtype, w.dtype)
    if go.dtype != x.dtype:
        if not is_supported(go.dtype):
            raise TypeError(f"grad_output has dtype {go.dtype}; conv_transpose1d_backward "
                            f"supports the forward's dtypes")
        raise TypeError(f"grad_output dtype {go.dtype} and input dtype {x.dtype} must be the "
                        f"same{astype_hint('grad_output', x.dtype)}")
    spec = check_arguments(x.shape, w.shape, None, stride, padding, output_padding, groups,
                           dilation)
    if go.shape != spec.out_shape:
        raise ValueError(f"grad_output has shape {go.shape}, but the forward's output for input "
                         f"of shape {x.shape} and weight of shape {w.shape} has shape "
                         f"{spec.out_shape}")

    dtype = x.dtype
    compute = compute_dtype(dtype)  # float32 for float16 and bfloat16
    complex_ = compute.kind == "c"
    go3 = go if spec.batched else go[np.newaxis]
    x3 = x if spec.batched else x[np.newaxis]
    grad_bias = go3.sum(axis=(0, 2), dtype=compute).astype(dtype) if mask[2] else None
    if not (mask[0] or mask[1]):
        return None, None, grad_bias

    n, c_in, l_in = x3.shape
    nbytes = compute.itemsize * ((n * c_in * l_in if mask[0] else 0)
                                 + (w.size if mask[1] else 0))
    check_fits(nbytes, "the gradients")
    grad_input = np.empty((n, c_in, l_in), compute) if mask[0] else None
    grad_weight = np.empty(w.shape, compute) if mask[1] else None
    if spec.batch == 0:
        if grad_weight is not None:
            grad_weight[...] = 0
    else:
        go_c = _compute_copy(go3, compute)
        # grad_input reads conj(W), grad_weight conj(X) (torch's complex convention).
        w_c = _compute_copy(w, compute, conjugate=complex_) if mask[0] else None
        x_c = _compute_copy(x3, compute, conjugate=complex_) if mask[1] else None
        shape = spec.kernel_params
        units, shared, per_worker = kernels.backward_needs(shape, mask[0], mask[1])
        flops = 2 * spec.batch * l_in * c_in * spec.kernel_size * (
            spec.out_channels // spec.groups) * (mask[0] + mask[1])
        workers = _threads.plan_threads(units, flops)
        check_fits(compute.itemsize * (shared + per_worker * workers), "the backward workspace")
        scratch = workspace(compute, shared + per_worker * workers)
        workers = _threads.worker_pool.enter(workers)
        try:
            kernels.run_backward(shape, go_c, x_c, w_c, grad_input, grad_weight, scratch,
                                 workers)
        finally:
            _threads.worker_pool.exit(workers)

    if grad_input is not None:
        grad_input = grad_input.astype(dtype, copy=False)
        if not spec.batched:
            grad_input = grad_input[0]
    if grad_weight is not None:
        grad_weight = grad_weight.astype(dtype, copy=False)
    return grad_input, grad_weight, grad_bias
