"""SamplerV2: bit order and registers against StatevectorSampler, distributions against exact probabilities.

Distribution checks use a fixed seed (deterministic) and a bound of 5
standard errors per outcome plus 1e-3: a false failure has probability below
1e-5 per check.
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import efficient_su2, real_amplitudes
from qiskit.primitives import StatevectorSampler
from qiskit.quantum_info import Statevector

import qsim_core as qc
from qsim_core.qiskit import SamplerV2


def assert_matches(counts: dict[str, int], probabilities: dict[str, float], shots: int) -> None:
    """Counts agree with exact ``probabilities`` within 5 standard errors (+1e-3) per outcome."""
    assert sum(counts.values()) == shots
    for key in set(counts) | set(probabilities):
        p = probabilities.get(key, 0.0)
        frequency = counts.get(key, 0) / shots
        assert abs(frequency - p) <= 5 * np.sqrt(p * (1 - p) / shots) + 1e-3, (key, frequency, p)


def test_bits_and_registers_match_statevector_sampler_exactly():
    qubits = QuantumRegister(4)
    alpha, beta, unused = ClassicalRegister(3, "alpha"), ClassicalRegister(2, "beta"), ClassicalRegister(2, "unused")
    circuit = QuantumCircuit(qubits, alpha, beta, unused)
    circuit.x([0, 2])
    circuit.measure([0, 1, 2], [alpha[2], alpha[0], beta[1]])
    circuit.measure(3, alpha[1])
    ours = SamplerV2(seed=1).run([circuit], shots=5).result()[0].data
    reference = StatevectorSampler(seed=1).run([circuit], shots=5).result()[0].data
    for name in ("alpha", "beta", "unused"):
        assert getattr(ours, name).num_bits == getattr(reference, name).num_bits
        assert getattr(ours, name).get_counts() == getattr(reference, name).get_counts()
    assert ours.alpha.get_counts() == {"100": 5}
    assert ours.beta.get_counts() == {"10": 5}


def test_more_than_eight_bits_pack_like_qiskit():
    circuit = QuantumCircuit(11)
    circuit.x([0, 3, 9, 10])
    circuit.measure_all()
    ours = SamplerV2().run([circuit], shots=3).result()[0].data.meas
    reference = StatevectorSampler().run([circuit], shots=3).result()[0].data.meas
    np.testing.assert_array_equal(ours.array, reference.array)
    assert ours.get_counts() == {"11000001001": 3}


def test_samples_follow_the_exact_distribution():
    circuit = efficient_su2(3, reps=2)
    circuit.measure_all()
    values = np.random.default_rng(3).uniform(-np.pi, np.pi, (2, circuit.num_parameters))
    shots = 20_000
    result = SamplerV2(seed=5).run([(circuit, values)], shots=shots).result()[0]
    assert result.metadata["shots"] == shots
    for row, row_values in enumerate(values):
        bound = circuit.remove_final_measurements(inplace=False).assign_parameters(row_values)
        exact = Statevector(bound).probabilities_dict()
        assert_matches(result.data.meas.get_counts(row), exact, shots)


def test_broadcast_bindings_shape_the_bit_arrays():
    circuit = real_amplitudes(2, reps=1)
    circuit.measure_all()
    values = np.random.default_rng(0).uniform(-1, 1, (2, 3, circuit.num_parameters))
    result = SamplerV2(seed=2).run([(circuit, values, 50)]).result()[0]
    assert result.data.shape == (2, 3)
    assert result.data.meas.shape == (2, 3)
    assert result.data.meas.num_shots == 50
    assert result.join_data().shape == (2, 3)


def test_seeds_make_runs_reproducible():
    circuit = efficient_su2(3, reps=1)
    circuit.measure_all()
    values = np.random.default_rng(1).uniform(-1, 1, (4, circuit.num_parameters))
    sampler = SamplerV2(seed=42)
    first = sampler.run([(circuit, values)], shots=200).result()[0].data.meas
    again = SamplerV2(seed=42).run([(circuit, values)], shots=200).result()[0].data.meas
    twice = sampler.run([(circuit, values)], shots=200).result()[0].data.meas
    other = SamplerV2(seed=43).run([(circuit, values)], shots=200).result()[0].data.meas
    np.testing.assert_array_equal(first.array, again.array)
    np.testing.assert_array_equal(first.array, twice.array)
    assert not np.array_equal(first.array, other.array)
    assert not np.array_equal(first.array[0], first.array[1])  # each parameter set has its own stream


def test_default_shots_and_run_shots():
    circuit = QuantumCircuit(1)
    circuit.h(0)
    circuit.measure_all()
    assert SamplerV2(default_shots=7).run([circuit]).result()[0].data.meas.num_shots == 7
    assert SamplerV2(default_shots=7).run([circuit], shots=9).result()[0].data.meas.num_shots == 9
    assert SamplerV2().run([(circuit, None, 11)], shots=9).result()[0].data.meas.num_shots == 11


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="default_shots"):
        SamplerV2(default_shots=0)
    circuit = QuantumCircuit(1, 1)
    circuit.measure(0, 0)
    circuit.h(0)
    with pytest.raises(qc.CircuitError, match="terminal"):
        SamplerV2().run([circuit]).result()
    with pytest.raises(ValueError):  # Qiskit's pub validation
        SamplerV2().run([circuit], shots=-5)
    no_registers = QuantumCircuit(1)
    no_registers.h(0)
    with pytest.warns(UserWarning, match="no output classical registers"):
        result = SamplerV2().run([no_registers]).result()[0]
    assert len(result.data) == 0
