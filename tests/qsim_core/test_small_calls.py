"""The small-call fast path: per-thread gate-matrix arrays reused between calls, parameter checks without copies.

Every result is compared with the reference backend (the oracle), so a stale or shared buffer shows as a
wrong value, not only as a wrong shape.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core.backends import driver, get_backend
from qsim_core.backends.contract import Job
from qsim_core.observables import parse_observables
from tests.conftest import TOLERANCE, random_params, seed_circuit

Z_ALL = [f"Z{q}" for q in range(8)]


@pytest.fixture
def sim(backend, precision) -> qc.Simulator:
    return qc.Simulator(backend=backend, precision=precision, threads=1, seed=3)


@pytest.fixture(scope="module")
def oracle() -> qc.Simulator:
    return qc.Simulator(backend="reference")


def close(got, want, precision) -> None:
    np.testing.assert_allclose(got, want, atol=TOLERANCE[precision], rtol=0)


def test_a_returned_result_is_never_overwritten_by_the_next_call(sim, oracle, precision):
    c = seed_circuit()
    first, second = random_params(c, seed=1), random_params(c, seed=2)
    states = [sim.statevector(c, first), sim.statevector(c, second)]
    values = [sim.expectation(c, Z_ALL, first), sim.expectation(c, Z_ALL, second)]
    probabilities = [sim.probabilities(c, first), sim.probabilities(c, second)]
    for theta, state, value, probs in zip((first, second), states, values, probabilities, strict=True):
        close(state, oracle.statevector(c, theta), precision)
        close(value, oracle.expectation(c, Z_ALL, theta), precision)
        close(probs, oracle.probabilities(c, theta), precision)


def test_circuits_of_one_shape_with_different_constants_keep_their_own_matrices(sim, oracle, precision):
    # same gates, same parameter references: only the constant angles differ, and those are written into the
    # reused arrays once, so each program must keep arrays of its own
    circuits = [qc.Circuit(3).rx(0, angle).ry(1, qc.Param(0)).cnot(0, 2).rz(2, qc.Param(1)).h(1)
                for angle in (0.3, 1.1)]
    theta = np.array([0.7, -0.4])
    for _ in range(2):
        for c in circuits:
            close(sim.expectation(c, ["Z0", "X1", "Z2"], theta), oracle.expectation(c, ["Z0", "X1", "Z2"], theta),
                  precision)


def test_a_circuit_extended_after_a_call_runs_its_new_gates(sim, oracle, precision):
    c = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1)
    theta = np.array([0.9])
    close(sim.probabilities(c, theta), oracle.probabilities(c, theta), precision)
    c.rx(1, 0.4).rz(0, qc.Param(1))
    theta = np.array([0.9, 0.2])
    close(sim.statevector(c, theta), oracle.statevector(c, theta), precision)
    close(sim.probabilities(c, theta), oracle.probabilities(c, theta), precision)


def test_alternating_batch_sizes_and_precisions(backend, oracle):
    c = seed_circuit()
    sims = {p: qc.Simulator(backend=backend, precision=p, threads=1) for p in ("double", "single")}
    # the kept arrays grow (1, 4, 16, 32 rows) and then serve smaller batches
    for batch in (1, 3, 1, 16, 17, 3):
        theta = random_params(c, batch=batch, seed=batch)
        want = oracle.expectation(c, Z_ALL, theta)
        for precision, sim in sims.items():
            close(sim.expectation(c, Z_ALL, theta), want, precision)


@pytest.mark.parametrize("kept_bytes", [0, 1 << 20], ids=["nothing kept", "the last few kept"])
def test_programs_evicted_from_the_kept_arrays_bind_afresh_and_agree(sim, oracle, precision, monkeypatch,
                                                                      kept_bytes):
    monkeypatch.setattr(driver, "REUSE_MAX_BYTES", kept_bytes)
    circuits = []
    for n in (3, 13, 5):
        c = qc.Circuit(n)
        for q in range(n):
            c.ry(q, qc.Param(q))
        for q in range(n - 1):
            c.cnot(q, q + 1)
        circuits.append(c)
    for c in circuits * 2:
        theta = random_params(c, batch=40, seed=c.num_qubits)
        observables = ["Z0", f"Z{c.num_qubits - 1}", "X1 X2"]
        close(sim.expectation(c, observables, theta), oracle.expectation(c, observables, theta), precision)


def test_a_chunked_batch_matches_the_whole(sim, oracle, precision, monkeypatch):
    c = seed_circuit()
    theta = random_params(c, batch=5, seed=4)
    whole = sim.sample(c, 32, theta)
    monkeypatch.setattr(driver, "BATCH_CHUNK", 2)
    chunked_sim = qc.Simulator(backend=sim.backend, precision=precision, threads=1, seed=3)
    np.testing.assert_array_equal(chunked_sim.sample(c, 32, theta), whole)
    close(chunked_sim.expectation(c, ["Z0", "X1 Y2"], theta), oracle.expectation(c, ["Z0", "X1 Y2"], theta),
          precision)


def test_threads_sharing_a_simulator_get_their_own_results(sim, oracle, precision):
    c = seed_circuit()
    thetas = [random_params(c, seed=s) for s in range(4)]
    wants = [oracle.expectation(c, Z_ALL, theta) for theta in thetas]
    failures: list[str] = []

    def work(k: int) -> None:
        for _ in range(50):
            got = sim.expectation(c, Z_ALL, thetas[k])
            if not np.allclose(got, wants[k], atol=TOLERANCE[precision], rtol=0):
                failures.append(f"thread {k}: {got} != {wants[k]}")
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(thetas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]


def test_a_job_may_name_its_dtype_as_a_numpy_dtype(backend, oracle):
    c = seed_circuit()
    theta = random_params(c, batch=2)
    got = get_backend(backend).expectation(Job(c, theta, np.dtype(np.complex64), 1), parse_observables(Z_ALL, 8))
    close(got, oracle.expectation(c, Z_ALL, theta), "single")


@pytest.mark.parametrize("params", [
    [0.5, -0.25, 1.0],
    np.array([0.5, -0.25, 1.0], dtype=np.float32),
    np.array([0, 1, 2]),
    np.array([[0.5, 9.0, -0.25, 9.0, 1.0, 9.0]])[0, ::2],
    np.asfortranarray(np.array([[0.5, -0.25, 1.0], [0.1, 0.2, 0.3]]))[:1],
])
def test_every_array_like_gives_what_its_float64_copy_gives(sim, params):
    c = qc.Circuit(2).ry(0, qc.Param(0)).rx(1, qc.Param(1)).cnot(0, 1).rz(1, qc.Param(2))
    want = sim.statevector(c, np.array(np.asarray(params, dtype=np.float64)))
    np.testing.assert_array_equal(sim.statevector(c, params), want)


@pytest.mark.parametrize("params", [0.5, np.float64(0.5), np.array(0.5), [[[0.5]]]])
def test_a_scalar_or_3d_params_is_refused(params):
    c = qc.Circuit(1).ry(0, qc.Param(0))
    with pytest.raises(qc.ParameterError, match=r"params must be 1-D \(P,\) or 2-D \(B, P\); got shape"):
        qc.Simulator(backend="reference").probabilities(c, params)


def test_the_callers_parameter_array_is_left_as_it_was(sim):
    c = seed_circuit()
    theta = random_params(c)
    kept = theta.copy()
    sim.expectation(c, Z_ALL, theta)
    sim.sample(c, 16, theta)
    np.testing.assert_array_equal(theta, kept)


@given(batch=st.sampled_from([None, 1, 2, 5]), where=st.integers(0, 10_000),
       bad=st.sampled_from([np.inf, -np.inf, np.nan, "inf-inf"]))
def test_any_non_finite_entry_is_named_small_or_large(batch, where, bad):
    # 40 entries take the Python-float sum, 5 x 40 = 200 the numpy one (see simulator._SMALL_PARAMS)
    sim = qc.Simulator(backend="reference")
    c = seed_circuit()
    theta = random_params(c, batch=batch)
    flat = theta.reshape(-1)
    first = where % flat.size
    if bad == "inf-inf":  # opposite infinities cancel to NaN in a sum: still caught
        flat[first] = np.inf
        flat[(first + 1 + where // flat.size) % flat.size if flat.size > 1 else first] = -np.inf
        first = min(first, int(np.flatnonzero(~np.isfinite(flat))[0]))
    else:
        flat[first] = bad
    row, col = divmod(first, c.num_params)
    at = rf"params\[{col}\]" if batch is None else rf"params\[{row}, {col}\]"
    with pytest.raises(qc.ParameterError, match=at + r" is .* \(not finite\); parameter " + str(col)):
        sim.expectation(c, "Z0", theta)


@pytest.mark.parametrize("batch", [None, 4])
def test_finite_values_whose_sum_overflows_pass_without_warnings(backend, batch):
    c = seed_circuit()
    theta = np.full((c.num_params,) if batch is None else (batch, c.num_params), 1e307)  # 40 of them: inf
    sim = qc.Simulator(backend=backend, threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sim.expectation(c, "Z0", theta)
    assert np.isfinite(got).all() and got.shape == ((1,) if batch is None else (batch, 1))


def test_z_only_follows_the_strings():
    assert parse_observables(["Z0", "Z1 Z2", "I"], 3).z_only
    assert not parse_observables(["Z0", "X1"], 3).z_only
    assert not parse_observables("Y2", 3).z_only
