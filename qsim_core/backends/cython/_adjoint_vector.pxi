# The adjoint sweep's vectorised loops, in C: included by _adjoint.pxi (which _kernels.pyx includes).
#
# The hot loop of the backward sweep in C: a 2x2 on qubit q applied to lam (and psi), with the cross matrix of the
# incoming states accumulated on the way. Written with GCC/Clang vector types because its sums must stay four
# independent partial sums: as a plain loop gcc vectorises the products but adds them one at a time, in order (it may
# not reassociate without fast-math), which left this loop no faster than the scalar one. Each half of a block is a
# flat run of 2 * 2**q reals: a real matrix acts on real and imaginary parts alike (qubit 0 has its own loop), a
# complex one takes the pair-swapped vector as qsim_mix does (qubit >= 1; qubit 0 stays scalar). Other compilers
# (MSVC) get QSIM_VECTOR_PASS 0 and the scalar complex pass.
cdef extern from *:
    r"""
    #if defined(__GNUC__) || defined(__clang__)
    #define QSIM_VECTOR_PASS 1
    #include <string.h>
    typedef double qsim_v4d __attribute__((vector_size(32)));
    typedef float qsim_v4f __attribute__((vector_size(16)));
    typedef double qsim_half_double __attribute__((vector_size(16)));  /* one amplitude of a qsim_v4d's two */
    typedef float qsim_half_float __attribute__((vector_size(8)));
    #define QSIM_TO_V4D_double(v) (v)
    #define QSIM_TO_V4D_float(v) __builtin_convertvector((v), qsim_v4d)
    /* Lane helpers of the W-lane passes: W = 4 (32-byte double vectors) everywhere, W = 8 (64-byte) where the
       build has AVX-512 and a run of pairs holds 8 reals (qubit >= 2): a pass does three times the arithmetic of a
       forward pass per load, so the wider vectors pay here. */
    #define QSIM_SPLAT4(V, x) ((V){x, x, x, x})
    #define QSIM_SPLAT8(V, x) ((V){x, x, x, x, x, x, x, x})
    #define QSIM_PAIRS4(V, r, i) ((V){r, i, r, i})
    #define QSIM_PAIRS8(V, r, i) ((V){r, i, r, i, r, i, r, i})
    #define QSIM_ODD4(V) ((V){1, -1, 1, -1})
    #define QSIM_ODD8(V) ((V){1, -1, 1, -1, 1, -1, 1, -1})
    #define QSIM_PAIR_SWAP4(V, x) ((V){x[1], x[0], x[3], x[2]})
    #define QSIM_PAIR_SWAP8(V, x) ((V){x[1], x[0], x[3], x[2], x[5], x[4], x[7], x[6]})
    #define QSIM_SUM4(x) ((x[0] + x[1]) + (x[2] + x[3]))
    #define QSIM_SUM8(x) (((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7])))
    #define QSIM_TO_qsim_v4d(T, v) QSIM_TO_V4D_##T(v)
    #define QSIM_TO_qsim_v8d(T, v) QSIM_TO_V8D_##T(v)
    /* qsim_<KIND>_pass_<T>(psi, lam, n, q, a, update_psi, imag, cross): cross[8] = sum conj(lam[a]) psi[b]
       (row-major complex; Im only when imag) of the states as they come in, then lam = a lam (and psi = a psi),
       for a real 2x2 a (KIND real: its real parts are read) or any (KIND complex: the products as qsim_mix's
       complex path forms them, (ar x + ai sx) + (br y + bi sy) with sx the pair-swapped x). */
    #define QSIM_IMAG_SPLATS_real(W, VT)
    #define QSIM_IMAG_SPLATS_complex(W, VT)                                                                  \
        const VT i00m = QSIM_PAIRS##W(VT, -a[1], a[1]), i01m = QSIM_PAIRS##W(VT, -a[3], a[3]);               \
        const VT i10m = QSIM_PAIRS##W(VT, -a[5], a[5]), i11m = QSIM_PAIRS##W(VT, -a[7], a[7]);
    #define QSIM_UPDATE_real(W, VT, x, y, nx, ny)                                                            \
        VT nx = m00 * x + m01 * y, ny = m10 * x + m11 * y;
    #define QSIM_UPDATE_complex(W, VT, x, y, nx, ny)                                                         \
        VT sx##nx = QSIM_PAIR_SWAP##W(VT, x), sy##nx = QSIM_PAIR_SWAP##W(VT, y);                             \
        VT nx = (m00 * x + i00m * sx##nx) + (m01 * y + i01m * sy##nx);                                       \
        VT ny = (m10 * x + i10m * sx##nx) + (m11 * y + i11m * sy##nx);
    #define QSIM_PASS(KIND, W, T, VT, VD)                                                                    \
    static void qsim_##KIND##_pass##W##_##T(T* psi, T* lam, int64_t n, int64_t q, const T* a, int update_psi, \
                                            int imag, int diag, double* cross)                               \
    {                                                                                                        \
        const int64_t half = (int64_t)2 << q;                                                                \
        const VT m00 = QSIM_SPLAT##W(VT, a[0]), m01 = QSIM_SPLAT##W(VT, a[2]);                               \
        const VT m10 = QSIM_SPLAT##W(VT, a[4]), m11 = QSIM_SPLAT##W(VT, a[6]);                               \
        QSIM_IMAG_SPLATS_##KIND(W, VT)                                                                       \
        const VD zero = QSIM_SPLAT##W(VD, 0), odd = QSIM_ODD##W(VD);                                         \
        VD r00 = zero,      r01 = zero, r10 = zero, r11 = zero, i00 = zero, i01 = zero, i10 = zero;         \
        VD i11 = zero,      xd, yd, ud, vd, xs, ys;                                                         \
        VT x, y, u, v;                                                                                       \
        for (int64_t i0 = 0; i0 < 2 * n; i0 += 2 * half) {                                                   \
            for (int64_t r = i0; r < i0 + half; r += W) {                                                    \
                memcpy(&x, psi + r, sizeof x);                                                               \
                memcpy(&y, psi + r + half, sizeof y);                                                        \
                memcpy(&u, lam + r, sizeof u);                                                               \
                memcpy(&v, lam + r + half, sizeof v);                                                        \
                xd = QSIM_TO_##VD(T, x);                                                                       \
                yd = QSIM_TO_##VD(T, y);                                                                       \
                ud = QSIM_TO_##VD(T, u);                                                                       \
                vd = QSIM_TO_##VD(T, v);                                                                       \
                if (diag) {                                                                                  \
                    r00 += ud * xd;                                                                          \
                    r11 += vd * yd;                                                                          \
                }                                                                                            \
                r01 += ud * yd;                                                                              \
                r10 += vd * xd;                                                                              \
                if (imag) { /* Im conj(u) x = ur xi - ui xr: each lane times its pair partner, odd lanes negated */ \
                    xs = QSIM_PAIR_SWAP##W(VD, xd) * odd;                                                  \
                    ys = QSIM_PAIR_SWAP##W(VD, yd) * odd;                                                  \
                    if (diag) {                                                                              \
                        i00 += ud * xs;                                                                      \
                        i11 += vd * ys;                                                                      \
                    }                                                                                        \
                    i01 += ud * ys;                                                                          \
                    i10 += vd * xs;                                                                          \
                }                                                                                            \
                if (update_psi) {                                                                            \
                    QSIM_UPDATE_##KIND(W, VT, x, y, nx, ny)                                                  \
                    memcpy(psi + r, &nx, sizeof nx);                                                         \
                    memcpy(psi + r + half, &ny, sizeof ny);                                                  \
                }                                                                                            \
                QSIM_UPDATE_##KIND(W, VT, u, v, nu, nv)                                                      \
                memcpy(lam + r, &nu, sizeof nu);                                                             \
                memcpy(lam + r + half, &nv, sizeof nv);                                                      \
            }                                                                                                \
        }                                                                                                    \
        cross[0] = QSIM_SUM##W(r00);                                                                             \
        cross[1] = QSIM_SUM##W(i00);                                                                             \
        cross[2] = QSIM_SUM##W(r01);                                                                             \
        cross[3] = QSIM_SUM##W(i01);                                                                             \
        cross[4] = QSIM_SUM##W(r10);                                                                             \
        cross[5] = QSIM_SUM##W(i10);                                                                             \
        cross[6] = QSIM_SUM##W(r11);                                                                             \
        cross[7] = QSIM_SUM##W(i11);                                                                             \
    }
    /* Qubit 0 (and qubit 1 in 8 lanes): a vector holds whole blocks, each an x half then a y half ([xr xi yr yi]
       for qubit 0), and the same sums come from the vector times itself with the halves swapped (the
       off-diagonal entries) and with each complex swapped (the imaginary parts); the X mask picks the x lanes. */
    #define QSIM_REAL_PASS_IN(NAME, W, T, VT, VD, SWAP_XY, MASK_X)                                           \
    static void NAME(T* psi, T* lam, int64_t n, const T* a, int update_psi, int imag, int diag, double* cross) \
    {                                                                                                        \
        const VT xt = MASK_X(VT), yt = QSIM_SPLAT##W(VT, 1) - xt;                                            \
        const VT diagonal = a[0] * xt + a[6] * yt, off = a[2] * xt + a[4] * yt;                              \
        const VD zero = QSIM_SPLAT##W(VD, 0), odd = QSIM_ODD##W(VD);                                         \
        const VD xd = MASK_X(VD), yd = QSIM_SPLAT##W(VD, 1) - xd;                                            \
        VD rd = zero, ro = zero, id = zero, io = zero, wd, ld, sd, t;                                        \
        VT w, l, ws, ls;                                                                                     \
        for (int64_t f = 0; f < 2 * n; f += W) {                                                             \
            memcpy(&w, psi + f, sizeof w);                                                                   \
            memcpy(&l, lam + f, sizeof l);                                                                   \
            ws = SWAP_XY(VT, w);                                                                             \
            wd = QSIM_TO_##VD(T, w);                                                                         \
            ld = QSIM_TO_##VD(T, l);                                                                         \
            sd = QSIM_TO_##VD(T, ws);                                                                        \
            if (diag)                                                                                        \
                rd += ld * wd;                                                                               \
            ro += ld * sd;                                                                                   \
            if (imag) {                                                                                      \
                if (diag)                                                                                    \
                    id += ld * (QSIM_PAIR_SWAP##W(VD, wd) * odd);                                            \
                io += ld * (QSIM_PAIR_SWAP##W(VD, sd) * odd);                                                \
            }                                                                                                \
            if (update_psi) {                                                                                \
                VT nw = diagonal * w + off * ws;                                                             \
                memcpy(psi + f, &nw, sizeof nw);                                                             \
            }                                                                                                \
            ls = SWAP_XY(VT, l);                                                                             \
            l = diagonal * l + off * ls;                                                                     \
            memcpy(lam + f, &l, sizeof l);                                                                   \
        }                                                                                                    \
        t = rd * xd; cross[0] = QSIM_SUM##W(t);                                                              \
        t = id * xd; cross[1] = QSIM_SUM##W(t);                                                              \
        t = ro * xd; cross[2] = QSIM_SUM##W(t);                                                              \
        t = io * xd; cross[3] = QSIM_SUM##W(t);                                                              \
        t = ro * yd; cross[4] = QSIM_SUM##W(t);                                                              \
        t = io * yd; cross[5] = QSIM_SUM##W(t);                                                              \
        t = rd * yd; cross[6] = QSIM_SUM##W(t);                                                              \
        t = id * yd; cross[7] = QSIM_SUM##W(t);                                                              \
    }
    #define QSIM_SWAP_Q0_4(V, x) ((V){x[2], x[3], x[0], x[1]})
    #define QSIM_MASK_Q0_4(V) ((V){1, 1, 0, 0})
    /* Amplitudes j and j + 1 (j even) of lam into the vector raw; with a table (linear over GF(2)) amplitudes
       table[j] and table[j] ^ table[1] instead: lam read through a permutation, which saves a pass over it. */
    #define QSIM_LOAD_PAIR(raw, lam, table, j, HT)                                                           \
        if (table) {                                                                                         \
            HT first_, second_;                                                                              \
            memcpy(&first_, lam + 2 * table[j], sizeof first_);                                              \
            memcpy(&second_, lam + 2 * (table[j] ^ table[1]), sizeof second_);                               \
            raw = __builtin_shufflevector(first_, second_, 0, 1, 2, 3);                                      \
        } else {                                                                                             \
            memcpy(&raw, lam + 2 * (j), sizeof raw);                                                         \
        }
    /* The same for a constant number LOW of low amplitudes (16: 8 and 9 qubits): low_partial stays in
       registers over the rows instead of being loaded and stored for each, in the same order of operations. */
    #define QSIM_CONTRACT_FIXED(T, VT, LOW)                                                                  \
    static void qsim_contract_##T##_##LOW(const T* lam, const int64_t* table, int64_t high_size,             \
                                          const double* low, const double* high, double* low_partial,        \
                                          double* high_partial)                                              \
    {                                                                                                        \
        const qsim_v4d zero = {0, 0, 0, 0};                                                                  \
        qsim_v4d part[LOW / 2], lows[LOW / 2], turned[LOW / 2], l, re, im, hv, hs;                           \
        VT raw;                                                                                              \
        for (int r = 0; r < LOW / 2; r++) {                                                                  \
            part[r] = zero;                                                                                  \
            memcpy(&lows[r], low + 4 * r, sizeof lows[r]);                                                   \
            turned[r] = (qsim_v4d){lows[r][1], -lows[r][0], lows[r][3], -lows[r][2]};                        \
        }                                                                                                    \
        for (int64_t h = 0; h < high_size; h++) {                                                            \
            re = zero;                                                                                       \
            im = zero;                                                                                       \
            hv = (qsim_v4d){high[2 * h], high[2 * h + 1], high[2 * h], high[2 * h + 1]};                     \
            hs = (qsim_v4d){high[2 * h + 1], -high[2 * h], high[2 * h + 1], -high[2 * h]};                   \
            for (int r = 0; r < LOW / 2; r++) {                                                              \
                QSIM_LOAD_PAIR(raw, lam, table, h * LOW + 2 * r, qsim_half_##T);                             \
                l = QSIM_TO_V4D_##T(raw);                                                                    \
                re += l * lows[r];                                                                           \
                im += l * turned[r];                                                                         \
                part[r] += (qsim_v4d){l[0], l[0], l[2], l[2]} * hv                                           \
                           + (qsim_v4d){l[1], l[1], l[3], l[3]} * hs;                                        \
            }                                                                                                \
            high_partial[2 * h] = (re[0] + re[1]) + (re[2] + re[3]);                                         \
            high_partial[2 * h + 1] = (im[0] + im[1]) + (im[2] + im[3]);                                     \
        }                                                                                                    \
        memcpy(low_partial, part, sizeof part);                                                              \
    }
    /* The two contractions of _product_contractions, lam seen as a [high, low] matrix (low >= 2 amplitudes):
       low_partial[i] = sum_h conj(lam[h, i]) high[h] and high_partial[h] = sum_i conj(lam[h, i]) low[i]; with a
       table, of lam read through it (QSIM_LOAD_PAIR). */
    #define QSIM_CONTRACT(T, VT)                                                                             \
    QSIM_CONTRACT_FIXED(T, VT, 16)                                                                           \
    static void qsim_contract_##T(const T* lam, const int64_t* table, int64_t low_size, int64_t high_size,   \
                                  const double* low, const double* high, double* low_partial,                \
                                  double* high_partial)                                                      \
    {                                                                                                        \
        const qsim_v4d zero = {0, 0, 0, 0};                                                                  \
        if (low_size == 16) {                                                                                \
            qsim_contract_##T##_16(lam, table, high_size, low, high, low_partial, high_partial);             \
            return;                                                                                          \
        }                                                                                                    \
        qsim_v4d l, v, p, re, im, hv, hs;                                                                    \
        VT raw;                                                                                              \
        memset(low_partial, 0, 2 * low_size * sizeof(double));                                               \
        for (int64_t h = 0; h < high_size; h++) {                                                            \
            re = zero;                                                                                       \
            im = zero;                                                                                       \
            hv = (qsim_v4d){high[2 * h], high[2 * h + 1], high[2 * h], high[2 * h + 1]};                     \
            hs = (qsim_v4d){high[2 * h + 1], -high[2 * h], high[2 * h + 1], -high[2 * h]};                   \
            for (int64_t r = 0; r < 2 * low_size; r += 4) {                                                  \
                QSIM_LOAD_PAIR(raw, lam, table, h * low_size + r / 2, qsim_half_##T);                        \
                l = QSIM_TO_V4D_##T(raw);                                                                    \
                memcpy(&v, low + r, sizeof v);                                                               \
                re += l * v;                                                                                 \
                im += l * (qsim_v4d){v[1], -v[0], v[3], -v[2]};                                              \
                memcpy(&p, low_partial + r, sizeof p);                                                       \
                p += (qsim_v4d){l[0], l[0], l[2], l[2]} * hv + (qsim_v4d){l[1], l[1], l[3], l[3]} * hs;      \
                memcpy(low_partial + r, &p, sizeof p);                                                       \
            }                                                                                                \
            high_partial[2 * h] = (re[0] + re[1]) + (re[2] + re[3]);                                         \
            high_partial[2 * h + 1] = (im[0] + im[1]) + (im[2] + im[3]);                                     \
        }                                                                                                    \
    }
    #define QSIM_PASSES(W, T, VT)                                                                            \
        QSIM_PASS(real, W, T, VT, qsim_v##W##d)                                                              \
        QSIM_PASS(complex, W, T, VT, qsim_v##W##d)
    QSIM_PASSES(4, double, qsim_v4d)
    QSIM_PASSES(4, float, qsim_v4f)
    #ifdef __AVX512F__
    typedef double qsim_v8d __attribute__((vector_size(64)));
    typedef float qsim_v8f __attribute__((vector_size(32)));
    #define QSIM_TO_V8D_double(v) (v)
    #define QSIM_TO_V8D_float(v) __builtin_convertvector((v), qsim_v8d)
    QSIM_PASSES(8, double, qsim_v8d)
    QSIM_PASSES(8, float, qsim_v8f)
    /* Two real backward steps in one sweep, qubit qa's (undone first) then qubit qb's, both >= 2 (a run of pairs
       holds whole 8-lane vectors): each group of four vectors of psi and four of lam (both bits clear, b set, a set,
       both set) is loaded once, the cross matrix of each step formed with the states as that step meets them, and
       stored once (a separate pass per step loads and stores everything twice). Real matrices, real cross entries.
       psi is undone through qa's step in registers for qb's cross matrix; it is stored (undone through qb's step
       too when update_b) only when store_psi: the last lambda of a step stores it, the others leave it. */
    #define QSIM_PAIR_CROSS(S, x0, x1, l0, l1, y0, y1, m0, m1)                                               \
        if (diag_##S) {                                                                                      \
            r##S##00 += l0 * x0 + l1 * x1;                                                                   \
            r##S##11 += m0 * y0 + m1 * y1;                                                                   \
        }                                                                                                    \
        r##S##01 += l0 * y0 + l1 * y1;                                                                       \
        r##S##10 += m0 * x0 + m1 * x1;
    #define QSIM_PAIR_UNDO(c00, c01, c10, c11, x, y)                                                         \
        {                                                                                                    \
            __typeof__(x) nx = c00 * x + c01 * y;                                                            \
            y = c10 * x + c11 * y;                                                                           \
            x = nx;                                                                                          \
        }
    #define QSIM_REAL_PAIR(T, VT)                                                                            \
    static void qsim_real_pair_##T(T* psi, T* lam, int64_t n, int64_t qa, const T* a, int64_t qb, const T* b, \
                                   int store_psi, int update_b, int diag_a, int diag_b, double* cross_a,     \
                                   double* cross_b)                                                          \
    {                                                                                                        \
        const int64_t ha = (int64_t)2 << qa, hb = (int64_t)2 << qb;                                          \
        const int64_t lo = (qa < qb ? qa : qb) - 2, hi = (qa < qb ? qb : qa) - 2;                            \
        const VT a00 = QSIM_SPLAT8(VT, a[0]), a01 = QSIM_SPLAT8(VT, a[2]);                                   \
        const VT a10 = QSIM_SPLAT8(VT, a[4]), a11 = QSIM_SPLAT8(VT, a[6]);                                   \
        const VT b00 = QSIM_SPLAT8(VT, b[0]), b01 = QSIM_SPLAT8(VT, b[2]);                                   \
        const VT b10 = QSIM_SPLAT8(VT, b[4]), b11 = QSIM_SPLAT8(VT, b[6]);                                   \
        const qsim_v8d zero = QSIM_SPLAT8(qsim_v8d, 0);                                                      \
        qsim_v8d ra00 = zero, ra01 = zero, ra10 = zero, ra11 = zero;                                         \
        qsim_v8d rb00 = zero, rb01 = zero, rb10 = zero, rb11 = zero;                                         \
        qsim_v8d x00, x01, x10, x11, l00, l01, l10, l11;                                                     \
        VT p00, p01, p10, p11, u00, u01, u10, u11; /* first index: qubit qa's bit, second: qubit qb's */    \
        for (int64_t g = 0; g < n / 16; g++) {                                                               \
            int64_t r = (((g >> lo) << (lo + 1)) | (g & (((int64_t)1 << lo) - 1)));                          \
            r = 8 * (((r >> hi) << (hi + 1)) | (r & (((int64_t)1 << hi) - 1)));                              \
            memcpy(&p00, psi + r, sizeof p00);                                                               \
            memcpy(&p01, psi + r + hb, sizeof p01);                                                          \
            memcpy(&p10, psi + r + ha, sizeof p10);                                                          \
            memcpy(&p11, psi + r + ha + hb, sizeof p11);                                                     \
            memcpy(&u00, lam + r, sizeof u00);                                                               \
            memcpy(&u01, lam + r + hb, sizeof u01);                                                          \
            memcpy(&u10, lam + r + ha, sizeof u10);                                                          \
            memcpy(&u11, lam + r + ha + hb, sizeof u11);                                                     \
            x00 = QSIM_TO_V8D_##T(p00); x01 = QSIM_TO_V8D_##T(p01);                                          \
            x10 = QSIM_TO_V8D_##T(p10); x11 = QSIM_TO_V8D_##T(p11);                                          \
            l00 = QSIM_TO_V8D_##T(u00); l01 = QSIM_TO_V8D_##T(u01);                                          \
            l10 = QSIM_TO_V8D_##T(u10); l11 = QSIM_TO_V8D_##T(u11);                                          \
            /* qubit qa: pairs (p00, p10) and (p01, p11) */                                                  \
            QSIM_PAIR_CROSS(a, x00, x01, l00, l01, x10, x11, l10, l11)                                       \
            QSIM_PAIR_UNDO(a00, a01, a10, a11, p00, p10)                                                     \
            QSIM_PAIR_UNDO(a00, a01, a10, a11, p01, p11)                                                     \
            QSIM_PAIR_UNDO(a00, a01, a10, a11, u00, u10)                                                     \
            QSIM_PAIR_UNDO(a00, a01, a10, a11, u01, u11)                                                     \
            /* qubit qb: pairs (p00, p01) and (p10, p11), as qubit qa's step left them */                   \
            x00 = QSIM_TO_V8D_##T(p00); x01 = QSIM_TO_V8D_##T(p01);                                          \
            x10 = QSIM_TO_V8D_##T(p10); x11 = QSIM_TO_V8D_##T(p11);                                          \
            l00 = QSIM_TO_V8D_##T(u00); l01 = QSIM_TO_V8D_##T(u01);                                          \
            l10 = QSIM_TO_V8D_##T(u10); l11 = QSIM_TO_V8D_##T(u11);                                          \
            QSIM_PAIR_CROSS(b, x00, x10, l00, l10, x01, x11, l01, l11)                                       \
            if (store_psi && update_b) {                                                                     \
                QSIM_PAIR_UNDO(b00, b01, b10, b11, p00, p01)                                                 \
                QSIM_PAIR_UNDO(b00, b01, b10, b11, p10, p11)                                                 \
            }                                                                                                \
            QSIM_PAIR_UNDO(b00, b01, b10, b11, u00, u01)                                                     \
            QSIM_PAIR_UNDO(b00, b01, b10, b11, u10, u11)                                                     \
            if (store_psi) {                                                                                 \
                memcpy(psi + r, &p00, sizeof p00);                                                           \
                memcpy(psi + r + hb, &p01, sizeof p01);                                                      \
                memcpy(psi + r + ha, &p10, sizeof p10);                                                      \
                memcpy(psi + r + ha + hb, &p11, sizeof p11);                                                 \
            }                                                                                                \
            memcpy(lam + r, &u00, sizeof u00);                                                               \
            memcpy(lam + r + hb, &u01, sizeof u01);                                                          \
            memcpy(lam + r + ha, &u10, sizeof u10);                                                          \
            memcpy(lam + r + ha + hb, &u11, sizeof u11);                                                     \
        }                                                                                                    \
        cross_a[0] = QSIM_SUM8(ra00); cross_a[2] = QSIM_SUM8(ra01);                                          \
        cross_a[4] = QSIM_SUM8(ra10); cross_a[6] = QSIM_SUM8(ra11);                                          \
        cross_b[0] = QSIM_SUM8(rb00); cross_b[2] = QSIM_SUM8(rb01);                                          \
        cross_b[4] = QSIM_SUM8(rb10); cross_b[6] = QSIM_SUM8(rb11);                                          \
        cross_a[1] = cross_a[3] = cross_a[5] = cross_a[7] = 0;                                               \
        cross_b[1] = cross_b[3] = cross_b[5] = cross_b[7] = 0;                                               \
    }
    QSIM_REAL_PAIR(double, qsim_v8d)
    QSIM_REAL_PAIR(float, qsim_v8f)
    /* Real cross matrices of the states as they are, from one pass: of two qubits qa, qb >= 2, and of qubit 0
       (low & 1) and qubit 1 (low & 2) from the same loads (their pairs lie within a vector: the vector times itself
       with the halves swapped, as qsim_real_pass0/1 form them). For a layer of runs on distinct qubits, whose cross
       matrices all come from the states after the layer (_backward_u1_layer): psi is never stored, and lam only by
       the layer's last pass (undo), which applies the real 2x2 ma, mb (and m0, m1 with low) to it on the way. */
    #define QSIM_CROSS_LOW(x, l)                                                                        \
        if (low & 1) {                                                                                  \
            o0 += l * QSIM_SWAP_Q0_8(qsim_v8d, x);                                                      \
            if (diag_0) d0 += l * x;                                                                    \
        }                                                                                               \
        if (low & 2) {                                                                                  \
            o1 += l * QSIM_SWAP_Q1_8(qsim_v8d, x);                                                      \
            if (diag_1) d1 += l * x;                                                                    \
        }
    #define QSIM_UNDO_LOW(VT, u)                                                                              \
        if (low & 1) u = g0 * u + f0 * QSIM_SWAP_Q0_8(VT, u);                                           \
        if (low & 2) u = g1 * u + f1 * QSIM_SWAP_Q1_8(VT, u);
    #define QSIM_CROSS_OUT(c, o, d, MASK)                                                               \
        {                                                                                               \
            const qsim_v8d xm = MASK(qsim_v8d), ym = QSIM_SPLAT8(qsim_v8d, 1) - xm;                     \
            qsim_v8d t;                                                                                 \
            t = d * xm; c[0] = QSIM_SUM8(t);                                                            \
            t = o * xm; c[2] = QSIM_SUM8(t);                                                            \
            t = o * ym; c[4] = QSIM_SUM8(t);                                                            \
            t = d * ym; c[6] = QSIM_SUM8(t);                                                            \
            c[1] = c[3] = c[5] = c[7] = 0;                                                              \
        }
    #define QSIM_CROSS_PAIR(T, VT)                                                                      \
    static void qsim_cross_pair_##T(const T* psi, T* lam, int64_t n, int64_t qa, int64_t qb, int diag_a, int diag_b,\
                                    double* cross_a, double* cross_b, int low, int diag_0, int diag_1,  \
                                    double* cross_0, double* cross_1, int undo, const T* ma, const T* mb,\
                                    const T* m0, const T* m1)                                           \
    {                                                                                                   \
        const int64_t ha = (int64_t)2 << qa, hb = (int64_t)2 << qb;                                     \
        const int64_t lo = (qa < qb ? qa : qb) - 2, hi = (qa < qb ? qb : qa) - 2;                       \
        const qsim_v8d zero = QSIM_SPLAT8(qsim_v8d, 0);                                                 \
        const T* w0 = (low & 1) ? m0 : ma; /* read only with low & 1 */                                 \
        const T* w1 = (low & 2) ? m1 : ma;                                                              \
        const VT a00 = QSIM_SPLAT8(VT, ma[0]), a01 = QSIM_SPLAT8(VT, ma[2]);                            \
        const VT a10 = QSIM_SPLAT8(VT, ma[4]), a11 = QSIM_SPLAT8(VT, ma[6]);                            \
        const VT b00 = QSIM_SPLAT8(VT, mb[0]), b01 = QSIM_SPLAT8(VT, mb[2]);                            \
        const VT b10 = QSIM_SPLAT8(VT, mb[4]), b11 = QSIM_SPLAT8(VT, mb[6]);                            \
        const VT x0 = QSIM_MASK_Q0_8(VT), y0 = QSIM_SPLAT8(VT, 1) - x0;                                 \
        const VT x1 = QSIM_MASK_Q1_8(VT), y1 = QSIM_SPLAT8(VT, 1) - x1;                                 \
        const VT g0 = w0[0] * x0 + w0[6] * y0, f0 = w0[2] * x0 + w0[4] * y0;                            \
        const VT g1 = w1[0] * x1 + w1[6] * y1, f1 = w1[2] * x1 + w1[4] * y1;                            \
        qsim_v8d ra00 = zero, ra01 = zero, ra10 = zero, ra11 = zero;                                    \
        qsim_v8d rb00 = zero, rb01 = zero, rb10 = zero, rb11 = zero;                                    \
        qsim_v8d o0 = zero, d0 = zero, o1 = zero, d1 = zero;                                            \
        qsim_v8d x00, x01, x10, x11, l00, l01, l10, l11;                                                \
        VT p00, p01, p10, p11, u00, u01, u10, u11; /* first index: qubit qa's bit, second: qubit qb's */\
        for (int64_t g = 0; g < n / 16; g++) {                                                          \
            int64_t r = (((g >> lo) << (lo + 1)) | (g & (((int64_t)1 << lo) - 1)));                     \
            r = 8 * (((r >> hi) << (hi + 1)) | (r & (((int64_t)1 << hi) - 1)));                         \
            memcpy(&p00, psi + r, sizeof p00);                                                          \
            memcpy(&p01, psi + r + hb, sizeof p01);                                                     \
            memcpy(&p10, psi + r + ha, sizeof p10);                                                     \
            memcpy(&p11, psi + r + ha + hb, sizeof p11);                                                \
            memcpy(&u00, lam + r, sizeof u00);                                                          \
            memcpy(&u01, lam + r + hb, sizeof u01);                                                     \
            memcpy(&u10, lam + r + ha, sizeof u10);                                                     \
            memcpy(&u11, lam + r + ha + hb, sizeof u11);                                                \
            x00 = QSIM_TO_V8D_##T(p00); x01 = QSIM_TO_V8D_##T(p01);                                     \
            x10 = QSIM_TO_V8D_##T(p10); x11 = QSIM_TO_V8D_##T(p11);                                     \
            l00 = QSIM_TO_V8D_##T(u00); l01 = QSIM_TO_V8D_##T(u01);                                     \
            l10 = QSIM_TO_V8D_##T(u10); l11 = QSIM_TO_V8D_##T(u11);                                     \
            QSIM_PAIR_CROSS(a, x00, x01, l00, l01, x10, x11, l10, l11)                                  \
            QSIM_PAIR_CROSS(b, x00, x10, l00, l10, x01, x11, l01, l11)                                  \
            QSIM_CROSS_LOW(x00, l00)                                                                    \
            QSIM_CROSS_LOW(x01, l01)                                                                    \
            QSIM_CROSS_LOW(x10, l10)                                                                    \
            QSIM_CROSS_LOW(x11, l11)                                                                    \
            if (undo) {                                                                                 \
                QSIM_PAIR_UNDO(a00, a01, a10, a11, u00, u10)                                            \
                QSIM_PAIR_UNDO(a00, a01, a10, a11, u01, u11)                                            \
                QSIM_PAIR_UNDO(b00, b01, b10, b11, u00, u01)                                            \
                QSIM_PAIR_UNDO(b00, b01, b10, b11, u10, u11)                                            \
                QSIM_UNDO_LOW(VT, u00)                                                                      \
                QSIM_UNDO_LOW(VT, u01)                                                                      \
                QSIM_UNDO_LOW(VT, u10)                                                                      \
                QSIM_UNDO_LOW(VT, u11)                                                                      \
                memcpy(lam + r, &u00, sizeof u00);                                                      \
                memcpy(lam + r + hb, &u01, sizeof u01);                                                 \
                memcpy(lam + r + ha, &u10, sizeof u10);                                                 \
                memcpy(lam + r + ha + hb, &u11, sizeof u11);                                            \
            }                                                                                           \
        }                                                                                               \
        cross_a[0] = QSIM_SUM8(ra00); cross_a[2] = QSIM_SUM8(ra01);                                     \
        cross_a[4] = QSIM_SUM8(ra10); cross_a[6] = QSIM_SUM8(ra11);                                     \
        cross_b[0] = QSIM_SUM8(rb00); cross_b[2] = QSIM_SUM8(rb01);                                     \
        cross_b[4] = QSIM_SUM8(rb10); cross_b[6] = QSIM_SUM8(rb11);                                     \
        cross_a[1] = cross_a[3] = cross_a[5] = cross_a[7] = 0;                                          \
        cross_b[1] = cross_b[3] = cross_b[5] = cross_b[7] = 0;                                          \
        if (low & 1) QSIM_CROSS_OUT(cross_0, o0, d0, QSIM_MASK_Q0_8)                                    \
        if (low & 2) QSIM_CROSS_OUT(cross_1, o1, d1, QSIM_MASK_Q1_8)                                    \
    }
    #define QSIM_PAIR_PASS 1
    #define QSIM_WIDE_PASS(q) (((int64_t)2 << (q)) >= 8)
    #else
    #define QSIM_WIDE_PASS(q) 0
    #define QSIM_PAIR_PASS 0
    #define qsim_real_pair_double(psi, lam, n, qa, a, qb, b, sp, ub, da, db, ca, cb)
    #define qsim_real_pair_float(psi, lam, n, qa, a, qb, b, sp, ub, da, db, ca, cb)
    #define qsim_cross_pair_double(psi, lam, n, qa, qb, da, db, ca, cb, low, d0, d1, c0, c1, u, ma, mb, m0, m1)
    #define qsim_cross_pair_float(psi, lam, n, qa, qb, da, db, ca, cb, low, d0, d1, c0, c1, u, ma, mb, m0, m1)
    #define qsim_real_pass8_double qsim_real_pass4_double
    #define qsim_real_pass8_float qsim_real_pass4_float
    #define qsim_complex_pass8_double qsim_complex_pass4_double
    #define qsim_complex_pass8_float qsim_complex_pass4_float
    #endif
    /* qubit >= 1 (a run of pairs holds a 4-lane vector); 8 lanes from qubit 2 up where the build has them */
    #define QSIM_PASS_DISPATCH(KIND, T)                                                                      \
    static void qsim_##KIND##_pass_##T(T* psi, T* lam, int64_t n, int64_t q, const T* a, int update_psi,     \
                                       int imag, int diag, double* cross)                                    \
    {                                                                                                        \
        if (QSIM_WIDE_PASS(q))                                                                               \
            qsim_##KIND##_pass8_##T(psi, lam, n, q, a, update_psi, imag, diag, cross);                       \
        else                                                                                                 \
            qsim_##KIND##_pass4_##T(psi, lam, n, q, a, update_psi, imag, diag, cross);                       \
    }
    QSIM_PASS_DISPATCH(real, double)
    QSIM_PASS_DISPATCH(real, float)
    QSIM_PASS_DISPATCH(complex, double)
    QSIM_PASS_DISPATCH(complex, float)
    QSIM_REAL_PASS_IN(qsim_real_pass0_4_double, 4, double, qsim_v4d, qsim_v4d, QSIM_SWAP_Q0_4, QSIM_MASK_Q0_4)
    QSIM_REAL_PASS_IN(qsim_real_pass0_4_float, 4, float, qsim_v4f, qsim_v4d, QSIM_SWAP_Q0_4, QSIM_MASK_Q0_4)
    #ifdef __AVX512F__
    /* 8 lanes: two qubit-0 blocks, or one qubit-1 block (two amplitudes, then their two partners) */
    #define QSIM_SWAP_Q0_8(V, x) ((V){x[2], x[3], x[0], x[1], x[6], x[7], x[4], x[5]})
    #define QSIM_MASK_Q0_8(V) ((V){1, 1, 0, 0, 1, 1, 0, 0})
    #define QSIM_SWAP_Q1_8(V, x) ((V){x[4], x[5], x[6], x[7], x[0], x[1], x[2], x[3]})
    #define QSIM_MASK_Q1_8(V) ((V){1, 1, 1, 1, 0, 0, 0, 0})
    QSIM_CROSS_PAIR(double, qsim_v8d)
    QSIM_CROSS_PAIR(float, qsim_v8f)
    QSIM_REAL_PASS_IN(qsim_real_pass0_8_double, 8, double, qsim_v8d, qsim_v8d, QSIM_SWAP_Q0_8, QSIM_MASK_Q0_8)
    QSIM_REAL_PASS_IN(qsim_real_pass0_8_float, 8, float, qsim_v8f, qsim_v8d, QSIM_SWAP_Q0_8, QSIM_MASK_Q0_8)
    QSIM_REAL_PASS_IN(qsim_real_pass1_8_double, 8, double, qsim_v8d, qsim_v8d, QSIM_SWAP_Q1_8, QSIM_MASK_Q1_8)
    QSIM_REAL_PASS_IN(qsim_real_pass1_8_float, 8, float, qsim_v8f, qsim_v8d, QSIM_SWAP_Q1_8, QSIM_MASK_Q1_8)
    /* a state of two or more qubits fills 8 lanes */
    #define QSIM_REAL_PASS0_DISPATCH(T)                                                                          static void qsim_real_pass0_##T(T* psi, T* lam, int64_t n, const T* a, int update_psi, int imag, int diag,                                     double* cross)                                                               {                                                                                                                if (n >= 4)                                                                                                      qsim_real_pass0_8_##T(psi, lam, n, a, update_psi, imag, diag, cross);                                    else                                                                                                             qsim_real_pass0_4_##T(psi, lam, n, a, update_psi, imag, diag, cross);                                }
    QSIM_REAL_PASS0_DISPATCH(double)
    QSIM_REAL_PASS0_DISPATCH(float)
    #define qsim_real_pass1_double qsim_real_pass1_8_double
    #define qsim_real_pass1_float qsim_real_pass1_8_float
    #else
    #define qsim_real_pass0_double qsim_real_pass0_4_double
    #define qsim_real_pass0_float qsim_real_pass0_4_float
    #define qsim_real_pass1_double(psi, lam, n, a, u, i, d, c) qsim_real_pass_double(psi, lam, n, 1, a, u, i, d, c)
    #define qsim_real_pass1_float(psi, lam, n, a, u, i, d, c) qsim_real_pass_float(psi, lam, n, 1, a, u, i, d, c)
    #endif
    QSIM_CONTRACT(double, qsim_v4d)
    QSIM_CONTRACT(float, qsim_v4f)
    #else
    #define QSIM_VECTOR_PASS 0
    static void qsim_real_pass_double(double* psi, double* lam, int64_t n, int64_t q, const double* a,
                                      int update_psi, int imag, int diag, double* cross) {}
    static void qsim_real_pass_float(float* psi, float* lam, int64_t n, int64_t q, const float* a,
                                     int update_psi, int imag, int diag, double* cross) {}
    static void qsim_complex_pass_double(double* psi, double* lam, int64_t n, int64_t q, const double* a,
                                         int update_psi, int imag, int diag, double* cross) {}
    static void qsim_complex_pass_float(float* psi, float* lam, int64_t n, int64_t q, const float* a,
                                        int update_psi, int imag, int diag, double* cross) {}
    static void qsim_real_pass0_double(double* psi, double* lam, int64_t n, const double* a, int update_psi,
                                       int imag, int diag, double* cross) {}
    static void qsim_real_pass0_float(float* psi, float* lam, int64_t n, const float* a, int update_psi,
                                      int imag, int diag, double* cross) {}
    static void qsim_real_pass1_double(double* psi, double* lam, int64_t n, const double* a, int update_psi,
                                       int imag, int diag, double* cross) {}
    static void qsim_real_pass1_float(float* psi, float* lam, int64_t n, const float* a, int update_psi,
                                      int imag, int diag, double* cross) {}
    #define QSIM_PAIR_PASS 0
    static void qsim_real_pair_double(double* psi, double* lam, int64_t n, int64_t qa, const double* a, int64_t qb,
                                      const double* b, int store_psi, int update_b, int diag_a, int diag_b,
                                      double* cross_a, double* cross_b) {}
    static void qsim_real_pair_float(float* psi, float* lam, int64_t n, int64_t qa, const float* a, int64_t qb,
                                     const float* b, int store_psi, int update_b, int diag_a, int diag_b,
                                     double* cross_a, double* cross_b) {}
    static void qsim_cross_pair_double(const double* psi, double* lam, int64_t n, int64_t qa, int64_t qb,
                                       int diag_a, int diag_b, double* cross_a, double* cross_b, int low,
                                       int diag_0, int diag_1, double* cross_0, double* cross_1, int undo,
                                       const double* ma, const double* mb, const double* m0, const double* m1) {}
    static void qsim_cross_pair_float(const float* psi, float* lam, int64_t n, int64_t qa, int64_t qb,
                                      int diag_a, int diag_b, double* cross_a, double* cross_b, int low,
                                      int diag_0, int diag_1, double* cross_0, double* cross_1, int undo,
                                      const float* ma, const float* mb, const float* m0, const float* m1) {}
    static void qsim_contract_double(const double* lam, const int64_t* table, int64_t low_size, int64_t high_size,
                                     const double* low, const double* high, double* low_partial,
                                     double* high_partial) {}
    static void qsim_contract_float(const float* lam, const int64_t* table, int64_t low_size, int64_t high_size,
                                    const double* low, const double* high, double* low_partial,
                                    double* high_partial) {}
    #endif
    """
    const bint QSIM_VECTOR_PASS
    void qsim_real_pass_double(double* psi, double* lam, int64_t n, int64_t q, const double* a, bint update_psi,
                               bint imag, bint diag, double* cross) noexcept nogil
    void qsim_real_pass_float(float* psi, float* lam, int64_t n, int64_t q, const float* a, bint update_psi,
                              bint imag, bint diag, double* cross) noexcept nogil
    void qsim_complex_pass_double(double* psi, double* lam, int64_t n, int64_t q, const double* a,
                                  bint update_psi, bint imag, bint diag, double* cross) noexcept nogil
    void qsim_complex_pass_float(float* psi, float* lam, int64_t n, int64_t q, const float* a, bint update_psi,
                                 bint imag, bint diag, double* cross) noexcept nogil
    void qsim_real_pass0_double(double* psi, double* lam, int64_t n, const double* a, bint update_psi, bint imag,
                                bint diag, double* cross) noexcept nogil
    void qsim_real_pass0_float(float* psi, float* lam, int64_t n, const float* a, bint update_psi, bint imag,
                               bint diag, double* cross) noexcept nogil
    void qsim_real_pass1_double(double* psi, double* lam, int64_t n, const double* a, bint update_psi, bint imag,
                                bint diag, double* cross) noexcept nogil
    void qsim_real_pass1_float(float* psi, float* lam, int64_t n, const float* a, bint update_psi, bint imag,
                               bint diag, double* cross) noexcept nogil
    const bint QSIM_PAIR_PASS
    void qsim_real_pair_double(double* psi, double* lam, int64_t n, int64_t qa, const double* a, int64_t qb,
                               const double* b, bint store_psi, bint update_b, bint diag_a, bint diag_b,
                               double* cross_a, double* cross_b) noexcept nogil
    void qsim_real_pair_float(float* psi, float* lam, int64_t n, int64_t qa, const float* a, int64_t qb,
                              const float* b, bint store_psi, bint update_b, bint diag_a, bint diag_b,
                              double* cross_a, double* cross_b) noexcept nogil
    void qsim_cross_pair_double(const double* psi, double* lam, int64_t n, int64_t qa, int64_t qb, bint diag_a,
                                bint diag_b, double* cross_a, double* cross_b, int low, bint diag_0, bint diag_1,
                                double* cross_0, double* cross_1, bint undo, const double* ma, const double* mb,
                                const double* m0, const double* m1) noexcept nogil
    void qsim_cross_pair_float(const float* psi, float* lam, int64_t n, int64_t qa, int64_t qb, bint diag_a,
                               bint diag_b, double* cross_a, double* cross_b, int low, bint diag_0, bint diag_1,
                               double* cross_0, double* cross_1, bint undo, const float* ma, const float* mb,
                               const float* m0, const float* m1) noexcept nogil
    void qsim_contract_double(const double* lam, const int64_t* table, int64_t low_size, int64_t high_size,
                              const double* low, const double* high, double* low_partial,
                              double* high_partial) noexcept nogil
    void qsim_contract_float(const float* lam, const int64_t* table, int64_t low_size, int64_t high_size,
                             const double* low, const double* high, double* low_partial,
                             double* high_partial) noexcept nogil
