"""The Cython backend's kernel module: the compiled ``_cython_kernels``, under numba_kernels' names.

:class:`~qsim_core.backends.base.CompiledBackend` calls the same functions
with the same arguments on this module as on
:mod:`~qsim_core.backends.numba_kernels`. The extension takes every argument
the driver passes as is (numpy uint64 keys included), so this module only
re-exports it, after checking that the constants compiled into it still match
the Python side: a stale build must fail loudly at import (the registry turns
the ImportError into BackendUnavailableError), not compute wrong results.
"""

from .. import program
from . import base
from ._cython_kernels import (
    STEP_KINDS,
    TASKS,
    adjoint_small,
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

if STEP_KINDS != (program.U1, program.U2, program.CNOT, program.SWAP, program.PERM, program.U2X,
                   program.U2D) or TASKS != (
    base.TASK_STATE,
    base.TASK_PROBS,
    base.TASK_EXPVAL,
    base.TASK_SAMPLES,
    base.TASK_SHOT_EXPVAL,
):
    raise ImportError(
        "qsim_core.backends._cython_kernels was built from a different source (its step kinds or task codes "
        "differ from qsim_core.program / qsim_core.backends.base); rebuild it with `pip install .`"
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
