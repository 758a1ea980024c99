# Adjoint differentiation eight parameter sets at a time: adjoint_packed's path for the programs the forward pass
# runs in lanes (_lanes.pxi), with every use a rotation and Z strings only, in calls of LANES_MIN_BATCH sets or more.
# Included by _adjoint.pxi.
#
# The forward pass is _lane_forward's. Lambda starts as D psi, D the weighted Z strings' diagonal over storage
# positions (a Walsh-Hadamard transform of the strings' weights). The sweep back goes through the plan's sweeps in
# reverse with the forward tuples: per sweep, one pass forms every step's cross matrix from the states as they come
# in (the steps act on distinct qubits, so the states after the sweep give the same cross matrices as those after
# each step) and takes lambda, and psi while an earlier derivative still reads it, back through the steps'
# conjugate transposes. Permutation steps move nothing, as in the forward pass. At the product state, lambda is
# contracted against every other qubit's factor (leave-one-out folds) for the initial runs' derivatives.
# Everything is vertical arithmetic on eight sets; what is computed is decided from the program (which cross
# entries a sweep's slopes can need: real and off-diagonal for lone RY-like rotations), so a set gets the same
# bits in any lane and any call.

cdef extern from *:
    r"""
    #if QSIM_LANES_BUILT
    /* out = a b for 2x2 complex matrices in lanes (8 vectors each, row-major complex as re, im) */
    static inline void qsim_lanes_mul2(const qsim_lane* a, const qsim_lane* b, qsim_lane* out) {
        for (int row = 0; row < 2; row++)
            for (int col = 0; col < 2; col++) {
                const qsim_lane* x = a + 4 * row;
                out[4 * row + 2 * col] = (x[0] * b[2 * col] - x[1] * b[2 * col + 1])
                                         + (x[2] * b[4 + 2 * col] - x[3] * b[5 + 2 * col]);
                out[4 * row + 2 * col + 1] = (x[0] * b[2 * col + 1] + x[1] * b[2 * col])
                                             + (x[2] * b[5 + 2 * col] + x[3] * b[4 + 2 * col]);
            }
    }
    /* out = m v for a 2x2 complex matrix and a complex 2-vector in lanes (8 and 4 vectors); out must not alias v */
    static inline void qsim_lanes_matvec2(const qsim_lane* m, const qsim_lane* v, qsim_lane* out) {
        for (int r = 0; r < 2; r++) {
            out[2 * r] = (m[4 * r] * v[0] - m[4 * r + 1] * v[1]) + (m[4 * r + 2] * v[2] - m[4 * r + 3] * v[3]);
            out[2 * r + 1] = (m[4 * r] * v[1] + m[4 * r + 1] * v[0]) + (m[4 * r + 2] * v[3] + m[4 * r + 3] * v[2]);
        }
    }
    /* out = the 2x2 complex matrix p (8 doubles, every set's) in lanes */
    static inline void qsim_lanes_broadcast2(const double* p, qsim_lane* out) {
        for (int e = 0; e < 8; e++)
            out[e] = (qsim_lane){0} + p[e];
    }
    /* out = m^dagger (8 vectors) */
    static inline void qsim_lanes_dagger(const double* m_, double* out_) {
        const qsim_lane* m = (const qsim_lane*)m_;
        qsim_lane* out = (qsim_lane*)out_;
        out[0] = m[0]; out[1] = -m[1]; out[2] = m[4]; out[3] = -m[5];
        out[4] = m[2]; out[5] = -m[3]; out[6] = m[6]; out[7] = -m[7];
    }
    /* the backward sweep of G steps over the sets' lambda, with the forward sweep's tuples: per tuple, every
       step's cross matrix with psi as both come in (C[a, b] = sum conj(lam[a]) psi[b], 8 vectors per step,
       row-major complex as re, im) summed into cross, then lambda through the daggers (8 vectors per step; REAL:
       real), last step first; KIND 0: the cross matrices only (lambda is not stored), 1: complex daggers, 2: real.
       CROSS says which entries the slopes can need: 1 Re C[0, 1] and Re C[1, 0], 2 every real part, 3 all (the
       others are left at 0). psi is only read: the cross matrices take it from memory, so that it need not stay
       in registers while lambda moves. DIAG: lambda is not read but formed as diag psi (diag: 2**n vectors), the
       first sweep back saving a pass. */
    #define QSIM_LANES_BACK(G, KIND, CROSS, DIAG)                                                               \
    static void qsim_lanes_back##G##_##KIND##_##CROSS##_##DIAG(const double* psi_, double* lam_,               \
                                                               const int32_t* tuples, int64_t count,           \
                                                               const double* daggers, double* cross,           \
                                                               const double* diag) {                           \
        const qsim_lane* psi = (const qsim_lane*)psi_;                                                         \
        const qsim_lane* d = (const qsim_lane*)diag;                                                           \
        qsim_lane* lam = (qsim_lane*)lam_;                                                                     \
        qsim_lane m[8 * G], acc[8 * G];                                                                        \
        memcpy(m, daggers, sizeof m);                                                                          \
        memset(acc, 0, sizeof acc);                                                                            \
        for (int64_t t = 0; t < count; t++) {                                                                  \
            const int32_t* at = tuples + (t << G);                                                             \
            qsim_lane lr[1 << G], li[1 << G];                                                                  \
            QSIM_UNROLL                                                                                        \
            for (int j = 0; j < (1 << G); j++) {                                                               \
                if (DIAG) {                                                                                    \
                    lr[j] = d[at[j]] * psi[2 * (int64_t)at[j]];                                                \
                    li[j] = d[at[j]] * psi[2 * (int64_t)at[j] + 1];                                            \
                } else {                                                                                       \
                    lr[j] = lam[2 * (int64_t)at[j]];                                                           \
                    li[j] = lam[2 * (int64_t)at[j] + 1];                                                       \
                }                                                                                              \
            }                                                                                                  \
            QSIM_UNROLL                                                                                        \
            for (int i = 0; i < G; i++) {                                                                      \
                qsim_lane* c = acc + 8 * i;                                                                    \
                QSIM_UNROLL                                                                                    \
                for (int j = 0; j < (1 << G); j++) {                                                           \
                    if ((j >> i) & 1)                                                                          \
                        continue;                                                                              \
                    int k = j | 1 << i;                                                                        \
                    const qsim_lane* pj = psi + 2 * (int64_t)at[j];                                            \
                    const qsim_lane* pk = psi + 2 * (int64_t)at[k];                                            \
                    c[2] += lr[j] * pk[0] + li[j] * pk[1];                                                     \
                    c[4] += lr[k] * pj[0] + li[k] * pj[1];                                                     \
                    if (CROSS >= 2) {                                                                          \
                        c[0] += lr[j] * pj[0] + li[j] * pj[1];                                                 \
                        c[6] += lr[k] * pk[0] + li[k] * pk[1];                                                 \
                    }                                                                                          \
                    if (CROSS == 3) {                                                                          \
                        c[1] += lr[j] * pj[1] - li[j] * pj[0];                                                 \
                        c[3] += lr[j] * pk[1] - li[j] * pk[0];                                                 \
                        c[5] += lr[k] * pj[1] - li[k] * pj[0];                                                 \
                        c[7] += lr[k] * pk[1] - li[k] * pk[0];                                                 \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
            if (KIND == 0)                                                                                     \
                continue;                                                                                      \
            QSIM_UNROLL                                                                                        \
            for (int i = G - 1; i >= 0; i--) {                                                                 \
                const qsim_lane* u = m + 8 * i;                                                                \
                QSIM_UNROLL                                                                                    \
                for (int j = 0; j < (1 << G); j++)                                                             \
                    if (!((j >> i) & 1))                                                                       \
                        QSIM_LANES_MIX(u, lr, li, j, j | 1 << i, KIND == 2);                                   \
            }                                                                                                  \
            QSIM_UNROLL                                                                                        \
            for (int j = 0; j < (1 << G); j++) {                                                               \
                lam[2 * (int64_t)at[j]] = lr[j];                                                               \
                lam[2 * (int64_t)at[j] + 1] = li[j];                                                           \
            }                                                                                                  \
        }                                                                                                      \
        memcpy(cross, acc, sizeof acc);                                                                        \
    }
    #define QSIM_LANES_BACKS(G, KIND)                                                                           \
    QSIM_LANES_BACK(G, KIND, 1, 0) QSIM_LANES_BACK(G, KIND, 2, 0) QSIM_LANES_BACK(G, KIND, 3, 0)                \
    QSIM_LANES_BACK(G, KIND, 1, 1) QSIM_LANES_BACK(G, KIND, 2, 1) QSIM_LANES_BACK(G, KIND, 3, 1)
    QSIM_LANES_BACKS(1, 0) QSIM_LANES_BACKS(2, 0) QSIM_LANES_BACKS(3, 0)
    QSIM_LANES_BACKS(1, 1) QSIM_LANES_BACKS(2, 1) QSIM_LANES_BACKS(3, 1)
    QSIM_LANES_BACKS(1, 2) QSIM_LANES_BACKS(2, 2) QSIM_LANES_BACKS(3, 2)
    typedef void (*qsim_lanes_back_fn)(const double*, double*, const int32_t*, int64_t, const double*, double*,
                                       const double*);
    #define QSIM_LANES_BACK_KIND(G, KIND)                                                                       \
        {{qsim_lanes_back##G##_##KIND##_1_0, qsim_lanes_back##G##_##KIND##_2_0, qsim_lanes_back##G##_##KIND##_3_0}, \
         {qsim_lanes_back##G##_##KIND##_1_1, qsim_lanes_back##G##_##KIND##_2_1, qsim_lanes_back##G##_##KIND##_3_1}}
    #define QSIM_LANES_BACK_WIDTH(G)                                                                            \
        {QSIM_LANES_BACK_KIND(G, 0), QSIM_LANES_BACK_KIND(G, 1), QSIM_LANES_BACK_KIND(G, 2)}
    static const qsim_lanes_back_fn qsim_lanes_backs[3][3][2][3] = {
        QSIM_LANES_BACK_WIDTH(1), QSIM_LANES_BACK_WIDTH(2), QSIM_LANES_BACK_WIDTH(3)};
    /* the backward sweep of width (1 to 3) steps over 2**n amplitudes (see QSIM_LANES_BACK; entries 1 to 3,
       lambda formed as diag psi when diag is not NULL); move 0: the cross matrices only, else lambda also goes
       back through the daggers (real: all real) */
    static void qsim_lanes_back(const double* psi, double* lam, int64_t n, int64_t width, const int32_t* tuples,
                                const double* daggers, double* cross, int move, int real, int entries,
                                const double* diag) {
        qsim_lanes_backs[width - 1][move ? 1 + (real != 0) : 0][diag != NULL][entries - 1]
            (psi, lam, tuples, ((int64_t)1 << n) >> width, daggers, cross, diag);
    }
    /* diagonal = the diagonal of sum_k weights[k] Z(masks[k]) over 2**n storage positions (masks: strings of
       storage positions; weights: a vector per string), a Walsh-Hadamard transform of the weights */
    static void qsim_lanes_diagonal(int64_t n, const int64_t* masks, const double* weights_, int64_t count,
                                    double* diagonal) {
        const qsim_lane* weights = (const qsim_lane*)weights_;
        qsim_lane* d = (qsim_lane*)diagonal;
        memset(d, 0, ((int64_t)1 << n) * sizeof(qsim_lane));
        for (int64_t k = 0; k < count; k++)
            d[masks[k]] += weights[k];
        for (int64_t level = 0; level < n; level += 3) {  /* D[x] = sum_m d[m] (-1)**popcount(x & m) */
            if (n - level == 1) qsim_lanes_walsh1(d, NULL, n, level);
            else if (n - level == 2) qsim_lanes_walsh2(d, NULL, n, level);
            else qsim_lanes_walsh3(d, NULL, n, level);
        }
    }
    /* lam = diagonal psi over 2**n amplitudes */
    static void qsim_lanes_scale(const double* diagonal, const double* psi_, int64_t n, double* lam_) {
        const qsim_lane* d = (const qsim_lane*)diagonal;
        const qsim_lane* psi = (const qsim_lane*)psi_;
        qsim_lane* lam = (qsim_lane*)lam_;
        for (int64_t x = 0; x < ((int64_t)1 << n); x++) {
            lam[2 * x] = d[x] * psi[2 * x];
            lam[2 * x + 1] = d[x] * psi[2 * x + 1];
        }
    }
    /* a run's uses' slopes (8 vectors each, in use order, as _run_slopes forms them; every use a rotation, its
       generator's slope1[u] 8 doubles): S_j G_j slope1[u] P_j after, a lone gate's slope1[u] itself; gates: 8
       vectors per u1 slot, after: the run's dagger. Returns 1 if a slope has an imaginary part in some lane, plus 2
       if one has a diagonal entry. */
    static int qsim_lanes_slopes(const double* gates_, const int64_t* run_start, const int32_t* run_gate,
                                 int64_t run, const int64_t* use_start, const double* slope1, const double* after,
                                 double* out_) {
        const qsim_lane* gates = (const qsim_lane*)gates_;
        qsim_lane* out = (qsim_lane*)out_;
        qsim_lane prefix[8], suffix[8], slope[8], tmp[8];
        int64_t last = run_start[run + 1] - 1;
        int alone = run_start[run] == last;
        qsim_lane imag = {0}, diag = {0};
        memcpy(prefix, after, sizeof prefix);
        for (int64_t k = run_start[run]; k <= last; k++) {
            int64_t g = run_gate[k];
            if (use_start[g + 1] > use_start[g] && k < last) {  /* the last gate's suffix is the identity */
                memcpy(suffix, gates + 8 * run_gate[last], sizeof suffix);
                for (int64_t k2 = last - 1; k2 > k; k2--) {
                    qsim_lanes_mul2(suffix, gates + 8 * run_gate[k2], tmp);
                    memcpy(suffix, tmp, sizeof tmp);
                }
            }
            for (int64_t u = use_start[g]; u < use_start[g + 1]; u++, out += 8) {
                qsim_lane generator[8];
                qsim_lanes_broadcast2(slope1 + 8 * u, generator);
                if (alone) {
                    memcpy(out, generator, sizeof generator);
                } else {
                    qsim_lanes_mul2(gates + 8 * g, generator, slope);
                    if (k < last) {
                        qsim_lanes_mul2(suffix, slope, tmp);
                        qsim_lanes_mul2(tmp, prefix, out);
                    } else {
                        qsim_lanes_mul2(slope, prefix, out);
                    }
                }
                for (int e = 1; e < 8; e += 2)
                    imag += out[e] * out[e];
                diag += out[0] * out[0] + out[1] * out[1] + out[6] * out[6] + out[7] * out[7];
            }
            if (k < last) {
                qsim_lanes_mul2(gates + 8 * g, prefix, tmp);
                memcpy(prefix, tmp, sizeof tmp);
            }
        }
        int flags = 0;
        for (int r = 0; r < 8; r++)
            flags |= (imag[r] != 0) | (diag[r] != 0) << 1;
        return flags;
    }
    /* values[i] = 2 Re sum(slopes[i] * cross) for count slopes (8 vectors each) and one cross matrix */
    static void qsim_lanes_contract_slopes(const double* slopes_, int64_t count, const double* cross_,
                                           double* values_) {
        const qsim_lane* slopes = (const qsim_lane*)slopes_;
        const qsim_lane* cross = (const qsim_lane*)cross_;
        qsim_lane* values = (qsim_lane*)values_;
        for (int64_t i = 0; i < count; i++) {
            const qsim_lane* s = slopes + 8 * i;
            qsim_lane sum = (s[0] * cross[0] - s[1] * cross[1]) + (s[2] * cross[2] - s[3] * cross[3])
                            + (s[4] * cross[4] - s[5] * cross[5]) + (s[6] * cross[6] - s[7] * cross[7]);
            values[i] = sum + sum;
        }
    }
    /* out[i] = src[i] c0 + src[i + size/2] c1 (complex as re, im vectors) for i < size/2 */
    static void qsim_lanes_fold_top(const qsim_lane* src, int64_t size, const qsim_lane* c, qsim_lane* out) {
        int64_t half = size >> 1;
        for (int64_t i = 0; i < half; i++) {
            qsim_lane ar = src[2 * i], ai = src[2 * i + 1], br = src[2 * (i + half)], bi = src[2 * (i + half) + 1];
            out[2 * i] = (ar * c[0] - ai * c[1]) + (br * c[2] - bi * c[3]);
            out[2 * i + 1] = (ar * c[1] + ai * c[0]) + (br * c[3] + bi * c[2]);
        }
    }
    /* out[i] = src[2 i] c0 + src[2 i + 1] c1 for i < size/2 */
    static void qsim_lanes_fold_bottom(const qsim_lane* src, int64_t size, const qsim_lane* c, qsim_lane* out) {
        for (int64_t i = 0; i < (size >> 1); i++) {
            qsim_lane ar = src[4 * i], ai = src[4 * i + 1], br = src[4 * i + 2], bi = src[4 * i + 3];
            out[2 * i] = (ar * c[0] - ai * c[1]) + (br * c[2] - bi * c[3]);
            out[2 * i + 1] = (ar * c[1] + ai * c[0]) + (br * c[3] + bi * c[2]);
        }
    }
    /* mu[q, a] for q in 0..bits-1 (4 vectors each) from partial (2**bits complex over those qubits): every other
       qubit folded away against its column, by _leave_one_out's two chains of folds (bits <= QSIM_LANES_HALF) */
    static void qsim_lanes_leave_one_out(qsim_lane* partial, int64_t bits, const qsim_lane* columns, qsim_lane* mu) {
        int64_t size = (int64_t)1 << bits;
        qsim_lane fold[6 << QSIM_LANES_HALF];
        qsim_lane* top[QSIM_LANES_HALF + 1];
        qsim_lane* bottom[QSIM_LANES_HALF + 1];
        qsim_lane* spare = fold + 4 * size;  /* two buffers of 2**(bits-1) complex, in turn */
        int64_t offset = 0;
        top[bits] = bottom[0] = partial;
        for (int64_t k = bits - 1; k > 0; k--) {
            top[k] = fold + offset;
            offset += (int64_t)2 << k;
            qsim_lanes_fold_top(top[k + 1], (int64_t)2 << k, columns + 4 * k, top[k]);
        }
        for (int64_t k = 1; k < bits; k++) {
            bottom[k] = fold + offset;
            offset += (int64_t)2 << (bits - k);
            qsim_lanes_fold_bottom(bottom[k - 1], (int64_t)2 << (bits - k), columns + 4 * (k - 1), bottom[k]);
        }
        for (int64_t t = 0; t < bits; t++) {
            const qsim_lane* src;
            if (t + 1 <= bits - t) {  /* from top[t + 1], over qubits 0..t: fold 0..t-1 from the bottom */
                src = top[t + 1];
                int64_t length = (int64_t)2 << t;
                for (int64_t k = 0; k < t; k++, length >>= 1) {
                    qsim_lane* out = spare + (k & 1) * size;
                    qsim_lanes_fold_bottom(src, length, columns + 4 * k, out);
                    src = out;
                }
            } else {  /* from bottom[t], over qubits t..bits-1: fold bits-1..t+1 from the top */
                src = bottom[t];
                int64_t length = (int64_t)1 << (bits - t);
                for (int64_t k = bits - 1; k > t; k--, length >>= 1) {
                    qsim_lane* out = spare + ((bits - 1 - k) & 1) * size;
                    qsim_lanes_fold_top(src, length, columns + 4 * k, out);
                    src = out;
                }
            }
            memcpy(mu + 4 * t, src, 4 * sizeof(qsim_lane));
        }
    }
    /* mu[q, a] = sum_{i: bit q of i = a} conj(lam[i]) prod_{p != q} columns[p, bit p of i] for every qubit q (4
       vectors each, as the columns: re, im of a = 0, then of a = 1), as _product_contractions forms them: one
       pass over lambda contracts the low half of the qubits against the high half's product state and the high
       against the low's, then each half's leave-one-out folds */
    static void qsim_lanes_contract(const double* lam_, int64_t n, const double* columns_, double* mu_) {
        const qsim_lane* lam = (const qsim_lane*)lam_;
        const qsim_lane* columns = (const qsim_lane*)columns_;
        qsim_lane* mu = (qsim_lane*)mu_;
        int64_t low = n / 2, low_size = (int64_t)1 << low, high_size = (int64_t)1 << (n - low);
        qsim_lane low_vector[2 << QSIM_LANES_HALF], high_vector[2 << QSIM_LANES_HALF];
        qsim_lane low_partial[2 << QSIM_LANES_HALF], high_partial[2 << QSIM_LANES_HALF];
        qsim_lanes_factor(low_vector, low, columns);
        qsim_lanes_factor(high_vector, n - low, columns + 4 * low);
        memset(low_partial, 0, 2 * low_size * sizeof(qsim_lane));
        for (int64_t h = 0; h < high_size; h++) {
            qsim_lane hr = high_vector[2 * h], hi = high_vector[2 * h + 1], accr = {0}, acci = {0};
            const qsim_lane* row = lam + 2 * low_size * h;
            for (int64_t i = 0; i < low_size; i++) {  /* conj(lam) times each vector */
                qsim_lane xr = row[2 * i], xi = row[2 * i + 1];
                low_partial[2 * i] += xr * hr + xi * hi;
                low_partial[2 * i + 1] += xr * hi - xi * hr;
                accr += xr * low_vector[2 * i] + xi * low_vector[2 * i + 1];
                acci += xr * low_vector[2 * i + 1] - xi * low_vector[2 * i];
            }
            high_partial[2 * h] = accr;
            high_partial[2 * h + 1] = acci;
        }
        qsim_lanes_leave_one_out(low_partial, low, columns, mu);
        qsim_lanes_leave_one_out(high_partial, n - low, columns + 4 * low, mu + 4 * low);
    }
    /* values (a vector per use, in use order) = 2 Re mu^T S_j G_j slope1[u] P_j |0> for the uses u of an initial
       run (on |0>), as _initial_run_derivatives forms them; mu: 4 vectors; states: 4 vectors per gate of the run */
    static void qsim_lanes_initial_slopes(const double* gates_, const int64_t* run_start, const int32_t* run_gate,
                                          int64_t run, const int64_t* use_start, const double* slope1,
                                          const double* mu, double* states_, double* values_) {
        const qsim_lane* gates = (const qsim_lane*)gates_;
        qsim_lane* states = (qsim_lane*)states_;
        qsim_lane* values = (qsim_lane*)values_;
        int64_t first = run_start[run], last = run_start[run + 1] - 1, after = 0;  /* uses of the gates after k */
        qsim_lane row[4], tmp[4];
        states[0] = (qsim_lane){0} + 1.0;
        states[1] = states[2] = states[3] = (qsim_lane){0};
        for (int64_t k = first; k < last; k++)
            qsim_lanes_matvec2(gates + 8 * run_gate[k], states + 4 * (k - first), states + 4 * (k + 1 - first));
        for (int64_t k = first; k <= last; k++)
            after += use_start[run_gate[k] + 1] - use_start[run_gate[k]];
        memcpy(row, mu, sizeof row);
        for (int64_t k = last; k >= first; k--) {
            int64_t g = run_gate[k];
            after -= use_start[g + 1] - use_start[g];
            const qsim_lane* m = gates + 8 * g;
            const qsim_lane* v = states + 4 * (k - first);
            for (int64_t u = use_start[g]; u < use_start[g + 1]; u++) {
                qsim_lane generator[8], d[4], s[4];
                qsim_lanes_broadcast2(slope1 + 8 * u, generator);
                qsim_lanes_matvec2(generator, v, d);  /* d = slope1[u] v, then s = G d */
                qsim_lanes_matvec2(m, d, s);
                qsim_lane sum = (row[0] * s[0] - row[1] * s[1]) + (row[2] * s[2] - row[3] * s[3]);
                values[after + u - use_start[g]] = sum + sum;
            }
            tmp[0] = (row[0] * m[0] - row[1] * m[1]) + (row[2] * m[4] - row[3] * m[5]);
            tmp[1] = (row[0] * m[1] + row[1] * m[0]) + (row[2] * m[5] + row[3] * m[4]);
            tmp[2] = (row[0] * m[2] - row[1] * m[3]) + (row[2] * m[6] - row[3] * m[7]);
            tmp[3] = (row[0] * m[3] + row[1] * m[2]) + (row[2] * m[7] + row[3] * m[6]);
            memcpy(row, tmp, sizeof row);
        }
    }
    #else
    static void qsim_lanes_dagger(const double* m, double* out) {}
    static void qsim_lanes_back(const double* psi, double* lam, int64_t n, int64_t width, const int32_t* tuples,
                                const double* daggers, double* cross, int move, int real, int entries,
                                const double* diag) {}
    static void qsim_lanes_diagonal(int64_t n, const int64_t* masks, const double* weights, int64_t count,
                                    double* diagonal) {}
    static void qsim_lanes_scale(const double* diagonal, const double* psi, int64_t n, double* lam) {}
    static int qsim_lanes_slopes(const double* gates, const int64_t* run_start, const int32_t* run_gate,
                                 int64_t run, const int64_t* use_start, const double* slope1, const double* after,
                                 double* out) { return 0; }
    static void qsim_lanes_contract_slopes(const double* slopes, int64_t count, const double* cross,
                                           double* values) {}
    static void qsim_lanes_contract(const double* lam, int64_t n, const double* columns, double* mu) {}
    static void qsim_lanes_initial_slopes(const double* gates, const int64_t* run_start, const int32_t* run_gate,
                                          int64_t run, const int64_t* use_start, const double* slope1,
                                          const double* mu, double* states, double* values) {}
    #endif
    """
    void qsim_lanes_dagger(const double* m, double* out) noexcept nogil
    void qsim_lanes_back(const double* psi, double* lam, int64_t n, int64_t width, const int32_t* tuples,
                         const double* daggers, double* cross, int move, int real, int entries,
                         const double* diag) noexcept nogil
    void qsim_lanes_diagonal(int64_t n, const int64_t* masks, const double* weights, int64_t count,
                             double* diagonal) noexcept nogil
    void qsim_lanes_scale(const double* diagonal, const double* psi, int64_t n, double* lam) noexcept nogil
    int qsim_lanes_slopes(const double* gates, const int64_t* run_start, const int32_t* run_gate, int64_t run,
                          const int64_t* use_start, const double* slope1, const double* after,
                          double* out) noexcept nogil
    void qsim_lanes_contract_slopes(const double* slopes, int64_t count, const double* cross,
                                    double* values) noexcept nogil
    void qsim_lanes_contract(const double* lam, int64_t n, const double* columns, double* mu) noexcept nogil
    void qsim_lanes_initial_slopes(const double* gates, const int64_t* run_start, const int32_t* run_gate,
                                   int64_t run, const int64_t* use_start, const double* slope1, const double* mu,
                                   double* states, double* values) noexcept nogil


cdef struct LaneAdjoint:
    # one thread's buffers for the sweep back of groups of eight sets (64-byte aligned; vectors of 8 doubles)
    double* lam  # per lambda 2**n amplitudes (a vector of real parts, then one of imaginary parts)
    double* weights  # per lambda a vector per string
    double* diagonals  # per lambda 2**n vectors: the diagonal lambda starts from (times psi)
    double* daggers  # a layer's dagger matrices: 8 vectors per step (at most one step per qubit)
    double* cross  # a sweep's cross matrices: 8 vectors per step
    double* slopes  # a layer's uses' slopes: 8 vectors per use
    double* values  # per use a vector: its derivatives
    double* mu  # per qubit 4 vectors
    double* states  # an initial run's states: 4 vectors per gate


cdef bint _lane_adjoint_buffers(LaneAdjoint* back, int64_t num_qubits, int64_t lambdas, int64_t count,
                                int64_t uses, int64_t gates) noexcept nogil:
    """Allocate ``back`` (``gates``: u1 gates, the longest run's bound); False if one buffer could not be."""
    cdef size_t vector = LANES * sizeof(double)
    cdef int64_t size = <int64_t>1 << num_qubits
    back.lam = <double*>qsim_lanes_alloc(2 * size * lambdas * vector)
    back.weights = <double*>qsim_lanes_alloc(lambdas * count * vector)
    back.diagonals = <double*>qsim_lanes_alloc(lambdas * size * vector)
    back.daggers = <double*>qsim_lanes_alloc(8 * max(num_qubits, LANES_SWEEP_MAX) * vector)
    back.cross = <double*>qsim_lanes_alloc(8 * LANES_SWEEP_MAX * vector)
    back.slopes = <double*>qsim_lanes_alloc(8 * uses * vector)
    back.values = <double*>qsim_lanes_alloc(uses * vector)
    back.mu = <double*>qsim_lanes_alloc(4 * num_qubits * vector)
    back.states = <double*>qsim_lanes_alloc(4 * (gates + 1) * vector)
    return not (back.lam == NULL or back.weights == NULL or back.diagonals == NULL or back.daggers == NULL
                or back.cross == NULL or back.slopes == NULL or back.values == NULL or back.mu == NULL
                or back.states == NULL)


cdef void _free_lane_adjoint_buffers(LaneAdjoint* back) noexcept nogil:
    free(back.lam)
    free(back.weights)
    free(back.diagonals)
    free(back.daggers)
    free(back.cross)
    free(back.slopes)
    free(back.values)
    free(back.mu)
    free(back.states)


cdef void _add_run_values(const double* values, const int64_t* run_start, const int32_t* run_gate, int64_t run,
                          const int64_t* use_start, int64_t active, double* grad, int64_t set_stride) noexcept nogil:
    """``grad[r * set_stride + u] += values[i][r]`` for the run's uses u (the vectors in use order) and the
    ``active`` lanes r."""
    cdef int64_t k, u, r
    cdef int64_t i = 0
    for k in range(run_start[run], run_start[run + 1]):
        for u in range(use_start[run_gate[k]], use_start[run_gate[k] + 1]):
            for r in range(active):
                grad[r * set_stride + u] += values[LANES * i + r]
            i += 1


cdef enum:
    LANES_LAYER_SLOTS = 16  # at least LANES_MAX_QUBITS: a layer's slots (its steps, on distinct qubits)


cdef int64_t _lane_layer_bottom(const LanePlan* plan, int64_t top, int64_t first_state) noexcept nogil:
    """The lowest sweep whose cross matrices the sweep back takes from the states after sweep ``top``: the highest
    sweep of ``top``'s layer that starts at or before ``first_state`` (no derivative below it reads psi, which
    then is not taken back through those sweeps at all: their cross matrices equal those after each sweep, since
    the layer's other sweeps act on other qubits); ``top`` itself where there is none."""
    cdef int64_t k = top
    while k > plan.sweep_layer[top] and plan.slot_step[plan.sweep_slot[k]] > first_state:
        k -= 1
    return k if plan.slot_step[plan.sweep_slot[k]] <= first_state else top


cdef void _adjoint_lane_group(int64_t first, int64_t active, const LanePlan* plan, const LaneBuffers* lanes,
                              const LaneAdjoint* back, const RowFill* fill, const double* u1, int64_t u1_stride,
                              int64_t gate_slots, int64_t num_qubits, const int32_t* init_u1, const int32_t* arg,
                              const int64_t* run_start, const int32_t* run_gate, const int64_t* use_start,
                              const double* slope1, const int64_t* stored_z, const int32_t* marginal_order,
                              int64_t count, const double* weights, int64_t lambdas, double* values_out,
                              double* grad_out, int64_t uses, int64_t first_state) noexcept nogil:
    """Sets ``first`` .. ``first + active - 1`` (active <= 8) of :func:`_adjoint_lanes`: the forward pass
    (:func:`_lane_forward`), the expectations when ``values_out`` is not NULL, lambda per weight row, the sweeps
    back, then the product state's derivatives."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t set_stride = uses * lambdas
    cdef int64_t s, l, r, k, q, j, run, used, slot, bottom, base
    cdef int flags
    cdef double* lam
    cdef const double* diagonal
    # per slot of a layer (at most one per qubit): its run's uses and where their slopes start; per sweep: the
    # cross entries its slopes need
    cdef int64_t run_uses[LANES_LAYER_SLOTS]
    cdef int64_t slope_at[LANES_LAYER_SLOTS]
    cdef int entries[LANES_LAYER_SLOTS]
    for r in range(active):
        memset(grad_out + set_stride * (first + r), 0, set_stride * sizeof(double))
    _lane_forward(first, active, plan, lanes, fill, num_qubits, u1, u1_stride, gate_slots, init_u1, arg, run_start,
                  run_gate)
    if values_out != NULL:
        _lane_z_values(lanes, num_qubits, stored_z, marginal_order, count, active, values_out + count * first)
    for l in range(lambdas):  # each lane's weights (the other lanes: the first set's); lambda = D psi
        for k in range(count):
            for r in range(LANES):
                back.weights[LANES * (count * l + k) + r] = weights[
                    count * (lambdas * (first + (r if r < active else 0)) + l) + k]
        qsim_lanes_diagonal(num_qubits, stored_z, back.weights + LANES * count * l, count,
                            back.diagonals + LANES * size * l)
        if plan.sweeps == 0:  # (else the first sweep back forms it)
            qsim_lanes_scale(back.diagonals + LANES * size * l, lanes.state, num_qubits,
                             back.lam + 2 * LANES * size * l)
    s = plan.sweeps - 1
    while s >= 0:
        bottom = _lane_layer_bottom(plan, s, first_state)
        base = plan.sweep_slot[bottom]
        used = 0
        for k in range(bottom, s + 1):  # the sweeps' daggers, uses, slopes and the cross entries those need
            flags = 0
            for slot in range(plan.sweep_slot[k], plan.sweep_slot[k] + plan.sweep_width[k]):
                qsim_lanes_dagger(lanes.mats + 8 * LANES * slot, back.daggers + 8 * LANES * (slot - base))
                run = arg[plan.slot_step[slot]]
                run_uses[slot - base] = _run_uses(run_start, run_gate, run, use_start)
                slope_at[slot - base] = used
                if run_uses[slot - base]:
                    flags |= qsim_lanes_slopes(lanes.gates, run_start, run_gate, run, use_start, slope1,
                                               back.daggers + 8 * LANES * (slot - base), back.slopes + 8 * LANES * used)
                    used += run_uses[slot - base]
            # a sweep without uses forms the cheapest cross matrices and reads none of them
            entries[k - bottom] = 3 if flags & SLOPES_IMAG else 2 if flags & SLOPES_DIAG else 1
        for l in range(lambdas):
            lam = back.lam + 2 * LANES * size * l
            diagonal = back.diagonals + LANES * size * l if s == plan.sweeps - 1 else NULL
            # the layer's lower sweeps' cross matrices from the states after it, before lambda moves; then the top
            # sweep's, as lambda goes back through it
            for j in range(s - bottom + 1):
                k = s - 1 - j if j < s - bottom else s  # s - 1, ..., bottom, then s
                qsim_lanes_back(lanes.state, lam, num_qubits, plan.sweep_width[k], plan.tuples + plan.sweep_tuples[k],
                                back.daggers + 8 * LANES * (plan.sweep_slot[k] - base), back.cross, k == s,
                                plan.sweep_real[k], entries[k - bottom], diagonal)
                for slot in range(plan.sweep_slot[k], plan.sweep_slot[k] + plan.sweep_width[k]):
                    if run_uses[slot - base]:
                        qsim_lanes_contract_slopes(back.slopes + 8 * LANES * slope_at[slot - base],
                                                   run_uses[slot - base],
                                                   back.cross + 8 * LANES * (slot - plan.sweep_slot[k]), back.values)
                        _add_run_values(back.values, run_start, run_gate, arg[plan.slot_step[slot]], use_start, active,
                                        grad_out + set_stride * first + uses * l, set_stride)
            for k in range(s - 1, bottom - 1, -1):  # lambda back through them (they commute: any order)
                qsim_lanes_sweep(lam, num_qubits, plan.sweep_width[k], plan.tuples + plan.sweep_tuples[k],
                                 back.daggers + 8 * LANES * (plan.sweep_slot[k] - base), plan.sweep_real[k])
        if plan.slot_step[base] > first_state:  # an earlier derivative reads psi (so the layer is sweep s alone)
            qsim_lanes_sweep(lanes.state, num_qubits, plan.sweep_width[s], plan.tuples + plan.sweep_tuples[s],
                             back.daggers + 8 * LANES * (plan.sweep_slot[s] - base), plan.sweep_real[s])
        s = bottom - 1
    # lambda is now at the product state, stored in basis order: every other qubit's factor contracted away
    for l in range(lambdas):
        qsim_lanes_contract(back.lam + 2 * LANES * size * l, num_qubits, lanes.columns, back.mu)
        for q in range(num_qubits):
            run = init_u1[q]
            if run >= 0 and _run_has_uses(run_start, run_gate, run, use_start):
                qsim_lanes_initial_slopes(lanes.gates, run_start, run_gate, run, use_start, slope1,
                                          back.mu + 4 * LANES * q, back.states, back.values)
                _add_run_values(back.values, run_start, run_gate, run, use_start, active,
                                grad_out + set_stride * first + uses * l, set_stride)


cdef void _adjoint_lanes(const LanePlan* plan, LaneBuffers* scratch, const RowFill* fill, const double* u1,
                         int64_t u1_stride, int64_t gate_slots, int64_t batch, int64_t num_qubits,
                         const int32_t* init_u1, const int8_t* kind, const int32_t* arg, int64_t steps,
                         const int64_t* run_start, const int32_t* run_gate, const int64_t* use_start,
                         const int64_t* u2_use_start, const double* slope1, const int64_t* xmask,
                         const int64_t* zmask, int64_t count, const double* weights, int64_t lambdas,
                         double* values_out, double* grad_out, int64_t uses, int64_t uses1, int num_threads,
                         int* failed) noexcept nogil:
    """:func:`_adjoint_small` for a program with a lane plan whose uses are all rotations, on Z strings (complex128,
    no initial states): the batch in groups of eight sets (:func:`_adjoint_lane_group`), a static loop over the
    groups in one parallel region (or on the calling thread when it is the only one), each thread on its
    ``scratch`` (:func:`_ensure_lane_scratch`) and sweep-back buffers of its own. ``u1_stride`` 0: every set's
    constant matrices in row 0."""
    cdef int64_t groups = (batch + LANES - 1) // LANES
    cdef int64_t g
    cdef int64_t first_state = _first_state_step(kind, arg, steps, run_start, run_gate, use_start, u2_use_start)
    cdef int64_t* stored_z = _stored_z(plan, num_qubits, xmask, zmask, count)
    cdef int32_t* marginal_order = NULL
    cdef LaneAdjoint own_back
    # NULL-initialised: Cython makes it firstprivate in the parallel region
    cdef LaneAdjoint* back = NULL
    cdef bint ok = False
    if stored_z == NULL:
        failed[0] = 1
        return
    if values_out != NULL:
        marginal_order = _marginal_order(stored_z, count, num_qubits)
    if num_threads == 1 or groups == 1:
        if _lane_adjoint_buffers(&own_back, num_qubits, lambdas, count, uses1, gate_slots):
            for g in range(groups):
                _adjoint_lane_group(LANES * g, min(LANES, batch - LANES * g), plan, scratch, &own_back, fill, u1,
                                    u1_stride, gate_slots, num_qubits, init_u1, arg, run_start, run_gate, use_start,
                                    slope1, stored_z, marginal_order, count, weights, lambdas, values_out, grad_out,
                                    uses, first_state)
        else:
            failed[0] = 1
        _free_lane_adjoint_buffers(&own_back)
    else:
        with parallel(num_threads=num_threads):
            back = <LaneAdjoint*>calloc(1, sizeof(LaneAdjoint))
            ok = back != NULL and _lane_adjoint_buffers(back, num_qubits, lambdas, count, uses1, gate_slots)
            # every thread must reach the worksharing loop (OpenMP): one without buffers flags its groups
            for g in prange(groups, schedule="static"):
                if not ok:
                    failed[0] = 1
                else:
                    _adjoint_lane_group(LANES * g, min(LANES, batch - LANES * g), plan, &scratch[threadid()], back,
                                        fill, u1, u1_stride, gate_slots, num_qubits, init_u1, arg, run_start,
                                        run_gate, use_start, slope1, stored_z, marginal_order, count, weights,
                                        lambdas, values_out, grad_out, uses, first_state)
            if back != NULL:
                _free_lane_adjoint_buffers(back)
            free(back)
    free(stored_z)
    free(marginal_order)
