"""The driver of the compiled adjoint kernels (shared by the numba and Cython backends).

The kernel module (:mod:`~qsim_core.backends.numba_adjoint` or the Cython
``_cython_adjoint``) exports ``adjoint_small`` with the same arguments. This
driver compiles the circuit to one block, binds gate and derivative matrices
per chunk of the batch, runs the kernel and applies the chain rule from
gate-slot uses to the parameter vector.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .. import memory
from ..derivatives import AdjointPlan, adjoint_plan
from ..observables import PauliStrings
from .base import BATCH_CHUNK, SETS_PER_THREAD, Job


def plan_for(job: Job, zbasis: bool) -> AdjointPlan:
    """The job circuit's adjoint plan (cached on the circuit): one block over all qubits."""
    width = max(job.block_qubits, job.circuit.num_qubits)
    key = ("adjoint", zbasis, width, job.initial is None)
    plan = job.circuit.memo.get(key)
    if plan is None:
        plan = adjoint_plan(job.program(zbasis, width))
        job.circuit.memo[key] = plan
    return plan


def run_adjoint(kernels: ModuleType, adjoint_kernels: ModuleType, job: Job, observables: PauliStrings,
                weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Expectations and weighted adjoint gradients.

    Args:
        kernels: the backend's kernel module (for ``set_threads``).
        adjoint_kernels: the module with ``adjoint_small``.
        job: circuit and float64[B, P] parameters.
        observables: the K Pauli strings.
        weights: float64[B, L, K]; lane l differentiates ``sum_k weights[b, l, k] <O_k>``.

    Returns:
        ``(values, gradient, state_gradient)``: float64[B, K], float64[B, L, P], and for jobs
        with initial states ``d f / d Re psi_0 + i d f / d Im psi_0`` as complex[B, L, 2**n] (else None).
    """
    plan = plan_for(job, observables.z_only)
    program = plan.program
    lanes = weights.shape[1]
    threads = min(job.threads, -(-job.batch // SETS_PER_THREAD))
    itemsize = np.dtype(job.dtype).itemsize
    # per thread: psi, the permutation scratch and one state per lane (the state gradients are outputs)
    memory.require(threads * (lanes + 2) * job.size * itemsize,
                   f"adjoint differentiation of a {program.num_qubits}-qubit circuit with {lanes} lane(s)")
    kernels.set_threads(threads)
    values = np.zeros((job.batch, len(observables)))
    gradient = np.empty((job.batch, lanes, program.num_params))
    with_states = job.initial is not None
    state_gradient = np.empty((job.batch, lanes, job.size) if with_states else (0, 0, 0), job.dtype)
    initial = job.initial if with_states else np.empty((0, 0), job.dtype)
    uses = plan.jacobian.shape[0]
    for start in range(0, job.batch, BATCH_CHUNK):
        rows = slice(start, start + BATCH_CHUNK)
        params = job.params[rows]
        u1, u2 = program.bind(params, job.dtype, threads)
        du1, du2 = plan.derivatives(params, job.dtype)
        u2_dagger = np.ascontiguousarray(np.conj(u2.swapaxes(-1, -2)))
        per_use = np.zeros((params.shape[0], lanes, uses))
        adjoint_kernels.adjoint_small(
            u1, u2, u2_dagger, du1, du2, plan.slope1, plan.rotation1, plan.slope2, plan.rotation2,
            program.num_qubits, program.init_u1, program.kind, program.q0, program.q1, program.arg,
            program.run_start, program.run_gate, program.perm_start, plan.inverse_table, program.perm_table,
            plan.u1_use_start, plan.u2_use_start, observables.xmask, observables.zmask, observables.ny,
            np.ascontiguousarray(weights[rows]), values[rows], per_use, initial[rows], state_gradient[rows],
        )
        gradient[rows] = per_use @ plan.jacobian
    # the kernels leave U^dagger lambda; the derivative with respect to (Re, Im) of psi_0 is twice it
    return values, gradient, 2 * state_gradient if with_states else None
