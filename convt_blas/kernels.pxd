# Public Cython declarations of the nogil kernels. Other Cython modules
# ``cimport`` these; every entry point returns a status code from
# ``convt_blas.h`` (0 on success) and never touches Python objects.
from libc.stdint cimport int64_t

cdef extern from "convt_blas.h":
    ctypedef struct convt_blas_params:
        int64_t batch
        int64_t in_channels
        int64_t in_length
        int64_t out_channels
        int64_t kernel_size
        int64_t stride
        int64_t padding
        int64_t output_padding
        int64_t dilation
        int64_t groups

    int CONVT_BLAS_MAX_THREADS

    enum:
        CONVT_BLAS_OK
        CONVT_BLAS_ERR_NULL_POINTER
        CONVT_BLAS_ERR_BAD_SHAPE
        CONVT_BLAS_ERR_BAD_STRIDES
        CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL
        CONVT_BLAS_ERR_OVERFLOW
        CONVT_BLAS_ERR_NO_MEMORY
        CONVT_BLAS_ERR_BAD_PREPARED

    const char* convt_blas_strerror(int status) noexcept nogil

ctypedef fused scalar_t:
    float
    double
    float complex
    double complex

# Output length, or -1 when it does not fit in int64.
cdef int64_t output_length(const convt_blas_params* p) noexcept nogil

# Elements of workspace (of the kernel's dtype) a call needs with
# ``n_threads`` threads; -1 when the parameters are invalid or overflow.
cdef int64_t workspace_length(const convt_blas_params* p, int n_threads) noexcept nogil

# Number of independent work units per batch element (threads beyond
# batch * units_per_sample sit idle); -1 when the parameters are invalid.
cdef int64_t units_per_sample(const convt_blas_params* p) noexcept nogil

# The kernel, one entry point per dtype (all share one fused-type body).
# input: element strides (batch, channel, length); the length stride or the
# channel stride must be 1. weight: C-contiguous (C_in, C_out/groups, K).
# bias: NULL or contiguous (C_out,). out: C-contiguous (N, C_out, L_out),
# fully overwritten. workspace: NULL to allocate internally, else at least
# workspace_length(p, n_threads) elements.
cdef int conv_transpose1d_f32(
    const convt_blas_params* p,
    const float* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const float* weight, const float* bias, float* out,
    float* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_f64(
    const convt_blas_params* p,
    const double* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const double* weight, const double* bias, double* out,
    double* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_c64(
    const convt_blas_params* p,
    const float complex* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const float complex* weight, const float complex* bias, float complex* out,
    float complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_c128(
    const convt_blas_params* p,
    const double complex* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const double complex* weight, const double complex* bias, double complex* out,
    double complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil

# A weight kept transformed for Winograd's F(3,2) (include/convt_blas.h
# explains when it is taken): its length (0: the layer does not qualify;
# -1: invalid parameters), the workspace a call passing it needs, the
# transform, and the kernel that reads it (``prepared`` may be NULL).
cdef int64_t prepared_weight_length(const convt_blas_params* p) noexcept nogil
cdef int64_t workspace_length_prepared(const convt_blas_params* p, int n_threads) noexcept nogil
cdef int prepare_weight_f32(
    const convt_blas_params* p, const float* weight, float* prepared,
    int64_t prepared_len, int n_threads) noexcept nogil
cdef int prepare_weight_f64(
    const convt_blas_params* p, const double* weight, double* prepared,
    int64_t prepared_len, int n_threads) noexcept nogil
cdef int prepare_weight_c64(
    const convt_blas_params* p, const float complex* weight, float complex* prepared,
    int64_t prepared_len, int n_threads) noexcept nogil
cdef int prepare_weight_c128(
    const convt_blas_params* p, const double complex* weight, double complex* prepared,
    int64_t prepared_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_prepared_f32(
    const convt_blas_params* p,
    const float* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const float* weight, const float* prepared, int64_t prepared_len,
    const float* bias, float* out,
    float* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_prepared_f64(
    const convt_blas_params* p,
    const double* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const double* weight, const double* prepared, int64_t prepared_len,
    const double* bias, double* out,
    double* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_prepared_c64(
    const convt_blas_params* p,
    const float complex* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const float complex* weight, const float complex* prepared, int64_t prepared_len,
    const float complex* bias, float complex* out,
    float complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_prepared_c128(
    const convt_blas_params* p,
    const double complex* input, int64_t input_stride_batch,
    int64_t input_stride_channel, int64_t input_stride_length,
    const double complex* weight, const double complex* prepared, int64_t prepared_len,
    const double complex* bias, double complex* out,
    double complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil

# The backward pass (API version 3): gradients of the convolution with
# respect to its input, weight and bias, as torch's autograd computes them
# (complex: conjugate Wirtinger). All arrays C-contiguous: grad_output
# (N, C_out, L_out); input (N, C_in, L_in), read only for grad_weight;
# weight (C_in, C_out/groups, K), read only for grad_input; grad_input
# (N, C_in, L_in), grad_weight (C_in, C_out/groups, K), grad_bias (C_out,),
# each NULL when not wanted, else fully overwritten. workspace: NULL to
# allocate internally, else at least backward_workspace_length(p, n_threads).
cdef int64_t backward_workspace_length(const convt_blas_params* p, int n_threads) noexcept nogil
cdef int conv_transpose1d_backward_f32(
    const convt_blas_params* p, const float* grad_output, const float* input,
    const float* weight, float* grad_input, float* grad_weight, float* grad_bias,
    float* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_backward_f64(
    const convt_blas_params* p, const double* grad_output, const double* input,
    const double* weight, double* grad_input, double* grad_weight, double* grad_bias,
    double* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_backward_c64(
    const convt_blas_params* p, const float complex* grad_output, const float complex* input,
    const float complex* weight, float complex* grad_input, float complex* grad_weight, float complex* grad_bias,
    float complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil
cdef int conv_transpose1d_backward_c128(
    const convt_blas_params* p, const double complex* grad_output, const double complex* input,
    const double complex* weight, double complex* grad_input, double complex* grad_weight, double complex* grad_bias,
    double complex* workspace, int64_t workspace_len, int n_threads) noexcept nogil
