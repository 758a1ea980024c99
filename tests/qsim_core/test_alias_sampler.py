"""The alias-table shot sampler: the integer weights, the table, the draws' order, both backends alike.

Each statistical test is seeded (deterministic), and its threshold is chosen
so that a correct sampler would fail it with probability below 1e-6. The
references for the weights, the table and the draws are written here in
plain Python and NumPy from the documented rules (SplitMix64 stream; above
256 columns one number per draw, column = top bits, coin = the low 62 - bits
bits, keep the column when the coin is below its cut; up to 256 columns four
draws per number, see ``reference_quarter_draws``), not from the kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import qsim_core as qc
from qsim_core.backends.numba import sampling
from tests.conftest import COMPILED, random_params, seed_circuit
from tests.qsim_core.test_sampling import chi_square_p_value

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
TOTAL = 2**62  # what the integer weights sum to


def splitmix_reference(state: int, count: int) -> np.ndarray:
    """``count`` SplitMix64 outputs after ``state`` (uint64 arithmetic wraps, as in the kernels)."""
    with np.errstate(over="ignore"):
        z = np.uint64(state) + GOLDEN * np.arange(1, count + 1, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def unpack(table: np.ndarray, bits: int) -> tuple[list[int], np.ndarray]:
    """A packed table's cuts (Python ints) and aliases: entry j is ``cut << bits | alias``."""
    return [int(entry) >> bits for entry in table], (table & np.uint64((1 << bits) - 1)).astype(np.int64)


def reference_full_draws(table: np.ndarray, bits: int, state: int, count: int) -> tuple[np.ndarray, int]:
    """The integer rule on the stream, one number per draw: column = its top bits, coin = its low 62 - bits.
    Returns the draws and how many numbers they took."""
    numbers = splitmix_reference(state, count)
    column = (numbers >> np.uint64(64 - bits)).astype(np.int64)
    coin = numbers & np.uint64((1 << (62 - bits)) - 1)
    entry = table[column]
    alias = (entry & np.uint64((1 << bits) - 1)).astype(np.int64)
    return np.where(coin < (entry >> np.uint64(bits)), column, alias), count


def reference_quarter_draws(table: np.ndarray, bits: int, state: int, count: int) -> tuple[np.ndarray, int]:
    """The quarter rule (tables of at most 256 columns), in Python ints: draw 4k + h is bits [16h, 16h + 16) of
    number k, column = its top ``bits`` bits, coin = its other 16 - bits; the coin against the top 16 - bits
    bits of the cut (at most 2**(16 - bits) - 1), and on a tie the cut's other 46 bits against the low 46 bits
    of the next number after all the draws' numbers. Returns the draws and how many numbers they took (the
    draws' and the ties')."""
    cuts, alias = unpack(table, bits)
    numbers = [int(x) for x in splitmix_reference(state, (count + 3) // 4 + count)]  # enough for every tie
    draws, ties = [], 0
    for s in range(count):
        quarter = (numbers[s // 4] >> (16 * (s % 4))) & 0xFFFF
        column, coin = quarter >> (16 - bits), quarter & ((1 << (16 - bits)) - 1)
        top = min(cuts[column] >> 46, (1 << (16 - bits)) - 1)
        keep = coin < top
        if coin == top:
            keep = numbers[(count + 3) // 4 + ties] % 2**46 < cuts[column] - (top << 46)
            ties += 1
        draws.append(column if keep else int(alias[column]))
    return np.array(draws, dtype=np.int64), (count + 3) // 4 + ties


def reference_weights(probs: np.ndarray) -> list[int]:
    """The documented integer weights: ``probs / total`` scaled to 2**62 and truncated (the total summed in eight
    lanes, probability i into lane i % 8, then the lanes pairwise), what the truncations lost given to the first
    largest weight."""
    lanes = [0.0] * 8
    for i, p in enumerate(probs):
        lanes[i % 8] += float(p)
    total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
    scale = float(TOTAL) / total
    weights = [int(float(p) * scale) for p in probs]
    weights[weights.index(max(weights))] += TOTAL - sum(weights)
    return weights


def table_weights(table: np.ndarray, bits: int) -> list[int]:
    """What an alias table draws, in units of 2**-62: each column's own cut plus the shares it takes as an alias."""
    cap = 1 << (62 - bits)
    cuts, alias = unpack(table, bits)
    weights = list(cuts)
    for cut, hi in zip(cuts, alias, strict=True):
        weights[hi] += cap - cut
    return weights


def vose_reference(probs: np.ndarray) -> np.ndarray:
    """Vose's construction written plainly on the integer weights, packed as the kernels pack it.

    Small columns (weight below the capacity 2**(62 - bits)) are a stack in
    index order, popped from the end; large ones a queue, highest index
    first. The kernels keep the current large column and its excess in
    variables; this is the same sequence of moves on explicit lists, so the
    table must match bit for bit.
    """
    n = probs.size
    bits = n.bit_length() - 1
    cap = 1 << (62 - bits)
    weights = reference_weights(probs)
    cut, alias = [cap] * n, list(range(n))
    small = [i for i in range(n) if weights[i] < cap]
    large = [i for i in range(n) if weights[i] >= cap][::-1]
    if small:
        cur = large.pop(0)
        rest = weights[cur] - cap
        while True:
            if rest < 0:  # cur fell below its capacity: it is paired with the next large column
                if not large:
                    break
                lo, lo_excess = cur, rest
                cur = large.pop(0)
                rest += weights[cur] - cap
            else:
                if not small:
                    break
                lo = small.pop()
                lo_excess = weights[lo] - cap
                rest += lo_excess
            cut[lo], alias[lo] = cap + lo_excess, cur
    return np.array([(c << bits) | a for c, a in zip(cut, alias, strict=True)], dtype=np.uint64)


def distribution(bits: int, seed: int, zeros: int) -> np.ndarray:
    """Uneven probabilities over 2**bits states, ``zeros`` of them impossible (not normalised)."""
    rng = np.random.default_rng(seed)
    probs = rng.random(1 << bits) ** 3
    probs[rng.choice(probs.size, zeros, replace=False)] = 0.0
    return probs


@pytest.mark.parametrize("bits", [1, 5, 8, 11, 12, 13], ids=lambda b: f"{b}bits")
def test_alias_table_holds_the_weights_and_draws_follow_the_integer_rule(bits):
    probs = distribution(bits, seed=bits, zeros=(1 << bits) // 4)
    table = np.empty(probs.size, np.uint64)
    sampling.alias_table(probs, table)
    weights = table_weights(table, bits)
    assert weights == reference_weights(probs)  # exactly: the pairing loses no unit
    # each state rounded down by less than a unit (2**-62), what they lose (below one unit per state) on the likeliest
    np.testing.assert_allclose(np.array(weights, float) / TOTAL, probs / probs.sum(), rtol=1e-14,
                               atol=probs.size * 2.0**-62)
    cuts, alias = unpack(table, bits)
    assert all(cuts[i] == 0 and probs[alias[i]] > 0 for i in np.flatnonzero(probs == 0))  # never kept, never lent to

    state, count = 0x1234_5678_9ABC_DEF0, 50_001
    out = np.empty(count, np.int64)
    after = sampling.alias_draws(table, bits, np.uint64(state), out)
    reference = reference_quarter_draws if bits <= 8 else reference_full_draws
    draws, taken = reference(table, bits, state, count)
    np.testing.assert_array_equal(out, draws)
    assert bits not in (5, 8) or taken > (count + 3) // 4  # some draws were ties, settled by numbers of their own
    assert int(after) == (state + int(GOLDEN) * taken) % 2**64  # past every number the draws took

@pytest.mark.parametrize("num_qubits", [8, 12], ids=lambda n: f"{n}q")
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
@pytest.mark.parametrize("num_qubits", [8, 13], ids=lambda n: f"{n}q")
def test_numba_and_cython_draw_the_same_samples(num_qubits):
    c = seed_circuit(num_qubits, layers=1)
    params = random_params(c, batch=5, seed=num_qubits)
    numba_sim, cython_sim = (qc.Simulator(backend=name, seed=21) for name in ("numba", "cython"))
    np.testing.assert_array_equal(numba_sim.sample(c, 3000, params), cython_sim.sample(c, 3000, params))
    np.testing.assert_array_equal(numba_sim.expectation(c, ["Z0", "Z1 Z2", "X0"], params, shots=500),
                                  cython_sim.expectation(c, ["Z0", "Z1 Z2", "X0"], params, shots=500))


EDGE_DISTRIBUTIONS = {
    "uneven-8bits": distribution(8, seed=3, zeros=40),
    "uneven-12bits": distribution(12, seed=4, zeros=100),
    "dense-10bits": distribution(10, seed=9, zeros=0),
    "uniform": np.full(64, 1 / 64),
    "certain": np.eye(1, 32, 17).ravel(),
    "certain-first": np.eye(1, 2, 0).ravel(),
    "two-outcomes": np.array([0.3, 0.7]),
    "tiny": np.array([1e-300, 1e-20, 1e-9, 0.0, 0.5, 0.25, 0.125, 0.125 - 1e-9]),
    "denormal": np.array([5e-324, 1.0, 0.0, 2.0]),
    "unnormalised": distribution(6, seed=5, zeros=3) * 1e5,
}


def alias_table_function(kernels: str):
    """Each compiled backend's alias-table construction (numba's module function, Cython's check entry)."""
    if kernels == "numba":
        return sampling.alias_table
    if "cython" not in COMPILED:
        pytest.skip("the Cython kernels are not built")
    from qsim_core.backends.cython import kernels as cython_kernels
    return cython_kernels.alias_table_into


@pytest.mark.parametrize("kernels", ["numba", "cython"])
@pytest.mark.parametrize("name", list(EDGE_DISTRIBUTIONS))
def test_alias_table_is_vose_bit_for_bit(name, kernels):
    # Cython splits the columns eight at a time (AVX-512) and pairs them in C: it must make Vose's moves
    probs = EDGE_DISTRIBUTIONS[name]
    bits = probs.size.bit_length() - 1
    table = np.empty(probs.size, np.uint64)
    alias_table_function(kernels)(probs, table)
    np.testing.assert_array_equal(table, vose_reference(probs))
    weights = reference_weights(probs)
    assert table_weights(table, bits) == weights
    cuts, alias = unpack(table, bits)
    assert all(cuts[i] == 0 and weights[alias[i]] > 0 for i in range(probs.size) if weights[i] == 0)


@pytest.mark.parametrize("level", ["x86-64-v4", "x86-64-v3", "baseline"])
@pytest.mark.parametrize("bits", [1, 3, 8, 12])
def test_eight_alias_tables_at_once_are_vose_bit_for_bit(level, bits):
    # the eight-sets path pairs eight tables at once (AVX-512: a table per lane, both ways of the sign test by
    # masks; other builds one by one): every one of them, whatever its neighbours, is Vose's table
    from tests.qsim_core.backends.test_dispatch import level_backend

    kernels = level_backend(level).kernels
    n = 1 << bits
    rows = [distribution(bits, seed=s, zeros=min(s * 7, n - 1)) for s in range(5)]
    rows += [np.full(n, 1 / n), np.eye(1, n, n // 3).ravel(), distribution(bits, seed=8, zeros=0) * 1e5]
    for count in (1, 3, 8):
        for start in (0, 8 - count):
            probs = np.array(rows[start:start + count])
            tables = np.zeros((count, n + 1), np.uint64)
            kernels.alias_tables_into(probs, tables)
            for row, table in zip(probs, tables, strict=True):
                np.testing.assert_array_equal(table[:n], vose_reference(row))


def test_eight_alias_tables_refuse_shapes_they_cannot_take():
    if "cython" not in COMPILED:
        pytest.skip("the Cython kernels are not built")
    from qsim_core.backends.cython import kernels

    message = r"1 to 8 distributions of 2\*\*bits entries \(bits >= 1\), and a table of 2\*\*bits \+ 1 entries"
    for probs, tables in ((np.ones((9, 4)), np.zeros((9, 5), np.uint64)),  # more than eight
                          (np.ones((2, 6)), np.zeros((2, 7), np.uint64)),  # not a power of two
                          (np.ones((2, 4)), np.zeros((2, 4), np.uint64)),  # no scratch entry
                          (np.ones((2, 1)), np.zeros((2, 2), np.uint64))):  # bits 0
        with pytest.raises(ValueError, match=message):
            kernels.alias_tables_into(probs, tables)


def small_state_circuit(num_qubits: int, seed: int) -> qc.Circuit:
    """Random rotations and a CNOT chain: an uneven distribution over all 2**num_qubits states."""
    angles = np.random.default_rng(seed).uniform(0, np.pi, (num_qubits, 2))
    c = qc.Circuit(num_qubits)
    for q in range(num_qubits):
        c.ry(q, angles[q, 0]).rz(q, angles[q, 1])
    for q in range(num_qubits - 1):
        c.cnot(q, q + 1)
    return c


@pytest.mark.skipif(not {"numba", "cython"} <= set(COMPILED), reason="needs both compiled backends")
@pytest.mark.parametrize("num_qubits", [1, 3, 8, 10, 11, 12], ids=lambda n: f"{n}q")
def test_numba_and_cython_draw_the_same_samples_for_any_shot_count(num_qubits):
    # Where the CPU has AVX-512 the Cython draw loops take 32 shots at a time (up to 8 qubits, stopping after
    # each block with a tie) or eight (above), and the rest one by one: every remainder and fewer shots than one
    # vector; and the columns split eight at a time and one by one.
    c = small_state_circuit(num_qubits, seed=num_qubits)
    numba_sim, cython_sim = (qc.Simulator(backend=name, seed=5) for name in ("numba", "cython"))
    for shots in (1, 7, 8, 9, 17, 31, 32, 33, 1023, 4099):
        np.testing.assert_array_equal(numba_sim.sample(c, shots), cython_sim.sample(c, shots), err_msg=f"{shots}")


def test_one_qubit_samples_follow_the_distribution(backend):
    c = qc.Circuit(1).ry(0, 1.0)
    samples = qc.Simulator(backend=backend, seed=2).sample(c, shots=100_003)
    assert stats.binomtest(int(samples.sum()), samples.size, np.sin(0.5) ** 2).pvalue > 1e-6
    assert set(np.unique(samples)) == {0, 1}


@pytest.mark.parametrize("num_qubits", [1, 11, 12], ids=lambda n: f"{n}q")
def test_a_certain_outcome_is_the_only_sample(backend, num_qubits):
    c = qc.Circuit(num_qubits).x(num_qubits - 1)
    samples = qc.Simulator(backend=backend, seed=3).sample(c, shots=4099)
    assert (samples == 1 << (num_qubits - 1)).all()


def test_a_tiny_probability_is_drawn_at_its_rate_and_zero_never(backend):
    # qubit 0 in |1> with probability sin(0.004)**2 ~ 1.6e-5; qubit 2 stays |0> (those states are impossible)
    c = qc.Circuit(3).ry(0, 0.008).ry(1, 1.2)
    p = np.sin(0.004) ** 2
    shots = 2_000_001
    samples = qc.Simulator(backend=backend, seed=6).sample(c, shots=shots)
    assert (samples < 4).all()
    assert stats.binomtest(int(np.count_nonzero(samples & 1)), shots, p).pvalue > 1e-6
