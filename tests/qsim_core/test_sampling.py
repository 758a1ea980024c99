"""Sampling: statistically right, seeded, reproducible.

Each statistical test is seeded (deterministic), and its threshold is chosen
so that a correct sampler would fail it with probability below 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import qsim_core as qc
from qsim_core.backends import Job, get_backend
from qsim_core.observables import parse_observables
from tests.conftest import COMPILED, random_params, seed_circuit


def chi_square_p_value(samples: np.ndarray, probabilities: np.ndarray) -> float:
    observed = np.bincount(samples, minlength=probabilities.size)
    keep = probabilities > 0
    assert observed[~keep].sum() == 0, "sampled a zero-probability state"
    expected = probabilities[keep] * samples.size
    return float(stats.chisquare(observed[keep], expected * observed[keep].sum() / expected.sum()).pvalue)


@pytest.mark.parametrize("block_qubits", [14, 4], ids=["guide-table", "large-state-path"])
def test_samples_follow_the_distribution(backend, block_qubits):
    c = qc.Circuit(6)
    for q in range(6):
        c.ry(q, 0.3 + 0.4 * q).rz(q, 0.1 * q)
    c.cnot(0, 3).cnot(2, 5).x(1)  # x(1) makes half of the states impossible
    sim = qc.Simulator(backend=backend, seed=11, block_qubits=block_qubits)
    probabilities = qc.Simulator(backend="reference").probabilities(c)
    samples = sim.sample(c, shots=200_000)
    assert chi_square_p_value(samples, probabilities) > 1e-6
    tvd = 0.5 * np.abs(np.bincount(samples, minlength=64) / samples.size - probabilities).sum()
    assert tvd < 0.02


def test_batched_samples_follow_each_distribution(backend):
    c = seed_circuit()
    params = random_params(c, batch=3)
    samples = qc.Simulator(backend=backend, seed=5).sample(c, shots=100_000, params=params)
    probabilities = qc.Simulator(backend="reference").probabilities(c, params)
    for row, p in zip(samples, probabilities, strict=False):
        assert chi_square_p_value(row, p) > 1e-6


def test_same_seed_same_samples_and_different_seed_different(backend):
    c = seed_circuit()
    params = random_params(c, batch=4)
    a = qc.Simulator(backend=backend, seed=42).sample(c, 256, params)
    b = qc.Simulator(backend=backend, seed=42).sample(c, 256, params)
    other = qc.Simulator(backend=backend, seed=43).sample(c, 256, params)
    np.testing.assert_array_equal(a, b)
    assert (a != other).mean() > 0.5
    again = qc.Simulator(backend=backend, seed=42)
    first, second = again.sample(c, 256, params), again.sample(c, 256, params)
    np.testing.assert_array_equal(first, a)
    assert (first != second).mean() > 0.5  # successive calls draw fresh samples


def test_sample_order_is_exchangeable_on_the_large_state_path(backend):
    c = qc.Circuit(6).h(0).h(5)
    samples = qc.Simulator(backend=backend, seed=1, block_qubits=4).sample(c, shots=4000)
    # sorted draws would put all 0s first; a shuffled sequence alternates freely
    changes = np.count_nonzero(np.diff(samples))
    assert changes > 2000


@pytest.mark.parametrize("block_qubits", [14, 4])
def test_shot_expectations_are_unbiased_within_five_sigma(backend, block_qubits):
    c = qc.Circuit(6)
    for q in range(6):
        c.ry(q, 0.5 + 0.2 * q).rz(q, 0.3)
    c.cnot(0, 1).cnot(1, 4)
    labels = ["Z0", "Z1 Z4", "X2", "Y3 Z5", "I"]
    exact = qc.Simulator(backend="reference").expectation(c, labels)
    shots = 20_000
    estimate = qc.Simulator(backend=backend, seed=9, block_qubits=block_qubits).expectation(c, labels, shots=shots)
    sigma = np.sqrt(np.maximum(1 - exact**2, 1e-12) / shots)
    assert (np.abs(estimate - exact) < 5 * sigma + 1e-12).all(), (estimate, exact)
    assert estimate[-1] == 1.0


def test_shot_estimates_of_z_strings_come_from_one_set_of_shots(backend):
    # Z0 and Z0 Z1 on a Bell state: +-1 outcomes of Z0Z1 are always +1, Z0 averages near 0
    c = qc.Circuit(2).h(0).cnot(0, 1)
    estimate = qc.Simulator(backend=backend, seed=2).expectation(c, ["Z0", "Z1", "Z0 Z1"], shots=1000)
    assert estimate[2] == 1.0
    assert estimate[0] == estimate[1]  # the same shots measured both qubits


@pytest.mark.parametrize("block_qubits", [14, 4], ids=["guide-table", "large-state-path"])
@pytest.mark.parametrize("name", [*COMPILED, "reference"])
def test_a_batch_cut_into_jobs_with_offsets_draws_like_the_whole_batch(name, block_qubits):
    # what lets a batch be run in chunks (qstore.distributed) with the same samples as in one call
    c = seed_circuit(6, layers=1)
    params = random_params(c, batch=7, seed=3)
    observables = parse_observables(["Z0", "Z1 Z4", "X2", "Y3 Z5"], c.num_qubits)
    engine = get_backend(name)

    def job(rows: slice) -> Job:
        return Job(c, params[rows], np.complex128, threads=2, block_qubits=block_qubits)

    whole = engine.sample(job(slice(None)), 64, key=12345)
    estimates = engine.shot_expectation(job(slice(None)), observables, 64, key=12345)
    for cut in (1, 4):
        head, tail = slice(0, cut), slice(cut, None)
        np.testing.assert_array_equal(
            np.concatenate([engine.sample(job(head), 64, 12345), engine.sample(job(tail), 64, 12345, offset=cut)]),
            whole)
        np.testing.assert_array_equal(
            np.concatenate([engine.shot_expectation(job(head), observables, 64, 12345),
                            engine.shot_expectation(job(tail), observables, 64, 12345, offset=cut)]),
            estimates)
    # an offset really moves the streams: row 0 at offset 1 is row 1 of the whole batch, not row 0
    shifted = engine.sample(job(slice(1, 2)), 64, 12345, offset=1)
    np.testing.assert_array_equal(shifted[0], whole[1])
