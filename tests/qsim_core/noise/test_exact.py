"""Exact noisy results against the naive Kraus oracle, on random circuits over the whole gate table.

The exact path (density matrices in qsim_core.noise) runs the same whatever
the backend; it is checked with each compiled backend's Simulator anyway, and
the noiseless short-circuit is checked to be the backend's own result.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from tests.conftest import random_params
from tests.qsim_core.noise.oracle import noisy_density, pauli_matrix
from tests.strategies import circuits

RATES = st.tuples(st.sampled_from([0.0, 0.02, 0.3, 4 / 3]), st.sampled_from([0.0, 0.05, 0.5, 16 / 15]))
LABELS = ["Z0", "X0", "Y0 Z1", "X1 Y2 Z3", "Z0 Z1 Z2"]


@pytest.mark.parametrize("native", [False, True], ids=["qis", "native"])
@settings(max_examples=30)
@given(circuit=circuits(max_qubits=4, max_ops=14), rates=RATES, seed=st.integers(0, 100))
def test_exact_distributions_and_expectations_match_the_kraus_oracle(backend, native, circuit, rates, seed):
    if native:
        circuit = qc.to_native(circuit)
    model = qc.NoiseModel(*rates)
    params = random_params(circuit, batch=2, seed=seed)
    sim = qc.Simulator(backend=backend, noise=model)
    n = circuit.num_qubits
    labels = [label for label in LABELS if max(int(t[1:]) for t in label.split()) < n]
    probabilities = sim.probabilities(circuit, params)
    values = sim.expectation(circuit, labels, params)
    for b in range(2):
        rho = noisy_density(circuit, params[b], *rates)
        np.testing.assert_allclose(probabilities[b], np.diag(rho).real, atol=1e-9)
        expected = [np.trace(rho @ pauli_matrix(label, n)).real for label in labels]
        np.testing.assert_allclose(values[b], expected, atol=1e-9)


def test_initial_states_are_honoured():
    circuit = qc.Circuit(3).h(0).cnot(0, 1).ry(2, qc.Param(0)).zz(1, 2, 0.7)
    rng = np.random.default_rng(3)
    state = rng.normal(size=8) + 1j * rng.normal(size=8)
    state /= np.linalg.norm(state)
    got = qc.Simulator(noise=qc.NoiseModel(0.1, 0.2)).probabilities(circuit, [0.4], initial_state=state)
    np.testing.assert_allclose(got, np.diag(noisy_density(circuit, [0.4], 0.1, 0.2, state)).real, atol=1e-12)


def test_zero_rates_are_the_noiseless_engine_bit_for_bit(backend):
    circuit = qc.seed_circuit(4, 1)
    params = random_params(circuit, batch=3)
    noisy = qc.Simulator(backend=backend, noise=qc.NoiseModel(0, 0))
    plain = qc.Simulator(backend=backend)
    assert np.array_equal(noisy.probabilities(circuit, params), plain.probabilities(circuit, params))
    assert np.array_equal(noisy.expectation(circuit, ["Z0", "X1"], params), plain.expectation(circuit, ["Z0", "X1"],
                                                                                                params))
    assert np.array_equal(noisy.statevector(circuit, params), plain.statevector(circuit, params))


def test_noise_lowers_expectations_by_the_depolarizing_factor():
    # one qubit, k gates: <Z> shrinks by (1 - r1) per gate (the closed form of the channel)
    circuit = qc.Circuit(1).x(0).x(0).x(0)
    value = qc.Simulator(noise=qc.NoiseModel(0.1, 0)).expectation(circuit, "Z0")
    assert value[0] == pytest.approx(-(0.9 ** 3), abs=1e-12)


def test_gradients_are_exact_parameter_shift_of_the_noisy_expectation(backend):
    circuit = qc.Circuit(3).ry(0, qc.Param(0)).cnot(0, 1).gpi2(1, qc.Param(1)).ms(1, 2, qc.Param(0) * 0.1, 0.2)
    circuit.rx(2, qc.Param(1) + qc.Param(0)).zz(0, 2, qc.Param(1))
    sim = qc.Simulator(backend=backend, noise=qc.NoiseModel(0.05, 0.1))
    params = random_params(circuit, batch=2, seed=5)
    labels = ["Z0", "X1 Z2"]
    values, jacobian = sim.value_and_gradient(circuit, labels, params)
    np.testing.assert_allclose(values, sim.expectation(circuit, labels, params), atol=1e-12)
    step = 1e-5
    for p in range(circuit.num_params):
        shift = np.zeros(circuit.num_params)
        shift[p] = step
        numeric = (sim.expectation(circuit, labels, params + shift) - sim.expectation(circuit, labels, params - shift))
        np.testing.assert_allclose(jacobian[:, :, p], numeric / (2 * step), atol=1e-7)
    vjp = sim.vjp(circuit, labels, params, [1.0, -2.0])
    np.testing.assert_allclose(vjp, jacobian[:, 0] - 2 * jacobian[:, 1], atol=1e-12)


def test_requests_without_a_noisy_meaning_are_refused():
    sim = qc.Simulator(noise="aria-1")
    circuit = qc.Circuit(2).h(0).cnot(0, 1).ry(1, qc.Param(0))
    with pytest.raises(qc.NoiseError, match="mixed"):
        sim.statevector(circuit, [0.1])
    with pytest.raises(qc.CircuitTooLargeError, match="up to 12 qubits"):
        sim.probabilities(qc.Circuit(13).h(0))
    with pytest.raises(qc.ParameterError):
        sim.probabilities(circuit, [np.nan])
