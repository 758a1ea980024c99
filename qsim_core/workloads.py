"""Standard circuits used by the main job, the tests and the benchmarks."""

from __future__ import annotations

from .circuit import Circuit, Param


def seed_circuit(num_qubits: int = 8, layers: int = 2) -> Circuit:
    """RY(x_q) encoding, then ``layers`` x [RY on each qubit, RZ on each, CNOT(i, j) for all i < j].

    Parameters: ``theta[0:n]`` are the data angles, then ``2 n`` weights per layer.
    """
    c = Circuit(num_qubits)
    for q in range(num_qubits):
        c.ry(q, Param(q))
    for layer in range(layers):
        base = num_qubits + 2 * num_qubits * layer
        for q in range(num_qubits):
            c.ry(q, Param(base + q))
        for q in range(num_qubits):
            c.rz(q, Param(base + num_qubits + q))
        for i in range(num_qubits):
            for j in range(i + 1, num_qubits):
                c.cnot(i, j)
    return c


def layered_circuit(num_qubits: int, layers: int) -> Circuit:
    """``layers`` x [RY on every qubit, RZ on every qubit, CNOT(q, q+1) chain]: the large-n benchmark.

    Every angle is its own parameter: ``2 * num_qubits`` per layer.
    """
    c = Circuit(num_qubits)
    k = 0
    for _ in range(layers):
        for q in range(num_qubits):
            c.ry(q, Param(k))
            k += 1
        for q in range(num_qubits):
            c.rz(q, Param(k))
            k += 1
        for q in range(num_qubits - 1):
            c.cnot(q, q + 1)
    return c
