"""Hypothesis strategies for random circuits over the whole gate table."""

from __future__ import annotations

from hypothesis import strategies as st

import qsim_core as qc

GATE_NAMES = sorted(qc.GATES)


@st.composite
def circuits(draw, min_qubits: int = 1, max_qubits: int = 10, max_ops: int = 30, max_params: int = 6):
    """A random circuit: every gate of the table; constant, Param-referenced (scaled) and ParamSum angles."""
    n = draw(st.integers(min_qubits, max_qubits))
    circuit = qc.Circuit(n)
    num_params = draw(st.integers(0, max_params))
    for _ in range(draw(st.integers(0, max_ops))):
        names = [g for g in GATE_NAMES if qc.GATES[g].num_qubits <= n]
        spec = qc.GATES[draw(st.sampled_from(names))]
        qubits = draw(st.lists(st.integers(0, n - 1), min_size=spec.num_qubits, max_size=spec.num_qubits,
                               unique=True))
        params = []
        for _ in range(spec.num_params):
            if num_params and draw(st.booleans()):
                scale = draw(st.sampled_from([1.0, -0.5, 2.0]))
                offset = draw(st.sampled_from([0.0, 0.25]))
                reference = qc.Param(draw(st.integers(0, num_params - 1)), scale, offset)
                if draw(st.booleans()):  # sometimes an affine combination of two entries
                    reference = reference + qc.Param(draw(st.integers(0, num_params - 1)), -0.75)
                params.append(reference)
            else:
                params.append(draw(st.floats(-4.0, 4.0, allow_nan=False)))
        circuit.append(spec.name, qubits, params)
    if num_params and circuit.num_params < num_params:
        # pad so that params columns exist even if the draw used fewer indices
        circuit.rz(0, qc.Param(num_params - 1))
    return circuit


@st.composite
def rotation_layers(draw, min_qubits: int = 4, max_qubits: int = 12, max_layers: int = 4):
    """Layers of single-qubit runs on distinct qubits in a random order, the case the grouped kernels take three
    at a time: real ones (RY, H) and complex ones (RZ RY RZ, PennyLane's Rot); now and then a CNOT, a lone RZ
    (a diagonal step) or a repeated qubit ends a group, and a first RX layer makes the state complex."""
    n = draw(st.integers(min_qubits, max_qubits))
    circuit = qc.Circuit(n)
    for q in range(n):
        circuit.rx(q, draw(st.floats(-4.0, 4.0, allow_nan=False)))
    for _ in range(draw(st.integers(1, max_layers))):
        for q in draw(st.permutations(range(n))):
            interruption = draw(st.sampled_from(["none"] * 4 + ["rot"] * 2 + ["cnot", "rz", "repeat", "h"]))
            if interruption == "h":
                circuit.h(q)
            elif interruption == "rot":
                for name in ("rz", "ry", "rz"):
                    circuit.append(name, [q], [qc.Param(len(circuit))])
            else:
                circuit.ry(q, qc.Param(len(circuit)))
            if interruption == "cnot":
                circuit.cnot(q, (q + 1) % n)
            elif interruption == "rz":
                circuit.rz(q, draw(st.floats(-4.0, 4.0, allow_nan=False)))
            elif interruption == "repeat":
                circuit.ry(q, draw(st.floats(-4.0, 4.0, allow_nan=False)))
    return circuit


@st.composite
def permutation_runs(draw, min_qubits: int = 2, max_qubits: int = 10, max_runs: int = 3):
    """Runs of 3-12 CNOT/SWAP gates, which compile to permutation steps (gathers through a table linear over
    GF(2)), between layers of RX/RY on every qubit that make the amplitudes distinct and complex."""
    n = draw(st.integers(min_qubits, max_qubits))
    circuit = qc.Circuit(n)
    for _ in range(draw(st.integers(1, max_runs))):
        for q in range(n):
            circuit.append(draw(st.sampled_from(["rx", "ry"])), [q], [draw(st.floats(-4.0, 4.0, allow_nan=False))])
        for _ in range(draw(st.integers(3, 12))):
            a, b = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
            circuit.append(draw(st.sampled_from(["cnot", "cnot", "swap"])), [a, b], [])
    return circuit


@st.composite
def single_qubit_networks(draw, min_qubits: int = 1, max_qubits: int = 10, max_ops: int = 40, max_params: int = 6):
    """Every single-qubit gate of the table (constant, Param-referenced and ParamSum angles) between CNOTs and
    SWAPs: the programs (U1 and permutation steps only) the Cython kernels run eight parameter sets at a time."""
    n = draw(st.integers(min_qubits, max_qubits))
    circuit = qc.Circuit(n)
    num_params = draw(st.integers(1, max_params))
    names = [g for g in GATE_NAMES if qc.GATES[g].num_qubits == 1] + (["cnot", "swap"] * 3 if n > 1 else [])
    for _ in range(draw(st.integers(0, max_ops))):
        spec = qc.GATES[draw(st.sampled_from(names))]
        qubits = draw(st.lists(st.integers(0, n - 1), min_size=spec.num_qubits, max_size=spec.num_qubits,
                               unique=True))
        params = []
        for _ in range(spec.num_params):
            if draw(st.booleans()):
                reference = qc.Param(draw(st.integers(0, num_params - 1)), draw(st.sampled_from([1.0, -0.5, 2.0])),
                                     draw(st.sampled_from([0.0, 0.25])))
                if draw(st.booleans()):
                    reference = reference + qc.Param(draw(st.integers(0, num_params - 1)), -0.75)
                params.append(reference)
            else:
                params.append(draw(st.floats(-4.0, 4.0, allow_nan=False)))
        circuit.append(spec.name, qubits, params)
    if circuit.num_params < num_params:
        circuit.ry(0, qc.Param(num_params - 1))
    return circuit
