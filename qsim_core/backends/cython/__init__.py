"""The Cython backend's kernel module: the compiled extension ``_kernels``, under the numba backend's names.

:class:`~qsim_core.backends.driver.CompiledBackend` calls the same functions
with the same arguments on this module as on
:mod:`~qsim_core.backends.numba`. The extension is built by ``setup.py`` from
``_kernels.pyx`` (which includes the adjoint sweep, ``_adjoint.pxi``). The extension takes every argument
the driver passes as is (numpy uint64 keys included), so this module only
re-exports it, after checking that the constants compiled into it still match
the Python side: a stale build must fail loudly at import (the registry turns
the ImportError into BackendUnavailableError), not compute wrong results.
"""

from ... import compiler
from .. import contract
from ._kernels import (
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

if STEP_KINDS != (compiler.U1, compiler.U2, compiler.CNOT, compiler.SWAP, compiler.PERM, compiler.U2X,
                   compiler.U2D) or TASKS != (
    contract.TASK_STATE,
    contract.TASK_PROBS,
    contract.TASK_EXPVAL,
    contract.TASK_SAMPLES,
    contract.TASK_SHOT_EXPVAL,
):
    raise ImportError(
        "qsim_core.backends.cython._kernels was built from a different source (its step kinds or task codes "
        "differ from qsim_core.compiler / qsim_core.backends.contract); rebuild it with `pip install .`"
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
