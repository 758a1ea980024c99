"""Numba kernels of the exact noisy simulation: density matrices as 2n-qubit vectors.

A density matrix ``rho`` of n qubits is stored flat as ``v[i * 2**n + j] = rho[i, j]``
(bit order of :mod:`qsim_core.circuit` on both indices). A *step* on k = 1 or 2
qubits ``Q`` visits every ``2**k x 2**k`` block of entries that differ only in
the row and column bits of ``Q``, and replaces it by

    ``(1 - lam) M B M^dagger + lam Tr(M B M^dagger) I / 2**k``,

a gate ``M`` followed by the depolarizing channel ``rho -> (1 - lam) rho + lam Tr_Q(rho) (x) I / 2**k``
(``lam = 0``: the gate alone; ``M = I``: the channel alone), in one pass over
memory. ``M`` is read as sparse (permutation gates cost little) in the gate
table's layout (first qubit most significant). One call runs a whole step
program for a batch of rows, in parallel over the rows, each row's matrix
staying in cache.

Public (``__all__``): :func:`run_steps`, :func:`adjoint_sweep` (the exact gradient's backward sweep).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _insert_zero(k, bit):
    return ((k >> bit) << (bit + 1)) | (k & ((1 << bit) - 1))


@njit(cache=True, inline="always")
def _block_start(k, sorted_bits, count):
    """The k-th index whose bits ``sorted_bits[:count]`` (ascending) are all zero."""
    if count == 4:
        return _insert_zero(_insert_zero(_insert_zero(_insert_zero(k, sorted_bits[0]), sorted_bits[1]),
                                         sorted_bits[2]), sorted_bits[3])
    return _insert_zero(_insert_zero(k, sorted_bits[0]), sorted_bits[1])


@njit(cache=True)
def _monomial(nnz, d):
    for r in range(d):
        if nnz[r] != 1:
            return False
    return True


@njit(cache=True)
def _permute(v, d, cols, vals, keep, share, sorted_bits, count, offsets, block):
    """The step for a gate with one non-zero per row: entry (r, c) comes from (cols[r], cols[c])."""
    size = d * d
    source = np.empty(size, np.int64)
    factor = np.empty(size, np.complex128)
    for r in range(d):
        for c in range(d):
            source[r * d + c] = cols[r, 0] * d + cols[c, 0]
            factor[r * d + c] = keep * vals[r, 0] * np.conj(vals[c, 0])
    for k in range(v.shape[0] >> count):
        i = _block_start(k, sorted_bits, count)
        trace = 0j  # the trace is invariant under the gate
        for e in range(size):
            block[e] = v[i + offsets[e]]
        for r in range(d):
            trace += block[r * d + r]
        for e in range(size):
            v[i + offsets[e]] = factor[e] * block[source[e]]
        for r in range(d):
            v[i + offsets[r * d + r]] += share * trace


@njit(cache=True)
def _one_qubit(v, m, keep, share, sorted_bits, offsets):
    """A dense one-qubit step as one 4x4 map: (r, c) <- sum M[r, a] B[a, b] conj(M[c, b]), channel folded in."""
    superop = np.empty((4, 4), np.complex128)
    for r in range(2):
        for c in range(2):
            for a in range(2):
                for b in range(2):
                    superop[2 * r + c, 2 * a + b] = keep * m[r, a] * np.conj(m[c, b]) + (
                        share if r == c and a == b else 0.0)
    o0, o1, o2, o3 = offsets[0], offsets[1], offsets[2], offsets[3]
    for k in range(v.shape[0] >> 2):
        i = _block_start(k, sorted_bits, 2)
        x0, x1, x2, x3 = v[i + o0], v[i + o1], v[i + o2], v[i + o3]
        v[i + o0] = superop[0, 0] * x0 + superop[0, 1] * x1 + superop[0, 2] * x2 + superop[0, 3] * x3
        v[i + o1] = superop[1, 0] * x0 + superop[1, 1] * x1 + superop[1, 2] * x2 + superop[1, 3] * x3
        v[i + o2] = superop[2, 0] * x0 + superop[2, 1] * x1 + superop[2, 2] * x2 + superop[2, 3] * x3
        v[i + o3] = superop[3, 0] * x0 + superop[3, 1] * x1 + superop[3, 2] * x2 + superop[3, 3] * x3


@njit(cache=True)
def _step(v, d, row_bits, col_bits, m, lam, sorted_bits, count, offsets, cols, vals, nnz, block, half):
    for r in range(d):
        nnz[r] = 0
        for c in range(d):
            if m[r, c] != 0:
                cols[r, nnz[r]] = c
                vals[r, nnz[r]] = m[r, c]
                nnz[r] += 1
    for r in range(d):
        for c in range(d):
            off = 0
            for t in range(row_bits.shape[0]):
                if (r >> (row_bits.shape[0] - 1 - t)) & 1:
                    off += 1 << row_bits[t]
                if (c >> (row_bits.shape[0] - 1 - t)) & 1:
                    off += 1 << col_bits[t]
            offsets[r * d + c] = off
    keep = 1.0 - lam
    share = lam / d
    if _monomial(nnz, d):
        _permute(v, d, cols, vals, keep, share, sorted_bits, count, offsets, block)
        return
    if d == 2:
        _one_qubit(v, m, keep, share, sorted_bits, offsets)
        return
    for k in range(v.shape[0] >> count):
        i = _block_start(k, sorted_bits, count)
        for e in range(d * d):
            block[e] = v[i + offsets[e]]
        for r in range(d):  # half = M block
            for c in range(d):
                acc = 0j
                for e in range(nnz[r]):
                    acc += vals[r, e] * block[cols[r, e] * d + c]
                half[r * d + c] = acc
        trace = 0j
        for r in range(d):  # block = half M^dagger: entry (r, c) = sum_k half[r, k] conj(M[c, k])
            for c in range(d):
                acc = 0j
                for e in range(nnz[c]):
                    acc += half[r * d + cols[c, e]] * np.conj(vals[c, e])
                block[r * d + c] = acc
            trace += block[r * d + r]
        for r in range(d):
            for c in range(d):
                value = block[r * d + c]
                if lam != 0.0:
                    value = keep * value + (share * trace if r == c else 0j)
                v[i + offsets[r * d + c]] = value


@njit(cache=True)
def _scratch():
    """One thread's work arrays for :func:`_step`: offsets, cols, vals, nnz, block, half."""
    return (np.empty(16, np.int64), np.empty((4, 4), np.int64), np.empty((4, 4), np.complex128),
            np.empty(4, np.int64), np.empty(16, np.complex128), np.empty(16, np.complex128))


@njit(cache=True, inline="always")
def _step_bits(n, k, a, b):
    """Row bits, column bits (flat-index bit positions of qubits a(, b)) and all four sorted."""
    if k == 1:
        row_bits = np.array([n + a])
        col_bits = np.array([a])
    else:
        row_bits = np.array([n + a, n + b])
        col_bits = np.array([a, b])
    return row_bits, col_bits, np.sort(np.concatenate((row_bits, col_bits)))


@njit(cache=True, parallel=True)
def run_steps(rho, n, dims, qa, qb, index, lam, mats):
    """Run the step program on every row of ``rho`` (complex128[B, 4**n], in place).

    Step s acts on ``dims[s]`` (1 or 2) qubits ``qa[s]`` (, ``qb[s]``) with the matrix
    ``mats[b, index[s]]`` (its top-left 2x2 for one qubit; the identity for ``index[s] < 0``)
    and depolarizing parameter ``lam[s]``.
    """
    identity = np.eye(4, dtype=np.complex128)
    for b in prange(rho.shape[0]):
        v = rho[b]
        offsets, cols, vals, nnz, block, half = _scratch()
        for s in range(dims.shape[0]):
            k = dims[s]
            row_bits, col_bits, sorted_bits = _step_bits(n, k, qa[s], qb[s])
            m = mats[b, index[s]] if index[s] >= 0 else identity
            _step(v, 1 << k, row_bits, col_bits, m, lam[s], sorted_bits, 2 * k, offsets, cols, vals, nnz, block,
                  half)


@njit(cache=True)
def _trace_left(o, rho, n, k, a, b, m):
    """``Tr(O M rho)`` for Hermitian ``O`` and ``rho`` (flat, 4**n) and ``M`` on qubits a(, b) of the row index.

    ``(M rho)[j, i] = sum_c M[r(j), c] rho[j with its bits of the qubits set to c, i]``, and
    ``O[i, j] = conj(O[j, i])`` keeps both reads contiguous in ``i``.
    """
    size = 1 << n
    d = 1 << k
    local = np.empty(4, np.int64)  # row-index offset of local pattern r (first qubit most significant)
    for r in range(d):
        local[r] = ((r & 1) << a) if k == 1 else ((((r >> 1) & 1) << a) | ((r & 1) << b))
    low, high = (a, a) if k == 1 else (min(a, b), max(a, b))
    total = 0j
    for t in range(size >> k):
        j0 = _insert_zero(t, low) if k == 1 else _insert_zero(_insert_zero(t, low), high)
        for r in range(d):
            row = (j0 + local[r]) * size
            for c in range(d):
                factor = m[r, c]
                if factor == 0:
                    continue
                other = (j0 + local[c]) * size
                acc = 0j
                for i in range(size):
                    acc += np.conj(o[row + i]) * rho[other + i]
                total += factor * acc
    return total


@njit(cache=True, parallel=True)
def adjoint_sweep(rho, obs, n, dims, qa, qb, lam, inverse_lam, mats, use_start, slopes, out):
    """The adjoint sweep of a step program, one step per gate, backwards from the final states.

    Args:
        rho: complex128[B, 4**n], the final density matrices; un-computed in place, step by step
            (``rho_in = D^-1(U^dagger rho_out U)``, the inverse channel being the same map with
            ``inverse_lam[s] = -lam[s] / (1 - lam[s])``).
        obs: complex128[B, L, 4**n], Hermitian observables after the circuit; propagated in place to
            before it (``O_in = U^dagger D(O_out) U``: the channel is its own adjoint).
        dims, qa, qb, lam: the steps (see :func:`run_steps`); step s's gate is ``mats[b, s]``.
        use_start: int64[S + 1]: step s's parameter uses are ``use_start[s]:use_start[s+1]``.
        slopes: complex128[B, U, 4, 4]: ``U^dagger dU/dx`` of use u (top-left 2x2 for one qubit).
        out: float64[B, L, U], written: ``d Tr(O rho) / dx_u = 2 Re Tr(O_in slope_u rho_in)``.
    """
    for b in prange(rho.shape[0]):
        v = rho[b]
        offsets, cols, vals, nnz, block, half = _scratch()
        for s in range(dims.shape[0] - 1, -1, -1):
            k = dims[s]
            d = 1 << k
            row_bits, col_bits, sorted_bits = _step_bits(n, k, qa[s], qb[s])
            back = np.conj(mats[b, s]).T.copy()
            _step(v, d, row_bits, col_bits, back, inverse_lam[s], sorted_bits, 2 * k, offsets, cols, vals, nnz,
                  block, half)
            for lane in range(obs.shape[1]):
                _step(obs[b, lane], d, row_bits, col_bits, back, lam[s], sorted_bits, 2 * k, offsets, cols, vals,
                      nnz, block, half)
                for use in range(use_start[s], use_start[s + 1]):
                    out[b, lane, use] = 2.0 * _trace_left(obs[b, lane], v, n, k, qa[s], qb[s], slopes[b, use]).real


__all__ = ["adjoint_sweep", "run_steps"]
