"""Exact noisy results: density-matrix simulation with depolarizing channels after every gate.

Exactness with fewer steps: a depolarizing channel commutes with every
unitary on its own qubits (``D(U rho U^dagger) = U D(rho) U^dagger``) and with
every other Pauli channel, so a run of one-qubit gates on a qubit becomes one
2x2 step plus one channel of parameter ``1 - (1 - r1)**k``, and the pending
one-qubit gates before a non-permutation two-qubit gate fold into its 4x4.
Nothing is approximated.

The density matrix has ``4**n`` complex128 entries (16 MiB at 10 qubits,
256 MiB at 12), so :data:`MAX_DENSITY_QUBITS` is 12; larger circuits raise
:class:`~qsim_core.CircuitTooLargeError` (use ``shots=`` for trajectory estimates).
Results are computed in double precision whatever the simulator's precision.

Public (``__all__``): :data:`MAX_DENSITY_QUBITS`, :func:`density_matrices`,
:func:`noisy_probabilities`, :func:`noisy_expectations`, :func:`expectations_of`, :func:`gate_values`,
:func:`pauli_entries`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .. import memory
from ..backends import Job
from ..circuit import Circuit, Operation, is_symbolic
from ..errors import CircuitTooLargeError
from ..observables import PauliStrings
from .density_kernels import run_steps
from .model import NoiseModel

#: largest circuit the exact noisy methods simulate (a 12-qubit density matrix is 256 MiB)
MAX_DENSITY_QUBITS = 12
#: rows of density matrices held at once, in bytes
_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class _Plan:
    """The step program of one circuit under one model (see :mod:`.density_kernels`).

    Step s's matrix is recipe ``index[s]`` of ``recipes`` (-1: the identity): ``(two-qubit
    operation or -1, one-qubit operations before it on its first qubit, ... on its second)``.
    """

    dims: np.ndarray
    qa: np.ndarray
    qb: np.ndarray
    lam: np.ndarray
    index: np.ndarray
    recipes: tuple[tuple[int, tuple[int, ...], tuple[int, ...]], ...]


def gate_values(op: Operation, params: np.ndarray) -> list[np.ndarray | float]:
    """The operation's parameter values in its gate's unit: float64[B] per symbolic slot, else the constant."""
    values: list[np.ndarray | float] = []
    for value in op.params:
        if is_symbolic(value):
            total = np.full(params.shape[0], value.offset)
            for index, scale in value.terms:
                total = total + scale * params[:, index]
            values.append(total)
        else:
            values.append(value)
    return values


def _matrices(op: Operation, params: np.ndarray) -> np.ndarray:
    """complex128[B, d, d] of one operation for every parameter row."""
    matrix = op.gate.matrix(*gate_values(op, params))
    d = 1 << op.gate.num_qubits
    return np.broadcast_to(matrix, (params.shape[0], d, d))


def _plan(circuit: Circuit, model: NoiseModel) -> _Plan:
    key = ("noise-density", model.r1q, model.r2q)
    if key in circuit.memo:
        return circuit.memo[key]
    steps: list[tuple[int, int, int, float, int]] = []
    recipes: list[tuple[int, tuple[int, ...], tuple[int, ...]]] = []
    pending: dict[int, list[int]] = {}
    survival: dict[int, float] = {}

    def step(dim: int, a: int, b: int, lam: float, recipe: tuple[int, tuple[int, ...], tuple[int, ...]] | None):
        steps.append((dim, a, b, lam, -1 if recipe is None else len(recipes)))
        if recipe is not None:
            recipes.append(recipe)

    def flush(q: int, with_unitary: bool) -> None:
        ops = tuple(pending.pop(q, ())) if with_unitary else ()
        lam = 1.0 - survival.pop(q, 1.0)
        if ops or lam > 0:
            step(1, q, q, lam, (-1, ops, ()) if ops else None)

    for position, op in enumerate(circuit):
        if op.gate.num_qubits == 1:
            q = op.qubits[0]
            pending.setdefault(q, []).append(position)
            survival[q] = survival.get(q, 1.0) * (1.0 - model.r1q)
            continue
        a, b = op.qubits
        # a permutation gate stays cheap only on its own; other gates absorb the pending one-qubit gates
        folded = not op.gate.monomial
        for q in (a, b):
            flush(q, not folded)
        step(2, a, b, model.r2q, (position, tuple(pending.pop(a, ())), tuple(pending.pop(b, ()))))
    for q in sorted(set(pending) | set(survival)):
        flush(q, True)
    columns = list(zip(*steps, strict=True)) if steps else [()] * 5
    plan = _Plan(np.array(columns[0], np.int64), np.array(columns[1], np.int64), np.array(columns[2], np.int64),
                 np.array(columns[3], np.float64), np.array(columns[4], np.int64), tuple(recipes))
    circuit.memo[key] = plan
    return plan


def _product(ops: tuple[Operation, ...], params: np.ndarray) -> np.ndarray:
    """complex128[B, 2, 2]: the one-qubit operations applied in order."""
    out = np.broadcast_to(np.eye(2, dtype=np.complex128), (params.shape[0], 2, 2))
    for op in ops:
        out = _matrices(op, params) @ out
    return out


def _bind(plan: _Plan, circuit: Circuit, params: np.ndarray) -> np.ndarray:
    """complex128[B, G, 4, 4]: every recipe's matrix (one-qubit ones in the top-left 2x2)."""
    ops = circuit.operations
    batch = params.shape[0]
    mats = np.zeros((batch, max(len(plan.recipes), 1), 4, 4), np.complex128)
    for g, (position, before_a, before_b) in enumerate(plan.recipes):
        left = _product(tuple(ops[p] for p in before_a), params)
        if position < 0:
            mats[:, g, :2, :2] = left
            continue
        matrix = _matrices(ops[position], params)
        if before_a or before_b:
            right = _product(tuple(ops[p] for p in before_b), params)
            matrix = matrix @ np.einsum("bij,bkl->bikjl", left, right).reshape(batch, 4, 4)
        mats[:, g] = matrix
    return mats


def density_matrices(job: Job, model: NoiseModel, *, extra_per_row: int = 0):
    """Yield ``(rows, rho)`` per chunk of rows: the noisy final states, complex128[len(rows), 2**n, 2**n].

    ``extra_per_row``: matrices of the same size the caller holds per row beside each density matrix
    (the chunks shrink so that all of them fit, and the memory check counts them).

    Raises:
        CircuitTooLargeError: more than :data:`MAX_DENSITY_QUBITS` qubits, or not enough memory.
    """
    n = job.circuit.num_qubits
    if n > MAX_DENSITY_QUBITS:
        raise CircuitTooLargeError(
            f"exact noisy results use a density matrix (4**n entries) and support up to {MAX_DENSITY_QUBITS} "
            f"qubits; this circuit has {n}: pass shots= for trajectory estimates")
    row_bytes = (16 << (2 * n)) * (1 + extra_per_row)
    chunk = max(1, min(job.batch, _CHUNK_BYTES // row_bytes))
    memory.require(chunk * row_bytes, f"{chunk} {n}-qubit density matrices"
                   + (f" and {extra_per_row} matrices of their size each" if extra_per_row else ""))
    plan = _plan(job.circuit, model)
    numba.set_num_threads(max(1, min(job.threads, numba.config.NUMBA_NUM_THREADS)))
    size = 1 << n
    for start in range(0, job.batch, chunk):
        rows = slice(start, min(start + chunk, job.batch))
        params = job.params[rows]
        rho = np.zeros((params.shape[0], size * size), np.complex128)
        if job.initial is None:
            rho[:, 0] = 1.0
        else:
            psi = job.initial[rows].astype(np.complex128)
            rho[:] = (psi[:, :, np.newaxis] * psi.conj()[:, np.newaxis, :]).reshape(len(psi), -1)
        run_steps(rho, n, plan.dims, plan.qa, plan.qb, plan.index, plan.lam, _bind(plan, job.circuit, params))
        yield rows, rho.reshape(-1, size, size)


def noisy_probabilities(job: Job, model: NoiseModel) -> np.ndarray:
    """Exact noisy basis-state probabilities, float64[B, 2**n]."""
    out = np.empty((job.batch, job.size))
    for rows, rho in density_matrices(job, model):
        out[rows] = np.diagonal(rho, axis1=1, axis2=2).real
    return out


def noisy_expectations(job: Job, model: NoiseModel, observables: PauliStrings) -> np.ndarray:
    """Exact noisy expectations ``Tr(rho P_k)``, float64[B, K]."""
    out = np.empty((job.batch, len(observables)))
    for rows, rho in density_matrices(job, model):
        out[rows] = expectations_of(rho, observables)
    return out


def expectations_of(rho: np.ndarray, observables: PauliStrings) -> np.ndarray:
    """``Tr(rho P_k)`` of density matrices complex128[B, 2**n, 2**n]: float64[B, K].

    With ``P = i**ny X^x Z^z`` (see :mod:`qsim_core.observables`), ``P|j> = i**ny (-1)**|j & z| |j ^ x>``,
    so ``Tr(rho P) = sum_j i**ny (-1)**|j & z| rho[j, j ^ x]``.
    """
    basis = np.arange(rho.shape[1])
    out = np.empty((rho.shape[0], len(observables)))
    for k, (partner, phase) in enumerate(pauli_entries(observables, rho.shape[1])):
        out[:, k] = (rho[:, basis, partner] @ phase).real
    return out


def pauli_entries(observables: PauliStrings, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each string's non-zero entries: ``(partner, phase)``, int64[size] and complex128[size], with
    ``P|j> = phase[j] |partner[j]>``, i.e. ``phase[j] = i**ny (-1)**|j & z|`` and ``partner[j] = j ^ x``."""
    basis = np.arange(size)
    return [(basis ^ int(x), (1j ** int(ny)) * (1 - 2 * (np.bitwise_count(basis & int(z)) & 1).astype(np.int64)))
            for x, z, ny in zip(observables.xmask, observables.zmask, observables.ny, strict=True)]


__all__ = ["MAX_DENSITY_QUBITS", "density_matrices", "expectations_of", "gate_values", "noisy_expectations",
           "noisy_probabilities", "pauli_entries"]
