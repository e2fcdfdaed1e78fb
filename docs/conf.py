"""Sphinx configuration for the convt_blas documentation.

Build (from the repository root, with the ``docs`` extra installed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -b doctest docs docs/_build/doctest
"""
import convt_blas

project = "convt_blas"
author = "the convt_blas developers"
copyright = "2026, the convt_blas developers"
release = convt_blas.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
]

exclude_patterns = ["_build"]
root_doc = "index"
default_role = "literal"
# Every cross-reference must resolve (with -W, a broken one fails the build).
nitpicky = True

# API reference: the pages list what they document themselves, so autosummary
# writes no stub files into the source tree.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# convt_blas.cuda and convt_blas.dask import CuPy and dask only when called;
# nothing optional is imported at module level, so nothing needs mocking.
autodoc_mock_imports = []

# numpydoc renders the docstrings' sections; it does not list class members
# itself (the autoclass directives do) and does not validate docstrings.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

# Doctests of the pages: torch and dask examples run where those are installed
# (the test and dask extras) and are skipped elsewhere.
doctest_global_setup = """
import numpy as np
try:
    import torch
except ImportError:
    torch = None
try:
    import dask
except ImportError:
    dask = None
"""

html_theme = "alabaster"
html_title = f"convt_blas {release}"
html_static_path = []
html_theme_options = {
    "description": "PyTorch's conv_transpose1d on BLAS, without torch",
    "fixed_sidebar": True,
}
