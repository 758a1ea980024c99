"""The compiler: a :class:`~qsim_core.Circuit` in, a :class:`Program` of flat arrays out.

Public (what the backends, the derivatives and code outside qsim_core may use):
:func:`compile_circuit` and its cache (:data:`PROGRAM_CACHE`, a :class:`ProgramCache` bounded by
bytes: ``PROGRAM_CACHE.resize(n)``), :class:`Program`, :data:`DEFAULT_BLOCK_QUBITS` and the
step kinds the kernels understand (``U1``, ``U2``, ``CNOT``, ``SWAP``, ``PERM``,
``U2X``, ``U2D``). The passes and the order they run in are described in
:mod:`qsim_core.compiler.program`, which names the module of each.
"""

from .compile import PROGRAM_CACHE, ProgramCache, compile_circuit
from .program import CNOT, DEFAULT_BLOCK_QUBITS, MAX_BLOCK_QUBITS, PERM, SWAP, U1, U2, U2D, U2X, Program

__all__ = [
    "CNOT", "DEFAULT_BLOCK_QUBITS", "MAX_BLOCK_QUBITS", "PERM", "PROGRAM_CACHE", "SWAP", "U1", "U2", "U2D", "U2X",
    "Program", "ProgramCache", "compile_circuit",
]
