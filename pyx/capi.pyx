# cython: language_level=3
"""The C API: the PyCapsule ``convt_blas._C_API`` holding ``convt_blas_api``.

C code fetches the table with ``import_convt_blas()`` from ``convt_blas.h``
instead of linking against an extension module. Its entries call the very
functions of ``convt_blas.kernels`` the Python API runs (imported from that
module, not compiled again here), behind a guard that turns a NULL parameter
block into a status code.
"""
cimport cython
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport int64_t

from convt_blas.kernels cimport (
    CONVT_BLAS_ERR_NULL_POINTER, convt_blas_params, scalar_t,
    conv_transpose1d_c64, conv_transpose1d_c128, conv_transpose1d_f32, conv_transpose1d_f64,
    conv_transpose1d_prepared_c64, conv_transpose1d_prepared_c128,
    conv_transpose1d_prepared_f32, conv_transpose1d_prepared_f64,
    output_length, prepare_weight_c64, prepare_weight_c128, prepare_weight_f32,
    prepare_weight_f64, prepared_weight_length, units_per_sample, workspace_length,
    workspace_length_prepared)

cdef extern from "convt_blas.h":
    unsigned int CONVT_BLAS_ABI_VERSION
    unsigned int CONVT_BLAS_API_VERSION
    const char* CONVT_BLAS_CAPSULE_NAME

    # The header spells complex elements as its own pair types; the entries
    # are cast to these pointer types (same layout, same calling convention).
    ctypedef int (*convt_blas_kernel_f32)(
        const convt_blas_params*, const float*, int64_t, int64_t, int64_t,
        const float*, const float*, float*, float*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_kernel_f64)(
        const convt_blas_params*, const double*, int64_t, int64_t, int64_t,
        const double*, const double*, double*, double*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_kernel_c64)(
        const convt_blas_params*, const float complex*, int64_t, int64_t, int64_t,
        const float complex*, const float complex*, float complex*, float complex*,
        int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_kernel_c128)(
        const convt_blas_params*, const double complex*, int64_t, int64_t, int64_t,
        const double complex*, const double complex*, double complex*, double complex*,
        int64_t, int) noexcept nogil

    ctypedef int (*convt_blas_prepare_f32)(
        const convt_blas_params*, const float*, float*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_prepare_f64)(
        const convt_blas_params*, const double*, double*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_prepare_c64)(
        const convt_blas_params*, const float complex*, float complex*, int64_t,
        int) noexcept nogil
    ctypedef int (*convt_blas_prepare_c128)(
        const convt_blas_params*, const double complex*, double complex*, int64_t,
        int) noexcept nogil
    ctypedef int (*convt_blas_prepared_kernel_f32)(
        const convt_blas_params*, const float*, int64_t, int64_t, int64_t,
        const float*, const float*, int64_t, const float*, float*, float*, int64_t,
        int) noexcept nogil
    ctypedef int (*convt_blas_prepared_kernel_f64)(
        const convt_blas_params*, const double*, int64_t, int64_t, int64_t,
        const double*, const double*, int64_t, const double*, double*, double*, int64_t,
        int) noexcept nogil
    ctypedef int (*convt_blas_prepared_kernel_c64)(
        const convt_blas_params*, const float complex*, int64_t, int64_t, int64_t,
        const float complex*, const float complex*, int64_t, const float complex*,
        float complex*, float complex*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_prepared_kernel_c128)(
        const convt_blas_params*, const double complex*, int64_t, int64_t, int64_t,
        const double complex*, const double complex*, int64_t, const double complex*,
        double complex*, double complex*, int64_t, int) noexcept nogil

    ctypedef struct convt_blas_api:
        unsigned int abi_version
        unsigned int api_version
        int64_t (*output_length)(const convt_blas_params*) noexcept nogil
        int64_t (*workspace_length)(const convt_blas_params*, int) noexcept nogil
        int64_t (*units_per_sample)(const convt_blas_params*) noexcept nogil
        convt_blas_kernel_f32 conv_transpose1d_f32
        convt_blas_kernel_f64 conv_transpose1d_f64
        convt_blas_kernel_c64 conv_transpose1d_c64
        convt_blas_kernel_c128 conv_transpose1d_c128
        int64_t (*prepared_weight_length)(const convt_blas_params*) noexcept nogil
        int64_t (*workspace_length_prepared)(const convt_blas_params*, int) noexcept nogil
        convt_blas_prepare_f32 prepare_weight_f32
        convt_blas_prepare_f64 prepare_weight_f64
        convt_blas_prepare_c64 prepare_weight_c64
        convt_blas_prepare_c128 prepare_weight_c128
        convt_blas_prepared_kernel_f32 conv_transpose1d_prepared_f32
        convt_blas_prepared_kernel_f64 conv_transpose1d_prepared_f64
        convt_blas_prepared_kernel_c64 conv_transpose1d_prepared_c64
        convt_blas_prepared_kernel_c128 conv_transpose1d_prepared_c128


cdef int64_t _output_length(const convt_blas_params* p) noexcept nogil:
    return -1 if p == NULL else output_length(p)


cdef int64_t _workspace_length(const convt_blas_params* p, int n_threads) noexcept nogil:
    return -1 if p == NULL else workspace_length(p, n_threads)


cdef int64_t _units_per_sample(const convt_blas_params* p) noexcept nogil:
    return -1 if p == NULL else units_per_sample(p)


cdef int64_t _workspace_length_prepared(const convt_blas_params* p,
                                        int n_threads) noexcept nogil:
    return -1 if p == NULL else workspace_length_prepared(p, n_threads)


cdef int _prepare_weight(const convt_blas_params* p, const scalar_t* w, scalar_t* prepared,
                         int64_t prepared_len, int n_threads) noexcept nogil:
    # NULL p is checked by the kernel (prepared_weight_length takes NULL).
    if scalar_t is float:
        return prepare_weight_f32(p, w, prepared, prepared_len, n_threads)
    elif scalar_t is double:
        return prepare_weight_f64(p, w, prepared, prepared_len, n_threads)
    elif scalar_t is cython.floatcomplex:
        return prepare_weight_c64(p, w, prepared, prepared_len, n_threads)
    else:
        return prepare_weight_c128(p, w, prepared, prepared_len, n_threads)


cdef int _conv_transpose1d_prepared(const convt_blas_params* p,
                                    const scalar_t* x, int64_t sx_n, int64_t sx_c,
                                    int64_t sx_l, const scalar_t* w, const scalar_t* prepared,
                                    int64_t prepared_len, const scalar_t* bias, scalar_t* out,
                                    scalar_t* workspace, int64_t workspace_len,
                                    int n_threads) noexcept nogil:
    if p == NULL:
        return CONVT_BLAS_ERR_NULL_POINTER
    if scalar_t is float:
        return conv_transpose1d_prepared_f32(p, x, sx_n, sx_c, sx_l, w, prepared, prepared_len,
                                             bias, out, workspace, workspace_len, n_threads)
    elif scalar_t is double:
        return conv_transpose1d_prepared_f64(p, x, sx_n, sx_c, sx_l, w, prepared, prepared_len,
                                             bias, out, workspace, workspace_len, n_threads)
    elif scalar_t is cython.floatcomplex:
        return conv_transpose1d_prepared_c64(p, x, sx_n, sx_c, sx_l, w, prepared, prepared_len,
                                             bias, out, workspace, workspace_len, n_threads)
    else:
        return conv_transpose1d_prepared_c128(p, x, sx_n, sx_c, sx_l, w, prepared, prepared_len,
                                              bias, out, workspace, workspace_len, n_threads)


cdef int _conv_transpose1d(const convt_blas_params* p,
                           const scalar_t* x, int64_t sx_n, int64_t sx_c, int64_t sx_l,
                           const scalar_t* w, const scalar_t* bias, scalar_t* out,
                           scalar_t* workspace, int64_t workspace_len,
                           int n_threads) noexcept nogil:
    if p == NULL:
        return CONVT_BLAS_ERR_NULL_POINTER
    if scalar_t is float:
        return conv_transpose1d_f32(p, x, sx_n, sx_c, sx_l, w, bias, out,
                                    workspace, workspace_len, n_threads)
    elif scalar_t is double:
        return conv_transpose1d_f64(p, x, sx_n, sx_c, sx_l, w, bias, out,
                                    workspace, workspace_len, n_threads)
    elif scalar_t is cython.floatcomplex:
        return conv_transpose1d_c64(p, x, sx_n, sx_c, sx_l, w, bias, out,
                                    workspace, workspace_len, n_threads)
    else:
        return conv_transpose1d_c128(p, x, sx_n, sx_c, sx_l, w, bias, out,
                                     workspace, workspace_len, n_threads)


# Lives as long as the module (never unloaded), so the capsule needs no destructor.
cdef convt_blas_api _table
_table.abi_version = CONVT_BLAS_ABI_VERSION
_table.api_version = CONVT_BLAS_API_VERSION
_table.output_length = _output_length
_table.workspace_length = _workspace_length
_table.units_per_sample = _units_per_sample
_table.conv_transpose1d_f32 = <convt_blas_kernel_f32>_conv_transpose1d[float]
_table.conv_transpose1d_f64 = <convt_blas_kernel_f64>_conv_transpose1d[double]
_table.conv_transpose1d_c64 = <convt_blas_kernel_c64>_conv_transpose1d[cython.floatcomplex]
_table.conv_transpose1d_c128 = <convt_blas_kernel_c128>_conv_transpose1d[cython.doublecomplex]
_table.prepared_weight_length = prepared_weight_length
_table.workspace_length_prepared = _workspace_length_prepared
_table.prepare_weight_f32 = <convt_blas_prepare_f32>_prepare_weight[float]
_table.prepare_weight_f64 = <convt_blas_prepare_f64>_prepare_weight[double]
_table.prepare_weight_c64 = <convt_blas_prepare_c64>_prepare_weight[cython.floatcomplex]
_table.prepare_weight_c128 = <convt_blas_prepare_c128>_prepare_weight[cython.doublecomplex]
_table.conv_transpose1d_prepared_f32 = (
    <convt_blas_prepared_kernel_f32>_conv_transpose1d_prepared[float])
_table.conv_transpose1d_prepared_f64 = (
    <convt_blas_prepared_kernel_f64>_conv_transpose1d_prepared[double])
_table.conv_transpose1d_prepared_c64 = (
    <convt_blas_prepared_kernel_c64>_conv_transpose1d_prepared[cython.floatcomplex])
_table.conv_transpose1d_prepared_c128 = (
    <convt_blas_prepared_kernel_c128>_conv_transpose1d_prepared[cython.doublecomplex])

_C_API = PyCapsule_New(&_table, CONVT_BLAS_CAPSULE_NAME, NULL)
