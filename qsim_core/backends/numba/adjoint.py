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
``S_j = G_m..G_{j+1}`` and ``D_j = dG_j/dx``. That equals ``sum_ab (S D P)[a, b] C[a, b]``
where ``C[a, b] = sum_rest conj(lambda[a, rest]) psi_before[b, rest]`` is the
2x2 cross matrix of qubit q: one pass over the state per run and per
lambda, whatever the number of parameters in the run. Two-qubit steps use the
4x4 cross matrix the same way.

Derivative matrices ``du1``/``du2`` are per *use* (one gate slot holding a
parameter reference); ``u1_use_start[g]:u1_use_start[g+1]`` are gate g's
uses. The chain rule to the parameter vector happens in Python
(:mod:`qsim_core.derivatives`).
"""

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


@njit(cache=True)
def _undo_lane(psi, lam, q, a00, a01, a10, a11, update_psi):
    """Apply ``A = [[a00, a01], [a10, a11]]`` to ``lam`` (and first to ``psi`` if ``update_psi``) on qubit q.

    Returns the cross matrix ``C[a, b] = sum conj(lam_before[a]) psi_after[b]``
    as 4 complex128 (row-major), accumulated on the way.
    """
    s = 1 << q
    c00 = c01 = c10 = c11 = 0j
    for i0 in range(0, psi.size, 2 * s):
        for j in range(i0, i0 + s):
            x = psi[j]
            y = psi[j + s]
            if update_psi:
                x, y = a00 * x + a01 * y, a10 * x + a11 * y
                psi[j] = x
                psi[j + s] = y
            u = lam[j]
            v = lam[j + s]
            cu = np.complex128(u).conjugate()
            cv = np.complex128(v).conjugate()
            c00 += cu * x
            c01 += cu * y
            c10 += cv * x
            c11 += cv * y
            lam[j] = a00 * u + a01 * v
            lam[j + s] = a10 * u + a11 * v
    return c00, c01, c10, c11


@njit(cache=True)
def undo_u1(psi, lam, q, m00, m01, m10, m11, cross):
    """Apply U^dagger (U = [[m00, m01], [m10, m11]]) on qubit q to psi and every lambda.

    When ``cross`` (complex128[L, 4]) has rows, lane l's cross matrix
    ``C[a, b] = sum conj(lambda_after[a]) psi_before[b]`` is written to it: the
    run's derivatives then cost no extra pass. The first lane's pass also
    updates psi.
    """
    a00, a01, a10, a11 = m00.conjugate(), m10.conjugate(), m01.conjugate(), m11.conjugate()
    lanes = lam.shape[0]
    if cross.shape[0] == 0 or lanes == 0:
        apply_u1(psi, q, a00, a01, a10, a11)
        for lane in range(lanes):
            apply_u1(lam[lane], q, a00, a01, a10, a11)
        return
    real = a00.imag == 0 and a01.imag == 0 and a10.imag == 0 and a11.imag == 0
    for lane in range(lanes):
        if real:  # a float specialisation: half the multiplications
            c = _undo_lane(psi, lam[lane], q, a00.real, a01.real, a10.real, a11.real, lane == 0)
        else:
            c = _undo_lane(psi, lam[lane], q, a00, a01, a10, a11, lane == 0)
        cross[lane, 0], cross[lane, 1], cross[lane, 2], cross[lane, 3] = c


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
def add_run_derivatives(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, cross, grad, use_offset):
    """``grad[use] += 2 Re sum_ab (S_j D_u P_j)[a, b] cross[a, b]`` for every use u of the run's gates.

    ``D_u`` is ``du1[u]``, or for a rotation use (``rotation1[u]``) ``G slope1[u]``
    with G the gate's bound matrix: ``d/da exp(-i a P/2) = exp(-i a P/2) (-i P/2)``.
    """
    first, last = run_start[run], run_start[run + 1]
    prefix = (1.0 + 0j, 0j, 0j, 1.0 + 0j)
    for k in range(first, last):
        g = run_gate[k]
        if use_start[g + 1] > use_start[g]:
            suffix = (1.0 + 0j, 0j, 0j, 1.0 + 0j)
            for k2 in range(k + 1, last):
                suffix = _mul(_gate(u1, run_gate[k2]), suffix)
            for u in range(use_start[g], use_start[g + 1]):
                slope = _mul(_gate(u1, g), _gate(slope1, u)) if rotation1[u] else _gate(du1, u)
                full = _mul(_mul(suffix, slope), prefix)
                value = full[0] * cross[0] + full[1] * cross[1] + full[2] * cross[2] + full[3] * cross[3]
                grad[use_offset + u] += 2.0 * value.real
        prefix = _mul(_gate(u1, g), prefix)


@njit(cache=True)
def backward_u1(psi, lam, q, u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, grad, cross):
    """Undo fused run ``run`` on qubit q, adding its uses' derivatives to ``grad[lane, use]``."""
    m00, m01, m10, m11 = fused_u1(u1, run_start, run_gate, run)
    if not run_has_uses(run_start, run_gate, run, use_start):
        undo_u1(psi, lam, q, m00, m01, m10, m11, cross[:0])
        return
    undo_u1(psi, lam, q, m00, m01, m10, m11, cross)
    for lane in range(lam.shape[0]):
        add_run_derivatives(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, cross[lane], grad[lane],
                            0)


@njit(cache=True)
def backward_u2(psi, lam, qa, qb, u_gate, u_dagger, du2, slope2, rotation2, g, use_start, grad, use_offset, cross):
    """Undo two-qubit gate g (``u_gate``, ``u_dagger`` its adjoint) for psi and every lambda, adding its derivatives.

    Rotation uses differentiate as ``u_gate @ slope2[u]`` (see :func:`add_run_derivatives`).
    """
    apply_u2(psi, qa, qb, u_dagger)
    if use_start[g + 1] > use_start[g]:
        for lane in range(lam.shape[0]):
            cross_u2(lam[lane], psi, qa, qb, cross)
            for u in range(use_start[g], use_start[g + 1]):
                value = 0j
                for a in range(4):
                    for b in range(4):
                        if rotation2[u]:
                            entry = 0j
                            for c in range(4):
                                entry += np.complex128(u_gate[a, c]) * slope2[u, c, b]
                        else:
                            entry = np.complex128(du2[u, a, b])
                        value += entry * cross[a, b]
                grad[lane, use_offset + u] += 2.0 * value.real
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
def _leave_one_out(partial, columns, first, last, mu):
    """``mu[q, a]`` for q in first..last-1 from ``partial`` over those qubits (the others contracted)."""
    for q in range(first, last):
        mu[q, 0] = 0
        mu[q, 1] = 0
        for i in range(partial.size):
            weight = partial[i]
            for p in range(first, last):
                if p != q:
                    weight *= columns[p, (i >> (p - first)) & 1]
            mu[q, (i >> (q - first)) & 1] += weight


@njit(cache=True)
def product_contractions(lam, columns, mu):
    """``mu[q, a] = sum_{i: bit q = a} conj(lam[i]) prod_{p != q} columns[p, bit p of i]``, every q.

    ``lam`` is contracted against the product state ``columns`` leaving one
    qubit open, for all qubits at once: two passes over ``lam`` (the low half of
    the qubits against the high half's product vector and vice versa), then
    the same on the two small halves.
    """
    n = columns.shape[0]
    low = n // 2
    low_size, high_size = 1 << low, 1 << (n - low)
    low_vector = np.empty(low_size, np.complex128)
    high_vector = np.empty(high_size, np.complex128)
    _product_vector(columns, 0, low, low_vector)
    _product_vector(columns, low, n, high_vector)
    low_partial = np.zeros(low_size, np.complex128)
    high_partial = np.zeros(high_size, np.complex128)
    for h in range(high_size):
        acc = 0j
        for i in range(low_size):
            value = np.complex128(lam[h * low_size + i]).conjugate()
            low_partial[i] += value * high_vector[h]
            acc += value * low_vector[i]
        high_partial[h] = acc
    _leave_one_out(low_partial, columns, 0, low, mu)
    _leave_one_out(high_partial, columns, low, n, mu)


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
    """Z-string expectations (as the forward pass computes them) and ``lam[l] = sum_k weights[l, k] Z_k psi``.

    ``diagonal`` (float64[L, 2**n]) and ``probs`` (float64[2**n]) are scratch.
    """
    for i in range(psi.size):
        a = psi[i]
        probs[i] = np.float64(a.real) * np.float64(a.real) + np.float64(a.imag) * np.float64(a.imag)
    z_expectations_from_probabilities(probs, xmask, zmask, values)
    for lane in range(lam.shape[0]):
        z_operator(diagonal[lane], zmask, weights[lane])
        for i in range(psi.size):
            lam[lane, i] = diagonal[lane, i] * psi[i]


@njit(cache=True)
def initial_layer_derivatives(lam, u1, du1, slope1, rotation1, num_qubits, init_u1, run_start, run_gate, use_start,
                              grad):
    """Derivatives of the initial product-state layer: each lambda contracted against it once for every qubit."""
    columns = np.zeros((num_qubits, 2), np.complex128)
    for q in range(num_qubits):
        if init_u1[q] >= 0:
            m00, _, m10, _ = fused_u1(u1, run_start, run_gate, init_u1[q])
            columns[q, 0], columns[q, 1] = m00, m10
        else:
            columns[q, 0] = 1.0
    mu = np.empty((num_qubits, 2), np.complex128)
    for lane in range(lam.shape[0]):
        product_contractions(lam[lane], columns, mu)
        for q in range(num_qubits):
            run = init_u1[q]
            if run >= 0 and run_has_uses(run_start, run_gate, run, use_start):
                add_run_derivatives(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start,
                                    (mu[q, 0], 0j, mu[q, 1], 0j), grad[lane], 0)


@njit(cache=True, parallel=True)
def adjoint_small(u1, u2, u2_dagger, du1, du2, slope1, rotation1, slope2, rotation2, num_qubits, init_u1, kind, q0,
                  q1, arg, run_start, run_gate, perm_start, inverse_table, forward_table, u1_use_start, u2_use_start,
                  xmask, zmask, ny, weights, values_out, grad_out, initial, state_grad_out):
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
        values_out: float64[B, K] zeroed; receives the expectations <O_k>.
        grad_out: float64[B, L, U1 + U2] zeroed; receives d(sum_k w_lk <O_k>)/d(use).
        initial: dtype[B, 2**n] initial states (program compiled with ``from_zero=False``),
            or an empty [0, 0] array to start from the product state.
        state_grad_out: dtype[B, L, 2**n] receives each lane's adjoint state at the
            start, ``U^dagger lambda``: d f / d Re psi_0 + i d f / d Im psi_0 is twice it;
            an empty [0, 0, 0] array when not wanted.
    """
    batch = u1.shape[0]
    size = 1 << num_qubits
    lanes = weights.shape[1]
    uses1 = du1.shape[1]
    z_only = True
    for k in range(xmask.size):
        z_only = z_only and xmask[k] == 0
    for b in prange(batch):
        psi = np.empty(size, u1.dtype)
        scratch = np.empty(size if perm_start.size > 1 else 0, u1.dtype)
        cross = np.empty((lanes, 4), np.complex128)
        cross2 = np.empty((4, 4), np.complex128)
        lam = np.zeros((lanes, size), u1.dtype)
        if initial.shape[0] > 0:
            psi[:] = initial[b]
        else:
            init_product(psi, u1[b], run_start, run_gate, init_u1, 0, num_qubits)
        apply_steps(psi, scratch, 0, kind.size, kind, q0, q1, arg, u1[b], u2[b], run_start, run_gate,
                    perm_start, forward_table)
        if z_only:
            z_values_and_lambdas(psi, xmask, zmask, weights[b], values_out[b], lam, np.empty((lanes, size)),
                                 np.empty(size))
        else:
            for k in range(xmask.size):
                values_out[b, k] = pauli_expectation(psi, 0, size, xmask[k], zmask[k], ny[k])
                for lane in range(lanes):
                    if weights[b, lane, k] != 0.0:
                        add_pauli(lam[lane], psi, xmask[k], zmask[k], ny[k], weights[b, lane, k])
        for s in range(kind.size - 1, -1, -1):
            op = kind[s]
            if op == U1:
                backward_u1(psi, lam, q0[s], u1[b], du1[b], slope1, rotation1, run_start, run_gate, arg[s],
                            u1_use_start, grad_out[b],
                            cross)
            elif op == PERM:
                table = inverse_table[perm_start[arg[s]]:perm_start[arg[s] + 1]]
                apply_permutation(psi, scratch, table)
                for lane in range(lanes):
                    apply_permutation(lam[lane], scratch, table)
            elif op == CNOT or op == SWAP:
                apply_swap_pairs(psi, q0[s], q1[s], op == CNOT)
                for lane in range(lanes):
                    apply_swap_pairs(lam[lane], q0[s], q1[s], op == CNOT)
            else:  # every two-qubit matrix kind reads its bound 4x4 through arg
                backward_u2(psi, lam, q0[s], q1[s], u2[b, arg[s]], u2_dagger[b, arg[s]], du2[b], slope2, rotation2,
                            arg[s], u2_use_start,
                            grad_out[b], uses1, cross2)
        if state_grad_out.shape[0] > 0:
            state_grad_out[b] = lam
        if initial.shape[0] == 0:
            initial_layer_derivatives(lam, u1[b], du1[b], slope1, rotation1, num_qubits, init_u1, run_start, run_gate,
                                      u1_use_start, grad_out[b])
