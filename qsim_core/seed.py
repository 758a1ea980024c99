"""The reference run's circuit (``shared/seed-benchmark.md``): 8 qubits, 40 parameters.

The circuit IonQ's cloud simulator ran 3,840 times in the reference training
run. ``python -m qsim_core`` runs it, qstore's default quantum layer is it
(``qstore.ml.feature_circuit(QuantumLayerConfig())`` builds the same gates),
and the benchmarks and tests measure it; this is its one definition.
"""

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
