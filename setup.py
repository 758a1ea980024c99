"""Build of the Cython kernels; everything else about the package is in pyproject.toml.

``pip install .`` (or ``pip install -e .``) compiles
``qsim_core/backends/cython/_kernels.pyx`` into the extension that the
``cython`` backend imports. Flags: ``-O3`` lets gcc vectorise the kernels'
inner loops; ``-funroll-loops`` cuts the loop overhead of the short,
load/store-bound gate loops (a modest gain on the seed circuit); OpenMP runs them
in parallel. No fast-math: it breaks NaN, infinity and denormal semantics.

Instruction sets: the baseline module ``_kernels`` has no ``-march`` and runs on
any x86-64 (or other) CPU. On x86-64 with gcc or clang the same source is also
compiled with ``-march=x86-64-v3`` (AVX2, FMA) and ``-march=x86-64-v4`` (AVX-512)
into ``_kernels_v3`` and ``_kernels_v4``, each level the compiler accepts; the
loader picks the best one the CPU runs (table and choice:
``qsim_core/backends/isa.py``). Cython names a module after its file, so each
level compiles a copy of the sources under ``build/`` named after its module.
The extensions are compiled in parallel. ``QSIM_BUILD_ISA=baseline`` (a comma-separated
list of levels) builds fewer, for a quicker rebuild while developing; an in-place build
then deletes the modules of the levels it skipped, so that no older build is loaded.
"""

import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

ROOT = Path(__file__).resolve().parent
SOURCES = Path("qsim_core/backends/cython")
PACKAGE = "qsim_core.backends.cython"


def load_isa():
    """``qsim_core/backends/isa.py`` loaded by path: the package (and numba) may not be importable here."""
    spec = importlib.util.spec_from_file_location("qsim_isa", ROOT / "qsim_core/backends/isa.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ISA = load_isa()

#: compile and link flags per compiler family (distutils' compiler_type)
FLAGS = {
    "msvc": (["/O2", "/openmp"], []),
    "unix": (["-O3", "-funroll-loops", "-fopenmp"], ["-fopenmp"]),
}


def level_source(level) -> str:
    """The .pyx to compile for ``level``: the source itself for the baseline, else a copy named after its module."""
    if level.march is None:
        return str(SOURCES / "_kernels.pyx")
    target = Path("build/isa") / level.module
    target.mkdir(parents=True, exist_ok=True)
    for source in (ROOT / SOURCES).glob("*.pxi"):
        copy_if_changed(source, target / source.name)
    copy_if_changed(ROOT / SOURCES / "_kernels.pyx", target / f"{level.module}.pyx")
    return str(target / f"{level.module}.pyx")


def copy_if_changed(source: Path, target: Path) -> None:
    """Copy with the source's timestamp, so cythonize re-translates only what changed."""
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copy2(source, target)


def extensions() -> list[Extension]:
    """One extension per level in ``QSIM_BUILD_ISA`` (default: all); above the baseline only on x86-64."""
    x86_64 = platform.machine().lower() in ISA.X86_64_MACHINES
    wanted = os.environ.get("QSIM_BUILD_ISA", ",".join(ISA.LEVELS)).split(",")
    unknown = set(wanted) - set(ISA.LEVELS)
    if unknown or "baseline" not in wanted:
        raise SystemExit(f"QSIM_BUILD_ISA={','.join(wanted)}: expected a comma-separated list of levels "
                         f"from {', '.join(ISA.LEVELS)} that includes baseline")
    return [
        Extension(
            f"{PACKAGE}.{level.module}",
            [level_source(level)],
            include_dirs=[np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=[f"-march={level.march}"] if level.march else [],
        )
        for name, level in ISA.LEVELS.items()
        if name in wanted and (level.march is None or x86_64)
    ]


class BuildExt(build_ext):
    """Add the flags the compiler in use understands; drop the levels it cannot target."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self):
        super().run()
        if self.inplace:
            self.remove_unbuilt_levels()

    def remove_unbuilt_levels(self):
        """Delete in-place modules of levels not built now: the loader would prefer them, built from older source."""
        built = {extension.name for extension in self.extensions}
        for level in ISA.LEVELS.values():
            name = f"{PACKAGE}.{level.module}"
            stale = ROOT / SOURCES / Path(self.get_ext_filename(name)).name
            if name not in built and stale.exists():
                print(f"qsim_core: removing {stale}, a build of older source")
                stale.unlink()

    def build_extensions(self):
        compiler_type = self.compiler.compiler_type
        compile_args, link_args = FLAGS.get(compiler_type, FLAGS["unix"])
        kept = []
        for extension in self.extensions:
            march = [arg for arg in extension.extra_compile_args if arg.startswith("-march=")]
            if march and (compiler_type == "msvc" or not self.accepts(march[0])):
                print(f"qsim_core: skipping {extension.name}: the compiler does not accept {march[0]}")
                continue
            extension.extra_compile_args = compile_args + extension.extra_compile_args
            extension.extra_link_args = link_args + extension.extra_link_args
            kept.append(extension)
        self.extensions = kept
        super().build_extensions()

    def accepts(self, flag: str) -> bool:
        """Whether the compiler compiles a trivial file with ``flag``."""
        with tempfile.TemporaryDirectory() as directory:
            source = Path(directory) / "probe.c"
            source.write_text("int main(void) { return 0; }\n")
            try:
                self.compiler.compile([str(source)], output_dir=directory, extra_postargs=[flag])
            except CompileError:
                return False
        return True


setup(
    # translation in parallel too, except where multiprocessing would re-run this script (spawn)
    ext_modules=cythonize(extensions(), compiler_directives={"language_level": 3},
                          nthreads=0 if sys.platform == "win32" else os.cpu_count() or 1),
    cmdclass={"build_ext": BuildExt},
    # the generated C (2 MB) belongs in the sdist, not in wheels next to the compiled module
    exclude_package_data={"": ["*.c"]},
)
