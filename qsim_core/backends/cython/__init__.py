"""The Cython backend: the compiled extension ``_kernels``, checked, as :data:`kernels`.

:class:`~qsim_core.backends.driver.CompiledBackend` calls the same functions
(:data:`qsim_core.backends.contract.KERNEL_FUNCTIONS`) with the same arguments on it as on
:mod:`qsim_core.backends.numba`'s modules. The extension is built by ``setup.py`` from
``_kernels.pyx`` (which includes the adjoint sweep, ``_adjoint.pxi``) and takes every argument
the driver passes as is (numpy uint64 keys included). Importing this package checks that the
constants compiled into it still match the Python side: a stale build must fail loudly at import
(the registry turns the ImportError into BackendUnavailableError), not compute wrong results.
"""

from ... import compiler
from .. import contract
from . import _kernels as kernels

if kernels.STEP_KINDS != (compiler.U1, compiler.U2, compiler.CNOT, compiler.SWAP, compiler.PERM, compiler.U2X,
                          compiler.U2D) or kernels.TASKS != (
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
