"""Build of the Cython kernels; everything else about the package is in pyproject.toml.

``pip install .`` (or ``pip install -e .``) compiles
``qsim_core/backends/cython/_kernels.pyx`` into the extension that the
``cython`` backend imports. Flags: ``-O3`` lets gcc vectorise the kernels'
inner loops; ``-funroll-loops`` cuts the loop overhead of the short,
load/store-bound gate loops (a modest gain on the seed circuit); OpenMP runs them
in parallel. No ``-march``: the wheel must run on any x86-64 CPU. No
fast-math: it breaks NaN, infinity and denormal semantics.
"""

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: compile and link flags per compiler family (distutils' compiler_type)
FLAGS = {
    "msvc": (["/O2", "/openmp"], []),
    "unix": (["-O3", "-funroll-loops", "-fopenmp"], ["-fopenmp"]),
}


class BuildExt(build_ext):
    """Add the optimisation and OpenMP flags the compiler in use understands."""

    def build_extensions(self):
        compile_args, link_args = FLAGS.get(self.compiler.compiler_type, FLAGS["unix"])
        for extension in self.extensions:
            extension.extra_compile_args = compile_args + extension.extra_compile_args
            extension.extra_link_args = link_args + extension.extra_link_args
        super().build_extensions()


extensions = [
    Extension(
        "qsim_core.backends.cython._kernels",
        ["qsim_core/backends/cython/_kernels.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": 3}),
    cmdclass={"build_ext": BuildExt},
    # the generated C (2 MB) belongs in the sdist, not in wheels next to the compiled module
    exclude_package_data={"": ["*.c"]},
)
