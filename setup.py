"""Build convt_blas: cythonize pyx/ into extension modules of the convt_blas package.

Environment switches:
  CONVT_BLAS_NO_OPENMP=1   build without OpenMP (serial kernels).
  CONVT_BLAS_SANITIZE=1    build with AddressSanitizer and UBSan (-O1, frame pointers).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy
from Cython import Tempita
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def openmp_flags():
    """Compile and link flags for OpenMP, or ([], []) when the compiler has none."""
    if os.environ.get("CONVT_BLAS_NO_OPENMP"):
        return [], []
    compiler = os.environ.get("CC", "cc")
    flags = ["/openmp"] if sys.platform == "win32" else ["-fopenmp"]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            result = subprocess.run(
                [compiler, *flags, src, "-o", os.path.join(tmp, "probe")],
                capture_output=True,
            )
            ok = result.returncode == 0
        except OSError:
            ok = False
    if not ok:
        warnings.warn(
            f"{compiler} cannot build OpenMP code: convt_blas is built serial "
            "(convt_blas.openmp_enabled() will return False)."
        )
        return [], []
    return flags, flags


def render_templates():
    """pyx/NAME.tp -> pyx/NAME (Tempita), rewritten only when the text changes, so
    that cythonize rebuilds only what a template change reaches."""
    pyx = os.path.join(HERE, "pyx")
    for name in sorted(os.listdir(pyx)):
        if not name.endswith(".tp"):
            continue
        with open(os.path.join(pyx, name)) as f:
            text = Tempita.sub(f.read())
        target = os.path.join(pyx, name[:-3])
        if os.path.exists(target):
            with open(target) as f:
                if f.read() == text:
                    continue
        with open(target, "w") as f:
            f.write(text)


def extensions():
    render_templates()
    compile_args, link_args = openmp_flags()
    compile_args = ["-O3", *compile_args]
    if os.environ.get("CONVT_BLAS_SANITIZE"):
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
        compile_args += sanitize
        link_args = [*link_args, "-fsanitize=address,undefined"]
    common = dict(
        include_dirs=[numpy.get_include(), "include", "pyx"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    modules = [
        Extension("convt_blas.kernels", ["pyx/kernels.pyx"],
                  depends=["pyx/convt_blas_simd.h"], **common),
        Extension("convt_blas._capi", ["pyx/capi.pyx"], **common),  # the C API's capsule
    ]
    return cythonize(
        modules,
        include_path=[HERE, os.path.join(HERE, "convt_blas")],
        compiler_directives={"language_level": 3},
    )


class BuildPyWithHeaders(build_py):
    """Ship include/ inside the package so convt_blas.get_include() finds it."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "convt_blas", "include")
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(os.path.join(HERE, "include")):
            shutil.copy2(os.path.join(HERE, "include", name), target)


setup(
    ext_modules=extensions(),
    cmdclass={"build_py": BuildPyWithHeaders},
)
