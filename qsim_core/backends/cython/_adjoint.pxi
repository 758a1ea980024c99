# Adjoint differentiation: the C translation of qsim_core/backends/numba/adjoint.py.
#
# Included at the end of _kernels.pyx (textually, so it uses that module's
# cdef gate kernels without a .pxd): one file per job, one extension. Read
# numba/adjoint.py for the algorithm; the conventions here are the kernel
# module's: complex arrays are interleaved (re, im) real arrays, matrices are
# row-major, accumulations are in double whatever the state's precision.
# The hot loops (the real single-qubit pass, two real steps paired in one
# sweep, the product-layer contraction) are C with GCC/Clang vector types, in
# _adjoint_vector.pxi; other compilers take the scalar Cython loops.


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


cdef inline void _adjoint2(const real* m, real* a) noexcept nogil:
    """``a = m^dagger`` for 2x2 complex matrices as 8 reals."""
    a[0] = m[0]
    a[1] = -m[1]
    a[2] = m[4]
    a[3] = -m[5]
    a[4] = m[2]
    a[5] = -m[3]
    a[6] = m[6]
    a[7] = -m[7]


include "_adjoint_vector.pxi"


cdef inline void _complex_pass(real* psi, real* lam, int64_t n, int64_t q, const real* a, double* cross,
                               bint update_psi) noexcept nogil:
    """The backward pass of any 2x2 ``a`` (see ``qsim_real_pass``), one amplitude pair at a time: the whole complex
    cross matrix of the incoming states into ``cross[8]``, then ``a`` applied to lam (and psi when ``update_psi``)."""
    cdef int64_t s = <int64_t>1 << q
    cdef int64_t i0 = 0
    cdef int64_t j, f, g
    cdef real xr, xi, yr, yi, ur, ui, vr, vi
    cdef double c0r = 0, c0i = 0, c1r = 0, c1i = 0, c2r = 0, c2i = 0, c3r = 0, c3i = 0
    while i0 < n:
        for j in range(i0, i0 + s):
            f = 2 * j
            g = 2 * (j + s)
            xr = psi[f]
            xi = psi[f + 1]
            yr = psi[g]
            yi = psi[g + 1]
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
            if update_psi:
                psi[f] = (a[0] * xr - a[1] * xi) + (a[2] * yr - a[3] * yi)
                psi[f + 1] = (a[0] * xi + a[1] * xr) + (a[2] * yi + a[3] * yr)
                psi[g] = (a[4] * xr - a[5] * xi) + (a[6] * yr - a[7] * yi)
                psi[g + 1] = (a[4] * xi + a[5] * xr) + (a[6] * yi + a[7] * yr)
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


cdef void _undo_lane(real* psi, real* lam, int64_t n, int64_t q, const real* a, bint update_psi, bint imag,
                     bint diag, double* cross) noexcept nogil:
    """Undo ``a`` (2x2, U^dagger) on qubit q of ``lam`` (and ``psi`` when ``update_psi``).

    Writes the cross matrix of the states as they came in,
    ``C[a, b] = sum conj(lam[a]) psi[b]``, to ``cross[8]`` (row-major complex
    as doubles; the vector passes write the imaginary parts only when ``imag``
    and the diagonal entries only when ``diag``, the scalar complex pass on
    qubit 0 always all).
    """
    if QSIM_VECTOR_PASS and a[1] == 0 and a[3] == 0 and a[5] == 0 and a[7] == 0:
        if real is float and q == 0:
            qsim_real_pass0_float(psi, lam, n, a, update_psi, imag, diag, cross)
        elif real is float and q == 1:
            qsim_real_pass1_float(psi, lam, n, a, update_psi, imag, diag, cross)
        elif real is float:
            qsim_real_pass_float(psi, lam, n, q, a, update_psi, imag, diag, cross)
        elif q == 0:
            qsim_real_pass0_double(psi, lam, n, a, update_psi, imag, diag, cross)
        elif q == 1:
            qsim_real_pass1_double(psi, lam, n, a, update_psi, imag, diag, cross)
        else:
            qsim_real_pass_double(psi, lam, n, q, a, update_psi, imag, diag, cross)
    elif QSIM_VECTOR_PASS and q > 0:
        if real is float:
            qsim_complex_pass_float(psi, lam, n, q, a, update_psi, imag, diag, cross)
        else:
            qsim_complex_pass_double(psi, lam, n, q, a, update_psi, imag, diag, cross)
    elif update_psi:
        _complex_pass(psi, lam, n, q, a, cross, True)
    else:
        _complex_pass(psi, lam, n, q, a, cross, False)


cdef inline bint _run_has_uses(const int64_t* run_start, const int32_t* run_gate, int64_t run,
                               const int64_t* use_start) noexcept nogil:
    cdef int64_t k, g
    for k in range(run_start[run], run_start[run + 1]):
        g = run_gate[k]
        if use_start[g + 1] > use_start[g]:
            return True
    return False


cdef int64_t _first_state_step(const int8_t* kind, const int32_t* arg, int64_t steps, const int64_t* run_start,
                               const int32_t* run_gate, const int64_t* u1_use_start,
                               const int64_t* u2_use_start) noexcept nogil:
    """The first step whose derivatives read psi (``steps`` if none): the sweep undoes psi only above it."""
    cdef int64_t s
    for s in range(steps):
        if kind[s] == U1:
            if _run_has_uses(run_start, run_gate, arg[s], u1_use_start):
                return s
        elif kind[s] != PERM and kind[s] != CNOT and kind[s] != SWAP:
            if u2_use_start[arg[s] + 1] > u2_use_start[arg[s]]:
                return s
    return steps


cdef enum:  # _run_slopes' flags: some slope has an imaginary part; some has a non-zero diagonal entry
    SLOPES_IMAG = 1
    SLOPES_DIAG = 2


cdef inline int _slope_flags(const double* slope) noexcept nogil:
    """SLOPES_IMAG if the 2x2 ``slope`` (8 doubles) has an imaginary part, plus SLOPES_DIAG if a diagonal entry."""
    cdef int flags = 0
    cdef int e
    for e in range(4):
        if slope[2 * e + 1] != 0:
            flags |= SLOPES_IMAG
    if slope[0] != 0 or slope[1] != 0 or slope[6] != 0 or slope[7] != 0:
        flags |= SLOPES_DIAG
    return flags


cdef inline int _slopes(const real* u1, const real* du1, const double* slope1, const unsigned char* rotation1,
                        const int64_t* run_start, const int32_t* run_gate, int64_t run, const int64_t* use_start,
                        const real* after, double* out) noexcept nogil:
    """:func:`_run_slopes`, with its most common case inline: a rotation alone in its run (every use a rotation),
    whose slopes are ``slope1``'s as they are (no products; the call itself cost as much as the copy)."""
    cdef int64_t g = run_gate[run_start[run]]
    cdef int64_t u
    cdef int flags = 0
    if run_start[run + 1] != run_start[run] + 1:
        return _run_slopes(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, after, out)
    for u in range(use_start[g], use_start[g + 1]):
        if not rotation1[u]:
            return _run_slopes(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, after, out)
    memcpy(out, slope1 + 8 * use_start[g], 8 * (use_start[g + 1] - use_start[g]) * sizeof(double))
    for u in range(use_start[g + 1] - use_start[g]):
        flags |= _slope_flags(out + 8 * u)
    return flags


cdef int _run_slopes(const real* u1, const real* du1, const double* slope1, const unsigned char* rotation1,
                     const int64_t* run_start, const int32_t* run_gate, int64_t run, const int64_t* use_start,
                     const real* after, double* out) noexcept nogil:
    """``out[u] = S_j D_u P_j after`` (8 doubles each) for every use u of the run's gates, in use order.

    ``D_u`` is ``du1[u]``, or for a rotation use ``G slope1[u]`` with G the gate's
    bound matrix. With ``after`` = U^dagger of the whole run, ``2 Re sum(out[u] * C)``
    is use u's derivative for the cross matrix C of the states *after* the run
    (``psi_before = U^dagger psi_after``), so psi need not be undone first.
    A rotation alone in its run gets ``slope1[u]`` itself, which is exactly
    ``G slope1[u] G^dagger`` (G commutes with its generator): the entries its
    generator leaves at zero stay exactly zero, and the passes skip the cross
    entries that only zeros multiply.
    Returns SLOPES_IMAG if any of them has an imaginary part, plus SLOPES_DIAG if
    any has a non-zero diagonal entry.
    """
    cdef double prefix[8]
    cdef double suffix[8]
    cdef double gate[8]
    cdef double tmp[8]
    cdef double slope[8]
    cdef int64_t k, k2, g, u
    cdef int64_t last = run_start[run + 1] - 1
    cdef bint alone = run_start[run] == last
    cdef int e
    cdef int flags = 0
    cdef double* full = out
    _load2(after, prefix)
    for k in range(run_start[run], last + 1):
        g = run_gate[k]
        if use_start[g + 1] > use_start[g]:
            if k < last:  # the last gate's suffix is the identity: no products with it
                _load2(u1 + 8 * run_gate[last], suffix)
                for k2 in range(last - 1, k, -1):
                    _load2(u1 + 8 * run_gate[k2], gate)
                    _mul2(suffix, gate, tmp)
                    memcpy(suffix, tmp, 8 * sizeof(double))
            for u in range(use_start[g], use_start[g + 1]):
                if rotation1[u] and alone:
                    memcpy(full, slope1 + 8 * u, 8 * sizeof(double))
                else:
                    if rotation1[u]:
                        _load2(u1 + 8 * g, gate)
                        _mul2(gate, slope1 + 8 * u, slope)
                    else:
                        _load2(du1 + 8 * u, slope)
                    if k < last:
                        _mul2(suffix, slope, tmp)
                        _mul2(tmp, prefix, full)
                    else:
                        _mul2(slope, prefix, full)
                flags |= _slope_flags(full)
                full += 8
        if k < last:
            _load2(u1 + 8 * g, gate)
            _mul2(gate, prefix, tmp)
            memcpy(prefix, tmp, 8 * sizeof(double))
    return flags


cdef inline double _contract(const double* m, const double* cross, int entries) noexcept nogil:
    """``Re sum_e m[e] cross[e]`` over ``entries`` complex entries (as doubles)."""
    cdef double value = 0
    cdef int e
    for e in range(entries):
        value += m[2 * e] * cross[2 * e] - m[2 * e + 1] * cross[2 * e + 1]
    return value


cdef void _add_slopes(const int64_t* run_start, const int32_t* run_gate, int64_t run, const int64_t* use_start,
                      const double* slopes, const double* cross, double* grad) noexcept nogil:
    """``grad[u] += 2 Re sum(slopes[u] * cross)`` for the run's uses, ``slopes`` in :func:`_run_slopes`' order."""
    cdef int64_t k, g, u
    for k in range(run_start[run], run_start[run + 1]):
        g = run_gate[k]
        for u in range(use_start[g], use_start[g + 1]):
            grad[u] += 2 * _contract(slopes, cross, 4)
            slopes += 8


cdef inline void _matvec2(const double* m, const double* v, double* out) noexcept nogil:
    """``out = m v`` for a 2x2 complex matrix and a complex 2-vector (as doubles); ``out`` must not alias ``v``."""
    cdef int row
    for row in range(2):
        out[2 * row] = m[4 * row] * v[0] - m[4 * row + 1] * v[1] + m[4 * row + 2] * v[2] - m[4 * row + 3] * v[3]
        out[2 * row + 1] = m[4 * row] * v[1] + m[4 * row + 1] * v[0] + m[4 * row + 2] * v[3] + m[4 * row + 3] * v[2]


cdef void _initial_run_derivatives(const real* u1, const real* du1, const double* slope1,
                                   const unsigned char* rotation1, const int64_t* run_start, const int32_t* run_gate,
                                   int64_t run, const int64_t* use_start, const double* mu, double* states,
                                   double* grad) noexcept nogil:
    """``grad[u] += 2 Re mu^T S_j D_u P_j |0>`` for the uses of an initial run, which acts on |0>.

    ``mu`` (2 complex) is lambda contracted against every other qubit's factor. Only vectors are needed: the
    states ``P_j |0>`` forward (into ``states``, 4 doubles per gate of the run), then the row ``mu^T S_j`` backward.
    """
    cdef double gate[8]
    cdef double derivative[8]
    cdef double row[4]
    cdef double tmp[4]
    cdef double slope[4]
    cdef int64_t k, g, u
    cdef int64_t first = run_start[run]
    cdef double* state
    states[0] = 1
    states[1] = 0
    states[2] = 0
    states[3] = 0
    for k in range(first, run_start[run + 1] - 1):
        _load2(u1 + 8 * run_gate[k], gate)
        _matvec2(gate, states + 4 * (k - first), states + 4 * (k + 1 - first))
    memcpy(row, mu, 4 * sizeof(double))
    for k in range(run_start[run + 1] - 1, first - 1, -1):
        g = run_gate[k]
        _load2(u1 + 8 * g, gate)
        state = states + 4 * (k - first)
        for u in range(use_start[g], use_start[g + 1]):
            if rotation1[u]:
                _matvec2(slope1 + 8 * u, state, tmp)
                _matvec2(gate, tmp, slope)
            else:
                _load2(du1 + 8 * u, derivative)
                _matvec2(derivative, state, slope)
            grad[u] += 2 * (row[0] * slope[0] - row[1] * slope[1] + row[2] * slope[2] - row[3] * slope[3])
        tmp[0] = row[0] * gate[0] - row[1] * gate[1] + row[2] * gate[4] - row[3] * gate[5]
        tmp[1] = row[0] * gate[1] + row[1] * gate[0] + row[2] * gate[5] + row[3] * gate[4]
        tmp[2] = row[0] * gate[2] - row[1] * gate[3] + row[2] * gate[6] - row[3] * gate[7]
        tmp[3] = row[0] * gate[3] + row[1] * gate[2] + row[2] * gate[7] + row[3] * gate[6]
        memcpy(row, tmp, 4 * sizeof(double))


cdef void _backward_u1(real* psi, real* lam, int64_t lanes, int64_t n, int64_t q, const real* u1, const real* du1,
                       const double* slope1, const unsigned char* rotation1, const int64_t* run_start,
                       const int32_t* run_gate, int64_t run, const int64_t* use_start, double* grad,
                       int64_t grad_stride, bint update_psi, double* cross, double* slopes) noexcept nogil:
    """Undo fused run ``run`` on qubit q for every lambda (and psi when ``update_psi``); its uses' derivatives,
    from each lane's cross matrix with the states after the run, go to grad[lane, u].

    The lanes run last to first so that lane 0, the last, is the one that also moves psi.
    """
    cdef real m[8]
    cdef real a[8]
    cdef int64_t lane
    cdef int flags
    fused_u1(u1, run_start, run_gate, run, m)
    _adjoint2(m, a)
    if lanes == 0 or not _run_has_uses(run_start, run_gate, run, use_start):
        if update_psi:
            apply_u1(psi, n, q, a)
        for lane in range(lanes):
            apply_u1(lam + 2 * n * lane, n, q, a)
        return
    flags = _slopes(u1, du1, slope1, rotation1, run_start, run_gate, run, use_start, a, slopes)
    for lane in range(lanes - 1, -1, -1):
        _undo_lane(psi, lam + 2 * n * lane, n, q, a, update_psi and lane == 0, flags & SLOPES_IMAG,
                   flags & SLOPES_DIAG, cross)
        _add_slopes(run_start, run_gate, run, use_start, slopes, cross, grad + grad_stride * lane)


cdef int64_t _run_uses(const int64_t* run_start, const int32_t* run_gate, int64_t run,
                       const int64_t* use_start) noexcept nogil:
    """How many uses the run's gates have (its slopes in :func:`_run_slopes`' output)."""
    cdef int64_t k, count = 0
    for k in range(run_start[run], run_start[run + 1]):
        count += use_start[run_gate[k] + 1] - use_start[run_gate[k]]
    return count


cdef bint _run_gates_real(const real* u1, const int64_t* run_start, const int32_t* run_gate,
                          int64_t run) noexcept nogil:
    """Whether every bound 2x2 of the run is real (then so is their product); no products formed, so a complex run
    (Rot's RZ RY RZ) is turned away at its first gate."""
    cdef int64_t k
    cdef const real* m
    for k in range(run_start[run], run_start[run + 1]):
        m = u1 + 8 * run_gate[k]
        if m[1] != 0 or m[3] != 0 or m[5] != 0 or m[7] != 0:
            return False
    return True


cdef bint _backward_u1_pair(real* psi, real* lam, int64_t lanes, int64_t n, int64_t qa, int64_t run_a, int64_t qb,
                            int64_t run_b, const real* u1, const real* du1, const double* slope1,
                            const unsigned char* rotation1, const int64_t* run_start, const int32_t* run_gate,
                            const int64_t* use_start, double* grad, int64_t grad_stride, bint update_b, double* cross,
                            double* slopes) noexcept nogil:
    """Two consecutive steps of the sweep, run ``run_a`` on qubit qa then ``run_b`` on qubit qb, in one paired pass
    (``qsim_real_pair``) per lambda when it applies: every gate of both runs real, real slopes, both with uses,
    distinct qubits >= 2, an AVX-512 build. psi moves through the first (its uses precede it), and through the second when
    ``update_b``; the lanes run last to first, lane 0 storing psi, as in :func:`_backward_u1`. Returns whether it
    ran (else nothing but scratch was written). The cheap tests come first: the sweep asks at every pair of U1
    steps, and a refused pair then takes :func:`_backward_u1`, which fuses its run again."""
    cdef real ma[8]
    cdef real aa[8]
    cdef real mb[8]
    cdef real ab[8]
    cdef int flags_a, flags_b
    cdef int64_t count_a, lane
    if not QSIM_PAIR_PASS or lanes == 0 or qa < 2 or qb < 2 or qa == qb:
        return False
    if not _run_has_uses(run_start, run_gate, run_a, use_start) \
            or not _run_has_uses(run_start, run_gate, run_b, use_start) \
            or not _run_gates_real(u1, run_start, run_gate, run_a) \
            or not _run_gates_real(u1, run_start, run_gate, run_b):
        return False
    fused_u1(u1, run_start, run_gate, run_a, ma)
    _adjoint2(ma, aa)
    fused_u1(u1, run_start, run_gate, run_b, mb)
    _adjoint2(mb, ab)
    flags_a = _slopes(u1, du1, slope1, rotation1, run_start, run_gate, run_a, use_start, aa, slopes)
    count_a = _run_uses(run_start, run_gate, run_a, use_start)
    flags_b = _slopes(u1, du1, slope1, rotation1, run_start, run_gate, run_b, use_start, ab, slopes + 8 * count_a)
    if (flags_a | flags_b) & SLOPES_IMAG:
        return False
    for lane in range(lanes - 1, -1, -1):
        if real is float:
            qsim_real_pair_float(psi, lam + 2 * n * lane, n, qa, aa, qb, ab, lane == 0, update_b,
                                 flags_a & SLOPES_DIAG, flags_b & SLOPES_DIAG, cross, cross + 8)
        else:
            qsim_real_pair_double(psi, lam + 2 * n * lane, n, qa, aa, qb, ab, lane == 0, update_b,
                                  flags_a & SLOPES_DIAG, flags_b & SLOPES_DIAG, cross, cross + 8)
        _add_slopes(run_start, run_gate, run_a, use_start, slopes, cross, grad + grad_stride * lane)
        _add_slopes(run_start, run_gate, run_b, use_start, slopes + 8 * count_a, cross + 8, grad + grad_stride * lane)
    return True


cdef int64_t _layer_start(const int8_t* kind, const int32_t* q0, int64_t last) noexcept nogil:
    """The first step of the longest run of U1 steps on distinct qubits that ends at step ``last`` (a U1 step)."""
    cdef uint64_t seen = 0
    cdef int64_t first = last
    while first >= 0 and kind[first] == U1 and not (seen >> q0[first]) & 1:
        seen |= <uint64_t>1 << q0[first]
        first -= 1
    return first + 1


cdef void _backward_u1_layer(real* psi, real* lam, int64_t lanes, int64_t n, int64_t first, int64_t last,
                             const int32_t* q0, const int32_t* arg, const real* u1, const real* du1,
                             const double* slope1, const unsigned char* rotation1, const int64_t* run_start,
                             const int32_t* run_gate, const int64_t* use_start, double* grad, int64_t grad_stride,
                             double* slopes) noexcept nogil:
    """Steps ``first..last`` of the sweep, U1 runs on distinct qubits below which no derivative reads psi: every
    lambda goes back through them, psi stays where it is.

    Each run's derivatives come from the cross matrices of the states after the whole layer: they equal those
    after the run itself, since the later runs of the layer act on other qubits and ``C[a, b] = <lam| (|a><b| x 1)
    |psi>`` does not change when both states take the same unitary on the other qubits. So no pass moves psi (the
    paired passes of :func:`_backward_u1_pair` move it through every run but the last): any run the vector passes
    cannot take first gets its cross matrix from :func:`_undo_lane` with the identity (lambda stored unchanged),
    then ``qsim_cross_pair`` forms the real cross matrices of two runs on qubits >= 2 per pass, storing nothing
    but in the last pass, which also takes the runs on qubits 0 and 1 and moves lambda through all four on the
    way. The other runs go in grouped sweeps (:func:`_apply_layer`)."""
    cdef int64_t count = last - first + 1
    cdef real m[8]
    cdef real identity[8]
    cdef real daggers[8 * 64]  # a layer has at most one run per qubit
    cdef double crosses[8 * 64]
    cdef int64_t offset[64]  # where each run's slopes start in ``slopes``
    cdef int flags[64]  # each run's _run_slopes flags; -1: a run without uses
    cdef bint paired[64]  # whether the pair passes form the run's cross matrix
    cdef bint in_last[64]  # whether the last pair pass also takes lambda back through the run
    cdef int64_t wide[64]  # the runs on qubits >= 2 they take, in pairs
    cdef int64_t low_run[2]  # the runs on qubits 0 and 1 the last pass takes (-1: none)
    cdef int32_t rest_qubit[64]
    cdef real rest_daggers[8 * 64]
    cdef int64_t g, k, lane, rest, used = 0, wides = 0
    cdef int low = 0
    cdef real* lane_lam
    memset(identity, 0, sizeof(identity))
    identity[0] = 1
    identity[6] = 1
    low_run[0] = low_run[1] = -1
    for g in range(count):
        fused_u1(u1, run_start, run_gate, arg[first + g], m)
        _adjoint2(m, daggers + 8 * g)
        paired[g] = in_last[g] = False
        flags[g] = -1
        if not _run_has_uses(run_start, run_gate, arg[first + g], use_start):
            continue
        offset[g] = used
        flags[g] = _slopes(u1, du1, slope1, rotation1, run_start, run_gate, arg[first + g], use_start,
                           daggers + 8 * g, slopes + 8 * used)
        used += _run_uses(run_start, run_gate, arg[first + g], use_start)
        if QSIM_PAIR_PASS and not flags[g] & SLOPES_IMAG and _run_gates_real(u1, run_start, run_gate, arg[first + g]):
            if q0[first + g] >= 2:
                wide[wides] = g
                wides += 1
            else:
                low_run[q0[first + g]] = g
    wides -= wides % 2  # an odd one out takes the identity pass
    for k in range(wides):
        paired[wide[k]] = True
        in_last[wide[k]] = k >= wides - 2
    for k in range(2 if wides else 0):
        if low_run[k] >= 0:
            paired[low_run[k]] = in_last[low_run[k]] = True
            low |= 1 << k
    rest = 0  # the runs the last pair pass leaves to _apply_layer
    for g in range(count):
        if not in_last[g]:
            rest_qubit[rest] = q0[first + g]
            memcpy(rest_daggers + 8 * rest, daggers + 8 * g, 8 * sizeof(real))
            rest += 1
    for lane in range(lanes):
        lane_lam = lam + 2 * n * lane
        for g in range(count):  # before any pass moves lambda
            if flags[g] >= 0 and not paired[g]:
                _undo_lane(psi, lane_lam, n, q0[first + g], identity, False, flags[g] & SLOPES_IMAG,
                           flags[g] & SLOPES_DIAG, crosses + 8 * g)
        for k in range(0, wides, 2):
            _cross_pair(psi, lane_lam, n, q0, first, wide[k], wide[k + 1], flags, crosses, daggers,
                        low if k == wides - 2 else 0, low_run, k == wides - 2)
        for g in range(count):
            if flags[g] >= 0:
                _add_slopes(run_start, run_gate, arg[first + g], use_start, slopes + 8 * offset[g], crosses + 8 * g,
                            grad + grad_stride * lane)
        _apply_layer(lane_lam, n, rest_qubit, rest, rest_daggers)


cdef inline void _cross_pair(const real* psi, real* lam, int64_t n, const int32_t* q0, int64_t first, int64_t a,
                             int64_t b, const int* flags, double* crosses, const real* daggers, int low,
                             const int64_t* low_run, bint undo) noexcept nogil:
    """``qsim_cross_pair`` on the layer's runs a and b (indexes from ``first``), and on its runs on qubits 0 and 1
    as ``low`` says; with ``undo`` lambda also goes through their conjugate transposes ``daggers``."""
    cdef const real* m0 = daggers + 8 * (low_run[0] if low & 1 else a)
    cdef const real* m1 = daggers + 8 * (low_run[1] if low & 2 else a)
    cdef double* c0 = crosses + 8 * (low_run[0] if low & 1 else a)
    cdef double* c1 = crosses + 8 * (low_run[1] if low & 2 else a)
    cdef bint d0 = low & 1 and flags[low_run[0]] & SLOPES_DIAG
    cdef bint d1 = low & 2 and flags[low_run[1]] & SLOPES_DIAG
    if real is float:
        qsim_cross_pair_float(psi, lam, n, q0[first + a], q0[first + b], flags[a] & SLOPES_DIAG,
                              flags[b] & SLOPES_DIAG, crosses + 8 * a, crosses + 8 * b, low, d0, d1, c0, c1, undo,
                              daggers + 8 * a, daggers + 8 * b, m0, m1)
    else:
        qsim_cross_pair_double(psi, lam, n, q0[first + a], q0[first + b], flags[a] & SLOPES_DIAG,
                               flags[b] & SLOPES_DIAG, crosses + 8 * a, crosses + 8 * b, low, d0, d1, c0, c1, undo,
                               daggers + 8 * a, daggers + 8 * b, m0, m1)


cdef void _apply_layer(real* v, int64_t n, const int32_t* qubit, int64_t count, real* matrices) noexcept nogil:
    """The 2x2 ``matrices[g]`` (8 reals each) on the distinct qubits ``qubit[g]``, in order; three or two at a
    time in one grouped sweep where the build has it and the qubits are wide enough (as :func:`_u1_group`)."""
    cdef int64_t g = 0
    cdef int64_t take, path
    cdef int64_t qubits[GROUP_MAX]
    cdef int real_path[GROUP_MAX]
    cdef int64_t width = QSIM_GROUP_REALS_d if real is double else QSIM_GROUP_REALS_f
    while g < count:
        take = 0
        while QSIM_GROUPS and take < GROUP_MAX and g + take < count and (<int64_t>2 << qubit[g + take]) >= width:
            path = _u1_path(matrices + 8 * (g + take))
            if path == MIX_DIAGONAL:
                break
            real_path[take] = path == MIX_REAL
            qubits[take] = qubit[g + take]
            take += 1
        if take >= 2:
            grouped_sweep(v, n, take, qubits, matrices + 8 * g, real_path)
            g += take
        else:
            apply_u1(v, n, qubit[g], matrices + 8 * g)
            g += 1


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


cdef void _u2_slope(const real* u_gate, const real* u_dagger, const real* du, const double* slope, bint rotation,
                    double* out) noexcept nogil:
    """``out = D u_dagger`` (32 doubles) with ``D = du``, or ``u_gate slope`` for a rotation use."""
    cdef double d[32]
    cdef int row, col, c
    cdef double re, im
    for row in range(4):
        for col in range(4):
            if rotation:
                re = 0
                im = 0
                for c in range(4):
                    re += (<double>u_gate[8 * row + 2 * c] * slope[8 * c + 2 * col]
                           - <double>u_gate[8 * row + 2 * c + 1] * slope[8 * c + 2 * col + 1])
                    im += (<double>u_gate[8 * row + 2 * c] * slope[8 * c + 2 * col + 1]
                           + <double>u_gate[8 * row + 2 * c + 1] * slope[8 * c + 2 * col])
                d[8 * row + 2 * col] = re
                d[8 * row + 2 * col + 1] = im
            else:
                d[8 * row + 2 * col] = du[8 * row + 2 * col]
                d[8 * row + 2 * col + 1] = du[8 * row + 2 * col + 1]
    for row in range(4):
        for col in range(4):
            re = 0
            im = 0
            for c in range(4):
                re += (d[8 * row + 2 * c] * u_dagger[8 * c + 2 * col]
                       - d[8 * row + 2 * c + 1] * u_dagger[8 * c + 2 * col + 1])
                im += (d[8 * row + 2 * c] * u_dagger[8 * c + 2 * col + 1]
                       + d[8 * row + 2 * c + 1] * u_dagger[8 * c + 2 * col])
            out[8 * row + 2 * col] = re
            out[8 * row + 2 * col + 1] = im


cdef void _backward_u2(real* psi, real* lam, int64_t lanes, int64_t n, int64_t qa, int64_t qb, const real* u_gate,
                       const real* u_dagger, const real* du2, const double* slope2, const unsigned char* rotation2,
                       int64_t g, const int64_t* use_start, double* grad, int64_t grad_stride, bint update_psi,
                       double* cross) noexcept nogil:
    """Undo two-qubit gate g for every lambda (and psi when ``update_psi``); its uses' derivatives go to
    grad[lane, u], from each lane's 4x4 cross matrix with the states after the gate (``cross`` holds 64 doubles).
    """
    cdef int64_t lane, u
    if use_start[g + 1] > use_start[g]:
        for lane in range(lanes):
            _cross_u2(lam + 2 * n * lane, psi, n, qa, qb, cross)
            for u in range(use_start[g], use_start[g + 1]):
                _u2_slope(u_gate, u_dagger, du2 + 32 * u, slope2 + 32 * u, rotation2[u], cross + 32)
                grad[grad_stride * lane + u] += 2 * _contract(cross + 32, cross, 16)
    if update_psi:
        apply_u2(psi, n, qa, qb, u_dagger)
    for lane in range(lanes):
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


cdef inline void _fold_top(const double* src, int64_t size, const double* c, double* out) noexcept nogil:
    """``out[i] = src[i] c0 + src[i + size/2] c1`` for i < size/2 (complex, as doubles): the top qubit of ``src``
    (``size`` complex) folded against its column ``c``."""
    cdef int64_t i
    cdef int64_t half = size >> 1
    for i in range(half):
        out[2 * i], out[2 * i + 1] = (
            src[2 * i] * c[0] - src[2 * i + 1] * c[1] + src[2 * (i + half)] * c[2] - src[2 * (i + half) + 1] * c[3],
            src[2 * i] * c[1] + src[2 * i + 1] * c[0] + src[2 * (i + half)] * c[3] + src[2 * (i + half) + 1] * c[2])


cdef inline void _fold_bottom(const double* src, int64_t size, const double* c, double* out) noexcept nogil:
    """``out[i] = src[2 i] c0 + src[2 i + 1] c1`` for i < size/2: the bottom qubit of ``src`` folded against ``c``."""
    cdef int64_t i
    for i in range(size >> 1):
        out[2 * i], out[2 * i + 1] = (
            src[4 * i] * c[0] - src[4 * i + 1] * c[1] + src[4 * i + 2] * c[2] - src[4 * i + 3] * c[3],
            src[4 * i] * c[1] + src[4 * i + 1] * c[0] + src[4 * i + 2] * c[3] + src[4 * i + 3] * c[2])


cdef void _leave_one_out(const double* partial, int64_t bits, const double* columns, int64_t first, double* fold,
                         double* mu) noexcept nogil:
    """``mu[q, a]`` (complex) for q in first..first+bits-1 from ``partial`` (2**bits complex over those qubits):
    ``partial`` with every other qubit folded away against its column.

    Two chains of folds are shared by all q: ``top[k]``, the qubits k.. folded from the top (2**k complex over
    qubits ..k-1), and ``bottom[k]``, the qubits ..k-1 folded from the bottom (2**(bits-k) over k..). Qubit t's
    entry then comes from ``top[t + 1]`` folded further from the bottom or ``bottom[t]`` from the top, whichever
    is smaller: about 2**(bits+1) products in all, not bits * 2**bits. ``fold`` holds 3 * 2**bits complex.
    """
    cdef double* top[64]
    cdef double* bottom[64]
    cdef double* spare = fold + 4 * ((<int64_t>1 << bits) - 2)  # two buffers of 2**(bits-1) complex, in turn
    cdef double* src
    cdef double* out
    cdef int64_t k, t, size, offset = 0
    cdef int e
    top[bits] = bottom[0] = <double*>partial
    for k in range(bits - 1, 0, -1):
        top[k] = fold + offset
        offset += 2 << k
        _fold_top(top[k + 1], <int64_t>2 << k, columns + 4 * (first + k), top[k])
    for k in range(1, bits):
        bottom[k] = fold + offset
        offset += 2 << (bits - k)
        _fold_bottom(bottom[k - 1], <int64_t>2 << (bits - k), columns + 4 * (first + k - 1), bottom[k])
    for t in range(bits):
        if t + 1 <= bits - t:  # from top[t + 1], over qubits 0..t: fold 0..t-1 from the bottom
            src = top[t + 1]
            size = <int64_t>2 << t
            for k in range(t):
                out = spare + (k & 1) * (<int64_t>1 << bits)
                _fold_bottom(src, size, columns + 4 * (first + k), out)
                src = out
                size >>= 1
        else:  # from bottom[t], over qubits t..bits-1: fold bits-1..t+1 from the top
            src = bottom[t]
            size = <int64_t>1 << (bits - t)
            for k in range(bits - 1, t, -1):
                out = spare + ((bits - 1 - k) & 1) * (<int64_t>1 << bits)
                _fold_top(src, size, columns + 4 * (first + k), out)
                src = out
                size >>= 1
        for e in range(4):
            mu[4 * (first + t) + e] = src[e]


cdef void _product_contractions(const real* lam, const int64_t* table, int64_t num_qubits, const double* columns,
                                double* work, double* mu) noexcept nogil:
    """``mu[q, a] = sum_{i: bit q = a} conj(lam[i]) prod_{p != q} columns[p, bit p of i]`` for every q; with a
    ``table`` (not NULL, a permutation's, linear over GF(2)) the same for ``lam[table[i]]``, read through it.

    ``work`` holds 7 * 2**ceil(n/2) complex (as doubles). Two passes over ``lam``, as in numba/adjoint.py.
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
    if QSIM_VECTOR_PASS and low_size >= 2:
        if real is float:
            qsim_contract_float(lam, table, low_size, high_size, low_vector, high_vector, low_partial, high_partial)
        else:
            qsim_contract_double(lam, table, low_size, high_size, low_vector, high_vector, low_partial, high_partial)
    else:
        for i in range(2 * low_size):
            low_partial[i] = 0
        for h in range(high_size):
            accr = 0
            acci = 0
            for i in range(low_size):
                f = 2 * (table[h * low_size + i] if table != NULL else h * low_size + i)
                lr = lam[f]
                li = -lam[f + 1]
                low_partial[2 * i] += lr * high_vector[2 * h] - li * high_vector[2 * h + 1]
                low_partial[2 * i + 1] += lr * high_vector[2 * h + 1] + li * high_vector[2 * h]
                accr += lr * low_vector[2 * i] - li * low_vector[2 * i + 1]
                acci += lr * low_vector[2 * i + 1] + li * low_vector[2 * i]
            high_partial[2 * h] = accr
            high_partial[2 * h + 1] = acci
    _leave_one_out(low_partial, low, columns, 0, work + 8 * high_size, mu)
    _leave_one_out(high_partial, num_qubits - low, columns, low, work + 8 * high_size, mu)


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
                                double* diagonal, double* probs, const real* before,
                                const int64_t* inverse) noexcept nogil:
    """Z-string expectations (as the forward pass computes them; not when ``values`` is NULL) and
    ``lam[l] = sum_k weights[l, k] Z_k psi``.

    With ``inverse`` (not NULL), psi is ``P before`` for the permutation ``P`` whose inverse table that is, and
    lambda is returned already taken back through it, ``P^dagger lam = (P^dagger Z P) before``: the diagonal
    read through the table (the same numbers as permuting lambda, for one pass less).
    """
    cdef int64_t i, j, lane
    cdef double* row
    if values != NULL:
        probabilities_into(psi, 0, n, probs)
        z_expectations_from_probabilities(probs, n, xmask, zmask, count, values)
    for lane in range(lanes):
        row = diagonal + lane * n
        _z_operator(row, n, zmask, count, weights + lane * count)
        if inverse != NULL:
            for i in range(n):
                j = inverse[i]
                lam[2 * (lane * n + i)] = <real>(row[j] * before[2 * i])
                lam[2 * (lane * n + i) + 1] = <real>(row[j] * before[2 * i + 1])
        else:
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


cdef void _conjugate_transposes(const real* u, int64_t count, real* out) noexcept nogil:
    """``out[g] = u[g]^dagger`` for ``count`` 4x4 complex matrices (32 reals each)."""
    cdef int64_t g, row, col
    for g in range(count):
        for row in range(4):
            for col in range(4):
                out[32 * g + 8 * row + 2 * col] = u[32 * g + 8 * col + 2 * row]
                out[32 * g + 8 * row + 2 * col + 1] = -u[32 * g + 8 * col + 2 * row + 1]


cdef struct AdjointBuffers:
    # one thread's buffers for the parameter sets it runs (see _adjoint_buffers)
    void* state
    void* scratch
    void* lam
    void* dagger
    double* doubles


cdef bint _adjoint_buffers(AdjointBuffers* buffers, int64_t num_qubits, int64_t lanes, int64_t uses1,
                           int64_t u1_stride, int64_t u2_stride, size_t real_bytes) noexcept nogil:
    """Allocate the buffers of :func:`_adjoint_row` into ``buffers``; False if one could not be."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t half = <int64_t>1 << (num_qubits - num_qubits // 2)
    buffers.state = malloc(2 * size * real_bytes)
    buffers.scratch = malloc(2 * size * real_bytes)
    buffers.lam = malloc((2 * size * lanes + 1) * real_bytes)
    # the current set's U^dagger of every two-qubit gate (u2_stride reals)
    buffers.dagger = malloc((u2_stride + 1) * real_bytes)
    # diagonal[L * n], probs[n], cross[64], columns[4 n], mu[4 n], work[14 * half],
    # slopes[8 * uses1 + 4 * G1] (the uses' slopes of one run, or the states along one initial run)
    buffers.doubles = <double*>malloc((size * (lanes + 1) + 64 + 8 * num_qubits + 14 * half + 8 * uses1
                                       + u1_stride // 2) * sizeof(double))
    return not (buffers.state == NULL or buffers.scratch == NULL or buffers.lam == NULL or buffers.dagger == NULL
                or buffers.doubles == NULL)


cdef void _free_adjoint_buffers(AdjointBuffers* buffers) noexcept nogil:
    free(buffers.state)
    free(buffers.scratch)
    free(buffers.lam)
    free(buffers.dagger)
    free(buffers.doubles)


cdef void _adjoint_row(int64_t b, const AdjointBuffers* buffers, real* u1, int64_t u1_stride, real* u2,
                       int64_t u2_stride, int64_t gates2, const RowFill* fill, const real* du1, int64_t du1_stride,
                       const real* du2, int64_t du2_stride, const double* slope1, const unsigned char* rotation1,
                       const double* slope2, const unsigned char* rotation2, int64_t num_qubits,
                       const int32_t* init_u1, const int8_t* kind, const int32_t* q0, const int32_t* q1,
                       const int32_t* arg, int64_t steps, const int64_t* run_start, const int32_t* run_gate,
                       const int64_t* perm_start, const int64_t* inverse_table,
                       const int64_t* forward_table, const int64_t* u1_use_start, const int64_t* u2_use_start,
                       const int64_t* xmask, const int64_t* zmask, const int64_t* ny, int64_t count,
                       const double* weights, int64_t lanes, double* values_out, double* grad_out, int64_t uses,
                       int64_t uses1, const real* initial, real* state_grad_out, int64_t first_state,
                       int64_t last_perm, bint z_only) noexcept nogil:
    """Parameter set ``b`` of :func:`_adjoint_small`, in the calling thread's ``buffers``: its rotation matrices
    filled into its rows of ``u1``/``u2`` by ``fill`` (the strides may be 0: every set on one copy), its
    ``gates2`` two-qubit gates' conjugate transposes formed, then the forward pass and the sweep back."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t half = <int64_t>1 << (num_qubits - num_qubits // 2)
    cdef int64_t s, lane, k, q, first
    cdef int8_t op
    cdef bint through_last, through_first, moves_lambda
    cdef real* state = <real*>buffers.state
    cdef real* scratch = <real*>buffers.scratch
    cdef real* lam = <real*>buffers.lam
    cdef real* dagger = <real*>buffers.dagger
    cdef double* doubles = buffers.doubles
    cdef real* psi
    cdef real* spare
    cdef real* lams  # the buffer lambda is in: for one lane a permutation swaps it with a spare
    cdef double* diagonal
    cdef double* probs
    cdef double* cross
    cdef double* columns
    cdef double* mu
    cdef double* work
    cdef double* slopes
    cdef double* grad
    diagonal = doubles
    probs = doubles + size * lanes
    cross = probs + size
    columns = cross + 64
    mu = columns + 4 * num_qubits
    work = mu + 4 * num_qubits
    slopes = work + 14 * half
    grad = grad_out + uses * lanes * b
    memset(grad, 0, uses * lanes * sizeof(double))  # the sweep adds into it
    lams = lam
    _fill_rotation_row(fill.params + fill.num_params * b, fill.rotations1, u1 + u1_stride * b)
    _fill_rotation_row(fill.params + fill.num_params * b, fill.rotations2, u2 + u2_stride * b)
    _conjugate_transposes(u2 + u2_stride * b, gates2, dagger)
    if initial != NULL:
        memcpy(state, initial + 2 * size * b, 2 * size * sizeof(real))
    else:
        init_product(state, u1 + u1_stride * b, run_start, run_gate, init_u1, 0, num_qubits)
    psi = apply_steps(state, scratch, size, 0, steps, kind, q0, q1, arg, u1 + u1_stride * b,
                      u2 + u2_stride * b, run_start, run_gate, perm_start, forward_table)
    spare = scratch if psi == state else state
    # a permutation last: lambda starts out already taken back through it, from psi's state before it, which
    # the spare buffer still holds (see last_perm)
    through_last = z_only and steps > 0 and kind[steps - 1] == PERM
    if z_only:
        _z_values_and_lambdas(psi, size, xmask, zmask, count, weights + lanes * count * b, lanes,
                              values_out + count * b if values_out != NULL else NULL, lams, diagonal, probs,
                              spare, inverse_table + perm_start[arg[steps - 1]] if through_last else NULL)
    else:
        for k in range(2 * size * lanes):
            lams[k] = 0
        for k in range(count):
            if values_out != NULL:
                values_out[count * b + k] = pauli_expectation(psi, 0, size, xmask[k], zmask[k], ny[k])
            for lane in range(lanes):
                if weights[(b * lanes + lane) * count + k] != 0:
                    _add_pauli(lams + 2 * size * lane, psi, size, xmask[k], zmask[k], ny[k],
                               weights[(b * lanes + lane) * count + k])
    s = steps - 1
    if through_last:
        spare, psi = psi, spare
        s -= 1
    # a permutation first, on the product state: the product layer reads lambda through it instead
    through_first = initial == NULL and s >= 0 and kind[0] == PERM
    while s >= 0:
        op = kind[s]
        if op == U1 and lanes > 0 and first_state <= s < first_state + 64:  # a layer would hold first_state
            first = _layer_start(kind, q0, s)
            if first <= first_state and first < s:
                _backward_u1_layer(psi, lams, lanes, size, first, s, q0, arg, u1 + u1_stride * b, du1 + du1_stride * b,
                                   slope1, rotation1, run_start, run_gate, u1_use_start, grad, uses, slopes)
                s = first - 1
                continue
        if op == U1 and s > 0 and kind[s - 1] == U1 and _backward_u1_pair(
                psi, lams, lanes, size, q0[s], arg[s], q0[s - 1], arg[s - 1], u1 + u1_stride * b,
                du1 + du1_stride * b, slope1, rotation1, run_start, run_gate, u1_use_start, grad, uses,
                s - 1 > first_state, cross, slopes):
            s -= 2
            continue
        if op == U1:
            _backward_u1(psi, lams, lanes, size, q0[s], u1 + u1_stride * b, du1 + du1_stride * b,
                         slope1, rotation1, run_start, run_gate, arg[s], u1_use_start, grad, uses,
                         s > first_state, cross, slopes)
        elif op == PERM:
            if s > first_state:
                if s != last_perm:
                    apply_permutation(spare, psi, size, inverse_table + perm_start[arg[s]])
                spare, psi = psi, spare
            moves_lambda = not (s == 0 and through_first)
            if moves_lambda and lanes == 1:
                apply_permutation(spare, lams, size, inverse_table + perm_start[arg[s]])
                spare, lams = lams, spare
            for lane in range(lanes if moves_lambda and lanes > 1 else 0):
                apply_permutation(spare, lams + 2 * size * lane, size,
                                  inverse_table + perm_start[arg[s]])
                memcpy(lams + 2 * size * lane, spare, 2 * size * sizeof(real))
        elif op == CNOT or op == SWAP:
            if s > first_state:
                apply_swap_pairs(psi, size, q0[s], q1[s], op == CNOT)
            for lane in range(lanes):
                apply_swap_pairs(lams + 2 * size * lane, size, q0[s], q1[s], op == CNOT)
        else:  # every two-qubit matrix kind reads its bound 4x4 through arg
            _backward_u2(psi, lams, lanes, size, q0[s], q1[s], u2 + u2_stride * b + 32 * arg[s],
                         dagger + 32 * arg[s], du2 + du2_stride * b, slope2, rotation2,
                         arg[s], u2_use_start, grad + uses1, uses, s > first_state, cross)
        s -= 1
    if state_grad_out != NULL:
        memcpy(state_grad_out + 2 * size * lanes * b, lams, 2 * size * lanes * sizeof(real))
    # lambda is now at the initial product state: contract each lambda against its factors, every
    # qubit at once (a program run on given initial states has no product layer)
    _initial_columns(u1 + u1_stride * b, run_start, run_gate, init_u1, num_qubits, columns)
    for lane in range(lanes if initial == NULL else 0):
        _product_contractions(lams + 2 * size * lane, inverse_table + perm_start[arg[0]] if through_first else NULL,
                              num_qubits, columns, work, mu)
        for q in range(num_qubits):
            if init_u1[q] >= 0 and _run_has_uses(run_start, run_gate, init_u1[q], u1_use_start):
                _initial_run_derivatives(u1 + u1_stride * b, du1 + du1_stride * b, slope1, rotation1,
                                         run_start, run_gate, init_u1[q], u1_use_start, mu + 4 * q,
                                         slopes, grad + uses * lane)


cdef void _adjoint_small(real* u1, int64_t u1_stride, real* u2, int64_t u2_stride, const RowFill* fill, bint alike,
                         const real* du1, int64_t du1_stride, const real* du2, int64_t du2_stride, const double* slope1,
                         const unsigned char* rotation1, const double* slope2, const unsigned char* rotation2,
                         int64_t batch,
                         int64_t num_qubits, const int32_t* init_u1, const int8_t* kind, const int32_t* q0,
                         const int32_t* q1, const int32_t* arg, int64_t steps, const int64_t* run_start,
                         const int32_t* run_gate, const int64_t* perm_start, const int64_t* inverse_table,
                         const int64_t* forward_table, const int64_t* u1_use_start, const int64_t* u2_use_start,
                         const int64_t* xmask, const int64_t* zmask, const int64_t* ny,
                         int64_t count, const double* weights, int64_t lanes, double* values_out, double* grad_out,
                         int64_t uses, int64_t uses1, const real* initial, real* state_grad_out, int num_threads,
                         int* failed) noexcept nogil:
    """Body of :func:`adjoint_packed`: per-thread buffers and a static loop over the batch (:func:`_adjoint_row`),
    in one parallel region, or on the calling thread when it is the only one (as :func:`_run_small` does: a
    parallel region also releases the GIL, which the driver keeps for short runs). With ``alike`` each thread runs
    every set on its own copy of row 0 of the gate matrices (as :func:`_run_small` does), so the batch may have
    more sets than the arrays have rows."""
    cdef int64_t b, s
    cdef real* gates = NULL
    # the gate matrices each set reads: its rows of u1/u2, or (alike) the thread's copy, at a stride of 0
    cdef real* rows1 = NULL
    cdef real* rows2 = NULL
    cdef int64_t stride1 = 0 if alike else u1_stride
    cdef int64_t stride2 = 0 if alike else u2_stride
    cdef bint z_only = True
    cdef bint ok = False
    cdef int64_t observable
    cdef AdjointBuffers own_buffers
    # NULL-initialised: Cython makes it firstprivate in the parallel region
    cdef AdjointBuffers* buffers = NULL
    # psi is undone only above the first step whose derivatives read it (the product layer's do not)
    cdef int64_t first_state = _first_state_step(kind, arg, steps, run_start, run_gate, u1_use_start, u2_use_start)
    # the forward writes each permutation's result to the other buffer and only the permutations do: after the
    # last one that buffer still holds the state before it, and the sweep back takes it as it is
    cdef int64_t last_perm = -1
    for s in range(steps):
        if kind[s] == PERM:
            last_perm = s
    for observable in range(count):
        z_only = z_only and xmask[observable] == 0
    if num_threads == 1 or batch == 1:
        gates = _own_gates(u1, u1_stride, u2, u2_stride) if alike else NULL
        rows1 = gates if alike else u1
        rows2 = gates + u1_stride if alike else u2
        if _adjoint_buffers(&own_buffers, num_qubits, lanes, uses1, u1_stride, u2_stride, sizeof(real)) and (
                gates != NULL or not alike):
            for b in range(batch):
                _adjoint_row(b, &own_buffers, rows1, stride1, rows2, stride2, u2_stride // 32, fill, du1, du1_stride,
                             du2, du2_stride, slope1, rotation1, slope2, rotation2, num_qubits, init_u1, kind, q0, q1,
                             arg, steps, run_start, run_gate, perm_start, inverse_table, forward_table,
                             u1_use_start, u2_use_start, xmask, zmask, ny, count, weights, lanes, values_out,
                             grad_out, uses, uses1, initial, state_grad_out, first_state, last_perm, z_only)
        else:
            failed[0] = 1
        _free_adjoint_buffers(&own_buffers)
        free(gates)
        return
    with parallel(num_threads=num_threads):
        buffers = <AdjointBuffers*>malloc(sizeof(AdjointBuffers))
        gates = _own_gates(u1, u1_stride, u2, u2_stride) if alike else NULL
        rows1 = gates if alike else u1
        rows2 = gates + u1_stride if alike else u2
        ok = buffers != NULL and _adjoint_buffers(buffers, num_qubits, lanes, uses1, u1_stride, u2_stride,
                                                  sizeof(real)) and (gates != NULL or not alike)
        # every thread must reach the worksharing loop (OpenMP), so a thread without buffers runs it too and only
        # flags its iterations as failed
        for b in prange(batch, schedule="static"):
            if not ok:
                failed[0] = 1
            else:
                _adjoint_row(b, buffers, rows1, stride1, rows2, stride2, u2_stride // 32, fill, du1, du1_stride, du2,
                             du2_stride, slope1, rotation1, slope2, rotation2, num_qubits, init_u1, kind, q0, q1, arg,
                             steps, run_start, run_gate, perm_start, inverse_table, forward_table,
                             u1_use_start, u2_use_start, xmask, zmask, ny, count, weights, lanes, values_out,
                             grad_out, uses, uses1, initial, state_grad_out, first_state, last_perm, z_only)
        if buffers != NULL:
            _free_adjoint_buffers(buffers)
        free(buffers)
        free(gates)


include "_adjoint_lanes.pxi"


cdef class AdjointProgram:
    """What :func:`pack_adjoint` checked once: an adjoint plan's step arrays as pointers, for repeated
    :func:`adjoint_packed` calls (the arrays are held here)."""
    cdef object arrays
    cdef int64_t num_qubits, steps, uses1, uses2, gates1, gates2
    cdef bint rotations_only  # every use is a rotation: the derivative matrices are never read
    cdef const double* slope1
    cdef const unsigned char* rotation1
    cdef const double* slope2
    cdef const unsigned char* rotation2
    cdef const int32_t* init_u1
    cdef const int8_t* kind
    cdef const int32_t* q0
    cdef const int32_t* q1
    cdef const int32_t* arg
    cdef const int64_t* run_start
    cdef const int32_t* run_gate
    cdef const int64_t* perm_start
    cdef const int64_t* inverse_table
    cdef const int64_t* forward_table
    cdef const int64_t* u1_use_start
    cdef const int64_t* u2_use_start


def pack_adjoint(const double complex[:, :, ::1] slope1, const unsigned char[::1] rotation1,
                 const double complex[:, :, ::1] slope2, const unsigned char[::1] rotation2, int num_qubits,
                 const int32_t[::1] init_u1, const int8_t[::1] kind, const int32_t[::1] q0, const int32_t[::1] q1,
                 const int32_t[::1] arg, const int64_t[::1] run_start, const int32_t[::1] run_gate,
                 const int64_t[::1] perm_start, const int64_t[::1] inverse_table, const int64_t[::1] forward_table,
                 const int64_t[::1] u1_use_start, const int64_t[::1] u2_use_start):
    """An adjoint plan's step arrays (``adjoint_small``'s arguments from ``slope1`` to ``u2_use_start`` in
    :func:`qsim_core.backends.numba.adjoint.adjoint_small`), checked once, for :func:`adjoint_packed`.

    Raises:
        ValueError: the arrays do not fit together.
    """
    if not 1 <= num_qubits <= 40:
        raise ValueError(f"bad num_qubits {num_qubits}")
    if q0.shape[0] < kind.shape[0] or q1.shape[0] < kind.shape[0] or arg.shape[0] < kind.shape[0] \
            or init_u1.shape[0] < num_qubits:
        raise ValueError("kind, q0, q1, arg need one entry per step and init_u1 one per qubit")
    if rotation1.shape[0] != slope1.shape[0] or rotation2.shape[0] != slope2.shape[0]:
        raise ValueError("slope1/rotation1 and slope2/rotation2 need one entry per use")
    if u1_use_start.shape[0] < 1 or u2_use_start.shape[0] < 1:
        raise ValueError("u1_use_start / u2_use_start need one entry per gate plus one")
    cdef AdjointProgram program = AdjointProgram.__new__(AdjointProgram)
    program.arrays = (slope1, rotation1, slope2, rotation2, init_u1, kind, q0, q1, arg, run_start, run_gate,
                      perm_start, inverse_table, forward_table, u1_use_start, u2_use_start)
    program.num_qubits = num_qubits
    program.steps = kind.shape[0]
    program.uses1 = slope1.shape[0]
    program.uses2 = slope2.shape[0]
    program.gates1 = u1_use_start.shape[0] - 1
    program.gates2 = u2_use_start.shape[0] - 1
    program.rotations_only = all(rotation1) and all(rotation2)
    program.slope1 = <const double*>&slope1[0, 0, 0]
    program.rotation1 = &rotation1[0]
    program.slope2 = <const double*>&slope2[0, 0, 0]
    program.rotation2 = &rotation2[0]
    program.init_u1 = &init_u1[0]
    program.kind = &kind[0]
    program.q0 = &q0[0]
    program.q1 = &q1[0]
    program.arg = &arg[0]
    program.run_start = &run_start[0]
    program.run_gate = &run_gate[0]
    program.perm_start = &perm_start[0]
    program.inverse_table = &inverse_table[0]
    program.forward_table = &forward_table[0]
    program.u1_use_start = &u1_use_start[0]
    program.u2_use_start = &u2_use_start[0]
    return program


cdef bint _in_lanes(AdjointProgram program, SmallProgram gates, PackedObservables observables, int64_t batch,
                    bint has_initial) noexcept:
    """Whether :func:`adjoint_packed` runs this call eight sets at a time (``_adjoint_lanes.pxi``): gate matrices
    with a lane plan (complex128), no initial states, ``LANE_CALL_SETS`` sets or more, every use a rotation (no
    derivative matrices to read), Z strings only."""
    cdef int64_t k
    if not gates.has_lanes or has_initial or batch < LANES_MIN_BATCH or not program.rotations_only \
            or program.uses2 != 0:
        return False
    for k in range(observables.count):
        if observables.xmask[k] != 0:
            return False
    return True


def adjoint_lane_path(AdjointProgram program not None, SmallProgram gates not None,
                      PackedObservables observables not None, int64_t batch, bint has_initial) -> bool:
    """Whether :func:`adjoint_packed` runs a call of ``batch`` sets of ``program`` with these gate matrices and
    observables (with initial states or not) eight sets at a time; the driver weighs its work by it."""
    return _in_lanes(program, gates, observables, batch, has_initial)


def adjoint_packed(AdjointProgram program not None, SmallProgram gates not None, const double[:, ::1] params,
                   const cplx[:, :, :, ::1] du1, const cplx[:, :, :, ::1] du2, PackedObservables observables not None,
                   const double[:, :, ::1] weights, double[:, ::1] values_out, double[:, :, ::1] grad_out,
                   const cplx[:, ::1] initial, cplx[:, :, ::1] state_grad_out, bint release_gil=True):
    """Expectations and adjoint derivatives for a batch of a single-block program (OpenMP over the batch).

    Same arguments and results as :func:`qsim_core.backends.numba.adjoint.adjoint_packed`: the plan's step arrays
    packed by :func:`pack_adjoint`, the program's gate-matrix arrays by :func:`pack_small` (the kernel fills the
    rotations of ``params[b]`` into their row b, just before running it) and the observables by
    :func:`pack_observables` (``initial``, ``state_grad_out`` and ``values_out`` with no rows when not used: then no
    expectations are computed); without the GIL if
    ``release_gil`` (as :func:`run_packed`). With gate matrices packed with ``refilled=False`` the batch may have
    more sets than their rows; ``du1`` and ``du2`` may have no rows when every use is a rotation. The calls
    :func:`adjoint_lane_path` names run eight sets at a time (``_adjoint_lanes.pxi``).

    Raises:
        ValueError: inconsistent shapes.
        MemoryError: the per-thread buffers could not be allocated.
    """
    cdef int64_t batch = params.shape[0]
    cdef int64_t count = observables.count
    cdef int64_t lanes = weights.shape[1]
    cdef int64_t uses1 = du1.shape[1]
    cdef int64_t uses = uses1 + du2.shape[1]
    cdef int failed = 0
    cdef RowFill fill
    # values_out with no rows: the expectations are not wanted (a vjp), and are not computed
    cdef bint has_values = values_out.shape[0] > 0
    if weights.shape[0] < batch or weights.shape[2] != count or has_values and values_out.shape[0] < batch \
            or values_out.shape[1] != count or grad_out.shape[0] < batch or grad_out.shape[1] != lanes \
            or grad_out.shape[2] != uses:
        raise ValueError("weights, values_out and grad_out do not match the batch, observables and uses")
    cdef bint single = False
    if cplx is cython.floatcomplex:  # a compile-time test: it cannot stand in an expression
        single = True
    if gates.single != single:
        raise ValueError("the gate matrices and du1/du2 must have the same precision")
    if batch > gates.batch and gates.refilled or params.shape[1] <= max(gates.rotations1.max_index,
                                                                        gates.rotations2.max_index):
        raise ValueError(f"params must have at most {gates.batch} rows (the gate matrices', unless packed with "
                         "refilled=False), and a column for every parameter the rotations use")
    # derivative matrices with no rows: not read, every use being a rotation (whose derivative is formed here)
    cdef bint no_derivatives = du1.shape[0] == 0 and du2.shape[0] == 0
    if no_derivatives and not program.rotations_only:
        raise ValueError("du1 and du2 may have no rows only when every use is a rotation")
    if not no_derivatives and (du1.shape[0] != batch or du2.shape[0] != batch and du2.shape[1]):
        raise ValueError("params, du1 and du2 must have the same batch size")
    if 8 * program.gates1 != gates.u1_stride or 32 * program.gates2 != gates.u2_stride:
        raise ValueError("u1_use_start / u2_use_start need one entry per gate plus one")
    if program.uses1 != uses1 or program.uses2 != uses - uses1:
        raise ValueError("slope1/rotation1 and slope2/rotation2 need one entry per use")
    cdef int64_t size = <int64_t>1 << program.num_qubits
    cdef bint has_initial = initial.shape[0] > 0
    cdef bint has_state_grad = state_grad_out.shape[0] > 0
    if has_initial and (initial.shape[0] < batch or initial.shape[1] != size):
        raise ValueError(f"initial must be [{batch}, {size}]")
    if has_state_grad and (state_grad_out.shape[0] < batch or state_grad_out.shape[1] != lanes
                           or state_grad_out.shape[2] != size):
        raise ValueError(f"state_grad_out must be [{batch}, {lanes}, {size}]")
    if batch == 0:
        return
    cdef int64_t du1_stride = 0 if no_derivatives else 8 * du1.shape[1]
    cdef int64_t du2_stride = 0 if no_derivatives else 32 * du2.shape[1]
    fill.params = &params[0, 0]
    fill.num_params = params.shape[1]
    fill.rotations1 = &gates.rotations1
    fill.rotations2 = &gates.rotations2
    cdef PyThreadState* released
    if cplx is cython.doublecomplex:
        if _in_lanes(program, gates, observables, batch, has_initial):
            if not _ensure_lane_scratch(gates, _threads, count):
                raise MemoryError("could not allocate the per-thread buffers")
            released = _release_gil(release_gil)
            _adjoint_lanes(&gates.lanes, gates.lane_scratch, &fill, <const double*>gates.u1,
                           0 if not gates.refilled else gates.u1_stride, gates.u1_stride // 8, batch,
                           program.num_qubits, program.init_u1, program.kind, program.arg, program.steps,
                           program.run_start, program.run_gate, program.u1_use_start, program.u2_use_start,
                           program.slope1, observables.xmask, observables.zmask, count, &weights[0, 0, 0], lanes,
                           &values_out[0, 0] if has_values else NULL, &grad_out[0, 0, 0], uses, uses1, _threads,
                           &failed)
            _take_gil_back(released)
            _check_allocated(failed)
            return
    released = _release_gil(release_gil)
    if cplx is cython.floatcomplex:
        _adjoint_small(<float*>gates.u1, gates.u1_stride, <float*>gates.u2, gates.u2_stride, &fill,
                       not gates.refilled, <const float*>&du1[0, 0, 0, 0], du1_stride,
                       <const float*>&du2[0, 0, 0, 0], du2_stride, program.slope1, program.rotation1,
                       program.slope2, program.rotation2, batch, program.num_qubits, program.init_u1, program.kind,
                       program.q0, program.q1, program.arg, program.steps, program.run_start, program.run_gate,
                       program.perm_start, program.inverse_table, program.forward_table,
                       program.u1_use_start, program.u2_use_start, observables.xmask, observables.zmask,
                       observables.ny, count, &weights[0, 0, 0], lanes,
                       &values_out[0, 0] if has_values else NULL, &grad_out[0, 0, 0],
                       uses, uses1, <const float*>&initial[0, 0] if has_initial else NULL,
                       <float*>&state_grad_out[0, 0, 0] if has_state_grad else NULL, _threads, &failed)
    else:
        _adjoint_small(<double*>gates.u1, gates.u1_stride, <double*>gates.u2, gates.u2_stride, &fill,
                       not gates.refilled, <const double*>&du1[0, 0, 0, 0], du1_stride,
                       <const double*>&du2[0, 0, 0, 0], du2_stride, program.slope1, program.rotation1,
                       program.slope2, program.rotation2, batch, program.num_qubits, program.init_u1, program.kind,
                       program.q0, program.q1, program.arg, program.steps, program.run_start, program.run_gate,
                       program.perm_start, program.inverse_table, program.forward_table,
                       program.u1_use_start, program.u2_use_start, observables.xmask, observables.zmask,
                       observables.ny, count, &weights[0, 0, 0], lanes,
                       &values_out[0, 0] if has_values else NULL, &grad_out[0, 0, 0],
                       uses, uses1, <const double*>&initial[0, 0] if has_initial else NULL,
                       <double*>&state_grad_out[0, 0, 0] if has_state_grad else NULL, _threads, &failed)
    _take_gil_back(released)
    _check_allocated(failed)
