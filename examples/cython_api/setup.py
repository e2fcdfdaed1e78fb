"""Build the example in place: python setup.py build_ext --inplace (with convt_blas installed)."""
import os

import convt_blas
from Cython.Build import cythonize
from setuptools import Extension, setup

# Cython looks for convt_blas/kernels.pxd in the directories on sys.path, where an
# editable install (pip install -e) does not put the package: name its parent.
package_parent = os.path.dirname(os.path.dirname(os.path.abspath(convt_blas.__file__)))
openmp = ["-fopenmp"] if convt_blas.openmp_enabled() else []
setup(
    name="convt_cython_example",
    ext_modules=cythonize(
        [Extension("convt_cython_example", ["convt_cython_example.pyx"],
                   include_dirs=[convt_blas.get_include()],
                   extra_compile_args=openmp, extra_link_args=openmp)],
        include_path=[package_parent],
        compiler_directives={"language_level": 3},
    ),
)
