"""convt_blas: PyTorch's conv_transpose1d on BLAS, without torch.

>>> import numpy as np, convt_blas
>>> x = np.random.randn(20, 16, 50).astype(np.float32)
>>> w = np.random.randn(16, 33, 5).astype(np.float32)
>>> convt_blas.conv_transpose1d(x, w, stride=1).shape
(20, 33, 54)
"""
import os

from ._backward import conv_transpose1d_backward
from ._functional import conv_transpose1d, get_winograd, set_winograd
from ._threads import get_num_threads, openmp_enabled, set_num_threads
from ._validation import output_length
from .nn import ConvTranspose1d
from .stream import ConvTranspose1dStream

__version__ = "0.1.0"
__all__ = [
    "conv_transpose1d",
    "conv_transpose1d_backward",
    "ConvTranspose1d",
    "ConvTranspose1dStream",
    "output_length",
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "get_winograd",
    "set_winograd",
    "get_include",
]


def get_include():
    """Directory holding ``convt_blas.h``, for C and Cython code built against convt_blas.

    The C and Cython API page (:doc:`c_api`) shows a ``setup.py`` using it.

    Returns
    -------
    str
        The ``include`` directory shipped in the package (or the source checkout's).

    Examples
    --------
    >>> import os, convt_blas
    >>> os.path.isfile(os.path.join(convt_blas.get_include(), "convt_blas.h"))
    True
    """
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "include")
    if os.path.isfile(os.path.join(installed, "convt_blas.h")):
        return installed
    return os.path.join(os.path.dirname(here), "include")  # source checkout


def __getattr__(name):
    # The C API's function table (see convt_blas.h), fetched by import_convt_blas():
    # C callers plan as Python calls do once the BLAS is configured, which is
    # their first need of it.
    if name == "_C_API":
        from . import _capi, _threads

        _threads.configure_blas()
        return _capi._C_API
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
