"""conv_transpose1d: argument checks and dispatch to the nogil kernel.

Everything that can be wrong with the arguments is found here, before any
memory of the caller's is written; the kernel then only computes.
"""
import functools
import numbers
import os
import threading
from typing import NamedTuple

import numpy as np

from . import _threads, kernels

_COMPUTE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64),
                   np.dtype(np.complex64), np.dtype(np.complex128))
_HALF = np.dtype(np.float16)
_SUPPORTED = "float16, float32, float64, complex64 or complex128"
# Element counts beyond this cannot be indexed safely in 64-bit byte offsets.
_MAX_ELEMENTS = 2 ** 59

_workspaces = threading.local()


def _as_array(obj, name):
    """An ndarray viewing ``obj`` without a copy where possible (DLPack, __array__)."""
    if isinstance(obj, np.ma.MaskedArray):
        # Its masked values would be read as numbers: say so rather than guess.
        raise TypeError(f"{name} is a masked array; conv_transpose1d has no notion of "
                        f"missing values: pass {name}.filled(0) (or another fill value)")
    if isinstance(obj, np.ndarray):
        return obj
    if hasattr(obj, "__dlpack__"):
        try:
            return np.from_dlpack(obj)
        except Exception:  # noqa: BLE001  any producer failure: try __array__ instead
            pass  # e.g. a device other than the CPU, or an unsupported dtype
    try:
        return np.asarray(obj)
    except Exception as exc:  # any producer's own failure becomes one clear error
        raise TypeError(f"{name} must be an array of numbers, got {type(obj).__name__}: {exc}") from exc


def _native(arr):
    """``arr`` in native byte order (the kernels read machine floats)."""
    if not arr.dtype.isnative and arr.dtype.kind in "fc":
        return _fresh_copy(arr, arr.dtype.newbyteorder("="), order="K")
    return arr


# Arrays below this size are not worth a look at the system's memory.
_CHECKED_BYTES = 1 << 28


def _available_memory():
    """Bytes the system can still give without swapping out others (Linux:
    MemAvailable plus free swap), else its physical memory, else None."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return sum(int(fields[key].split()[0]) * 1024 for key in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _check_fits(nbytes, what):
    """MemoryError if an array of ``nbytes`` cannot fit in the memory available now.

    An allocation the system overcommits succeeds, and the process is killed
    when it writes the pages; a large array is measured against what is
    available first instead.
    """
    if nbytes < _CHECKED_BYTES:
        return
    available = _available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs {nbytes / 2 ** 30:.1f} GiB, more than the "
                          f"{available / 2 ** 30:.1f} GiB of memory available")


def _fresh_copy(arr, dtype=None, order="C"):
    """An aligned copy of ``arr`` (as ``dtype``; C-contiguous, or in ``arr``'s own
    axis order for "K"), sized before it is made: a broadcast operand copies in full."""
    dtype = np.dtype(dtype or arr.dtype)
    _check_fits(arr.size * dtype.itemsize, f"a contiguous copy of an array of shape {arr.shape}")
    return np.array(arr, dtype=dtype, order=order, copy=True)


def _single(value, name):
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


def _workspace(dtype, size):
    """A per-thread scratch buffer of at least ``size`` elements, reused across calls."""
    cache = getattr(_workspaces, "buffers", None)
    if cache is None:
        cache = _workspaces.buffers = {}
    buf = cache.get(dtype)
    if buf is None or buf.size < size:
        cache.pop(dtype, None)  # free the old one before allocating the new one
        buf = np.empty(max(size, 1), dtype=dtype)
        cache[dtype] = buf
    return buf


@functools.lru_cache(maxsize=1024)
def _plan_sizes(params, prepared_weight, winograd_enabled, blas_small_matrix_kernels):
    """(takes the prepared weight, takes the weight's rows, units per sample, workspace
    per worker) for a call, given whether it has a prepared weight (and rows).

    Remembered per shape and the planner's two settings: planning takes
    about 15 us, a small call a few hundred.
    """
    takes_prepared = prepared_weight and kernels.takes_prepared_weights(params, winograd_enabled)
    takes_rows = (prepared_weight and not takes_prepared
                  and kernels.takes_weight_rows(params, winograd_enabled))
    return (takes_prepared, takes_rows) + kernels.plan_sizes(params, takes_prepared,
                                                              winograd_enabled)


def set_winograd(enabled):
    """Allow (the default) or forbid Winograd's F(3,2) on layers that qualify.

    Layers with ``kernel_size == 2*stride``, no dilation, an input of at least
    512 positions (256 when a group's weight has at most 2**21 elements) and
    at least 64 input channels and ``C_out/groups * stride`` per group run
    four GEMMs for every three output strides instead of six:
    a third fewer multiply-adds, with a rounding error within about twice
    that of the plain GEMM path (see the README); batch elements whose result
    is not all finite (inf or NaN inputs or weights) are computed again on
    the plain path, so they get its infs and NaNs. ``set_winograd(False)``
    gives every layer the plain GEMM + col2im path and its rounding.
    Process-wide; it also applies to calls through the C API. A call reads
    it once: a change from another thread may change which path a call
    takes, never make it fail (a C API call given a workspace sized under
    the other setting runs the plan that workspace was sized for).
    """
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"set_winograd() takes True or False, not {type(enabled).__name__}")
    kernels.set_winograd(bool(enabled))


def get_winograd():
    """Whether layers that qualify may run Winograd's F(3,2) (see :func:`set_winograd`)."""
    return kernels.winograd_enabled()


def output_length(length, kernel_size, stride=1, padding=0, output_padding=0, dilation=1):
    """L_out = (L_in - 1)*stride - 2*padding + dilation*(K - 1) + output_padding + 1."""
    return (length - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


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
        if dtype is not None and np.dtype(dtype) not in _COMPUTE_DTYPES and dtype != _HALF:
            raise TypeError(f"{name} has dtype {dtype}; conv_transpose1d supports {_SUPPORTED}")
    if weight_dtype != input_dtype:
        raise TypeError(f"input dtype {input_dtype} and weight dtype {weight_dtype} must be the same")
    if bias_dtype is not None and bias_dtype != input_dtype:
        raise TypeError(f"input dtype {input_dtype} and bias dtype {bias_dtype} must be the same")


def check_arguments(input_shape, weight_shape, bias_shape=None, stride=1, padding=0,
                    output_padding=0, groups=1, dilation=1):
    """Check shapes and parameters as torch does; return a :class:`ConvSpec`.

    Works on shapes alone, so every backend (CPU, CUDA, streaming, Dask) shares
    these checks and their messages. ``bias_shape`` is None when there is no bias.
    """
    stride = _single(stride, "stride")
    padding = _single(padding, "padding")
    output_padding = _single(output_padding, "output_padding")
    dilation = _single(dilation, "dilation")
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
        if value > _MAX_ELEMENTS:
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
    if n * c_out * l_out > _MAX_ELEMENTS or l_out > _MAX_ELEMENTS:
        raise ValueError(f"output of shape ({n}, {c_out}, {l_out}) is too large to index")
    return ConvSpec(n, c_in, l_in, c_out, k, stride, padding, output_padding, dilation, groups,
                    l_out, batched)


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
    """
    if type(input).__module__.startswith("cupy"):  # CuPy arrays compute on their GPU
        from . import cuda
        return cuda.conv_transpose1d(input, weight, bias, stride, padding, output_padding,
                                     groups, dilation, out=out)
    return _conv_transpose1d(input, weight, bias, stride, padding, output_padding, groups,
                             dilation, out)


def _conv_transpose1d(input, weight, bias, stride, padding, output_padding, groups, dilation,
                      out, prepared_weight=None, weight_rows=None):
    """conv_transpose1d on the CPU. ``prepared_weight(params, w, n_threads)``: a
    callable giving ``kernels.prepare_winograd_weights(params, w, n_threads)``
    for the weight ``w`` as the kernels read it, called only when the call
    would use it (see convt_blas.nn.ConvTranspose1d, which keeps the result).
    ``weight_rows(params, w, n_threads)``: likewise ``kernels.transpose_weights``,
    for calls on the GEMM path; only with ``prepared_weight``."""
    given = {"input": _as_array(input, "input"), "weight": _as_array(weight, "weight"),
             "bias": None if bias is None else _as_array(bias, "bias")}
    x, w = _native(given["input"]), _native(given["weight"])
    b = None if bias is None else _native(given["bias"])
    check_dtypes(x.dtype, w.dtype, None if b is None else b.dtype)
    spec = check_arguments(x.shape, w.shape, None if b is None else b.shape,
                           stride, padding, output_padding, groups, dilation)
    if out is not None:
        # The caller's arrays, not converted copies: out must not overwrite them.
        check_out(out, spec.out_shape, x.dtype, tuple(given.items()))
    if spec.batch == 0:
        return np.zeros(spec.out_shape, x.dtype) if out is None else out

    x3 = x if spec.batched else x[np.newaxis]
    half = x.dtype == _HALF
    if half:  # computed in float32, returned as float16
        x3, w = _fresh_copy(x3, np.float32, "K"), _fresh_copy(w, np.float32, "K")
        b = None if b is None else _fresh_copy(b, np.float32, "K")
    # The kernels read weight and bias as C arrays: contiguous and aligned.
    if not (w.flags.c_contiguous and w.flags.aligned):
        w = _fresh_copy(w)
    if b is not None and not (b.flags.c_contiguous and b.flags.aligned):
        b = _fresh_copy(b)
    strides = _kernel_strides(x3)
    if strides is None:
        x3 = _fresh_copy(x3)
        strides = _kernel_strides(x3)

    params = spec.kernel_params
    # Read once: the plan, the workspace and the kernel all follow this value,
    # whatever another thread sets meanwhile.
    winograd = kernels.winograd_enabled()
    takes_prepared, takes_rows, units_per_sample, per_worker = _plan_sizes(
        params, prepared_weight is not None, winograd, kernels.blas_small_matrix_kernels())
    takes_rows = takes_rows and weight_rows is not None
    flops = 2 * spec.batch * spec.in_length * spec.in_channels * spec.kernel_size * (
        spec.out_channels // spec.groups)
    workers = _threads.plan_threads(spec.batch * units_per_sample, flops)
    workspace = _workspace(x3.dtype, per_worker * workers)
    full_shape = (spec.batch, spec.out_channels, spec.out_length)
    # An unaligned or float16 out= is filled from an aligned result at the end.
    direct_out = out is not None and not half and out.flags.aligned
    if not direct_out:
        _check_fits(x3.dtype.itemsize * spec.batch * spec.out_channels * spec.out_length,
                    f"the output of shape {full_shape}")
    result = out.reshape(full_shape) if direct_out else np.empty(full_shape, dtype=x3.dtype)

    # After every array is allocated, so that the check sees what is left.
    workers = _threads.worker_pool.enter(workers)
    try:
        prepared = prepared_weight(params, w, workers) if takes_prepared else None
        rows = weight_rows(params, w, workers) if takes_rows else None
        kernels.run(params, x3, strides, w, b, result, workspace, workers, prepared, rows,
                    winograd)
    finally:
        _threads.worker_pool.exit(workers)

    if half:
        result = result.astype(np.float16)
    if out is not None:
        if not direct_out:
            out.reshape(full_shape)[...] = result
        return out
    return result if spec.batched else result[0]
