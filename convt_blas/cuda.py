"""conv_transpose1d on CuPy arrays: cuBLAS column GEMM + deterministic gather col2im.

``convt_blas.conv_transpose1d`` sends CuPy inputs here; the result is a CuPy
array on the input's device. Per chunk of batch elements:

1. one strided-batched cuBLAS GEMM (over batch elements, or groups) computes
   the columns ``W_gᵀ · X_g``, laid out (batch, C_out, K, L_in);
2. a gather kernel (``include/convt_blas_cuda.cuh``) gives every output element
   its own thread, which adds bias and its columns in a fixed order. Nothing is
   accumulated with atomics, so the output is the same bits on every run (cuBLAS
   is bitwise reproducible on one GPU model and library version, one stream).

CuPy is imported only when a CuPy array arrives; the CPU package never needs it.

Attributes
----------
allow_tf32 : bool
    Whether float32 GEMMs may use TF32 tensor cores (GPUs of compute capability
    8.0 or newer): True passes ``CUBLAS_COMPUTE_32F_FAST_TF32`` to cuBLAS, which
    rounds the GEMM inputs to 10-bit mantissas and accumulates in float32 (about
    1e-3 relative error); False passes ``CUBLAS_COMPUTE_32F``, full float32.
    The default, True, is torch's default for convolutions
    (``torch.backends.cudnn.allow_tf32``). The environment variable
    ``NVIDIA_TF32_OVERRIDE=0`` disables TF32 in cuBLAS whatever this says.
    float64 never uses TF32; float16 GEMMs take float16 operands (tensor cores
    where the GPU has them) and accumulate and store the columns in float32.
    The gather adds in float32 (float64 for float64) either way.
"""
import math
import os
import threading

import numpy as np

from ._validation import check_arguments, check_dtypes, check_out

allow_tf32 = True

_SUPPORTED = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_KERNEL_FILE = "convt_blas_cuda.cuh"
_KERNEL_TYPE_CODES = {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32",
                      np.dtype(np.float64): "f64"}
# Enum values of CUDA's library_types.h and cublas_api.h (fixed by the C ABI).
_CUDA_R_32F, _CUDA_R_64F, _CUDA_R_16F = 0, 1, 2
_CUDA_DATA_TYPES = {np.dtype(np.float16): _CUDA_R_16F, np.dtype(np.float32): _CUDA_R_32F,
                    np.dtype(np.float64): _CUDA_R_64F}
_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1
_CUBLAS_GEMM_DEFAULT = -1
_CUBLAS_COMPUTE_32F, _CUBLAS_COMPUTE_64F, _CUBLAS_COMPUTE_32F_FAST_TF32 = 68, 70, 77
_THREADS_PER_BLOCK = 256
_MAX_BLOCKS = 2 ** 31 - 1  # gridDim.x limit; the kernel's grid-stride loop covers the rest
_INT32_MAX = 2 ** 31 - 1   # cuBLAS's m, n, k, leading dimensions and batch count are ints
# Launches whose offsets all stay below this index in int, with room for the grid stride.
_INDEX32_LIMIT = 2 ** 30
# Bytes of column buffer per chunk of batch elements (one element per chunk at least).
_COLUMN_BUDGET_BYTES = 256 * 2 ** 20

_modules = {}  # device id -> cupy.RawModule of the gather kernels
_kernels = {}  # (device id, dtype, index bits) -> kernel function
_compile_lock = threading.Lock()
_NULL_POINTER = np.uint64(0)  # a bias argument for "no bias"


def _import_cupy(input):
    """The cupy module, or an ImportError that says what is missing for ``input``."""
    try:
        import cupy
    except ImportError as exc:
        if getattr(exc, "name", None) == "cupy":
            problem = "CuPy is not installed"
        else:  # installed, but it failed to load (a CUDA library, a driver)
            problem = f"CuPy is installed but cannot be imported ({exc})"
        if type(input).__module__.startswith("cupy"):
            raise ImportError(f"conv_transpose1d got a CuPy array, but {problem}; the CUDA "
                              "path needs CuPy (pip install 'convt_blas[cuda]')") from exc
        raise ImportError(
            f"convt_blas.cuda.conv_transpose1d computes on CuPy arrays and {problem} "
            "(pip install 'convt_blas[cuda]'); for a "
            f"{type(input).__module__}.{type(input).__name__} input, use "
            "convt_blas.conv_transpose1d") from exc
    return cupy


def _kernel_source():
    from . import get_include
    with open(os.path.join(get_include(), _KERNEL_FILE)) as f:
        return f.read()


def _kernel_name(dtype, index_bits):
    return f"convt_blas_gather_{_KERNEL_TYPE_CODES[dtype]}_i{index_bits}"


def _index_bits(spec, batch):
    """32 when every offset of a launch over ``batch`` elements fits int arithmetic, else 64."""
    largest = max(batch * spec.out_channels * spec.out_length,
                  batch * spec.out_channels * spec.kernel_size * spec.in_length,
                  spec.out_length + spec.padding + spec.stride * (spec.stride + spec.dilation))
    return 32 if largest < _INDEX32_LIMIT else 64


def _gather_kernel(cupy, device_id, dtype, index_bits):
    """The gather kernel for ``dtype`` on the current device, compiled once per device."""
    key = (device_id, dtype, index_bits)
    kernel = _kernels.get(key)
    if kernel is None:
        with _compile_lock:
            module = _modules.get(device_id)
            if module is None:
                module = _modules[device_id] = cupy.RawModule(code=_kernel_source())
            kernel = _kernels[key] = module.get_function(_kernel_name(dtype, index_bits))
    return kernel


def _gather_geometry(spec, batch):
    """Scalar arguments of the gather kernel for ``batch`` elements of a checked ConvSpec.

    Returns the 12 ints of ``convt_blas_cuda_geometry``, in its field order: the
    sizes, then the residue arithmetic of the taps (see the .cuh).
    """
    phase_gcd = math.gcd(spec.stride, spec.dilation)
    tap_step = spec.stride // phase_gcd
    input_step = spec.dilation // phase_gcd
    tap_inverse = pow(input_step, -1, tap_step) if tap_step > 1 else 0
    return (batch, spec.out_channels, spec.out_length, spec.kernel_size, spec.in_length,
            spec.stride, spec.padding, spec.dilation, phase_gcd, tap_step, tap_inverse,
            input_step)


def _check_operands(cupy, x, weight, bias, out):
    """TypeError / ValueError unless every array is a CuPy array on the input's device."""
    device_id = x.device.id
    for name, arr in (("weight", weight), ("bias", bias), ("out", out)):
        if arr is None:
            continue
        if not isinstance(arr, cupy.ndarray):
            raise TypeError(f"input is a CuPy array, so {name} must be a CuPy array on the same "
                            f"device; got {type(arr).__module__}.{type(arr).__name__}")
        if arr.device.id != device_id:
            raise ValueError(f"{name} is on CUDA device {arr.device.id}, input on device "
                             f"{device_id}; all arrays must be on one device")


def _compute_type(device, dtype):
    if dtype == np.float64:
        return _CUBLAS_COMPUTE_64F
    if dtype == np.float32 and allow_tf32 and int(device.compute_capability) >= 80:
        return _CUBLAS_COMPUTE_32F_FAST_TF32
    return _CUBLAS_COMPUTE_32F


def _column_gemm(cupy, device, spec, x, weight, columns):
    """columns[n, g] = W_gᵀ · x[n, g] for the batch elements of ``x``, through cuBLAS.

    Row-major (M × L_in) columns are column-major (L_in × M) matrices, so cuBLAS
    computes C = A · op(B) with A = x[n, g] (L_in × C_in_g, lda = L_in) and
    op(B) = W_g (stored as the column-major M × C_in_g matrix W_gᵀ, ldb = M).
    The weight offset depends on the group only, so the strided batch runs over
    the batch elements for each group, or over the groups for each batch element,
    whichever needs fewer calls.
    """
    batch, groups, length = x.shape[0], spec.groups, spec.in_length
    in_g = spec.in_channels // groups
    rows = spec.out_channels // groups * spec.kernel_size  # M: rows of columns per group
    data_type, column_type = _CUDA_DATA_TYPES[x.dtype], _CUDA_DATA_TYPES[columns.dtype]
    compute_type = _compute_type(device, x.dtype)
    scalar = np.float64 if compute_type == _CUBLAS_COMPUTE_64F else np.float32
    one, zero = np.ones(1, scalar), np.zeros(1, scalar)  # host pointer mode: read at the call
    x_item, w_item, c_item = x.itemsize, weight.itemsize, columns.itemsize

    # Element offsets of operand (n, g): x (n*C_in + g*in_g)*L, w g*in_g*M, columns (n*G + g)*M*L.
    x_batch, x_group = spec.in_channels * length, in_g * length
    c_batch, c_group = groups * rows * length, rows * length
    w_group = in_g * rows
    if groups <= batch:  # loop over groups, batch over elements (the weight stays put)
        calls = [(g * x_group, g * w_group, g * c_group) for g in range(groups)]
        strides, count = (x_batch, 0, c_batch), batch
    else:                # loop over elements, batch over groups
        calls = [(n * x_batch, 0, n * c_batch) for n in range(batch)]
        strides, count = (x_group, w_group, c_group), groups

    handle = cupy.cuda.device.get_cublas_handle()  # the current device's, on its current stream
    for x_offset, w_offset, c_offset in calls:
        cupy.cuda.cublas.gemmStridedBatchedEx(
            handle, _CUBLAS_OP_N, _CUBLAS_OP_T, length, rows, in_g,
            one.ctypes.data,
            x.data.ptr + x_offset * x_item, data_type, length, strides[0],
            weight.data.ptr + w_offset * w_item, data_type, rows, strides[1],
            zero.ctypes.data,
            columns.data.ptr + c_offset * c_item, column_type, length, strides[2],
            count, compute_type, _CUBLAS_GEMM_DEFAULT)


def _check_sizes(spec):
    """ValueError for sizes beyond cuBLAS's int arguments (and the kernel's tap arithmetic)."""
    in_g = spec.in_channels // spec.groups
    rows = spec.out_channels // spec.groups * spec.kernel_size
    for name, value in (("input length", spec.in_length), ("in_channels / groups", in_g),
                        ("out_channels / groups * kernel_size", rows),
                        ("batch size", spec.batch), ("groups", spec.groups),
                        ("stride", spec.stride), ("dilation", spec.dilation)):
        if value > _INT32_MAX:
            raise ValueError(f"{name} = {value} exceeds the CUDA path's 32-bit size limit "
                             f"({_INT32_MAX})")


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, out=None):
    """1-D transposed convolution of CuPy arrays on their GPU.

    Same arguments, shapes, dtype rules and errors as
    :func:`convt_blas.conv_transpose1d`, of which this is the CUDA path (it is
    called for CuPy inputs). ``weight``, ``bias`` and ``out`` must be CuPy arrays
    on the input's device. Supports float16 (float32 accumulation), float32 (see
    :data:`allow_tf32`) and float64.

    Returns
    -------
    cupy.ndarray, shape (N, C_out, L_out) or (C_out, L_out)
        C-contiguous, on the input's device, of the input's dtype. The result is
        bitwise identical from run to run for the same inputs and GPU.

    Raises
    ------
    ImportError
        CuPy cannot be imported.
    TypeError
        Unsupported or mismatched dtypes (complex included), operands that are not
        CuPy arrays, parameters that are not ints.
    ValueError
        Invalid shapes or parameter values, operands on another device, or sizes
        beyond cuBLAS's 32-bit limits.

    Examples
    --------
    On a machine with CuPy and a CUDA device (skipped in the documentation's tests);
    ``convt_blas.conv_transpose1d(x, w, stride=2)`` sends these arrays here too:

    >>> import cupy, convt_blas.cuda  # doctest: +SKIP
    >>> x = cupy.ones((2, 16, 50), cupy.float32)  # doctest: +SKIP
    >>> w = cupy.ones((16, 8, 4), cupy.float32)  # doctest: +SKIP
    >>> convt_blas.cuda.conv_transpose1d(x, w, stride=2).shape  # doctest: +SKIP
    (2, 8, 102)
    """
    cupy = _import_cupy(input)
    if not isinstance(input, cupy.ndarray):
        raise TypeError(f"input must be a cupy.ndarray, got {type(input).__module__}."
                        f"{type(input).__name__}: pass cupy.asarray(input) to compute on the "
                        "GPU, or call convt_blas.conv_transpose1d on the CPU")
    _check_operands(cupy, input, weight, bias, out)
    check_dtypes(input.dtype, weight.dtype, None if bias is None else bias.dtype)
    if input.dtype not in _SUPPORTED:
        raise TypeError(f"input has dtype {input.dtype}; the CUDA path supports float16, "
                        "float32 and float64")
    spec = check_arguments(input.shape, weight.shape, None if bias is None else bias.shape,
                           stride, padding, output_padding, groups, dilation)
    if out is not None:
        check_out(out, spec.out_shape, input.dtype,
                  (("input", input), ("weight", weight), ("bias", bias)), xp=cupy)
    _check_sizes(spec)

    device = input.device
    with device:
        full_shape = (spec.batch, spec.out_channels, spec.out_length)
        result = cupy.empty(full_shape, input.dtype) if out is None else out.reshape(full_shape)
        if spec.batch > 0:
            _compute(cupy, device, spec, input, weight, bias, result)
    if out is not None:
        return out
    return result if spec.batched else result[0]


def _compute(cupy, device, spec, x, weight, bias, result):
    x3 = cupy.ascontiguousarray(x if spec.batched else x[None])
    weight = cupy.ascontiguousarray(weight)
    bias = _NULL_POINTER if bias is None else cupy.ascontiguousarray(bias)
    column_dtype = np.float64 if x.dtype == np.float64 else np.float32
    sample_elements = spec.out_channels * spec.kernel_size * spec.in_length
    chunk = max(1, min(spec.batch,
                       _COLUMN_BUDGET_BYTES // (sample_elements * np.dtype(column_dtype).itemsize)))
    columns = cupy.empty((chunk, spec.out_channels, spec.kernel_size, spec.in_length),
                         column_dtype)
    for start in range(0, spec.batch, chunk):
        count = min(chunk, spec.batch - start)
        _column_gemm(cupy, device, spec, x3[start:start + count], weight, columns)
        kernel = _gather_kernel(cupy, device.id, x.dtype, _index_bits(spec, count))
        total = count * spec.out_channels * spec.out_length
        blocks = min(-(-total // _THREADS_PER_BLOCK), _MAX_BLOCKS)
        geometry = tuple(np.int64(v) for v in _gather_geometry(spec, count))
        kernel((blocks,), (_THREADS_PER_BLOCK,),
               (columns, bias, result[start:start + count], *geometry))
