"""Every compiled backend agrees with the reference on random circuits over the whole gate table."""

from __future__ import annotations

import numpy as np
from hypothesis import given

import qsim_core as qc
from tests.conftest import TOLERANCE, random_params, seed_circuit
from tests.strategies import circuits

REFERENCE = qc.Simulator(backend="reference")


def observables_for(n: int, rng: np.random.Generator) -> list[str]:
    labels = [f"Z{q}" for q in range(n)]
    for _ in range(4):
        qubits = rng.choice(n, size=rng.integers(1, n + 1), replace=False)
        labels.append(" ".join(f"{rng.choice(list('XYZ'))}{q}" for q in qubits))
    if n > 1:
        labels.append("Z0 Z1")
    return labels


def check_against_reference(circuit: qc.Circuit, backend: str, precision: str, batch: int = 3,
                            block_qubits: int = 14) -> None:
    sim = qc.Simulator(backend=backend, precision=precision, block_qubits=block_qubits)
    tol = TOLERANCE[precision]
    params = random_params(circuit, batch=batch, seed=len(circuit))
    expected_states = REFERENCE.statevector(circuit, params)
    np.testing.assert_allclose(sim.statevector(circuit, params), expected_states, atol=tol)
    np.testing.assert_allclose(sim.probabilities(circuit, params), np.abs(expected_states) ** 2, atol=tol)
    labels = observables_for(circuit.num_qubits, np.random.default_rng(len(circuit)))
    np.testing.assert_allclose(sim.expectation(circuit, labels, params), REFERENCE.expectation(circuit, labels, params),
                               atol=tol * 10)


@given(circuit=circuits())
def test_random_circuits_match_reference(backend, precision, circuit):
    check_against_reference(circuit, backend, precision)


@given(circuit=circuits(min_qubits=7, max_qubits=10, max_ops=40))
def test_random_circuits_match_reference_through_gathered_blocks(backend, circuit):
    # block_qubits below n forces the cache-blocked path used for large circuits
    check_against_reference(circuit, backend, "double", batch=2, block_qubits=5)


def test_seed_circuit_matches_reference(backend, precision):
    check_against_reference(seed_circuit(), backend, precision, batch=20)


def test_batch_equals_one_by_one(backend):
    c = seed_circuit()
    sim = qc.Simulator(backend=backend)
    params = random_params(c, batch=7)
    batch = sim.expectation(c, ["Z0", "X1 Y2", "Z3 Z4"], params)
    single = np.array([sim.expectation(c, ["Z0", "X1 Y2", "Z3 Z4"], row) for row in params])
    np.testing.assert_allclose(batch, single, atol=1e-12)
    np.testing.assert_allclose(sim.statevector(c, params)[3], sim.statevector(c, params[3]), atol=1e-12)


def test_batches_larger_than_one_chunk(backend, monkeypatch):
    from qsim_core.backends import base

    monkeypatch.setattr(base, "BATCH_CHUNK", 16)
    c = seed_circuit()
    params = random_params(c, batch=50)
    sim = qc.Simulator(backend=backend)
    np.testing.assert_allclose(sim.probabilities(c, params), REFERENCE.probabilities(c, params), atol=1e-10)


def test_threads_do_not_change_results(backend):
    c = seed_circuit()
    params = random_params(c, batch=64)
    one = qc.Simulator(backend=backend, threads=1, seed=3)
    two = qc.Simulator(backend=backend, threads=2, seed=3)
    np.testing.assert_allclose(one.expectation(c, ["Z0", "Z5"], params), two.expectation(c, ["Z0", "Z5"], params),
                               atol=1e-13)
    np.testing.assert_array_equal(one.sample(c, 100, params), two.sample(c, 100, params))
