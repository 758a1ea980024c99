# Eight parameter sets at once: the complex128 small-state path of run_packed for programs of U1 and permutation
# steps (the usual QML circuit: rotation layers and CNOT networks). Included by _kernels.pyx.
#
# The per-set path (_run_small_row) runs one state after the other; its vectors hold neighbouring amplitudes of
# one state, so the low qubits' pairs and the permutation steps need shuffles and gathers. Here the vectors run
# across the batch instead: amplitude m of eight sets is one 64-byte vector of real parts and one of imaginary
# parts (lane r: set b0 + r), so every step is the same vertical arithmetic whatever its qubit, and nothing
# depends on which lane a set takes or which sets share its vectors: a set's results are those of its own lane,
# bit for bit, however the batch is cut into calls and groups. A group with fewer than eight sets fills the
# other lanes with its first set's matrices and drops what they compute.
#
# Permutation steps (PERM, CNOT, SWAP) move nothing: the plan (_lane_plan, at pack time) follows where each
# basis state is stored and hands each sweep of up to three U1 steps its tuples of storage positions (eight
# amplitudes for three steps, ordered by the steps' qubits). Z strings are read through the same map: a Z string
# is a Z string of the storage positions too (the map is linear over GF(2)), so the exact expectations of every
# Z string come from one Walsh-Hadamard transform of the probabilities. Other readouts (states, probabilities,
# samples, X/Y strings) take each set's state out in basis order and use the per-set readouts.
#
# Whether a step takes the real path (four products of reals per pair instead of eight) is decided from the
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
                    int k = j | 1 << i;                                                                        \
                    qsim_lane ar = re[j], ai = im[j], br = re[k], bi = im[k];                                  \
                    if (REAL) {                                                                                \
                        re[j] = u[0] * ar + u[2] * br;                                                         \
                        im[j] = u[0] * ai + u[2] * bi;                                                         \
                        re[k] = u[4] * ar + u[6] * br;                                                         \
                        im[k] = u[4] * ai + u[6] * bi;                                                         \
                    } else {                                                                                   \
                        re[j] = (u[0] * ar - u[1] * ai) + (u[2] * br - u[3] * bi);                             \
                        im[j] = (u[0] * ai + u[1] * ar) + (u[2] * bi + u[3] * br);                             \
                        re[k] = (u[4] * ar - u[5] * ai) + (u[6] * br - u[7] * bi);                             \
                        im[k] = (u[4] * ai + u[5] * ar) + (u[6] * bi + u[7] * br);                             \
                    }                                                                                          \
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
    #endif
    /* 64-byte aligned scratch (NULL on failure; free with free) */
    static void* qsim_lanes_alloc(size_t bytes) {
        void* p = NULL;
        return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
    }
    """
    bint _LANES_BUILT "QSIM_LANES_BUILT"
    int64_t _LANES_HALF "QSIM_LANES_HALF"
    void qsim_lanes_product(double* state, int64_t n, const double* columns) noexcept nogil
    void qsim_lanes_sweep(double* state, int64_t n, int64_t width, const int32_t* tuples, const double* mats,
                          int real) noexcept nogil
    void qsim_lanes_z(const double* state, int64_t n, double* probs, const int64_t* masks, int64_t count,
                      double* values) noexcept nogil
    void qsim_lanes_states(const double* state, int64_t n, const int32_t* where, double* rows, int64_t stride,
                           int64_t active) noexcept nogil
    void qsim_lanes_probabilities(const double* state, int64_t n, const int32_t* where, double* rows,
                                  int64_t stride, int64_t active) noexcept nogil
    void* qsim_lanes_alloc(size_t bytes) noexcept nogil


cdef enum:
    LANES = 8  # parameter sets per group (a 64-byte vector of doubles)
    LANES_SWEEP_MAX = 3  # U1 steps one sweep applies (2**3 amplitudes, 16 vectors, stay in registers)
    LANES_MAX_QUBITS = 10  # states up to 128 KiB per group (and 2 QSIM_LANES_HALF: the halves' stack tables)
    LANES_MIN_BATCH = 6  # calls of fewer sets take the per-set path (a group costs the same whatever it holds)


#: the fewest sets a call runs eight at a time (fewer take the per-set path, whose last bits may differ)
LANE_CALL_SETS = LANES_MIN_BATCH


cdef struct LanePlan:
    # _lane_plan's arrays as pointers (held by the SmallProgram)
    int64_t sweeps, slots
    const int64_t* sweep_width  # [sweeps] U1 steps in the sweep
    const int64_t* sweep_slot  # [sweeps] its first step's slot (slots number the U1 steps in order)
    const int64_t* sweep_tuples  # [sweeps] offset of its tuples in ``tuples``
    const int32_t* tuples
    const int32_t* sweep_real  # [sweeps] 1 where every step's matrix is real for every parameter
    const int32_t* slot_step  # [slots] the step of each slot
    const int32_t* where  # [2**n] the storage position of each basis state after the last step
    const int64_t* stored  # [n] the basis state stored at position 2**b after the last step


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
    Returns ``(sweep_width, sweep_slot, sweep_tuples, sweep_real, tuples, slot_step, where, stored)``: the U1
    steps in sweeps of up to three consecutive steps on distinct qubits with no permutation between, each sweep's
    tuples (int32, ``2**n >> width`` rows of ``2**width`` storage positions, see :func:`_lane_tuples`), whether
    each of its steps' fused matrices is real for every parameter (rotations about Y, and constant ``u1_row``
    entries with no imaginary part in a program whose constants are the same for every set), and the storage map after
    the last step: ``where[j]`` holds basis state j, position ``2**b`` holds basis state ``stored[b]``.
    """
    if not _LANES_BUILT or not 1 <= num_qubits <= LANES_MAX_QUBITS:
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
    real_gate = [not refilled and not np.any(matrices[gate].imag) for gate in range(matrices.shape[0])]
    for k, gate in enumerate(np.asarray(rotations1[4])):
        real_gate[gate] = not np.any(pauli[k].real)  # c I - i s P is real where P's entries are imaginary
    widths, first_slots, offsets, reals, tuples, slot_step = [], [], [], [], [], []
    sweep = []  # the open sweep's steps
    for k in range(kind.shape[0] + 1):
        if k < kind.shape[0] and kind[k] == U1 and len(sweep) < min(LANES_SWEEP_MAX, num_qubits) and all(
                q0[step] != q0[k] for step in sweep):
            sweep.append(k)
            continue
        if sweep:
            widths.append(len(sweep))
            first_slots.append(len(slot_step))
            offsets.append(sum(t.size for t in tuples))
            tuples.append(_lane_tuples(index, where, [int(q0[step]) for step in sweep]))
            reals.append(all(real_gate[run_gate[g]] for step in sweep
                             for g in range(run_start[arg[step]], run_start[arg[step] + 1])))
            slot_step.extend(sweep)
            sweep = [k] if k < kind.shape[0] and kind[k] == U1 else []
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
    return (np.asarray(widths, np.int64), np.asarray(first_slots, np.int64), np.asarray(offsets, np.int64),
            np.asarray(reals, np.int32), np.concatenate(tuples) if tuples else np.zeros(1, np.int32),
            np.asarray(slot_step, np.int32), where.astype(np.int32), np.argsort(where)[bit].astype(np.int64))


cdef struct LaneBuffers:
    # one thread's scratch for groups of eight sets (64-byte aligned)
    double* state  # 2**n amplitudes: a vector of real parts, then one of imaginary parts
    double* probs  # 2**n vectors
    double* mats  # per slot its fused 2x2: 8 vectors
    double* columns  # per qubit its initial column: 4 vectors
    double* values  # per Z string a vector
    double* rows  # the eight sets' states (2 * 2**n reals each) or probabilities (2**n each) in basis order


cdef bint _lane_buffers(LaneBuffers* lanes, int64_t size, int64_t slots, int64_t num_qubits,
                        int64_t count) noexcept nogil:
    """Allocate ``lanes``; False if one of its buffers could not be."""
    cdef size_t vector = LANES * sizeof(double)
    lanes.state = <double*>qsim_lanes_alloc(2 * size * vector)
    lanes.probs = <double*>qsim_lanes_alloc(size * vector)
    lanes.mats = <double*>qsim_lanes_alloc(8 * slots * vector)
    lanes.columns = <double*>qsim_lanes_alloc(4 * num_qubits * vector)
    lanes.values = <double*>qsim_lanes_alloc(count * vector)
    lanes.rows = <double*>qsim_lanes_alloc(2 * size * vector)
    return not (lanes.state == NULL or lanes.probs == NULL or lanes.mats == NULL or lanes.columns == NULL
                or lanes.values == NULL or lanes.rows == NULL)


cdef void _free_lane_buffers(LaneBuffers* lanes) noexcept nogil:
    free(lanes.state)
    free(lanes.probs)
    free(lanes.mats)
    free(lanes.columns)
    free(lanes.values)
    free(lanes.rows)


cdef inline void _lanes_from_first(double* vectors, int64_t count, int64_t active) noexcept nogil:
    """Lanes ``active`` to 7 of ``count`` vectors: copies of lane 0 (sets that are not there compute on valid
    numbers, and their results are dropped)."""
    cdef int64_t v, r
    for v in range(count):
        for r in range(active, LANES):
            vectors[LANES * v + r] = vectors[LANES * v]


cdef void _run_lane_group(int64_t first, int64_t active, const LanePlan* plan, const LaneBuffers* lanes,
                          const SmallBuffers* buffers, const RowFill* fill, int task, double* psi_out,
                          double* probs_out, double* values_out, int64_t* samples_out, int64_t num_qubits,
                          double* u1, int64_t u1_stride, double* u2, int64_t u2_stride, const int32_t* init_u1,
                          const int32_t* arg, const int64_t* run_start, const int32_t* run_gate,
                          const int64_t* xmask, const int64_t* zmask, const int64_t* ny, const int64_t* stored_z,
                          bint z_only, int64_t count, int64_t shots, uint64_t key,
                          int64_t batch_offset) noexcept nogil:
    """Sets ``first`` .. ``first + active - 1`` (active <= 8) of :func:`_run_lanes`: each set's matrices
    (its rotations filled first when ``fill`` is not NULL) into its lane, the sweeps, then the readout:
    ``stored_z`` (the Z strings as strings of storage positions) for all-Z expectations, the probabilities in
    basis order for probabilities, samples and (``z_only``: no string has an X or Y) shot estimates, else each
    set's state in basis order (through the per-set readouts)."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t r, b, q, c, slot, e, s, j, k
    cdef double column[4]
    cdef double m[8]
    cdef double* row
    cdef uint64_t rng
    for r in range(active):
        b = first + r
        row = u1 + u1_stride * b
        if fill != NULL:
            _fill_rotation_row(fill.params + fill.num_params * b, fill.rotations1, row)
            _fill_rotation_row(fill.params + fill.num_params * b, fill.rotations2, u2 + u2_stride * b)
        for q in range(num_qubits):
            _initial_column(row, run_start, run_gate, init_u1, q, column)
            for c in range(4):
                lanes.columns[LANES * (4 * q + c) + r] = column[c]
        for slot in range(plan.slots):
            fused_u1(row, run_start, run_gate, arg[plan.slot_step[slot]], m)
            for e in range(8):
                lanes.mats[LANES * (8 * slot + e) + r] = m[e]
    if active < LANES:
        _lanes_from_first(lanes.columns, 4 * num_qubits, active)
        _lanes_from_first(lanes.mats, 8 * plan.slots, active)
    qsim_lanes_product(lanes.state, num_qubits, lanes.columns)
    for s in range(plan.sweeps):
        qsim_lanes_sweep(lanes.state, num_qubits, plan.sweep_width[s], plan.tuples + plan.sweep_tuples[s],
                         lanes.mats + 8 * LANES * plan.sweep_slot[s], plan.sweep_real[s])
    if stored_z != NULL:
        qsim_lanes_z(lanes.state, num_qubits, lanes.probs, stored_z, count, lanes.values)
        for r in range(active):
            for k in range(count):
                values_out[count * (first + r) + k] = lanes.values[LANES * k + r]
    elif task == TASK_PROBS:
        qsim_lanes_probabilities(lanes.state, num_qubits, plan.where, probs_out + size * first, size, active)
    elif task == TASK_SAMPLES or task == TASK_SHOT_EXPVAL and z_only:
        qsim_lanes_probabilities(lanes.state, num_qubits, plan.where, lanes.rows, size, active)
        for r in range(active):
            rng = _stream_state(key, <uint64_t>(batch_offset + first + r))
            if task == TASK_SAMPLES:
                samples_from(lanes.rows + size * r, size, buffers.table, buffers.order, buffers.excess, &rng,
                             samples_out + shots * (first + r), shots)
            else:
                _shot_estimates_from(<const double*>NULL, size, lanes.rows + size * r, buffers.table,
                                     buffers.order, buffers.excess, buffers.drawn, xmask, zmask, ny, count, shots,
                                     &rng, values_out + count * (first + r))
    elif task == TASK_STATE:
        qsim_lanes_states(lanes.state, num_qubits, plan.where, psi_out + 2 * size * first, 2 * size, active)
    else:
        qsim_lanes_states(lanes.state, num_qubits, plan.where, lanes.rows, 2 * size, active)
        for r in range(active):
            _small_readout(first + r, lanes.rows + 2 * size * r, buffers, task, probs_out, values_out, samples_out,
                           size, xmask, zmask, ny, count, shots, key, batch_offset)


cdef void _run_lanes(const LanePlan* plan, const RowFill* fill, bint alike, int task, double* psi_out,
                     double* probs_out, double* values_out, int64_t* samples_out, int64_t batch, int64_t num_qubits,
                     double* u1, int64_t u1_stride, double* u2, int64_t u2_stride, const int32_t* init_u1,
                     const int32_t* arg, const int64_t* run_start, const int32_t* run_gate, const int64_t* xmask,
                     const int64_t* zmask, const int64_t* ny, int64_t count, int64_t shots, uint64_t key,
                     int64_t batch_offset, int num_threads, int* failed) noexcept nogil:
    """:func:`_run_small` for a program with a lane plan (complex128, no initial states): the batch in groups of
    eight sets, per-thread buffers, a static loop over the groups in one parallel region (or on the calling
    thread when it is the only one)."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t groups = (batch + LANES - 1) // LANES
    cdef int64_t g
    cdef int64_t* stored_z = _stored_z(plan, num_qubits, xmask, zmask, count) if task == TASK_EXPVAL else NULL
    cdef bint z_only = True
    for g in range(count):
        z_only = z_only and xmask[g] == 0
    cdef SmallBuffers own_buffers
    cdef LaneBuffers own_lanes
    # NULL-initialised: Cython makes these firstprivate in the parallel region
    cdef SmallBuffers* buffers = NULL
    cdef LaneBuffers* lanes = NULL
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
        ok = _lane_buffers(&own_lanes, size, plan.slots, num_qubits, count) and ok
        if ok and (gates != NULL or not own):
            for g in range(groups):
                _run_lane_group(LANES * g, min(LANES, batch - LANES * g), plan, &own_lanes, &own_buffers, fill,
                                task, psi_out, probs_out, values_out, samples_out, num_qubits, rows1, stride1,
                                rows2, stride2, init_u1, arg, run_start, run_gate, xmask, zmask, ny, stored_z, z_only,
                                count, shots, key, batch_offset)
        else:
            failed[0] = 1
        _free_small_buffers(&own_buffers)
        _free_lane_buffers(&own_lanes)
        free(gates)
        free(stored_z)
        return
    with parallel(num_threads=num_threads):
        buffers = <SmallBuffers*>malloc(sizeof(SmallBuffers))
        lanes = <LaneBuffers*>malloc(sizeof(LaneBuffers))
        gates = _own_gates(u1, u1_stride, u2, u2_stride) if own else NULL
        rows1 = gates if own else u1
        rows2 = gates + u1_stride if own else u2
        ok = buffers != NULL and lanes != NULL and (gates != NULL or not own)
        if buffers != NULL:
            ok = _small_buffers(buffers, task, size, sizeof(double), False, shots) and ok
        if lanes != NULL:
            ok = _lane_buffers(lanes, size, plan.slots, num_qubits, count) and ok
        for g in prange(groups, schedule="static"):
            if not ok:
                failed[0] = 1
            else:
                _run_lane_group(LANES * g, min(LANES, batch - LANES * g), plan, lanes, buffers, fill, task, psi_out,
                                probs_out, values_out, samples_out, num_qubits, rows1, stride1, rows2, stride2,
                                init_u1, arg, run_start, run_gate, xmask, zmask, ny, stored_z, z_only, count, shots,
                                key, batch_offset)
        if buffers != NULL:
            _free_small_buffers(buffers)
        if lanes != NULL:
            _free_lane_buffers(lanes)
        free(buffers)
        free(lanes)
        free(gates)
    free(stored_z)


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
