"""conv_transpose1d: dispatch to the nogil kernel (or to convt_blas.cuda for CuPy arrays).

Everything that can be wrong with the arguments is found (convt_blas._validation)
before any memory of the caller's is written; the kernel then only computes.
"""
import functools

import numpy as np

from . import _threads, kernels
from ._memory import check_fits, fresh_copy, workspace
from ._validation import (as_array, check_arguments, check_dtypes, check_out, compute_dtype,
                          is_low_precision, native)



def _kernel_strides(x):
    """Element strides (batch, channel, length) the kernel accepts for ``x``, or None.

    BLAS needs unit stride along the length (channel-major rows) or along the
    channels (channels-last rows). Strides of size-1 axes never move the
    address, so they are set to values that satisfy the kernel's checks.
    """
    if not x.flags.aligned:
        return None
    item = x.itemsize
    n, c, length = x.shape
    strides = []
    for s in x.strides:
        if s % item:
            return None
        strides.append(s // item)
    s_n, s_c, s_l = strides
    if n == 1:
        s_n = 0
    if length == 1:
        s_l = 1 if s_c != 1 else c
    if c == 1:
        s_c = length if s_l == 1 else 1
    if s_n < 0:
        return None
    if s_l == 1 and s_c >= length:
        return s_n, s_c, s_l
    if s_c == 1 and s_l >= c:
        return s_n, s_c, s_l
    return None


@functools.lru_cache(maxsize=1024)
def _call_plan(params, has_prepared, winograd_enabled, blas_small_matrix_kernels):
    """The kernels' plan (kernels.CallPlan) of a call, made once and handed to
    kernels.run, given whether it can bring a prepared weight (and rows).

    Remembered per shape and the planner's two settings: planning takes
    about 15 us, a small call a few hundred.
    """
    return kernels.plan_call(params, has_prepared, winograd_enabled)


def set_winograd(enabled):
    """Allow (the default) or forbid Winograd's algorithms on layers that qualify.

    Layers with ``kernel_size == 2*stride``, no dilation, an input of at least
    512 positions (256 when a group's weight has at most 2**21 elements) and
    at least 64 input channels and ``C_out/groups * stride`` per group run
    F(3,2): four GEMMs for every three output strides instead of six,
    a third fewer multiply-adds, with a rounding error within about twice
    that of the :term:`GEMM path` (see :ref:`winograd`). A
    :class:`ConvTranspose1d` with ``kernel_size == 3*stride`` or ``4*stride``
    and at least 256 channels on both GEMM sides runs F(4,3) or F(3,4) from
    256 positions on (160 from 1024 input channels): half the multiply-adds,
    at up to about five times the GEMM path's rounding error in float32
    (see :ref:`winograd-forms`). Batch elements whose
    result is not all finite (inf or NaN inputs or weights) are computed
    again on the GEMM path, so they get its infs and NaNs.
    ``set_winograd(False)`` gives every layer the GEMM path and its rounding.
    Process-wide; it also applies to calls through the C API. A call reads
    it once: a change from another thread may change which path a call
    takes, never make it fail (a C API call given a workspace sized under
    the other setting runs the plan that workspace was sized for).

    Parameters
    ----------
    enabled : bool

    Examples
    --------
    >>> import convt_blas
    >>> convt_blas.set_winograd(False)  # every layer on the GEMM path
    >>> convt_blas.get_winograd()
    False
    >>> convt_blas.set_winograd(True)
    """
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"set_winograd() takes True or False, not {type(enabled).__name__}")
    kernels.set_winograd(bool(enabled))


def get_winograd():
    """Whether layers that qualify may run Winograd's algorithms (see :func:`set_winograd`).

    Returns
    -------
    bool
        True unless ``set_winograd(False)`` was called last.

    Examples
    --------
    >>> import convt_blas
    >>> convt_blas.get_winograd()
    True
    """
    return kernels.winograd_enabled()


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, out=None):
    """1-D transposed convolution, as ``torch.nn.functional.conv_transpose1d``.

    Parameters
    ----------
    input : array_like, shape (N, C_in, L_in) or (C_in, L_in)
        Any array-like: numpy arrays, objects with ``__array__`` or
        ``__dlpack__`` (a contiguous torch CPU tensor is used without a copy).
    weight : array_like, shape (C_in, C_out / groups, K)
    bias : array_like, shape (C_out,), optional
    stride, padding, output_padding, dilation : int or 1-tuple of int
    groups : int
        ``C_in`` must be divisible by ``groups``; ``C_out = groups * weight.shape[1]``.
    out : numpy.ndarray, optional (keyword-only)
        C-contiguous array of the result's shape and dtype to write into.

    Returns
    -------
    numpy.ndarray, shape (N, C_out, L_out) or (C_out, L_out)
        C-contiguous, of the input's dtype, with
        ``L_out = (L_in - 1)*stride - 2*padding + dilation*(K - 1) + output_padding + 1``.

    Raises
    ------
    TypeError
        Unsupported or mismatched dtypes, or parameters that are not ints.
    ValueError
        Invalid shapes or parameter values; the message names them.
    MemoryError
        The output or the workspace cannot be allocated.

    See Also
    --------
    convt_blas.ConvTranspose1d : the layer, which keeps its weight's prepared forms.
    convt_blas.cuda.conv_transpose1d : the CUDA path, which CuPy inputs take.

    Examples
    --------
    >>> import numpy as np, convt_blas
    >>> x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)  # (N, C_in, L_in)
    >>> w = np.ones((2, 1, 4), np.float32)                   # (C_in, C_out, K)
    >>> convt_blas.conv_transpose1d(x, w, stride=2)
    array([[[ 3.,  3.,  8.,  8., 12., 12.,  7.,  7.]]], dtype=float32)
    >>> convt_blas.conv_transpose1d(x, w, stride=2, padding=1).shape
    (1, 1, 6)

    Input, weight and bias share one dtype; convert the others:

    >>> convt_blas.conv_transpose1d(x.astype(np.float64), w)
    Traceback (most recent call last):
    ...
    TypeError: input dtype float64 and weight dtype float32 must be the same; convert...
    """
    if type(input).__module__.startswith("cupy"):  # CuPy arrays compute on their GPU
        from . import cuda
        return cuda.conv_transpose1d(input, weight, bias, stride, padding, output_padding,
                                     groups, dilation, out=out)
    return conv_transpose1d_cpu(input, weight, bias, stride, padding, output_padding, groups,
                                dilation, out)


def conv_transpose1d_cpu(input, weight, bias, stride, padding, output_padding, groups,
                         dilation, out, weight_cache=None, weight_key=None):
    """conv_transpose1d on the CPU (:func:`conv_transpose1d` without the CuPy dispatch).

    ``weight_cache``: a convt_blas._weight_cache.WeightCache of the caller's
    (a layer, a stream, a Dask graph, a torch Parameter), asked for the
    prepared weight or the weight rows of ``weight`` only when this call reads
    them; None makes neither (the function's plan). ``weight_key``: what the
    cache keys them by (None: the weight array given), for a caller whose
    weight arrives as a new view on every call.
    """
    _threads.configure_blas()  # the plan depends on the BLAS found
    given = {"input": as_array(input, "input"), "weight": as_array(weight, "weight"),
             "bias": None if bias is None else as_array(bias, "bias")}
    x, w = native(given["input"]), native(given["weight"])
    b = None if bias is None else native(given["bias"])
    check_dtypes(x.dtype, w.dtype, None if b is None else b.dtype)
    spec = check_arguments(x.shape, w.shape, None if b is None else b.shape,
                           stride, padding, output_padding, groups, dilation)
    if out is not None:
        # The caller's arrays, not converted copies: out must not overwrite them.
        check_out(out, spec.out_shape, x.dtype, tuple(given.items()))
    if spec.batch == 0:
        return np.zeros(spec.out_shape, x.dtype) if out is None else out

    x3 = x if spec.batched else x[np.newaxis]
    low_precision = is_low_precision(x.dtype)
    if low_precision:  # float16 and bfloat16: computed in float32, returned as given
        work = compute_dtype(x.dtype)
        x3, w = fresh_copy(x3, work, "K"), fresh_copy(w, work, "K")
        b = None if b is None else fresh_copy(b, work, "K")
    # The kernels read weight and bias as C arrays: contiguous and aligned.
    if not (w.flags.c_contiguous and w.flags.aligned):
        w = fresh_copy(w)
    if b is not None and not (b.flags.c_contiguous and b.flags.aligned):
        b = fresh_copy(b)
    strides = _kernel_strides(x3)
    if strides is None:
        x3 = fresh_copy(x3)
        strides = _kernel_strides(x3)

    params = spec.kernel_params
    # The Winograd switch is read once: the plan, the workspace and the kernel
    # follow it, whatever another thread sets meanwhile.
    call = _call_plan(params, weight_cache is not None, kernels.winograd_enabled(),
                      kernels.blas_small_matrix_kernels())
    takes_rows = call.takes_rows and weight_cache is not None and weight_cache.keeps_rows
    flops = 2 * spec.batch * spec.in_length * spec.in_channels * spec.kernel_size * (
        spec.out_channels // spec.groups)
    workers = _threads.plan_threads(spec.batch * call.units_per_sample, flops)
    scratch = workspace(x3.dtype, call.worker_elements * workers)
    full_shape = (spec.batch, spec.out_channels, spec.out_length)
    # An unaligned or low-precision out= is filled from an aligned result at the end.
    direct_out = out is not None and not low_precision and out.flags.aligned
    if not direct_out:
        check_fits(x3.dtype.itemsize * spec.batch * spec.out_channels * spec.out_length,
                   f"the output of shape {full_shape}")
    result = out.reshape(full_shape) if direct_out else np.empty(full_shape, dtype=x3.dtype)

    # After every array is allocated, so that the check sees what is left.
    workers = _threads.worker_pool.enter(workers)
    try:
        # The caller's array, or key: the cache keys what it keeps by it.
        key = given["weight"] if weight_key is None else weight_key
        prepared = (weight_cache.prepared_weight(key, params, w, workers)
                    if call.takes_prepared else None)
        rows = weight_cache.weight_rows(key, params, w, workers) if takes_rows else None
        kernels.run_plan(call, x3, strides, w, b, result, scratch, workers, prepared, rows)
    finally:
        _threads.worker_pool.exit(workers)

    if low_precision:
        result = result.astype(x.dtype)
    if out is not None:
        if not direct_out:
            out.reshape(full_shape)[...] = result
        return out
    return result if spec.batched else result[0]
