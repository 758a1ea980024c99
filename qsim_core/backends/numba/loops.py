"""The inner loops numba vectorises, on the float view of a state, and the phase pass of a diagonal layer.

Helpers of :mod:`qsim_core.backends.numba.kernels` (which documents the bit
order and the step kinds); free of its other helpers, so it imports nothing
from it.
"""

import numpy as np
from numba import njit

# Real matrices (RY, H, X, CNOT-free fused runs) are the common case: they act on
# the float view of the state, re and im alike. The loops take the two halves of
# the amplitude pairs as separate slices: with distinct pointers LLVM can prove
# there are no dependences and vectorises (on one array indexed at f and f + s
# it cannot). 'contract' allows FMA; results stay within a few ulps.
_FMA = {"contract"}


@njit(cache=True, fastmath=_FMA)
def real_pairs(lo, hi, a, b, c, d):
    """``(lo, hi) <- (a lo + b hi, c lo + d hi)`` elementwise: a real 2x2 on the two halves of a run of pairs."""
    for k in range(lo.size):
        x = lo[k]
        y = hi[k]
        lo[k] = a * x + b * y
        hi[k] = c * x + d * y


@njit(cache=True, fastmath=_FMA)
def real_qubit0(v, a, b, c, d):
    """Qubit 0: each pair is floats (4p, 4p+1 | 4p+2, 4p+3); written out so it vectorises in-iteration."""
    for i in range(0, v.size, 4):
        xr, xi, yr, yi = v[i], v[i + 1], v[i + 2], v[i + 3]
        v[i] = a * xr + b * yr
        v[i + 1] = a * xi + b * yi
        v[i + 2] = c * xr + d * yr
        v[i + 3] = c * xi + d * yi


@njit(cache=True, fastmath=_FMA)
def real_qubit1(v, a, b, c, d):
    """Qubit 1: two pairs per 8 floats (8p..8p+3 | 8p+4..8p+7)."""
    for i in range(0, v.size, 8):
        x0, x1, x2, x3 = v[i], v[i + 1], v[i + 2], v[i + 3]
        y0, y1, y2, y3 = v[i + 4], v[i + 5], v[i + 6], v[i + 7]
        v[i] = a * x0 + b * y0
        v[i + 1] = a * x1 + b * y1
        v[i + 2] = a * x2 + b * y2
        v[i + 3] = a * x3 + b * y3
        v[i + 4] = c * x0 + d * y0
        v[i + 5] = c * x1 + d * y1
        v[i + 6] = c * x2 + d * y2
        v[i + 7] = c * x3 + d * y3


@njit(cache=True, fastmath=_FMA)
def real_pair_mix(v, slo, shi, s11, s01, s10, a00, a03, a30, a33, b11, b12, b21, b22):
    """``kernels.apply_u2x`` with real entries on the float view: strides in floats, re and im alike."""
    for i0 in range(0, v.size, 2 * shi):
        for i1 in range(i0, i0 + shi, 2 * slo):
            for f in range(i1, i1 + slo):
                x0 = v[f]
                x3 = v[f + s11]
                v[f] = a00 * x0 + a03 * x3
                v[f + s11] = a30 * x0 + a33 * x3
                x1 = v[f + s01]
                x2 = v[f + s10]
                v[f + s01] = b11 * x1 + b12 * x2
                v[f + s10] = b21 * x1 + b22 * x2


#: the phase pass's table over the low qubits has 2**8 entries (as the Cython twin)
_PHASE_LOW_QUBITS = 8


@njit(cache=True)
def _phase_table(table, shift, qubits, diagonals, count):
    """``table[j]`` = product over the layer's steps on qubits ``shift ..`` of their diagonal entry for
    bit ``q - shift`` of j, in step order."""
    table[:] = 1.0
    for s in range(count):
        bit = qubits[s] - shift
        if bit < 0 or (1 << bit) >= table.size:
            continue
        for j in range(table.size):
            table[j] = table[j] * diagonals[s, (j >> bit) & 1]


@njit(cache=True)
def apply_diagonal_layer(psi, qubits, diagonals, count):
    """Apply ``count`` diagonal single-qubit matrices (qubit ``qubits[s]``, entries ``diagonals[s, 0:2]``) in
    one pass: amplitude i times ``high[i >> 8] * low[i & 255]``, two tables of the products of its phases."""
    bits = 0
    while (1 << bits) < psi.size:
        bits += 1
    low_bits = min(bits, _PHASE_LOW_QUBITS)
    low = np.empty(1 << low_bits, psi.dtype)
    high = np.empty(psi.size >> low_bits, psi.dtype)
    _phase_table(low, 0, qubits, diagonals, count)
    _phase_table(high, low_bits, qubits, diagonals, count)
    for h in range(high.size):
        base = h << low_bits
        for j in range(low.size):
            psi[base + j] *= high[h] * low[j]


__all__ = ["apply_diagonal_layer", "real_pair_mix", "real_pairs", "real_qubit0", "real_qubit1"]
