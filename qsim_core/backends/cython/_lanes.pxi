# Eight parameter sets at once: the complex128 small-state path of run_packed for programs of U1 and permutation
# steps (the usual QML circuit: rotation layers and CNOT networks), in calls of LANES_MIN_BATCH sets or more.
# Included by _kernels.pyx.
#
# The per-set path (_run_small_row) runs one state after the other; its vectors hold neighbouring amplitudes of
# one state, so the low qubits' pairs and the permutation steps need shuffles and gathers. Here the vectors run
# across the batch instead: amplitude m of eight sets is one 64-byte vector of real parts and one of imaginary
# parts (lane r: set first + r), so every step is the same vertical arithmetic whatever its qubit, and nothing
# depends on which lane a set takes or which sets share its vectors: a set's results are those of its own lane,
# bit for bit, however the batch is cut into calls of LANES_MIN_BATCH sets or more. A group with fewer than
# eight sets fills the other lanes with its first set's matrices and drops what they compute.
#
# Permutation steps (PERM, CNOT, SWAP) move nothing: the plan (lane_plan, at pack time) follows where each
# basis state is stored and hands each sweep of up to three U1 steps its tuples of storage positions (eight
# amplitudes for three steps, ordered by the steps' qubits). Z strings are read through the same map: a Z string
# is a Z string of the storage positions too (the map is linear over GF(2)); independent ones come from halving
# folds in coordinates where each is one bit, any others from a Walsh-Hadamard transform of the probabilities.
# Probabilities, samples and Z-only shot estimates take each set's probabilities out in basis order (the eight
# alias tables paired at once), states and X/Y strings each set's state, then the per-set readouts follow.
#
# Whether a sweep takes the real path (four products of reals per pair instead of eight) is decided from the
# program, never from the values: RY-like rotations and real constants are real for every parameter, so every
# set of a call, and of every call, takes the same path through the same expressions.

cdef extern from *:
    r"""
    #include <stdint.h>
    #include <stdlib.h>
    #if defined(__GNUC__) || defined(__clang__)
    #define QSIM_LANES_BUILT 1
    typedef double qsim_lane __attribute__((vector_size(64)));  /* one amplitude's real (or imaginary) parts */
    /* the sweeps' loops over a tuple's amplitudes and steps, unrolled so that the tuple stays in registers */
    #ifdef __clang__
    #define QSIM_UNROLL _Pragma("clang loop unroll(full)")
    #else
    #define QSIM_UNROLL _Pragma("GCC unroll 8")
    #endif
    /* v[0:2**count] (complex, as re/im vector pairs) = the product state of count qubits, qubit k's first
       column at col[4k:4k+4] (c0 re, c0 im, c1 re, c1 im) */
    static void qsim_lanes_factor(qsim_lane* v, int64_t count, const qsim_lane* col) {
        v[0] = (qsim_lane){0} + 1.0;
        v[1] = (qsim_lane){0};
        for (int64_t k = 0; k < count; k++) {
            const qsim_lane* c = col + 4 * k;
            int64_t size = (int64_t)1 << k;
            for (int64_t i = 0; i < size; i++) {
                qsim_lane xr = v[2 * i], xi = v[2 * i + 1];
                v[2 * (i + size)] = xr * c[2] - xi * c[3];
                v[2 * (i + size) + 1] = xr * c[3] + xi * c[2];
                v[2 * i] = xr * c[0] - xi * c[1];
                v[2 * i + 1] = xr * c[1] + xi * c[0];
            }
        }
    }
    /* the product state of n <= 2 QSIM_LANES_HALF qubits as the outer product of its halves' */
    #define QSIM_LANES_HALF 5
    static void qsim_lanes_product(double* state, int64_t n, const double* columns) {
        qsim_lane* s = (qsim_lane*)state;
        const qsim_lane* col = (const qsim_lane*)columns;
        qsim_lane low[2 << QSIM_LANES_HALF], high[2 << QSIM_LANES_HALF];
        int64_t low_bits = n - n / 2;
        qsim_lanes_factor(low, low_bits, col);
        qsim_lanes_factor(high, n - low_bits, col + 4 * low_bits);
        for (int64_t h = 0; h < ((int64_t)1 << (n - low_bits)); h++) {
            qsim_lane hr = high[2 * h], hi = high[2 * h + 1];
            qsim_lane* out = s + (h << (low_bits + 1));
            for (int64_t j = 0; j < ((int64_t)1 << low_bits); j++) {
                qsim_lane lr = low[2 * j], li = low[2 * j + 1];
                out[2 * j] = lr * hr - li * hi;
                out[2 * j + 1] = lr * hi + li * hr;
            }
        }
    }
    /* amplitudes j and k (re[j], im[j]; re[k], im[k]) through the 2x2 u (8 vectors, row-major complex entries
       as re, im); REAL: u is real (its imaginary vectors are not read) */
    #define QSIM_LANES_MIX(u, re, im, j, k, REAL)                                                               \
    do {                                                                                                       \
        qsim_lane ar = re[j], ai = im[j], br = re[k], bi = im[k];                                              \
        if (REAL) {                                                                                            \
            re[j] = u[0] * ar + u[2] * br;                                                                     \
            im[j] = u[0] * ai + u[2] * bi;                                                                     \
            re[k] = u[4] * ar + u[6] * br;                                                                     \
            im[k] = u[4] * ai + u[6] * bi;                                                                     \
        } else {                                                                                               \
            re[j] = (u[0] * ar - u[1] * ai) + (u[2] * br - u[3] * bi);                                         \
            im[j] = (u[0] * ai + u[1] * ar) + (u[2] * bi + u[3] * br);                                         \
            re[k] = (u[4] * ar - u[5] * ai) + (u[6] * br - u[7] * bi);                                         \
            im[k] = (u[4] * ai + u[5] * ar) + (u[6] * bi + u[7] * br);                                         \
        }                                                                                                      \
    } while (0)
    /* one sweep of G steps: each tuple's 2**G amplitudes loaded once, step i mixing the pairs whose positions
       in the tuple differ in bit i (matrix i: 8 vectors, row-major complex entries as re, im), in step order;
       REAL: every matrix is real (the imaginary vectors are not read) */
    #define QSIM_LANES_SWEEP(G, REAL)                                                                           \
    static void qsim_lanes_sweep##G##_##REAL(double* state, const int32_t* tuples, int64_t count,              \
                                             const double* mats) {                                             \
        qsim_lane* s = (qsim_lane*)state;                                                                      \
        qsim_lane m[8 * G];                                                                                    \
        memcpy(m, mats, sizeof m);                                                                             \
        for (int64_t t = 0; t < count; t++) {                                                                  \
            const int32_t* at = tuples + (t << G);                                                             \
            qsim_lane re[1 << G], im[1 << G];                                                                  \
            QSIM_UNROLL                                                                                        \
            for (int j = 0; j < (1 << G); j++) {                                                               \
                re[j] = s[2 * (int64_t)at[j]];                                                                 \
                im[j] = s[2 * (int64_t)at[j] + 1];                                                             \
            }                                                                                                  \
            QSIM_UNROLL                                                                                        \
            for (int i = 0; i < G; i++) {                                                                      \
                const qsim_lane* u = m + 8 * i;                                                                \
                QSIM_UNROLL                                                                                    \
                for (int j = 0; j < (1 << G); j++) {                                                           \
                    if ((j >> i) & 1)                                                                          \
                        continue;                                                                              \
                    QSIM_LANES_MIX(u, re, im, j, j | 1 << i, REAL);                                            \
                }                                                                                              \
            }                                                                                                  \
            QSIM_UNROLL                                                                                        \
            for (int j = 0; j < (1 << G); j++) {                                                               \
                s[2 * (int64_t)at[j]] = re[j];                                                                 \
                s[2 * (int64_t)at[j] + 1] = im[j];                                                             \
            }                                                                                                  \
        }                                                                                                      \
    }
    QSIM_LANES_SWEEP(1, 0)
    QSIM_LANES_SWEEP(2, 0)
    QSIM_LANES_SWEEP(3, 0)
    QSIM_LANES_SWEEP(1, 1)
    QSIM_LANES_SWEEP(2, 1)
    QSIM_LANES_SWEEP(3, 1)
    /* a sweep of width (1 to 3) U1 steps over the 2**n amplitudes, on the real path if real */
    static void qsim_lanes_sweep(double* state, int64_t n, int64_t width, const int32_t* tuples, const double* mats,
                                 int real) {
        int64_t count = ((int64_t)1 << n) >> width;
        if (width == 1) (real ? qsim_lanes_sweep1_1 : qsim_lanes_sweep1_0)(state, tuples, count, mats);
        else if (width == 2) (real ? qsim_lanes_sweep2_1 : qsim_lanes_sweep2_0)(state, tuples, count, mats);
        else (real ? qsim_lanes_sweep3_1 : qsim_lanes_sweep3_0)(state, tuples, count, mats);
    }
    /* the Walsh-Hadamard butterflies of levels level .. level + W - 1 on 2**n vectors, each tuple of 2**W vectors
       loaded once; with state, the vectors are formed first, as its amplitudes' |a|**2 */
    #define QSIM_LANES_WALSH(W)                                                                                 \
    static void qsim_lanes_walsh##W(qsim_lane* p, const qsim_lane* state, int64_t n, int64_t level) {          \
        int64_t size = (int64_t)1 << n, h = (int64_t)1 << level, span = h << W;                                \
        for (int64_t high = 0; high < size; high += span)                                                      \
            for (int64_t low = 0; low < h; low++) {                                                            \
                int64_t base = high + low;                                                                     \
                qsim_lane v[1 << W];                                                                           \
                QSIM_UNROLL                                                                                    \
                for (int c = 0; c < (1 << W); c++) {                                                           \
                    int64_t at = base + c * h;                                                                 \
                    v[c] = state ? state[2 * at] * state[2 * at] + state[2 * at + 1] * state[2 * at + 1]        \
                                 : p[at];                                                                      \
                }                                                                                              \
                QSIM_UNROLL                                                                                    \
                for (int i = 0; i < W; i++) {                                                                  \
                    QSIM_UNROLL                                                                                \
                    for (int c = 0; c < (1 << W); c++) {                                                       \
                        if ((c >> i) & 1)                                                                      \
                            continue;                                                                          \
                        qsim_lane a = v[c], b = v[c | 1 << i];                                                 \
                        v[c] = a + b;                                                                          \
                        v[c | 1 << i] = a - b;                                                                 \
                    }                                                                                          \
                }                                                                                              \
                QSIM_UNROLL                                                                                    \
                for (int c = 0; c < (1 << W); c++)                                                             \
                    p[base + c * h] = v[c];                                                                    \
            }                                                                                                  \
    }
    QSIM_LANES_WALSH(1)
    QSIM_LANES_WALSH(2)
    QSIM_LANES_WALSH(3)
    /* values[8 k:8 k + 8] = the eight sets' <Z string masks[k]> (storage positions), for k < count: the
       probabilities' Walsh-Hadamard transform (probs: 2**n vectors of scratch) read at the masks */
    static void qsim_lanes_z(const double* state, int64_t n, double* probs, const int64_t* masks, int64_t count,
                             double* values) {
        qsim_lane* p = (qsim_lane*)probs;
        for (int64_t level = 0; level < n; level += 3) {
            const qsim_lane* from = level ? NULL : (const qsim_lane*)state;
            if (n - level == 1) qsim_lanes_walsh1(p, from, n, level);
            else if (n - level == 2) qsim_lanes_walsh2(p, from, n, level);
            else qsim_lanes_walsh3(p, from, n, level);
        }
        for (int64_t k = 0; k < count; k++)
            memcpy(values + 8 * k, p + masks[k], sizeof(qsim_lane));
    }
    #ifdef __clang__
    #define QSIM_LANES_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
    #else
    typedef long long qsim_lane_index __attribute__((vector_size(64)));
    #define QSIM_LANES_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (qsim_lane_index){__VA_ARGS__})
    #endif
    /* out[r][i] = in[i][r]: eight vectors turned into eight rows */
    static inline void qsim_lanes_transpose(const qsim_lane* in, qsim_lane* out) {
        qsim_lane t[8], u[8];
        for (int i = 0; i < 8; i += 2) {
            t[i] = QSIM_LANES_SHUFFLE(in[i], in[i + 1], 0, 8, 2, 10, 4, 12, 6, 14);
            t[i + 1] = QSIM_LANES_SHUFFLE(in[i], in[i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
        }
        for (int i = 0; i < 8; i += 4)
            for (int k = 0; k < 2; k++) {
                u[i + k] = QSIM_LANES_SHUFFLE(t[i + k], t[i + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
                u[i + k + 2] = QSIM_LANES_SHUFFLE(t[i + k], t[i + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
            }
        for (int k = 0; k < 4; k++) {
            out[k] = QSIM_LANES_SHUFFLE(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
            out[k + 4] = QSIM_LANES_SHUFFLE(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        }
    }
    /* rows[r * stride + 2 j], rows[r * stride + 2 j + 1] = amplitude j of lane r's state (stored at where[j]),
       for the lanes r < active */
    static void qsim_lanes_states(const double* state, int64_t n, const int32_t* where, double* rows,
                                  int64_t stride, int64_t active) {
        const qsim_lane* s = (const qsim_lane*)state;
        int64_t size = (int64_t)1 << n;
        qsim_lane in[8], out[8];
        if (size < 4) {
            for (int64_t j = 0; j < size; j++)
                for (int64_t r = 0; r < active; r++) {
                    rows[r * stride + 2 * j] = s[2 * where[j]][r];
                    rows[r * stride + 2 * j + 1] = s[2 * where[j] + 1][r];
                }
            return;
        }
        for (int64_t j = 0; j < size; j += 4) {
            for (int i = 0; i < 4; i++) {
                in[2 * i] = s[2 * where[j + i]];
                in[2 * i + 1] = s[2 * where[j + i] + 1];
            }
            qsim_lanes_transpose(in, out);
            for (int64_t r = 0; r < active; r++)
                memcpy(rows + r * stride + 2 * j, out + r, sizeof(qsim_lane));
        }
    }
    /* rows[r * stride + j] = |amplitude j|**2 of lane r's state, for the lanes r < active */
    static void qsim_lanes_probabilities(const double* state, int64_t n, const int32_t* where, double* rows,
                                         int64_t stride, int64_t active) {
        const qsim_lane* s = (const qsim_lane*)state;
        int64_t size = (int64_t)1 << n;
        qsim_lane in[8], out[8];
        for (int64_t j = 0; j < size; j += 8) {
            for (int i = 0; i < 8 && j + i < size; i++)
                in[i] = s[2 * where[j + i]] * s[2 * where[j + i]] + s[2 * where[j + i] + 1] * s[2 * where[j + i] + 1];
            if (size < 8) {
                for (int64_t r = 0; r < active; r++)
                    for (int64_t i = 0; i < size; i++)
                        rows[r * stride + i] = in[i][r];
                return;
            }
            qsim_lanes_transpose(in, out);
            for (int64_t r = 0; r < active; r++)
                memcpy(rows + r * stride + j, out + r, sizeof(qsim_lane));
        }
    }
    /* ones[k] = the eight sets' probability that bit k of y is 1, for the coordinates y of the basis states whose
       amplitudes are stored at order[y] (ones[n]: the total), by halving folds as _fold_marginals folds: the
       first from the state through order, the others in probs (2**(n-1) vectors of scratch); four partial sums
       per level, added pairwise */
    static void qsim_lanes_marginals(const double* state, int64_t n, const int32_t* order, double* probs,
                                     double* ones_) {
        const qsim_lane* s = (const qsim_lane*)state;
        qsim_lane* v = (qsim_lane*)probs;
        qsim_lane* ones = (qsim_lane*)ones_;
        int64_t half = (int64_t)1 << (n - 1);
        qsim_lane acc[4] = {{0}, {0}, {0}, {0}};
        for (int64_t y = 0; y < half; y++) {
            int64_t a = order[y], b = order[y + half];
            qsim_lane upper = s[2 * b] * s[2 * b] + s[2 * b + 1] * s[2 * b + 1];
            acc[y & 3] += upper;
            v[y] = (s[2 * a] * s[2 * a] + s[2 * a + 1] * s[2 * a + 1]) + upper;
        }
        ones[n - 1] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (int64_t level = n - 2; level >= 0; level--) {
            half >>= 1;
            for (int i = 0; i < 4; i++)
                acc[i] = (qsim_lane){0};
            for (int64_t i = 0; i < half; i++) {
                acc[i & 3] += v[half + i];
                v[i] += v[half + i];
            }
            ones[level] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        }
        ones[n] = v[0];
    }
    /* The eight sets' gate matrices, in lanes: ``gates`` holds 8 vectors per u1 slot (row-major complex entries as
       re, im). Compiled without contracting a * b + c into FMAs, as the per-set fill (qsim_fill_rotation_row)
       is, so that a rotation's matrix is the same bits whichever fills it. */
    static void qsim_sincos(const double* x, double* cosines, double* sines, int64_t n);
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC push_options
    #pragma GCC optimize ("fp-contract=off")
    #endif
    /* the rotation instances' matrices of sets first .. first + active - 1 (the other lanes: the first set's);
       scratch: 3 * 8 * count doubles */
    static void qsim_lanes_rotations(const double* params, int64_t num_params, int64_t first, int64_t active,
                                     const int64_t* index, const double* scale, const double* offset,
                                     const double* pauli, const int64_t* slot, int64_t count, int64_t terms,
                                     double* scratch, double* gates_) {
    #ifdef __clang__
        #pragma clang fp contract(off)
    #endif
        qsim_lane* gates = (qsim_lane*)gates_;
        double* halves = scratch;
        double* cosines = scratch + 8 * count;
        double* sines = scratch + 16 * count;
        for (int64_t k = 0; k < count; k++)
            for (int64_t r = 0; r < 8; r++) {
                const double* set = params + num_params * (first + (r < active ? r : 0));
                double angle = offset[k];
                for (int64_t t = 0; t < terms; t++)
                    if (scale[k * terms + t] != 0.0)
                        angle += set[index[k * terms + t]] * scale[k * terms + t];
                halves[8 * k + r] = 0.5 * angle;
            }
        qsim_sincos(halves, cosines, sines, 8 * count);
        for (int64_t k = 0; k < count; k++) {
            const double* p = pauli + 8 * k;
            qsim_lane c, s;
            memcpy(&c, cosines + 8 * k, sizeof c);
            memcpy(&s, sines + 8 * k, sizeof s);
            qsim_lane* m = gates + 8 * slot[k];
            for (int e = 0; e < 8; e += 2) {  /* -i s (pr + i pi) = s pi - i s pr, plus c on the diagonal */
                m[e] = s * p[e + 1];
                m[e + 1] = s * -p[e];
            }
            m[0] = c + m[0];
            m[6] = c + m[6];
        }
    }
    /* the first `columns` (1 or 2) columns of a fused run's product of 2x2 matrices (first gate rightmost) into
       m[8], as fused_columns forms them */
    static void qsim_lanes_fused(const double* gates_, const int64_t* run_start, const int32_t* run_gate,
                                 int64_t run, double* m_, int columns) {
    #ifdef __clang__
        #pragma clang fp contract(off)
    #endif
        const qsim_lane* gates = (const qsim_lane*)gates_;
        qsim_lane* m = (qsim_lane*)m_;
        qsim_lane r[8];
        memcpy(m, gates + 8 * run_gate[run_start[run]], 8 * sizeof(qsim_lane));
        for (int64_t k = run_start[run] + 1; k < run_start[run + 1]; k++) {
            const qsim_lane* a = gates + 8 * run_gate[k];
            for (int row = 0; row < 2; row++)
                for (int col = 0; col < columns; col++) {
                    qsim_lane re0 = a[4 * row] * m[2 * col] - a[4 * row + 1] * m[2 * col + 1];
                    qsim_lane im0 = a[4 * row] * m[2 * col + 1] + a[4 * row + 1] * m[2 * col];
                    qsim_lane re1 = a[4 * row + 2] * m[4 + 2 * col] - a[4 * row + 3] * m[5 + 2 * col];
                    qsim_lane im1 = a[4 * row + 2] * m[5 + 2 * col] + a[4 * row + 3] * m[4 + 2 * col];
                    r[4 * row + 2 * col] = re0 + re1;
                    r[4 * row + 2 * col + 1] = im0 + im1;
                }
            for (int row = 0; row < 2; row++)
                for (int col = 0; col < columns; col++) {
                    m[4 * row + 2 * col] = r[4 * row + 2 * col];
                    m[4 * row + 2 * col + 1] = r[4 * row + 2 * col + 1];
                }
        }
    }
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC pop_options
    #endif
    #else
    #define QSIM_LANES_BUILT 0
    #define QSIM_LANES_HALF 5
    static void qsim_lanes_product(double* state, int64_t n, const double* columns) {}
    static void qsim_lanes_sweep(double* state, int64_t n, int64_t width, const int32_t* tuples, const double* mats,
                                 int real) {}
    static void qsim_lanes_z(const double* state, int64_t n, double* probs, const int64_t* masks, int64_t count,
                             double* values) {}
    static void qsim_lanes_states(const double* state, int64_t n, const int32_t* where, double* rows,
                                  int64_t stride, int64_t active) {}
    static void qsim_lanes_probabilities(const double* state, int64_t n, const int32_t* where, double* rows,
                                         int64_t stride, int64_t active) {}
    static void qsim_lanes_rotations(const double* params, int64_t num_params, int64_t first, int64_t active,
                                     const int64_t* index, const double* scale, const double* offset,
                                     const double* pauli, const int64_t* slot, int64_t count, int64_t terms,
                                     double* scratch, double* gates) {}
    static void qsim_lanes_marginals(const double* state, int64_t n, const int32_t* order, double* probs,
                                     double* ones_) {}
    static void qsim_lanes_fused(const double* gates, const int64_t* run_start, const int32_t* run_gate,
                                 int64_t run, double* m, int columns) {}
    #endif
    /* 64-byte aligned scratch (NULL on failure; free with free) */
    static void* qsim_lanes_alloc(size_t bytes) {
        void* p = NULL;
        return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
    }
    """
    bint _LANES_BUILT "QSIM_LANES_BUILT"
    int64_t LANES_MAX_QUBITS "(2 * QSIM_LANES_HALF)"  # the product's halves are stack tables of 2**5 amplitudes
    void qsim_lanes_product(double* state, int64_t n, const double* columns) noexcept nogil
    void qsim_lanes_sweep(double* state, int64_t n, int64_t width, const int32_t* tuples, const double* mats,
                          int real) noexcept nogil
    void qsim_lanes_z(const double* state, int64_t n, double* probs, const int64_t* masks, int64_t count,
                      double* values) noexcept nogil
    void qsim_lanes_states(const double* state, int64_t n, const int32_t* where, double* rows, int64_t stride,
                           int64_t active) noexcept nogil
    void qsim_lanes_probabilities(const double* state, int64_t n, const int32_t* where, double* rows,
                                  int64_t stride, int64_t active) noexcept nogil
    void qsim_lanes_rotations(const double* params, int64_t num_params, int64_t first, int64_t active,
                              const int64_t* index, const double* scale, const double* offset, const double* pauli,
                              const int64_t* slot, int64_t count, int64_t terms, double* scratch,
                              double* gates) noexcept nogil
    void qsim_lanes_fused(const double* gates, const int64_t* run_start, const int32_t* run_gate, int64_t run,
                          double* m, int columns) noexcept nogil
    void qsim_lanes_marginals(const double* state, int64_t n, const int32_t* order, double* probs,
                              double* ones) noexcept nogil
    void* qsim_lanes_alloc(size_t bytes) noexcept nogil


cdef enum:
    LANES = 8  # parameter sets per group (a 64-byte vector of doubles)
    LANES_SWEEP_MAX = 3  # U1 steps one sweep applies (2**3 amplitudes, 16 vectors, stay in registers)
    LANES_MIN_BATCH = 6  # calls of fewer sets take the per-set path (a group costs the same whatever it holds)


#: the fewest sets a call runs eight at a time (fewer take the per-set path, whose last bits may differ)
LANE_CALL_SETS = LANES_MIN_BATCH


cdef struct LanePlan:
    # lane_plan's arrays as pointers (held by the SmallProgram)
    int64_t sweeps, slots
    const int64_t* sweep_width  # [sweeps] U1 steps in the sweep
    const int64_t* sweep_slot  # [sweeps] its first step's slot (slots number the U1 steps in order)
    const int64_t* sweep_tuples  # [sweeps] offset of its tuples in ``tuples``
    const int32_t* tuples
    const int32_t* sweep_real  # [sweeps] 1 where every step's matrix is real for every parameter
    const int32_t* slot_step  # [slots] the step of each slot
    const int32_t* where  # [2**n] the storage position of each basis state after the last step
    const int64_t* stored  # [n] the basis state stored at position 2**b after the last step
    int64_t constants  # u1 slots that are not rotations
    const int32_t* constant_slot
    const int64_t* sweep_layer  # [sweeps] the first sweep of its layer (sweeps adjacent on distinct qubits)


def _lane_tuples(index, where, qubits):
    """A sweep's tuples: per basis state j with the ``qubits`` clear, the positions of ``j | combo`` for the
    2**len(qubits) combos (bit i standing for qubits[i]), rows in order of their first position."""
    combos = np.zeros(1 << len(qubits), dtype=np.int64)
    for i, qubit in enumerate(qubits):
        combos[(np.arange(combos.size) >> i & 1) == 1] |= 1 << qubit
    bases = index[(index & sum(1 << qubit for qubit in qubits)) == 0]
    rows = where[bases[:, None] | combos[None, :]]
    return rows[np.argsort(rows[:, 0], kind="stable")].astype(np.int32).ravel()


def lane_plan(int num_qubits, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table, tuple rotations1,
              u1_row, bint refilled):
    """The eight-set path's plan for a single-block complex128 program, or None where that path does not apply.

    Applies to programs whose steps are U1, PERM, CNOT and SWAP only, on 1 to ``LANES_MAX_QUBITS`` qubits.
    Returns ``(sweep_width, sweep_slot, sweep_tuples, sweep_real, tuples, slot_step, where, stored, constants,
    sweep_layer)``: the U1 steps in sweeps of up to three consecutive steps on distinct qubits with no permutation
    between, each sweep's tuples (int32, ``2**n >> width`` rows of ``2**width`` storage positions, see
    :func:`_lane_tuples`), whether each of its steps' fused matrices is real for every parameter (rotations about
    Y, and constant ``u1_row`` entries with no imaginary part in a program whose constants are the same for every
    set), the storage map after the last step (``where[j]`` holds basis state j, position ``2**b`` holds basis
    state ``stored[b]``), the u1 slots that are not rotations (then a 0 the kernels do not read), and per sweep
    the first sweep of its layer (consecutive sweeps with no step between them, on distinct qubits: the adjoint
    takes their cross matrices from the states after the layer).
    """
    if not _LANES_BUILT or not 1 <= num_qubits <= LANES_MAX_QUBITS:  # states up to 128 KiB per group
        return None
    kind, q0, q1, arg = (np.asarray(a) for a in (kind, q0, q1, arg))
    run_start, run_gate, perm_start, perm_table = (np.asarray(a) for a in (run_start, run_gate, perm_start,
                                                                              perm_table))
    if not np.isin(kind, (U1, PERM, CNOT, SWAP)).all():
        return None
    index = np.arange(1 << num_qubits, dtype=np.int64)
    bit = 1 << np.arange(num_qubits, dtype=np.int64)
    where = index.copy()
    pauli = np.asarray(rotations1[3])
    matrices = np.asarray(u1_row)
    # c I - i s P is real where P's entries are imaginary; a rotation's slot holds nothing yet (the kernels fill it)
    rotation_real = {int(gate): not np.any(pauli[k].real) for k, gate in enumerate(np.asarray(rotations1[4]))}
    real_gate = [rotation_real[gate] if gate in rotation_real else not refilled and not np.any(matrices[gate].imag)
                 for gate in range(matrices.shape[0])]
    widths, first_slots, offsets, reals, tuples, slot_step, layers = [], [], [], [], [], [], []
    sweep = []  # the open sweep's steps
    follows = False  # whether the open sweep starts right after the last one, with no step between
    layer_first = 0
    layer_qubits = set()
    for k in range(kind.shape[0] + 1):
        if k < kind.shape[0] and kind[k] == U1 and len(sweep) < min(LANES_SWEEP_MAX, num_qubits) and all(
                q0[step] != q0[k] for step in sweep):
            sweep.append(k)
            continue
        if sweep:
            qubits = {int(q0[step]) for step in sweep}
            if not follows or qubits & layer_qubits:
                layer_qubits = set()
                layer_first = len(widths)
            layer_qubits |= qubits
            layers.append(layer_first)
            widths.append(len(sweep))
            first_slots.append(len(slot_step))
            offsets.append(sum(t.size for t in tuples))
            tuples.append(_lane_tuples(index, where, [int(q0[step]) for step in sweep]))
            reals.append(all(real_gate[run_gate[g]] for step in sweep
                             for g in range(run_start[arg[step]], run_start[arg[step] + 1])))
            slot_step.extend(sweep)
            follows = k < kind.shape[0] and kind[k] == U1
            sweep = [k] if follows else []
        if k == kind.shape[0] or kind[k] == U1:
            continue
        if kind[k] == PERM:
            table = perm_table[perm_start[arg[k]]:perm_start[arg[k] + 1]]
        elif kind[k] == CNOT:
            table = index ^ (((index >> q0[k]) & 1) << q1[k])
        else:
            table = index ^ ((((index >> q0[k]) ^ (index >> q1[k])) & 1) * ((1 << q0[k]) | (1 << q1[k])))
        where = where[table]  # the new state's basis state j is the old state's table[j]
    # Z strings of positions stand for Z strings of basis states where the map is linear over GF(2), as the
    # permutation steps' tables are
    if not np.array_equal(where, np.bitwise_xor.reduce(np.where(index[:, None] & bit, where[bit], 0), axis=1)):
        return None
    constants = [gate for gate in range(matrices.shape[0]) if gate not in rotation_real]
    return (np.asarray(widths, np.int64), np.asarray(first_slots, np.int64), np.asarray(offsets, np.int64),
            np.asarray(reals, np.int32), np.concatenate(tuples) if tuples else np.zeros(1, np.int32),
            np.asarray(slot_step, np.int32), where.astype(np.int32), np.argsort(where)[bit].astype(np.int64),
            np.asarray(constants + [0], np.int32), np.asarray(layers, np.int64))


cdef struct LaneBuffers:
    # one thread's scratch for groups of eight sets (64-byte aligned)
    double* state  # 2**n amplitudes: a vector of real parts, then one of imaginary parts
    double* probs  # 2**n vectors
    double* mats  # per slot its fused 2x2: 8 vectors
    double* columns  # per qubit its initial column: 4 vectors
    double* values  # per Z string a vector (or per qubit one, and the total)
    double* rows  # the eight sets' states (2 * 2**n reals each) or probabilities (2**n each) in basis order
    double* gates  # per u1 slot its matrix: 8 vectors
    double* angles  # the rotations' half angles, cosines and sines: 3 vectors each
    double* fused  # a fused run's 2x2: 8 vectors
    uint64_t* tables  # the eight sets' alias tables, 2**n + 1 entries each
    int64_t* orders  # their pairings' scratch, 2**n each
    int64_t* excesses


cdef bint _lane_buffers(LaneBuffers* lanes, int64_t size, int64_t slots, int64_t num_qubits, int64_t count,
                        int64_t gates, int64_t rotations) noexcept nogil:
    """Allocate ``lanes``; False if one of its buffers could not be."""
    cdef size_t vector = LANES * sizeof(double)
    lanes.gates = <double*>qsim_lanes_alloc(8 * gates * vector)
    lanes.angles = <double*>qsim_lanes_alloc(3 * rotations * vector)
    lanes.fused = <double*>qsim_lanes_alloc(8 * vector)
    lanes.tables = <uint64_t*>qsim_lanes_alloc((size + 1) * vector)
    lanes.orders = <int64_t*>qsim_lanes_alloc(size * vector)
    lanes.excesses = <int64_t*>qsim_lanes_alloc(size * vector)
    lanes.state = <double*>qsim_lanes_alloc(2 * size * vector)
    lanes.probs = <double*>qsim_lanes_alloc(size * vector)
    lanes.mats = <double*>qsim_lanes_alloc(8 * slots * vector)
    lanes.columns = <double*>qsim_lanes_alloc(4 * num_qubits * vector)
    lanes.values = <double*>qsim_lanes_alloc((count + num_qubits + 1) * vector)
    lanes.rows = <double*>qsim_lanes_alloc(2 * size * vector)
    return not (lanes.state == NULL or lanes.probs == NULL or lanes.mats == NULL or lanes.columns == NULL
                or lanes.values == NULL or lanes.rows == NULL or lanes.gates == NULL or lanes.angles == NULL
                or lanes.fused == NULL or lanes.tables == NULL or lanes.orders == NULL or lanes.excesses == NULL)


cdef void _free_lane_buffers(LaneBuffers* lanes) noexcept nogil:
    free(lanes.state)
    free(lanes.probs)
    free(lanes.mats)
    free(lanes.columns)
    free(lanes.values)
    free(lanes.rows)
    free(lanes.gates)
    free(lanes.angles)
    free(lanes.fused)
    free(lanes.tables)
    free(lanes.orders)
    free(lanes.excesses)


cdef void _lane_forward(int64_t first, int64_t active, const LanePlan* plan, const LaneBuffers* lanes,
                       const RowFill* fill, int64_t num_qubits, const double* u1, int64_t u1_stride,
                       int64_t gate_slots, const int32_t* init_u1, const int32_t* arg, const int64_t* run_start,
                       const int32_t* run_gate) noexcept nogil:
    """Sets ``first`` .. ``first + active - 1`` (active <= 8) forward into ``lanes.state``: each set's matrices
    (its rotations filled first when ``fill`` is not NULL) into its lane of ``lanes.gates``, the fused runs into
    ``lanes.columns`` (the product state's factors) and ``lanes.mats`` (the sweeps'), the product state, the sweeps.
    The other lanes take the first set's matrices."""
    cdef int64_t r, q, c, slot, e, s
    cdef double* m = lanes.fused
    cdef const double* row
    if fill != NULL:
        qsim_lanes_rotations(fill.params, fill.num_params, first, active, fill.rotations1.index,
                             fill.rotations1.scale, fill.rotations1.offset, fill.rotations1.pauli,
                             fill.rotations1.slot, fill.rotations1.count, fill.rotations1.terms, lanes.angles,
                             lanes.gates)
    # the matrices the rows hold: all ``gate_slots`` without ``fill``, else the constants' (for the whole batch in
    # row 0 when the rows share it: u1_stride 0)
    for c in range(gate_slots if fill == NULL else plan.constants):
        slot = c if fill == NULL else plan.constant_slot[c]
        for r in range(LANES):
            row = u1 + u1_stride * (first + (r if r < active else 0)) + 8 * slot
            for e in range(8):
                lanes.gates[LANES * (8 * slot + e) + r] = row[e]
    for q in range(num_qubits):
        if init_u1[q] < 0:
            for c in range(4):
                for r in range(LANES):
                    lanes.columns[LANES * (4 * q + c) + r] = 1.0 if c == 0 else 0.0
            continue
        qsim_lanes_fused(lanes.gates, run_start, run_gate, init_u1[q], m, 1)
        for c in range(4):  # the first column: entries 0 and 2 of the 2x2
            memcpy(lanes.columns + LANES * (4 * q + c), m + LANES * (c if c < 2 else c + 2), LANES * sizeof(double))
    for slot in range(plan.slots):
        qsim_lanes_fused(lanes.gates, run_start, run_gate, arg[plan.slot_step[slot]], lanes.mats + 8 * LANES * slot,
                         2)
    qsim_lanes_product(lanes.state, num_qubits, lanes.columns)
    for s in range(plan.sweeps):
        qsim_lanes_sweep(lanes.state, num_qubits, plan.sweep_width[s], plan.tuples + plan.sweep_tuples[s],
                         lanes.mats + 8 * LANES * plan.sweep_slot[s], plan.sweep_real[s])


cdef void _lane_z_values(const LaneBuffers* lanes, int64_t num_qubits, const int64_t* stored_z,
                         const int32_t* marginal_order, int64_t count, int64_t active,
                         double* values_out) noexcept nogil:
    """The Z strings' expectations of the ``active`` sets in ``lanes.state`` into ``values_out`` (``count`` per
    set): from the halving folds in ``marginal_order``'s coordinates (:func:`_marginal_order`) when not NULL, else
    from a Walsh-Hadamard transform read at ``stored_z`` (the strings as strings of storage positions)."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t r, k, e
    if marginal_order != NULL:
        qsim_lanes_marginals(lanes.state, num_qubits, marginal_order, lanes.probs, lanes.values)
        for k in range(count):  # a string: 1 - 2 P(its bit of y is 1); the identity: the total
            e = marginal_order[size + k]
            for r in range(active):
                values_out[count * r + k] = (lanes.values[LANES * num_qubits + r] if e < 0 else
                                             lanes.values[LANES * num_qubits + r] - 2.0 * lanes.values[LANES * e + r])
    else:
        qsim_lanes_z(lanes.state, num_qubits, lanes.probs, stored_z, count, lanes.values)
        for r in range(active):
            for k in range(count):
                values_out[count * r + k] = lanes.values[LANES * k + r]


cdef void _run_lane_group(int64_t first, int64_t active, const LanePlan* plan, const LaneBuffers* lanes,
                          const SmallBuffers* buffers, const RowFill* fill, int task, double* psi_out,
                          double* probs_out, double* values_out, int64_t* samples_out, int64_t num_qubits,
                          double* u1, int64_t u1_stride, int64_t gate_slots, double* u2, int64_t u2_stride,
                          const int32_t* init_u1, const int32_t* arg, const int64_t* run_start,
                          const int32_t* run_gate, const int64_t* xmask, const int64_t* zmask, const int64_t* ny,
                          const int64_t* stored_z, const int32_t* marginal_order, bint z_only, int64_t count,
                          int64_t shots, uint64_t key, int64_t batch_offset) noexcept nogil:
    """Sets ``first`` .. ``first + active - 1`` (active <= 8) of :func:`_run_lanes`: :func:`_lane_forward`, then
    the readout: :func:`_lane_z_values` for all-Z expectations, the probabilities in basis order for
    probabilities, samples and (``z_only``: no string has an X or Y) shot estimates, else each set's state in
    basis order (through the per-set readouts)."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t r
    cdef uint64_t rng
    if fill != NULL:
        for r in range(active):  # (programs of U1 steps have no two-qubit rotations, but their u2 rows are filled)
            _fill_rotation_row(fill.params + fill.num_params * (first + r), fill.rotations2,
                               u2 + u2_stride * (first + r))
    _lane_forward(first, active, plan, lanes, fill, num_qubits, u1, u1_stride, gate_slots, init_u1, arg, run_start,
                  run_gate)
    if stored_z != NULL:
        _lane_z_values(lanes, num_qubits, stored_z, marginal_order, count, active, values_out + count * first)
    elif task == TASK_PROBS:
        qsim_lanes_probabilities(lanes.state, num_qubits, plan.where, probs_out + size * first, size, active)
    elif task == TASK_SAMPLES or task == TASK_SHOT_EXPVAL and z_only:
        qsim_lanes_probabilities(lanes.state, num_qubits, plan.where, lanes.rows, size, active)
        alias_tables(lanes.rows, num_qubits, lanes.tables, lanes.orders, lanes.excesses, active)
        for r in range(active):
            rng = _stream_state(key, <uint64_t>(batch_offset + first + r))
            if task == TASK_SAMPLES:
                alias_draws(lanes.tables + (size + 1) * r, num_qubits, &rng, samples_out + shots * (first + r),
                            shots)
            else:
                alias_draws(lanes.tables + (size + 1) * r, num_qubits, &rng, buffers.drawn, shots)
                _estimates_from_draws(<const double*>NULL, size, lanes.rows + size * r, buffers.order,
                                      buffers.excess, buffers.drawn, xmask, zmask, ny, count, shots, &rng,
                                      values_out + count * (first + r))
    elif task == TASK_STATE:
        qsim_lanes_states(lanes.state, num_qubits, plan.where, psi_out + 2 * size * first, 2 * size, active)
    else:
        qsim_lanes_states(lanes.state, num_qubits, plan.where, lanes.rows, 2 * size, active)
        for r in range(active):
            _small_readout(first + r, lanes.rows + 2 * size * r, buffers, task, probs_out, values_out, samples_out,
                           size, xmask, zmask, ny, count, shots, key, batch_offset)


cdef void _run_lanes(const LanePlan* plan, LaneBuffers* scratch, const RowFill* fill, bint alike, int task,
                     double* psi_out, double* probs_out, double* values_out, int64_t* samples_out, int64_t batch,
                     int64_t num_qubits, double* u1, int64_t u1_stride, double* u2, int64_t u2_stride,
                     const int32_t* init_u1, const int32_t* arg, const int64_t* run_start, const int32_t* run_gate,
                     const int64_t* xmask, const int64_t* zmask, const int64_t* ny, int64_t count, int64_t shots,
                     uint64_t key, int64_t batch_offset, int num_threads, int* failed) noexcept nogil:
    """:func:`_run_small` for a program with a lane plan (complex128, no initial states): the batch in groups of
    eight sets, a static loop over the groups in one parallel region (or on the calling thread when it is the
    only one), each thread on its ``scratch`` (:func:`_ensure_lane_scratch`) and per-set buffers of its own."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t groups = (batch + LANES - 1) // LANES
    cdef int64_t g
    cdef int64_t* stored_z = _stored_z(plan, num_qubits, xmask, zmask, count) if task == TASK_EXPVAL else NULL
    cdef int32_t* marginal_order = _marginal_order(stored_z, count, num_qubits) if stored_z != NULL else NULL
    cdef bint z_only = True
    for g in range(count):
        z_only = z_only and xmask[g] == 0
    cdef SmallBuffers own_buffers
    # NULL-initialised: Cython makes these firstprivate in the parallel region
    cdef SmallBuffers* buffers = NULL
    cdef double* gates = NULL
    cdef bint ok = False
    cdef bint own = alike and fill != NULL
    cdef double* rows1 = NULL
    cdef double* rows2 = NULL
    cdef int64_t stride1 = 0 if own else u1_stride
    cdef int64_t stride2 = 0 if own else u2_stride
    if num_threads == 1 or groups == 1:
        gates = _own_gates(u1, u1_stride, u2, u2_stride) if own else NULL
        rows1 = gates if own else u1
        rows2 = gates + u1_stride if own else u2
        ok = _small_buffers(&own_buffers, task, size, sizeof(double), False, shots)
        if ok and (gates != NULL or not own):
            for g in range(groups):
                _run_lane_group(LANES * g, min(LANES, batch - LANES * g), plan, scratch, &own_buffers, fill, task,
                                psi_out, probs_out, values_out, samples_out, num_qubits, rows1, stride1,
                                u1_stride // 8, rows2, stride2, init_u1, arg, run_start, run_gate, xmask, zmask, ny,
                                stored_z, marginal_order, z_only, count, shots, key, batch_offset)
        else:
            failed[0] = 1
        _free_small_buffers(&own_buffers)
        free(gates)
        free(stored_z)
        free(marginal_order)
        return
    with parallel(num_threads=num_threads):
        buffers = <SmallBuffers*>malloc(sizeof(SmallBuffers))
        gates = _own_gates(u1, u1_stride, u2, u2_stride) if own else NULL
        rows1 = gates if own else u1
        rows2 = gates + u1_stride if own else u2
        ok = buffers != NULL and (gates != NULL or not own)
        if buffers != NULL:
            ok = _small_buffers(buffers, task, size, sizeof(double), False, shots) and ok
        for g in prange(groups, schedule="static"):
            if not ok:
                failed[0] = 1
            else:
                _run_lane_group(LANES * g, min(LANES, batch - LANES * g), plan, &scratch[threadid()], buffers, fill,
                                task, psi_out, probs_out, values_out, samples_out, num_qubits, rows1, stride1,
                                u1_stride // 8, rows2, stride2, init_u1, arg, run_start, run_gate, xmask, zmask, ny,
                                stored_z, marginal_order, z_only, count, shots, key, batch_offset)
        if buffers != NULL:
            _free_small_buffers(buffers)
        free(buffers)
        free(gates)
    free(stored_z)
    free(marginal_order)


cdef bint _ensure_lane_scratch(SmallProgram program, int threads, int64_t count) noexcept:
    """Give ``program`` lane buffers for ``threads`` threads and ``count`` Z strings (kept between runs: a
    run's freed buffers made glibc consolidate and return memory on every small call); False if they could
    not be allocated."""
    cdef int64_t t
    cdef bint ok = True
    if program.lane_scratch != NULL and program.lane_threads >= threads and program.lane_values >= count:
        return True
    _free_lane_scratch(program)
    program.lane_scratch = <LaneBuffers*>calloc(threads, sizeof(LaneBuffers))
    if program.lane_scratch == NULL:
        return False
    program.lane_threads = threads
    program.lane_values = max(count, 16)
    for t in range(threads):
        ok = _lane_buffers(&program.lane_scratch[t], <int64_t>1 << program.num_qubits, program.lanes.slots,
                           program.num_qubits, program.lane_values, program.u1_stride // 8,
                           program.rotations1.count) and ok
    if not ok:
        _free_lane_scratch(program)
    return ok


cdef void _free_lane_scratch(SmallProgram program) noexcept:
    cdef int64_t t
    if program.lane_scratch != NULL:
        for t in range(program.lane_threads):
            _free_lane_buffers(&program.lane_scratch[t])
        free(program.lane_scratch)
    program.lane_scratch = NULL
    program.lane_threads = 0
    program.lane_values = 0


cdef int64_t* _stored_z(const LanePlan* plan, int64_t num_qubits, const int64_t* xmask, const int64_t* zmask,
                        int64_t count) noexcept nogil:
    """The ``count`` Z strings as strings of storage positions (bit b: whether the string's parity on the basis
    state stored at position 2**b is odd), malloc'ed; NULL if one of them has an X or Y (or the allocation
    failed: the per-set readouts then serve them all the same)."""
    cdef int64_t k, b
    cdef int64_t* masks
    for k in range(count):
        if xmask[k] != 0:
            return NULL
    masks = <int64_t*>malloc((count + 1) * sizeof(int64_t))
    if masks != NULL:
        for k in range(count):
            masks[k] = 0
            for b in range(num_qubits):
                masks[k] |= parity(zmask[k] & plan.stored[b]) << b
    return masks


cdef int32_t* _marginal_order(const int64_t* masks, int64_t count, int64_t num_qubits) noexcept nogil:
    """Where the distinct nonzero ``masks`` (Z strings of storage positions) are linearly independent over GF(2),
    new coordinates in which each is one bit: ``y = Z m`` with the masks the first rows of an invertible Z (unit
    rows complete it). Returns malloc'ed int32[2**n + count]: ``order[y] = Z^-1 y`` (where the basis state of
    coordinates y is stored), then per string the bit of y it reads (-1: the identity); NULL where they are not
    independent (or the allocation failed: the Walsh-Hadamard transform serves them)."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t rows[64]
    cdef int64_t inverse[64]
    cdef int64_t basis[64]  # the masks reduced to echelon form: basis[b], leading bit b, or 0
    cdef int64_t distinct = 0
    cdef int64_t k, j, b, x, pivot, column
    cdef int32_t* order
    for b in range(num_qubits):
        basis[b] = 0
    order = <int32_t*>malloc((size + count) * sizeof(int32_t))
    if order == NULL:
        return NULL
    for k in range(count):
        order[size + k] = -1
        if masks[k] == 0:
            continue
        for j in range(distinct):
            if rows[j] == masks[k]:
                order[size + k] = j
        if order[size + k] >= 0:
            continue
        x = masks[k]
        for b in range(num_qubits - 1, -1, -1):
            if (x >> b) & 1 and basis[b] != 0:
                x ^= basis[b]
        if x == 0:  # a combination of the others
            free(order)
            return NULL
        b = num_qubits - 1
        while not (x >> b) & 1:
            b -= 1
        basis[b] = x
        order[size + k] = distinct
        rows[distinct] = masks[k]
        distinct += 1
    for b in range(num_qubits):  # unit rows where no mask leads
        if basis[b] == 0:
            rows[distinct] = <int64_t>1 << b
            distinct += 1
    for j in range(num_qubits):  # Gauss-Jordan: rows -> identity, inverse -> Z^-1
        inverse[j] = <int64_t>1 << j
    for column in range(num_qubits):
        pivot = column
        while not (rows[pivot] >> column) & 1:
            pivot += 1
        rows[column], rows[pivot] = rows[pivot], rows[column]
        inverse[column], inverse[pivot] = inverse[pivot], inverse[column]
        for j in range(num_qubits):
            if j != column and (rows[j] >> column) & 1:
                rows[j] ^= rows[column]
                inverse[j] ^= inverse[column]
    for k in range(num_qubits):  # Z^-1's column k (the position of y = 2**k): bit j is bit k of inverse[j]
        rows[k] = 0
        for j in range(num_qubits):
            rows[k] |= ((inverse[j] >> k) & 1) << j
    order[0] = 0
    for x in range(1, size):
        k = 0
        while not (x >> k) & 1:
            k += 1
        order[x] = order[x & (x - 1)] ^ <int32_t>rows[k]
    return order


cdef void _point_lanes(tuple plan, LanePlan* lanes) except *:
    """Point ``lanes`` at :func:`lane_plan`'s arrays (the caller keeps them)."""
    cdef const int64_t[::1] sweep_width = plan[0]
    cdef const int64_t[::1] sweep_slot = plan[1]
    cdef const int64_t[::1] sweep_tuples = plan[2]
    cdef const int32_t[::1] sweep_real = plan[3]
    cdef const int32_t[::1] tuples = plan[4]
    cdef const int32_t[::1] slot_step = plan[5]
    cdef const int32_t[::1] where = plan[6]
    cdef const int64_t[::1] stored = plan[7]
    cdef const int32_t[::1] constant_slot = plan[8]
    cdef const int64_t[::1] sweep_layer = plan[9]
    lanes.sweeps = sweep_width.shape[0]
    lanes.slots = slot_step.shape[0]
    lanes.sweep_width = &sweep_width[0] if lanes.sweeps else NULL
    lanes.sweep_slot = &sweep_slot[0] if lanes.sweeps else NULL
    lanes.sweep_tuples = &sweep_tuples[0] if lanes.sweeps else NULL
    lanes.tuples = &tuples[0]
    lanes.slot_step = &slot_step[0] if lanes.slots else NULL
    lanes.sweep_real = &sweep_real[0] if lanes.sweeps else NULL
    lanes.where = &where[0]
    lanes.stored = &stored[0]
    lanes.constants = constant_slot.shape[0] - 1
    lanes.constant_slot = &constant_slot[0]
    lanes.sweep_layer = &sweep_layer[0] if lanes.sweeps else NULL
