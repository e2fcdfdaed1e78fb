"""Every public function and class has a numpydoc docstring whose Examples run.

The Sphinx doctest build runs them too (docs/api.rst pulls them in); here they
run with the test suite. Examples that need torch or dask are skipped where
those are not installed; the CUDA one is marked ``+SKIP`` in the docstring.
"""
import doctest
import os

import pytest

import convt_blas
import convt_blas.cuda
import convt_blas.dask
import convt_blas.nn
import convt_blas.onnx
import convt_blas.reference

try:
    import convt_blas.torch as convt_blas_torch
except ImportError:  # torch is an optional extra: its module's examples are not collected
    convt_blas_torch = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER_MEMBERS = ["__call__", "weight_shape", "keep_weight_cache", "fan_in", "reset_parameters",
                 "state_dict", "load_state_dict", "from_torch"]
STREAM_MEMBERS = ["from_module"]
# Examples of these need an optional package.
NEEDS = {"ConvTranspose1d.from_torch": "torch", "dask.conv_transpose1d": "dask"}


def public_objects():
    """(name, object) of everything the API reference documents with examples."""
    found = [(name, getattr(convt_blas, name)) for name in convt_blas.__all__]
    found += [("nn.fold_weight_norm", convt_blas.nn.fold_weight_norm),
              ("dask.conv_transpose1d", convt_blas.dask.conv_transpose1d),
              ("onnx.conv_transpose", convt_blas.onnx.conv_transpose),
              ("cuda.conv_transpose1d", convt_blas.cuda.conv_transpose1d),
              ("reference.conv_transpose1d_reference",
               convt_blas.reference.conv_transpose1d_reference)]
    if convt_blas_torch is not None:
        found += [(f"torch.{name}", getattr(convt_blas_torch, name))
                  for name in convt_blas_torch.__all__]
    for cls, members in ((convt_blas.ConvTranspose1d, LAYER_MEMBERS),
                         (convt_blas.ConvTranspose1dStream, STREAM_MEMBERS)):
        found += [(f"{cls.__name__}.{m}", cls.__dict__[m]) for m in members]
    return found


def _docstring(obj):
    return (obj.fget if isinstance(obj, property) else obj).__doc__ or ""


@pytest.mark.parametrize("name, obj", public_objects(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_examples_run(name, obj):
    doc = _docstring(obj)
    assert "\n    Examples\n    --------\n" in doc or "\n        Examples\n        --------\n" in doc, \
        f"{name} has no numpydoc Examples section"
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    parser = doctest.DocTestParser()
    test = parser.get_doctest(doc, {}, name, None, 0)
    assert test.examples, f"{name}'s Examples hold no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{name}: {runner.failures} example(s) failed (see output)"


@pytest.mark.parametrize("member", ["weight", "bias"])
def test_layer_parameters_say_what_they_are(member):
    doc = _docstring(convt_blas.ConvTranspose1d.__dict__[member])
    assert "read-only" in doc


def test_api_page_lists_the_module_functions():
    with open(os.path.join(ROOT, "docs", "api.rst"), encoding="utf-8") as f:
        page = f.read()
    for name, _ in public_objects():
        if "." in name and name.split(".")[0] in ("nn", "dask", "onnx", "cuda", "reference",
                                                             "torch"):
            assert name in page, f"docs/api.rst does not list {name}"
