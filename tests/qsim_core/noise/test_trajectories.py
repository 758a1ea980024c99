"""Noisy shots (trajectories) against the exact noisy distribution; seeds; the noiseless short-circuit.

Each statistical test is seeded (deterministic), and its threshold is chosen
so that a correct sampler would fail it with probability below 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import qsim_core as qc
from tests.conftest import random_params
from tests.strategies import circuits

P_FLOOR = 1e-6


def chi_square_p_value(samples: np.ndarray, probabilities: np.ndarray) -> float:
    """Pearson's test, bins with fewer than 5 expected counts lumped together."""
    observed = np.bincount(samples, minlength=probabilities.size)
    expected = probabilities * samples.size
    assert observed[probabilities < 1e-15].sum() == 0, "sampled a zero-probability state"
    big = expected >= 5
    obs = np.append(observed[big], observed[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    if keep.sum() < 2:
        return 1.0
    return float(stats.chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue)


def noisy_circuit() -> qc.Circuit:
    """Every way an error can travel: Clifford gates (QIS and native), constant non-Clifford rotations it passes
    or stops at, parametrised rotations it negates, other parametrised gates it stops at."""
    c = qc.Circuit(3).h(0).cnot(0, 1).ry(1, 0.3).rx(0, 0.7).cnot(1, 2).rz(2, 1.1).t(0).ry(2, qc.Param(0))
    c.ms(0, 1, 0.0, 0.0).gpi2(1, qc.Param(1)).cnot(2, 0).xx(0, 2, 0.4).v(1).zz(1, 2, qc.Param(1)).gpi(0, 0.25)
    return c.h(1).rx(0, qc.Param(0) - qc.Param(1)).s(2).swap(0, 2).ry(0, 2.0)


@pytest.mark.parametrize("circuit", [noisy_circuit(), qc.seed_circuit(5, 2), qc.to_native(qc.seed_circuit(4, 1))],
                         ids=["mixed", "seed-5", "seed-native"])
def test_noisy_shots_follow_the_exact_noisy_distribution(backend, circuit):
    # rates high enough that most shots carry errors, low enough that the distribution is far from uniform
    model = qc.NoiseModel(r1q=0.05, r2q=0.1)
    params = random_params(circuit, batch=3, seed=1)
    exact = qc.Simulator(noise=model).probabilities(circuit, params)
    samples = qc.Simulator(backend=backend, noise=model, seed=4).sample(circuit, 30_000, params)
    for b in range(3):
        assert chi_square_p_value(samples[b], exact[b]) > P_FLOOR


@settings(max_examples=25)
@given(circuit=circuits(max_qubits=4, max_ops=12), seed=st.integers(0, 100))
def test_random_circuits_shots_follow_the_exact_distribution(backend, circuit, seed):
    model = qc.NoiseModel(r1q=0.05, r2q=0.15)
    params = random_params(circuit, batch=2, seed=seed)
    exact = qc.Simulator(noise=model).probabilities(circuit, params)
    samples = qc.Simulator(backend=backend, noise=model, seed=seed).sample(circuit, 4_000, params)
    for b in range(2):
        assert chi_square_p_value(samples[b], exact[b]) > P_FLOOR


def test_seeds_reproduce_and_counts_sum_to_shots(backend):
    circuit = qc.seed_circuit(6, 2)
    params = random_params(circuit, batch=4, seed=2)
    first = qc.Simulator(backend=backend, noise="aria-1", seed=9).sample(circuit, 500, params)
    again = qc.Simulator(backend=backend, noise="aria-1", seed=9).sample(circuit, 500, params)
    other = qc.Simulator(backend=backend, noise="aria-1", seed=10).sample(circuit, 500, params)
    assert first.shape == (4, 500) and first.dtype == np.int64
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    counts = qc.Simulator(backend=backend, noise="aria-1", seed=9).counts(circuit, 777, params[0])
    assert sum(counts.values()) == 777 and all(0 <= k < 64 for k in counts)


def test_zero_rates_sample_the_noiseless_engine_bit_for_bit(backend):
    circuit = qc.seed_circuit(5, 1)
    params = random_params(circuit, batch=3)
    noisy = qc.Simulator(backend=backend, noise=qc.NoiseModel(0, 0), seed=3)
    plain = qc.Simulator(backend=backend, seed=3)
    assert np.array_equal(noisy.sample(circuit, 64, params), plain.sample(circuit, 64, params))
    assert noisy.counts(circuit, 64, params[0]) == plain.counts(circuit, 64, params[0])
    assert np.array_equal(noisy.expectation(circuit, ["Z0", "Y1"], params, shots=50),
                          plain.expectation(circuit, ["Z0", "Y1"], params, shots=50))


def test_shot_expectations_estimate_the_exact_noisy_values(backend):
    circuit = noisy_circuit()
    model = qc.NoiseModel(0.05, 0.1)
    labels = ["Z0", "Z0 Z2", "X1", "Y2 X1", "Z1 Y0"]
    params = random_params(circuit, batch=2, seed=6)
    exact = qc.Simulator(noise=model).expectation(circuit, labels, params)
    shots = 40_000
    estimate = qc.Simulator(backend=backend, noise=model, seed=1).expectation(circuit, labels, params, shots=shots)
    # 5.4 standard deviations of a +-1 mean: a correct estimator fails with probability < 1e-7 per value
    assert np.all(np.abs(estimate - exact) < 5.4 * np.sqrt((1 - exact ** 2) / shots) + 1e-12)


def test_shot_gradients_estimate_the_exact_noisy_gradient(backend):
    circuit = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1).rx(1, qc.Param(1))
    sim = qc.Simulator(backend=backend, noise=qc.NoiseModel(0.05, 0.1), seed=2)
    exact = sim.gradient(circuit, "Z1", [0.3, 0.8])
    estimate = sim.gradient(circuit, "Z1", [0.3, 0.8], shots=50_000)
    assert np.all(np.abs(estimate - exact) < 0.03)  # each term: 2 estimates of sd <= 1/sqrt(50000), /2


def test_bad_shots_are_refused():
    sim = qc.Simulator(noise="aria-1")
    for shots in (0, -3, 1.5, True):
        with pytest.raises(qc.ParameterError, match="shots"):
            sim.sample(qc.Circuit(1).h(0), shots)
