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


@njit(cache=True)
def alias_table(probs, threshold, alias):
    """Walker/Vose alias table of ``probs`` (float64[N], need not be normalised).

    After the call, drawing column j uniformly and keeping j with probability
    ``threshold[j]`` (else taking ``alias[j]``) samples i with probability
    ``probs[i] / sum(probs)``. Same table as the Cython twin's, bit for bit.
    """
    n = probs.size
    total = lane_sum(probs)
    for i in range(n):  # a loop of its own so it vectorises
        threshold[i] = probs[i] * n / total
    small_top = 0  # small columns (threshold < 1) in the front of `order`, a stack; large ones in the back, a queue
    large_bottom = n
    order = np.empty(n, np.int64)
    # The small/large test is a coin flip for the branch predictor (the
    # distribution changes with every parameter set), so this loop is
    # branch-free as in the Cython twin: the index goes to both candidate slots
    # (disjoint until the end) and the 0/1 test result moves the tops.
    for i in range(n):
        small = np.int64(threshold[i] < 1.0)
        order[small_top] = i
        order[large_bottom - 1] = i
        small_top += small
        large_bottom -= 1 - small
    last_positive = 0
    for i in range(n):
        alias[i] = i
        if probs[i] > 0.0:
            last_positive = i
    if small_top > 0 and large_bottom < n:
        # Vose's pairing: the top small column takes the first large one, `cur`, as its alias and
        # `cur` gives up what the small one lacks; once below 1 (`turned`) `cur` is the next small
        # column itself, paired with the next large one. As in the Cython twin, the rest of `cur`
        # is carried in a variable and the candidates of the step after next are loaded a step
        # early (the clamped lookahead is read, never used past the end).
        turned = False
        cur = order[large_bottom]
        rest = threshold[cur]
        low = order[small_top - 1]
        low_t = threshold[low]
        nxt = order[min(large_bottom + 1, n - 1)]
        nxt_t = threshold[nxt]
        while (large_bottom + 1 < n) if turned else (small_top > 0):
            low2 = order[max(small_top - 2, 0)]
            low2_t = threshold[low2]
            nxt2 = order[min(large_bottom + 2, n - 1)]
            nxt2_t = threshold[nxt2]
            if turned:
                lo, lo_t, hi, hi_t = cur, rest, nxt, nxt_t
                large_bottom += 1
                nxt, nxt_t = nxt2, nxt2_t
            else:
                lo, lo_t, hi, hi_t = low, low_t, cur, rest
                small_top -= 1
                low, low_t = low2, low2_t
            alias[lo] = hi
            threshold[lo] = lo_t
            rest = (hi_t + lo_t) - 1.0
            cur = hi
            turned = rest < 1.0
    # left over from rounding: order[:small_top] and order[large_bottom:] (which starts at `cur`,
    # turned or not) are full columns, unless impossible
    for k in range(small_top):
        i = order[k]
        if probs[i] > 0.0:
            threshold[i] = 1.0
        else:
            threshold[i] = 0.0
            alias[i] = last_positive
    for k in range(large_bottom, n):
        threshold[order[k]] = 1.0


_LOW53 = np.uint64(0x1FFFFFFFFFFFFF)
_TWO53 = 9007199254740992.0  # 2**53
_PACKED_BITS = 11  # up to 2**11 columns, one 64-bit number serves column and coin, and a table entry packs both
_ALIAS_MASK = np.uint64((1 << _PACKED_BITS) - 1)
_CUT_SHIFT = np.uint64(_PACKED_BITS)


@njit(cache=True)
def coin_cuts(threshold, alias, bits):
    """Turn ``threshold`` (float64[2**bits] in [0, 1]) in place into integer cuts; returns its uint64 view.

    A 53-bit coin c keeps its column when ``c * 2**-53 < threshold``, that is
    when ``c < ceil(threshold * 2**53)`` (the scaling is exact): the pick is
    one integer comparison with the very same outcome as the float one. Up
    to 11 bits each entry is ``cut << 11 | alias``, one load per
    pick; the cut is capped at 2**53 - 1, which changes nothing, as a full
    column is its own alias.
    """
    table = threshold.view(np.uint64)
    for j in range(threshold.size):
        scaled = threshold[j] * _TWO53 if threshold[j] > 0.0 else 0.0
        cut = np.int64(scaled)
        cut += np.int64(np.float64(cut) < scaled)  # rounded up (what the Cython twin does without ceil())
        if bits <= _PACKED_BITS:
            table[j] = (np.uint64(cut - (cut >> 53)) << _CUT_SHIFT) | np.uint64(alias[j])
        else:
            table[j] = np.uint64(cut)
    return table


@njit(cache=True)
def fill_random(buffer, rng):
    """Fill a uint64 buffer with random bits; returns rng. The numbers of repeated :func:`next_u64` calls,
    computed in counter form (number s is mix64(rng + s * GOLDEN)) so that iterations are independent."""
    rng = np.uint64(rng)
    for s in range(buffer.size):
        buffer[s] = _mix64(rng + np.uint64(s + 1) * _GOLDEN)
    return rng + np.uint64(buffer.size) * _GOLDEN


@njit(cache=True)
def alias_draws(table, alias, bits, rng, out):
    """Fill int64 ``out`` with draws from an alias table over 2**bits entries (bits >= 1); returns rng.

    ``table`` is the table's cuts as :func:`coin_cuts` makes them. Up to
    11 bits one 64-bit number serves both the column (top bits) and
    the coin (low 53 bits), independent bits of one draw, and the choice is
    a select on one loaded entry; wider tables take a second number for the
    coin and read the alias from ``alias``.
    """
    raw = out.view(np.uint64)
    rng = fill_random(raw, rng)
    shift = np.uint64(64 - bits)
    if bits <= _PACKED_BITS:
        for s in range(out.size):
            x = raw[s]
            column = np.int64(x >> shift)
            entry = table[column]
            # both candidates are in the one loaded entry, so this compiles to a select, not a
            # branch that would mispredict on every other coin
            out[s] = column if (x & _LOW53) < (entry >> _CUT_SHIFT) else np.int64(entry & _ALIAS_MASK)
    else:
        for s in range(out.size):
            rng, coin = next_u64(rng)
            column = np.int64(raw[s] >> shift)
            out[s] = column if (coin & _LOW53) < table[column] else alias[column]
    return rng


@njit(cache=True)
def samples_into(psi, probs, threshold, alias, rng, out):
    """Draw ``out.size`` basis indices from |psi|^2 with an alias table; returns rng."""
    bits = 0
    while (1 << bits) < psi.size:
        bits += 1
    for i in range(psi.size):
        a = psi[i]
        probs[i] = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
    alias_table(probs, threshold, alias)
    return alias_draws(coin_cuts(threshold, alias, bits), alias, bits, rng, out)


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
