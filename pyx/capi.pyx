# cython: language_level=3
"""The C API: the PyCapsule ``convt_blas._C_API`` holding ``convt_blas_api``.

C code fetches the table with ``import_convt_blas()`` from ``convt_blas.h``
instead of linking against an extension module. Its entries call the very
functions of ``convt_blas.kernels`` the Python API runs (imported from that
module, not compiled again here); each turns a NULL parameter block into
-1 or a status code itself. Complex entries are cast to the header's pair
types (same layout and calling convention).
"""
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport int64_t

from convt_blas.kernels cimport (
    convt_blas_params, backward_workspace_length,
    conv_transpose1d_backward_c64, conv_transpose1d_backward_c128,
    conv_transpose1d_backward_f32, conv_transpose1d_backward_f64,
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
    ctypedef int (*convt_blas_backward_f32)(
        const convt_blas_params*, const float*, const float*, const float*, float*, float*,
        float*, float*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_backward_f64)(
        const convt_blas_params*, const double*, const double*, const double*, double*, double*,
        double*, double*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_backward_c64)(
        const convt_blas_params*, const float complex*, const float complex*, const float complex*, float complex*, float complex*,
        float complex*, float complex*, int64_t, int) noexcept nogil
    ctypedef int (*convt_blas_backward_c128)(
        const convt_blas_params*, const double complex*, const double complex*, const double complex*, double complex*, double complex*,
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
        int64_t (*backward_workspace_length)(const convt_blas_params*, int) noexcept nogil
        convt_blas_backward_f32 conv_transpose1d_backward_f32
        convt_blas_backward_f64 conv_transpose1d_backward_f64
        convt_blas_backward_c64 conv_transpose1d_backward_c64
        convt_blas_backward_c128 conv_transpose1d_backward_c128


# Lives as long as the module (never unloaded), so the capsule needs no destructor.
cdef convt_blas_api _table
_table.abi_version = CONVT_BLAS_ABI_VERSION
_table.api_version = CONVT_BLAS_API_VERSION
_table.output_length = output_length
_table.workspace_length = workspace_length
_table.units_per_sample = units_per_sample
_table.conv_transpose1d_f32 = conv_transpose1d_f32
_table.conv_transpose1d_f64 = conv_transpose1d_f64
_table.conv_transpose1d_c64 = <convt_blas_kernel_c64>conv_transpose1d_c64
_table.conv_transpose1d_c128 = <convt_blas_kernel_c128>conv_transpose1d_c128
_table.prepared_weight_length = prepared_weight_length
_table.workspace_length_prepared = workspace_length_prepared
_table.prepare_weight_f32 = prepare_weight_f32
_table.prepare_weight_f64 = prepare_weight_f64
_table.prepare_weight_c64 = <convt_blas_prepare_c64>prepare_weight_c64
_table.prepare_weight_c128 = <convt_blas_prepare_c128>prepare_weight_c128
_table.conv_transpose1d_prepared_f32 = conv_transpose1d_prepared_f32
_table.conv_transpose1d_prepared_f64 = conv_transpose1d_prepared_f64
_table.conv_transpose1d_prepared_c64 = (
    <convt_blas_prepared_kernel_c64>conv_transpose1d_prepared_c64)
_table.conv_transpose1d_prepared_c128 = (
    <convt_blas_prepared_kernel_c128>conv_transpose1d_prepared_c128)
_table.backward_workspace_length = backward_workspace_length
_table.conv_transpose1d_backward_f32 = conv_transpose1d_backward_f32
_table.conv_transpose1d_backward_f64 = conv_transpose1d_backward_f64
_table.conv_transpose1d_backward_c64 = <convt_blas_backward_c64>conv_transpose1d_backward_c64
_table.conv_transpose1d_backward_c128 = (
    <convt_blas_backward_c128>conv_transpose1d_backward_c128)

_C_API = PyCapsule_New(&_table, CONVT_BLAS_CAPSULE_NAME, NULL)
