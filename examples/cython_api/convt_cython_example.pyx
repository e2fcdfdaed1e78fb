# cython: language_level=3, boundscheck=False, wraparound=False
"""A minimal Cython module calling convt_blas's kernel without the GIL.

``conv_transpose1d_many`` runs one transposed convolution per item, each with
its own weight, the items spread over threads by a ``prange``: one nogil
kernel call per item, on raw pointers, with a workspace per thread.
"""
import numpy as np

cimport convt_blas.kernels as ck
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc


def conv_transpose1d_many(const double[:, :, :, ::1] x, const double[:, :, :, ::1] w,
                          double[:, :, :, ::1] out, int64_t stride=1, int64_t padding=0,
                          int64_t output_padding=0, int64_t groups=1, int64_t dilation=1,
                          int num_threads=0):
    """out[m] = conv_transpose1d(x[m], w[m], ...) for every item m (float64).

    x (M, N, C_in, L_in), w (M, C_in, C_out / groups, K), out (M, N, C_out, L_out);
    num_threads 0 means OpenMP's default.
    """
    cdef ck.convt_blas_params p
    p.batch, p.in_channels, p.in_length = x.shape[1], x.shape[2], x.shape[3]
    p.out_channels, p.kernel_size = w.shape[2] * groups, w.shape[3]
    p.stride, p.padding, p.output_padding = stride, padding, output_padding
    p.dilation, p.groups = dilation, groups
    # The kernel checks p; that the arrays fit p is ours to check.
    if (w.shape[0] != x.shape[0] or w.shape[1] != p.in_channels or out.shape[0] != x.shape[0]
            or out.shape[1] != p.batch or out.shape[2] != p.out_channels
            or out.shape[3] != ck.output_length(&p)):
        raise ValueError("w or out does not fit x and the parameters")

    # -1 for invalid parameters: then no workspace, and the kernel says what is wrong.
    cdef int64_t workspace_len = max(ck.workspace_length(&p, 1), 0)
    cdef int64_t stride_batch = x.strides[1] // sizeof(double)
    cdef int64_t stride_channel = x.strides[2] // sizeof(double)
    cdef int[::1] status = np.zeros(x.shape[0], dtype=np.intc)
    cdef double* workspace = NULL
    cdef Py_ssize_t m
    with nogil, parallel(num_threads=num_threads):
        workspace = <double*>malloc(workspace_len * sizeof(double))  # NULL: the kernel allocates
        for m in prange(x.shape[0], schedule="dynamic"):
            # One thread per call: the items are the parallel work here.
            status[m] = ck.conv_transpose1d_f64(
                &p, &x[m, 0, 0, 0], stride_batch, stride_channel, 1, &w[m, 0, 0, 0], NULL,
                &out[m, 0, 0, 0], workspace, workspace_len, 1)
        free(workspace)
    for m in range(x.shape[0]):
        if status[m] != ck.CONVT_BLAS_OK:
            raise ValueError(f"item {m}: convt_blas: "
                             f"{ck.convt_blas_strerror(status[m]).decode()} (status {status[m]})")
