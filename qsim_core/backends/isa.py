"""Instruction-set levels of the Cython kernels: which are built, which this CPU runs, which loads.

``setup.py`` compiles ``_kernels.pyx`` once per level of :data:`LEVELS` (the x86-64 psABI
micro-architecture levels: the baseline, ``x86-64-v3`` = AVX2 + FMA, ``x86-64-v4`` = AVX-512)
into differently named extension modules; :mod:`qsim_core.backends.cython` imports the best one
this CPU can execute. A module built for a higher level may use its instructions anywhere,
module initialisation included, so it must never even be imported on a CPU without them: the
choice is made from the CPU's feature flags first (Linux: ``/proc/cpuinfo``; elsewhere only the
baseline is chosen automatically), and an import failure falls back to the next level down.
``QSIM_CYTHON_ISA`` forces one level (``baseline``, ``x86-64-v3`` or ``x86-64-v4``).

This module imports nothing from the package, so ``setup.py`` can load it by path to read
:data:`LEVELS` (one table for the build and the loader).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import platform
from collections.abc import Collection
from dataclasses import dataclass
from types import ModuleType

#: environment variable that forces one level (a name of :data:`LEVELS`)
ENV_VAR = "QSIM_CYTHON_ISA"

#: ``platform.machine()`` names of x86-64: only there are levels above the baseline built
X86_64_MACHINES = frozenset({"x86_64", "amd64", "x64"})

_V2_FLAGS = frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"})
# abm is how /proc/cpuinfo names LZCNT; xsave stands for OS support of the AVX register state
_V3_FLAGS = _V2_FLAGS | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
_V4_FLAGS = _V3_FLAGS | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


@dataclass(frozen=True)
class Level:
    """One build of the kernels.

    Attributes:
        module: extension module name inside ``qsim_core.backends.cython``.
        march: the gcc/clang ``-march=`` value it is compiled with (None: the compiler's default).
        cpu_flags: ``/proc/cpuinfo`` flags a CPU needs to execute it.
    """

    module: str
    march: str | None
    cpu_flags: frozenset[str]


#: the levels, best first; the baseline runs on every CPU the compiler targets
LEVELS: dict[str, Level] = {
    "x86-64-v4": Level("_kernels_v4", "x86-64-v4", _V4_FLAGS),
    "x86-64-v3": Level("_kernels_v3", "x86-64-v3", _V3_FLAGS),
    "baseline": Level("_kernels", None, frozenset()),
}


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """Feature flags of this CPU as Linux names them (empty where they cannot be read)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def runnable_levels(flags: Collection[str], machine: str | None = None) -> list[str]:
    """Levels, best first, that a CPU with these feature flags executes (always ends with the baseline)."""
    machine = (machine or platform.machine()).lower()
    return [name for name, level in LEVELS.items()
            if level.march is None or (machine in X86_64_MACHINES and level.cpu_flags <= set(flags))]


def built_levels(package: str) -> list[str]:
    """Levels, best first, whose extension module file is in ``package``'s directory (not imported)."""
    spec = importlib.util.find_spec(package)
    directories = (spec.submodule_search_locations or []) if spec else []
    return [name for name, level in LEVELS.items()
            if any(os.path.isfile(os.path.join(directory, level.module + suffix))
                   for directory in directories for suffix in importlib.machinery.EXTENSION_SUFFIXES)]


def candidates(flags: Collection[str], built: Collection[str], forced: str | None = None,
               machine: str | None = None) -> list[str]:
    """Levels to try importing, in order: the forced one alone, or every built and runnable one, best first.

    Args:
        flags: the CPU's feature flags (:func:`cpu_flags`).
        built: levels present (:func:`built_levels`).
        forced: a level name (the value of :data:`ENV_VAR`), or None to choose.
        machine: ``platform.machine()`` (default: this one's).

    Raises:
        ValueError: ``forced`` is not a name of :data:`LEVELS`.
        ImportError: ``forced`` is not built, or this CPU cannot execute it.
    """
    runnable = runnable_levels(flags, machine)
    if forced is None:
        return [name for name in runnable if name in built]
    if forced not in LEVELS:
        raise ValueError(f"{ENV_VAR}={forced!r} is not an instruction-set level; choose one of {', '.join(LEVELS)}")
    if forced not in built:
        raise ImportError(f"{ENV_VAR}={forced} forces a build of the Cython kernels that does not exist here "
                          f"(built: {', '.join(built) or 'none'})")
    if forced not in runnable:
        missing = sorted(LEVELS[forced].cpu_flags - set(flags)) if flags else []
        why = (f"it lacks {', '.join(missing)}" if missing else "this is not an x86-64 machine" if flags
               else "its feature flags cannot be read: /proc/cpuinfo is Linux's")
        raise ImportError(f"{ENV_VAR}={forced} forces a build this CPU cannot execute ({why})")
    return [forced]


def load(package: str) -> tuple[ModuleType, str]:
    """Import the best level of the kernels in ``package`` that this CPU runs (or the one :data:`ENV_VAR` forces).

    Args:
        package: the package holding the extension modules (``qsim_core.backends.cython``).

    Returns:
        The imported module and the name of its level.

    Raises:
        ImportError: no candidate imports (the message lists each failure), or a forced level is unusable.
        ValueError: :data:`ENV_VAR` names no level.
    """
    failures = []
    for name in candidates(cpu_flags(), built_levels(package), os.environ.get(ENV_VAR) or None):
        try:
            return importlib.import_module(f"{package}.{LEVELS[name].module}"), name
        except ImportError as error:
            failures.append(f"{name}: {error}")
    raise ImportError(f"no build of {package}'s kernels imports here ({'; '.join(failures) or 'none is built'})")


__all__ = ["ENV_VAR", "LEVELS", "Level", "built_levels", "candidates", "cpu_flags", "load", "runnable_levels"]
