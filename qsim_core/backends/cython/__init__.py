"""The Cython backend: the best build of the compiled extension this CPU runs, checked, as :data:`kernels`.

:class:`~qsim_core.backends.driver.CompiledBackend` calls the same functions
(:data:`qsim_core.backends.contract.KERNEL_FUNCTIONS`) with the same arguments on it as on
:mod:`qsim_core.backends.numba`'s modules. ``setup.py`` builds ``_kernels.pyx`` (which includes
the adjoint sweep, ``_adjoint.pxi``) once per instruction-set level: ``_kernels`` (baseline),
``_kernels_v3`` (AVX2 + FMA) and ``_kernels_v4`` (AVX-512) where the platform and compiler allow;
:func:`qsim_core.backends.isa.load` imports the best one the CPU executes (``QSIM_CYTHON_ISA``
forces one). Every level takes every argument the driver passes as is (numpy uint64 keys
included). Importing this package checks that the constants compiled into the loaded module still
match the Python side: a stale build must fail loudly at import (the registry turns the
ImportError into BackendUnavailableError), not compute wrong results.
"""

from ... import compiler
from .. import contract, isa

kernels, ISA = isa.load(__name__)
#: the instruction-set levels built on this installation, best first
BUILT = tuple(isa.built_levels(__name__))

if kernels.STEP_KINDS != (compiler.U1, compiler.U2, compiler.CNOT, compiler.SWAP, compiler.PERM, compiler.U2X,
                          compiler.U2D) or kernels.TASKS != (
    contract.TASK_STATE,
    contract.TASK_PROBS,
    contract.TASK_EXPVAL,
    contract.TASK_SAMPLES,
    contract.TASK_SHOT_EXPVAL,
):
    raise ImportError(
        f"{kernels.__name__} was built from a different source (its step kinds or task codes "
        "differ from qsim_core.compiler / qsim_core.backends.contract); rebuild it with `pip install .`"
    )

__all__ = ["BUILT", "ISA", "kernels"]
