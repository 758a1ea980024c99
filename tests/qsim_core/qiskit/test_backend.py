"""QsimBackend: transpile(circuit, backend), run(...) results in Qiskit's format, against BasicSimulator.

Distribution checks: fixed seed, 5 standard errors + 1e-3 per outcome (false failure < 1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister, transpile
from qiskit.circuit.library import QFTGate, efficient_su2
from qiskit.providers.basic_provider import BasicSimulator
from qiskit.quantum_info import Statevector
from qiskit_ionq import GPI2Gate, GPIGate, MSGate

import qsim_core as qc
from qsim_core.qiskit import QsimBackend
from qsim_core.qiskit.translate import QISKIT_NAMES

from .test_sampler import assert_matches


def qft_circuit() -> QuantumCircuit:
    circuit = efficient_su2(3, reps=1)
    circuit = circuit.assign_parameters(np.linspace(-2, 2, circuit.num_parameters))
    circuit.append(QFTGate(3), range(3))
    circuit.ccx(0, 1, 2)
    return circuit


def test_transpile_targets_the_engine_gates():
    backend = QsimBackend()
    circuit = qft_circuit()
    circuit.measure_all()
    isa = transpile(circuit, backend, seed_transpiler=1)
    assert set(isa.count_ops()) <= set(QISKIT_NAMES.values()) | {"measure", "barrier"}
    assert backend.target.num_qubits is None and backend.max_circuits is None


def test_ionq_natives_stay_native_through_transpile_and_run():
    circuit = QuantumCircuit(2)
    circuit.append(GPI2Gate(0.125), [0])
    circuit.append(MSGate(0.1, 0.3), [0, 1])
    circuit.append(GPIGate(0.2), [1])
    exact = Statevector(circuit).probabilities_dict()
    circuit.measure_all()
    backend = QsimBackend()
    isa = transpile(circuit, backend, optimization_level=0)
    assert {"gpi2", "ms", "gpi"} <= set(isa.count_ops())
    counts = backend.run(isa, shots=20_000, seed_simulator=4).result().get_counts()
    assert_matches(counts, exact, 20_000)


def test_counts_follow_the_exact_distribution():
    backend = QsimBackend()
    circuit = qft_circuit()
    exact = Statevector(circuit).probabilities_dict()
    circuit.measure_all()
    shots = 20_000
    counts = backend.run(transpile(circuit, backend), shots=shots, seed_simulator=3).result().get_counts()
    assert_matches(counts, exact, shots)


def test_result_format_matches_basic_simulator():
    qubits = QuantumRegister(3)
    low, high = ClassicalRegister(2, "low"), ClassicalRegister(2, "high")
    circuit = QuantumCircuit(qubits, low, high, name="deterministic")
    circuit.x([0, 2])
    circuit.measure([0, 1], low)
    circuit.measure(2, high[1])
    ours = QsimBackend().run(circuit, shots=10, memory=True).result()
    reference = BasicSimulator().run(circuit, shots=10, memory=True).result()
    assert ours.get_counts() == reference.get_counts() == {"10 01": 10}
    assert ours.get_memory() == reference.get_memory()
    assert ours.results[0].header["name"] == reference.results[0].header["name"] == "deterministic"


def test_several_circuits_memory_and_seeds():
    backend = QsimBackend(shots=100)
    bell = QuantumCircuit(2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure_all()
    single = QuantumCircuit(1, 1)
    single.h(0)
    single.measure(0, 0)
    result = backend.run([bell, single], seed_simulator=7, memory=True).result()
    assert set(result.get_counts(0)) <= {"00", "11"} and sum(result.get_counts(0).values()) == 100
    assert len(result.get_memory(1)) == 100
    again = backend.run([bell, single], seed_simulator=7, memory=True).result()
    assert again.get_memory(0) == result.get_memory(0)
    assert again.get_memory(1) == result.get_memory(1)
    other = backend.run([bell, single], seed_simulator=8, memory=True).result()
    assert other.get_memory(0) != result.get_memory(0)
    with pytest.raises(Exception, match="memory"):  # Qiskit: no memory unless asked for
        backend.run(bell).result().get_memory()


def test_bad_input_raises_clear_errors():
    backend = QsimBackend()
    circuit = efficient_su2(2, reps=1)
    circuit.measure_all()
    with pytest.raises(qc.ParameterError, match="unbound parameters"):
        backend.run(circuit)
    with pytest.warns(UserWarning, match="not used"):
        backend.run(circuit.assign_parameters(np.zeros(circuit.num_parameters)), nonsense=1)
    with pytest.raises(qc.BackendUnavailableError):
        QsimBackend(backend="no-such-backend")
