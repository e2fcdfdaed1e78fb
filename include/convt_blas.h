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

/* Status codes returned by every kernel entry point (0 is success). */
enum {
    CONVT_BLAS_OK = 0,
    CONVT_BLAS_ERR_NULL_POINTER = -1,
    CONVT_BLAS_ERR_BAD_SHAPE = -2,
    CONVT_BLAS_ERR_BAD_STRIDES = -3,
    CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL = -4,
    CONVT_BLAS_ERR_OVERFLOW = -5,
    CONVT_BLAS_ERR_NO_MEMORY = -6
};

#ifdef __cplusplus
}
#endif

#endif /* CONVT_BLAS_H */
