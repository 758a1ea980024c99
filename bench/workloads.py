"""The benchmarks' circuits beyond the seed circuit (which is :func:`qsim_core.seed_circuit`)."""

from __future__ import annotations

from qsim_core import Circuit, Param


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
