"""Exact gradients of noisy expectations: the adjoint method on density matrices.

For a circuit of gates ``U_s`` each followed by its depolarizing channel ``D_s``
and an observable ``O``, ``f = Tr(O rho_final)``. The sweep goes backwards from the
final density matrix, step by step, keeping two matrices at the same point of
the circuit: the state ``rho_in`` before step s and the observable ``O_in``
propagated back to it (Heisenberg picture). Then for a parameter ``x`` of
``U_s``

    ``df/dx = 2 Re Tr(O_in  U_s^dagger dU_s/dx  rho_in)``

(the channel commutes with the unitaries on its own qubits, and is its own
adjoint). ``rho_in`` is un-computed rather than stored, by the inverse channel
``lam -> -lam / (1 - lam)``; rates above :data:`MAX_INVERTIBLE_RATE` are
refused (the inverse would amplify rounding errors), and parameter-shift is
the exact alternative. The cost is about ``2 + L`` noisy simulations for ``L``
weighted observables, against ``1 + 2 x uses`` for parameter-shift.

Public (``__all__``): :func:`noisy_adjoint`, :func:`adjoint_supports`, :data:`MAX_INVERTIBLE_RATE`.
"""

from __future__ import annotations

import numpy as np

from ..backends import Job
from ..circuit import Circuit, is_symbolic
from ..derivatives import derivative_matrix
from ..observables import PauliStrings
from .density import MAX_DENSITY_QUBITS, density_matrices, expectations_of, gate_values, pauli_entries
from .density_kernels import adjoint_sweep
from .model import NoiseError, NoiseModel

#: largest depolarizing parameter of a step the sweep un-computes (1 / (1 - lam) per inverse step)
MAX_INVERTIBLE_RATE = 0.5


def adjoint_supports(model: NoiseModel) -> bool:
    """Whether the sweep can un-compute ``model``'s channels: both rates at most :data:`MAX_INVERTIBLE_RATE`."""
    return max(model.r1q, model.r2q) <= MAX_INVERTIBLE_RATE


def _steps(circuit: Circuit, model: NoiseModel) -> tuple[np.ndarray, ...]:
    """One step per gate as written: qubit count, qubits and channel parameter (int64, int64, int64, float64)."""
    dims = np.array([op.gate.num_qubits for op in circuit], np.int64)
    qa = np.array([op.qubits[0] for op in circuit], np.int64)
    qb = np.array([op.qubits[-1] for op in circuit], np.int64)
    lam = np.where(dims == 1, model.r1q, model.r2q).astype(np.float64)
    return dims, qa, qb, lam


def _uses(circuit: Circuit) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """Use numbering in gate order: use_start[S + 1], (gate, slot) per use, jacobian[U, P] d(value)/d(theta)."""
    per_gate, slots = [], []
    for position, op in enumerate(circuit):
        symbolic = [slot for slot, value in enumerate(op.params) if is_symbolic(value)]
        per_gate.append(len(symbolic))
        slots += [(position, slot) for slot in symbolic]
    jacobian = np.zeros((len(slots), circuit.num_params))
    for use, (position, slot) in enumerate(slots):
        for index, scale in circuit.operations[position].params[slot].terms:
            jacobian[use, index] += scale
    return np.concatenate([[0], np.cumsum(per_gate)]).astype(np.int64), slots, jacobian


def _bind(circuit: Circuit, slots: list[tuple[int, int]], params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gate matrices ``[B, S, 4, 4]`` and slopes ``U^dagger dU/dx`` ``[B, U, 4, 4]`` (one-qubit: top-left 2x2)."""
    batch = params.shape[0]
    mats = np.zeros((batch, len(circuit), 4, 4), np.complex128)
    values = [gate_values(op, params) for op in circuit]
    for position, op in enumerate(circuit):
        d = 1 << op.gate.num_qubits
        mats[:, position, :d, :d] = op.gate.matrix(*values[position])
    slopes = np.zeros((batch, max(len(slots), 1), 4, 4), np.complex128)
    for use, (position, slot) in enumerate(slots):
        op = circuit.operations[position]
        d = 1 << op.gate.num_qubits
        derivative = derivative_matrix(op.gate, slot, values[position])
        slopes[:, use, :d, :d] = np.conj(np.swapaxes(mats[:, position, :d, :d], 1, 2)) @ derivative
    return mats, slopes


def _observables(observables: PauliStrings, weights: np.ndarray, n: int) -> np.ndarray:
    """``sum_k weights[b, l, k] P_k`` as flat dense matrices, complex128[B, L, 4**n]."""
    size = 1 << n
    basis = np.arange(size)
    out = np.zeros(weights.shape[:2] + (size * size,), np.complex128)
    for k, (partner, phase) in enumerate(pauli_entries(observables, size)):
        out[:, :, partner * size + basis] += weights[:, :, k, np.newaxis] * phase  # entry (j ^ x, j)
    return out


def noisy_adjoint(job: Job, model: NoiseModel, observables: PauliStrings, weights: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, None]:
    """Exact noisy expectations and ``sum_k weights[b, l, k] d<O_k>/d theta`` by the adjoint sweep.

    Args:
        job: circuit, ``params[B, P]`` and optional initial states, up to :data:`MAX_DENSITY_QUBITS` qubits.
        model: the noise model; both rates at most :data:`MAX_INVERTIBLE_RATE`.
        observables: the K Pauli strings.
        weights: float64[B, L, K].

    Returns:
        ``(values[B, K], gradients[B, L, P], None)``: the backend contract's adjoint results (no state gradient).

    Raises:
        NoiseError: a rate above :data:`MAX_INVERTIBLE_RATE` (use parameter-shift).
        CircuitTooLargeError: more than :data:`MAX_DENSITY_QUBITS` qubits or not enough memory.
    """
    if not adjoint_supports(model):
        raise NoiseError(f"the noisy adjoint un-computes each channel and supports rates up to "
                         f"{MAX_INVERTIBLE_RATE}; this model has r1q={model.r1q}, r2q={model.r2q}: use "
                         "method='parameter-shift' (exact for depolarizing noise)")
    n, lanes = job.circuit.num_qubits, weights.shape[1]
    dims, qa, qb, lam = _steps(job.circuit, model)
    inverse_lam = -lam / (1.0 - lam)
    use_start, slots, jacobian = _uses(job.circuit)
    values = np.empty((job.batch, len(observables)))
    gradients = np.zeros((job.batch, lanes, job.circuit.num_params))
    # per row: its density matrix and L observables of that size
    for rows, rho in density_matrices(job, model, extra_per_row=lanes):
        values[rows] = expectations_of(rho, observables)
        if not slots:
            continue
        params = job.params[rows]
        mats, slopes = _bind(job.circuit, slots, params)
        obs = _observables(observables, weights[rows], n)
        out = np.empty((len(params), lanes, len(slots)))  # density_matrices has set numba's threads
        adjoint_sweep(rho.reshape(len(params), -1), obs, n, dims, qa, qb, lam, inverse_lam, mats, use_start,
                      slopes, out)
        gradients[rows] = out @ jacobian
    return values, gradients, None


__all__ = ["MAX_DENSITY_QUBITS", "MAX_INVERTIBLE_RATE", "adjoint_supports", "noisy_adjoint"]
