# cython: boundscheck=False, wraparound=False, cdivision=True, language_level=3
# cython: initializedcheck=False, nonecheck=False, embedsignature=True
"""Cython kernels: the C translation of :mod:`qsim_core.backends.numba.kernels`.

Same functions, same arguments, same results: the public ``def`` functions
take exactly the arrays ``qsim_core.backends.numba`` takes, so
:class:`~qsim_core.backends.driver.CompiledBackend` drives either module. Read
the numba module for the algorithms; this one documents what differs in how
they are written.

Bit order: qubit k is bit k of a basis index. Inside a block, qubit indices
are *local* and ``psi`` is the block's gathered amplitudes. Two-qubit
matrices are indexed ``2 * bit(q0) + bit(q1)``; the structured steps
``U2X`` (pair-mixing) and ``U2D`` (diagonal) read only the entries their
structure allows from the same bound 4x4.

Precision: the state may be complex128 or complex64. The ``def`` functions
take typed memoryviews over the fused complex type ``cplx`` (so one call
checks dtype, rank and contiguity) and hand raw pointers to ``cdef`` kernels
fused over the *real* type ``real``: every complex array is handled as its
interleaved ``(re, im)`` real view. Writing complex arithmetic out on real
components keeps the inner loops plain C that gcc vectorises at -O3 (setup.py also
builds x86-64-v3 and -v4 copies, see backends/isa.py), and avoids C99 ``_Complex`` multiplication, which without fast-math
calls ``__muldc3`` (a NaN-rescuing library routine) for every product. The
components are combined exactly as numba multiplies complex numbers,
``(a + ib)(c + id) = (ac - bd) + i(ad + bc)``, in the state's precision, so
the baseline build agrees with numba bit for bit wherever the summation order
is the same; the x86-64-v3/v4 builds contract products into FMAs and differ in
the last bit (within every tolerance; samples for the same seed can then differ,
as an alias table follows its probabilities' last bits).
Probabilities and expectations are formed from the components converted to
float64, and accumulate in float64, whatever the state's precision.

Threads: OpenMP. ``run_packed`` parallelises over the batch; ``evolve_large``
and ``expectations_large`` over slices of one big state
(``probabilities_in_place`` must run in index order, like numba's). The
thread count is the module-level one :func:`set_threads` chooses. Per-thread
scratch buffers are malloc'ed once per thread inside each parallel region
(never per iteration); an allocation failure is reported through a shared
flag and raised as MemoryError after the region, since a nogil parallel
region cannot raise. Built without OpenMP the module still works,
single-threaded.

Random numbers: SplitMix64 streams, one per parameter set, derived from the
call's 64-bit key and the set's global batch index, with the same constants,
the same alias-table sampler and the same sorted-uniform large-state sampler
as numba, so both backends draw the same samples for the same key whenever
their probabilities agree to the bit. (An alias table follows the last bits:
a weight one unit of 2**-62 apart can change which columns pair up. The
samples then differ, both correctly distributed.) The table is built on
integer weights that sum to exactly 2**62, so it is exact and its sums do
not depend on their order. What differs is how the sampler is written for
speed, never what it computes: the x86-64-v4 build splits the columns into
small and large and draws the shots 32 (tables of up to 256 columns) or
eight at a time in AVX-512, from the same stream numbers.
"""

cimport cython
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int8_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.math cimport fabs
from libc.stdlib cimport calloc, free, malloc, qsort
from libc.string cimport memcpy, memset


cdef extern from "Python.h":
    # what ``with nogil`` compiles to, for a release decided at run time (a ``with nogil(flag)`` flag must be a
    # compile-time constant)
    ctypedef struct PyThreadState:
        pass
    PyThreadState* PyEval_SaveThread()
    void PyEval_RestoreThread(PyThreadState*)


cdef inline PyThreadState* _release_gil(bint release) noexcept:
    """Release the GIL if ``release``; pass the result to :func:`_take_gil_back` once the work is done."""
    return PyEval_SaveThread() if release else NULL


cdef inline void _take_gil_back(PyThreadState* state) noexcept:
    """Undo :func:`_release_gil`."""
    if state != NULL:
        PyEval_RestoreThread(state)

import numpy as np

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int qsim_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int qsim_omp_max_threads(void) { return 1; }
    #endif
    """
    int qsim_omp_max_threads() noexcept nogil

# Step kinds (qsim_core.compiler) and tasks (contract.TASK_*); the loader (__init__.py)
# checks at import that these still match the Python-side values.
cdef enum:
    U1 = 0
    U2 = 1
    CNOT = 2
    SWAP = 3
    PERM = 4
    U2X = 5
    U2D = 6

cdef enum:
    TASK_STATE = 0
    TASK_PROBS = 1
    TASK_EXPVAL = 2
    TASK_SAMPLES = 3
    TASK_SHOT_EXPVAL = 4

STEP_KINDS = (U1, U2, CNOT, SWAP, PERM, U2X, U2D)
TASKS = (TASK_STATE, TASK_PROBS, TASK_EXPVAL, TASK_SAMPLES, TASK_SHOT_EXPVAL)

# SplitMix64 constants, identical to the numba kernels; compile-time C constants so
# gcc folds them into the loops (a module-level cdef variable would be reloaded).
cdef extern from *:
    """
    #define QSIM_GOLDEN UINT64_C(0x9E3779B97F4A7C15)
    #define QSIM_MIX1 UINT64_C(0xBF58476D1CE4E5B9)
    #define QSIM_MIX2 UINT64_C(0x94D049BB133111EB)
    #define QSIM_STREAM UINT64_C(0xD1B54A32D192ED03)
    #define QSIM_TO_UNIT (1.0 / 9007199254740992.0)
    /* SplitMix64's output function: the stream's number after state z (in C, for the C draw loops too) */
    static inline uint64_t qsim_mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * QSIM_MIX1;
        z = (z ^ (z >> 27)) * QSIM_MIX2;
        return z ^ (z >> 31);
    }
    /* The total of eight lane sums, pairwise: the order every eight-lane sum here ends in (the alias table's
       total and the marginals' levels; numba's lane_sum and the tests' references sum so too) */
    static inline double qsim_lane_total(const double* lane) {
        return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
    """
    const uint64_t _GOLDEN "QSIM_GOLDEN"
    const uint64_t _MIX1 "QSIM_MIX1"
    const uint64_t _MIX2 "QSIM_MIX2"
    const uint64_t _STREAM "QSIM_STREAM"
    const double _TO_UNIT "QSIM_TO_UNIT"  # 2**-53
    uint64_t _mix64 "qsim_mix64"(uint64_t z) noexcept nogil
    double _lane_total "qsim_lane_total"(const double* lane) noexcept nogil

ctypedef fused cplx:
    float complex
    double complex

ctypedef fused real:
    float
    double

cdef int _max_threads = max(1, qsim_omp_max_threads())
cdef int _threads = _max_threads


def set_threads(threads):
    """Use ``threads`` worker threads (capped at the OpenMP maximum) for the next kernel calls."""
    global _threads
    _threads = max(1, min(int(threads), _max_threads))


def max_threads():
    """Most threads a kernel uses: OpenMP's maximum when this module loaded (``OMP_NUM_THREADS``)."""
    return _max_threads


cdef inline void _check_allocated(int failed) except *:
    if failed:
        raise MemoryError("the cython kernels could not allocate their per-thread scratch buffers")


# ---------------------------------------------------------------- random numbers and bits

cdef inline uint64_t _stream_state(uint64_t key, uint64_t index) noexcept nogil:
    return _mix64(key ^ (index * _STREAM))


def stream_state(uint64_t key, uint64_t index):
    """Initial RNG state of the stream for batch element ``index`` under ``key`` (a Python int)."""
    return _stream_state(key, index)


cdef inline double next_uniform(uint64_t* state) noexcept nogil:
    """Advance a SplitMix64 state in place; returns a uniform double in [0, 1) (53 random bits)."""
    state[0] = state[0] + _GOLDEN
    return <double><int64_t>(_mix64(state[0]) >> 11) * _TO_UNIT  # < 2**53: exact through int64


cdef inline int64_t parity(uint64_t x) noexcept nogil:
    """Parity of the set bits of ``x`` (0 or 1); branch-free so loops over it vectorise."""
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    x ^= x >> 4
    x &= 0xF
    return (0x6996 >> x) & 1


# Vectorised 2x2 kernels, written with GCC/clang vector extensions (32-byte AVX vectors in the v3/v4
# builds, 16-byte SSE2 ones in the baseline). gcc does not vectorise the interleaved complex loops
# below on its own, so these hold W reals (W / 2 amplitudes) per vector and get the imaginary-part
# cross terms from a lane swap: for x = (re, im, re, im, ...), m00 * x is ``R * x + I * swap(x)``
# with R = (mr, mr, ...) and I = (-mi, mi, ...). The sums are grouped as the scalar loops group them
# ((a x) + (b y), each product ``(ar xr - ai xi) + i (ar xi + ai xr)``), so results do not change
# (the baseline build stays bit for bit numba's). A pair of runs (x at f, y at f + 2s reals) must
# hold whole vectors: the callers use them for 2s >= W (``_vector_mix``) and elsewhere the scalar loops.
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define QSIM_VECTORS 1
    #ifdef __AVX__
    #define QSIM_VECTOR_BYTES 32
    #define QSIM_LANES_d(r, i) r, i, r, i
    #define QSIM_LANES_f(r, i) r, i, r, i, r, i, r, i
    #define QSIM_SWAPPED_d 1, 0, 3, 2
    #define QSIM_SWAPPED_f 1, 0, 3, 2, 5, 4, 7, 6
    #else  /* SSE2: a wider vector type would be split through memory */
    #define QSIM_VECTOR_BYTES 16
    #define QSIM_LANES_d(r, i) r, i
    #define QSIM_LANES_f(r, i) r, i, r, i
    #define QSIM_SWAPPED_d 1, 0
    #define QSIM_SWAPPED_f 1, 0, 3, 2
    #endif
    typedef double qsim_vd __attribute__((vector_size(QSIM_VECTOR_BYTES)));
    typedef float qsim_vf __attribute__((vector_size(QSIM_VECTOR_BYTES)));
    #ifdef __clang__
    #define QSIM_SWAP_d(x) __builtin_shufflevector(x, x, QSIM_SWAPPED_d)
    #define QSIM_SWAP_f(x) __builtin_shufflevector(x, x, QSIM_SWAPPED_f)
    #else
    typedef long long qsim_vd_index __attribute__((vector_size(QSIM_VECTOR_BYTES)));
    typedef int qsim_vf_index __attribute__((vector_size(QSIM_VECTOR_BYTES)));
    #define QSIM_SWAP_d(x) __builtin_shuffle(x, (qsim_vd_index){QSIM_SWAPPED_d})
    #define QSIM_SWAP_f(x) __builtin_shuffle(x, (qsim_vf_index){QSIM_SWAPPED_f})
    #endif
    /* unaligned vector moves (a function returning a vector would change the ABI without AVX) */
    #define QSIM_LOAD(x, p) memcpy(&(x), (p), sizeof(x))
    #define QSIM_STORE(p, x) memcpy((p), &(x), sizeof(x))
    #define QSIM_PAIRS_d(r, i) ((qsim_vd){QSIM_LANES_d(r, i)})
    #define QSIM_PAIRS_f(r, i) ((qsim_vf){QSIM_LANES_f(r, i)})
    /* path: 0 complex 2x2, 1 real 2x2 (re and im alike), 2 diagonal (x *= m00, y *= m11) */
    #define QSIM_DEFINE_MIX(S, T, V)                                                            \\
    static void qsim_mix_##S(T* v, int64_t n, int64_t s, const T* m, int path) {               \\
        const V ar = QSIM_PAIRS_##S(m[0], m[0]), ai = QSIM_PAIRS_##S(-m[1], m[1]);             \\
        const V br = QSIM_PAIRS_##S(m[2], m[2]), bi = QSIM_PAIRS_##S(-m[3], m[3]);             \\
        const V cr = QSIM_PAIRS_##S(m[4], m[4]), ci = QSIM_PAIRS_##S(-m[5], m[5]);             \\
        const V dr = QSIM_PAIRS_##S(m[6], m[6]), di = QSIM_PAIRS_##S(-m[7], m[7]);             \\
        const int64_t w = sizeof(V) / sizeof(T), s2 = 2 * s;                                    \\
        int64_t i0, f;                                                                          \\
        V x, y, ox, oy;                                                                         \\
        for (i0 = 0; i0 < 2 * n; i0 += 2 * s2) {                                                \\
            if (path == 0) {                                                                    \\
                for (f = i0; f < i0 + s2; f += w) {                                             \\
                    QSIM_LOAD(x, v + f);                                                        \\
                    QSIM_LOAD(y, v + f + s2);                                                   \\
                    ox = (ar * x + ai * QSIM_SWAP_##S(x)) + (br * y + bi * QSIM_SWAP_##S(y));   \\
                    oy = (cr * x + ci * QSIM_SWAP_##S(x)) + (dr * y + di * QSIM_SWAP_##S(y));   \\
                    QSIM_STORE(v + f, ox);                                                      \\
                    QSIM_STORE(v + f + s2, oy);                                                 \\
                }                                                                               \\
            } else if (path == 1) {                                                             \\
                for (f = i0; f < i0 + s2; f += w) {                                             \\
                    QSIM_LOAD(x, v + f);                                                        \\
                    QSIM_LOAD(y, v + f + s2);                                                   \\
                    ox = ar * x + br * y;                                                       \\
                    oy = cr * x + dr * y;                                                       \\
                    QSIM_STORE(v + f, ox);                                                      \\
                    QSIM_STORE(v + f + s2, oy);                                                 \\
                }                                                                               \\
            } else {                                                                            \\
                for (f = i0; f < i0 + s2; f += w) {                                             \\
                    QSIM_LOAD(x, v + f);                                                        \\
                    QSIM_LOAD(y, v + f + s2);                                                   \\
                    ox = ar * x + ai * QSIM_SWAP_##S(x);                                        \\
                    oy = dr * y + di * QSIM_SWAP_##S(y);                                        \\
                    QSIM_STORE(v + f, ox);                                                      \\
                    QSIM_STORE(v + f + s2, oy);                                                 \\
                }                                                                               \\
            }                                                                                   \\
        }                                                                                       \\
    }
    /* v[(h, j)] *= high[h] * low[j] for h < rows, j < cols (complex; cols * 2 a multiple of the vector
       width). The low table comes in four real forms, each 2 * cols reals: lr, li duplicated into both lanes
       of an amplitude, and with the sign pattern (-, +): lrs = (-lr, lr), lis = (-li, li). */
    #define QSIM_DEFINE_PHASES(S, T, V)                                                         \\
    static void qsim_phases_##S(T* v, int64_t rows, int64_t cols, const T* high, const T* lr,   \\
                                const T* li, const T* lrs, const T* lis) {                      \\
        const int64_t w = sizeof(V) / sizeof(T);                                                \\
        int64_t h, f;                                                                           \\
        V hr, hi, a, b, c, d, x, pr, pi, ox;                                                    \\
        for (h = 0; h < rows; h++) {                                                            \\
            hr = QSIM_PAIRS_##S(high[2 * h], high[2 * h]);                                      \\
            hi = QSIM_PAIRS_##S(high[2 * h + 1], high[2 * h + 1]);                              \\
            for (f = 0; f < 2 * cols; f += w) {                                                 \\
                QSIM_LOAD(a, lr + f);                                                           \\
                QSIM_LOAD(b, li + f);                                                           \\
                QSIM_LOAD(c, lrs + f);                                                          \\
                QSIM_LOAD(d, lis + f);                                                          \\
                QSIM_LOAD(x, v + 2 * h * cols + f);                                             \\
                pr = hr * a - hi * b;                                                           \\
                pi = hr * d + hi * c;                                                           \\
                ox = pr * x + pi * QSIM_SWAP_##S(x);                                            \\
                QSIM_STORE(v + 2 * h * cols + f, ox);                                           \\
            }                                                                                   \\
        }                                                                                       \\
    }
    #ifdef __AVX512F__
    /* Two or three 2x2 matrices on distinct qubits in one sweep (AVX-512 only: its 32 registers hold the 2**k
       gathered vectors and most of the matrices' splats; 16 would spill). Separate passes of real matrices are
       bound by their loads and stores, not by arithmetic, so three gates in registers cost about one pass; complex
       ones do twice the arithmetic and gain less. Each gate is applied in program order with its path's expression
       in qsim_mix (real: a x + b y; complex: (ar x + ai sx) + (br y + bi sy)), so every amplitude sees the same
       operations as in separate passes, up to the last bit where the compiler contracts another product into an
       FMA. qubit[g] (program order) must have 2 << qubit[g] >= the vector's reals; m holds the NG 2x2 matrices (8
       reals each); real[g] says whether matrix g takes the real path (its imaginary parts are not read). */
    #define QSIM_GROUPS 1
    #define QSIM_GROUP_BYTES 64
    typedef double qsim_vd_64 __attribute__((vector_size(64)));
    typedef float qsim_vf_64 __attribute__((vector_size(64)));
    typedef long long qsim_vd_index_64 __attribute__((vector_size(64)));
    typedef int qsim_vf_index_64 __attribute__((vector_size(64)));
    #define QSIM_PAIRS64_d(r, i) ((qsim_vd_64){r, i, r, i, r, i, r, i})
    #define QSIM_PAIRS64_f(r, i) ((qsim_vf_64){r, i, r, i, r, i, r, i, r, i, r, i, r, i, r, i})
    #ifdef __clang__
    #define QSIM_SHUFFLE64_d(x, ...) __builtin_shufflevector(x, x, __VA_ARGS__)
    #define QSIM_SWAP64_d(x) __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6)
    #define QSIM_SWAP64_f(x) __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14)
    #else
    #define QSIM_SHUFFLE64_d(x, ...) __builtin_shuffle(x, (qsim_vd_index_64){__VA_ARGS__})
    #define QSIM_SWAP64_d(x) __builtin_shuffle(x, (qsim_vd_index_64){1, 0, 3, 2, 5, 4, 7, 6})
    #define QSIM_SWAP64_f(x) __builtin_shuffle(x, (qsim_vf_index_64){1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14})
    #endif
    /* gate g on the pairs of vectors that differ in bit j of the group's index */
    #define QSIM_GROUP_GATE(S, j, NG, g) {                                                          \\
        for (int k = 0; k < (1 << (NG)); k++) {                                                     \\
            if (k & (1 << (j))) continue;                                                           \\
            V x = r[k], y = r[k | (1 << (j))];                                                      \\
            if (real[g]) {                                                                          \\
                r[k] = ar[g] * x + br[g] * y;                                                       \\
                r[k | (1 << (j))] = cr[g] * x + dr[g] * y;                                          \\
            } else {                                                                                \\
                V sx = QSIM_SWAP64_##S(x), sy = QSIM_SWAP64_##S(y);                                 \\
                r[k] = (ar[g] * x + ai[g] * sx) + (br[g] * y + bi[g] * sy);                         \\
                r[k | (1 << (j))] = (cr[g] * x + ci[g] * sx) + (dr[g] * y + di[g] * sy);            \\
            }                                                                                       \\
        } }
    #define QSIM_GROUP(S, T, NG)                                                                    \\
    static void qsim_group##NG##_##S(T* v, int64_t n, const int64_t* qubit, const T* m, const int* real) { \\
        typedef qsim_v##S##_64 V;                                                                   \\
        const int64_t w = sizeof(V) / sizeof(T);                                                    \\
        int64_t sorted[NG], offset[1 << (NG)], run, chunk, base, f, g, h, t;                        \\
        int bit[NG];                                                                                \\
        V ar[NG], ai[NG], br[NG], bi[NG], cr[NG], ci[NG], dr[NG], di[NG], r[1 << (NG)];             \\
        for (g = 0; g < NG; g++) {                                                                  \\
            sorted[g] = qubit[g];                                                                   \\
            ar[g] = QSIM_PAIRS64_##S(m[8 * g], m[8 * g]);                                           \\
            ai[g] = QSIM_PAIRS64_##S(-m[8 * g + 1], m[8 * g + 1]);                                  \\
            br[g] = QSIM_PAIRS64_##S(m[8 * g + 2], m[8 * g + 2]);                                   \\
            bi[g] = QSIM_PAIRS64_##S(-m[8 * g + 3], m[8 * g + 3]);                                  \\
            cr[g] = QSIM_PAIRS64_##S(m[8 * g + 4], m[8 * g + 4]);                                   \\
            ci[g] = QSIM_PAIRS64_##S(-m[8 * g + 5], m[8 * g + 5]);                                  \\
            dr[g] = QSIM_PAIRS64_##S(m[8 * g + 6], m[8 * g + 6]);                                   \\
            di[g] = QSIM_PAIRS64_##S(-m[8 * g + 7], m[8 * g + 7]);                                  \\
        }                                                                                           \\
        for (g = 1; g < NG; g++)                                                                    \\
            for (h = g; h > 0 && sorted[h - 1] > sorted[h]; h--) {                                  \\
                t = sorted[h]; sorted[h] = sorted[h - 1]; sorted[h - 1] = t;                        \\
            }                                                                                       \\
        for (g = 0; g < NG; g++)                                                                    \\
            for (h = 0; h < NG; h++)                                                                \\
                if (sorted[h] == qubit[g]) bit[g] = (int)h;                                         \\
        for (h = 0; h < (1 << (NG)); h++) {                                                         \\
            offset[h] = 0;                                                                          \\
            for (g = 0; g < NG; g++)                                                                \\
                if (h & (1 << g)) offset[h] += (int64_t)2 << sorted[g];                             \\
        }                                                                                           \\
        run = (int64_t)2 << sorted[0];  /* reals below the lowest qubit: contiguous */              \\
        for (chunk = 0; chunk < (2 * n >> (NG)); chunk += run) {                                    \\
            base = chunk;                                                                           \\
            for (g = 0; g < NG; g++)  /* insert a zero bit at each qubit, lowest first */           \\
                base = ((base >> (sorted[g] + 1)) << (sorted[g] + 2)) | (base & (((int64_t)2 << sorted[g]) - 1)); \\
            for (f = base; f < base + run; f += w) {                                                \\
                for (h = 0; h < (1 << (NG)); h++) QSIM_LOAD(r[h], v + f + offset[h]);               \\
                for (g = 0; g < NG; g++) {                                                          \\
                    if (bit[g] == 0) QSIM_GROUP_GATE(S, 0, NG, g)                                   \\
                    else if (bit[g] == 1) QSIM_GROUP_GATE(S, 1, NG, g)                              \\
                    else QSIM_GROUP_GATE(S, (NG) - 1, NG, g) /* bit 2 */                            \\
                }                                                                                   \\
                for (h = 0; h < (1 << (NG)); h++) QSIM_STORE(v + f + offset[h], r[h]);              \\
            }                                                                                       \\
        }                                                                                           \\
    }
    QSIM_GROUP(d, double, 2)
    QSIM_GROUP(d, double, 3)
    QSIM_GROUP(f, float, 2)
    QSIM_GROUP(f, float, 3)
    /* Real 2x2 matrices on qubits 0 and 1 of a complex128 state in one pass: a vector holds the four amplitudes
       of both bits, qubit 0's partners are its neighbours and qubit 1's the other half. m0 (qubit 0's) acts first,
       each with the real path's expression (a x + b y), as two separate passes would. */
    static void qsim_low_pair_d(double* v, int64_t n, const double* m0, const double* m1) {
        const qsim_vd_64 a0 = {m0[0], m0[0], m0[6], m0[6], m0[0], m0[0], m0[6], m0[6]};
        const qsim_vd_64 b0 = {m0[2], m0[2], m0[4], m0[4], m0[2], m0[2], m0[4], m0[4]};
        const qsim_vd_64 a1 = {m1[0], m1[0], m1[0], m1[0], m1[6], m1[6], m1[6], m1[6]};
        const qsim_vd_64 b1 = {m1[2], m1[2], m1[2], m1[2], m1[4], m1[4], m1[4], m1[4]};
        qsim_vd_64 x;
        for (int64_t f = 0; f < 2 * n; f += 8) {
            QSIM_LOAD(x, v + f);
            x = a0 * x + b0 * QSIM_SHUFFLE64_d(x, 2, 3, 0, 1, 6, 7, 4, 5);
            x = a1 * x + b1 * QSIM_SHUFFLE64_d(x, 4, 5, 6, 7, 0, 1, 2, 3);
            QSIM_STORE(v + f, x);
        }
    }
    #define QSIM_GROUP_REALS_d (QSIM_GROUP_BYTES / 8)
    #define QSIM_GROUP_REALS_f (QSIM_GROUP_BYTES / 4)
    #else
    #define QSIM_GROUPS 0
    #define QSIM_GROUP_REALS_d 0
    #define QSIM_GROUP_REALS_f 0
    #endif
    QSIM_DEFINE_MIX(d, double, qsim_vd)
    QSIM_DEFINE_MIX(f, float, qsim_vf)
    QSIM_DEFINE_PHASES(d, double, qsim_vd)
    QSIM_DEFINE_PHASES(f, float, qsim_vf)
    #define QSIM_WIDTH_d (QSIM_VECTOR_BYTES / 8)
    #define QSIM_WIDTH_f (QSIM_VECTOR_BYTES / 4)
    #else
    #define QSIM_VECTORS 0
    #define QSIM_WIDTH_d 0
    #define QSIM_WIDTH_f 0
    #define QSIM_GROUPS 0
    #define QSIM_GROUP_REALS_d 0
    #define QSIM_GROUP_REALS_f 0
    static void qsim_mix_d(double* v, int64_t n, int64_t s, const double* m, int path) {}
    static void qsim_mix_f(float* v, int64_t n, int64_t s, const float* m, int path) {}
    static void qsim_phases_d(double* v, int64_t rows, int64_t cols, const double* high, const double* lr,
                              const double* li, const double* lrs, const double* lis) {}
    static void qsim_phases_f(float* v, int64_t rows, int64_t cols, const float* high, const float* lr,
                              const float* li, const float* lrs, const float* lis) {}
    #endif
    #if !QSIM_GROUPS
    static void qsim_group2_d(double* v, int64_t n, const int64_t* qubit, const double* m, const int* real) {}
    static void qsim_group3_d(double* v, int64_t n, const int64_t* qubit, const double* m, const int* real) {}
    static void qsim_group2_f(float* v, int64_t n, const int64_t* qubit, const float* m, const int* real) {}
    static void qsim_group3_f(float* v, int64_t n, const int64_t* qubit, const float* m, const int* real) {}
    static void qsim_low_pair_d(double* v, int64_t n, const double* m0, const double* m1) {}
    #endif
    """
    const bint QSIM_VECTORS
    const int64_t QSIM_WIDTH_d  # reals per vector; 0 without vector extensions
    const int64_t QSIM_WIDTH_f
    const bint QSIM_GROUPS
    const int64_t QSIM_GROUP_REALS_d  # reals per vector of the grouped kernels; 0 where there are none
    const int64_t QSIM_GROUP_REALS_f
    void qsim_group2_d(double* v, int64_t n, const int64_t* qubit, const double* m,
                       const int* real) noexcept nogil
    void qsim_group3_d(double* v, int64_t n, const int64_t* qubit, const double* m,
                       const int* real) noexcept nogil
    void qsim_group2_f(float* v, int64_t n, const int64_t* qubit, const float* m,
                       const int* real) noexcept nogil
    void qsim_group3_f(float* v, int64_t n, const int64_t* qubit, const float* m,
                       const int* real) noexcept nogil
    void qsim_low_pair_d(double* v, int64_t n, const double* m0, const double* m1) noexcept nogil
    void qsim_mix_d(double* v, int64_t n, int64_t s, const double* m, int path) noexcept nogil
    void qsim_mix_f(float* v, int64_t n, int64_t s, const float* m, int path) noexcept nogil
    void qsim_phases_d(double* v, int64_t rows, int64_t cols, const double* high, const double* lr,
                       const double* li, const double* lrs, const double* lis) noexcept nogil
    void qsim_phases_f(float* v, int64_t rows, int64_t cols, const float* high, const float* lr,
                       const float* li, const float* lrs, const float* lis) noexcept nogil

cdef enum:
    MIX_COMPLEX = 0
    MIX_REAL = 1
    MIX_DIAGONAL = 2


cdef inline bint _vector_mix(real* v, int64_t n, int64_t s, const real* m, int path) noexcept nogil:
    """Apply a 2x2 along pairs (amplitude j, j + s) with the vector kernels if a pair of runs holds whole
    vectors (2s reals >= one vector); returns whether it did."""
    if real is double:
        if not QSIM_VECTORS or 2 * s < QSIM_WIDTH_d:
            return False
        qsim_mix_d(v, n, s, m, path)
    else:
        if not QSIM_VECTORS or 2 * s < QSIM_WIDTH_f:
            return False
        qsim_mix_f(v, n, s, m, path)
    return True


cdef inline int64_t _insert_zero(int64_t p, int64_t q) noexcept nogil:
    return ((p >> q) << (q + 1)) | (p & ((<int64_t>1 << q) - 1))


# ---------------------------------------------------------------- gates on a (local) state
#
# Complex arrays are real arrays of (re, im) pairs: amplitude j is v[2j], v[2j+1].
# A 2x2 matrix is 8 reals (row-major), a 4x4 matrix 32 reals.

cdef inline real _negligible(real like) noexcept nogil:
    """Largest gate-entry magnitude the fast-path tests treat as zero: 8 ulps of the state's precision
    (numba's ``_negligible``; compile-time constants leave rounding noise where an entry is exactly 0)."""
    if real is float:
        return 1e-6
    return 2e-15


cdef inline void fused_columns(const real* u1, const int64_t* run_start, const int32_t* run_gate, int64_t run,
                               real* m, int columns) noexcept nogil:
    """The first ``columns`` (1 or 2) columns of a fused run's product of 2x2 matrices (first gate rightmost),
    written to ``m[8]``; with one, the second column is left as the first gate's (|0> reads only the first:
    half the arithmetic, the same bits in the column formed)."""
    cdef int64_t k
    cdef int row, col
    cdef const real* a
    cdef real r[8]
    cdef real re0, im0, re1, im1
    memcpy(m, u1 + 8 * run_gate[run_start[run]], 8 * sizeof(real))
    for k in range(run_start[run] + 1, run_start[run + 1]):
        a = u1 + 8 * run_gate[k]
        for row in range(2):
            for col in range(columns):
                # a[row, 0] * m[0, col] + a[row, 1] * m[1, col], products as numba forms them
                re0 = a[4 * row] * m[2 * col] - a[4 * row + 1] * m[2 * col + 1]
                im0 = a[4 * row] * m[2 * col + 1] + a[4 * row + 1] * m[2 * col]
                re1 = a[4 * row + 2] * m[4 + 2 * col] - a[4 * row + 3] * m[5 + 2 * col]
                im1 = a[4 * row + 2] * m[5 + 2 * col] + a[4 * row + 3] * m[4 + 2 * col]
                r[4 * row + 2 * col] = re0 + re1
                r[4 * row + 2 * col + 1] = im0 + im1
        for row in range(2):
            for col in range(columns):
                m[4 * row + 2 * col] = r[4 * row + 2 * col]
                m[4 * row + 2 * col + 1] = r[4 * row + 2 * col + 1]


cdef inline void fused_u1(const real* u1, const int64_t* run_start, const int32_t* run_gate, int64_t run,
                          real* m) noexcept nogil:
    """Product of a fused run's 2x2 matrices (first gate rightmost), written to ``m[8]``."""
    fused_columns(u1, run_start, run_gate, run, m, 2)


cdef inline int _u1_path(const real* m) noexcept nogil:
    """Which of :func:`apply_u1`'s paths the 2x2 ``m`` takes: ``MIX_DIAGONAL`` (off-diagonal entries negligible),
    else ``MIX_REAL`` (imaginary parts negligible), else ``MIX_COMPLEX``. The grouped sweep and the phase pass
    decide by the same test, so a matrix sees the same expressions whichever of them applies it."""
    cdef real tiny = _negligible(m[0])
    if fabs(m[2]) + fabs(m[3]) <= tiny and fabs(m[4]) + fabs(m[5]) <= tiny:
        return MIX_DIAGONAL
    if fabs(m[1]) <= tiny and fabs(m[3]) <= tiny and fabs(m[5]) <= tiny and fabs(m[7]) <= tiny:
        return MIX_REAL
    return MIX_COMPLEX


cdef void apply_u1(real* v, int64_t n, int64_t q, const real* m) noexcept nogil:
    """Apply the 2x2 matrix ``m`` to qubit ``q`` of the ``n`` amplitudes ``v`` in place.

    Three paths like numba's: diagonal (two scalings), real (4 real
    multiply-adds per component, the common RY/H case), general complex;
    each on the vector kernels where a run of pairs holds whole vectors
    (qubit >= 1 in complex128, >= 2 in complex64). Qubit 0 has its own loops: its pairs are adjacent, and a loop over pairs
    vectorises where the generic two-level loop would run inner loops of
    length one.
    """
    cdef int64_t s = <int64_t>1 << q
    cdef int64_t i0, j, f, s2
    cdef real a, b, c, d, ar, ai, br, bi, cr, ci, dr, di, xr, xi, yr, yi
    cdef int path = _u1_path(m)
    cdef bint diagonal = path == MIX_DIAGONAL
    cdef bint real_matrix = path == MIX_REAL
    if _vector_mix(v, n, s, m, path):
        return
    if diagonal:
        ar = m[0]
        ai = m[1]
        dr = m[6]
        di = m[7]
        if q == 0:
            for j in range(0, 4 * (n >> 1), 4):
                xr = v[j]
                xi = v[j + 1]
                yr = v[j + 2]
                yi = v[j + 3]
                v[j] = xr * ar - xi * ai
                v[j + 1] = xr * ai + xi * ar
                v[j + 2] = yr * dr - yi * di
                v[j + 3] = yr * di + yi * dr
            return
        i0 = 0
        while i0 < 2 * n:
            for f in range(i0, i0 + 2 * s, 2):
                xr = v[f]
                xi = v[f + 1]
                v[f] = xr * ar - xi * ai
                v[f + 1] = xr * ai + xi * ar
            for f in range(i0 + 2 * s, i0 + 4 * s, 2):
                xr = v[f]
                xi = v[f + 1]
                v[f] = xr * dr - xi * di
                v[f + 1] = xr * di + xi * dr
            i0 += 4 * s
    elif real_matrix:
        # real matrix: the same 2x2 acts on the real and the imaginary parts alike
        a = m[0]
        b = m[2]
        c = m[4]
        d = m[6]
        s2 = 2 * s
        if q == 0:
            for j in range(0, 4 * (n >> 1), 4):
                xr = v[j]
                xi = v[j + 1]
                yr = v[j + 2]
                yi = v[j + 3]
                v[j] = a * xr + b * yr
                v[j + 1] = a * xi + b * yi
                v[j + 2] = c * xr + d * yr
                v[j + 3] = c * xi + d * yi
            return
        if q == 1:
            # two adjacent amplitudes of each half per group of 8 reals: a fixed-length body, no inner loop
            for j in range(0, 8 * (n >> 2), 8):
                for f in range(j, j + 4):
                    xr = v[f]
                    yr = v[f + 4]
                    v[f] = a * xr + b * yr
                    v[f + 4] = c * xr + d * yr
            return
        i0 = 0
        while i0 < 2 * n:
            for f in range(i0, i0 + s2):
                xr = v[f]
                yr = v[f + s2]
                v[f] = a * xr + b * yr
                v[f + s2] = c * xr + d * yr
            i0 += 2 * s2
    else:
        ar = m[0]
        ai = m[1]
        br = m[2]
        bi = m[3]
        cr = m[4]
        ci = m[5]
        dr = m[6]
        di = m[7]
        if q == 0:
            for j in range(0, 4 * (n >> 1), 4):
                xr = v[j]
                xi = v[j + 1]
                yr = v[j + 2]
                yi = v[j + 3]
                v[j] = (ar * xr - ai * xi) + (br * yr - bi * yi)
                v[j + 1] = (ar * xi + ai * xr) + (br * yi + bi * yr)
                v[j + 2] = (cr * xr - ci * xi) + (dr * yr - di * yi)
                v[j + 3] = (cr * xi + ci * xr) + (dr * yi + di * yr)
            return
        s2 = 2 * s
        i0 = 0
        while i0 < 2 * n:
            for f in range(i0, i0 + s2, 2):
                xr = v[f]
                xi = v[f + 1]
                yr = v[f + s2]
                yi = v[f + s2 + 1]
                v[f] = (ar * xr - ai * xi) + (br * yr - bi * yi)
                v[f + 1] = (ar * xi + ai * xr) + (br * yi + bi * yr)
                v[f + s2] = (cr * xr - ci * xi) + (dr * yr - di * yi)
                v[f + s2 + 1] = (cr * xi + ci * xr) + (dr * yi + di * yr)
            i0 += 2 * s2


cdef void apply_u2(real* v, int64_t n, int64_t qa, int64_t qb, const real* m) noexcept nogil:
    """Apply a 4x4 matrix ``m`` (index 2*bit(qa)+bit(qb)) to qubits qa, qb."""
    cdef int64_t lo = qa if qa < qb else qb
    cdef int64_t hi = qb if qa < qb else qa
    cdef int64_t sa = <int64_t>1 << qa
    cdef int64_t sb = <int64_t>1 << qb
    cdef int64_t p, r, c
    cdef int64_t idx[4]
    cdef real xr[4]
    cdef real xi[4]
    cdef real accr, acci
    for p in range(n >> 2):
        idx[0] = 2 * _insert_zero(_insert_zero(p, lo), hi)
        idx[1] = idx[0] + 2 * sb
        idx[2] = idx[0] + 2 * sa
        idx[3] = idx[0] + 2 * (sa + sb)
        for c in range(4):
            xr[c] = v[idx[c]]
            xi[c] = v[idx[c] + 1]
        for r in range(4):
            # m[r, 0] * v0 + m[r, 1] * v1 + m[r, 2] * v2 + m[r, 3] * v3, summed left to right as numba does
            accr = m[8 * r] * xr[0] - m[8 * r + 1] * xi[0]
            acci = m[8 * r] * xi[0] + m[8 * r + 1] * xr[0]
            for c in range(1, 4):
                accr = accr + (m[8 * r + 2 * c] * xr[c] - m[8 * r + 2 * c + 1] * xi[c])
                acci = acci + (m[8 * r + 2 * c] * xi[c] + m[8 * r + 2 * c + 1] * xr[c])
            v[idx[r]] = accr
            v[idx[r] + 1] = acci


cdef void apply_u2x(real* v, int64_t n, int64_t qa, int64_t qb, const real* m) noexcept nogil:
    """Apply a pair-mixing 4x4 ``m`` (index 2*bit(qa)+bit(qb)): non-zero only where it couples
    |00> with |11> and |01> with |10> (MS, XX, YY). Two 2x2 mixes per amplitude quartet, half a
    4x4's work; a real matrix acts on re and im alike (numba's real path).
    """
    cdef int64_t lo = qa if qa < qb else qb
    cdef int64_t hi = qb if qa < qb else qa
    # strides in reals: amplitude j is v[2j], v[2j+1]
    cdef int64_t s01 = 2 * (<int64_t>1 << qb)
    cdef int64_t s10 = 2 * (<int64_t>1 << qa)
    cdef int64_t s11 = s01 + s10
    cdef int64_t slo = 2 * (<int64_t>1 << lo)
    cdef int64_t shi = 2 * (<int64_t>1 << hi)
    cdef int64_t i0, i1, f
    # entries (r, c) of the 4x4 sit at m[8r + 2c] (re), m[8r + 2c + 1] (im)
    cdef real a00r = m[0], a00i = m[1], a03r = m[6], a03i = m[7]
    cdef real a30r = m[24], a30i = m[25], a33r = m[30], a33i = m[31]
    cdef real b11r = m[10], b11i = m[11], b12r = m[12], b12i = m[13]
    cdef real b21r = m[18], b21i = m[19], b22r = m[20], b22i = m[21]
    cdef real xr, xi, yr, yi
    cdef real tiny = _negligible(m[0])
    if (fabs(a00i) <= tiny and fabs(a03i) <= tiny and fabs(a30i) <= tiny and fabs(a33i) <= tiny
            and fabs(b11i) <= tiny and fabs(b12i) <= tiny and fabs(b21i) <= tiny and fabs(b22i) <= tiny):
        i0 = 0
        while i0 < 2 * n:
            i1 = i0
            while i1 < i0 + shi:
                for f in range(i1, i1 + slo):
                    xr = v[f]
                    yr = v[f + s11]
                    v[f] = a00r * xr + a03r * yr
                    v[f + s11] = a30r * xr + a33r * yr
                    xr = v[f + s01]
                    yr = v[f + s10]
                    v[f + s01] = b11r * xr + b12r * yr
                    v[f + s10] = b21r * xr + b22r * yr
                i1 += 2 * slo
            i0 += 2 * shi
        return
    i0 = 0
    while i0 < 2 * n:
        i1 = i0
        while i1 < i0 + shi:
            for f in range(i1, i1 + slo, 2):
                xr = v[f]
                xi = v[f + 1]
                yr = v[f + s11]
                yi = v[f + s11 + 1]
                v[f] = (a00r * xr - a00i * xi) + (a03r * yr - a03i * yi)
                v[f + 1] = (a00r * xi + a00i * xr) + (a03r * yi + a03i * yr)
                v[f + s11] = (a30r * xr - a30i * xi) + (a33r * yr - a33i * yi)
                v[f + s11 + 1] = (a30r * xi + a30i * xr) + (a33r * yi + a33i * yr)
                xr = v[f + s01]
                xi = v[f + s01 + 1]
                yr = v[f + s10]
                yi = v[f + s10 + 1]
                v[f + s01] = (b11r * xr - b11i * xi) + (b12r * yr - b12i * yi)
                v[f + s01 + 1] = (b11r * xi + b11i * xr) + (b12r * yi + b12i * yr)
                v[f + s10] = (b21r * xr - b21i * xi) + (b22r * yr - b22i * yi)
                v[f + s10 + 1] = (b21r * xi + b21i * xr) + (b22r * yi + b22i * yr)
            i1 += 2 * slo
        i0 += 2 * shi


cdef inline void _scale(real* v, int64_t f, real dr, real di) noexcept nogil:
    cdef real xr = v[f]
    cdef real xi = v[f + 1]
    v[f] = xr * dr - xi * di
    v[f + 1] = xr * di + xi * dr


cdef void apply_u2d(real* v, int64_t n, int64_t qa, int64_t qb, const real* m) noexcept nogil:
    """Apply a diagonal 4x4 ``m`` (index 2*bit(qa)+bit(qb)): one phase per amplitude (ZZ, native ZZ)."""
    cdef int64_t lo = qa if qa < qb else qb
    cdef int64_t hi = qb if qa < qb else qa
    cdef int64_t s01 = 2 * (<int64_t>1 << qb)
    cdef int64_t s10 = 2 * (<int64_t>1 << qa)
    cdef int64_t slo = 2 * (<int64_t>1 << lo)
    cdef int64_t shi = 2 * (<int64_t>1 << hi)
    cdef int64_t i0, i1, f
    cdef real d0r = m[0], d0i = m[1], d1r = m[10], d1i = m[11]
    cdef real d2r = m[20], d2i = m[21], d3r = m[30], d3i = m[31]
    i0 = 0
    while i0 < 2 * n:
        i1 = i0
        while i1 < i0 + shi:
            for f in range(i1, i1 + slo, 2):
                _scale(v, f, d0r, d0i)
                _scale(v, f + s01, d1r, d1i)
                _scale(v, f + s10, d2r, d2i)
                _scale(v, f + s01 + s10, d3r, d3i)
            i1 += 2 * slo
        i0 += 2 * shi


cdef void apply_swap_pairs(real* v, int64_t n, int64_t qa, int64_t qb, bint control_only) noexcept nogil:
    """CNOT(qa -> qb) when ``control_only`` else SWAP(qa, qb), by pair swaps."""
    cdef int64_t lo = qa if qa < qb else qb
    cdef int64_t hi = qb if qa < qb else qa
    cdef int64_t sa = <int64_t>1 << qa
    cdef int64_t sb = <int64_t>1 << qb
    cdef int64_t p, base, i, j
    cdef real tr, ti
    for p in range(n >> 2):
        base = _insert_zero(_insert_zero(p, lo), hi)
        if control_only:
            i = 2 * (base | sa)
            j = 2 * (base | sa | sb)
        else:
            i = 2 * (base | sa)
            j = 2 * (base | sb)
        tr = v[i]
        ti = v[i + 1]
        v[i] = v[j]
        v[i + 1] = v[j + 1]
        v[j] = tr
        v[j + 1] = ti


# A permutation step's table is linear over GF(2) (a CNOT/SWAP run: table[i ^ k] == table[i] ^ table[k]), so
# the four amplitudes from i = 4 w on come from table[i] ^ flip xor'ed with table[0:4]: one table read per four,
# and (AVX; SSE2 for complex64) their four reads go out in wide stores instead of one move each. Against the
# move per amplitude, the seed circuit's two permutations of 256 amplitudes take about half the time.
cdef extern from *:
    """
    #include <string.h>
    #if defined(__AVX__)
    #include <immintrin.h>
    #elif defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* the four amplitudes src[b], src[b ^ t1], src[b ^ t2], src[b ^ t3] into dest[0:4], one move each */
    #define QSIM_FOUR_MOVES(T, dest, src, b, t1, t2, t3)                                                    \\
        memcpy((dest), (src) + 2 * (b), 2 * sizeof(T));                                                     \\
        memcpy((dest) + 2, (src) + 2 * ((b) ^ (t1)), 2 * sizeof(T));                                        \\
        memcpy((dest) + 4, (src) + 2 * ((b) ^ (t2)), 2 * sizeof(T));                                        \\
        memcpy((dest) + 6, (src) + 2 * ((b) ^ (t3)), 2 * sizeof(T));
    #if defined(__AVX__)
    #define QSIM_AMP_double(src, k) _mm_loadu_pd((src) + 2 * (k))
    #define QSIM_FOUR_double(dest, src, b, t1, t2, t3)                                                      \\
        _mm256_storeu_pd((dest), _mm256_insertf128_pd(_mm256_castpd128_pd256(QSIM_AMP_double(src, b)),      \\
                                                      QSIM_AMP_double(src, (b) ^ (t1)), 1));                \\
        _mm256_storeu_pd((dest) + 4,                                                                        \\
                         _mm256_insertf128_pd(_mm256_castpd128_pd256(QSIM_AMP_double(src, (b) ^ (t2))),     \\
                                              QSIM_AMP_double(src, (b) ^ (t3)), 1));
    #else
    #define QSIM_FOUR_double(dest, src, b, t1, t2, t3) QSIM_FOUR_MOVES(double, dest, src, b, t1, t2, t3)
    #endif
    #if defined(__SSE2__)
    /* an amplitude is 8 bytes: two of them per 16-byte store (__m128i loads may alias floats) */
    #define QSIM_AMP_float(src, k) _mm_loadl_epi64((const __m128i*)((src) + 2 * (k)))
    #define QSIM_FOUR_float(dest, src, b, t1, t2, t3)                                                       \\
        _mm_storeu_si128((__m128i*)(dest),                                                                  \\
                         _mm_unpacklo_epi64(QSIM_AMP_float(src, b), QSIM_AMP_float(src, (b) ^ (t1))));      \\
        _mm_storeu_si128((__m128i*)((dest) + 4),                                                            \\
                         _mm_unpacklo_epi64(QSIM_AMP_float(src, (b) ^ (t2)), QSIM_AMP_float(src, (b) ^ (t3))));
    #else
    #define QSIM_FOUR_float(dest, src, b, t1, t2, t3) QSIM_FOUR_MOVES(float, dest, src, b, t1, t2, t3)
    #endif
    #define QSIM_PERMUTE(T)                                                                                 \\
    static void qsim_permute_##T(T* dest, const T* src, int64_t n, const int64_t* table, int64_t flip) {    \\
        int64_t i, b, t1, t2, t3;                                                                           \\
        if (n < 4) {                                                                                        \\
            for (i = 0; i < n; i++) memcpy(dest + 2 * i, src + 2 * (table[i] ^ flip), 2 * sizeof(T));       \\
            return;                                                                                         \\
        }                                                                                                   \\
        t1 = table[1]; t2 = table[2]; t3 = table[3];                                                        \\
        for (i = 0; i < n; i += 4) {                                                                        \\
            b = table[i] ^ flip;                                                                            \\
            QSIM_FOUR_##T(dest + 2 * i, src, b, t1, t2, t3);                                                \\
        }                                                                                                   \\
    }
    QSIM_PERMUTE(double)
    QSIM_PERMUTE(float)
    """
    void qsim_permute_double(double* dest, const double* src, int64_t n, const int64_t* table,
                             int64_t flip) noexcept nogil
    void qsim_permute_float(float* dest, const float* src, int64_t n, const int64_t* table,
                            int64_t flip) noexcept nogil


cdef inline void apply_flipped_permutation(real* dest, const real* src, int64_t n, const int64_t* table,
                                           int64_t flip) noexcept nogil:
    """``dest[i] = src[table[i] ^ flip]`` for a ``table`` linear over GF(2), as every permutation step's is; the
    caller swaps the buffers instead of copying back."""
    if real is float:
        qsim_permute_float(dest, src, n, table, flip)
    else:
        qsim_permute_double(dest, src, n, table, flip)


cdef inline void apply_permutation(real* dest, const real* src, int64_t n, const int64_t* table) noexcept nogil:
    """``dest[i] = src[table[i]]``; the caller swaps the buffers instead of copying back."""
    apply_flipped_permutation(dest, src, n, table, 0)


cdef enum:
    TILE_BYTES = 16384  # a tile of the state that stays in L1 (32 KiB on current x86) while several steps run on it


cdef inline int64_t _tiled_run_end(const int8_t* kind, const int32_t* q0, const int32_t* q1, int64_t k, int64_t last,
                                   int64_t tile) noexcept nogil:
    """End of the run of steps from ``k`` that act only on qubits below log2(``tile``) (a permutation ends it)."""
    while k < last and kind[k] != PERM and (<int64_t>1 << q0[k]) < tile and (
            kind[k] == U1 or (<int64_t>1 << q1[k]) < tile):
        k += 1
    return k


cdef real* apply_steps(real* psi, real* scratch, int64_t n, int64_t first, int64_t last, const int8_t* kind,
                       const int32_t* q0, const int32_t* q1, const int32_t* arg, const real* u1, const real* u2,
                       const int64_t* run_start, const int32_t* run_gate, const int64_t* perm_start,
                       const int64_t* perm_table) noexcept nogil:
    """Apply program steps ``first:last`` to the (local) state; returns the buffer now holding it.

    A permutation gathers ``psi`` into ``scratch`` and the two buffers trade
    roles, which saves numba's copy back: so the result is in ``psi`` or in
    ``scratch``, and callers must use the returned pointer.

    A state larger than an L1 tile (``TILE_BYTES``) runs each stretch of two
    or more steps on qubits below the tile's width tile by tile: all of them
    on one tile, then the next, so the stretch costs one pass over the (L2)
    state instead of one per step. Each amplitude sees the same operations in
    the same order, so the result is the same to the bit.
    """
    cdef int64_t tile = TILE_BYTES // (2 * sizeof(real))
    cdef int64_t k = first
    cdef int64_t end, t
    cdef real* out
    if n <= tile:
        return _apply_in_order(psi, scratch, n, first, last, kind, q0, q1, arg, u1, u2, run_start, run_gate,
                               perm_start, perm_table)
    while k < last:
        end = _tiled_run_end(kind, q0, q1, k, last, tile)
        if end - k >= 2:
            t = 0
            while t < n:
                _apply_in_order(psi + 2 * t, NULL, tile, k, end, kind, q0, q1, arg, u1, u2, run_start, run_gate,
                                perm_start, perm_table)
                t += tile
        else:  # the steps up to the next tiled stretch, over the whole state
            end = k + 1
            while end < last and _tiled_run_end(kind, q0, q1, end, last, tile) - end < 2:
                end += 1
            out = _apply_in_order(psi, scratch, n, k, end, kind, q0, q1, arg, u1, u2, run_start, run_gate,
                                  perm_start, perm_table)
            if out != psi:  # permutations: the buffers traded roles
                scratch = psi
                psi = out
        k = end
    return psi


cdef enum:
    DIAGONAL_LAYER = 64  # most diagonal U1 steps one phase pass applies
    PHASE_LOW_QUBITS = 8  # the phase pass's table over the low qubits has 2**8 entries


cdef inline bint _diagonal_u1(const real* u1, const int64_t* run_start, const int32_t* run_gate, int64_t run,
                              real* m) noexcept nogil:
    """The fused run's matrix into ``m[8]``; whether it is diagonal (as :func:`apply_u1` decides)."""
    fused_u1(u1, run_start, run_gate, run, m)
    return _u1_path(m) == MIX_DIAGONAL


cdef void _phase_table(real* table, int64_t size, int64_t shift, int64_t count, const int32_t* qubits,
                       const real* diagonals) noexcept nogil:
    """``table[j]`` (complex, ``size`` entries) = product over the layer's steps on qubits ``shift ..
    shift + log2(size) - 1`` of their diagonal entry for bit ``q - shift`` of j, in step order."""
    cdef int64_t j, s, bit
    cdef real xr, xi, dr, di
    for j in range(size):
        table[2 * j] = 1
        table[2 * j + 1] = 0
    for s in range(count):
        bit = qubits[s] - shift
        if bit < 0 or (<int64_t>1 << bit) >= size:
            continue
        for j in range(size):
            dr = diagonals[4 * s + 2 * ((j >> bit) & 1)]
            di = diagonals[4 * s + 2 * ((j >> bit) & 1) + 1]
            xr = table[2 * j]
            xi = table[2 * j + 1]
            table[2 * j] = xr * dr - xi * di
            table[2 * j + 1] = xr * di + xi * dr


cdef inline bint _vector_phases(real* v, int64_t rows, int64_t cols, const real* high, const real* low,
                                real* forms) noexcept nogil:
    """``v[(h, j)] *= high[h] * low[j]`` with the vector kernels when a row holds whole vectors (``forms``:
    room for 8 * cols reals, the low table's four lane forms); returns whether it did."""
    cdef int64_t j
    if real is double:
        if not QSIM_VECTORS or 2 * cols < QSIM_WIDTH_d:
            return False
    else:
        if not QSIM_VECTORS or 2 * cols < QSIM_WIDTH_f:
            return False
    for j in range(cols):
        forms[2 * j] = low[2 * j]  # lr lr
        forms[2 * j + 1] = low[2 * j]
        forms[2 * cols + 2 * j] = low[2 * j + 1]  # li li
        forms[2 * cols + 2 * j + 1] = low[2 * j + 1]
        forms[4 * cols + 2 * j] = -low[2 * j]  # -lr lr
        forms[4 * cols + 2 * j + 1] = low[2 * j]
        forms[6 * cols + 2 * j] = -low[2 * j + 1]  # -li li
        forms[6 * cols + 2 * j + 1] = low[2 * j + 1]
    if real is double:
        qsim_phases_d(v, rows, cols, high, forms, forms + 2 * cols, forms + 4 * cols, forms + 6 * cols)
    else:
        qsim_phases_f(v, rows, cols, high, forms, forms + 2 * cols, forms + 4 * cols, forms + 6 * cols)
    return True


cdef void apply_diagonal_layer(real* v, int64_t n, int64_t count, const int32_t* qubits, const real* diagonals,
                               real* tables) noexcept nogil:
    """Apply ``count`` diagonal single-qubit matrices (qubit ``qubits[s]``, entries ``diagonals[4s:4s+4]`` =
    d0 re, im, d1 re, im) in one pass: amplitude i is multiplied by the product of its phases, taken as
    ``high[i >> 8] * low[i & 255]`` from two tables (``tables``: room for 10 * 256 + 2 * n / 256 reals).
    Two complex products per amplitude, whatever ``count``."""
    cdef int64_t bits = 0
    cdef int64_t low_bits, low_size, high_size, h, j, f
    cdef real* low = tables
    cdef real* high
    cdef real hr, hi, pr, pi, xr, xi
    while (<int64_t>1 << bits) < n:
        bits += 1
    low_bits = PHASE_LOW_QUBITS if bits > PHASE_LOW_QUBITS else bits
    low_size = <int64_t>1 << low_bits
    high_size = n >> low_bits
    high = tables + 2 * low_size
    _phase_table(low, low_size, 0, count, qubits, diagonals)
    _phase_table(high, high_size, low_bits, count, qubits, diagonals)
    if _vector_phases(v, high_size, low_size, high, low, high + 2 * high_size):
        return
    for h in range(high_size):
        hr = high[2 * h]
        hi = high[2 * h + 1]
        f = 2 * (h << low_bits)
        for j in range(low_size):
            pr = hr * low[2 * j] - hi * low[2 * j + 1]
            pi = hr * low[2 * j + 1] + hi * low[2 * j]
            xr = v[f + 2 * j]
            xi = v[f + 2 * j + 1]
            v[f + 2 * j] = xr * pr - xi * pi
            v[f + 2 * j + 1] = xr * pi + xi * pr


cdef inline int64_t _control_flip(int64_t slice_index, int64_t table, const int64_t* control_start,
                                  const int32_t* control_qubit, const int64_t* control_mask) noexcept nogil:
    """XOR of permutation ``table``'s external-control masks whose qubit is 1 in ``slice_index`` (the global
    index of the gathered slice's first amplitude, whose bits outside the block are the slice's)."""
    cdef int64_t flip = 0
    cdef int64_t j
    for j in range(control_start[table], control_start[table + 1]):
        if (slice_index >> control_qubit[j]) & 1:
            flip ^= control_mask[j]
    return flip


cdef real* apply_block_steps(real* psi, real* scratch, int64_t n, int64_t first, int64_t last, const int8_t* kind,
                             const int32_t* q0, const int32_t* q1, const int32_t* arg, const real* u1,
                             const real* u2, const int64_t* run_start, const int32_t* run_gate,
                             const int64_t* perm_start, const int64_t* perm_table, const int64_t* control_start,
                             const int32_t* control_qubit, const int64_t* control_mask, int64_t slice_index,
                             real* tables) noexcept nogil:
    """:func:`apply_steps` for the gathered slice ``slice_index`` (global index of its first amplitude) of a
    block of a multi-block program (``evolve_large``): a stretch of two or more diagonal U1 steps (the
    compiler gathers the diagonal tails of a block's runs into such stretches,
    :mod:`qsim_core.compiler.diagonals`) is one phase pass (:func:`apply_diagonal_layer`; ``tables`` is its
    scratch), and a permutation reads its external controls (``control_*``, the program's
    ``perm_control_*``) from the slice's index. The rest as ``apply_steps``. The phases of a stretch are
    multiplied together first, so results may differ from ``apply_steps`` in the last bits."""
    cdef int64_t k = first
    cdef int64_t end, count
    cdef real m[8]
    cdef real diagonals[4 * DIAGONAL_LAYER]
    cdef int32_t qubits[DIAGONAL_LAYER]
    cdef real* out
    while k < last:
        if kind[k] == PERM:
            apply_flipped_permutation(scratch, psi, n, perm_table + perm_start[arg[k]],
                                      _control_flip(slice_index, arg[k], control_start, control_qubit,
                                                    control_mask))
            out = psi
            psi = scratch
            scratch = out
            k += 1
            continue
        count = 0
        end = k
        while end < last and count < DIAGONAL_LAYER and kind[end] == U1 and _diagonal_u1(
                u1, run_start, run_gate, arg[end], m):
            qubits[count] = q0[end]
            diagonals[4 * count] = m[0]
            diagonals[4 * count + 1] = m[1]
            diagonals[4 * count + 2] = m[6]
            diagonals[4 * count + 3] = m[7]
            count += 1
            end += 1
        if count >= 2:
            apply_diagonal_layer(psi, n, count, qubits, diagonals, tables)
        else:
            while end < last and kind[end] != PERM and not (
                    kind[end] == U1 and _diagonal_u1(u1, run_start, run_gate, arg[end], m) and end + 1 < last
                    and kind[end + 1] == U1 and _diagonal_u1(u1, run_start, run_gate, arg[end + 1], m)):
                end += 1
            # no permutation in the stretch: the state stays in psi
            apply_steps(psi, scratch, n, k, end, kind, q0, q1, arg, u1, u2, run_start, run_gate, perm_start,
                        perm_table)
        k = end
    return psi


cdef enum:
    GROUP_MAX = 3  # most U1 steps one grouped sweep applies (the AVX-512 registers hold 2**3 vectors)


cdef inline int64_t _u1_group(real* psi, int64_t n, int64_t k, int64_t last, const int8_t* kind, const int32_t* q0,
                              const int32_t* arg, const real* u1, const int64_t* run_start, const int32_t* run_gate,
                              int64_t* qubits, real* m) noexcept nogil:
    """Apply the U1 steps from ``k`` in one sweep if two or three in a row qualify (``qsim_group*``); returns how
    many it applied (0: none, the caller applies step k itself).

    A step qualifies when its fused matrix takes :func:`apply_u1`'s real or complex path (not the diagonal one,
    which the phase pass serves), its qubit is not one already in the group and its pairs hold whole vectors of
    the grouped kernels (qubit >= 2 in complex128, >= 3 in complex64). ``m[0:8]`` holds step k's fused matrix
    (the caller formed it, and applies it itself when nothing is grouped); ``qubits[3]`` and the rest of
    ``m[24]`` are scratch."""
    cdef int64_t count = 0
    cdef int64_t j, q
    cdef int path
    cdef real* g
    cdef bint repeated
    cdef int real_path[GROUP_MAX]
    cdef int64_t width = QSIM_GROUP_REALS_f
    if real is double:
        width = QSIM_GROUP_REALS_d
    if not QSIM_GROUPS:
        return 0
    while count < GROUP_MAX and k + count < last and kind[k + count] == U1:
        q = q0[k + count]
        if (<int64_t>2 << q) < width:
            break
        repeated = False
        for j in range(count):
            repeated = repeated or qubits[j] == q
        if repeated:
            break
        g = m + 8 * count
        if count:
            fused_u1(u1, run_start, run_gate, arg[k + count], g)
        path = _u1_path(g)
        if path == MIX_DIAGONAL:
            break
        real_path[count] = path == MIX_REAL
        qubits[count] = q
        count += 1
    if count < 2:
        return 0
    grouped_sweep(psi, n, count, qubits, m, real_path)
    return count


cdef inline int64_t _low_pair(real* psi, int64_t n, int64_t k, int64_t last, const int8_t* kind, const int32_t* q0,
                              const int32_t* arg, const real* u1, const int64_t* run_start, const int32_t* run_gate,
                              real* m) noexcept nogil:
    """Apply U1 steps k and k + 1 in one pass (``qsim_low_pair_d``) if they are real matrices on qubits 0 and 1 of a
    complex128 state, which the grouped sweeps cannot take; returns 2, or 0 if not (``m[0:8]`` holds step k's
    fused matrix, as for :func:`_u1_group`; ``m[8:16]`` is scratch)."""
    if real is float or not QSIM_GROUPS or n < 4 or k + 1 >= last or kind[k + 1] != U1:
        return 0
    if not (q0[k] == 0 and q0[k + 1] == 1 or q0[k] == 1 and q0[k + 1] == 0) or _u1_path(m) != MIX_REAL:
        return 0
    fused_u1(u1, run_start, run_gate, arg[k + 1], m + 8)
    if _u1_path(m + 8) != MIX_REAL:
        return 0
    if real is double:  # a compile-time test: the float build never gets here
        if q0[k] == 0:
            qsim_low_pair_d(psi, n, m, m + 8)
        else:  # the two commute: qubit 0's goes first all the same
            qsim_low_pair_d(psi, n, m + 8, m)
    return 2


cdef inline void grouped_sweep(real* psi, int64_t n, int64_t count, const int64_t* qubits, const real* m,
                               const int* real_path) noexcept nogil:
    """``qsim_group2``/``qsim_group3`` of the state's precision: the ``count`` (2 or 3) 2x2 matrices ``m`` (8 reals
    each) on the distinct ``qubits`` in one sweep, each on its real or complex path as ``real_path`` says."""
    if real is double:
        if count == 2:
            qsim_group2_d(psi, n, qubits, m, real_path)
        else:
            qsim_group3_d(psi, n, qubits, m, real_path)
    else:
        if count == 2:
            qsim_group2_f(psi, n, qubits, m, real_path)
        else:
            qsim_group3_f(psi, n, qubits, m, real_path)


cdef real* _apply_in_order(real* psi, real* scratch, int64_t n, int64_t first, int64_t last, const int8_t* kind,
                           const int32_t* q0, const int32_t* q1, const int32_t* arg, const real* u1, const real* u2,
                           const int64_t* run_start, const int32_t* run_gate, const int64_t* perm_start,
                           const int64_t* perm_table) noexcept nogil:
    """:func:`apply_steps` one step after the other over the whole state (same contract); where the build has
    them (:func:`_u1_group`), up to three U1 steps in a row in one sweep, with the same result."""
    cdef int64_t k = first
    cdef int64_t grouped
    cdef int8_t op
    cdef real m[8 * GROUP_MAX]
    cdef int64_t qubits[GROUP_MAX]
    cdef real* tmp
    while k < last:
        op = kind[k]
        if op == U1:
            fused_u1(u1, run_start, run_gate, arg[k], m)
            grouped = _u1_group(psi, n, k, last, kind, q0, arg, u1, run_start, run_gate, qubits, m)
            if not grouped:
                grouped = _low_pair(psi, n, k, last, kind, q0, arg, u1, run_start, run_gate, m)
            if grouped:
                k += grouped
                continue
            apply_u1(psi, n, q0[k], m)
        elif op == PERM:
            apply_permutation(scratch, psi, n, perm_table + perm_start[arg[k]])
            tmp = psi
            psi = scratch
            scratch = tmp
        elif op == CNOT:
            apply_swap_pairs(psi, n, q0[k], q1[k], True)
        elif op == SWAP:
            apply_swap_pairs(psi, n, q0[k], q1[k], False)
        elif op == U2X:
            apply_u2x(psi, n, q0[k], q1[k], u2 + 32 * arg[k])
        elif op == U2D:
            apply_u2d(psi, n, q0[k], q1[k], u2 + 32 * arg[k])
        elif op == U2:
            apply_u2(psi, n, q0[k], q1[k], u2 + 32 * arg[k])
        k += 1
    return psi


cdef inline void _initial_column(const real* u1, const int64_t* run_start, const int32_t* run_gate,
                                 const int32_t* init_u1, int64_t q, real* column) noexcept nogil:
    """First column (c0, c1) of qubit q's initial run, as 4 reals; |0> when it has none."""
    cdef real m[8]
    if init_u1[q] < 0:
        column[0] = 1
        column[1] = 0
        column[2] = 0
        column[3] = 0
        return
    fused_columns(u1, run_start, run_gate, init_u1[q], m, 1)
    column[0] = m[0]
    column[1] = m[1]
    column[2] = m[4]
    column[3] = m[5]


cdef enum:
    SPLIT_PRODUCT_MIN = 4  # init_product forms a state of this many qubits or more as an outer product of two halves
    SPLIT_PRODUCT_HALF = 6  # ... and of at most twice this many (the halves are on the stack)


cdef void init_product(real* v, const real* u1, const int64_t* run_start, const int32_t* run_gate,
                       const int32_t* init_u1, int64_t first_qubit, int64_t last_qubit) noexcept nogil:
    """Write the product state of qubits first..last-1 into ``v[: 2**(last-first)]``.

    From 4 to 12 qubits, as the outer product of the states of the lower and the upper half (each formed by
    :func:`product_of`): one complex product per amplitude, in a loop the compiler vectorises (the lower half
    is kept beside its copy times i, so that each output real is two products of reals at the same position),
    instead of :func:`product_of`'s two per amplitude in loops whose trip counts start at 1."""
    cdef int64_t qubits[64]
    cdef real low[2 << SPLIT_PRODUCT_HALF]
    cdef real turned[2 << SPLIT_PRODUCT_HALF]  # i times low
    cdef real high[2 << SPLIT_PRODUCT_HALF]
    cdef int64_t count = last_qubit - first_qubit
    cdef int64_t low_bits = count - count // 2
    cdef int64_t k, h, j
    cdef real hr, hi
    cdef real* out
    for k in range(count):
        qubits[k] = first_qubit + k
    if count < SPLIT_PRODUCT_MIN or count > 2 * SPLIT_PRODUCT_HALF:
        product_of(v, u1, run_start, run_gate, init_u1, qubits, count)
        return
    product_of(low, u1, run_start, run_gate, init_u1, qubits, low_bits)
    product_of(high, u1, run_start, run_gate, init_u1, qubits + low_bits, count - low_bits)
    for j in range(<int64_t>1 << low_bits):
        turned[2 * j] = -low[2 * j + 1]
        turned[2 * j + 1] = low[2 * j]
    for h in range(<int64_t>1 << (count - low_bits)):
        hr = high[2 * h]
        hi = high[2 * h + 1]
        out = v + (h << (low_bits + 1))
        for j in range(<int64_t>2 << low_bits):
            out[j] = low[j] * hr + turned[j] * hi


cdef void product_of(real* v, const real* u1, const int64_t* run_start, const int32_t* run_gate,
                     const int32_t* init_u1, const int64_t* qubits, int64_t count) noexcept nogil:
    """Write the product state of ``qubits[0:count]`` into ``v[: 2**count]``, bit k of an index standing for
    ``qubits[k]``."""
    cdef int64_t k, i, size
    cdef real col[4]
    cdef real xr, xi
    v[0] = 1
    v[1] = 0
    for k in range(count):
        _initial_column(u1, run_start, run_gate, init_u1, qubits[k], col)
        size = <int64_t>1 << k
        for i in range(size):
            xr = v[2 * i]
            xi = v[2 * i + 1]
            v[2 * (i + size)] = xr * col[2] - xi * col[3]
            v[2 * (i + size) + 1] = xr * col[3] + xi * col[2]
            v[2 * i] = xr * col[0] - xi * col[1]
            v[2 * i + 1] = xr * col[1] + xi * col[0]


# ---------------------------------------------------------------- observables

cdef double z_expectation(const real* v, int64_t first, int64_t last, int64_t zmask) noexcept nogil:
    """Sum over indices first..last-1 of |psi_i|^2 * (-1)^popcount(i & zmask), in float64."""
    cdef double acc = 0.0
    cdef double p, re, im
    cdef int64_t i
    for i in range(first, last):
        re = v[2 * i]
        im = v[2 * i + 1]
        p = re * re + im * im
        acc += p - 2.0 * p * parity(i & zmask)
    return acc


cdef double pauli_expectation(const real* v, int64_t first, int64_t last, int64_t xmask, int64_t zmask,
                              int64_t ny) noexcept nogil:
    """Partial <psi|P|psi> over indices first..last-1 for P = i^ny X^xmask Z^zmask."""
    cdef double acc = 0.0
    cdef double ar, ai, br, bi, re, im, sign
    cdef int64_t i, j
    cdef int64_t phase = ny & 3
    for i in range(first, last):
        j = i ^ xmask
        ar = v[2 * i]
        ai = v[2 * i + 1]
        br = v[2 * j]
        bi = v[2 * j + 1]
        re = br * ar + bi * ai
        im = br * ai - bi * ar
        sign = 1.0 - 2.0 * parity(i & zmask)
        if phase == 0:
            acc += sign * re
        elif phase == 1:
            acc -= sign * im
        elif phase == 2:
            acc -= sign * re
        else:
            acc += sign * im
    return acc


cdef inline void probabilities_into(const real* v, int64_t first, int64_t last, double* out) noexcept nogil:
    """out[i - first] = |psi_i|^2 in float64 for i in first..last-1."""
    cdef int64_t i
    cdef double re, im
    for i in range(first, last):
        re = v[2 * i]
        im = v[2 * i + 1]
        out[i - first] = re * re + im * im


cdef inline int64_t _log2(int64_t n) noexcept nogil:
    """The number of bits of ``n``'s indices: the least b with 2**b >= n (a state's qubits, a table's bits)."""
    cdef int64_t bits = 0
    while (<int64_t>1 << bits) < n:
        bits += 1
    return bits


cdef void _fold_marginals(double* probs, int64_t size, double* ones, int64_t num_qubits) noexcept nogil:
    """ones[q] = P(qubit q = 1) for every qubit; destroys ``probs`` (folds it in half n times).

    numba compiles this with fastmath (reassociation); here eight partial sums, one per lane of an AVX-512
    vector (each lane's sum in order), give gcc the same freedom to vectorise without any fast-math flag.
    (Four, strided by one, were compiled to lane extractions and scalar adds.) A level sums its upper half
    and folds it onto the lower one in the same loop, one read of each half; the last three levels, within
    one vector, are plain loops.
    """
    cdef int64_t q = num_qubits - 1
    cdef int64_t half, i, j
    cdef double acc[8]
    cdef double upper
    while size >= 16:
        half = size >> 1
        for j in range(8):
            acc[j] = 0.0
        i = 0
        while i < half:
            for j in range(8):
                acc[j] += probs[half + i + j]
                probs[i + j] += probs[half + i + j]
            i += 8
        ones[q] = _lane_total(acc)
        q -= 1
        size = half
    while size > 1:
        half = size >> 1
        upper = 0.0
        for i in range(half):
            upper += probs[half + i]
            probs[i] += probs[half + i]
        ones[q] = upper
        q -= 1
        size = half


cdef void z_expectations_from_probabilities(double* probs, int64_t n, const int64_t* xmask, const int64_t* zmask,
                                            int64_t count, double* out) noexcept nogil:
    """Fill ``out[k]`` for every Z string (xmask[k] == 0) from the ``n`` basis probabilities.

    Multi-qubit Z strings sum signed probabilities; single-qubit Z strings
    come from the marginals, which one halving pass computes for all qubits.
    Destroys ``probs``.
    """
    cdef int64_t num_qubits = _log2(n)
    cdef int64_t single = 0
    cdef int64_t i, k, z
    cdef double acc
    cdef double ones[64]
    for k in range(count):
        if xmask[k] != 0:
            continue
        z = zmask[k]
        if z & (z - 1) != 0:
            acc = 0.0
            for i in range(n):
                acc += probs[i] - 2.0 * probs[i] * parity(i & z)
            out[k] = acc
        else:
            single += 1
    if single:
        _fold_marginals(probs, n, ones, num_qubits)
        _single_z_into(probs[0], ones, xmask, zmask, count, out)


cdef void _single_z_into(double total, const double* ones, const int64_t* xmask, const int64_t* zmask,
                         int64_t count, double* out) noexcept nogil:
    """``out[k]`` for the identity and every single-qubit Z string, from the total probability and the
    marginals ``ones[q] = P(qubit q = 1)``."""
    cdef int64_t k, q, z
    for k in range(count):
        z = zmask[k]
        if xmask[k] == 0 and z & (z - 1) == 0:
            if z == 0:
                out[k] = total
            else:
                q = 0
                while z >> q != 1:
                    q += 1
                out[k] = total - 2.0 * ones[q]


cdef double _fold_state_once(const real* v, int64_t n, double* probs) noexcept nogil:
    """The first level of :func:`_fold_marginals` read straight from the amplitudes (n >= 16): ``probs[i] =
    |v_i|^2 + |v_(i + n/2)|^2`` for i < n/2, and P(top qubit = 1) returned, summed as _fold_marginals sums it
    (the same numbers as probabilities_into then that level, without storing and reloading the upper half)."""
    cdef int64_t half = n >> 1
    cdef int64_t i = 0
    cdef int64_t j
    cdef double acc[8]
    cdef double re, im, upper
    for j in range(8):
        acc[j] = 0.0
    while i < half:
        for j in range(8):
            re = v[2 * (half + i + j)]
            im = v[2 * (half + i + j) + 1]
            upper = re * re + im * im
            acc[j] += upper
            re = v[2 * (i + j)]
            im = v[2 * (i + j) + 1]
            probs[i + j] = (re * re + im * im) + upper
        i += 8
    return _lane_total(acc)


cdef void expectations_into(const real* v, int64_t n, double* probs, const int64_t* xmask, const int64_t* zmask,
                            const int64_t* ny, int64_t count, double* out) noexcept nogil:
    """All ``count`` observables' exact expectations for one whole state; ``probs`` is float64[n] scratch."""
    cdef int64_t k, num_qubits
    cdef bint single_only = n >= 16
    cdef double ones[64]
    for k in range(count):
        if xmask[k] != 0:
            out[k] = pauli_expectation(v, 0, n, xmask[k], zmask[k], ny[k])
        elif zmask[k] & (zmask[k] - 1) != 0:
            single_only = False
    if single_only:
        # no Z string needs the whole distribution: the marginals' first fold reads the amplitudes themselves
        num_qubits = _log2(n)
        ones[num_qubits - 1] = _fold_state_once(v, n, probs)
        _fold_marginals(probs, n >> 1, ones, num_qubits - 1)
        _single_z_into(probs[0], ones, xmask, zmask, count, out)
    else:
        probabilities_into(v, 0, n, probs)
        z_expectations_from_probabilities(probs, n, xmask, zmask, count, out)


# ---------------------------------------------------------------- sampling

cdef inline uint64_t next_u64(uint64_t* state) noexcept nogil:
    """Advance a SplitMix64 state in place; returns 64 random bits."""
    state[0] = state[0] + _GOLDEN
    return _mix64(state[0])


# Walker's alias table on integer weights, Vose's construction, in C. The weights sum to exactly 2**62 and each
# column holds CAP = 2**(62 - bits) of them, so the pairing is exact: no column is left over from rounding, and no
# sum depends on the order it is formed in. A pairing step is one integer addition and a sign test, written with
# plain branches: on 256-column tables, branch-free versions of the loop (mask selects, or eight cmovs) ran 1.4-2x
# slower than the branches, whose sign test mispredicts about once per large column (where it turns).
cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #endif
    #define QSIM_TOTAL_BITS 62
    /* sum(p[:n]) as alias_table sums it (numba's too): element i into lane i % 8, in index order, then the
       lanes pairwise. The lanes are independent, so gcc adds them as one vector (or two, or four) instead of
       a chain of n dependent additions. */
    static double qsim_lane_sum(const double* p, int64_t n) {
        double lane[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        int64_t i = 0;
        int k;
        for (; i + 8 <= n; i += 8)
            for (k = 0; k < 8; k++)
                lane[k] += p[i + k];
        for (; i < n; i++)
            lane[i & 7] += p[i];
        return qsim_lane_total(lane);
    }
    /* w[i] = (int64)(p[i] * (2**62 / sum(p))), truncated, then 2**62 - sum(w) (what the truncations and the
       roundings lost or gained, a few units per column) added to the first largest weight: the weights sum
       to exactly 2**62. Both loops are reductions gcc vectorises. */
    static void qsim_integer_weights(const double* p, int64_t n, int64_t* w) {
        const double scale = 4611686018427387904.0 / qsim_lane_sum(p, n);
        int64_t sum = 0, top = 0, first = n - 1, i, candidate;
        for (i = 0; i < n; i++) {
            w[i] = (int64_t)(p[i] * scale);
            sum += w[i];
            top = w[i] > top ? w[i] : top;
        }
        for (i = 0; i < n; i++) {
            candidate = w[i] == top ? i : n - 1;
            first = candidate < first ? candidate : first;
        }
        w[first] += ((int64_t)1 << QSIM_TOTAL_BITS) - sum;
    }
    /* The columns split by their excess e = w - cap: order[0, small) the indices with e < 0, ascending (a
       stack, top last), order[small, n) the others, descending (a queue, highest index first), excess[k] the
       excess of column order[k]; returns small. AVX-512 splits eight columns at a time by compressing their
       indices and excesses (the larges' from the reversed lanes); the scalar loop is branch-free, the test
       being a coin flip for the branch predictor: the entry goes to both candidate slots and the test's 0/1
       moves the tops. */
    static int64_t qsim_split_columns(const int64_t* w, int64_t n, int64_t cap, int64_t* order, int64_t* excess) {
        int64_t small_top = 0, large_bottom = n, i = 0, small, e;
    #if defined(__AVX512F__)
        const __m512i capacity = _mm512_set1_epi64(cap), zero = _mm512_setzero_si512();
        const __m512i reverse = _mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm512_set1_epi64(8);
        __m512i index = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
        for (; i + 8 <= n; i += 8) {
            __m512i ev = _mm512_sub_epi64(_mm512_loadu_si512((const void*)(w + i)), capacity);
            __m512i ev_reversed = _mm512_permutexvar_epi64(reverse, ev);
            __m512i index_reversed = _mm512_permutexvar_epi64(reverse, index);
            __mmask8 smalls = _mm512_cmplt_epi64_mask(ev, zero);
            __mmask8 larges = _mm512_cmpge_epi64_mask(ev_reversed, zero);  /* lane k is column i + 7 - k */
            int count = __builtin_popcount((unsigned)smalls), rest = 8 - count;
            __mmask8 small_lanes = (__mmask8)((1u << count) - 1), large_lanes = (__mmask8)((1u << rest) - 1);
            _mm512_mask_storeu_epi64(order + small_top, small_lanes, _mm512_maskz_compress_epi64(smalls, index));
            _mm512_mask_storeu_epi64(excess + small_top, small_lanes, _mm512_maskz_compress_epi64(smalls, ev));
            _mm512_mask_storeu_epi64(order + large_bottom - rest, large_lanes,
                                     _mm512_maskz_compress_epi64(larges, index_reversed));
            _mm512_mask_storeu_epi64(excess + large_bottom - rest, large_lanes,
                                     _mm512_maskz_compress_epi64(larges, ev_reversed));
            small_top += count;
            large_bottom -= rest;
            index = _mm512_add_epi64(index, eight);
        }
    #endif
        for (; i < n; i++) {
            e = w[i] - cap;
            small = e < 0;
            order[small_top] = i;
            excess[small_top] = e;
            order[large_bottom - 1] = i;
            excess[large_bottom - 1] = e;
            small_top += small;
            large_bottom -= 1 - small;
        }
        return small_top;
    }
    /* Vose's pairing. The top small column takes the first large one, cur, as its alias and cur gives up what
       the small one lacks (its excess grows by the small one's, which is negative); once below its capacity
       (turned) cur is the next small column itself and takes the next large one as its alias, which
       becomes cur. The loop ends when the one it needs is missing, which with exact sums is when every
       column is paired. Paired columns are written into table (cut << bits | alias); the others keep their
       entries. Needs 0 < small < n. */
    static void qsim_vose_pairs(uint64_t* table, const int64_t* order, const int64_t* excess, int64_t n, int bits,
                                int64_t small) {
        const int64_t cap = (int64_t)1 << (QSIM_TOTAL_BITS - bits);
        int64_t small_top = small, large = small, cur = order[large], rest = excess[large], lo, lo_excess;
        for (;;) {
            if (rest < 0) {
                if (++large == n)
                    break;
                lo = cur;
                lo_excess = rest;
                cur = order[large];
                rest += excess[large];
            } else {
                if (small_top == 0)
                    break;
                small_top--;
                lo = order[small_top];
                lo_excess = excess[small_top];
                rest += lo_excess;
            }
            table[lo] = ((uint64_t)(cap + lo_excess) << bits) | (uint64_t)cur;
        }
    }
    /* qsim_vose_pairs of eight tables at once in AVX-512, a table per lane (tables, orders and excesses laid out
       one after the other: table r at tables + (n + 1) r, its order and excess at n r): one table's sign test
       mispredicts about once per large column, where the lanes take both ways by masks. A lane whose step would
       break (the column it needs is missing) is done and writes its later steps to its table's entry n, left
       unread; a lane with no pairing to do (small 0 or n, or no table: mask `pairs` clear) reads and writes
       nothing. The same tables as qsim_vose_pairs, entry for entry. Returns 0 where the build has no AVX-512
       (the caller pairs them one by one). */
    static int qsim_vose_pairs8(uint64_t* tables, const int64_t* orders, const int64_t* excesses, int64_t n,
                                int bits, const int64_t* small, unsigned pairs) {
    #if defined(__AVX512F__)
        const int64_t cap = (int64_t)1 << (QSIM_TOTAL_BITS - bits);
        const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), one = _mm512_set1_epi64(1);
        const __m512i zero = _mm512_setzero_si512(), last = _mm512_set1_epi64(n);
        const __m512i first = _mm512_mullo_epi64(lane, _mm512_set1_epi64(n));  /* lane r's order/excess */
        const __m512i table_first = _mm512_add_epi64(first, lane);  /* lane r's table: (n + 1) r */
        const __m512i capacity = _mm512_set1_epi64(cap);
        __mmask8 done = (__mmask8)~pairs;
        __m512i small_top = _mm512_maskz_loadu_epi64((__mmask8)pairs, small);
        __m512i large = small_top;
        __m512i at = _mm512_add_epi64(first, large);
        __m512i cur = _mm512_mask_i64gather_epi64(zero, (__mmask8)pairs, at, orders, 8);
        __m512i rest = _mm512_mask_i64gather_epi64(zero, (__mmask8)pairs, at, excesses, 8);
        while (done != 0xFF) {
            __mmask8 turn = _mm512_cmplt_epi64_mask(rest, zero);
            __m512i next = _mm512_add_epi64(large, one), below = _mm512_sub_epi64(small_top, one);
            done |= _mm512_mask_cmpeq_epi64_mask(turn, next, last)
                    | _mm512_mask_cmplt_epi64_mask((__mmask8)~turn, below, zero);
            /* the column the step takes: the next large one, or the top small one (clamped for done lanes) */
            __m512i index = _mm512_mask_blend_epi64(turn, _mm512_max_epi64(below, zero),
                                                    _mm512_min_epi64(next, _mm512_sub_epi64(last, one)));
            at = _mm512_add_epi64(first, index);
            __m512i taken_order = _mm512_mask_i64gather_epi64(zero, (__mmask8)pairs, at, orders, 8);
            __m512i taken_excess = _mm512_mask_i64gather_epi64(zero, (__mmask8)pairs, at, excesses, 8);
            __m512i lo = _mm512_mask_blend_epi64(turn, taken_order, cur);
            __m512i lo_excess = _mm512_mask_blend_epi64(turn, taken_excess, rest);
            cur = _mm512_mask_blend_epi64(turn, cur, taken_order);
            rest = _mm512_add_epi64(rest, taken_excess);
            large = _mm512_mask_blend_epi64(turn, large, next);
            small_top = _mm512_mask_blend_epi64(turn, below, small_top);
            __m512i entry = _mm512_or_epi64(_mm512_sll_epi64(_mm512_add_epi64(capacity, lo_excess),
                                                             _mm_cvtsi32_si128(bits)), cur);
            __m512i where = _mm512_add_epi64(table_first, _mm512_mask_blend_epi64(done, lo, last));
            _mm512_mask_i64scatter_epi64(tables, (__mmask8)pairs, where, entry, 8);
        }
        return 1;
    #else
        (void)tables; (void)orders; (void)excesses; (void)n; (void)bits; (void)small; (void)pairs;
        return 0;
    #endif
    }
    """
    int TOTAL_BITS "QSIM_TOTAL_BITS"  # the integer weights of an alias table sum to 2**TOTAL_BITS
    int qsim_vose_pairs8(uint64_t* tables, const int64_t* orders, const int64_t* excesses, int64_t n, int bits,
                         const int64_t* small, unsigned pairs) noexcept nogil
    void qsim_integer_weights(const double* p, int64_t n, int64_t* w) noexcept nogil
    int64_t qsim_split_columns(const int64_t* w, int64_t n, int64_t cap, int64_t* order,
                               int64_t* excess) noexcept nogil
    void qsim_vose_pairs(uint64_t* table, const int64_t* order, const int64_t* excess, int64_t n, int bits,
                         int64_t small) noexcept nogil


cdef void alias_table(const double* probs, int64_t bits, uint64_t* table, int64_t* order,
                      int64_t* excess) noexcept nogil:
    """Walker's alias table of ``probs`` (float64[2**bits], need not be normalised), Vose's construction.

    Column j of ``table`` is ``cut << bits | alias``: a draw that lands in
    column j keeps j when a coin of ``62 - bits`` random bits is below
    ``cut`` and takes ``alias`` otherwise. The cuts come from integer
    weights ``w`` that sum to exactly 2**62 (qsim_integer_weights), each
    column holding 2**(62 - bits) of them, so state i is drawn with
    probability exactly ``w[i] / 2**62``: ``probs[i] / sum(probs)`` rounded
    down to a multiple of 2**-62 (a state below that is never drawn), the
    few units the roundings lose given to the likeliest state. ``order`` and
    ``excess`` are int64[n] scratch: the columns in the pairing's order and
    their excesses. Same table as numba's, bit for bit.
    """
    cdef int64_t n = (<int64_t>1) << bits
    cdef int64_t small = _alias_columns(probs, bits, table, order, excess)
    if 0 < small < n:
        qsim_vose_pairs(table, order, excess, n, <int>bits, small)


cdef int64_t _alias_columns(const double* probs, int64_t bits, uint64_t* table, int64_t* order,
                            int64_t* excess) noexcept nogil:
    """:func:`alias_table` up to the pairing: the integer weights split into ``order`` and ``excess``, every
    column of ``table`` full and its own alias; returns how many columns are small (the pairing's ``small``)."""
    cdef int64_t n = (<int64_t>1) << bits
    cdef int64_t cap = (<int64_t>1) << (TOTAL_BITS - bits)
    cdef int64_t small, j
    qsim_integer_weights(probs, n, <int64_t*>table)  # the weights are only needed until the split
    small = qsim_split_columns(<int64_t*>table, n, cap, order, excess)
    for j in range(n):  # every column full and its own alias until the pairing says otherwise
        table[j] = ((<uint64_t>cap) << bits) | <uint64_t>j
    return small


cdef void alias_tables(const double* probs, int64_t bits, uint64_t* tables, int64_t* orders, int64_t* excesses,
                       int64_t count) noexcept nogil:
    """:func:`alias_table` of ``count`` (at most 8) distributions at once, paired together where the build has
    AVX-512 (``qsim_vose_pairs8``): distribution r at ``probs[n r: n (r + 1)]``, its table at
    ``tables[(n + 1) r:]`` (entry n is scratch), its ``order`` and ``excess`` at ``orders[n r:]`` and
    ``excesses[n r:]`` (room for 8 of each). The same tables, entry for entry."""
    cdef int64_t n = (<int64_t>1) << bits
    cdef int64_t r
    cdef int64_t small[8]
    cdef unsigned pairs = 0
    for r in range(count):
        small[r] = _alias_columns(probs + n * r, bits, tables + (n + 1) * r, orders + n * r, excesses + n * r)
        if 0 < small[r] < n:
            pairs |= 1u << r
    if qsim_vose_pairs8(tables, orders, excesses, n, <int>bits, small, pairs):
        return
    for r in range(count):
        if (pairs >> r) & 1:
            qsim_vose_pairs(tables + (n + 1) * r, orders + n * r, excesses + n * r, n, <int>bits, small[r])


def alias_tables_into(const double[:, ::1] probs, uint64_t[:, ::1] tables):
    """:func:`alias_tables` of up to 8 distributions ``probs[r]`` (2**bits entries each, bits >= 1) into
    ``tables[r, :2**bits]`` (2**bits + 1 columns): a check against :func:`alias_table_into`, not a path of the
    engine."""
    cdef int64_t count = probs.shape[0]
    cdef int64_t n = probs.shape[1]
    cdef int64_t bits = _log2(n)
    if not 0 < count <= 8 or tables.shape[0] != count or tables.shape[1] != n + 1 or n < 2 or (
            <int64_t>1) << bits != n:
        raise ValueError("1 to 8 distributions of 2**bits entries (bits >= 1), and a table of 2**bits + 1 "
                         "entries for each")
    cdef int64_t* scratch = <int64_t*>malloc(16 * n * sizeof(int64_t))
    if scratch == NULL:
        raise MemoryError("no scratch for the alias tables")
    alias_tables(&probs[0, 0], bits, &tables[0, 0], scratch, scratch + 8 * n, count)
    free(scratch)


def alias_table_into(const double[::1] probs, uint64_t[::1] table):
    """:func:`alias_table` of ``probs`` (2**bits entries, bits >= 1) into ``table`` (numba's
    ``sampling.alias_table``, the same arguments and the same table: a check of the two, not a path of the
    engine)."""
    cdef int64_t n = probs.shape[0]
    cdef int64_t bits = _log2(n)
    if table.shape[0] != n or n < 2 or (<int64_t>1) << bits != n:
        raise ValueError("probs and table must have the same length, a power of two (at least 2)")
    cdef int64_t* order = <int64_t*>malloc(n * sizeof(int64_t))
    cdef int64_t* excess = <int64_t*>malloc(n * sizeof(int64_t))
    if order == NULL or excess == NULL:
        free(order)
        free(excess)
        raise MemoryError("no scratch for the alias table")
    alias_table(&probs[0], bits, &table[0], order, excess)
    free(order)
    free(excess)


cdef void fill_random(uint64_t* buffer, int64_t count, uint64_t* rng) noexcept nogil:
    """Fill ``buffer[:count]`` with random bits, advancing ``rng``; a loop of its own so it pipelines."""
    cdef uint64_t state = rng[0]
    cdef int64_t s
    for s in range(count):
        state = state + _GOLDEN
        buffer[s] = _mix64(state)
    rng[0] = state


# The draw loop in AVX-512 (the x86-64-v4 build): eight SplitMix64 numbers at once from the counter form of the
# stream (number k after ``state`` is mix64(state + k * GOLDEN)), a gather of their table entries and a masked
# select; the very numbers and draws of the scalar loop. gcc vectorises that loop's RNG but not its gather.
# Elsewhere the function draws nothing.
cdef extern from *:
    """
    #if defined(__AVX512F__) && defined(__AVX512DQ__)
    #include <immintrin.h>
    /* The stream eight lanes at a time: the states of numbers 1 to 8 after rng (number k is
       mix64(rng + k * GOLDEN), counting from 1 as fill_random does), and their mix, qsim_mix64 in each lane */
    static inline __m512i qsim_stream8(uint64_t rng) {
        return _mm512_add_epi64(_mm512_set1_epi64((long long)rng),
                                _mm512_mullo_epi64(_mm512_set_epi64(8, 7, 6, 5, 4, 3, 2, 1),
                                                   _mm512_set1_epi64((long long)QSIM_GOLDEN)));
    }
    static inline __m512i qsim_mix64x8(__m512i z) {
        z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)QSIM_MIX1));
        z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)QSIM_MIX2));
        return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
    }
    static int64_t qsim_alias_draws8(const uint64_t* table, int bits, uint64_t* rng, int64_t* out,
                                     int64_t count) {
        const __m512i step = _mm512_set1_epi64((long long)(8 * QSIM_GOLDEN));
        const __m512i coin_mask = _mm512_set1_epi64((long long)((UINT64_C(1) << (QSIM_TOTAL_BITS - bits)) - 1));
        const __m512i column_mask = _mm512_set1_epi64((long long)((UINT64_C(1) << bits) - 1));
        const __m128i column_shift = _mm_cvtsi32_si128(64 - bits), cut_shift = _mm_cvtsi32_si128(bits);
        __m512i state = qsim_stream8(*rng);
        __m512i z, column, entry, pick;
        __mmask8 keep;
        int64_t s;
        for (s = 0; s + 8 <= count; s += 8) {
            z = qsim_mix64x8(state);
            state = _mm512_add_epi64(state, step);
            column = _mm512_srl_epi64(z, column_shift);
            entry = _mm512_i64gather_epi64(column, (const void*)table, 8);
            keep = _mm512_cmplt_epu64_mask(_mm512_and_si512(z, coin_mask), _mm512_srl_epi64(entry, cut_shift));
            pick = _mm512_mask_blend_epi64(keep, _mm512_and_si512(entry, column_mask), column);
            _mm512_storeu_si512((void*)(out + s), pick);
        }
        *rng += (uint64_t)s * QSIM_GOLDEN;
        return s;
    }
    #else
    static int64_t qsim_alias_draws8(const uint64_t* table, int bits, uint64_t* rng, int64_t* out,
                                     int64_t count) { return 0; }
    #endif
    """
    int64_t qsim_alias_draws8(const uint64_t* table, int bits, uint64_t* rng, int64_t* out,
                              int64_t count) noexcept nogil


cdef void full_draws(const uint64_t* table, int64_t bits, uint64_t* rng, int64_t* out,
                     int64_t count) noexcept nogil:
    """Fill ``out[:count]`` with draws from the alias table over 2**bits columns (bits >= 1), advancing ``rng``,
    one 64-bit number per draw.

    Its top ``bits`` bits are the column, its low ``62 - bits`` bits the
    coin, independent bits of one number. The choice is a select on one
    loaded entry (the coin is a 50/50 guess for the branch predictor): eight
    at a time in AVX-512 (``qsim_alias_draws8``), the rest here, the raw bits
    staged in ``out`` itself. Same draws as numba's.
    """
    cdef int64_t done = qsim_alias_draws8(table, <int>bits, rng, out, count)
    cdef uint64_t* raw = <uint64_t*>out + done
    cdef uint64_t coin_mask = ((<uint64_t>1) << (TOTAL_BITS - bits)) - 1
    cdef uint64_t column_mask = ((<uint64_t>1) << bits) - 1
    cdef uint64_t x, entry
    cdef int64_t s, column, keep
    cdef int shift = 64 - <int>bits
    fill_random(raw, count - done, rng)
    for s in range(done, count):
        x = raw[s - done]
        column = <int64_t>(x >> shift)
        entry = table[column]
        keep = -<int64_t>((x & coin_mask) < (entry >> bits))  # all ones or zero: a mask, not a branch
        out[s] = (column & keep) | (<int64_t>(entry & column_mask) & ~keep)


# Quarter draws, for tables of at most 2**8 columns: four draws per 64-bit number, draw 4k + h from bits
# [16h, 16h + 16) of number k, its top ``bits`` bits the column and its other 16 - bits bits (at least 8) the
# coin. The coin is compared with the top 16 - bits bits of the column's cut (its quarter cut); only when the
# two are equal, a tie (probability 2**-(16 - bits)), does the rest of the cut decide, against the low 46 bits
# of a number of its own: the row's ties take the numbers after its draws' numbers, in shot order. A draw keeps
# its column with probability exactly cut / 2**(62 - bits), as with one number per draw, for a quarter of the
# random numbers. And in AVX-512 the 16-bit entries of a 256-column table fit in eight registers, so a draw
# looks its entry up with register permutes where a 64-bit entry needs a gather (on AMD Zen 4 a gather costs
# about 0.42 ns per element): 1,024 draws from a 256-column table take 0.40 us instead of 0.69 us.
cdef extern from *:
    """
    #define QSIM_QUARTER_MAX_BITS 8
    #define QSIM_QUARTER_REST 46  /* the cut bits below a quarter cut: 62 - 16 */
    /* A column's quarter cut: the top 16 - bits bits of its cut, at most 2**(16 - bits) - 1 (a full column's
       cut, 2**(62 - bits), has one bit more; clamped, a tie still keeps the column, the rest being 2**46). */
    static inline uint64_t qsim_quarter_cut(uint64_t entry, int bits) {
        const uint64_t top = (UINT64_C(1) << (16 - bits)) - 1, cut = entry >> (bits + QSIM_QUARTER_REST);
        return cut < top ? cut : top;
    }
    /* The draw of a tie in column: the column if the low 46 bits of x are below the rest of its cut, else its
       alias. */
    static inline int64_t qsim_quarter_tie(const uint64_t* table, int bits, int64_t column, uint64_t x) {
        const uint64_t entry = table[column];
        const uint64_t rest = (entry >> bits) - (qsim_quarter_cut(entry, bits) << QSIM_QUARTER_REST);
        const uint64_t coin = x & ((UINT64_C(1) << QSIM_QUARTER_REST) - 1);
        return coin < rest ? column : (int64_t)(entry & ((UINT64_C(1) << bits) - 1));
    }
    #if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
    #include <immintrin.h>
    /* Draws 0, 1, ... in blocks of 32 (draw 4k + h from number k, 0-based: mix64(rng + (k + 1) * GOLDEN),
       eight numbers at a time) while a whole block fits in count, each block's ties settled in shot order
       with the numbers after the draws' numbers, *ties counting them. packed[256]: quarter cut << bits |
       alias, zero past the table. Returns the draws done. */
    static int64_t qsim_quarter_draws32(const uint16_t* packed, const uint64_t* table, int bits, uint64_t rng,
                                        int64_t numbers, int64_t* out, int64_t count, int64_t* ties) {
        const __m512i t0 = _mm512_loadu_si512(packed), t1 = _mm512_loadu_si512(packed + 32);
        const __m512i t2 = _mm512_loadu_si512(packed + 64), t3 = _mm512_loadu_si512(packed + 96);
        const __m512i t4 = _mm512_loadu_si512(packed + 128), t5 = _mm512_loadu_si512(packed + 160);
        const __m512i t6 = _mm512_loadu_si512(packed + 192), t7 = _mm512_loadu_si512(packed + 224);
        const __m512i step = _mm512_set1_epi64((long long)(8 * QSIM_GOLDEN));
        const __m512i coin_mask = _mm512_set1_epi16((short)((1u << (16 - bits)) - 1));
        const __m512i alias_mask = _mm512_set1_epi16((short)((1u << bits) - 1));
        const __m512i bit6 = _mm512_set1_epi16(64), bit7 = _mm512_set1_epi16(128);
        const __m128i column_shift = _mm_cvtsi32_si128(16 - bits), cut_shift = _mm_cvtsi32_si128(bits);
        __m512i state = qsim_stream8(rng);
        __m512i z, column, low, high, entry, coin, cut, pick;
        __mmask32 half, to_alias;
        uint32_t tied;
        int64_t s, shot;
        uint64_t x;
        for (s = 0; s + 32 <= count; s += 32) {
            z = qsim_mix64x8(state);
            state = _mm512_add_epi64(state, step);
            /* word w of z is draw s + w; its entry from the 64 entries of its quarter of the table, then the
               quarter by the column's bits 6 and 7 */
            column = _mm512_srl_epi16(z, column_shift);
            half = _mm512_test_epi16_mask(column, bit6);
            low = _mm512_mask_blend_epi16(half, _mm512_permutex2var_epi16(t0, column, t1),
                                          _mm512_permutex2var_epi16(t2, column, t3));
            high = _mm512_mask_blend_epi16(half, _mm512_permutex2var_epi16(t4, column, t5),
                                           _mm512_permutex2var_epi16(t6, column, t7));
            entry = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(column, bit7), low, high);
            coin = _mm512_and_si512(z, coin_mask);
            cut = _mm512_srl_epi16(entry, cut_shift);
            to_alias = _mm512_cmpgt_epu16_mask(coin, cut);
            tied = (uint32_t)_mm512_cmpeq_epi16_mask(coin, cut);
            pick = _mm512_mask_blend_epi16(to_alias, column, _mm512_and_si512(entry, alias_mask));
            _mm512_storeu_si512((void*)(out + s), _mm512_cvtepu16_epi64(_mm512_castsi512_si128(pick)));
            _mm512_storeu_si512((void*)(out + s + 8), _mm512_cvtepu16_epi64(_mm512_extracti32x4_epi32(pick, 1)));
            _mm512_storeu_si512((void*)(out + s + 16), _mm512_cvtepu16_epi64(_mm512_extracti32x4_epi32(pick, 2)));
            _mm512_storeu_si512((void*)(out + s + 24), _mm512_cvtepu16_epi64(_mm512_extracti32x4_epi32(pick, 3)));
            for (; tied != 0; tied &= tied - 1) {  /* about one block in eight at 256 columns */
                shot = s + __builtin_ctz(tied);
                /* its column from its number again: reading out[shot] back would wait for the vector store */
                x = qsim_mix64(rng + (uint64_t)(shot / 4 + 1) * QSIM_GOLDEN) >> (16 * (shot & 3));
                *ties += 1;
                out[shot] = qsim_quarter_tie(table, bits, (int64_t)((x & 0xFFFF) >> (16 - bits)),
                                             qsim_mix64(rng + (uint64_t)(numbers + *ties) * QSIM_GOLDEN));
            }
        }
        return s;
    }
    #else
    static int64_t qsim_quarter_draws32(const uint16_t* packed, const uint64_t* table, int bits, uint64_t rng,
                                        int64_t numbers, int64_t* out, int64_t count, int64_t* ties) {
        return 0;
    }
    #endif
    """
    int QUARTER_MAX_BITS "QSIM_QUARTER_MAX_BITS"  # tables of at most 2**QUARTER_MAX_BITS columns draw quarters
    uint64_t qsim_quarter_cut(uint64_t entry, int bits) noexcept nogil
    int64_t qsim_quarter_tie(const uint64_t* table, int bits, int64_t column, uint64_t x) noexcept nogil
    int64_t qsim_quarter_draws32(const uint16_t* packed, const uint64_t* table, int bits, uint64_t rng,
                                 int64_t numbers, int64_t* out, int64_t count, int64_t* ties) noexcept nogil


cdef void quarter_draws(const uint64_t* table, int64_t bits, uint64_t* rng, int64_t* out,
                        int64_t count) noexcept nogil:
    """Fill ``out[:count]`` with quarter draws (see above) from the alias table over 2**bits columns
    (1 <= bits <= QUARTER_MAX_BITS), advancing ``rng`` past the draws' and the ties' numbers.

    Blocks of 32 draws in AVX-512 (``qsim_quarter_draws32``), the rest one by
    one. Same draws as numba's.
    """
    cdef uint16_t packed[256]
    cdef uint64_t base = rng[0]
    cdef int64_t numbers = (count + 3) >> 2  # the draws' numbers; tie t takes number numbers + t
    cdef int64_t ties = 0
    cdef int64_t n = (<int64_t>1) << bits
    cdef uint64_t column_mask = <uint64_t>(n - 1)
    cdef uint64_t coin_mask = ((<uint64_t>1) << (16 - bits)) - 1
    cdef uint64_t x, quarter, entry, coin, cut
    cdef int64_t j, k, h, column
    for j in range(n):
        packed[j] = <uint16_t>((qsim_quarter_cut(table[j], <int>bits) << bits) | (table[j] & column_mask))
    for j in range(n, 256):
        packed[j] = 0
    # the drawn blocks are whole: the rest starts at a number's first draw
    for k in range(qsim_quarter_draws32(packed, table, <int>bits, base, numbers, out, count, &ties) >> 2, numbers):
        x = _mix64(base + <uint64_t>(k + 1) * _GOLDEN)
        for h in range(min(4, count - 4 * k)):
            quarter = (x >> (16 * h)) & 0xFFFF
            column = <int64_t>(quarter >> (16 - bits))
            entry = packed[column]
            coin = quarter & coin_mask
            cut = entry >> bits
            out[4 * k + h] = column if coin < cut else <int64_t>(entry & column_mask)
            if coin == cut:
                ties += 1
                out[4 * k + h] = qsim_quarter_tie(table, <int>bits, column,
                                                  _mix64(base + <uint64_t>(numbers + ties) * _GOLDEN))
    rng[0] = base + <uint64_t>(numbers + ties) * _GOLDEN


cdef void alias_draws(const uint64_t* table, int64_t bits, uint64_t* rng, int64_t* out,
                      int64_t count) noexcept nogil:
    """Fill ``out[:count]`` with draws from the alias table over 2**bits columns (bits >= 1), advancing ``rng``:
    quarter draws up to 2**QUARTER_MAX_BITS columns, one number per draw above."""
    if bits <= QUARTER_MAX_BITS:
        quarter_draws(table, bits, rng, out, count)
    else:
        full_draws(table, bits, rng, out, count)


cdef void samples_into(const real* v, int64_t n, double* probs, uint64_t* table, int64_t* order, int64_t* excess,
                       uint64_t* rng, int64_t* out, int64_t count) noexcept nogil:
    """Draw ``count`` basis indices from |psi|^2 (n >= 2 amplitudes) with an alias table, advancing ``rng``."""
    probabilities_into(v, 0, n, probs)
    samples_from(probs, n, table, order, excess, rng, out, count)


cdef void samples_from(const double* probs, int64_t n, uint64_t* table, int64_t* order, int64_t* excess,
                       uint64_t* rng, int64_t* out, int64_t count) noexcept nogil:
    """:func:`samples_into` from the state's probabilities ``probs[0:n]``."""
    cdef int64_t bits = _log2(n)
    alias_table(probs, bits, table, order, excess)
    alias_draws(table, bits, rng, out, count)


cdef double binomial_estimate(double exact, int64_t shots, uint64_t* rng) noexcept nogil:
    """Mean of ``shots`` +-1 outcomes that are +1 with probability (1 + exact) / 2, advancing ``rng``."""
    cdef double plus = 0.5 * (1.0 + exact)
    cdef double total = 0.0
    cdef uint64_t state = rng[0]
    cdef int64_t _
    for _ in range(shots):
        # 2k - 1 for k in {0, 1} is exactly -1.0 or +1.0: the same sum as numba's branch, without the branch
        total += 2.0 * <double>(next_uniform(&state) < plus) - 1.0
    rng[0] = state
    return total / <double>shots


cdef void _shot_estimates(const int64_t* samples, int64_t shots, const int64_t* xmask, const int64_t* zmask,
                          const double* exact, int64_t count, uint64_t* rng, double* out) noexcept nogil:
    """Body of :func:`shot_estimates_into` on raw pointers, advancing ``rng``."""
    cdef int64_t k, s
    cdef double total
    for k in range(count):
        if xmask[k] == 0:
            total = 0.0
            for s in range(shots):
                total += 1.0 - 2.0 * parity(samples[s] & zmask[k])
            out[k] = total / <double>shots
        else:
            out[k] = binomial_estimate(exact[k], shots, rng)


def shot_estimates_into(const int64_t[::1] samples, const int64_t[::1] xmask, const int64_t[::1] zmask,
                        const double[::1] exact, uint64_t rng, double[::1] out):
    """Shot estimates from Z-basis ``samples`` (one parity per shot; the large-state path); returns rng.

    Z strings share the samples (one measurement in the Z basis). A string
    with X or Y needs its own basis, so it is estimated from its own
    ``samples.size`` outcomes drawn on ``exact[k]`` (see binomial_estimate).
    """
    _check_observables(xmask, zmask, zmask, out.shape[0])
    if exact.shape[0] < out.shape[0]:
        raise ValueError("exact must have one entry per observable")
    if samples.shape[0] == 0:
        raise ValueError("no samples")
    if out.shape[0] == 0:
        return rng
    with nogil:
        _shot_estimates(&samples[0], samples.shape[0], &xmask[0], &zmask[0], &exact[0], out.shape[0], &rng,
                        &out[0])
    return rng


cdef void _shot_estimates_small(const real* v, int64_t n, double* probs, uint64_t* table, int64_t* order,
                                int64_t* excess, int64_t* drawn, const int64_t* xmask, const int64_t* zmask,
                                const int64_t* ny, int64_t count, int64_t shots, uint64_t* rng,
                                double* out) noexcept nogil:
    """Shot estimates for a small state: Z strings from the counts of one set of shots.

    ``drawn`` is int64[shots] scratch, the others as in :func:`samples_into`.
    """
    probabilities_into(v, 0, n, probs)
    _shot_estimates_from(v, n, probs, table, order, excess, drawn, xmask, zmask, ny, count, shots, rng, out)


cdef void _shot_estimates_from(const real* v, int64_t n, double* probs, uint64_t* table, int64_t* order,
                               int64_t* excess, int64_t* drawn, const int64_t* xmask, const int64_t* zmask,
                               const int64_t* ny, int64_t count, int64_t shots, uint64_t* rng,
                               double* out) noexcept nogil:
    """:func:`_shot_estimates_small` from the state's probabilities ``probs[0:n]`` (overwritten); the state ``v``
    is read only for strings with an X or Y."""
    samples_from(probs, n, table, order, excess, rng, drawn, shots)
    # the probabilities are in the table now, and the table's scratch is free again
    _estimates_from_draws(v, n, probs, order, excess, drawn, xmask, zmask, ny, count, shots, rng, out)


cdef void _estimates_from_draws(const real* v, int64_t n, double* counts, int64_t* even, int64_t* odd,
                                const int64_t* drawn, const int64_t* xmask, const int64_t* zmask, const int64_t* ny,
                                int64_t count, int64_t shots, uint64_t* rng, double* out) noexcept nogil:
    """:func:`_shot_estimates_from` once its ``shots`` are ``drawn``: ``counts`` (float64[n]), ``even`` and
    ``odd`` (int64[n]) are scratch, two tallies of alternate shots, so that a state drawn twice in a row does not
    wait for its own count to be stored."""
    cdef int64_t i, k, s
    for i in range(n):
        even[i] = 0
        odd[i] = 0
    s = 0
    while s + 2 <= shots:
        even[drawn[s]] += 1
        odd[drawn[s + 1]] += 1
        s += 2
    if s < shots:
        even[drawn[s]] += 1
    for i in range(n):
        counts[i] = <double>(even[i] + odd[i])
    # signed sums of whole counts are exact in any order: one division per string, exactly 1 for the identity
    z_expectations_from_probabilities(counts, n, xmask, zmask, count, out)
    for k in range(count):
        if xmask[k] != 0:
            out[k] = binomial_estimate(pauli_expectation(v, 0, n, xmask[k], zmask[k], ny[k]), shots, rng)
        else:
            out[k] /= <double>shots


# ---------------------------------------------------------------- the batch of small states

cdef struct RotationTable:
    # one gate-matrix array's rotation instances, as qsim_core.compiler.rotations.fill_rotations takes them
    int64_t count, terms, dim, max_index
    const int64_t* index
    const double* scale
    const double* offset
    const double* pauli
    const int64_t* slot


cdef struct RowFill:
    # the rotation matrices run_packed fills per parameter set, just before running it: params[b] (num_params
    # float64 each) into row b of the gate-matrix arrays, through the two rotation tables
    const double* params
    int64_t num_params
    const RotationTable* rotations1
    const RotationTable* rotations2


cdef struct SmallBuffers:
    # one thread's buffers for the parameter sets it runs (see _small_buffers for which a task needs)
    void* own
    void* scratch
    double* probs
    uint64_t* table
    int64_t* order
    int64_t* excess
    int64_t* drawn


cdef bint _small_buffers(SmallBuffers* buffers, int task, int64_t size, size_t real_bytes, bint has_perm,
                         int64_t shots) noexcept nogil:
    """Allocate the buffers ``task`` needs into ``buffers`` (the others NULL); False if one could not be."""
    cdef bint sampling = task == TASK_SAMPLES or task == TASK_SHOT_EXPVAL
    # a final state is built in its output row, so it only needs ``own`` as permutation scratch
    buffers.own = malloc(2 * size * real_bytes) if task != TASK_STATE or has_perm else NULL
    buffers.scratch = malloc(2 * size * real_bytes) if task != TASK_STATE and has_perm else NULL
    buffers.probs = <double*>malloc(size * sizeof(double)) if task >= TASK_EXPVAL else NULL
    buffers.table = <uint64_t*>malloc(size * sizeof(uint64_t)) if sampling else NULL
    buffers.order = <int64_t*>malloc(size * sizeof(int64_t)) if sampling else NULL
    buffers.excess = <int64_t*>malloc(size * sizeof(int64_t)) if sampling else NULL
    buffers.drawn = <int64_t*>malloc(shots * sizeof(int64_t)) if task == TASK_SHOT_EXPVAL else NULL
    return not ((buffers.own == NULL and (task != TASK_STATE or has_perm))
                or (buffers.scratch == NULL and task != TASK_STATE and has_perm)
                or (buffers.probs == NULL and task >= TASK_EXPVAL)
                or ((buffers.table == NULL or buffers.order == NULL or buffers.excess == NULL) and sampling)
                or (buffers.drawn == NULL and task == TASK_SHOT_EXPVAL))


cdef void _free_small_buffers(SmallBuffers* buffers) noexcept nogil:
    free(buffers.own)
    free(buffers.scratch)
    free(buffers.probs)
    free(buffers.table)
    free(buffers.order)
    free(buffers.excess)
    free(buffers.drawn)


cdef void _run_small_row(int64_t b, const SmallBuffers* buffers, const RowFill* fill, int task, real* psi_out,
                         double* probs_out, double* values_out, int64_t* samples_out, int64_t num_qubits, real* u1,
                         int64_t u1_stride, real* u2, int64_t u2_stride, const int32_t* init_u1,
                         const int8_t* kind, const int32_t* q0, const int32_t* q1, const int32_t* arg, int64_t steps,
                         const int64_t* run_start, const int32_t* run_gate, const int64_t* perm_start,
                         const int64_t* perm_table, const int64_t* xmask, const int64_t* zmask, const int64_t* ny,
                         int64_t count, int64_t shots, uint64_t key, int64_t batch_offset, const real* initial,
                         bint has_initial) noexcept nogil:
    """Parameter set ``b`` of :func:`_run_small`, in the calling thread's ``buffers``; its rotation matrices are
    filled first when ``fill`` is not NULL (in the thread that runs it, and while its row of gate matrices is
    written to the cache that the run reads it from)."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef real* own = <real*>buffers.own
    # final states are built in place in their output row, like numba does
    cdef real* row = psi_out + 2 * size * b if task == TASK_STATE else own
    cdef real* psi
    if fill != NULL:
        _fill_rotation_row(fill.params + fill.num_params * b, fill.rotations1, u1 + u1_stride * b)
        _fill_rotation_row(fill.params + fill.num_params * b, fill.rotations2, u2 + u2_stride * b)
    if has_initial:
        memcpy(row, initial + 2 * size * b, 2 * size * sizeof(real))
    else:
        init_product(row, u1 + u1_stride * b, run_start, run_gate, init_u1, 0, num_qubits)
    psi = apply_steps(row, own if row != own else <real*>buffers.scratch, size, 0, steps, kind, q0, q1, arg,
                      u1 + u1_stride * b, u2 + u2_stride * b, run_start, run_gate, perm_start, perm_table)
    if task == TASK_STATE:
        if psi != row:
            memcpy(row, psi, 2 * size * sizeof(real))
    else:
        _small_readout(b, psi, buffers, task, probs_out, values_out, samples_out, size, xmask, zmask, ny, count,
                       shots, key, batch_offset)


cdef void _small_readout(int64_t b, const real* psi, const SmallBuffers* buffers, int task, double* probs_out,
                         double* values_out, int64_t* samples_out, int64_t size, const int64_t* xmask,
                         const int64_t* zmask, const int64_t* ny, int64_t count, int64_t shots, uint64_t key,
                         int64_t batch_offset) noexcept nogil:
    """Set ``b``'s output of ``task`` (any but TASK_STATE) from its final state ``psi`` of ``size`` amplitudes, in
    the thread's ``buffers``; the sampling tasks draw from the set's own stream."""
    cdef uint64_t rng
    if task == TASK_PROBS:
        probabilities_into(psi, 0, size, probs_out + size * b)
    elif task == TASK_EXPVAL:
        expectations_into(psi, size, buffers.probs, xmask, zmask, ny, count, values_out + count * b)
    elif task == TASK_SAMPLES:
        rng = _stream_state(key, <uint64_t>(batch_offset + b))
        samples_into(psi, size, buffers.probs, buffers.table, buffers.order, buffers.excess, &rng,
                     samples_out + shots * b, shots)
    else:
        rng = _stream_state(key, <uint64_t>(batch_offset + b))
        _shot_estimates_small(psi, size, buffers.probs, buffers.table, buffers.order, buffers.excess,
                              buffers.drawn, xmask, zmask, ny, count, shots, &rng, values_out + count * b)


cdef real* _own_gates(const real* u1, int64_t u1_stride, const real* u2, int64_t u2_stride) noexcept nogil:
    """A thread's copy of row 0 of the gate matrices, u1's then u2's (NULL if it could not be allocated): where the
    rows differ only in their rotations, which each set fills before it runs, every set can run on it."""
    cdef real* gates = <real*>malloc((u1_stride + u2_stride + 1) * sizeof(real))
    if gates != NULL:
        memcpy(gates, u1, u1_stride * sizeof(real))
        memcpy(gates + u1_stride, u2, u2_stride * sizeof(real))
    return gates


cdef void _run_small(const RowFill* fill, bint alike, int task, real* psi_out, double* probs_out, double* values_out,
                     int64_t* samples_out, int64_t batch, int64_t num_qubits, real* u1, int64_t u1_stride, real* u2,
                     int64_t u2_stride, const int32_t* init_u1, const int8_t* kind, const int32_t* q0,
                     const int32_t* q1, const int32_t* arg, int64_t steps, const int64_t* run_start,
                     const int32_t* run_gate, const int64_t* perm_start, bint has_perm, const int64_t* perm_table,
                     const int64_t* xmask, const int64_t* zmask, const int64_t* ny, int64_t count, int64_t shots,
                     uint64_t key, int64_t batch_offset, const real* initial, bint has_initial, int num_threads,
                     int* failed) noexcept nogil:
    """Body of :func:`run_packed`: per-thread buffers and a static loop over the batch, in one parallel region,
    or on the calling thread when it is the only one (an OpenMP team of one still pays a futex wake at each of its
    two barriers, a visible share of a one-circuit call). With ``alike`` (and ``fill``) each thread runs every set
    on its own copy of row 0 of the gate matrices (:func:`_own_gates`, read with a stride of 0), so the batch may
    have more sets than the arrays have rows."""
    cdef int64_t size = <int64_t>1 << num_qubits
    cdef int64_t b
    cdef SmallBuffers own_buffers
    # NULL-initialised: Cython makes these firstprivate in the parallel region
    cdef SmallBuffers* buffers = NULL
    cdef real* gates = NULL
    cdef bint ok = False
    cdef bint own = alike and fill != NULL
    # the gate matrices each set reads: its rows of u1/u2, or (own) the thread's copy, at a stride of 0
    cdef real* rows1 = NULL
    cdef real* rows2 = NULL
    cdef int64_t stride1 = 0 if own else u1_stride
    cdef int64_t stride2 = 0 if own else u2_stride
    if num_threads == 1 or batch == 1:
        gates = _own_gates(u1, u1_stride, u2, u2_stride) if own else NULL
        rows1 = gates if own else u1
        rows2 = gates + u1_stride if own else u2
        if _small_buffers(&own_buffers, task, size, sizeof(real), has_perm, shots) and (gates != NULL or not own):
            for b in range(batch):
                _run_small_row(b, &own_buffers, fill, task, psi_out, probs_out, values_out, samples_out, num_qubits,
                               rows1, stride1, rows2, stride2, init_u1, kind, q0, q1, arg, steps, run_start,
                               run_gate, perm_start, perm_table, xmask, zmask, ny, count, shots, key, batch_offset,
                               initial, has_initial)
        else:
            failed[0] = 1
        _free_small_buffers(&own_buffers)
        free(gates)
        return
    with parallel(num_threads=num_threads):
        # one set of buffers per thread, reused by all its parameter sets
        buffers = <SmallBuffers*>malloc(sizeof(SmallBuffers))
        gates = _own_gates(u1, u1_stride, u2, u2_stride) if own else NULL
        rows1 = gates if own else u1
        rows2 = gates + u1_stride if own else u2
        ok = buffers != NULL and _small_buffers(buffers, task, size, sizeof(real), has_perm, shots) and (
            gates != NULL or not own)
        # every thread must reach the worksharing loop (OpenMP), so a thread
        # without buffers runs it too and only flags its iterations as failed
        for b in prange(batch, schedule="static"):
            if not ok:
                failed[0] = 1
            else:
                _run_small_row(b, buffers, fill, task, psi_out, probs_out, values_out, samples_out, num_qubits,
                               rows1, stride1, rows2, stride2, init_u1, kind, q0, q1, arg, steps, run_start,
                               run_gate, perm_start, perm_table, xmask, zmask, ny, count, shots, key, batch_offset,
                               initial, has_initial)
        if buffers != NULL:
            _free_small_buffers(buffers)
        free(buffers)
        free(gates)


cdef void _check_observables(const int64_t[::1] xmask, const int64_t[::1] zmask, const int64_t[::1] ny,
                             Py_ssize_t count) except *:
    if xmask.shape[0] < count or zmask.shape[0] < count or ny.shape[0] < count:
        raise ValueError("xmask, zmask and ny must have one entry per observable")




include "_lanes.pxi"


cdef class SmallProgram:
    """What :func:`pack_small` checked once: a single-block program's step arrays, its gate-matrix arrays and their
    rotation tables, as pointers for repeated :func:`run_packed` calls.

    The arrays are held here, so the pointers stay valid; the gate matrices may be refilled in place between
    calls (the driver's per-thread arrays are), never replaced.
    """
    cdef object arrays
    cdef RotationTable rotations1, rotations2
    cdef bint single
    cdef bint refilled  # matrices other than the rotations differ from row to row
    cdef int64_t batch, num_qubits, u1_stride, u2_stride, steps
    cdef bint has_perm
    cdef void* u1
    cdef void* u2
    cdef const int32_t* init_u1
    cdef const int8_t* kind
    cdef const int32_t* q0
    cdef const int32_t* q1
    cdef const int32_t* arg
    cdef const int64_t* run_start
    cdef const int32_t* run_gate
    cdef const int64_t* perm_start
    cdef const int64_t* perm_table
    cdef bint has_lanes  # complex128 programs that lane_plan takes run eight sets at a time
    cdef LanePlan lanes
    cdef LaneBuffers* lane_scratch  # per thread, kept between runs (_ensure_lane_scratch)
    cdef int64_t lane_threads, lane_values

    def __dealloc__(self):
        _free_lane_scratch(self)

    @property
    def lane_path(self) -> bool:
        """Whether calls of ``LANE_CALL_SETS`` sets or more run eight sets at a time (``_lanes.pxi``)."""
        return self.has_lanes


cdef class PackedObservables:
    """What :func:`pack_observables` checked once: K Pauli strings' masks as pointers (the arrays are held here)."""
    cdef object arrays
    cdef int64_t count
    cdef const int64_t* xmask
    cdef const int64_t* zmask
    cdef const int64_t* ny


cdef tuple _rotations(tuple table, int64_t dim, int64_t slots, RotationTable* rotations):
    """Point ``rotations`` at ``table``, ``(index, scale, offset, pauli, slot)``, checked against a gate-matrix
    array of ``slots`` ``dim x dim`` matrices; returns what must be kept alive."""
    cdef const int64_t[:, ::1] index = table[0]
    cdef const double[:, ::1] scale = table[1]
    cdef const double[::1] offset = table[2]
    cdef const double complex[:, :, ::1] pauli = table[3]
    cdef const int64_t[::1] slot = table[4]
    cdef int64_t count = index.shape[0]
    cdef int64_t k, t
    if (scale.shape[0] != count or scale.shape[1] != index.shape[1] or offset.shape[0] != count
            or pauli.shape[0] != count or slot.shape[0] != count
            or (count and (pauli.shape[1] != dim or pauli.shape[2] != dim))):
        raise ValueError(f"a rotation table for {dim}x{dim} matrices must have one entry per instance")
    rotations.max_index = -1
    for k in range(count):
        if not 0 <= slot[k] < slots:
            raise ValueError(f"rotation slot {slot[k]} is outside the {slots} gate matrices")
        for t in range(index.shape[1]):
            if scale[k, t] != 0.0:
                if index[k, t] < 0:
                    raise ValueError("rotation parameter indices must not be negative")
                rotations.max_index = max(rotations.max_index, index[k, t])
    rotations.count = count
    rotations.terms = index.shape[1]
    rotations.dim = dim
    rotations.index = &index[0, 0]
    rotations.scale = &scale[0, 0]
    rotations.offset = &offset[0]
    rotations.pauli = <const double*>&pauli[0, 0, 0]
    rotations.slot = &slot[0]
    return index, scale, offset, pauli, slot


cdef extern from *:
    """
    /* qsim_core.compiler.rotations' fill in C, operation for operation: fdlibm's reduction and polynomials for
       sin and cos (libm's past QSIM_SINCOS_LIMIT), then cos(a/2) I - i sin(a/2) P. Compiled without contracting
       a * b + c into FMAs (numba does not contract), so that a batch binds the same matrices bit for bit whether
       these kernels or numba fill them: results must not depend on how a batch is cut into calls. Compiled
       without trapping math, which changes no value (only whether a floating-point exception may be assumed
       observable) but lets gcc vectorise floor and the float-to-integer conversion of the sincos loop. */
    #include <math.h>
    #include <stdint.h>
    #define QSIM_SINCOS_LIMIT 1e6
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC push_options
    #pragma GCC optimize ("fp-contract=off", "no-trapping-math")
    #endif
    static void qsim_sincos(const double* x, double* cosines, double* sines, int64_t n) {
    #ifdef __clang__
        #pragma clang fp contract(off)
    #endif
        for (int64_t i = 0; i < n; i++) {
            double v = x[i];
            double q = floor(v * 6.36619772367581382433e-01 + 0.5);
            double r = ((v - q * 1.57079632673412561417e+00) - q * 6.07710050630396597660e-11)
                       - q * 2.02226624871116645580e-21;
            double z = r * r;
            double s = r + r * z * (-1.66666666666666324348e-01 + z * (8.33333333332248946124e-03
                       + z * (-1.98412698298579493134e-04 + z * (2.75573137070700676789e-06
                       + z * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10)))));
            double half = 0.5 * z;
            double w = 1.0 - half;
            double c = w + (((1.0 - w) - half) + z * z * (4.16666666666666019037e-02 + z * (-1.38888888888741095749e-03
                       + z * (2.48015872894767294178e-05 + z * (-2.75573143513906633035e-07
                       + z * (2.08757232129817482790e-09 + z * -1.13596475577881948265e-11))))));
            int64_t quadrant = (int64_t)q;  /* r = v - quadrant pi/2: (c, s) turned by quadrant quarter turns */
            double sine = (quadrant & 1) ? c : s, cosine = (quadrant & 1) ? s : c;
            sines[i] = (quadrant & 2) ? -sine : sine;
            cosines[i] = ((quadrant + 1) & 2) ? -cosine : cosine;
        }
        for (int64_t i = 0; i < n; i++) {
            if (!(fabs(x[i]) <= QSIM_SINCOS_LIMIT)) {
                cosines[i] = cos(x[i]);
                sines[i] = sin(x[i]);
            }
        }
    }
    typedef double qsim_fill_v8 __attribute__((vector_size(64)));
    #ifdef __clang__
    #define QSIM_FILL_TURN(x) __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6)
    #else
    typedef long long qsim_fill_index8 __attribute__((vector_size(64)));
    #define QSIM_FILL_TURN(x) __builtin_shuffle(x, (qsim_fill_index8){1, 0, 3, 2, 5, 4, 7, 6})
    #endif
    /* one parameter set's rotations, 64 instances at a time: out[slot[k]] = cos I - i sin pauli[k], the
       entries -i s (pr + i pi) = s pi - i s pr, rounded once to the state's precision */
    #define QSIM_FILL_ROTATION_ROW(name, real)                                                                   \
    static void name(const double* params, const int64_t* index, const double* scale, const double* offset,   \
                     const double* pauli, const int64_t* slot, int64_t count, int64_t terms, int64_t dim,      \
                     real* out) {                                                                              \
        double halves[64], cosines[64], sines[64];                                                             \
        int64_t entries = dim * dim;                                                                           \
        for (int64_t first = 0; first < count; first += 64) {                                                  \
            int64_t n = count - first < 64 ? count - first : 64;                                               \
            for (int64_t j = 0; j < n; j++) {                                                                  \
                int64_t k = first + j;                                                                         \
                double angle = offset[k];                                                                      \
                for (int64_t t = 0; t < terms; t++)                                                            \
                    if (scale[k * terms + t] != 0.0)                                                           \
                        angle += params[index[k * terms + t]] * scale[k * terms + t];                          \
                halves[j] = 0.5 * angle;                                                                       \
            }                                                                                                  \
            qsim_sincos(halves, cosines, sines, n);                                                            \
            for (int64_t j = 0; j < n; j++) {                                                                  \
                int64_t k = first + j;                                                                         \
                double c = cosines[j], s = sines[j];                                                           \
                const double* p = pauli + 2 * entries * k;                                                     \
                real* m = out + 2 * entries * slot[k];                                                         \
                if (dim == 2) {  /* the 8 entries as one vector, s q with q the Pauli's entries times -i,      \
                                    (pi, -pr) each, plus c on the diagonal: the same products and sums         \
                                    as entry by entry (a factor -1 changes no value, nor its sign) */          \
                    qsim_fill_v8 pauli_, turned_, entries_;                                                    \
                    memcpy(&pauli_, p, sizeof pauli_);                                                         \
                    turned_ = QSIM_FILL_TURN(pauli_) * (qsim_fill_v8){1, -1, 1, -1, 1, -1, 1, -1};             \
                    entries_ = s * turned_;                                                                    \
                    entries_[0] = c + entries_[0];                                                             \
                    entries_[6] = c + entries_[6];                                                             \
                    for (int e = 0; e < 8; e++)                                                                \
                        m[e] = (real)entries_[e];                                                              \
                    continue;                                                                                  \
                }                                                                                              \
                for (int64_t i = 0; i < entries; i++) {                                                        \
                    double re = s * p[2 * i + 1];                                                              \
                    if (i % (dim + 1) == 0)                                                                    \
                        re = c + re;                                                                           \
                    m[2 * i] = (real)re;                                                                       \
                    m[2 * i + 1] = (real)(-s * p[2 * i]);                                                      \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }
    QSIM_FILL_ROTATION_ROW(qsim_fill_rotation_row_f, float)
    QSIM_FILL_ROTATION_ROW(qsim_fill_rotation_row_d, double)
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC pop_options
    #endif
    """
    const double _SINCOS_LIMIT "QSIM_SINCOS_LIMIT"
    void qsim_fill_rotation_row_f(const double* params, const int64_t* index, const double* scale,
                                  const double* offset, const double* pauli, const int64_t* slot, int64_t count,
                                  int64_t terms, int64_t dim, float* out) noexcept nogil
    void qsim_fill_rotation_row_d(const double* params, const int64_t* index, const double* scale,
                                  const double* offset, const double* pauli, const int64_t* slot, int64_t count,
                                  int64_t terms, int64_t dim, double* out) noexcept nogil

#: rotations.SINCOS_LIMIT, compiled in (a test checks that they agree)
SINCOS_LIMIT = _SINCOS_LIMIT


cdef void _fill_rotation_row(const double* params, const RotationTable* rotations, real* out) noexcept nogil:
    """One parameter set's rotation matrices, written into its row ``out`` of a gate-matrix array."""
    if not rotations.count:
        return
    if real is float:
        qsim_fill_rotation_row_f(params, rotations.index, rotations.scale, rotations.offset, rotations.pauli,
                                 rotations.slot, rotations.count, rotations.terms, rotations.dim, out)
    else:
        qsim_fill_rotation_row_d(params, rotations.index, rotations.scale, rotations.offset, rotations.pauli,
                                 rotations.slot, rotations.count, rotations.terms, rotations.dim, out)


def pack_small(int num_qubits, cplx[:, :, :, ::1] u1, cplx[:, :, :, ::1] u2, tuple rotations1, tuple rotations2,
               bint refilled, const int32_t[::1] init_u1, const int8_t[::1] kind, const int32_t[::1] q0,
               const int32_t[::1] q1, const int32_t[::1] arg, const int64_t[::1] run_start, const int32_t[::1] run_gate,
               const int64_t[::1] perm_start, const int64_t[::1] perm_table):
    """A single-block program bound to its gate-matrix arrays, checked once, for :func:`run_packed`.

    Args:
        num_qubits: n, the state has 2**n amplitudes.
        u1, u2: gate matrices ``[C, G, 2, 2]`` and ``[C, G2, 4, 4]``, the state's dtype (complex64 or
            complex128), with every matrix but the rotations' in place: a run's B parameter sets use the first
            B <= C rows.
        rotations1, rotations2: the rotation instances of ``u1`` and ``u2`` as
            ``qsim_core.compiler.rotations.fill_rotations`` takes them, ``(index, scale, offset, pauli, slot)``;
            :func:`run_packed` fills them.
        refilled: whether matrices other than the rotations differ from row to row (the caller fills them per
            batch). If not, a run with ``params`` takes any number of sets: each thread runs them on its own copy
            of row 0, each set's rotations filled in before it runs, and the arrays are not written.
        init_u1 .. perm_table: the program's step arrays (``Program.small_arguments``).

    Raises:
        ValueError: the arrays do not fit together.
    """
    # the kernels index without bounds checks: validate every shape they rely on once, here
    if not 0 <= num_qubits <= 40:
        raise ValueError(f"bad num_qubits {num_qubits}")
    if u2.shape[0] != u1.shape[0] and u2.shape[1] != 0:
        raise ValueError("u1 and u2 must have the same batch size")
    if q0.shape[0] < kind.shape[0] or q1.shape[0] < kind.shape[0] or arg.shape[0] < kind.shape[0]:
        raise ValueError("kind, q0, q1 and arg must have one entry per step")
    if init_u1.shape[0] < num_qubits:
        raise ValueError("init_u1 needs one entry per qubit")
    cdef SmallProgram program = SmallProgram.__new__(SmallProgram)
    program.arrays = (u1, u2, init_u1, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table,
                      _rotations(rotations1, 2, u1.shape[1], &program.rotations1),
                      _rotations(rotations2, 4, u2.shape[1], &program.rotations2))
    program.single = cplx is cython.floatcomplex
    program.refilled = refilled
    program.batch = u1.shape[0]
    program.num_qubits = num_qubits
    program.u1 = &u1[0, 0, 0, 0]
    program.u1_stride = 8 * u1.shape[1]
    program.u2 = &u2[0, 0, 0, 0]
    program.u2_stride = 32 * u2.shape[1]
    program.init_u1 = &init_u1[0]
    program.kind = &kind[0]
    program.q0 = &q0[0]
    program.q1 = &q1[0]
    program.arg = &arg[0]
    program.steps = kind.shape[0]
    program.run_start = &run_start[0]
    program.run_gate = &run_gate[0]
    program.perm_start = &perm_start[0]
    program.has_perm = perm_start.shape[0] > 1
    program.perm_table = &perm_table[0]
    program.has_lanes = False
    if cplx is cython.doublecomplex:
        plan = lane_plan(num_qubits, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table, rotations1,
                         np.asarray(u1)[0], refilled)
        if plan is not None:
            _point_lanes(plan, &program.lanes)
            program.has_lanes = True
            program.arrays += (plan,)
    return program


def pack_observables(const int64_t[::1] xmask, const int64_t[::1] zmask, const int64_t[::1] ny):
    """K Pauli strings (``PauliStrings``' int64[K] masks and Y counts), checked once, for :func:`run_packed`."""
    cdef int64_t count = xmask.shape[0]
    _check_observables(xmask, zmask, ny, count)
    cdef PackedObservables observables = PackedObservables.__new__(PackedObservables)
    observables.arrays = (xmask, zmask, ny)
    observables.count = count
    observables.xmask = &xmask[0]
    observables.zmask = &zmask[0]
    observables.ny = &ny[0]
    return observables


cdef void _fill_and_run(real* psi_out, const real* start, SmallProgram program, const double[:, ::1] params,
                        bint fill, int task, double* reals_out, int64_t* samples_out, int64_t batch,
                        PackedObservables observables, int64_t shots, uint64_t key, int64_t batch_offset,
                        bint release_gil, int* failed):
    """:func:`run_packed`'s work once its arguments are checked, in the state's precision ``real``."""
    cdef RowFill row_fill
    cdef PyThreadState* released
    if fill:
        row_fill.params = &params[0, 0]
        row_fill.num_params = params.shape[1]
        row_fill.rotations1 = &program.rotations1
        row_fill.rotations2 = &program.rotations2
    if real is double and program.has_lanes and start == NULL and batch >= LANES_MIN_BATCH:
        if not _ensure_lane_scratch(program, _threads, observables.count):
            failed[0] = 1
            return
        released = _release_gil(release_gil)
        _run_lanes(&program.lanes, program.lane_scratch, &row_fill if fill else NULL, not program.refilled, task,
                   psi_out, reals_out, reals_out, samples_out, batch, program.num_qubits, <double*>program.u1,
                   program.u1_stride, <double*>program.u2, program.u2_stride, program.init_u1, program.arg,
                   program.run_start, program.run_gate, observables.xmask, observables.zmask, observables.ny,
                   observables.count, shots, key, batch_offset, _threads, failed)
        _take_gil_back(released)
        return
    released = _release_gil(release_gil)
    _run_small(&row_fill if fill else NULL, not program.refilled, task, psi_out, reals_out, reals_out, samples_out,
               batch, program.num_qubits, <real*>program.u1, program.u1_stride, <real*>program.u2, program.u2_stride,
               program.init_u1, program.kind, program.q0, program.q1, program.arg, program.steps, program.run_start,
               program.run_gate, program.perm_start, program.has_perm, program.perm_table, observables.xmask,
               observables.zmask, observables.ny, observables.count, shots, key, batch_offset, start, start != NULL,
               _threads, failed)
    _take_gil_back(released)


def run_packed(SmallProgram program not None, const double[:, ::1] params, int task, out,
               PackedObservables observables not None, int64_t shots, uint64_t key, int64_t batch_offset, initial,
               bint release_gil=True):
    """Fill the rotation matrices of ``params`` (unless None), then run the whole batch of the single-block
    program, one parameter set per iteration (OpenMP over the batch), without the GIL if ``release_gil``.

    Args:
        program: :func:`pack_small`'s result; the first B rows of its gate matrices hold the batch's matrices
            (all but the rotations, which this fills; only row 0 is read, and none written, for a program packed
            with ``refilled=False``).
        params: float64[B, P], the batch's parameter vectors (B up to the packed arrays' rows, any B for a
            program packed with ``refilled=False``), or None when the gate matrices hold the batch's rotations
            already (B is then ``out``'s rows).
        task: TASK_* constant selecting what is written to ``out``.
        out: the task's output, batch first: the state's dtype ``[B, 2**n]`` final states (TASK_STATE),
            float64 ``[B, 2**n]`` probabilities (TASK_PROBS), float64 ``[B, K]`` expectations (TASK_EXPVAL,
            TASK_SHOT_EXPVAL), int64 ``[B, shots]`` basis indices (TASK_SAMPLES).
        observables: :func:`pack_observables`' result (K = 0 for the tasks without observables).
        shots: measurements per parameter set (sampling tasks).
        key: uint64 RNG key of this call; batch_offset: global index of row 0.
        initial: the state's dtype ``[B, 2**n]`` initial states (program compiled with ``from_zero=False``),
            or None.
        release_gil: release the GIL for the run (other Python threads may run meanwhile, but taking it back waits
            for a busy one's switch interval); the driver keeps it for short runs.

    Raises:
        ValueError: a bad task, or ``params``, ``out`` or ``initial`` of the wrong shape.
        MemoryError: the per-thread scratch buffers could not be allocated.
    """
    cdef bint fill = params is not None
    cdef int64_t batch = params.shape[0] if fill else len(out)
    cdef int64_t size = <int64_t>1 << program.num_qubits
    cdef int failed = 0
    cdef float complex[:, ::1] states64
    cdef double complex[:, ::1] states128
    cdef double[:, ::1] reals
    cdef int64_t[:, ::1] indices
    cdef const float complex[:, ::1] initial64
    cdef const double complex[:, ::1] initial128
    # the task's output: exactly one of these is set
    cdef void* psi_out = NULL
    cdef double* reals_out = NULL
    cdef int64_t* samples_out = NULL
    cdef const void* start = NULL
    cdef Py_ssize_t rows, columns, width
    if not 0 <= task <= TASK_SHOT_EXPVAL:
        raise ValueError(f"bad task {task}")
    if task in (TASK_SAMPLES, TASK_SHOT_EXPVAL) and shots < 1:
        raise ValueError("shots must be positive")
    if batch > program.batch and (program.refilled or not fill) or fill and params.shape[1] <= max(
            program.rotations1.max_index, program.rotations2.max_index):
        raise ValueError(f"params (or out, without params) must have at most {program.batch} rows (unless packed "
                         "with refilled=False), and params a column for every parameter the rotations use")
    if task == TASK_STATE:
        width = size
        if program.single:
            states64 = out
            rows = states64.shape[0]
            columns = states64.shape[1]
            psi_out = &states64[0, 0]
        else:
            states128 = out
            rows = states128.shape[0]
            columns = states128.shape[1]
            psi_out = &states128[0, 0]
    elif task == TASK_SAMPLES:
        width = shots
        indices = out
        rows = indices.shape[0]
        columns = indices.shape[1]
        samples_out = &indices[0, 0]
    else:
        width = size if task == TASK_PROBS else observables.count
        reals = out
        rows = reals.shape[0]
        columns = reals.shape[1]
        reals_out = &reals[0, 0]
    if rows < batch or columns != width:
        raise ValueError(f"out must be [{batch}, {width}] for task {task}, got [{rows}, {columns}]")
    if initial is not None:
        if program.single:
            initial64 = initial
            rows = initial64.shape[0]
            columns = initial64.shape[1]
            start = &initial64[0, 0]
        else:
            initial128 = initial
            rows = initial128.shape[0]
            columns = initial128.shape[1]
            start = &initial128[0, 0]
        if rows < batch or columns != size:
            raise ValueError(f"initial must be [{batch}, {size}]")
    if batch == 0:
        return
    # the state's precision picks the specialisation (complex64 states are float pairs)
    if program.single:
        _fill_and_run(<float*>psi_out, <const float*>start, program, params, fill, task, reals_out, samples_out,
                      batch, observables, shots, key, batch_offset, release_gil, &failed)
    else:
        _fill_and_run(<double*>psi_out, <const double*>start, program, params, fill, task, reals_out, samples_out,
                      batch, observables, shots, key, batch_offset, release_gil, &failed)
    _check_allocated(failed)


# ---------------------------------------------------------------- one large state

cdef inline int64_t _deposit(int64_t value, const int64_t* positions, int64_t count) noexcept nogil:
    """Scatter the low bits of ``value`` to the bit ``positions`` (software PDEP)."""
    cdef int64_t out = 0
    cdef int64_t k
    for k in range(count):
        out |= ((value >> k) & 1) << positions[k]
    return out


cdef enum:
    SHORT_RUN_BYTES = 512  # runs shorter than this are copied by inlined 64-byte moves, not a call to libc's memcpy
    GATHER_RUN_BYTES = 512  # a gather reads neighbouring slices together until it reads this many bytes in a row
    GATHER_GROUP_MIN_STATE = 1 << 23  # bytes of a state from which gathers read slices together


cdef inline void _copy_run(real* dest, const real* src, int64_t count) noexcept nogil:
    """Copy ``count`` reals. A gathered block's runs are often short (8 amplitudes, 128 bytes, for a block over
    qubits 0-2 and high ones): a libc call per run made the gather and scatter about 3x slower than a plain
    copy of the state, so short runs go by constant-size moves the compiler inlines."""
    cdef int64_t k = 0
    cdef int64_t step = 64 // sizeof(real)
    if count * <int64_t>sizeof(real) >= SHORT_RUN_BYTES:
        memcpy(dest, src, count * sizeof(real))
        return
    while k + step <= count:
        memcpy(dest + k, src + k, 64)
        k += step
    if k < count:
        memcpy(dest + k, src + k, (count - k) * sizeof(real))


cdef int64_t _product_slice(real* dest, real* scratch, const real* low_part, const real* high_part,
                           int64_t low_bits, const real* columns, int64_t chunk, int64_t num_others, int64_t local,
                           int64_t first, int64_t last, const int8_t* kind, const int32_t* arg,
                           const int64_t* perm_start, const int64_t* perm_table, const int64_t* control_start,
                           const int32_t* control_qubit, const int64_t* control_mask,
                           int64_t slice_index) noexcept nogil:
    """Write slice ``chunk`` of the initial product state into ``dest``, as the first block's pass starts:
    ``high_part[i >> low_bits] * low_part[i & (2**low_bits - 1)]`` (the factor of the block's qubits, in
    local order, from two tables of its halves: small, so a call allocates no state-sized buffer) times the
    factor of the others (``columns``: 4 reals per other qubit, its initial column; bit k of ``chunk`` is
    other qubit k), read through the block's leading permutation step if it has one (built in ``scratch``,
    then gathered). Returns the first block step still to apply. So the product state costs no pass of its
    own."""
    cdef real hr = 1
    cdef real hi = 0
    cdef real cr, ci, t
    cdef int64_t h, l, k
    cdef int64_t low_size = <int64_t>1 << low_bits
    cdef bint permuted = first < last and kind[first] == PERM
    cdef real* out = scratch if permuted else dest
    for k in range(num_others):
        cr = columns[4 * k + 2 * ((chunk >> k) & 1)]
        ci = columns[4 * k + 2 * ((chunk >> k) & 1) + 1]
        t = hr * cr - hi * ci
        hi = hr * ci + hi * cr
        hr = t
    for h in range(local >> low_bits):
        cr = hr * high_part[2 * h] - hi * high_part[2 * h + 1]
        ci = hr * high_part[2 * h + 1] + hi * high_part[2 * h]
        for l in range(low_size):
            out[2 * ((h << low_bits) + l)] = cr * low_part[2 * l] - ci * low_part[2 * l + 1]
            out[2 * ((h << low_bits) + l) + 1] = cr * low_part[2 * l + 1] + ci * low_part[2 * l]
    if not permuted:
        return first
    apply_flipped_permutation(dest, scratch, local, perm_table + perm_start[arg[first]],
                              _control_flip(slice_index, arg[first], control_start, control_qubit, control_mask))
    return first + 1


cdef void _evolve_large(real* psi, const real* u1, const real* u2, int64_t num_qubits, const int32_t* init_u1,
                        const int64_t* block_start, const int64_t* block_qubit_start, const int32_t* block_qubits,
                        int64_t num_blocks, const int8_t* kind, const int32_t* q0, const int32_t* q1,
                        const int32_t* arg, const int64_t* run_start, const int32_t* run_gate,
                        const int64_t* perm_start, bint has_perm, const int64_t* perm_table,
                        const int64_t* control_start, const int32_t* control_qubit, const int64_t* control_mask,
                        int num_threads, int* failed) noexcept nogil:
    """Body of :func:`evolve_large`; ``failed[0]`` is set when a buffer cannot be allocated.

    The product state is written slice by slice as the first block's pass reads it
    (:func:`_product_slice`); a program without blocks takes one pass over an in-place block of its lower
    half of qubits, with no steps."""
    cdef int64_t i, k, q, blk, group, sub, slice_index, group_index, local, num_local, num_others, run_qubits, run
    cdef int64_t spectators, group_slices, low_bits = 0
    cdef int64_t first, last, start
    cdef int64_t passes = num_blocks if num_blocks > 0 else 1
    cdef bint in_place
    cdef int64_t qubits[64]
    cdef int64_t others[64]
    cdef bint in_block[64]
    cdef real columns[4 * 64]
    cdef int64_t* offsets
    cdef real* product = NULL  # the first block's product factors: its low half of qubits', then its high half's
    cdef real* buf = NULL
    cdef real* scratch = NULL
    cdef real* tables = NULL
    cdef real* target = NULL
    cdef real* out = NULL
    cdef bint ok = False
    for blk in range(passes):
        if num_blocks > 0:
            num_local = block_qubit_start[blk + 1] - block_qubit_start[blk]
            for k in range(num_local):
                qubits[k] = block_qubits[block_qubit_start[blk] + k]
            first = block_start[blk]
            last = block_start[blk + 1]
        else:
            num_local = num_qubits // 2
            for k in range(num_local):
                qubits[k] = k
            first = 0
            last = 0
        for q in range(num_qubits):
            in_block[q] = False
        for k in range(num_local):
            in_block[qubits[k]] = True
        num_others = 0
        for q in range(num_qubits):
            if not in_block[q]:
                others[num_others] = q
                num_others += 1
        local = <int64_t>1 << num_local
        # the block's lowest qubits 0, 1, ..., r-1 make runs of 2**r amplitudes that are contiguous in psi
        # too: gathered and scattered whole; a block of qubits 0..k-1 is one run and works in place
        run_qubits = 0
        while run_qubits < num_local and qubits[run_qubits] == run_qubits:
            run_qubits += 1
        run = <int64_t>1 << run_qubits
        in_place = run_qubits == num_local
        offsets = <int64_t*>malloc(local * sizeof(int64_t))
        if blk == 0:
            low_bits = num_local // 2
            product = <real*>malloc(2 * ((<int64_t>1 << low_bits) + (local >> low_bits)) * sizeof(real))
            if product != NULL:
                product_of(product, u1, run_start, run_gate, init_u1, qubits, low_bits)
                product_of(product + (2 << low_bits), u1, run_start, run_gate, init_u1, qubits + low_bits,
                           num_local - low_bits)
            for k in range(num_others):
                _initial_column(u1, run_start, run_gate, init_u1, others[k], columns + 4 * k)
        if offsets == NULL or (blk == 0 and product == NULL):
            free(offsets)
            free(product)
            failed[0] = 1
            return
        for i in range(local):
            offsets[i] = 2 * _deposit(i, qubits, num_local)
        # a gather reads 2**spectators slices at once, whose runs lie side by side in psi, so that it reads
        # GATHER_RUN_BYTES in a row from memory: 128-byte runs at a 64 KiB stride made the gather and scatter
        # of a 24-qubit state about 3x a copy. A state that the caches hold gains nothing from it, and its
        # slices' larger buffer costs
        spectators = 0
        while (not in_place and blk > 0 and spectators < num_others and others[spectators] == run_qubits + spectators
               and (run << (spectators + 1)) * 2 * <int64_t>sizeof(real) <= GATHER_RUN_BYTES
               and (<int64_t>2 << num_qubits) * <int64_t>sizeof(real) >= GATHER_GROUP_MIN_STATE):
            spectators += 1
        group_slices = <int64_t>1 << spectators
        with parallel(num_threads=num_threads):
            # per-thread gather buffers, allocated once per block pass
            buf = <real*>malloc(2 * local * group_slices * sizeof(real)) if not in_place else NULL
            scratch = <real*>malloc(2 * local * sizeof(real)) if has_perm else NULL
            tables = <real*>malloc((10 * (1 << PHASE_LOW_QUBITS) + 2 * local + 2) * sizeof(real))
            ok = not ((buf == NULL and not in_place) or (has_perm and scratch == NULL) or tables == NULL)
            for group in prange(<int64_t>1 << (num_others - spectators), schedule="static"):  # reached by every thread
                if not ok:
                    failed[0] = 1
                else:
                    # slice (group, sub) starts at group_index + sub * run: the spectators are qubits from run_qubits
                    group_index = _deposit(group << spectators, others, num_others)
                    if blk > 0 and not in_place:
                        i = 0
                        while i < local:
                            for sub in range(group_slices):
                                _copy_run(buf + 2 * (sub * local + i), psi + 2 * (group_index + sub * run) + offsets[i],
                                          2 * run)
                            i = i + run
                    for sub in range(group_slices):
                        slice_index = group_index + sub * run
                        target = psi + 2 * slice_index if in_place else buf + 2 * sub * local
                        start = first
                        if blk == 0:
                            start = _product_slice(target, scratch, product, product + (2 << low_bits), low_bits,
                                                   columns, (group << spectators) | sub, num_others, local, first,
                                                   last, kind, arg, perm_start, perm_table, control_start,
                                                   control_qubit, control_mask, slice_index)
                        out = apply_block_steps(target, scratch, local, start, last, kind, q0, q1, arg, u1, u2,
                                                run_start, run_gate, perm_start, perm_table, control_start,
                                                control_qubit, control_mask, slice_index, tables)
                        if out != target and (in_place or group_slices > 1):
                            memcpy(target, out, 2 * local * sizeof(real))
                    if not in_place:
                        if group_slices > 1:  # each slice's result is back in its part of buf
                            out = buf
                        i = 0
                        while i < local:
                            for sub in range(group_slices):
                                _copy_run(psi + 2 * (group_index + sub * run) + offsets[i], out + 2 * (sub * local + i),
                                          2 * run)
                            i = i + run
            free(buf)
            free(scratch)
            free(tables)
        free(offsets)
        free(product)
        product = NULL
        if failed[0]:
            return


def evolve_large(cplx[::1] psi, const cplx[:, :, ::1] u1, const cplx[:, :, ::1] u2, int num_qubits,
                 const int32_t[::1] init_u1, const int64_t[::1] block_start, const int64_t[::1] block_qubit_start,
                 const int32_t[::1] block_qubits, const int8_t[::1] kind, const int32_t[::1] q0,
                 const int32_t[::1] q1, const int32_t[::1] arg, const int64_t[::1] run_start,
                 const int32_t[::1] run_gate, const int64_t[::1] perm_start, const int64_t[::1] perm_table,
                 const int64_t[::1] perm_control_start, const int32_t[::1] perm_control_qubit,
                 const int64_t[::1] perm_control_mask, int num_threads):
    """Evolve one large state in place: one gathered pass per block, the first writing the product state.

    ``num_threads`` (numba sizes its per-thread buffers with it) caps the
    thread count here; buffers are allocated per thread inside each pass.
    """
    cdef int failed = 0
    cdef int64_t k, controls
    cdef const int32_t* control_qubit = NULL
    cdef const int64_t* control_mask = NULL
    cdef int64_t num_blocks = block_start.shape[0] - 1
    cdef int threads = max(1, min(_threads, num_threads))
    if not 1 <= num_qubits <= 63 or psi.shape[0] != (<int64_t>1 << num_qubits):
        raise ValueError(f"psi must hold 2**{num_qubits} amplitudes")
    if block_qubit_start.shape[0] != num_blocks + 1 or num_blocks < 0:
        raise ValueError("block_start and block_qubit_start must both have one entry per block plus one")
    if init_u1.shape[0] < num_qubits:
        raise ValueError("init_u1 needs one entry per qubit")
    if q0.shape[0] < kind.shape[0] or q1.shape[0] < kind.shape[0] or arg.shape[0] < kind.shape[0]:
        raise ValueError("kind, q0, q1 and arg must have one entry per step")
    for k in range(num_blocks):
        if not 0 <= block_qubit_start[k + 1] - block_qubit_start[k] <= num_qubits:
            raise ValueError("a block has more qubits than the register")
    if perm_control_start.shape[0] != perm_start.shape[0]:
        raise ValueError("perm_control_start must have one entry per permutation table plus one")
    controls = perm_control_start[perm_control_start.shape[0] - 1]
    if perm_control_qubit.shape[0] < controls or perm_control_mask.shape[0] < controls:
        raise ValueError("perm_control_qubit and perm_control_mask must have one entry per external control")
    for k in range(controls):
        if not 0 <= perm_control_qubit[k] < num_qubits:
            raise ValueError("an external control is not a qubit of the register")
    if controls:
        control_qubit = &perm_control_qubit[0]
        control_mask = &perm_control_mask[0]
    if cplx is cython.floatcomplex:
        with nogil:
            _evolve_large(<float*>&psi[0], <const float*>&u1[0, 0, 0], <const float*>&u2[0, 0, 0], num_qubits,
                          &init_u1[0], &block_start[0], &block_qubit_start[0], &block_qubits[0], num_blocks,
                          &kind[0], &q0[0], &q1[0], &arg[0], &run_start[0], &run_gate[0], &perm_start[0],
                          perm_start.shape[0] > 1, &perm_table[0], &perm_control_start[0], control_qubit,
                          control_mask, threads, &failed)
    else:
        with nogil:
            _evolve_large(<double*>&psi[0], <const double*>&u1[0, 0, 0], <const double*>&u2[0, 0, 0], num_qubits,
                          &init_u1[0], &block_start[0], &block_qubit_start[0], &block_qubits[0], num_blocks,
                          &kind[0], &q0[0], &q1[0], &arg[0], &run_start[0], &run_gate[0], &perm_start[0],
                          perm_start.shape[0] > 1, &perm_table[0], &perm_control_start[0], control_qubit,
                          control_mask, threads, &failed)
    _check_allocated(failed)


cdef void _expectations_large(const real* v, int64_t n, const int64_t* xmask, const int64_t* zmask,
                              const int64_t* ny, int64_t count, double* partial, int64_t slices,
                              int num_threads) noexcept nogil:
    """Body of :func:`expectations_large`: partial sums per (slice, observable) in ``partial``."""
    cdef int64_t width = n // slices
    cdef int64_t c, k
    for c in prange(slices, num_threads=num_threads, schedule="static"):
        for k in range(count):
            if xmask[k] == 0:
                partial[c * count + k] = z_expectation(v, c * width, (c + 1) * width, zmask[k])
            else:
                partial[c * count + k] = pauli_expectation(v, c * width, (c + 1) * width, xmask[k], zmask[k], ny[k])


def expectations_large(const cplx[::1] psi, const int64_t[::1] xmask, const int64_t[::1] zmask,
                       const int64_t[::1] ny, double[::1] out):
    """Exact expectations of one large state, parallel over slices (256, fewer for tiny states)."""
    cdef int64_t n = psi.shape[0]
    cdef int64_t count = out.shape[0]
    # as numba: at most n slices, or a state under 256 amplitudes would get empty ones
    cdef int64_t slices = min(<int64_t>256, n)
    cdef int64_t c, k
    cdef double acc
    cdef double* partial
    _check_observables(xmask, zmask, ny, count)
    if n == 0 or n & (n - 1):
        raise ValueError("psi must hold a power of two amplitudes")
    if count == 0:
        return
    partial = <double*>malloc(slices * count * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    if cplx is cython.floatcomplex:
        with nogil:
            _expectations_large(<const float*>&psi[0], n, &xmask[0], &zmask[0], &ny[0], count, partial, slices,
                                _threads)
    else:
        with nogil:
            _expectations_large(<const double*>&psi[0], n, &xmask[0], &zmask[0], &ny[0], count, partial, slices,
                                _threads)
    for k in range(count):
        acc = 0.0
        for c in range(slices):
            acc += partial[c * count + k]
        out[k] = acc
    free(partial)


cdef void _probabilities_in_place(real* v, int64_t n) noexcept nogil:
    """Body of :func:`probabilities_in_place`: in index order, which is what makes it safe.

    Each write lands on bytes this or an earlier iteration has read (the
    same bytes for complex64), so no reordering the compiler may do across
    the float/double views can read a value this loop has overwritten.
    """
    cdef double* out = <double*>v
    cdef int64_t i
    cdef double re, im
    for i in range(n):
        re = v[2 * i]
        im = v[2 * i + 1]
        out[i] = re * re + im * im


def probabilities_in_place(cplx[::1] psi):
    """|psi_i|^2 written over the state's own memory; returns the float64[2**n] view.

    No second state-sized buffer: float64 i lies inside complex element i
    (complex64) or i // 2 (complex128), which this sequential loop has
    already read when it writes there.
    """
    cdef int64_t n = psi.shape[0]
    if n:
        if cplx is cython.floatcomplex:
            with nogil:
                _probabilities_in_place(<float*>&psi[0], n)
        else:
            with nogil:
                _probabilities_in_place(<double*>&psi[0], n)
    return np.asarray(psi).view(np.float64)[:n]


cdef int _compare_doubles(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0]
    cdef double y = (<const double*>b)[0]
    return (x > y) - (x < y)


cdef void _samples_large(const real* v, int64_t n, uint64_t* rng, int64_t* out, int64_t count,
                         double* targets) noexcept nogil:
    """Body of :func:`samples_large`; ``targets`` is float64[count] scratch."""
    cdef double total = 0.0
    cdef double cumulative = 0.0
    cdef double p, re, im
    cdef int64_t i, j, s, last, tmp
    for i in range(n):
        re = v[2 * i]
        im = v[2 * i + 1]
        total += re * re + im * im
    for s in range(count):
        targets[s] = next_uniform(rng)
    # sorting values gives one array whatever the algorithm, so numba's np.sort and qsort agree
    qsort(targets, count, sizeof(double), _compare_doubles)
    for s in range(count):
        targets[s] = targets[s] * total
    s = 0
    last = 0
    for i in range(n):
        re = v[2 * i]
        im = v[2 * i + 1]
        p = re * re + im * im
        if p > 0.0:
            last = i
        cumulative += p
        while s < count and targets[s] < cumulative:
            out[s] = i
            s += 1
    while s < count:
        out[s] = last
        s += 1
    # Fisher-Yates, so the order of the draws is exchangeable
    for s in range(count - 1, 0, -1):
        j = <int64_t>(next_uniform(rng) * <double>(s + 1))
        tmp = out[s]
        out[s] = out[j]
        out[j] = tmp


def samples_large(const cplx[::1] psi, uint64_t rng, int64_t[::1] out):
    """Draw ``out.size`` samples from a large state with O(shots) extra memory; returns the advanced rng.

    Sorted uniforms are matched against one running sum over the state, then
    the draws are shuffled (Fisher-Yates) so their order is exchangeable.
    """
    cdef int64_t count = out.shape[0]
    cdef double* targets
    if count == 0:
        return rng
    targets = <double*>malloc(count * sizeof(double))
    if targets == NULL:
        raise MemoryError()
    if cplx is cython.floatcomplex:
        with nogil:
            _samples_large(<const float*>&psi[0], psi.shape[0], &rng, &out[0], count, targets)
    else:
        with nogil:
            _samples_large(<const double*>&psi[0], psi.shape[0], &rng, &out[0], count, targets)
    free(targets)
    return rng


# ---------------------------------------------------------------- adjoint differentiation

include "_adjoint.pxi"
