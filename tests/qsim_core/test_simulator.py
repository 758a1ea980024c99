"""The Simulator API: shapes, known states, bit order, and bad input with helpful messages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import qsim_core as qc
from tests.conftest import random_params, seed_circuit


@pytest.fixture
def sim(backend, precision) -> qc.Simulator:
    return qc.Simulator(backend=backend, precision=precision, seed=7)


def test_documented_shapes(sim):
    c = seed_circuit()
    theta = random_params(c, batch=12)
    assert sim.expectation(c, [f"Z{q}" for q in range(8)], params=theta).shape == (12, 8)
    samples = sim.sample(c, shots=64, params=theta)
    assert samples.shape == (12, 64) and samples.dtype == np.int64
    assert sim.expectation(c, ["Z0", "Z7"], params=theta, shots=64).shape == (12, 2)
    counts = sim.counts(c, shots=64, params=theta[0])
    assert isinstance(counts, dict) and sum(counts.values()) == 64
    assert all(isinstance(k, int) and 0 <= k < 256 for k in counts)
    assert sim.probabilities(c, params=theta[0]).shape == (256,)
    psi = sim.statevector(c, params=theta[:10])
    assert psi.shape == (10, 256) and psi.dtype == sim.dtype
    assert sim.expectation(c, "Z0", params=theta[0]).shape == (1,)
    assert len(sim.counts(c, shots=8, params=theta[:3])) == 3


def test_bit_order_qubit_k_is_bit_k(sim):
    c = qc.Circuit(3).x(0)
    assert np.argmax(sim.probabilities(c)) == 1
    c = qc.Circuit(3).x(2)
    assert np.argmax(sim.probabilities(c)) == 4
    assert sim.counts(qc.Circuit(3).x(1).x(2), shots=10) == {6: 10}
    np.testing.assert_allclose(sim.expectation(qc.Circuit(3).x(1), ["Z0", "Z1", "Z2"]), [1, -1, 1], atol=1e-6)


def test_known_states(sim, precision):
    tol = 1e-12 if precision == "double" else 1e-6
    bell = sim.statevector(qc.Circuit(2).h(0).cnot(0, 1))
    np.testing.assert_allclose(bell, [2**-0.5, 0, 0, 2**-0.5], atol=tol)
    ghz = sim.probabilities(qc.Circuit(5).h(0).cnot(0, 1).cnot(1, 2).cnot(2, 3).cnot(3, 4))
    expected = np.zeros(32)
    expected[[0, 31]] = 0.5
    np.testing.assert_allclose(ghz, expected, atol=tol)
    plus = sim.statevector(qc.Circuit(1).h(0))
    np.testing.assert_allclose(plus, [2**-0.5, 2**-0.5], atol=tol)
    np.testing.assert_allclose(sim.expectation(qc.Circuit(1).h(0), ["X0", "Z0", "Y0"]), [1, 0, 0], atol=tol)
    np.testing.assert_allclose(sim.expectation(qc.Circuit(1).h(0).s(0), ["Y0"]), [1], atol=tol)
    np.testing.assert_allclose(sim.expectation(qc.Circuit(2).h(0).cnot(0, 1), ["X0 X1", "Y0 Y1", "Z0 Z1"]),
                               [1, -1, 1], atol=tol)


def test_norm_is_preserved(sim, precision):
    c = seed_circuit().h(3).ms(1, 2, 0.1, 0.3).gpi2(0, 0.2).xx(4, 6, 0.7)
    psi = sim.statevector(c, random_params(c, batch=4))
    tol = 1e-12 if precision == "double" else 1e-5
    np.testing.assert_allclose(np.linalg.norm(psi.astype(np.complex128), axis=1), 1.0, atol=tol)


def test_parameter_free_circuit_needs_no_params(sim):
    assert sim.probabilities(qc.Circuit(1).x(0))[1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (np.zeros(39), qc.ParameterError, r"circuit has 40 parameter\(s\) but params has 39 per set"),
        (np.zeros((2, 41)), qc.ParameterError, r"but params has 41 per set \(shape \(2, 41\)\)"),
        (np.zeros((2, 2, 40)), qc.ParameterError, r"params must be 1-D \(P,\) or 2-D \(B, P\); got shape"),
        (None, qc.ParameterError, r"circuit has 40 parameter\(s\).*pass params"),
        (np.array(["a"] * 40), qc.ParameterError, r"params must be numbers"),
    ],
)
def test_bad_params(sim, params, error, message):
    with pytest.raises(error, match=message):
        sim.expectation(seed_circuit(), ["Z0"], params=params)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_params_name_the_position_and_the_gate(sim, bad):
    theta = random_params(seed_circuit(), batch=3)
    theta[2, 17] = bad
    with pytest.raises(qc.ParameterError, match=r"params\[2, 17\] is .*not finite.*parameter 17 used by rz\(1, Param"):
        sim.probabilities(seed_circuit(), theta)


def test_huge_finite_params_are_accepted_even_when_their_sum_overflows(sim):
    # validation sums the batch first; an overflowing sum of finite angles must not read as a bad input
    circuit, theta = qc.Circuit(1).rx(0, qc.Param(0)).ry(0, qc.Param(1)), np.full((2, 2), 1e308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sim.expectation(circuit, ["Z0"], theta)
    np.testing.assert_allclose(got, [sim.expectation(circuit, ["Z0"], row) for row in theta], atol=1e-12)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("shots", [0, -5, 2.5, True, None])
def test_bad_shots(sim, shots):
    with pytest.raises(qc.ParameterError, match="shots must be a positive integer"):
        sim.sample(qc.Circuit(1).h(0), shots=shots)
    if shots is not None:
        with pytest.raises(qc.ParameterError, match="shots must be a positive integer"):
            sim.expectation(qc.Circuit(1).h(0), "Z0", shots=shots)


def test_unknown_observable_and_wrong_circuit_type(sim):
    with pytest.raises(qc.ObservableError, match="qubit 3 is out of range for 2 qubits"):
        sim.expectation(qc.Circuit(2), ["Z3"])
    with pytest.raises(qc.CircuitError, match="expected a qsim_core.Circuit, got list"):
        sim.probabilities([("h", 0)])


def test_too_large_circuit_names_the_bytes(backend):
    sim = qc.Simulator(backend=backend)
    with pytest.raises(qc.CircuitTooLargeError, match=r"a 36-qubit complex128 state needs 1,099,511,627,776 bytes"):
        sim.expectation(qc.Circuit(36).h(0), ["Z0"])
    with pytest.raises(qc.CircuitTooLargeError, match="supports at most 40 qubits"):
        sim.probabilities(qc.Circuit(50))
    with pytest.raises(MemoryError):  # the error is also a MemoryError for generic handlers
        sim.statevector(qc.Circuit(36))


def test_bad_simulator_options():
    with pytest.raises(ValueError, match="precision must be 'double' or 'single', got 'half'"):
        qc.Simulator(precision="half")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        qc.Simulator(threads=0)
    with pytest.raises(qc.BackendUnavailableError, match="unknown backend 'gpu'"):
        qc.Simulator(backend="gpu")


@pytest.mark.parametrize("method", ["probabilities", "statevector", "expectation", "sample"])
def test_large_states_are_not_copied(backend, precision, method):
    """Peak Python-visible memory of a 20-qubit run stays within 1.2x of the state."""
    import tracemalloc

    from bench.workloads import layered_circuit

    c = layered_circuit(20, layers=1)
    sim = qc.Simulator(backend=backend, precision=precision, seed=1)
    params = random_params(c)
    state_bytes = 2**20 * np.dtype(sim.dtype).itemsize
    call = {
        "probabilities": lambda: sim.probabilities(c, params),
        "statevector": lambda: sim.statevector(c, params),
        "expectation": lambda: sim.expectation(c, ["Z0", "X3 Y19"], params),
        "sample": lambda: sim.sample(c, 1000, params),
    }[method]
    call()  # compile first
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.2 * state_bytes, f"peak {peak:,} bytes for a {state_bytes:,}-byte state"
    if method == "probabilities":
        assert result.shape == (2**20,) and abs(result.sum() - 1) < 1e-4
