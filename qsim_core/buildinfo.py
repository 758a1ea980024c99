"""What compiled code runs on this installation: :func:`build_info`."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import llvmlite.binding
import numba
import numpy as np

from .backends import isa
from .threads import usable_cores


def build_info() -> dict[str, object]:
    """Versions, threads and instruction sets of the compiled backends here.

    The Cython backend runs the best of its builds this CPU executes (or the level
    ``QSIM_CYTHON_ISA`` forces, see :mod:`qsim_core.backends.isa`); numba compiles for
    this CPU when a kernel is first called.

    Returns:
        A dict: ``qsim_core``, ``python``, ``numpy`` (version strings), ``machine``
        (``platform.machine()``), ``threads`` (what ``Simulator(threads=None)`` uses),
        ``cpu_levels`` (instruction-set levels this CPU executes, best first),
        ``cython`` (``isa``: the level that runs, None when the backend does not load;
        ``built``: the levels built, best first; ``max_threads``: its OpenMP maximum;
        ``error``: why it does not load, else None) and ``numba`` (``version``, ``target_cpu``:
        the LLVM CPU name its kernels are compiled for, ``max_threads``), and
        ``openmp_wait_policy`` (``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` as the OpenMP runtime
        read them, see :mod:`qsim_core.threads`).

    Example:
        >>> import qsim_core as qc
        >>> info = qc.build_info()
        >>> info["cython"]["isa"] in (None, *info["cython"]["built"])
        True
    """
    try:
        from .backends import cython

        loaded = {"isa": cython.ISA, "built": list(cython.BUILT), "max_threads": cython.kernels.max_threads(),
                  "error": None}
    except ImportError as error:
        loaded = {"isa": None, "built": isa.built_levels(f"{__package__}.backends.cython"), "max_threads": None,
                  "error": str(error)}
    return {
        "qsim_core": metadata.version("qsim-core"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "threads": usable_cores(),
        "cpu_levels": isa.runnable_levels(isa.cpu_flags()),
        "cython": loaded,
        "numba": {"version": numba.__version__,
                  "target_cpu": numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name(),
                  "max_threads": numba.config.NUMBA_NUM_THREADS},
        "openmp_wait_policy": {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
    }


__all__ = ["build_info"]
