"""Build the example in place: python setup.py build_ext --inplace (with convt_blas installed)."""
import convt_blas
from setuptools import Extension, setup

setup(
    name="convt_c_example",
    ext_modules=[
        Extension("convt_c_example", ["convt_c_example.c"],
                  include_dirs=[convt_blas.get_include()]),
    ],
)
