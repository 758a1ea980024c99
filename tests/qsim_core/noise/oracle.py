"""An independent noisy oracle for the tests: full density matrices and the issue's Kraus operators.

Deliberately naive (every gate and every Kraus operator embedded as a full
``2**n x 2**n`` matrix), sharing nothing with ``qsim_core.noise`` but the gate
table's matrices; only for a few qubits.
"""

from __future__ import annotations

import itertools

import numpy as np

import qsim_core as qc
from qsim_core.circuit import is_symbolic

_PAULIS = [np.eye(2), np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.diag([1.0, -1.0])]


def embed(matrix: np.ndarray, qubits: tuple[int, ...], n: int) -> np.ndarray:
    """The full operator of ``matrix`` (first qubit argument most significant) on ``qubits``; qubit k is bit k."""
    size = 1 << n
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    others = (size - 1) & ~sum(1 << q for q in qubits)
    k = len(qubits)
    row = sum(((i >> q) & 1) << (k - 1 - t) for t, q in enumerate(qubits))
    col = sum(((j >> q) & 1) << (k - 1 - t) for t, q in enumerate(qubits))
    return np.where((i & others) == (j & others), matrix[row, col], 0)


def kraus(k: int, rate: float) -> list[np.ndarray]:
    """The issue's Kraus operators after a k-qubit gate: sqrt(1 - (4**k - 1) r / 4**k) I, sqrt(r / 4**k) P."""
    out = []
    for letters in itertools.product(range(4), repeat=k):
        matrix = np.ones((1, 1))
        for letter in letters:
            matrix = np.kron(matrix, _PAULIS[letter])
        weight = 1 - (4 ** k - 1) * rate / 4 ** k if not any(letters) else rate / 4 ** k
        out.append(np.sqrt(weight) * matrix)
    return out


def noisy_density(circuit: qc.Circuit, params: np.ndarray, r1: float, r2: float,
                  initial: np.ndarray | None = None) -> np.ndarray:
    """The final density matrix with the depolarizing channel after every gate."""
    n = circuit.num_qubits
    if initial is None:
        initial = np.zeros(1 << n)
        initial[0] = 1
    rho = np.outer(initial, np.conj(initial)).astype(complex)
    for op in circuit:
        values = [p.resolve(params) if is_symbolic(p) else p for p in op.params]
        unitary = embed(op.gate.matrix(*values), op.qubits, n)
        rho = unitary @ rho @ unitary.conj().T
        operators = [embed(m, op.qubits, n) for m in kraus(len(op.qubits), r1 if len(op.qubits) == 1 else r2)]
        rho = sum(m @ rho @ m.conj().T for m in operators)
    return rho


def pauli_matrix(label: str, n: int) -> np.ndarray:
    """The matrix of a Pauli string like ``"X0 Z2"`` (qubit k is bit k)."""
    factors = {int(token[1:]): "IXYZ".index(token[0]) for token in label.split()}
    out = np.ones((1, 1))
    for q in reversed(range(n)):
        out = np.kron(out, _PAULIS[factors.get(q, 0)])
    return out
