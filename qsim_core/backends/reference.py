"""The reference backend: dense numpy, slow on purpose, obviously correct.

It reads the circuit directly (no compilation, no fusion, no permutation
merging), applies each gate's table matrix with ``einsum``, and evaluates
observables by applying Pauli matrices. It is the oracle the compiled
backends are tested against; use it for checking, not for speed.
"""

from __future__ import annotations

import numpy as np

from ..circuit import is_symbolic
from ..derivatives import derivative_matrix
from ..gates import GATES
from ..observables import PauliStrings
from .contract import Job

_PAULI = {
    "X": np.array([[0, 1], [1, 0]], np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], np.complex128),
    "Z": np.array([[1, 0], [0, -1]], np.complex128),
}


def apply_matrix(states: np.ndarray, matrices: np.ndarray, qubits: tuple[int, ...]) -> np.ndarray:
    """Apply ``matrices[B, d, d]`` (first qubit most significant) to ``states[B, 2**n]``."""
    batch, size = states.shape
    n = size.bit_length() - 1
    k = len(qubits)
    # reshape gives axis 1 + (n - 1 - q) for qubit q: the flat index is little endian
    axes = [1 + (n - 1 - q) for q in qubits]
    tensor = np.moveaxis(states.reshape((batch,) + (2,) * n), axes, range(-k, 0))
    moved_shape = tensor.shape
    flat = tensor.reshape(batch, -1, 2**k)
    flat = np.einsum("bij,brj->bri", matrices, flat)
    tensor = np.moveaxis(flat.reshape(moved_shape), range(-k, 0), axes)
    return tensor.reshape(batch, size)


def _resolved(job: Job, values: tuple) -> list[np.ndarray]:
    return [
        sum(scale * job.params[:, index] for index, scale in v.terms) + v.offset if is_symbolic(v)
        else np.full(job.batch, float(v))
        for v in values
    ]


def _matrices(job: Job, op) -> np.ndarray:
    """The operation's matrix for every parameter set: complex128[B, d, d]."""
    spec = GATES[op.name]
    matrices = spec.matrix(*_resolved(job, op.params)) if spec.num_params else spec.matrix()
    return np.broadcast_to(matrices, (job.batch,) + matrices.shape[-2:])


def _apply_pauli(states: np.ndarray, observables: PauliStrings, k: int) -> np.ndarray:
    """Pauli string k applied to ``states[B, 2**n]``, factor by factor."""
    applied = states
    for q, letter in observables.factors(k).items():
        applied = apply_matrix(applied, np.broadcast_to(_PAULI[letter], (len(states), 2, 2)), (q,))
    return applied


class ReferenceBackend:
    """Dense numpy oracle implementing :class:`~qsim_core.backends.contract.Backend`."""

    name = "reference"
    stable_rows = 1

    def statevector(self, job: Job) -> np.ndarray:
        """Final states, applying every gate of the circuit in order."""
        if job.initial is not None:
            states = job.initial.astype(np.complex128)
        else:
            states = np.zeros((job.batch, job.size), np.complex128)
            states[:, 0] = 1.0
        for op in job.circuit:
            states = apply_matrix(states, _matrices(job, op), op.qubits)
        return states.astype(job.dtype)

    def probabilities(self, job: Job) -> np.ndarray:
        """|amplitude|^2 of the final states."""
        return np.abs(self.statevector(job).astype(np.complex128)) ** 2

    def expectation(self, job: Job, observables: PauliStrings) -> np.ndarray:
        """<psi|P|psi> with P applied factor by factor."""
        states = self.statevector(job).astype(np.complex128)
        return np.stack([np.einsum("bi,bi->b", states.conj(), _apply_pauli(states, observables, k)).real
                         for k in range(len(observables))], axis=1)

    def adjoint(self, job: Job, observables: PauliStrings, weights: np.ndarray, values: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Adjoint differentiation gate by gate (no fusion), each parameter slot through
        :func:`~qsim_core.derivatives.derivative_matrix`: an oracle independent of the compiled plan."""
        states = self.statevector(Job(job.circuit, job.params, np.complex128, 1, initial=job.initial))
        applied = np.stack([_apply_pauli(states, observables, k) for k in range(len(observables))], axis=1)
        expectations = np.einsum("bi,bki->bk", states.conj(), applied).real if values else None
        lanes = weights.shape[1]
        lam = np.einsum("blk,bki->bli", weights, applied).reshape(job.batch * lanes, job.size)
        gradient = np.zeros((job.batch, lanes, job.circuit.num_params))
        for op in reversed(job.circuit.operations):
            undo = np.conj(_matrices(job, op).swapaxes(-1, -2))
            states = apply_matrix(states, undo, op.qubits)
            for slot, value in enumerate(op.params):
                if not is_symbolic(value):
                    continue
                slope = derivative_matrix(op.gate, slot, _resolved(job, op.params))
                moved = apply_matrix(states, slope, op.qubits)
                overlap = 2 * np.einsum("bli,bi->bl", lam.reshape(job.batch, lanes, -1).conj(), moved).real
                for index, scale in value.terms:
                    gradient[:, :, index] += scale * overlap
            lam = apply_matrix(lam, np.repeat(undo, lanes, axis=0), op.qubits)
        if job.initial is None:
            return expectations, gradient, None
        return expectations, gradient, 2 * lam.reshape(job.batch, lanes, job.size)

    def sample(self, job: Job, shots: int, key: int, offset: int = 0) -> np.ndarray:
        """``numpy.random.Generator.choice`` per parameter set, seeded by the row's global index ``offset + b``."""
        probabilities = self.probabilities(job)
        out = np.empty((job.batch, shots), np.int64)
        for b in range(job.batch):
            rng = np.random.default_rng([key, offset + b])
            out[b] = rng.choice(job.size, size=shots, p=probabilities[b] / probabilities[b].sum())
        return out

    def shot_expectation(self, job: Job, observables: PauliStrings, shots: int, key: int,
                         offset: int = 0) -> np.ndarray:
        """Z strings from shared samples; X/Y strings from binomial draws on the exact value.

        The binomial draws come from a generator per row, seeded by its global index (and a 1 to
        keep it apart from the row's sampling stream), so a batch cut into jobs estimates alike.
        """
        samples = self.sample(job, shots, key, offset)
        exact = self.expectation(job, observables)
        out = np.empty((job.batch, len(observables)))
        for k in range(len(observables)):
            if observables.xmask[k] == 0:
                bits = samples & observables.zmask[k]
                parity = np.array([[bin(int(v)).count("1") & 1 for v in row] for row in bits])
                out[:, k] = (1 - 2 * parity).mean(axis=1)
        rotated = observables.xmask != 0
        for b in range(job.batch):
            rng = np.random.default_rng([key, offset + b, 1])
            plus = rng.binomial(shots, (1 + exact[b, rotated]) / 2)
            out[b, rotated] = 2 * plus / shots - 1
        return out
