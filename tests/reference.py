"""The tests' reference: convt_blas.reference, which never touches the GEMM kernels."""
from convt_blas.reference import conv_transpose1d_reference  # noqa: F401
