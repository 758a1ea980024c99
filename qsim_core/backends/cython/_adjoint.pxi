# Adjoint differentiation: the C translation of qsim_core/backends/numba/adjoint.py.
#
# Included at the end of _kernels.pyx (textually, so it uses that module's
# cdef gate kernels without a .pxd): one file per job, one extension. Read
# numba/adjoint.py for the algorithm; the conventions here are the kernel
# module's: complex arrays are interleaved (re, im) real arrays, matrices are
# row-major, accumulations are in double whatever the state's precision.


cdef inline void _load2(const real* m, double* out) noexcept nogil:
    """A 2x2 complex matrix (8 reals) as 8 doubles."""
    cdef int k
    for k in range(8):
        out[k] = m[k]


cdef inline void _mul2(const double* a, const double* b, double* out) noexcept nogil:
    """``out = a @ b`` for 2x2 complex matrices as 8 doubles; ``out`` must not alias the inputs."""
    cdef int row, col
    for row in range(2):
        for col in range(2):
            out[4 * row + 2 * col] = (a[4 * row] * b[2 * col] - a[4 * row + 1] * b[2 * col + 1]
                                      + a[4 * row + 2] * b[4 + 2 * col] - a[4 * row + 3] * b[5 + 2 * col])
            out[4 * row + 2 * col + 1] = (a[4 * row] * b[2 * col + 1] + a[4 * row + 1] * b[2 * col]
                                          + a[4 * row + 2] * b[5 + 2 * col] + a[4 * row + 3] * b[4 + 2 * col])


cdef inline void _identity2(double* m) noexcept nogil:
    m[0] = 1
    m[1] = 0
    m[2] = 0
    m[3] = 0
    m[4] = 0
    m[5] = 0
    m[6] = 1
    m[7] = 0


cdef inline void _undo_loop(real* psi, real* lam, int64_t n, int64_t q, const real* a, double* cross,
                            bint update_psi, bint real_matrix) noexcept nogil:
    """The body of :func:`_undo_lane`; inlined with constant flags, so each variant is its own plain loop."""
    cdef int64_t s = <int64_t>1 << q
    cdef int64_t i0 = 0
    cdef int64_t j, f, g
    cdef real xr, xi, yr, yi, ur, ui, vr, vi, tr, ti
    cdef double c0r = 0, c0i = 0, c1r = 0, c1i = 0, c2r = 0, c2i = 0, c3r = 0, c3i = 0
    while i0 < n:
        for j in range(i0, i0 + s):
            f = 2 * j
            g = 2 * (j + s)
            xr = psi[f]
            xi = psi[f + 1]
            yr = psi[g]
            yi = psi[g + 1]
            if update_psi:
                if real_matrix:
                    tr = a[0] * xr + a[2] * yr
                    ti = a[0] * xi + a[2] * yi
                    yr = a[4] * xr + a[6] * yr
                    yi = a[4] * xi + a[6] * yi
                else:
                    tr = (a[0] * xr - a[1] * xi) + (a[2] * yr - a[3] * yi)
                    ti = (a[0] * xi + a[1] * xr) + (a[2] * yi + a[3] * yr)
                    vr = (a[4] * xr - a[5] * xi) + (a[6] * yr - a[7] * yi)
                    yi = (a[4] * xi + a[5] * xr) + (a[6] * yi + a[7] * yr)
                    yr = vr
                xr = tr
                xi = ti
                psi[f] = xr
                psi[f + 1] = xi
                psi[g] = yr
                psi[g + 1] = yi
            ur = lam[f]
            ui = lam[f + 1]
            vr = lam[g]
            vi = lam[g + 1]
            c0r += <double>ur * xr + <double>ui * xi
            c0i += <double>ur * xi - <double>ui * xr
            c1r += <double>ur * yr + <double>ui * yi
            c1i += <double>ur * yi - <double>ui * yr
            c2r += <double>vr * xr + <double>vi * xi
            c2i += <double>vr * xi - <double>vi * xr
            c3r += <double>vr * yr + <double>vi * yi
            c3i += <double>vr * yi - <double>vi * yr
            if real_matrix:
                lam[f] = a[0] * ur + a[2] * vr
                lam[f + 1] = a[0] * ui + a[2] * vi
                lam[g] = a[4] * ur + a[6] * vr
                lam[g + 1] = a[4] * ui + a[6] * vi
            else:
                lam[f] = (a[0] * ur - a[1] * ui) + (a[2] * vr - a[3] * vi)
                lam[f + 1] = (a[0] * ui + a[1] * ur) + (a[2] * vi + a[3] * vr)
                lam[g] = (a[4] * ur - a[5] * ui) + (a[6] * vr - a[7] * vi)
                lam[g + 1] = (a[4] * ui + a[5] * ur) + (a[6] * vi + a[7] * vr)
        i0 += 2 * s
    cross[0] = c0r
    cross[1] = c0i
    cross[2] = c1r
    cross[3] = c1i
    cross[4] = c2r
    cross[5] = c2i
    cross[6] = c3r
    cross[7] = c3i


cdef void _undo_lane(real* psi, real* lam, int64_t n, int64_t q, const real* a, bint update_psi,
                     double* cross) noexcept nogil:
    """Apply ``a`` (2x2, U^dagger) on qubit q to ``lam`` (and first to ``psi`` when ``update_psi``).

    Writes the cross matrix ``C[a, b] = sum conj(lam_before[a]) psi_after[b]``
    to ``cross[8]`` (row-major complex as doubles).
    """
    cdef bint real_matrix = a[1] == 0 and a[3] == 0 and a[5] == 0 and a[7] == 0
    if update_psi and real_matrix:
        _undo_loop(psi, lam, n, q, a, cross, True, True)
    elif update_psi:
        _undo_loop(psi, lam, n, q, a, cross, True, False)
    elif real_matrix:
        _undo_loop(psi, lam, n, q, a, cross, False, True)
    else:
        _undo_loop(psi, lam, n, q, a, cross, False, False)


cdef inline bint _run_has_uses(const int64_t* run_start, const int32_t* run_gate, int64_t run,
                               const int64_t* use_start) noexcept nogil:
    cdef int64_t k, g
    for k in range(run_start[run], run_start[run + 1]):
        g = run_gate[k]
        if use_start[g + 1] > use_start[g]:
            return True
    return False


cdef void _add_run_derivatives(const real* u1, const real* du1, const double* slope1, const unsigned char* rotation1,
                               const int64_t* run_start, const int32_t* run_gate, int64_t run,
                               const int64_t* use_start, const double* cross, double* grad) noexcept nogil:
    """``grad[u] += 2 Re sum_ab (S_j D_u P_j)[a, b] cross[a, b]`` for every use u of the run's gates.

    ``D_u`` is ``du1[u]``, or for a rotation use ``G slope1[u]`` with G the gate's bound matrix.
    """
    cdef double prefix[8]
    cdef double suffix[8]
    cdef double gate[8]
    cdef double tmp[8]
    cdef double full[8]
    cdef double slope[8]
    cdef int64_t k, k2, g, u
    cdef int e
    cdef double value
    _identity2(prefix)
    for k in range(run_start[run], run_start[run + 1]):
        g = run_gate[k]
        if use_start[g + 1] > use_start[g]:
            _identity2(suffix)
            for k2 in range(k + 1, run_start[run + 1]):
                _load2(u1 + 8 * run_gate[k2], gate)
                _mul2(gate, suffix, tmp)
                memcpy(suffix, tmp, 8 * sizeof(double))
            for u in range(use_start[g], use_start[g + 1]):
                if rotation1[u]:
                    _load2(u1 + 8 * g, gate)
                    _mul2(gate, slope1 + 8 * u, slope)
                else:
                    _load2(du1 + 8 * u, slope)
                _mul2(suffix, slope, tmp)
                _mul2(tmp, prefix, full)
                value = 0
                for e in range(4):
                    value += full[2 * e] * cross[2 * e] - full[2 * e + 1] * cross[2 * e + 1]
                grad[u] += 2 * value
        _load2(u1 + 8 * g, gate)
        _mul2(gate, prefix, tmp)
        memcpy(prefix, tmp, 8 * sizeof(double))


cdef void _backward_u1(real* psi, real* lam, int64_t lanes, int64_t n, int64_t q, const real* u1, const real* du1,
                       const double* slope1, const unsigned char* rotation1, const int64_t* run_start, const int32_t* run_gate, int64_t run, const int64_t* use_start,
                       double* grad, int64_t grad_stride, double* cross) noexcept nogil:
    """Undo fused run ``run`` on qubit q for psi and every lambda; its uses' derivatives go to grad[lane, u]."""
    cdef real m[8]
    cdef real a[8]
    cdef int64_t lane
    fused_u1(u1, run_start, run_gate, run, m)
    # a = m^dagger
    a[0] = m[0]
    a[1] = -m[1]
    a[2] = m[4]
    a[3] = -m[5]
    a[4] = m[2]
    a[5] = -m[3]
    a[6] = m[6]
    a[7] = -m[7]
    if lanes == 0 or not _run_has_uses(run_start, run_gate, run, use_start):
        apply_u1(psi, n, q, a)
        for lane in range(lanes):
            apply_u1(lam + 2 * n * lane, n, q, a)
        return
    for lane in range(lanes):
        _undo_lane(psi, lam + 2 * n * lane, n, q, a, lane == 0, cross)
        _add_run_derivatives(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, cross,
                             grad + grad_stride * lane)


cdef void _cross_u2(const real* lam, const real* psi, int64_t n, int64_t qa, int64_t qb, double* out) noexcept nogil:
    """4x4 cross matrix of qubits (qa, qb) as 32 doubles: out[a, b] = sum conj(lam[a]) psi[b]."""
    cdef int64_t lo = qa if qa < qb else qb
    cdef int64_t hi = qb if qa < qb else qa
    cdef int64_t sa = <int64_t>1 << qa
    cdef int64_t sb = <int64_t>1 << qb
    cdef int64_t p, r, c
    cdef int64_t idx[4]
    cdef double lr, li, pr, pi
    for r in range(32):
        out[r] = 0
    for p in range(n >> 2):
        idx[0] = 2 * _insert_zero(_insert_zero(p, lo), hi)
        idx[1] = idx[0] + 2 * sb
        idx[2] = idx[0] + 2 * sa
        idx[3] = idx[0] + 2 * (sa + sb)
        for r in range(4):
            lr = lam[idx[r]]
            li = lam[idx[r] + 1]
            for c in range(4):
                pr = psi[idx[c]]
                pi = psi[idx[c] + 1]
                out[8 * r + 2 * c] += lr * pr + li * pi
                out[8 * r + 2 * c + 1] += lr * pi - li * pr


cdef void _backward_u2(real* psi, real* lam, int64_t lanes, int64_t n, int64_t qa, int64_t qb, const real* u_gate,
                       const real* u_dagger, const real* du2, const double* slope2, const unsigned char* rotation2,
                       int64_t g, const int64_t* use_start, double* grad, int64_t grad_stride,
                       double* cross) noexcept nogil:
    """Undo two-qubit gate g for psi and every lambda; its uses' derivatives go to grad[lane, u].

    Rotation uses differentiate as ``u_gate @ slope2[u]``.
    """
    cdef int64_t lane, u
    cdef int e, row, col, c
    cdef double value, re, im
    apply_u2(psi, n, qa, qb, u_dagger)
    for lane in range(lanes):
        if use_start[g + 1] > use_start[g]:
            _cross_u2(lam + 2 * n * lane, psi, n, qa, qb, cross)
            for u in range(use_start[g], use_start[g + 1]):
                value = 0
                for e in range(16):
                    if rotation2[u]:
                        row = e // 4
                        col = e % 4
                        re = 0
                        im = 0
                        for c in range(4):
                            re += (<double>u_gate[8 * row + 2 * c] * slope2[32 * u + 8 * c + 2 * col]
                                   - <double>u_gate[8 * row + 2 * c + 1] * slope2[32 * u + 8 * c + 2 * col + 1])
                            im += (<double>u_gate[8 * row + 2 * c] * slope2[32 * u + 8 * c + 2 * col + 1]
                                   + <double>u_gate[8 * row + 2 * c + 1] * slope2[32 * u + 8 * c + 2 * col])
                    else:
                        re = du2[32 * u + 2 * e]
                        im = du2[32 * u + 2 * e + 1]
                    value += re * cross[2 * e] - im * cross[2 * e + 1]
                grad[grad_stride * lane + u] += 2 * value
        apply_u2(lam + 2 * n * lane, n, qa, qb, u_dagger)


cdef void _product_vector(const double* columns, int64_t first, int64_t last, double* out) noexcept nogil:
    """``out[i] = prod_{p in first..last-1} columns[p, bit (p - first) of i]`` (complex as 2 doubles)."""
    cdef int64_t p, i, size
    cdef double xr, xi
    out[0] = 1
    out[1] = 0
    for p in range(first, last):
        size = <int64_t>1 << (p - first)
        for i in range(size):
            xr = out[2 * i]
            xi = out[2 * i + 1]
            out[2 * (i + size)] = xr * columns[4 * p + 2] - xi * columns[4 * p + 3]
            out[2 * (i + size) + 1] = xr * columns[4 * p + 3] + xi * columns[4 * p + 2]
            out[2 * i] = xr * columns[4 * p] - xi * columns[4 * p + 1]
            out[2 * i + 1] = xr * columns[4 * p + 1] + xi * columns[4 * p]


cdef void _leave_one_out(const double* partial, int64_t size, const double* columns, int64_t first, int64_t last,
                         double* mu) noexcept nogil:
    """``mu[q, a]`` (complex) for q in first..last-1 from ``partial`` over those qubits."""
    cdef int64_t q, i, p, bit
    cdef double wr, wi, tr
    for q in range(first, last):
        mu[4 * q] = 0
        mu[4 * q + 1] = 0
        mu[4 * q + 2] = 0
        mu[4 * q + 3] = 0
        for i in range(size):
            wr = partial[2 * i]
            wi = partial[2 * i + 1]
            for p in range(first, last):
                if p != q:
                    bit = (i >> (p - first)) & 1
                    tr = wr * columns[4 * p + 2 * bit] - wi * columns[4 * p + 2 * bit + 1]
                    wi = wr * columns[4 * p + 2 * bit + 1] + wi * columns[4 * p + 2 * bit]
                    wr = tr
            bit = (i >> (q - first)) & 1
            mu[4 * q + 2 * bit] += wr
            mu[4 * q + 2 * bit + 1] += wi


cdef void _product_contractions(const real* lam, int64_t num_qubits, const double* columns, double* work,
                                double* mu) noexcept nogil:
    """``mu[q, a] = sum_{i: bit q = a} conj(lam[i]) prod_{p != q} columns[p, bit p of i]`` for every q.

    ``work`` holds 4 * 2**ceil(n/2) complex (as doubles). Two passes over ``lam``, as in numba/adjoint.py.
    """
    cdef int64_t low = num_qubits // 2
    cdef int64_t low_size = <int64_t>1 << low
    cdef int64_t high_size = <int64_t>1 << (num_qubits - low)
    cdef double* low_vector = work
    cdef double* high_vector = work + 2 * high_size
    cdef double* low_partial = work + 4 * high_size
    cdef double* high_partial = work + 6 * high_size
    cdef int64_t h, i, f
    cdef double lr, li, accr, acci
    _product_vector(columns, 0, low, low_vector)
    _product_vector(columns, low, num_qubits, high_vector)
    for i in range(2 * low_size):
        low_partial[i] = 0
    for h in range(high_size):
        accr = 0
        acci = 0
        for i in range(low_size):
            f = 2 * (h * low_size + i)
            lr = lam[f]
            li = -lam[f + 1]
            low_partial[2 * i] += lr * high_vector[2 * h] - li * high_vector[2 * h + 1]
            low_partial[2 * i + 1] += lr * high_vector[2 * h + 1] + li * high_vector[2 * h]
            accr += lr * low_vector[2 * i] - li * low_vector[2 * i + 1]
            acci += lr * low_vector[2 * i + 1] + li * low_vector[2 * i]
        high_partial[2 * h] = accr
        high_partial[2 * h + 1] = acci
    _leave_one_out(low_partial, low_size, columns, 0, low, mu)
    _leave_one_out(high_partial, high_size, columns, low, num_qubits, mu)


cdef void _initial_columns(const real* u1, const int64_t* run_start, const int32_t* run_gate,
                           const int32_t* init_u1, int64_t num_qubits, double* columns) noexcept nogil:
    """Every qubit's initial single-qubit state (the product state's factors) as complex doubles[n, 2]."""
    cdef real column[4]
    cdef int64_t q
    cdef int e
    for q in range(num_qubits):
        _initial_column(u1, run_start, run_gate, init_u1, q, column)
        for e in range(4):
            columns[4 * q + e] = column[e]


cdef void _z_operator(double* row, int64_t n, const int64_t* zmask, int64_t count,
                      const double* weights) noexcept nogil:
    """``row[i] = sum_k weights[k] (-1)^popcount(i & zmask[k])``: the diagonal of ``sum_k w_k Z_k``.

    Single-qubit strings (and the identity) are linear in the bits of i, so
    together they are built by doubling in one pass; each multi-qubit string
    adds a pass.
    """
    cdef int64_t i, k, size
    cdef double weight
    row[0] = 0
    for k in range(count):
        if zmask[k] & (zmask[k] - 1) == 0:
            row[0] += weights[k]
    size = 1
    while size < n:
        weight = 0
        for k in range(count):
            if zmask[k] == size:
                weight += weights[k]
        for i in range(size):
            row[i + size] = row[i] - 2 * weight
        size <<= 1
    for k in range(count):
        if zmask[k] & (zmask[k] - 1) != 0 and weights[k] != 0:
            for i in range(n):
                row[i] += weights[k] * (1.0 - 2.0 * parity(i & zmask[k]))


cdef void _z_values_and_lambdas(const real* psi, int64_t n, const int64_t* xmask, const int64_t* zmask,
                                int64_t count, const double* weights, int64_t lanes, double* values, real* lam,
                                double* diagonal, double* probs) noexcept nogil:
    """Z-string expectations (as the forward pass computes them) and ``lam[l] = sum_k weights[l, k] Z_k psi``."""
    cdef int64_t i, lane
    cdef double* row
    probabilities_into(psi, 0, n, probs)
    z_expectations_from_probabilities(probs, n, xmask, zmask, count, values)
    for lane in range(lanes):
        row = diagonal + lane * n
        _z_operator(row, n, zmask, count, weights + lane * count)
        for i in range(n):
            lam[2 * (lane * n + i)] = <real>(row[i] * psi[2 * i])
            lam[2 * (lane * n + i) + 1] = <real>(row[i] * psi[2 * i + 1])


cdef void _add_pauli(real* out, const real* psi, int64_t n, int64_t xmask, int64_t zmask, int64_t ny,
                     double weight) noexcept nogil:
    """``out += weight * P psi`` for ``P = i^ny X^xmask Z^zmask``."""
    cdef int64_t i, j
    cdef double sign, xr, xi
    cdef int64_t phase = ny & 3
    for i in range(n):
        j = i ^ xmask
        sign = weight * (1.0 - 2.0 * parity(j & zmask))
        xr = sign * psi[2 * j]
        xi = sign * psi[2 * j + 1]
        if phase == 0:
            out[2 * i] += <real>xr
            out[2 * i + 1] += <real>xi
        elif phase == 1:  # i * (xr + i xi)
            out[2 * i] += <real>(-xi)
            out[2 * i + 1] += <real>xr
        elif phase == 2:
            out[2 * i] += <real>(-xr)
            out[2 * i + 1] += <real>(-xi)
        else:
            out[2 * i] += <real>xi
            out[2 * i + 1] += <real>(-xr)


cdef void _adjoint_small(const real* u1, int64_t u1_stride, const real* u2, int64_t u2_stride, const real* u2_dagger,
                         const real* du1, int64_t du1_stride, const real* du2, int64_t du2_stride, const double* slope1,
                         const unsigned char* rotation1, const double* slope2, const unsigned char* rotation2,
                         int64_t batch,
                         int64_t num_qubits, const int32_t* init_u1, const int8_t* kind, const int32_t* q0,
                         const int32_t* q1, const int32_t* arg, int64_t steps, const int64_t* run_start,
                         const int32_t* run_gate, const int64_t* perm_start, bint has_perm,
                         const int64_t* inverse_table, const int64_t* forward_table, const int64_t* u1_use_start,
                         const int64_t* u2_use_start, const int64_t* xmask, const int64_t* zmask, const int64_t* ny,
                         int64_t count, const double* weights, int64_t lanes, double* values_out, double* grad_out,
                         int64_t uses, int64_t uses1, const real* initial, real* state_grad_out, int num_threads,
                         int* failed) noexcept nogil:
    """Body of :func:`adjoint_small`: one parallel region, per-thread buffers, a static loop over the batch."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t half = <int64_t>1 << (num_qubits - num_qubits // 2)
    cdef int64_t b, s, lane, k, q
    cdef int8_t op
    cdef bint z_only = True
    cdef bint ok = False
    cdef int64_t observable
    cdef real* psi = NULL
    cdef real* state = NULL
    cdef real* scratch = NULL
    cdef real* lam = NULL
    cdef double* doubles = NULL
    cdef double* diagonal = NULL
    cdef double* probs = NULL
    cdef double* cross = NULL
    cdef double* columns = NULL
    cdef double* mu = NULL
    cdef double* work = NULL
    cdef double* grad = NULL
    for observable in range(count):
        z_only = z_only and xmask[observable] == 0
    with parallel(num_threads=num_threads):
        state = <real*>malloc(2 * size * sizeof(real))
        scratch = <real*>malloc(2 * size * sizeof(real))
        lam = <real*>malloc((2 * size * lanes + 1) * sizeof(real))
        # diagonal[L * n], probs[n], cross[32], columns[4 n], mu[4 n], work[8 * half]
        doubles = <double*>malloc((size * (lanes + 1) + 32 + 8 * num_qubits + 8 * half) * sizeof(double))
        ok = state != NULL and scratch != NULL and lam != NULL and doubles != NULL
        for b in prange(batch, schedule="static"):
            if not ok:
                failed[0] = 1
            else:
                diagonal = doubles
                probs = doubles + size * lanes
                cross = probs + size
                columns = cross + 32
                mu = columns + 4 * num_qubits
                work = mu + 4 * num_qubits
                grad = grad_out + uses * lanes * b
                if initial != NULL:
                    memcpy(state, initial + 2 * size * b, 2 * size * sizeof(real))
                else:
                    init_product(state, u1 + u1_stride * b, run_start, run_gate, init_u1, 0, num_qubits)
                psi = apply_steps(state, scratch, size, 0, steps, kind, q0, q1, arg, u1 + u1_stride * b,
                                  u2 + u2_stride * b, run_start, run_gate, perm_start, forward_table)
                if psi != state:
                    memcpy(state, psi, 2 * size * sizeof(real))
                    psi = state
                if z_only:
                    _z_values_and_lambdas(psi, size, xmask, zmask, count, weights + lanes * count * b, lanes,
                                          values_out + count * b, lam, diagonal, probs)
                else:
                    for k in range(2 * size * lanes):
                        lam[k] = 0
                    for k in range(count):
                        values_out[count * b + k] = pauli_expectation(psi, 0, size, xmask[k], zmask[k], ny[k])
                        for lane in range(lanes):
                            if weights[(b * lanes + lane) * count + k] != 0:
                                _add_pauli(lam + 2 * size * lane, psi, size, xmask[k], zmask[k], ny[k],
                                           weights[(b * lanes + lane) * count + k])
                for s in range(steps - 1, -1, -1):
                    op = kind[s]
                    if op == U1:
                        _backward_u1(psi, lam, lanes, size, q0[s], u1 + u1_stride * b, du1 + du1_stride * b,
                                     slope1, rotation1, run_start, run_gate, arg[s], u1_use_start, grad, uses, cross)
                    elif op == PERM:
                        apply_permutation(scratch, psi, size, inverse_table + perm_start[arg[s]])
                        memcpy(psi, scratch, 2 * size * sizeof(real))
                        for lane in range(lanes):
                            apply_permutation(scratch, lam + 2 * size * lane, size,
                                              inverse_table + perm_start[arg[s]])
                            memcpy(lam + 2 * size * lane, scratch, 2 * size * sizeof(real))
                    elif op == CNOT or op == SWAP:
                        apply_swap_pairs(psi, size, q0[s], q1[s], op == CNOT)
                        for lane in range(lanes):
                            apply_swap_pairs(lam + 2 * size * lane, size, q0[s], q1[s], op == CNOT)
                    else:  # every two-qubit matrix kind reads its bound 4x4 through arg
                        _backward_u2(psi, lam, lanes, size, q0[s], q1[s], u2 + u2_stride * b + 32 * arg[s],
                                     u2_dagger + u2_stride * b + 32 * arg[s], du2 + du2_stride * b, slope2, rotation2,
                                     arg[s], u2_use_start, grad + uses1, uses, cross)
                if state_grad_out != NULL:
                    memcpy(state_grad_out + 2 * size * lanes * b, lam, 2 * size * lanes * sizeof(real))
                # psi is now the initial product state: contract each lambda against its factors, every qubit at
                # once (a program run on given initial states has no product layer)
                _initial_columns(u1 + u1_stride * b, run_start, run_gate, init_u1, num_qubits, columns)
                for lane in range(lanes if initial == NULL else 0):
                    _product_contractions(lam + 2 * size * lane, num_qubits, columns, work, mu)
                    for q in range(num_qubits):
                        if init_u1[q] >= 0 and _run_has_uses(run_start, run_gate, init_u1[q], u1_use_start):
                            # cross matrix (mu0, 0; mu1, 0): the run acts on |0>
                            cross[0] = mu[4 * q]
                            cross[1] = mu[4 * q + 1]
                            cross[2] = 0
                            cross[3] = 0
                            cross[4] = mu[4 * q + 2]
                            cross[5] = mu[4 * q + 3]
                            cross[6] = 0
                            cross[7] = 0
                            _add_run_derivatives(u1 + u1_stride * b, du1 + du1_stride * b, slope1, rotation1,
                                                 run_start, run_gate, init_u1[q], u1_use_start, cross,
                                                 grad + uses * lane)
        free(state)
        free(scratch)
        free(lam)
        free(doubles)


def adjoint_small(const cplx[:, :, :, ::1] u1, const cplx[:, :, :, ::1] u2, const cplx[:, :, :, ::1] u2_dagger,
                  const cplx[:, :, :, ::1] du1, const cplx[:, :, :, ::1] du2,
                  const double complex[:, :, ::1] slope1, const unsigned char[::1] rotation1,
                  const double complex[:, :, ::1] slope2, const unsigned char[::1] rotation2, int num_qubits,
                  const int32_t[::1] init_u1, const int8_t[::1] kind, const int32_t[::1] q0, const int32_t[::1] q1,
                  const int32_t[::1] arg, const int64_t[::1] run_start, const int32_t[::1] run_gate,
                  const int64_t[::1] perm_start, const int64_t[::1] inverse_table, const int64_t[::1] forward_table,
                  const int64_t[::1] u1_use_start, const int64_t[::1] u2_use_start, const int64_t[::1] xmask,
                  const int64_t[::1] zmask, const int64_t[::1] ny, const double[:, :, ::1] weights,
                  double[:, ::1] values_out, double[:, :, ::1] grad_out, const cplx[:, ::1] initial,
                  cplx[:, :, ::1] state_grad_out):
    """Expectations and adjoint derivatives for a batch of a single-block program (OpenMP over the batch).

    Same arguments and results as :func:`qsim_core.backends.numba.adjoint.adjoint_small` (``initial`` and
    ``state_grad_out`` empty when not used).

    Raises:
        ValueError: inconsistent shapes.
        MemoryError: the per-thread buffers could not be allocated.
    """
    cdef int64_t batch = u1.shape[0]
    cdef int64_t count = xmask.shape[0]
    cdef int64_t lanes = weights.shape[1]
    cdef int64_t uses1 = du1.shape[1]
    cdef int64_t uses = uses1 + du2.shape[1]
    cdef int failed = 0
    if not 1 <= num_qubits <= 40:
        raise ValueError(f"bad num_qubits {num_qubits}")
    if weights.shape[0] < batch or weights.shape[2] != count or values_out.shape[0] < batch \
            or values_out.shape[1] != count or grad_out.shape[0] < batch or grad_out.shape[1] != lanes \
            or grad_out.shape[2] != uses:
        raise ValueError("weights, values_out and grad_out do not match the batch, observables and uses")
    if u2.shape[0] != batch and u2.shape[1] != 0 or du1.shape[0] != batch or du2.shape[0] != batch and du2.shape[1]:
        raise ValueError("u1, u2, du1 and du2 must have the same batch size")
    if q0.shape[0] < kind.shape[0] or q1.shape[0] < kind.shape[0] or arg.shape[0] < kind.shape[0] \
            or init_u1.shape[0] < num_qubits:
        raise ValueError("kind, q0, q1, arg need one entry per step and init_u1 one per qubit")
    if u1_use_start.shape[0] != u1.shape[1] + 1 or u2_use_start.shape[0] != u2.shape[1] + 1:
        raise ValueError("u1_use_start / u2_use_start need one entry per gate plus one")
    if slope1.shape[0] != uses1 or rotation1.shape[0] != uses1 or slope2.shape[0] != uses - uses1 \
            or rotation2.shape[0] != uses - uses1:
        raise ValueError("slope1/rotation1 and slope2/rotation2 need one entry per use")
    _check_observables(xmask, zmask, ny, count)
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef bint has_initial = initial.shape[0] > 0
    cdef bint has_state_grad = state_grad_out.shape[0] > 0
    if has_initial and (initial.shape[0] < batch or initial.shape[1] != size):
        raise ValueError(f"initial must be [{batch}, {size}]")
    if has_state_grad and (state_grad_out.shape[0] < batch or state_grad_out.shape[1] != lanes
                           or state_grad_out.shape[2] != size):
        raise ValueError(f"state_grad_out must be [{batch}, {lanes}, {size}]")
    if batch == 0:
        return
    if cplx is cython.floatcomplex:
        with nogil:
            _adjoint_small(<const float*>&u1[0, 0, 0, 0], 8 * u1.shape[1], <const float*>&u2[0, 0, 0, 0],
                           32 * u2.shape[1], <const float*>&u2_dagger[0, 0, 0, 0], <const float*>&du1[0, 0, 0, 0],
                           8 * du1.shape[1], <const float*>&du2[0, 0, 0, 0], 32 * du2.shape[1],
                           <const double*>&slope1[0, 0, 0], &rotation1[0], <const double*>&slope2[0, 0, 0],
                           &rotation2[0], batch, num_qubits,
                           &init_u1[0], &kind[0], &q0[0], &q1[0], &arg[0], kind.shape[0], &run_start[0],
                           &run_gate[0], &perm_start[0], perm_start.shape[0] > 1, &inverse_table[0],
                           &forward_table[0], &u1_use_start[0], &u2_use_start[0], &xmask[0], &zmask[0], &ny[0],
                           count, &weights[0, 0, 0], lanes, &values_out[0, 0], &grad_out[0, 0, 0], uses, uses1,
                           <const float*>&initial[0, 0] if has_initial else NULL,
                           <float*>&state_grad_out[0, 0, 0] if has_state_grad else NULL, _threads, &failed)
    else:
        with nogil:
            _adjoint_small(<const double*>&u1[0, 0, 0, 0], 8 * u1.shape[1], <const double*>&u2[0, 0, 0, 0],
                           32 * u2.shape[1], <const double*>&u2_dagger[0, 0, 0, 0], <const double*>&du1[0, 0, 0, 0],
                           8 * du1.shape[1], <const double*>&du2[0, 0, 0, 0], 32 * du2.shape[1],
                           <const double*>&slope1[0, 0, 0], &rotation1[0], <const double*>&slope2[0, 0, 0],
                           &rotation2[0], batch, num_qubits,
                           &init_u1[0], &kind[0], &q0[0], &q1[0], &arg[0], kind.shape[0], &run_start[0],
                           &run_gate[0], &perm_start[0], perm_start.shape[0] > 1, &inverse_table[0],
                           &forward_table[0], &u1_use_start[0], &u2_use_start[0], &xmask[0], &zmask[0], &ny[0],
                           count, &weights[0, 0, 0], lanes, &values_out[0, 0], &grad_out[0, 0, 0], uses, uses1,
                           <const double*>&initial[0, 0] if has_initial else NULL,
                           <double*>&state_grad_out[0, 0, 0] if has_state_grad else NULL, _threads, &failed)
    _check_allocated(failed)
