"""Adjoint differentiation kernels (numba), batched over parameter sets.

For a state ``|psi> = U_S ... U_1 |0>`` and observables ``O_k``, the
derivative of ``sum_k w_lk <psi|O_k|psi>`` with respect to a parameter ``x``
of a gate inside step ``U_s`` is ``2 Re <lambda_l| U_S..U_{s+1} dU_s U_{s-1}..U_1 |0>``
with ``|lambda_l> = sum_k w_lk O_k |psi>``. One forward pass and one backward
sweep, undoing each step on ``psi`` and on every ``lambda_l``, give all of
them (Jones & Gacon 2020; PennyLane Lightning's ``adjoint``).

The sweep runs over the *compiled* program (fused single-qubit runs,
permutation steps, product-state initialisation), not over the raw gate list.
A fused run ``U = G_m ... G_1`` on qubit q contributes, for its gate ``j``,
``<lambda|S_j D_j P_j|psi_before>`` with prefix ``P_j = G_{j-1}..G_1``, suffix
``S_j = G_m..G_{j+1}`` and ``D_j = dG_j/dx``. Since ``psi_before = U^dagger psi_after``
that equals ``sum_ab (S_j D_j P_j U^dagger)[a, b] C[a, b]`` where
``C[a, b] = sum_rest conj(lambda[a, rest]) psi_after[b, rest]`` is the 2x2 cross
matrix of qubit q of the states as the sweep meets them: one pass per run and
per lambda, whatever the number of parameters in the run, which reads both
states first and then undoes the run on lambda. The slope matrices
``S_j D_j P_j U^dagger`` depend only on the gates, so they are formed once per
run (:func:`run_slopes`). Two-qubit steps use the 4x4 cross matrix the same way.

What the pass skips:

* psi is undone only above the first step whose derivatives read it
  (:func:`first_state_step`): below it, and in that step itself, only lambda
  moves. The initial product layer needs no psi at all (it contracts lambda
  against the layer's factors, :func:`product_contractions`).
* A real run (RY, H, X, real fused products) acts on the real and imaginary
  parts alike, so its pass runs on the float views as flat halves; and when
  every slope matrix of the run is real too, only ``Re C`` is summed, since
  ``Re sum M C = sum M Re C`` for real M.
* The cross sums may be reassociated (``fastmath`` reassoc): partial sums
  that vectorise, results equal to rounding.

Derivative matrices ``du1``/``du2`` are per *use* (one gate slot holding a
parameter reference); ``u1_use_start[g]:u1_use_start[g+1]`` are gate g's
uses. The chain rule to the parameter vector happens in Python
(:mod:`qsim_core.derivatives`).
"""

import numba
import numpy as np
from numba import njit, prange

from ...compiler import CNOT, PERM, SWAP, U1
from .kernels import _insert_zero as insert_zero
from .kernels import (
    apply_permutation,
    apply_steps,
    apply_swap_pairs,
    apply_u1,
    apply_u2,
    fused_u1,
    init_product,
    parity,
    pauli_expectation,
    z_expectations_from_probabilities,
)
from .packing import filled_rows, shares

_I_POWERS = np.array([1.0 + 0j, 1j, -1.0 + 0j, -1j])


@njit(cache=True)
def add_pauli(out, psi, xmask, zmask, ny, weight):
    """``out += weight * P psi`` for the Pauli string ``P = i^ny X^xmask Z^zmask``."""
    factor = weight * _I_POWERS[ny & 3]
    for i in range(psi.size):
        j = i ^ xmask
        out[i] += factor * (1.0 - 2.0 * parity(j & zmask)) * np.complex128(psi[j])


@njit(cache=True, inline="always")
def _mul(a, b):
    """2x2 product of matrices held as 4-tuples (row-major)."""
    return (a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3])


@njit(cache=True, inline="always")
def _gate(u1, g):
    return (np.complex128(u1[g, 0, 0]), np.complex128(u1[g, 0, 1]),
            np.complex128(u1[g, 1, 0]), np.complex128(u1[g, 1, 1]))


# The cross sums may be reassociated: that is what lets LLVM keep several partial sums and vectorise them.
_REDUCE = {"reassoc", "contract"}


@njit(cache=True, fastmath=_REDUCE)
def _real_pass(x, u, a, b, c, d, update_psi, imag, cross):
    """A real 2x2 pass over float views shaped ``[blocks, 2, 2 * 2**q]`` (the two halves of each block).

    Writes ``sum conj(lam[a]) psi[b]`` of the incoming values to ``cross`` (8 floats: re/im of
    C00, C01, C10, C11; Im only when ``imag``), then applies the matrix to u (and x when ``update_psi``).
    """
    r00 = r01 = r10 = r11 = i00 = i01 = i10 = i11 = 0.0
    half = x.shape[2]
    for blk in range(x.shape[0]):
        for k in range(half):
            xk, yk = np.float64(x[blk, 0, k]), np.float64(x[blk, 1, k])
            uk, vk = np.float64(u[blk, 0, k]), np.float64(u[blk, 1, k])
            r00 += uk * xk
            r01 += uk * yk
            r10 += vk * xk
            r11 += vk * yk
        if imag:  # Im conj(u) x = ur xi - ui xr
            for k in range(0, half, 2):
                ur, ui = np.float64(u[blk, 0, k]), np.float64(u[blk, 0, k + 1])
                vr, vi = np.float64(u[blk, 1, k]), np.float64(u[blk, 1, k + 1])
                xr, xi = np.float64(x[blk, 0, k]), np.float64(x[blk, 0, k + 1])
                yr, yi = np.float64(x[blk, 1, k]), np.float64(x[blk, 1, k + 1])
                i00 += ur * xi - ui * xr
                i01 += ur * yi - ui * yr
                i10 += vr * xi - vi * xr
                i11 += vr * yi - vi * yr
        if update_psi:
            for k in range(half):
                xk, yk = x[blk, 0, k], x[blk, 1, k]
                x[blk, 0, k] = a * xk + b * yk
                x[blk, 1, k] = c * xk + d * yk
        for k in range(half):
            uk, vk = u[blk, 0, k], u[blk, 1, k]
            u[blk, 0, k] = a * uk + b * vk
            u[blk, 1, k] = c * uk + d * vk
    cross[0], cross[1], cross[2], cross[3] = r00, i00, r01, i01
    cross[4], cross[5], cross[6], cross[7] = r10, i10, r11, i11


@njit(cache=True)
def _undo_lane(psi, lam, q, a00, a01, a10, a11, update_psi, imag, cross):
    """Apply ``A = [[a00, a01], [a10, a11]]`` to ``lam`` (and to ``psi`` if ``update_psi``) on qubit q.

    First writes the cross matrix of the incoming states, ``C[a, b] = sum conj(lam[a]) psi[b]``,
    to ``cross`` (float64[8], re/im row-major; for a real A the imaginary parts only when ``imag``).
    """
    s = 1 << q
    if a00.imag == 0 and a01.imag == 0 and a10.imag == 0 and a11.imag == 0:
        # a real matrix acts on the float views' real and imaginary parts alike: halves of 2 s floats
        shape = (psi.size // (2 * s), 2, 2 * s)
        _real_pass(psi.view(psi.real.dtype).reshape(shape), lam.view(lam.real.dtype).reshape(shape), a00.real,
                   a01.real, a10.real, a11.real, update_psi, imag, cross)
        return
    c00 = c01 = c10 = c11 = 0j
    for i0 in range(0, psi.size, 2 * s):
        for j in range(i0, i0 + s):
            x = psi[j]
            y = psi[j + s]
            cu = np.complex128(lam[j]).conjugate()
            cv = np.complex128(lam[j + s]).conjugate()
            c00 += cu * x
            c01 += cu * y
            c10 += cv * x
            c11 += cv * y
            if update_psi:
                psi[j] = a00 * x + a01 * y
                psi[j + s] = a10 * x + a11 * y
            u = lam[j]
            v = lam[j + s]
            lam[j] = a00 * u + a01 * v
            lam[j + s] = a10 * u + a11 * v
    cross[0], cross[1], cross[2], cross[3] = c00.real, c00.imag, c01.real, c01.imag
    cross[4], cross[5], cross[6], cross[7] = c10.real, c10.imag, c11.real, c11.imag


@njit(cache=True)
def cross_u2(lam, psi, qa, qb, out):
    """4x4 cross matrix of qubits (qa, qb), index ``2 * bit(qa) + bit(qb)``, into complex128 ``out``."""
    lo, hi = min(qa, qb), max(qa, qb)
    sa, sb = 1 << qa, 1 << qb
    out[:, :] = 0
    for p in range(psi.size >> 2):
        i00 = insert_zero(insert_zero(p, lo), hi)
        idx = (i00, i00 | sb, i00 | sa, i00 | sa | sb)
        for a in range(4):
            la = np.complex128(lam[idx[a]]).conjugate()
            for b in range(4):
                out[a, b] += la * np.complex128(psi[idx[b]])


@njit(cache=True)
def run_has_uses(run_start, run_gate, run, use_start):
    """Whether any gate of fused run ``run`` holds a parameter reference."""
    for k in range(run_start[run], run_start[run + 1]):
        g = run_gate[k]
        if use_start[g + 1] > use_start[g]:
            return True
    return False


@njit(cache=True)
def first_state_step(kind, arg, run_start, run_gate, u1_use_start, u2_use_start):
    """The first step whose derivatives read psi (``kind.size`` if none): the sweep undoes psi only above it."""
    for s in range(kind.size):
        if kind[s] == U1:
            if run_has_uses(run_start, run_gate, arg[s], u1_use_start):
                return s
        elif kind[s] != PERM and kind[s] != CNOT and kind[s] != SWAP:
            if u2_use_start[arg[s] + 1] > u2_use_start[arg[s]]:
                return s
    return kind.size


@njit(cache=True)
def run_slopes(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, after, out):
    """``out[i] = S_j D_u P_j after`` (complex128[4], row-major) for the run's uses in order; whether any is complex.

    ``D_u`` is ``du1[u]``, or for a rotation use (``rotation1[u]``) ``G slope1[u]`` with G the gate's
    bound matrix: ``d/da exp(-i a P/2) = exp(-i a P/2) (-i P/2)``. With ``after`` = U^dagger of the whole
    run, ``2 Re sum(out[i] * C)`` is the use's derivative for the cross matrix C of the states *after*
    the run (``psi_before = U^dagger psi_after``), so psi need not be undone first.
    """
    first, last = run_start[run], run_start[run + 1]
    prefix = after
    imag = False
    i = 0
    for k in range(first, last):
        g = run_gate[k]
        if use_start[g + 1] > use_start[g]:
            suffix = (1.0 + 0j, 0j, 0j, 1.0 + 0j)
            for k2 in range(k + 1, last):
                suffix = _mul(_gate(u1, run_gate[k2]), suffix)
            for u in range(use_start[g], use_start[g + 1]):
                slope = _mul(_gate(u1, g), _gate(slope1, u)) if rotation1[u] else _gate(du1, u)
                full = _mul(_mul(suffix, slope), prefix)
                for e in range(4):
                    out[i, e] = full[e]
                    imag = imag or full[e].imag != 0
                i += 1
        prefix = _mul(_gate(u1, g), prefix)
    return imag


@njit(cache=True)
def add_slopes(run_start, run_gate, run, use_start, slopes, cross, grad):
    """``grad[u] += 2 Re sum(slopes[i] * cross)`` for the run's uses, ``slopes`` in :func:`run_slopes`' order."""
    i = 0
    for k in range(run_start[run], run_start[run + 1]):
        g = run_gate[k]
        for u in range(use_start[g], use_start[g + 1]):
            value = 0.0
            for e in range(4):
                value += slopes[i, e].real * cross[2 * e] - slopes[i, e].imag * cross[2 * e + 1]
            grad[u] += 2.0 * value
            i += 1


@njit(cache=True)
def backward_u1(psi, lam, q, u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, grad, update_psi,
                cross, slopes):
    """Undo fused run ``run`` on qubit q for every lambda (and psi when ``update_psi``), adding its uses'
    derivatives, from each lane's cross matrix with the states after the run, to ``grad[lane, use]``.

    The lanes run last to first so that lane 0, the last, is the one that also moves psi.
    """
    m00, m01, m10, m11 = fused_u1(u1, run_start, run_gate, run)
    a00, a01, a10, a11 = m00.conjugate(), m10.conjugate(), m01.conjugate(), m11.conjugate()
    lanes = lam.shape[0]
    if lanes == 0 or not run_has_uses(run_start, run_gate, run, use_start):
        if update_psi:
            apply_u1(psi, q, a00, a01, a10, a11)
        for lane in range(lanes):
            apply_u1(lam[lane], q, a00, a01, a10, a11)
        return
    after = (np.complex128(a00), np.complex128(a01), np.complex128(a10), np.complex128(a11))
    imag = run_slopes(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, after, slopes)
    for lane in range(lanes - 1, -1, -1):
        _undo_lane(psi, lam[lane], q, a00, a01, a10, a11, update_psi and lane == 0, imag, cross)
        add_slopes(run_start, run_gate, run, use_start, slopes, cross, grad[lane])


@njit(cache=True)
def backward_u2(psi, lam, qa, qb, u_gate, u_dagger, du2, slope2, rotation2, g, use_start, grad, use_offset,
                update_psi, cross):
    """Undo two-qubit gate g (``u_gate``, ``u_dagger`` its adjoint) for every lambda (and psi when
    ``update_psi``), adding its derivatives from each lane's cross matrix with the states after the gate.

    A use's derivative matrix D is ``du2[u]``, or ``u_gate @ slope2[u]`` for a rotation use (see
    :func:`run_slopes`); against the states after the gate it is ``D u_dagger``.
    """
    if use_start[g + 1] > use_start[g]:
        for lane in range(lam.shape[0]):
            cross_u2(lam[lane], psi, qa, qb, cross)
            for u in range(use_start[g], use_start[g + 1]):
                value = 0.0
                for a in range(4):
                    for b in range(4):
                        entry = 0j  # (D u_dagger)[a, b]
                        for c in range(4):
                            if rotation2[u]:
                                d = 0j
                                for e in range(4):
                                    d += np.complex128(u_gate[a, e]) * slope2[u, e, c]
                            else:
                                d = np.complex128(du2[u, a, c])
                            entry += d * np.complex128(u_dagger[c, b])
                        value += (entry * cross[a, b]).real
                grad[lane, use_offset + u] += 2.0 * value
    if update_psi:
        apply_u2(psi, qa, qb, u_dagger)
    for lane in range(lam.shape[0]):
        apply_u2(lam[lane], qa, qb, u_dagger)


@njit(cache=True)
def _product_vector(columns, first, last, out):
    """``out[i] = prod_{p in first..last-1} columns[p, bit (p - first) of i]``."""
    out[0] = 1.0
    for p in range(first, last):
        size = 1 << (p - first)
        for i in range(size):
            out[i + size] = out[i] * columns[p, 1]
            out[i] = out[i] * columns[p, 0]


@njit(cache=True)
def _leave_one_out(partial, columns, first, last, mu, fold):
    """``mu[q, a]`` for q in first..last-1 from ``partial`` over those qubits (the others contracted).

    For each q every other qubit is folded away against its column, the ones above q from the top
    and then the ones below from the bottom: about ``partial.size`` products per qubit. ``fold`` is
    scratch of at least ``partial.size``.
    """
    for t in range(last - first):
        src = partial
        size = partial.size
        for p in range(last - 1, first + t, -1):  # the top qubit: fold[i] = src[i] c0 + src[i + half] c1
            size >>= 1
            for i in range(size):
                fold[i] = src[i] * columns[p, 0] + src[i + size] * columns[p, 1]
            src = fold
        for p in range(first, first + t):  # the bottom qubit: fold[i] = src[2 i] c0 + src[2 i + 1] c1
            size >>= 1
            for i in range(size):
                fold[i] = src[2 * i] * columns[p, 0] + src[2 * i + 1] * columns[p, 1]
            src = fold
        mu[first + t, 0], mu[first + t, 1] = src[0], src[1]


@njit(cache=True)
def product_contractions(lam, columns, mu, work):
    """``mu[q, a] = sum_{i: bit q = a} conj(lam[i]) prod_{p != q} columns[p, bit p of i]``, every q.

    ``lam`` is contracted against the product state ``columns`` leaving one
    qubit open, for all qubits at once: two passes over ``lam`` (the low half of
    the qubits against the high half's product vector and vice versa), then
    the same on the two small halves. ``work`` is scratch, complex128[5, >= 2**(n - n // 2)].
    """
    n = columns.shape[0]
    low = n // 2
    low_size, high_size = 1 << low, 1 << (n - low)
    low_vector, high_vector = work[0, :low_size], work[1, :high_size]
    _product_vector(columns, 0, low, low_vector)
    _product_vector(columns, low, n, high_vector)
    low_partial, high_partial = work[2, :low_size], work[3, :high_size]
    low_partial[:] = 0.0
    for h in range(high_size):
        acc = 0j
        for i in range(low_size):
            value = np.complex128(lam[h * low_size + i]).conjugate()
            low_partial[i] += value * high_vector[h]
            acc += value * low_vector[i]
        high_partial[h] = acc
    _leave_one_out(low_partial, columns, 0, low, mu, work[4])
    _leave_one_out(high_partial, columns, low, n, mu, work[4])


@njit(cache=True)
def z_operator(row, zmask, weights):
    """``row[i] = sum_k weights[k] (-1)^popcount(i & zmask[k])``: the diagonal of ``sum_k w_k Z_k``.

    Single-qubit strings (and the identity) are linear in the bits of i, so
    together they are built by doubling in one pass; each multi-qubit string
    adds a pass.
    """
    row[0] = 0.0
    for k in range(zmask.size):
        if zmask[k] & (zmask[k] - 1) == 0:
            row[0] += weights[k]
    size = 1
    while size < row.size:
        weight = 0.0
        for k in range(zmask.size):
            if zmask[k] == size:
                weight += weights[k]
        for i in range(size):
            row[i + size] = row[i] - 2.0 * weight
        size <<= 1
    for k in range(zmask.size):
        if zmask[k] & (zmask[k] - 1) != 0 and weights[k] != 0.0:
            for i in range(row.size):
                row[i] += weights[k] * (1.0 - 2.0 * parity(i & zmask[k]))


@njit(cache=True)
def z_values_and_lambdas(psi, xmask, zmask, weights, values, lam, diagonal, probs):
    """Z-string expectations (as the forward pass computes them; none into an empty ``values``) and
    ``lam[l] = sum_k weights[l, k] Z_k psi``.

    ``diagonal`` (float64[L, 2**n]) and ``probs`` (float64[2**n]) are scratch.
    """
    if values.size:
        for i in range(psi.size):
            a = psi[i]
            probs[i] = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
        z_expectations_from_probabilities(probs, xmask, zmask, values)
    for lane in range(lam.shape[0]):
        z_operator(diagonal[lane], zmask, weights[lane])
        for i in range(psi.size):
            lam[lane, i] = diagonal[lane, i] * psi[i]


@njit(cache=True)
def initial_run_derivatives(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, mu0, mu1, grad,
                            states):
    """``grad[u] += 2 Re mu^T S_j D_u P_j |0>`` for the uses of an initial run, which acts on |0>.

    ``mu`` is lambda contracted against every other qubit's factor. Only vectors are needed: the
    states ``P_j |0>`` forward (into ``states``, complex128[>= run length, 2]), then the row
    ``mu^T S_j`` backward.
    """
    first, last = run_start[run], run_start[run + 1]
    x, y = 1.0 + 0j, 0j
    for k in range(first, last):
        states[k - first, 0], states[k - first, 1] = x, y
        g00, g01, g10, g11 = _gate(u1, run_gate[k])
        x, y = g00 * x + g01 * y, g10 * x + g11 * y
    r0, r1 = np.complex128(mu0), np.complex128(mu1)
    for k in range(last - 1, first - 1, -1):
        g = run_gate[k]
        g00, g01, g10, g11 = _gate(u1, g)
        x, y = states[k - first, 0], states[k - first, 1]
        for u in range(use_start[g], use_start[g + 1]):
            if rotation1[u]:
                s00, s01, s10, s11 = _gate(slope1, u)
                tx, ty = s00 * x + s01 * y, s10 * x + s11 * y
                dx, dy = g00 * tx + g01 * ty, g10 * tx + g11 * ty
            else:
                d00, d01, d10, d11 = _gate(du1, u)
                dx, dy = d00 * x + d01 * y, d10 * x + d11 * y
            grad[u] += 2.0 * (r0 * dx + r1 * dy).real
        r0, r1 = r0 * g00 + r1 * g10, r0 * g01 + r1 * g11


@njit(cache=True)
def initial_layer_derivatives(lam, u1, du1, slope1, rotation1, num_qubits, init_u1, run_start, run_gate, use_start,
                              grad, columns, mu, states, work):
    """Derivatives of the initial product-state layer: each lambda contracted against it once for every qubit.

    Scratch: ``columns``, ``mu`` complex128[n, 2], ``states`` complex128[>= run_gate.size, 2] and ``work``
    (see :func:`product_contractions`).
    """
    for q in range(num_qubits):
        if init_u1[q] >= 0:
            m00, _, m10, _ = fused_u1(u1, run_start, run_gate, init_u1[q])
            columns[q, 0], columns[q, 1] = m00, m10
        else:
            columns[q, 0], columns[q, 1] = 1.0, 0.0
    for lane in range(lam.shape[0]):
        product_contractions(lam[lane], columns, mu, work)
        for q in range(num_qubits):
            run = init_u1[q]
            if run >= 0 and run_has_uses(run_start, run_gate, run, use_start):
                initial_run_derivatives(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, mu[q, 0],
                                        mu[q, 1], grad[lane], states)


@njit(cache=True, parallel=True, nogil=True)
def adjoint_small(u1, u2, u2_dagger, du1, du2, slope1, rotation1, slope2, rotation2, num_qubits, init_u1, kind, q0,
                  q1, arg, run_start, run_gate, perm_start, inverse_table, forward_table, u1_use_start, u2_use_start,
                  xmask, zmask, ny, weights, values_out, grad_out, initial, state_grad_out, threads):
    """Expectations and adjoint derivatives for a batch of a single-block program.

    Args:
        u1, u2: bound gate matrices ``[B, G1, 2, 2]``, ``[B, G2, 4, 4]`` (see Program.bind);
            ``u2_dagger`` their conjugate transposes.
        du1, du2: derivative matrices per use, ``[B, U1, 2, 2]``, ``[B, U2, 4, 4]``; not read
            for rotation uses, whose derivative the kernel forms from the bound gate.
        slope1, slope2: complex128 ``[U1, 2, 2]``, ``[U2, 4, 4]``: ``-i P / 2`` of rotation uses.
        rotation1, rotation2: uint8 ``[U1]``, ``[U2]``: 1 for the uses that are rotations.
        inverse_table, forward_table: permutation tables (``perm_start`` slices), the
            inverse ones undo the forward ones.
        weights: float64[B, L, K]; lambda_l = sum_k weights[b, l, k] O_k psi.
        values_out: float64[B, K]; receives the expectations <O_k>; an empty [0, K] array when not
            wanted (then they are not computed).
        grad_out: float64[B, L, U1 + U2]; receives d(sum_k w_lk <O_k>)/d(use).
        initial: dtype[B, 2**n] initial states (program compiled with ``from_zero=False``),
            or an empty [0, 0] array to start from the product state.
        state_grad_out: dtype[B, L, 2**n] receives each lane's adjoint state at the
            start, ``U^dagger lambda``: d f / d Re psi_0 + i d f / d Im psi_0 is twice it;
            an empty [0, 0, 0] array when not wanted.
        threads: numba's thread count (each thread takes a block of rows and its own scratch).
    """
    batch = u1.shape[0]
    size = 1 << num_qubits
    lanes = weights.shape[1]
    uses1 = du1.shape[1]
    with_values = values_out.shape[0] > 0
    z_only = True
    for k in range(xmask.size):
        z_only = z_only and xmask[k] == 0
    # psi is undone only above the first step whose derivatives read it (the product layer's do not)
    first_state = first_state_step(kind, arg, run_start, run_gate, u1_use_start, u2_use_start)
    # scratch allocated once per thread, not per row: each thread runs a contiguous block of rows
    block = -(-batch // threads)
    for t in prange(threads):
        psi = np.empty(size, u1.dtype)
        scratch = np.empty(size if perm_start.size > 1 else 0, u1.dtype)
        cross = np.empty(8)
        cross2 = np.empty((4, 4), np.complex128)
        slopes = np.empty((uses1, 4), np.complex128)
        lam = np.empty((lanes, size), u1.dtype)
        diagonal = np.empty((lanes, size))
        probs = np.empty(size)
        columns = np.empty((num_qubits, 2), np.complex128)
        mu = np.empty((num_qubits, 2), np.complex128)
        states = np.empty((run_gate.size, 2), np.complex128)
        work = np.empty((5, 1 << (num_qubits - num_qubits // 2)), np.complex128)
        no_values = np.empty(0)
        for b in range(t * block, min(batch, (t + 1) * block)):
            lam[:] = 0.0
            grad_out[b] = 0.0  # the sweep adds into it
            if initial.shape[0] > 0:
                psi[:] = initial[b]
            else:
                init_product(psi, u1[b], run_start, run_gate, init_u1, 0, num_qubits)
            apply_steps(psi, scratch, 0, kind.size, kind, q0, q1, arg, u1[b], u2[b], run_start, run_gate,
                        perm_start, forward_table)
            if z_only:
                z_values_and_lambdas(psi, xmask, zmask, weights[b], values_out[b] if with_values else no_values,
                                     lam, diagonal, probs)
            else:
                for k in range(xmask.size):
                    if with_values:
                        values_out[b, k] = pauli_expectation(psi, 0, size, xmask[k], zmask[k], ny[k])
                    for lane in range(lanes):
                        if weights[b, lane, k] != 0.0:
                            add_pauli(lam[lane], psi, xmask[k], zmask[k], ny[k], weights[b, lane, k])
            for s in range(kind.size - 1, -1, -1):
                op = kind[s]
                if op == U1:
                    backward_u1(psi, lam, q0[s], u1[b], du1[b], slope1, rotation1, run_start, run_gate, arg[s],
                                u1_use_start, grad_out[b], s > first_state, cross, slopes)
                elif op == PERM:
                    table = inverse_table[perm_start[arg[s]]:perm_start[arg[s] + 1]]
                    if s > first_state:
                        apply_permutation(psi, scratch, table)
                    for lane in range(lanes):
                        apply_permutation(lam[lane], scratch, table)
                elif op == CNOT or op == SWAP:
                    if s > first_state:
                        apply_swap_pairs(psi, q0[s], q1[s], op == CNOT)
                    for lane in range(lanes):
                        apply_swap_pairs(lam[lane], q0[s], q1[s], op == CNOT)
                else:  # every two-qubit matrix kind reads its bound 4x4 through arg
                    backward_u2(psi, lam, q0[s], q1[s], u2[b, arg[s]], u2_dagger[b, arg[s]], du2[b], slope2, rotation2,
                                arg[s], u2_use_start, grad_out[b], uses1, s > first_state, cross2)
            if state_grad_out.shape[0] > 0:
                state_grad_out[b] = lam
            if initial.shape[0] == 0:
                initial_layer_derivatives(lam, u1[b], du1[b], slope1, rotation1, num_qubits, init_u1, run_start,
                                          run_gate, u1_use_start, grad_out[b], columns, mu, states, work)


def pack_adjoint(slope1, rotation1, slope2, rotation2, num_qubits, init_u1, kind, q0, q1, arg, run_start, run_gate,
                 perm_start, inverse_table, forward_table, u1_use_start, u2_use_start):
    """:func:`adjoint_small`'s plan arguments, from ``slope1`` to ``u2_use_start``, for :func:`adjoint_packed`
    (the Cython kernels check and convert the arrays here once; numba's calls take the arrays themselves)."""
    return (slope1, rotation1, slope2, rotation2, num_qubits, init_u1, kind, q0, q1, arg, run_start, run_gate,
            perm_start, inverse_table, forward_table, u1_use_start, u2_use_start)


def adjoint_packed(program, gates, params, du1, du2, observables, weights, values_out, grad_out, initial,
                   state_grad_out, release_gil=True):
    """:func:`adjoint_small` on a packed plan (:func:`pack_adjoint`), the program's gate-matrix arrays packed by the
    kernels' ``pack_small`` (the rotations of ``params``, float64[B, P], are filled into their first B rows) and
    packed observables (the kernels' ``pack_observables``). The other arguments are :func:`adjoint_small`'s, but
    as for the Cython ``adjoint_packed``: gate matrices packed with ``refilled=False`` take more sets than their
    rows (a share at a time here), and ``du1``/``du2`` may have no rows when every use is a rotation.
    ``release_gil`` is not read (the compiled kernel, ``nogil``, always releases it)."""
    parts = shares(gates, len(params))
    if parts:
        for rows in parts:
            adjoint_packed(program, gates, params[rows], du1[rows], du2[rows], observables, weights[rows],
                           values_out[rows], grad_out[rows], initial[rows], state_grad_out[rows])
        return
    if len(du1) == 0 and len(du2) == 0:  # never read (rotations only), but the kernel indexes them by set
        du1 = np.empty((len(params), *du1.shape[1:]), du1.dtype)
        du2 = np.empty((len(params), *du2.shape[1:]), du2.dtype)
    u1, u2 = filled_rows(gates, params)
    u2_dagger = np.ascontiguousarray(np.conj(u2.swapaxes(-1, -2))) if u2.shape[1] else u2
    # numba's thread count is passed in: asked inside the kernel, it would keep the kernel from numba's cache
    adjoint_small(u1, u2, u2_dagger, du1, du2, *program, *observables, weights, values_out, grad_out, initial,
                  state_grad_out, numba.get_num_threads())
