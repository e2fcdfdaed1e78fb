"""Errors and reprs a first-time user meets say what is true and what to do."""
import sys

import numpy as np
import pytest

import convt_blas
from convt_blas import cuda


def test_numpy_input_to_the_cuda_path_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy fails, as where not installed
    x, w = np.ones((1, 2, 5), np.float32), np.ones((2, 3, 4), np.float32)
    with pytest.raises(ImportError) as caught:
        cuda.conv_transpose1d(x, w)
    message = str(caught.value)
    assert "got a CuPy array" not in message
    assert "CuPy is not installed" in message
    assert "numpy.ndarray" in message and "convt_blas.conv_transpose1d" in message


def test_cupy_input_without_a_loadable_cupy_says_why(monkeypatch):
    fake = type("ndarray", (), {"__module__": "cupy._core.core"})()
    w = np.ones((2, 3, 4), np.float32)
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(ImportError, match="got a CuPy array, but CuPy is not installed"):
        cuda.conv_transpose1d(fake, w)
    # Installed, but a CUDA library it loads is missing.
    monkeypatch.setattr("builtins.__import__", _failing_import(ImportError(
        "libcublas.so.12: cannot open shared object file", name="cupy_backends.cuda")))
    with pytest.raises(ImportError, match="installed but cannot be imported.*libcublas"):
        cuda.conv_transpose1d(fake, w)


def _failing_import(error):
    real = __import__

    def fake_import(name, *args, **kwargs):
        if name == "cupy":
            raise error
        return real(name, *args, **kwargs)

    return fake_import


@pytest.mark.parametrize("given", [
    np.ones((1, 4, 10)),                 # float64
    [[[0.5] * 10] * 4],                  # a list of lists: float64 too
])
def test_float64_into_a_float32_layer_says_how_to_convert(given):
    layer = convt_blas.ConvTranspose1d(4, 2, 3)
    with pytest.raises(TypeError, match=r"float64 and weight dtype float32 must be the same; "
                                        r"convert the input: input\.astype\(np\.float32\)"):
        layer(given)
    with pytest.raises(TypeError, match=r"np\.asarray\(input, np\.float32\) for a list"):
        convt_blas.conv_transpose1d(given, layer.weight)
    assert layer(np.asarray(given, np.float32)).shape == (1, 2, 12)


def test_bias_of_another_dtype_says_how_to_convert():
    x, w = np.ones((1, 4, 10), np.float32), np.ones((4, 2, 3), np.float32)
    with pytest.raises(TypeError, match=r"convert the bias: bias\.astype\(np\.float32\)"):
        convt_blas.conv_transpose1d(x, w, np.ones(2))


@pytest.mark.parametrize("chunk_dtype", [np.float64, np.int32])
def test_stream_raises_the_functions_type_error_for_a_dtype(chunk_dtype):
    w = np.ones((4, 2, 3), np.float32)
    chunk = np.ones((1, 4, 5), chunk_dtype)
    with pytest.raises(TypeError) as from_function:
        convt_blas.conv_transpose1d(chunk, w)
    stream = convt_blas.ConvTranspose1dStream(w)
    with pytest.raises(TypeError, match=r"chunk\.astype\(np\.float32\)") as from_stream:
        stream.push(chunk)
    assert type(from_stream.value) is type(from_function.value)


def test_stream_repr_is_the_layers():
    layer = convt_blas.ConvTranspose1d(16, 8, 6, stride=3, padding=2, output_padding=1,
                                       groups=2, dilation=1, bias=False, dtype=np.float64)
    stream = convt_blas.ConvTranspose1dStream.from_module(layer)
    assert repr(stream) == ("ConvTranspose1dStream(16, 8, kernel_size=6, stride=3, padding=2, "
                            "output_padding=1, groups=2, bias=False, dtype=float64)")
    assert repr(layer) == ("ConvTranspose1d(16, 8, kernel_size=(6,), stride=(3,), "
                           "padding=(2,), output_padding=(1,), groups=2, bias=False, "
                           "dtype=float64)")
    assert repr(convt_blas.ConvTranspose1dStream(np.ones((2, 3, 4), np.float32), dilation=2)) \
        == "ConvTranspose1dStream(2, 3, kernel_size=4, stride=1, dilation=2, bias=False)"
