"""Gradients: adjoint (compiled and reference), parameter-shift and SPSA agree with finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from bench.workloads import layered_circuit
from qsim_core.derivatives import derivative_matrix, shift_rule
from qsim_core.measurement import expectations_from_counts, measurement_groups, simulator_executor
from qsim_core.observables import parse_observables
from tests.conftest import random_params, seed_circuit
from tests.qsim_core.backends.test_cross_backend import observables_for
from tests.strategies import circuits

REFERENCE = qc.Simulator(backend="reference")
PARAMETRISED = [spec for spec in qc.GATES.values() if spec.num_params]
SEED_OBSERVABLES = [f"Z{q}" for q in range(8)]


def finite_difference(circuit: qc.Circuit, labels: list[str], params: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Central differences of the reference's exact expectations: (K, P)."""
    out = np.empty((len(labels), len(params)))
    for p in range(len(params)):
        up, down = params.copy(), params.copy()
        up[p] += step
        down[p] -= step
        out[:, p] = (REFERENCE.expectation(circuit, labels, up) - REFERENCE.expectation(circuit, labels, down)) / (
            2 * step)
    return out


@pytest.mark.parametrize("spec", PARAMETRISED, ids=lambda s: s.name)
def test_derivative_matrices_are_exact(spec):
    rng = np.random.default_rng(spec.opcode)
    values = [rng.uniform(-1, 1, size=5) for _ in range(spec.num_params)]
    for slot in range(spec.num_params):
        up, down = list(values), list(values)
        up[slot] = values[slot] + 1e-6
        down[slot] = values[slot] - 1e-6
        numeric = (spec.matrix(*up) - spec.matrix(*down)) / 2e-6
        np.testing.assert_allclose(derivative_matrix(spec, slot, values), numeric, atol=1e-7)
    if spec.generator:  # the identity the compiled path uses: dR(a)/da = R(a + pi) / 2, per radian
        np.testing.assert_allclose(0.5 * spec.matrix(values[0] + np.pi / spec.radians_per_unit),
                                   derivative_matrix(spec, 0, values) / spec.radians_per_unit, atol=1e-12)


@pytest.mark.parametrize("spec", PARAMETRISED, ids=lambda s: s.name)
def test_shift_rules_are_exact_for_every_gate_parameter(spec):
    # f(x) = <psi| U(x)^dag O U(x) |psi> on two qubits with a random psi and a random Hermitian O: the rule
    # from the table's spectrum must match its derivative whatever psi and O are
    rng = np.random.default_rng(spec.opcode)
    dim = 2 ** spec.num_qubits
    psi = rng.normal(size=dim) + 1j * rng.normal(size=dim)
    psi /= np.linalg.norm(psi)
    h = rng.normal(size=(dim, dim)) + 1j * rng.normal(size=(dim, dim))
    observable = h + h.conj().T
    values = [float(v) for v in rng.uniform(-1, 1, size=spec.num_params)]

    def f(vals):
        phi = spec.matrix(*vals) @ psi
        return float(np.real(phi.conj() @ observable @ phi))

    for slot in range(spec.num_params):
        shifts, coefficients = shift_rule(*spec.spectra[slot])
        rule = sum(c * f(values[:slot] + [values[slot] + s] + values[slot + 1:]) for s, c in
                   zip(shifts, coefficients, strict=True))
        up = values[:slot] + [values[slot] + 1e-6] + values[slot + 1:]
        down = values[:slot] + [values[slot] - 1e-6] + values[slot + 1:]
        assert rule == pytest.approx((f(up) - f(down)) / 2e-6, abs=1e-6)


@settings(max_examples=40)
@given(circuit=circuits(max_qubits=5, max_ops=20, max_params=4))
def test_adjoint_and_parameter_shift_match_finite_differences(backend, circuit):
    labels = observables_for(circuit.num_qubits, np.random.default_rng(len(circuit)))
    params = random_params(circuit, seed=len(circuit))
    expected = finite_difference(circuit, labels, params)
    sim = qc.Simulator(backend=backend)
    np.testing.assert_allclose(sim.gradient(circuit, labels, params), expected, atol=1e-6)
    np.testing.assert_allclose(REFERENCE.gradient(circuit, labels, params), expected, atol=1e-6)
    np.testing.assert_allclose(sim.gradient(circuit, labels, params, method="parameter-shift"), expected, atol=1e-6)


@settings(max_examples=40)
@given(circuit=circuits(max_qubits=7, max_ops=25, max_params=5))
def test_compiled_adjoint_matches_reference_adjoint(backend, precision, circuit):
    labels = observables_for(circuit.num_qubits, np.random.default_rng(len(circuit)))
    params = random_params(circuit, batch=3, seed=len(circuit))
    sim = qc.Simulator(backend=backend, precision=precision)
    values, jacobian = sim.value_and_gradient(circuit, labels, params)
    expected_values, expected = REFERENCE.value_and_gradient(circuit, labels, params)
    tol = 1e-9 if precision == "double" else 1e-4
    np.testing.assert_allclose(values, expected_values, atol=tol)
    np.testing.assert_allclose(jacobian, expected, atol=tol)


def test_wide_circuits_beyond_the_block_size_are_differentiated(backend):
    circuit = layered_circuit(7, 2)
    params = random_params(circuit, seed=3)
    labels = ["Z0", "X3 Y6", "Z2 Z5"]
    narrow = qc.Simulator(backend=backend, block_qubits=4)
    np.testing.assert_allclose(narrow.gradient(circuit, labels, params), REFERENCE.gradient(circuit, labels, params),
                               atol=1e-10)


def test_shared_and_scaled_parameters_use_the_chain_rule(backend):
    theta = qc.Param(0)
    circuit = qc.Circuit(2).ry(0, theta).rx(1, 2 * theta + 0.3).cnot(0, 1).rz(1, theta + qc.Param(1, -0.5)).h(1)
    params = np.array([0.7, -1.1])
    labels = ["Z1", "X0 X1"]
    expected = finite_difference(circuit, labels, params)
    for method in ("adjoint", "parameter-shift"):
        np.testing.assert_allclose(qc.Simulator(backend=backend).gradient(circuit, labels, params, method=method),
                                   expected, atol=1e-7)


def test_seed_circuit_batch_equals_one_by_one(backend):
    circuit = seed_circuit()
    params = random_params(circuit, batch=40, seed=5)
    sim = qc.Simulator(backend=backend)
    batch = sim.gradient(circuit, SEED_OBSERVABLES, params)
    assert batch.shape == (40, 8, 40)
    for b in (0, 17, 39):
        np.testing.assert_allclose(batch[b], sim.gradient(circuit, SEED_OBSERVABLES, params[b]), atol=1e-12)
    np.testing.assert_allclose(batch[:3], REFERENCE.gradient(circuit, SEED_OBSERVABLES, params[:3]), atol=1e-10)


def test_vjp_is_the_cotangent_times_the_jacobian(backend):
    circuit = seed_circuit()
    params = random_params(circuit, batch=6, seed=2)
    cotangent = np.random.default_rng(0).normal(size=(6, 8))
    sim = qc.Simulator(backend=backend)
    expected = np.einsum("bk,bkp->bp", cotangent, sim.gradient(circuit, SEED_OBSERVABLES, params))
    np.testing.assert_allclose(sim.vjp(circuit, SEED_OBSERVABLES, params, cotangent), expected, atol=1e-12)
    np.testing.assert_allclose(sim.vjp(circuit, SEED_OBSERVABLES, params, cotangent, method="parameter-shift"),
                               expected, atol=1e-10)
    shared = sim.vjp(circuit, SEED_OBSERVABLES, params[0], cotangent[0])
    np.testing.assert_allclose(shared, expected[0], atol=1e-12)


def test_parameter_shift_with_shots_is_unbiased_within_its_standard_error():
    circuit = seed_circuit()
    params = random_params(circuit, batch=2, seed=9)
    sim = qc.Simulator(backend="auto", seed=11)
    exact = sim.gradient(circuit, SEED_OBSERVABLES, params)
    shots = 4000
    # each use's two-term rule is (f+ - f-) / 2 of independent estimates with variance <= 1 / shots
    sigma = np.sqrt(0.5 / shots)
    estimate = sim.gradient(circuit, SEED_OBSERVABLES, params, method="parameter-shift", shots=shots)
    assert np.abs(estimate - exact).max() < 5 * sigma
    assert np.abs(estimate - exact).mean() > 0.1 * sigma  # really sampled, not the exact value


def test_parameter_shift_through_a_counts_only_executor():
    circuit = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1).rx(1, qc.Param(1)).gpi2(0, qc.Param(0, 0.1))
    labels = ["Z0", "X0 Y1", "Y1", "Z0 Z1"]
    params = np.array([[0.4, -0.9], [1.3, 0.2]])
    sim = qc.Simulator(backend="auto", seed=3)
    exact = sim.gradient(circuit, labels, params)
    shots = 20000
    estimate = sim.gradient(circuit, labels, params, method="parameter-shift", shots=shots,
                            executor=simulator_executor(sim))
    # gpi2 uses a four-term rule; bound the variance by the sum of squared coefficients of every rule used
    bound = 5 * np.sqrt(sum(c ** 2 for c in shift_rule(2 * np.pi, 2)[1]) * 0.1 ** 2 + 0.5) / np.sqrt(shots) * 2
    assert np.abs(estimate - exact).max() < bound


def test_spsa_is_seeded_and_averages_to_the_gradient():
    circuit = seed_circuit()
    params = random_params(circuit, seed=4)
    exact = qc.Simulator(backend="auto").gradient(circuit, SEED_OBSERVABLES, params)
    first = qc.Simulator(backend="auto", seed=5).gradient(circuit, SEED_OBSERVABLES, params, method="spsa")
    again = qc.Simulator(backend="auto", seed=5).gradient(circuit, SEED_OBSERVABLES, params, method="spsa")
    np.testing.assert_array_equal(first, again)
    samples = 4000
    averaged = qc.Simulator(backend="auto", seed=6).gradient(circuit, SEED_OBSERVABLES, params, method="spsa",
                                                           perturbation=1e-3, samples=samples)
    # component k of one draw is g_k + sum_{j != k} g_j d_j d_k: variance sum_j g_j^2 per draw
    spread = np.sqrt((exact ** 2).sum(axis=1, keepdims=True) / samples)
    assert (np.abs(averaged - exact) < 5 * spread + 1e-5).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "backprop"}, "unknown gradient method 'backprop'"),
        ({"method": "adjoint", "shots": 100}, "adjoint' is exact"),
        ({"method": "parameter-shift", "executor": lambda c, p, s: []}, "pass shots= with executor="),
        ({"method": "spsa", "samples": 0}, "samples must be a positive integer"),
        ({"method": "spsa", "perturbation": -1.0}, "perturbation must be a positive number"),
        ({"method": "parameter-shift", "shots": 0}, "shots must be a positive integer"),
    ],
)
def test_bad_gradient_arguments_are_rejected(kwargs, message):
    circuit = qc.Circuit(1).ry(0, qc.Param(0))
    with pytest.raises(qc.ParameterError, match=message):
        qc.Simulator(backend="auto").gradient(circuit, "Z0", [0.1], **kwargs)


def test_bad_cotangents_are_rejected():
    circuit = qc.Circuit(1).ry(0, qc.Param(0))
    sim = qc.Simulator(backend="auto")
    with pytest.raises(qc.ParameterError, match=r"cotangent must have shape \(2,\)"):
        sim.vjp(circuit, ["Z0", "X0"], [0.1], [1.0, 2.0, 3.0])
    with pytest.raises(qc.ParameterError, match="non-finite"):
        sim.vjp(circuit, ["Z0", "X0"], [0.1], [1.0, np.nan])
    with pytest.raises(qc.ParameterError, match="non-finite"):
        sim.vjp(circuit, ["Z0", "X0"], [[0.1], [0.2]], [[1.0, 2.0], [np.inf, 1.0]])
    with pytest.raises(qc.ParameterError, match=r"cotangent must have shape \(2,\) or \(2, 2\)"):
        sim.vjp(circuit, ["Z0", "X0"], [[0.1], [0.2]], [[1.0, 2.0]] * 3)
    with pytest.raises(qc.ParameterError, match="cotangent must have shape"):
        sim.vjp(circuit, ["Z0", "X0"], [0.1], ["a", "b"])


@given(labels=st.lists(st.sampled_from(["Z0", "Z1", "Z0 Z1", "X0", "Y1", "X0 Y1", "Z2", "I"]), min_size=1,
                       max_size=6))
def test_measurement_groups_are_qubit_wise_compatible_and_cover_every_string(labels):
    strings = parse_observables(labels, 3)
    groups = measurement_groups(strings)
    assert sorted(k for _, members in groups for k in members) == list(range(len(labels)))
    for basis, members in groups:
        for k in members:
            for q in range(3):
                x, z = (int(strings.xmask[k]) >> q) & 1, (int(strings.zmask[k]) >> q) & 1
                if x or z:
                    assert basis[q] == ("Y" if x and z else "X" if x else "Z")


def test_counts_estimates_measure_in_the_right_basis():
    # |+i> on qubit 0 (<Y0> = 1), |-> on qubit 1 (<X1> = -1), |1> on qubit 2 (<Z2> = -1)
    circuit = qc.Circuit(3).h(0).s(0).x(1).h(1).x(2)
    sim = qc.Simulator(backend="auto", seed=0)
    values = expectations_from_counts(simulator_executor(sim), circuit,
                                                     ["Y0", "X1", "Z2", "Y0 X1 Z2"], np.zeros((1, 0)), 200)
    np.testing.assert_array_equal(values, [[1.0, -1.0, -1.0, 1.0]])


@pytest.mark.parametrize("target", ["aria", "forte"])
def test_native_compiled_circuits_have_the_same_gradient(backend, target):
    # GPi/GPi2 phases and MS/ZZ gates carrying ParamSum references: the structured two-qubit kernels'
    # backward and every native derivative matrix are exercised
    circuit = layered_circuit(4, 2)
    native = qc.to_native(circuit, target, drop_final_phases=True)
    params = random_params(circuit, batch=3, seed=8)
    labels = ["Z0", "Z1 Z3", "Z2"]
    sim = qc.Simulator(backend=backend)
    np.testing.assert_allclose(sim.gradient(native, labels, params), sim.gradient(circuit, labels, params),
                               atol=1e-10)
    np.testing.assert_allclose(sim.gradient(native, labels, params, method="parameter-shift"),
                               sim.gradient(circuit, labels, params), atol=1e-10)


def random_states(num_qubits: int, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(batch, 2 ** num_qubits)) + 1j * rng.normal(size=(batch, 2 ** num_qubits))
    return states / np.linalg.norm(states, axis=1, keepdims=True)


@settings(max_examples=30)
@given(circuit=circuits(max_qubits=5, max_ops=20, max_params=4))
def test_initial_states_match_the_reference(backend, precision, circuit):
    labels = observables_for(circuit.num_qubits, np.random.default_rng(len(circuit)))
    params = random_params(circuit, batch=3, seed=len(circuit))
    states = random_states(circuit.num_qubits, 3, len(circuit))
    sim = qc.Simulator(backend=backend, precision=precision)
    tol = 1e-9 if precision == "double" else 1e-4
    np.testing.assert_allclose(sim.statevector(circuit, params, initial_state=states),
                               REFERENCE.statevector(circuit, params, initial_state=states), atol=tol)
    np.testing.assert_allclose(sim.expectation(circuit, labels, params, initial_state=states),
                               REFERENCE.expectation(circuit, labels, params, initial_state=states), atol=tol)
    cotangent = np.random.default_rng(1).normal(size=(3, len(labels)))
    grad, state_grad = sim.vjp(circuit, labels, params, cotangent, initial_state=states, state_gradient=True)
    ref_grad, ref_state_grad = REFERENCE.vjp(circuit, labels, params, cotangent, initial_state=states,
                                             state_gradient=True)
    np.testing.assert_allclose(grad, ref_grad, atol=tol * 10)
    np.testing.assert_allclose(state_grad, ref_state_grad, atol=tol * 10)


def test_the_state_gradient_matches_finite_differences(backend):
    circuit = layered_circuit(3, 2)
    params = random_params(circuit, seed=2)
    labels = ["Z0", "X1 Y2"]
    cotangent = np.array([0.7, -1.3])
    state = random_states(3, 1, 4)[0]
    sim = qc.Simulator(backend=backend)
    _, analytic = sim.vjp(circuit, labels, params, cotangent, initial_state=state, state_gradient=True)

    def f(psi: np.ndarray) -> float:  # the expectation is quadratic in psi: no need to renormalise
        return float(cotangent @ REFERENCE.expectation(circuit, labels, params, initial_state=psi / np.linalg.norm(
            psi)) * np.linalg.norm(psi) ** 2)

    for index in (0, 5):
        for direction in (1.0, 1j):
            step = np.zeros(8, complex)
            step[index] = 1e-6 * direction
            numeric = (f(state + step) - f(state - step)) / 2e-6
            expected = analytic[index].real if direction == 1.0 else analytic[index].imag
            assert numeric == pytest.approx(expected, abs=1e-6)


def test_parameter_shift_and_spsa_run_from_initial_states():
    circuit = layered_circuit(3, 1)
    params = random_params(circuit, batch=2, seed=3)
    states = random_states(3, 2, 5)
    sim = qc.Simulator(backend="auto", seed=1)
    exact = sim.gradient(circuit, ["Z0", "Z2"], params, initial_state=states)
    np.testing.assert_allclose(sim.gradient(circuit, ["Z0", "Z2"], params, method="parameter-shift",
                                            initial_state=states), exact, atol=1e-10)
    assert not np.allclose(exact, sim.gradient(circuit, ["Z0", "Z2"], params))  # the state matters


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_state": np.ones(3)}, r"initial_state must be \(4,\) or \(B, 4\)"),
        ({"initial_state": np.ones(4)}, "row 0 has norm 2; states must be normalised"),
        ({"initial_state": np.full(4, np.nan)}, "non-finite"),
        ({"initial_state": np.eye(4)[:3], "params": np.zeros((2, 1))}, "2 parameter sets but initial_state has 3"),
    ],
)
def test_bad_initial_states_are_rejected(kwargs, message):
    circuit = qc.Circuit(2).ry(0, qc.Param(0))
    kwargs.setdefault("params", [0.1])
    with pytest.raises(qc.ParameterError, match=message):
        qc.Simulator(backend="auto").expectation(circuit, "Z0", kwargs.pop("params"), **kwargs)


def test_initial_states_beyond_the_block_size_are_refused_clearly():
    with pytest.raises(qc.CircuitTooLargeError, match="initial states are supported for circuits of up to"):
        qc.Simulator(backend="auto", block_qubits=4).expectation(qc.Circuit(5).h(0), "Z0",
                                                                 initial_state=np.eye(32)[3])
