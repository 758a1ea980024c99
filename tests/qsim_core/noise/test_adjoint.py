"""Exact noisy gradients by the adjoint sweep over density matrices, against parameter-shift.

Parameter-shift on the density-matrix expectations is exact for depolarizing noise (the channels do not
depend on the parameters), and is itself checked against the Kraus oracle in test_exact.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core.noise import MAX_INVERTIBLE_RATE
from tests.conftest import random_params
from tests.strategies import circuits

RATES = st.tuples(st.sampled_from([0.0, 0.01, 0.2, MAX_INVERTIBLE_RATE]), st.sampled_from([0.0, 0.03, 0.3]))
LABELS = ["Z0", "X0", "Y0 Z1", "X1 Y2 Z3", "Z0 Z1 Z2"]


def labels_for(n: int) -> list[str]:
    return [label for label in LABELS if max(int(t[1:]) for t in label.split()) < n]


@pytest.mark.parametrize("native", [False, True], ids=["qis", "native"])
@settings(max_examples=25, deadline=None)
@given(circuit=circuits(max_qubits=4, max_ops=14), rates=RATES, seed=st.integers(0, 100))
def test_the_jacobian_equals_parameter_shift(native, circuit, rates, seed):
    if native:
        circuit = qc.to_native(circuit)
    sim = qc.Simulator(noise=qc.NoiseModel(*rates))
    params = random_params(circuit, batch=2, seed=seed)
    labels = labels_for(circuit.num_qubits)
    values, jacobian = sim.value_and_gradient(circuit, labels, params, method="adjoint")
    shifted_values, shifted = sim.value_and_gradient(circuit, labels, params, method="parameter-shift")
    np.testing.assert_allclose(values, shifted_values, atol=1e-10)
    np.testing.assert_allclose(jacobian, shifted, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(circuit=circuits(max_qubits=4, max_ops=12), seed=st.integers(0, 100))
def test_vjp_with_per_row_cotangents_and_initial_states(circuit, seed):
    rng = np.random.default_rng(seed)
    n = circuit.num_qubits
    sim = qc.Simulator(noise=qc.NoiseModel(0.02, 0.05))
    params = random_params(circuit, batch=3, seed=seed)
    states = rng.normal(size=(3, 1 << n)) + 1j * rng.normal(size=(3, 1 << n))
    states /= np.linalg.norm(states, axis=1, keepdims=True)
    labels = labels_for(n)
    cotangent = rng.normal(size=(3, len(labels)))
    got = sim.vjp(circuit, labels, params, cotangent, method="adjoint", initial_state=states)
    jacobian = sim.gradient(circuit, labels, params, method="parameter-shift", initial_state=states)
    np.testing.assert_allclose(got, np.einsum("bk,bkp->bp", cotangent, jacobian), atol=1e-9)


def test_noisy_gradients_default_to_the_adjoint_sweep_and_it_is_cheaper():
    circuit = qc.seed_circuit(6, 2)
    sim = qc.Simulator(noise="aria-1")
    params = random_params(circuit, batch=1, seed=1)
    labels = [f"Z{q}" for q in range(6)]
    default = sim.vjp(circuit, labels, params, np.ones(6))
    adjoint = sim.vjp(circuit, labels, params, np.ones(6), method="adjoint")
    assert np.array_equal(default, adjoint)
    shifted = sim.vjp(circuit, labels, params, np.ones(6), method="parameter-shift")
    np.testing.assert_allclose(adjoint, shifted, atol=1e-10)
    assert np.abs(adjoint).max() > 1e-3  # a gradient that is there, not an all-zero pass


def test_rates_too_high_to_un_compute_are_refused_and_the_default_shifts():
    circuit = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1).rx(1, qc.Param(1))
    sim = qc.Simulator(noise=qc.NoiseModel(0.7, 0.1))
    with pytest.raises(qc.NoiseError, match="parameter-shift"):
        sim.gradient(circuit, "Z1", [0.3, 0.4], method="adjoint")
    values, jacobian = sim.value_and_gradient(circuit, ["Z1"], [0.3, 0.4])  # parameter-shift, exact
    step = 1e-6
    numeric = [(sim.expectation(circuit, "Z1", [0.3 + step * (p == 0), 0.4 + step * (p == 1)])
                - sim.expectation(circuit, "Z1", [0.3 - step * (p == 0), 0.4 - step * (p == 1)])) / (2 * step)
               for p in range(2)]
    np.testing.assert_allclose(jacobian[0], np.ravel(numeric), atol=1e-7)


def test_what_the_noisy_adjoint_cannot_give_is_refused():
    circuit = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1)
    sim = qc.Simulator(noise="aria-1")
    with pytest.raises(qc.ParameterError, match="shots"):
        sim.gradient(circuit, "Z1", [0.3], method="adjoint", shots=100)
    with pytest.raises(qc.ParameterError, match="without noise"):
        sim.vjp(circuit, "Z1", [0.3], [1.0], method="adjoint", initial_state=[1, 0, 0, 0], state_gradient=True)
