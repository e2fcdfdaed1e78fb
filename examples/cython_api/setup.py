"""Build the example in place: python setup.py build_ext --inplace (with convt_blas installed)."""
import convt_blas
from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = ["-fopenmp"] if convt_blas.openmp_enabled() else []
setup(
    name="convt_cython_example",
    ext_modules=cythonize(
        [Extension("convt_cython_example", ["convt_cython_example.pyx"],
                   include_dirs=[convt_blas.get_include()],
                   extra_compile_args=openmp, extra_link_args=openmp)],
        compiler_directives={"language_level": 3},
    ),
)
