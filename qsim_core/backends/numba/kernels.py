"""Numba kernels: free functions over flat arrays, no Python objects.

Bit order: qubit k is bit k of a basis index (see :mod:`qsim_core.circuit`).
Inside a block, qubit indices are *local* (positions in the block's sorted
qubit list) and ``psi`` is the block's gathered amplitudes. Two-qubit
matrices are indexed ``2 * bit(q0) + bit(q1)``; the structured two-qubit
steps (``U2X`` pair-mixing, ``U2D`` diagonal, see :mod:`qsim_core.compiler`)
read only the entries their structure allows from the same bound 4x4.

The entry points (``run_small``, ``evolve_large``, ...) release the GIL, as the Cython kernels do.
Helpers without ``parallel`` run inside the per-parameter-set loop of
``run_small`` (a ``prange`` over the batch); ``run_large`` parallelises over
slices of one big state instead. Everything accumulates in float64 whatever
the state's precision (``np.float64(x)``: numba's ``float(x)`` of a float32
stays float32).

Random numbers and the samplers are in :mod:`qsim_core.backends.numba.sampling`.
"""

import numba
import numpy as np
from numba import get_thread_id, njit, prange

from ...compiler import CNOT, PERM, SWAP, U1, U2, U2D, U2X
from ..contract import TASK_EXPVAL, TASK_PROBS, TASK_SAMPLES, TASK_SHOT_EXPVAL, TASK_STATE
from .loops import apply_diagonal_layer, real_pair_mix, real_pairs, real_qubit0, real_qubit1
from .packing import OUTPUT_OF_TASK, filled_rows, shares
from .packing import pack_observables as pack_observables  # the kernel contract's, exported here
from .packing import pack_small as pack_small
from .sampling import binomial_estimate, samples_into, stream_state
from .sampling import samples_large as samples_large  # the kernel contract's, exported here


def set_threads(threads):
    """Use ``threads`` worker threads (capped at numba's pool size) for the next kernel calls."""
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != threads:  # the usual case, unchanged since the last call: half the time of a set
        numba.set_num_threads(threads)


def max_threads():
    """Size of numba's thread pool; thread ids are below it."""
    return numba.config.NUMBA_NUM_THREADS


@njit(cache=True, inline="always")
def parity(x):
    """Parity of the set bits of a non-negative int64 (0 or 1)."""
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    x ^= x >> 4
    x &= 0xF
    return (0x6996 >> x) & 1


@njit(cache=True, inline="always")
def _insert_zero(p, q):
    return ((p >> q) << (q + 1)) | (p & ((1 << q) - 1))


@njit(cache=True)
def fused_u1(u1, run_start, run_gate, run):
    """Product of a fused run's 2x2 matrices (first gate rightmost) as 4 scalars."""
    g = run_gate[run_start[run]]
    m00, m01, m10, m11 = u1[g, 0, 0], u1[g, 0, 1], u1[g, 1, 0], u1[g, 1, 1]
    for k in range(run_start[run] + 1, run_start[run + 1]):
        g = run_gate[k]
        a00, a01, a10, a11 = u1[g, 0, 0], u1[g, 0, 1], u1[g, 1, 0], u1[g, 1, 1]
        m00, m01, m10, m11 = (a00 * m00 + a01 * m10, a00 * m01 + a01 * m11,
                              a10 * m00 + a11 * m10, a10 * m01 + a11 * m11)
    return m00, m01, m10, m11


@njit(cache=True, inline="always")
def _negligible(psi):
    """Largest gate-entry magnitude the fast-path tests treat as zero: 8 ulps of the state's precision.

    Compile-time constants multiplied in float64 leave rounding noise where an
    entry is exactly 0; dropping it changes a result by less than one more rounding.
    """
    return 2e-15 if psi.itemsize == 16 else 1e-6


@njit(cache=True)
def apply_u1(psi, q, m00, m01, m10, m11):
    """Apply a 2x2 matrix to qubit ``q`` of ``psi`` in place (diagonal and real fast paths)."""
    n = psi.size
    s = 1 << q
    tiny = _negligible(psi)
    if abs(m01.real) + abs(m01.imag) <= tiny and abs(m10.real) + abs(m10.imag) <= tiny:
        for i0 in range(0, n, 2 * s):
            for j in range(i0, i0 + s):
                psi[j] *= m00
            for j in range(i0 + s, i0 + 2 * s):
                psi[j] *= m11
    elif abs(m00.imag) <= tiny and abs(m01.imag) <= tiny and abs(m10.imag) <= tiny and abs(m11.imag) <= tiny:
        v = psi.view(psi.real.dtype)
        a, b, c, d = m00.real, m01.real, m10.real, m11.real
        if q == 0:
            real_qubit0(v, a, b, c, d)
        elif q == 1:
            real_qubit1(v, a, b, c, d)
        else:
            run = 2 * s
            for i0 in range(0, 2 * n, 2 * run):
                real_pairs(v[i0:i0 + run], v[i0 + run:i0 + 2 * run], a, b, c, d)
    else:
        for i0 in range(0, n, 2 * s):
            for j in range(i0, i0 + s):
                x = psi[j]
                y = psi[j + s]
                psi[j] = m00 * x + m01 * y
                psi[j + s] = m10 * x + m11 * y


@njit(cache=True)
def apply_u2(psi, qa, qb, m):
    """Apply a 4x4 matrix ``m`` (index 2*bit(qa)+bit(qb)) to qubits qa, qb."""
    lo, hi = min(qa, qb), max(qa, qb)
    sa, sb = 1 << qa, 1 << qb
    for p in range(psi.size >> 2):
        i00 = _insert_zero(_insert_zero(p, lo), hi)
        i01, i10, i11 = i00 | sb, i00 | sa, i00 | sa | sb
        v0, v1, v2, v3 = psi[i00], psi[i01], psi[i10], psi[i11]
        psi[i00] = m[0, 0] * v0 + m[0, 1] * v1 + m[0, 2] * v2 + m[0, 3] * v3
        psi[i01] = m[1, 0] * v0 + m[1, 1] * v1 + m[1, 2] * v2 + m[1, 3] * v3
        psi[i10] = m[2, 0] * v0 + m[2, 1] * v1 + m[2, 2] * v2 + m[2, 3] * v3
        psi[i11] = m[3, 0] * v0 + m[3, 1] * v1 + m[3, 2] * v2 + m[3, 3] * v3


@njit(cache=True)
def apply_u2x(psi, qa, qb, m):
    """Apply a pair-mixing 4x4 ``m`` (index 2*bit(qa)+bit(qb)): non-zero only where it couples
    |00> with |11> and |01> with |10> (MS, XX, YY). Two 2x2 mixes per amplitude quartet, half a
    4x4's work; a real matrix (e.g. MS with phases summing to a quarter turn) acts on the float view.
    """
    lo, hi = min(qa, qb), max(qa, qb)
    sa, sb = 1 << qa, 1 << qb
    slo, shi = 1 << lo, 1 << hi
    a00, a03, a30, a33 = m[0, 0], m[0, 3], m[3, 0], m[3, 3]
    b11, b12, b21, b22 = m[1, 1], m[1, 2], m[2, 1], m[2, 2]
    tiny = _negligible(psi)
    if (abs(a00.imag) <= tiny and abs(a03.imag) <= tiny and abs(a30.imag) <= tiny and abs(a33.imag) <= tiny
            and abs(b11.imag) <= tiny and abs(b12.imag) <= tiny and abs(b21.imag) <= tiny
            and abs(b22.imag) <= tiny):
        v = psi.view(psi.real.dtype)
        real_pair_mix(v, 2 * slo, 2 * shi, 2 * (sa + sb), 2 * sb, 2 * sa, a00.real, a03.real, a30.real, a33.real,
                      b11.real, b12.real, b21.real, b22.real)
        return
    for i0 in range(0, psi.size, 2 * shi):
        for i1 in range(i0, i0 + shi, 2 * slo):
            for j in range(i1, i1 + slo):
                x0 = psi[j]
                x3 = psi[j + sa + sb]
                psi[j] = a00 * x0 + a03 * x3
                psi[j + sa + sb] = a30 * x0 + a33 * x3
                x1 = psi[j + sb]
                x2 = psi[j + sa]
                psi[j + sb] = b11 * x1 + b12 * x2
                psi[j + sa] = b21 * x1 + b22 * x2


@njit(cache=True)
def apply_u2d(psi, qa, qb, m):
    """Apply a diagonal 4x4 ``m`` (index 2*bit(qa)+bit(qb)): one phase per amplitude (ZZ, native ZZ)."""
    lo, hi = min(qa, qb), max(qa, qb)
    sa, sb = 1 << qa, 1 << qb
    slo, shi = 1 << lo, 1 << hi
    d0, d1, d2, d3 = m[0, 0], m[1, 1], m[2, 2], m[3, 3]
    for i0 in range(0, psi.size, 2 * shi):
        for i1 in range(i0, i0 + shi, 2 * slo):
            for j in range(i1, i1 + slo):
                psi[j] *= d0
                psi[j + sb] *= d1
                psi[j + sa] *= d2
                psi[j + sa + sb] *= d3


@njit(cache=True)
def apply_swap_pairs(psi, qa, qb, control_only):
    """CNOT(qa -> qb) when ``control_only`` else SWAP(qa, qb), by pair swaps."""
    lo, hi = min(qa, qb), max(qa, qb)
    sa, sb = 1 << qa, 1 << qb
    for p in range(psi.size >> 2):
        base = _insert_zero(_insert_zero(p, lo), hi)
        if control_only:
            i, j = base | sa, base | sa | sb
        else:
            i, j = base | sa, base | sb
        psi[i], psi[j] = psi[j], psi[i]


@njit(cache=True)
def apply_permutation(psi, scratch, table, flip=0):
    """``psi[i] = psi_old[table[i] ^ flip]`` through ``scratch``."""
    for i in range(psi.size):
        scratch[i] = psi[table[i] ^ flip]
    psi[:] = scratch[: psi.size]


@njit(cache=True)
def apply_steps(psi, scratch, first, last, kind, q0, q1, arg, u1, u2, run_start, run_gate, perm_start, perm_table):
    """Apply program steps ``first:last`` to the (local) state ``psi``."""
    for k in range(first, last):
        op = kind[k]
        if op == U1:
            m00, m01, m10, m11 = fused_u1(u1, run_start, run_gate, arg[k])
            apply_u1(psi, q0[k], m00, m01, m10, m11)
        elif op == PERM:
            apply_permutation(psi, scratch, perm_table[perm_start[arg[k]]:perm_start[arg[k] + 1]])
        elif op == CNOT:
            apply_swap_pairs(psi, q0[k], q1[k], True)
        elif op == SWAP:
            apply_swap_pairs(psi, q0[k], q1[k], False)
        elif op == U2X:
            apply_u2x(psi, q0[k], q1[k], u2[arg[k]])
        elif op == U2D:
            apply_u2d(psi, q0[k], q1[k], u2[arg[k]])
        elif op == U2:
            apply_u2(psi, q0[k], q1[k], u2[arg[k]])


#: most diagonal U1 steps one phase pass applies (as the Cython twin)
_DIAGONAL_LAYER = 64


@njit(cache=True)
def _diagonal_u1(u1, run_start, run_gate, run, tiny):
    """(diagonal?, m00, m11) of a fused run, diagonal as :func:`apply_u1` decides."""
    m00, m01, m10, m11 = fused_u1(u1, run_start, run_gate, run)
    return abs(m01.real) + abs(m01.imag) <= tiny and abs(m10.real) + abs(m10.imag) <= tiny, m00, m11


@njit(cache=True)
def _control_flip(slice_index, table, control_start, control_qubit, control_mask):
    """XOR of permutation ``table``'s external-control masks whose qubit is 1 in ``slice_index``."""
    flip = 0
    for j in range(control_start[table], control_start[table + 1]):
        if (slice_index >> control_qubit[j]) & 1:
            flip ^= control_mask[j]
    return flip


@njit(cache=True)
def apply_block_steps(psi, scratch, first, last, kind, q0, q1, arg, u1, u2, run_start, run_gate, perm_start,
                      perm_table, control_start, control_qubit, control_mask, slice_index):
    """:func:`apply_steps` for the gathered slice ``slice_index`` (global index of its first amplitude) of a
    block of a multi-block program (``evolve_large``): a stretch of two or more diagonal U1 steps (the
    compiler gathers the diagonal tails of a block's runs into such stretches,
    :mod:`qsim_core.compiler.diagonals`) is one phase pass (:func:`apply_diagonal_layer`), and a permutation
    reads its external controls (``control_*``, the program's ``perm_control_*``) from the slice's index.
    The phases of a stretch are multiplied together first, so results may differ from ``apply_steps`` in the
    last bits."""
    tiny = _negligible(psi)
    qubits = np.empty(_DIAGONAL_LAYER, np.int64)
    diagonals = np.empty((_DIAGONAL_LAYER, 2), psi.dtype)
    k = first
    while k < last:
        if kind[k] == PERM:
            flip = _control_flip(slice_index, arg[k], control_start, control_qubit, control_mask)
            apply_permutation(psi, scratch, perm_table[perm_start[arg[k]]:perm_start[arg[k] + 1]], flip)
            k += 1
            continue
        count = 0
        end = k
        while end < last and count < _DIAGONAL_LAYER and kind[end] == U1:
            diagonal, m00, m11 = _diagonal_u1(u1, run_start, run_gate, arg[end], tiny)
            if not diagonal:
                break
            qubits[count] = q0[end]
            diagonals[count, 0] = m00
            diagonals[count, 1] = m11
            count += 1
            end += 1
        if count >= 2:
            apply_diagonal_layer(psi, qubits, diagonals, count)
        else:
            while end < last and kind[end] != PERM and not (
                    end + 1 < last and kind[end] == U1 and kind[end + 1] == U1
                    and _diagonal_u1(u1, run_start, run_gate, arg[end], tiny)[0]
                    and _diagonal_u1(u1, run_start, run_gate, arg[end + 1], tiny)[0]):
                end += 1
            apply_steps(psi, scratch, k, end, kind, q0, q1, arg, u1, u2, run_start, run_gate, perm_start,
                        perm_table)
        k = end


@njit(cache=True)
def _initial_column(u1, run_start, run_gate, init_u1, q, dtype_one):
    if init_u1[q] < 0:
        return dtype_one, dtype_one - dtype_one
    m00, _, m10, _ = fused_u1(u1, run_start, run_gate, init_u1[q])
    return m00, m10


@njit(cache=True)
def _times_column(psi, size, c0, c1):
    """``psi[:2 size]`` = ``psi[:size]`` (x) the column (c0, c1): one more qubit, as bit log2(size)."""
    for i in range(size):
        psi[i + size] = psi[i] * c1
        psi[i] = psi[i] * c0


@njit(cache=True)
def init_product(psi, u1, run_start, run_gate, init_u1, first_qubit, last_qubit):
    """Write the product state of qubits first..last-1 into ``psi[: 2**(last-first)]``."""
    one = psi.dtype.type(1)
    psi[0] = one
    for q in range(first_qubit, last_qubit):
        c0, c1 = _initial_column(u1, run_start, run_gate, init_u1, q, one)
        _times_column(psi, 1 << (q - first_qubit), c0, c1)


@njit(cache=True)
def product_of(psi, u1, run_start, run_gate, init_u1, qubits):
    """Write the product state of ``qubits`` into ``psi[: 2**qubits.size]``, bit k of an index standing for
    ``qubits[k]``."""
    one = psi.dtype.type(1)
    psi[0] = one
    for k in range(qubits.size):
        c0, c1 = _initial_column(u1, run_start, run_gate, init_u1, qubits[k], one)
        _times_column(psi, 1 << k, c0, c1)


@njit(cache=True)
def z_expectation(psi, first, last, zmask):
    """Sum over indices first..last-1 of |psi_i|^2 * (-1)^popcount(i & zmask), in float64."""
    acc = 0.0
    for i in range(first, last):
        a = psi[i]
        p = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
        acc += p - 2.0 * p * parity(i & zmask)
    return acc


@njit(cache=True)
def pauli_expectation(psi, first, last, xmask, zmask, ny):
    """Partial <psi|P|psi> over indices first..last-1 for P = i^ny X^xmask Z^zmask."""
    acc = 0.0
    for i in range(first, last):
        a = psi[i]
        b = psi[i ^ xmask]
        re = np.float64(b.real) * np.float64(a.real) + np.float64(b.imag) * np.float64(a.imag)
        im = np.float64(b.real) * np.float64(a.imag) - np.float64(b.imag) * np.float64(a.real)
        sign = 1.0 - 2.0 * parity(i & zmask)
        phase = ny & 3
        if phase == 0:
            acc += sign * re
        elif phase == 1:
            acc -= sign * im
        elif phase == 2:
            acc -= sign * re
        else:
            acc += sign * im
    return acc


@njit(cache=True, fastmath={"reassoc", "contract"})
def _fold_marginals(probs, ones):
    """ones[q] = P(qubit q = 1) for every qubit; destroys ``probs`` (folds it in half n times)."""
    size = probs.size
    q = ones.size - 1
    while size > 1:
        half = size >> 1
        acc = 0.0
        for i in range(half):
            acc += probs[half + i]
            probs[i] += probs[half + i]
        ones[q] = acc
        q -= 1
        size = half


@njit(cache=True)
def z_expectations_from_probabilities(probs, xmask, zmask, out):
    """Fill ``out[k]`` for every Z string (xmask[k] == 0) from basis probabilities.

    Multi-qubit Z strings sum signed probabilities; single-qubit Z strings
    come from the marginals, which one halving pass computes for all qubits.
    Destroys ``probs`` (float64[2**n]).
    """
    n = 0
    while (1 << n) < probs.size:
        n += 1
    single = 0
    for k in range(xmask.size):
        if xmask[k] != 0:
            continue
        if zmask[k] & (zmask[k] - 1) != 0:
            acc = 0.0
            for i in range(probs.size):
                acc += probs[i] - 2.0 * probs[i] * parity(i & zmask[k])
            out[k] = acc
        else:
            single += 1
    if single:
        ones = np.empty(n)
        _fold_marginals(probs, ones)
        for k in range(xmask.size):
            if xmask[k] == 0 and zmask[k] & (zmask[k] - 1) == 0:
                if zmask[k] == 0:
                    out[k] = probs[0]
                else:
                    q = 0
                    while zmask[k] >> q != 1:
                        q += 1
                    out[k] = probs[0] - 2.0 * ones[q]


@njit(cache=True)
def expectations_into(psi, probs, xmask, zmask, ny, out):
    """All observables' exact expectations for one whole state; ``probs`` is float64[2**n] scratch."""
    for k in range(xmask.size):
        if xmask[k] != 0:
            out[k] = pauli_expectation(psi, 0, psi.size, xmask[k], zmask[k], ny[k])
    for i in range(psi.size):
        a = psi[i]
        probs[i] = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
    z_expectations_from_probabilities(probs, xmask, zmask, out)


@njit(cache=True, nogil=True)
def shot_estimates_into(samples, xmask, zmask, exact, rng, out):
    """Shot estimates from Z-basis ``samples`` (one parity per shot; the large-state path); returns rng.

    Z strings share the samples (one measurement in the Z basis). A string
    with X or Y needs its own basis, so it is estimated from its own
    ``samples.size`` outcomes drawn on ``exact[k]`` (see binomial_estimate).
    """
    shots = samples.size
    for k in range(out.size):
        if xmask[k] == 0:
            total = 0.0
            for s in range(shots):
                total += 1.0 - 2.0 * parity(samples[s] & zmask[k])
            out[k] = total / shots
        else:
            rng, out[k] = binomial_estimate(exact[k], shots, rng)
    return rng


@njit(cache=True)
def _shot_estimates_small(psi, probs, table, xmask, zmask, ny, shots, rng, out):
    """Shot estimates for a small state: Z strings from the counts of one set of shots."""
    drawn = np.empty(shots, np.int64)
    rng = samples_into(psi, probs, table, rng, drawn)
    counts = probs  # the probabilities are in the table now; reuse their buffer
    counts[:] = 0.0
    for s in range(shots):
        counts[drawn[s]] += 1.0
    # signed sums of whole counts are exact in any order: one division per string, exactly 1 for the identity
    z_expectations_from_probabilities(counts, xmask, zmask, out)
    for k in range(xmask.size):
        if xmask[k] != 0:
            exact = pauli_expectation(psi, 0, psi.size, xmask[k], zmask[k], ny[k])
            rng, out[k] = binomial_estimate(exact, shots, rng)
        else:
            out[k] /= shots


@njit(cache=True, parallel=True, nogil=True)
def run_small(task, psi_out, probs_out, values_out, samples_out,
              num_qubits, u1, u2, init_u1, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table,
              xmask, zmask, ny, shots, key, batch_offset, initial, threads):
    """Run a whole batch of a single-block program, one parameter set per iteration.

    Args:
        task: TASK_* constant selecting what is written.
        psi_out, probs_out: dtype[B, 2**n] final states (TASK_STATE), float64[B, 2**n] probabilities (TASK_PROBS).
        values_out, samples_out: float64[B, K] expectations (TASK_*EXPVAL), int64[B, shots] indices (TASK_SAMPLES).
        u1, u2: bound gate matrices ``[B, G, 2, 2]`` and ``[B, G2, 4, 4]``.
        key: uint64 RNG key of this call; batch_offset: global index of row 0.
        initial: dtype[B, 2**n] initial states (program compiled with ``from_zero=False``), or [0, 0].
        threads: numba's thread count (each thread takes a block of rows and its own scratch).
    """
    batch = u1.shape[0]
    size = 1 << num_qubits
    steps = kind.size
    # scratch allocated once per thread, not per row: each thread runs a contiguous block of rows
    block = -(-batch // threads)
    sampling = task == TASK_SAMPLES or task == TASK_SHOT_EXPVAL
    for t in prange(threads):
        own = np.empty(0 if task == TASK_STATE else size, u1.dtype)
        scratch = np.empty(size if perm_start.size > 1 else 0, u1.dtype)
        probs = np.empty(size)
        table = np.empty(size if sampling else 0, np.uint64)
        for b in range(t * block, min(batch, (t + 1) * block)):
            psi = psi_out[b] if task == TASK_STATE else own
            if initial.shape[0] > 0:
                psi[:] = initial[b]
            else:
                init_product(psi, u1[b], run_start, run_gate, init_u1, 0, num_qubits)
            apply_steps(psi, scratch, 0, steps, kind, q0, q1, arg, u1[b], u2[b], run_start, run_gate,
                        perm_start, perm_table)
            if task == TASK_PROBS:
                for i in range(size):
                    a = psi[i]
                    probs_out[b, i] = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
            elif task == TASK_EXPVAL:
                expectations_into(psi, probs, xmask, zmask, ny, values_out[b])
            elif task == TASK_SAMPLES:
                samples_into(psi, probs, table, stream_state(key, batch_offset + b), samples_out[b])
            elif task == TASK_SHOT_EXPVAL:
                _shot_estimates_small(psi, probs, table, xmask, zmask, ny, shots,
                                      stream_state(key, batch_offset + b), values_out[b])


def run_packed(program, params, task, out, observables, shots, key, batch_offset, initial, release_gil=True):
    """As the Cython ``run_packed``: fill the rotations of ``params`` (unless None), then ``run_small`` into
    ``out``; a program packed with ``refilled=False`` takes more sets than its arrays' rows, a share of them at a
    time. ``release_gil`` is not read: numba's compiled kernels (``nogil``) always release it."""
    (num_qubits, u1, u2, *steps), placeholders, _, _ = program
    parts = None if params is None else shares(program, len(params))
    if parts:
        for rows in parts:
            run_packed(program, params[rows], task, out[rows], observables, shots, key, batch_offset + rows.start,
                       None if initial is None else initial[rows])
        return
    if params is None:  # the first rows of the packed arrays, as they are
        u1, u2 = u1[:len(out)], u2[:len(out)]
    else:
        u1, u2 = filled_rows(program, params)
    outputs = list(placeholders)
    outputs[OUTPUT_OF_TASK[task]] = out
    # np.uint64 keeps one compiled signature: a bare Python int would be typed int64 or uint64 depending on its value
    # numba's thread count is passed in: asked inside the kernel, it would keep the kernel from numba's cache
    run_small(task, *outputs, num_qubits, u1, u2, *steps, *observables, shots, np.uint64(key), batch_offset,
              placeholders[0] if initial is None else initial, numba.get_num_threads())


@njit(cache=True)
def _deposit(value, positions):
    """Scatter the low bits of ``value`` to the bit ``positions`` (software PDEP)."""
    out = 0
    for k in range(positions.size):
        out |= ((value >> k) & 1) << positions[k]
    return out


@njit(cache=True)
def _product_slice(dest, product, columns, chunk, first, last, kind, arg, perm_start, perm_table, control_start,
                   control_qubit, control_mask, slice_index):
    """Write slice ``chunk`` of the initial product state into ``dest``, as the first block's pass starts:
    ``product`` (the factor of the block's qubits, in local order) times the factor of the others (``columns``:
    their initial columns, bit k of ``chunk`` choosing row k's entry), read through the block's leading
    permutation step if it has one. Returns the first block step still to apply."""
    factor = dest.dtype.type(1)
    for k in range(columns.shape[0]):
        factor *= columns[k, (chunk >> k) & 1]
    if first < last and kind[first] == PERM:
        table = perm_table[perm_start[arg[first]]:perm_start[arg[first] + 1]]
        flip = _control_flip(slice_index, arg[first], control_start, control_qubit, control_mask)
        for i in range(dest.size):
            dest[i] = factor * product[table[i] ^ flip]
        return first + 1
    for i in range(dest.size):
        dest[i] = factor * product[i]
    return first


@njit(cache=True, parallel=True, nogil=True)
def evolve_large(psi, u1, u2, num_qubits, init_u1, block_start, block_qubit_start, block_qubits,
                 kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table, perm_control_start,
                 perm_control_qubit, perm_control_mask, num_threads):
    """Evolve one large state in place: one gathered pass per block, the first writing the product state as
    it reads it (:func:`_product_slice`); a program without blocks takes one pass over an in-place block of
    its lower half of qubits, with no steps."""
    one = psi.dtype.type(1)
    num_blocks = block_start.size - 1
    all_qubits = np.arange(num_qubits)
    for blk in range(max(num_blocks, 1)):
        if num_blocks > 0:
            qubits = block_qubits[block_qubit_start[blk]:block_qubit_start[blk + 1]].astype(np.int64)
            first, last = block_start[blk], block_start[blk + 1]
        else:
            qubits = np.arange(num_qubits // 2)
            first, last = 0, 0
        in_block = np.zeros(num_qubits, np.bool_)
        for q in qubits:
            in_block[q] = True
        others = all_qubits[~in_block]
        local = 1 << qubits.size
        # a block of qubits 0..k-1 is contiguous in psi: it works in place, without a gather
        in_place = qubits[qubits.size - 1] == qubits.size - 1
        offsets = np.empty(local, np.int64)
        for i in range(local):
            offsets[i] = _deposit(i, qubits)
        product = np.empty(local if blk == 0 else 0, psi.dtype)
        columns = np.empty((others.size if blk == 0 else 0, 2), psi.dtype)
        if blk == 0:
            product_of(product, u1, run_start, run_gate, init_u1, qubits)
            for k in range(others.size):
                columns[k, 0], columns[k, 1] = _initial_column(u1, run_start, run_gate, init_u1, others[k], one)
        buffers = np.empty((num_threads, 0 if in_place else local), psi.dtype)
        scratch = np.empty((num_threads, local), psi.dtype)
        for chunk in prange(1 << others.size):
            tid = get_thread_id()
            base = _deposit(chunk, others)
            target = psi[base:base + local] if in_place else buffers[tid]
            start = first
            if blk == 0:
                start = _product_slice(target, product, columns, chunk, first, last, kind, arg, perm_start,
                                       perm_table, perm_control_start, perm_control_qubit, perm_control_mask, base)
            elif not in_place:
                for i in range(local):
                    target[i] = psi[base + offsets[i]]
            apply_block_steps(target, scratch[tid], start, last, kind, q0, q1, arg, u1, u2, run_start, run_gate,
                              perm_start, perm_table, perm_control_start, perm_control_qubit, perm_control_mask,
                              base)
            if not in_place:
                for i in range(local):
                    psi[base + offsets[i]] = target[i]


@njit(cache=True, parallel=True, nogil=True)
def expectations_large(psi, xmask, zmask, ny, out):
    """Exact expectations of one large state, parallel over slices."""
    slices = min(256, psi.size)
    width = psi.size // slices
    partial = np.zeros((slices, xmask.size))
    for c in prange(slices):
        for k in range(xmask.size):
            if xmask[k] == 0:
                partial[c, k] = z_expectation(psi, c * width, (c + 1) * width, zmask[k])
            else:
                partial[c, k] = pauli_expectation(psi, c * width, (c + 1) * width, xmask[k], zmask[k], ny[k])
    for k in range(xmask.size):
        out[k] = partial[:, k].sum()


@njit(cache=True, nogil=True)
def probabilities_in_place(psi):
    """|psi_i|^2 written over the state's own memory; returns the float64[2**n] view.

    No second state-sized buffer: float64 i lies inside complex element i
    (complex64) or i // 2 (complex128), which this sequential loop has
    already read when it writes there.
    """
    out = psi.view(np.float64)
    for i in range(psi.size):
        a = psi[i]
        out[i] = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
    return out[:psi.size]
