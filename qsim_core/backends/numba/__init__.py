"""The numba backend's kernel module: the functions :class:`~qsim_core.backends.driver.CompiledBackend` calls.

The forward kernels are in :mod:`.kernels`, the adjoint sweep in :mod:`.adjoint`;
both compile on first use (``cache=True`` keeps the machine code between runs).
"""

from .adjoint import adjoint_small
from .kernels import (
    evolve_large,
    expectations_large,
    max_threads,
    probabilities_in_place,
    run_small,
    samples_large,
    set_threads,
    shot_estimates_into,
    stream_state,
)

__all__ = [
    "adjoint_small",
    "evolve_large",
    "expectations_large",
    "max_threads",
    "probabilities_in_place",
    "run_small",
    "samples_large",
    "set_threads",
    "shot_estimates_into",
    "stream_state",
]
