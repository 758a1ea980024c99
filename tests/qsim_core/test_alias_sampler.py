"""The alias-table shot sampler: the table, the integer coin cuts, the draws' order, both backends alike.

Each statistical test is seeded (deterministic), and its threshold is chosen
so that a correct sampler would fail it with probability below 1e-6. The
reference for the draws is written here in NumPy from the documented rule
(SplitMix64 stream; column = top bits, coin = low 53 bits as a float in
[0, 1), keep the column when the coin is below its threshold), not from the
kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import qsim_core as qc
from qsim_core.backends.numba import kernels
from tests.conftest import COMPILED, random_params, seed_circuit
from tests.qsim_core.test_sampling import chi_square_p_value

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix_reference(state: int, count: int) -> np.ndarray:
    """``count`` SplitMix64 outputs after ``state`` (uint64 arithmetic wraps, as in the kernels)."""
    with np.errstate(over="ignore"):
        z = np.uint64(state) + GOLDEN * np.arange(1, count + 1, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def reference_draws(threshold: np.ndarray, alias: np.ndarray, bits: int, state: int, count: int) -> np.ndarray:
    """The float rule on the same stream: up to 11 bits one number per draw, else a second one for the coin."""
    if bits <= 11:
        columns = coins = splitmix_reference(state, count)
    else:
        both = splitmix_reference(state, 2 * count)
        columns, coins = both[:count], both[count:]
    column = (columns >> np.uint64(64 - bits)).astype(np.int64)
    coin = (coins & np.uint64((1 << 53) - 1)).astype(np.float64) * 2.0**-53
    return np.where(coin < threshold[column], column, alias[column])


def table_probabilities(threshold: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """What an alias table samples: each column's own share plus the shares it lends as an alias."""
    n = threshold.size
    return (threshold + np.bincount(alias, weights=1.0 - threshold, minlength=n)) / n


def distribution(bits: int, seed: int, zeros: int) -> np.ndarray:
    """Uneven probabilities over 2**bits states, ``zeros`` of them impossible (not normalised)."""
    rng = np.random.default_rng(seed)
    probs = rng.random(1 << bits) ** 3
    probs[rng.choice(probs.size, zeros, replace=False)] = 0.0
    return probs


@pytest.mark.parametrize("bits", [1, 5, 8, 11, 12, 13], ids=lambda b: f"{b}bits")
def test_alias_table_represents_the_distribution_and_draws_follow_the_float_rule(bits):
    probs = distribution(bits, seed=bits, zeros=(1 << bits) // 4)
    threshold, alias = np.empty(probs.size), np.empty(probs.size, np.int64)
    kernels.alias_table(probs, threshold, alias)
    np.testing.assert_allclose(table_probabilities(threshold, alias), probs / probs.sum(), rtol=0, atol=1e-14)
    assert (threshold[probs == 0] == 0).all()  # an impossible state is never kept

    state, count = 0x1234_5678_9ABC_DEF0, 50_000
    expected = reference_draws(threshold, alias, bits, state, count)
    out = np.empty(count, np.int64)
    table = kernels.coin_cuts(threshold.copy(), alias, bits)
    after = kernels.alias_draws(table, alias, bits, np.uint64(state), out)
    np.testing.assert_array_equal(out, expected)
    # the stream advanced by exactly the numbers the draws used
    used = count if bits <= 11 else 2 * count
    assert int(after) == (state + int(GOLDEN) * used) % 2**64


@pytest.mark.parametrize("num_qubits", [8, 12], ids=["packed-table", "wide-table"])
def test_samples_of_a_small_state_follow_the_distribution(backend, num_qubits):
    c = qc.Circuit(num_qubits)
    for q in range(num_qubits):
        c.ry(q, 0.2 + 0.3 * q).rz(q, 0.1 * q)
    for q in range(0, num_qubits - 1, 2):
        c.cnot(q, q + 1)
    c.x(num_qubits - 1).ry(num_qubits - 1, 0.0)  # a product factor in |1>: half of the states impossible
    probabilities = qc.Simulator(backend="reference").probabilities(c)
    samples = qc.Simulator(backend=backend, seed=4).sample(c, shots=200_000)
    assert chi_square_p_value(samples, probabilities) > 1e-6


def test_consecutive_shots_are_independent(backend):
    # i.i.d. order: the joint histogram of (shot s, shot s + 1) is the product of the marginals
    c = qc.Circuit(2).ry(0, 1.1).ry(1, 2.0).cnot(0, 1)
    p = qc.Simulator(backend="reference").probabilities(c)
    samples = qc.Simulator(backend=backend, seed=8).sample(c, shots=100_001)
    pairs = np.bincount(4 * samples[:-1] + samples[1:], minlength=16)
    expected = np.outer(p, p).ravel() * pairs.sum()
    assert stats.chisquare(pairs, expected).pvalue > 1e-6
    # and no trend along the sequence: both halves of the run draw alike
    first, second = (np.bincount(half, minlength=4) for half in np.array_split(samples, 2))
    assert stats.chi2_contingency(np.stack([first, second])).pvalue > 1e-6


def test_a_basis_state_samples_only_itself(backend):
    c = qc.Circuit(9).x(0).x(2).x(8)
    samples = qc.Simulator(backend=backend, seed=1).sample(c, shots=5000)
    assert (samples == 0b100000101).all()


@pytest.mark.skipif(not {"numba", "cython"} <= set(COMPILED), reason="needs both compiled backends")
@pytest.mark.parametrize("num_qubits", [8, 13], ids=["packed-table", "wide-table"])
def test_numba_and_cython_draw_the_same_samples(num_qubits):
    c = seed_circuit(num_qubits, layers=1)
    params = random_params(c, batch=5, seed=num_qubits)
    numba_sim, cython_sim = (qc.Simulator(backend=name, seed=21) for name in ("numba", "cython"))
    np.testing.assert_array_equal(numba_sim.sample(c, 3000, params), cython_sim.sample(c, 3000, params))
    np.testing.assert_array_equal(numba_sim.expectation(c, ["Z0", "Z1 Z2", "X0"], params, shots=500),
                                  cython_sim.expectation(c, ["Z0", "Z1 Z2", "X0"], params, shots=500))
