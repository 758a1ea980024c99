"""Numba sampling kernels: SplitMix64 streams, the alias-table sampler of small states and the sorted-uniform
sampler of large ones (the Cython kernels draw the same numbers, see :mod:`qsim_core.backends.cython`).

Random numbers: SplitMix64 streams, one per parameter set, derived from the
call's 64-bit key and the set's global batch index, so results do not depend
on the thread count or on how the batch is chunked. Small states draw from an
alias table (``samples_into``), large ones from sorted uniforms (``samples_large``).
"""

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_STREAM = np.uint64(0xD1B54A32D192ED03)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def stream_state(key, index):
    """Initial RNG state of the stream for batch element ``index`` under ``key``."""
    return _mix64(key ^ (np.uint64(index) * _STREAM))


@njit(cache=True, inline="always")
def next_u64(state):
    """Advance a SplitMix64 state; returns (new state, 64 random bits).

    The cast matters: a state that went through Python comes back as int64,
    and int64 mixed with uint64 would silently become float64 in numba.
    """
    state = np.uint64(state) + _GOLDEN
    return state, _mix64(state)


@njit(cache=True, inline="always")
def next_uniform(state):
    """Advance a SplitMix64 state; returns (new state, uniform float in [0, 1) with 53 random bits)."""
    state, bits = next_u64(state)
    return state, float(bits >> np.uint64(11)) * _TO_UNIT


@njit(cache=True)
def lane_sum(values):
    """``sum(values)`` in eight lanes: value i into lane i % 8, in index order, then the lanes pairwise.

    Summed as the Cython twin sums it, where the independent lanes are one
    vector addition instead of a chain of N dependent ones.
    """
    lane = np.zeros(8)
    for i in range(values.size):
        lane[i & 7] += values[i]
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))


TOTAL_BITS = 62  # the integer weights of an alias table sum to 2**TOTAL_BITS
_TWO62 = 4611686018427387904.0  # 2**62


@njit(cache=True, inline="always")
def table_bits(size):
    """The bits of an alias table's column index: the least b with 2**b >= size."""
    bits = 0
    while (1 << bits) < size:
        bits += 1
    return bits


@njit(cache=True)
def integer_weights(probs, w):
    """``w[i] = int64(probs[i] * (2**62 / sum(probs)))``, truncated, then ``2**62 - sum(w)`` added to the first
    largest weight, so that the weights sum to exactly 2**62 (``sum`` as :func:`lane_sum` forms it)."""
    scale = _TWO62 / lane_sum(probs)
    for i in range(probs.size):
        w[i] = np.int64(probs[i] * scale)
    w[np.argmax(w)] += (1 << TOTAL_BITS) - w.sum()


@njit(cache=True)
def alias_table(probs, table):
    """Walker's alias table of ``probs`` (float64[2**bits], bits >= 1, need not be normalised), Vose's construction.

    Column j of the uint64 ``table`` is ``cut << bits | alias``: a draw that
    lands in column j keeps j when a coin of ``62 - bits`` random bits is
    below ``cut`` and takes ``alias`` otherwise. The cuts come from integer
    weights that sum to exactly 2**62 (:func:`integer_weights`), each column
    holding ``2**(62 - bits)``, so the pairing is exact and state i is drawn
    with probability ``w[i] / 2**62``. Same table as the Cython twin's, bit
    for bit.
    """
    n = probs.size
    bits = table_bits(n)
    cap = np.int64(1) << np.int64(TOTAL_BITS - bits)
    w = np.empty(n, np.int64)
    integer_weights(probs, w)
    # small columns (weight below cap) in the front of `order`, a stack; large ones in the back, a queue. The
    # small/large test is a coin flip for the branch predictor (the distribution changes with every parameter
    # set), so this loop is branch-free as in the Cython twin: the index goes to both candidate slots
    # (disjoint until the end) and the 0/1 test result moves the tops.
    order = np.empty(n, np.int64)
    small_top = 0
    large_bottom = n
    for i in range(n):
        small = np.int64(w[i] < cap)
        order[small_top] = i
        order[large_bottom - 1] = i
        small_top += small
        large_bottom -= 1 - small
    for j in range(n):  # every column full and its own alias until the pairing says otherwise
        table[j] = (np.uint64(cap) << np.uint64(bits)) | np.uint64(j)
    if 0 < small_top < n:
        # Vose's pairing: the top small column takes the first large one, `cur`, as its alias and `cur` gives
        # up what the small one lacks; once below its capacity (`turned`) `cur` is the next small column itself,
        # paired with the next large one. The sums are exact, so every column ends paired or full.
        cur = order[large_bottom]
        rest = w[cur] - cap
        turned = False
        while (large_bottom + 1 < n) if turned else (small_top > 0):
            if turned:
                lo, lo_excess, hi = cur, rest, order[large_bottom + 1]
                large_bottom += 1
                rest += w[hi] - cap
            else:
                small_top -= 1
                lo, hi = order[small_top], cur
                lo_excess = w[lo] - cap
                rest += lo_excess
            table[lo] = (np.uint64(cap + lo_excess) << np.uint64(bits)) | np.uint64(hi)
            cur = hi
            turned = rest < 0


@njit(cache=True)
def fill_random(buffer, rng):
    """Fill a uint64 buffer with random bits; returns rng. The numbers of repeated :func:`next_u64` calls,
    computed in counter form (number s is mix64(rng + s * GOLDEN)) so that iterations are independent."""
    rng = np.uint64(rng)
    for s in range(buffer.size):
        buffer[s] = _mix64(rng + np.uint64(s + 1) * _GOLDEN)
    return rng + np.uint64(buffer.size) * _GOLDEN


@njit(cache=True)
def full_draws(table, bits, rng, out):
    """Fill int64 ``out`` with draws from the alias table over 2**bits columns (bits >= 1); returns rng.

    One 64-bit number per draw: its top ``bits`` bits are the column, its
    low ``62 - bits`` bits the coin, independent bits of one number.
    """
    raw = out.view(np.uint64)
    rng = fill_random(raw, rng)
    column_shift = np.uint64(64 - bits)
    cut_shift = np.uint64(bits)
    coin_mask = np.uint64((1 << (TOTAL_BITS - bits)) - 1)
    column_mask = np.uint64((1 << bits) - 1)
    for s in range(out.size):
        x = raw[s]
        column = x >> column_shift
        entry = table[column]
        # both candidates are in the one loaded entry, so this compiles to a select, not a branch that
        # would mispredict on every other coin
        out[s] = np.int64(column) if (x & coin_mask) < (entry >> cut_shift) else np.int64(entry & column_mask)
    return rng


QUARTER_MAX_BITS = 8  # tables of at most 2**8 columns draw quarters (quarter_draws)
QUARTER_REST = 46  # the cut bits below a quarter cut: 62 - 16


@njit(cache=True, inline="always")
def quarter_cut(entry, bits):
    """A column's quarter cut: the top ``16 - bits`` bits of its cut, at most ``2**(16 - bits) - 1`` (a full
    column's cut, ``2**(62 - bits)``, has one bit more; clamped, a tie still keeps the column)."""
    return min(entry >> np.uint64(bits + QUARTER_REST), np.uint64((1 << (16 - bits)) - 1))


@njit(cache=True)
def quarter_draws(table, bits, rng, out):
    """Fill int64 ``out`` with draws from the alias table over 2**bits columns (1 <= bits <= 8); returns rng.

    Four draws per 64-bit number: draw 4k + h from bits [16h, 16h + 16) of
    number k, its top ``bits`` bits the column and its other ``16 - bits``
    bits the coin, compared with the column's :func:`quarter_cut`. A tie
    (coin equal to the quarter cut) is settled by the rest of the cut
    against the low 46 bits of a number of its own: the ties take the
    numbers after the draws' numbers, in shot order. So a draw keeps its
    column with probability exactly ``cut / 2**(62 - bits)``, as in
    :func:`full_draws`, for a quarter of the numbers (the Cython kernels look
    the 16-bit entries up 32 draws at a time in AVX-512 registers).
    """
    rng = np.uint64(rng)
    count = out.size
    numbers = (count + 3) >> 2
    ties = 0
    column_mask = np.uint64((1 << bits) - 1)
    coin_mask = np.uint64((1 << (16 - bits)) - 1)
    rest_mask = np.uint64((1 << QUARTER_REST) - 1)
    for k in range(numbers):
        x = _mix64(rng + np.uint64(k + 1) * _GOLDEN)
        for h in range(min(4, count - 4 * k)):
            quarter = (x >> np.uint64(16 * h)) & np.uint64(0xFFFF)
            column = quarter >> np.uint64(16 - bits)
            entry = table[column]
            coin = quarter & coin_mask
            cut = quarter_cut(entry, bits)
            keep = coin < cut
            if coin == cut:
                ties += 1
                rest = (entry >> np.uint64(bits)) - (cut << np.uint64(QUARTER_REST))
                keep = (_mix64(rng + np.uint64(numbers + ties) * _GOLDEN) & rest_mask) < rest
            out[4 * k + h] = np.int64(column) if keep else np.int64(entry & column_mask)
    return rng + np.uint64(numbers + ties) * _GOLDEN


@njit(cache=True)
def alias_draws(table, bits, rng, out):
    """Fill int64 ``out`` with draws from the alias table over 2**bits columns (bits >= 1); returns rng:
    :func:`quarter_draws` up to 2**QUARTER_MAX_BITS columns, :func:`full_draws` above."""
    if bits <= QUARTER_MAX_BITS:
        return quarter_draws(table, bits, rng, out)
    return full_draws(table, bits, rng, out)


@njit(cache=True)
def samples_into(psi, probs, table, rng, out):
    """Draw ``out.size`` basis indices from |psi|^2 (at least 2 amplitudes) with an alias table; returns rng."""
    bits = table_bits(psi.size)
    for i in range(psi.size):
        a = psi[i]
        probs[i] = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
    alias_table(probs, table)
    return alias_draws(table, bits, rng, out)


@njit(cache=True)
def binomial_estimate(exact, shots, rng):
    """Mean of ``shots`` +-1 outcomes that are +1 with probability (1 + exact) / 2; returns (rng, mean)."""
    plus = 0.5 * (1.0 + exact)
    total = 0.0
    for _ in range(shots):
        rng, u = next_uniform(rng)
        total += 1.0 if u < plus else -1.0
    return rng, total / shots


@njit(cache=True, nogil=True)
def samples_large(psi, rng, out):
    """Draw ``out.size`` samples from a large state with O(shots) extra memory.

    Sorted uniforms are matched against one running sum over the state, then
    the draws are shuffled (Fisher-Yates) so their order is exchangeable.
    """
    total = 0.0
    for i in range(psi.size):
        a = psi[i]
        total += np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
    targets = np.empty(out.size)
    for s in range(out.size):
        rng, targets[s] = next_uniform(rng)
    targets = np.sort(targets) * total
    cumulative = 0.0
    s = 0
    last = 0
    for i in range(psi.size):
        a = psi[i]
        p = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
        if p > 0.0:
            last = i
        cumulative += p
        while s < out.size and targets[s] < cumulative:
            out[s] = i
            s += 1
    while s < out.size:
        out[s] = last
        s += 1
    for s in range(out.size - 1, 0, -1):
        rng, u = next_uniform(rng)
        j = int(u * (s + 1))
        out[s], out[j] = out[j], out[s]
    return rng
