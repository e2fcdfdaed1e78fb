/*
 * convt_blas: public C declarations shared by the Cython kernels and C callers.
 *
 * The parameter block describes one 1-D transposed convolution exactly as
 * torch.nn.functional.conv_transpose1d does:
 *
 *   input  (batch, in_channels, in_length)
 *   weight (in_channels, out_channels / groups, kernel_size)
 *   output (batch, out_channels, out_length)
 *   out_length = (in_length - 1) * stride - 2 * padding
 *                + dilation * (kernel_size - 1) + output_padding + 1
 */
#ifndef CONVT_BLAS_H
#define CONVT_BLAS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct convt_blas_params {
    int64_t batch;
    int64_t in_channels;
    int64_t in_length;
    int64_t out_channels;
    int64_t kernel_size;
    int64_t stride;
    int64_t padding;
    int64_t output_padding;
    int64_t dilation;
    int64_t groups;
} convt_blas_params;

/* Thread counts above this are taken as this; counts below 1 as 1. */
#define CONVT_BLAS_MAX_THREADS 256

/* Status codes returned by every kernel entry point (0 is success). */
enum {
    CONVT_BLAS_OK = 0,
    CONVT_BLAS_ERR_NULL_POINTER = -1,
    CONVT_BLAS_ERR_BAD_SHAPE = -2,
    CONVT_BLAS_ERR_BAD_STRIDES = -3,
    CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL = -4,
    CONVT_BLAS_ERR_OVERFLOW = -5,
    CONVT_BLAS_ERR_NO_MEMORY = -6,
    CONVT_BLAS_ERR_BAD_PREPARED = -7
};

#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)
#define CONVT_BLAS_INLINE static inline
#elif defined(_MSC_VER) || defined(__GNUC__)
#define CONVT_BLAS_INLINE static __inline
#else
#define CONVT_BLAS_INLINE static
#endif

/* A message for a status code (never NULL). */
CONVT_BLAS_INLINE const char *convt_blas_strerror(int status)
{
    switch (status) {
    case CONVT_BLAS_OK: return "success";
    case CONVT_BLAS_ERR_NULL_POINTER: return "a required pointer is NULL";
    case CONVT_BLAS_ERR_BAD_SHAPE: return "invalid convolution parameters";
    case CONVT_BLAS_ERR_BAD_STRIDES: return "input strides unsupported by the kernel";
    case CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL: return "workspace too small";
    case CONVT_BLAS_ERR_OVERFLOW: return "sizes overflow the kernel's index range";
    case CONVT_BLAS_ERR_NO_MEMORY: return "cannot allocate the workspace";
    case CONVT_BLAS_ERR_BAD_PREPARED: return "prepared weight does not match the layer";
    default: return "unknown convt_blas status";
    }
}

/*
 * C API: a table of function pointers exported by the extension module
 * convt_blas._capi as the PyCapsule convt_blas._C_API. C code includes this
 * header, calls import_convt_blas() once (in its module init, holding the
 * GIL) and then calls through convt_blas_API, without linking against
 * convt_blas and without the GIL:
 *
 *     if (import_convt_blas() < 0) return NULL;
 *     status = convt_blas_API->conv_transpose1d_f64(&p, x, ..., n_threads);
 *
 * The entries are the kernels the Python API runs.
 */

/* Complex elements are (real, imaginary) pairs: the layout of C99's
 * float _Complex and C++'s std::complex<float>. Define CONVT_BLAS_COMPLEX64
 * and CONVT_BLAS_COMPLEX128 before including this header to declare the
 * entry points with such a type instead. */
#ifndef CONVT_BLAS_COMPLEX64
typedef struct convt_blas_complex64 { float real, imag; } convt_blas_complex64;
#define CONVT_BLAS_COMPLEX64 convt_blas_complex64
#endif
#ifndef CONVT_BLAS_COMPLEX128
typedef struct convt_blas_complex128 { double real, imag; } convt_blas_complex128;
#define CONVT_BLAS_COMPLEX128 convt_blas_complex128
#endif

/*
 * The kernel for element type T. Returns a status code, and writes nothing
 * unless it returns CONVT_BLAS_OK.
 *   p        the convolution; NULL or invalid values give an error status.
 *   input    (batch, in_channels, in_length) with element strides
 *            (input_stride_batch, input_stride_channel, input_stride_length);
 *            the length stride or the channel stride must be 1.
 *   weight   C-contiguous (in_channels, out_channels / groups, kernel_size).
 *   bias     NULL, or contiguous (out_channels,).
 *   out      C-contiguous (batch, out_channels, out_length), fully overwritten;
 *            must not overlap the other arrays.
 *   workspace, workspace_len
 *            NULL to allocate internally, else a scratch buffer of at least
 *            workspace_length(p, n_threads) elements of T.
 *   n_threads
 *            OpenMP threads to run on (values below 1 mean 1, values above
 *            CONVT_BLAS_MAX_THREADS mean that). The result is the same, bit
 *            for bit, for every thread count.
 * Every array pointer must be aligned to its element type (_Alignof(T):
 * 4 bytes for float and float complex, 8 for double and double complex);
 * the kernel reads and writes them as C arrays of T and does not check.
 * A call's first use of n threads in a calling thread starts n - 1 OpenMP
 * threads (a stack each) and a BLAS buffer per thread; where address space
 * is limited (RLIMIT_AS), an OpenMP runtime may exit and OpenBLAS may wait
 * forever when they cannot be had, so such callers should first call from
 * Python, where convt_blas.conv_transpose1d reserves them or raises
 * MemoryError, or keep headroom for them.
 */
#define CONVT_BLAS_KERNEL_TYPE(name, T)                                       \
    typedef int (*name)(const convt_blas_params *p, const T *input,           \
                        int64_t input_stride_batch,                           \
                        int64_t input_stride_channel,                         \
                        int64_t input_stride_length, const T *weight,         \
                        const T *bias, T *out, T *workspace,                  \
                        int64_t workspace_len, int n_threads)
CONVT_BLAS_KERNEL_TYPE(convt_blas_kernel_f32, float);
CONVT_BLAS_KERNEL_TYPE(convt_blas_kernel_f64, double);
CONVT_BLAS_KERNEL_TYPE(convt_blas_kernel_c64, CONVT_BLAS_COMPLEX64);
CONVT_BLAS_KERNEL_TYPE(convt_blas_kernel_c128, CONVT_BLAS_COMPLEX128);
#undef CONVT_BLAS_KERNEL_TYPE

/*
 * A weight kept transformed for Winograd's algorithms (API version 2), as
 * convt_blas.nn.ConvTranspose1d keeps it: for layers with kernel_size ==
 * 2*stride, dilation 1, C_in/groups >= 64 and C_out/groups*stride >= 64.
 * Calls that pass it skip transforming the weight and take F(3,2) from 128
 * input positions on (512 without it, or 256 for weights of at most 2^21
 * elements per group). Layers with kernel_size == 3*stride or 4*stride,
 * C_in/groups >= 256 and C_out/groups*stride >= 256 take F(4,3) or F(3,4)
 * with it only, from 256 input positions on (160 from C_in/groups >= 1024).
 * Results equal the plain kernel's within float rounding, bitwise where it
 * takes the same path, and, like its, do not depend on n_threads or the
 * split of the batch.
 *
 * prepare_weight_T(p, weight, prepared, prepared_len, n_threads) fills
 * prepared (prepared_len == prepared_weight_length(p) elements: twice the
 * weight's, 1.5 times for kernel_size == 4*stride) from weight;
 * CONVT_BLAS_ERR_BAD_SHAPE if the layer does not
 * qualify, CONVT_BLAS_ERR_BAD_PREPARED for another length.
 *
 * conv_transpose1d_prepared_T takes the plain kernel's arguments plus
 * prepared and prepared_len after weight (weight is still read: short
 * inputs and batch elements whose result is not finite take the plain
 * path). prepared may be NULL (then it is the plain kernel); for a layer
 * that qualifies, a length other than prepared_weight_length(p) gives
 * CONVT_BLAS_ERR_BAD_PREPARED, whatever the input length. The workspace
 * must hold workspace_length_prepared(p, n_threads) elements. Keep prepared
 * in step with weight: a transform of an older weight gives that weight's
 * result.
 */
#define CONVT_BLAS_PREPARE_TYPE(name, T)                                      \
    typedef int (*name)(const convt_blas_params *p, const T *weight,          \
                        T *prepared, int64_t prepared_len, int n_threads)
CONVT_BLAS_PREPARE_TYPE(convt_blas_prepare_f32, float);
CONVT_BLAS_PREPARE_TYPE(convt_blas_prepare_f64, double);
CONVT_BLAS_PREPARE_TYPE(convt_blas_prepare_c64, CONVT_BLAS_COMPLEX64);
CONVT_BLAS_PREPARE_TYPE(convt_blas_prepare_c128, CONVT_BLAS_COMPLEX128);
#undef CONVT_BLAS_PREPARE_TYPE

#define CONVT_BLAS_PREPARED_KERNEL_TYPE(name, T)                              \
    typedef int (*name)(const convt_blas_params *p, const T *input,           \
                        int64_t input_stride_batch,                           \
                        int64_t input_stride_channel,                         \
                        int64_t input_stride_length, const T *weight,         \
                        const T *prepared, int64_t prepared_len,              \
                        const T *bias, T *out, T *workspace,                  \
                        int64_t workspace_len, int n_threads)
CONVT_BLAS_PREPARED_KERNEL_TYPE(convt_blas_prepared_kernel_f32, float);
CONVT_BLAS_PREPARED_KERNEL_TYPE(convt_blas_prepared_kernel_f64, double);
CONVT_BLAS_PREPARED_KERNEL_TYPE(convt_blas_prepared_kernel_c64, CONVT_BLAS_COMPLEX64);
CONVT_BLAS_PREPARED_KERNEL_TYPE(convt_blas_prepared_kernel_c128, CONVT_BLAS_COMPLEX128);
#undef CONVT_BLAS_PREPARED_KERNEL_TYPE

/*
 * The backward pass (API version 3): the gradients of the convolution with
 * respect to its input, weight and bias, as torch's autograd computes them
 * (torch.ops.aten.convolution_backward with transposed=True; for complex T
 * the conjugate Wirtinger derivative: grad_input correlates grad_output
 * with conj(weight), grad_weight correlates conj(input) with grad_output).
 * Returns a status code, and writes nothing unless it returns CONVT_BLAS_OK.
 *   p            the convolution; NULL or invalid values give an error status.
 *   grad_output  C-contiguous (batch, out_channels, out_length); never NULL.
 *   input        C-contiguous (batch, in_channels, in_length); read only for
 *                grad_weight (may be NULL without it).
 *   weight       C-contiguous (in_channels, out_channels / groups, kernel_size);
 *                read only for grad_input (may be NULL without it).
 *   grad_input   NULL (not computed), or C-contiguous (batch, in_channels,
 *                in_length), fully overwritten.
 *   grad_weight  NULL, or C-contiguous (in_channels, out_channels / groups,
 *                kernel_size), fully overwritten.
 *   grad_bias    NULL, or contiguous (out_channels,): grad_output summed over
 *                batch and length, in order.
 *   workspace, workspace_len
 *                NULL to allocate internally, else a scratch buffer of at least
 *                backward_workspace_length(p, n_threads) elements of T (enough
 *                for any choice of gradients).
 *   n_threads    clamped as the forward's; grad_input and grad_weight are the
 *                same, bit for bit, for every thread count and equal
 *                convt_blas.conv_transpose1d_backward's.
 * The gradients must not overlap each other or the operands. Complex calls
 * also allocate conjugated copies of weight (for grad_input) and input (for
 * grad_weight): CONVT_BLAS_ERR_NO_MEMORY when they cannot be had. Alignment
 * and threads as for the forward kernel above.
 */
#define CONVT_BLAS_BACKWARD_TYPE(name, T)                                     \
    typedef int (*name)(const convt_blas_params *p, const T *grad_output,     \
                        const T *input, const T *weight, T *grad_input,       \
                        T *grad_weight, T *grad_bias, T *workspace,           \
                        int64_t workspace_len, int n_threads)
CONVT_BLAS_BACKWARD_TYPE(convt_blas_backward_f32, float);
CONVT_BLAS_BACKWARD_TYPE(convt_blas_backward_f64, double);
CONVT_BLAS_BACKWARD_TYPE(convt_blas_backward_c64, CONVT_BLAS_COMPLEX64);
CONVT_BLAS_BACKWARD_TYPE(convt_blas_backward_c128, CONVT_BLAS_COMPLEX128);
#undef CONVT_BLAS_BACKWARD_TYPE

/* ABI version: the layout of the fields below; a library with another one
 * cannot serve this header. API version: grows when entries are appended at
 * the end, so a newer library serves callers built with an older header. */
#define CONVT_BLAS_ABI_VERSION 1
#define CONVT_BLAS_API_VERSION 3
#define CONVT_BLAS_CAPSULE_NAME "convt_blas._C_API"

typedef struct convt_blas_api {
    unsigned int abi_version;
    unsigned int api_version;
    /* Output length, or -1 for a NULL or invalid p. */
    int64_t (*output_length)(const convt_blas_params *p);
    /* Workspace elements a call with n_threads needs; -1 for a NULL or invalid p.
     * It follows the process-wide Winograd setting (convt_blas.set_winograd in
     * Python): a workspace sized before that changes may be refused
     * (CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL). */
    int64_t (*workspace_length)(const convt_blas_params *p, int n_threads);
    /* Independent work units per batch element (more threads than
     * batch * units_per_sample sit idle); -1 for a NULL or invalid p. */
    int64_t (*units_per_sample)(const convt_blas_params *p);
    convt_blas_kernel_f32 conv_transpose1d_f32;
    convt_blas_kernel_f64 conv_transpose1d_f64;
    convt_blas_kernel_c64 conv_transpose1d_c64;
    convt_blas_kernel_c128 conv_transpose1d_c128;
    /* API version 2: a weight kept transformed for Winograd (see above). */
    /* Elements of the transformed weight; 0 if the layer does not qualify
     * (or Winograd is off), -1 for a NULL or invalid p. Batch and in_length
     * are not read. */
    int64_t (*prepared_weight_length)(const convt_blas_params *p);
    /* Workspace elements a call passing a prepared weight needs; -1 for a
     * NULL or invalid p. */
    int64_t (*workspace_length_prepared)(const convt_blas_params *p, int n_threads);
    convt_blas_prepare_f32 prepare_weight_f32;
    convt_blas_prepare_f64 prepare_weight_f64;
    convt_blas_prepare_c64 prepare_weight_c64;
    convt_blas_prepare_c128 prepare_weight_c128;
    convt_blas_prepared_kernel_f32 conv_transpose1d_prepared_f32;
    convt_blas_prepared_kernel_f64 conv_transpose1d_prepared_f64;
    convt_blas_prepared_kernel_c64 conv_transpose1d_prepared_c64;
    convt_blas_prepared_kernel_c128 conv_transpose1d_prepared_c128;
    /* API version 3: the backward pass (see above). */
    /* Workspace elements a backward call with n_threads needs; -1 for a NULL
     * or invalid p. */
    int64_t (*backward_workspace_length)(const convt_blas_params *p, int n_threads);
    convt_blas_backward_f32 conv_transpose1d_backward_f32;
    convt_blas_backward_f64 conv_transpose1d_backward_f64;
    convt_blas_backward_c64 conv_transpose1d_backward_c64;
    convt_blas_backward_c128 conv_transpose1d_backward_c128;
} convt_blas_api;

#ifdef Py_PYTHON_H
/* The table, once import_convt_blas() has succeeded (one per translation unit). */
static const convt_blas_api *convt_blas_API = NULL;

/* Fetch the table from convt_blas._C_API (importing convt_blas) unless this
 * translation unit already has it. Returns 0, or -1 with ImportError (or the
 * import's own exception) set. Call it with the GIL held. */
CONVT_BLAS_INLINE int import_convt_blas(void)
{
    const convt_blas_api *api;
    if (convt_blas_API != NULL)
        return 0;
    api = (const convt_blas_api *)PyCapsule_Import(CONVT_BLAS_CAPSULE_NAME, 0);
    if (api == NULL)
        return -1;
    if (api->abi_version != CONVT_BLAS_ABI_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "convt_blas C API has ABI version %u, this module was built "
                     "for version %u: rebuild it against convt_blas.get_include()",
                     api->abi_version, (unsigned int)CONVT_BLAS_ABI_VERSION);
        return -1;
    }
    if (api->api_version < CONVT_BLAS_API_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "convt_blas C API version %u is older than version %u this "
                     "module was built for: upgrade convt_blas",
                     api->api_version, (unsigned int)CONVT_BLAS_API_VERSION);
        return -1;
    }
    convt_blas_API = api;
    return 0;
}
#endif /* Py_PYTHON_H */

#ifdef __cplusplus
}
#endif

#endif /* CONVT_BLAS_H */
