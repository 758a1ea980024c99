"""The hot loop of :meth:`qsim_core.compiler.Program.bind`, compiled with numba.

Rotation gates ``exp(-i a P / 2)`` (the gate table's ``generator``) are the
bulk of a QML circuit's parameters. Their matrices ``cos(a/2) I - i sin(a/2) P``
are filled here in one parallel pass over the batch, every rotation gate name at
once, from the generator matrices the table provides, instead of a dozen numpy
passes per gate name.
Both compiled backends consume the result, so this is backend-independent.
"""

import types

import numba
import numpy as np
from numba import njit, prange

#: Cody-Waite split of pi/2 into three 33-bit parts (fdlibm's): q * PIO2_1 is exact for |q| < 2**20
_PIO2_1, _PIO2_2, _PIO2_3 = 1.57079632673412561417e+00, 6.07710050630396597660e-11, 2.02226624871116645580e-21
_TWO_OVER_PI = 6.36619772367581382433e-01
#: fdlibm's minimax polynomials of sin and cos on [-pi/4, pi/4]
_S1, _S2, _S3, _S4, _S5, _S6 = (-1.66666666666666324348e-01, 8.33333333332248946124e-03,
                                -1.98412698298579493134e-04, 2.75573137070700676789e-06,
                                -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_C1, _C2, _C3, _C4, _C5, _C6 = (4.16666666666666019037e-02, -1.38888888888741095749e-03,
                                2.48015872894767294178e-05, -2.75573143513906633035e-07,
                                2.08757232129817482790e-09, -1.13596475577881948265e-11)
#: beyond this |x| the three-part reduction loses bits: libm's sin and cos take over
SINCOS_LIMIT = 1e6
#: parameter sets whose half-angles are formed, then turned into sines and cosines, in one go
_ROWS = 64


def _sincos(x, cosines, sines):
    """cos and sin of float64[n] ``x`` into ``cosines`` and ``sines``: within 2 ulp of libm's, and within
    1e-24 near a zero of either (the reduction's absolute error; libm reduces exactly).

    libm's sin and cos are calls LLVM cannot vectorise (about 30 ns a pair); this is the same
    argument reduction and polynomials as fdlibm's in plain arithmetic and selects, which it does
    (under 2 ns a pair). No fastmath: the results do not depend on the vector width.
    """
    for i in range(x.shape[0]):
        v = x[i]
        q = np.floor(v * _TWO_OVER_PI + 0.5)
        r = ((v - q * _PIO2_1) - q * _PIO2_2) - q * _PIO2_3
        z = r * r
        s = r + r * z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
        half = 0.5 * z
        w = 1.0 - half
        c = w + (((1.0 - w) - half) + z * z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6))))))
        quadrant = np.int64(q)  # r = v - quadrant * pi/2: rotate (c, s) by quadrant quarter turns
        odd = (quadrant & 1) != 0
        sine = c if odd else s
        cosine = s if odd else c
        sines[i] = -sine if (quadrant & 2) != 0 else sine
        cosines[i] = -cosine if ((quadrant + 1) & 2) != 0 else cosine
    for i in range(x.shape[0]):
        if not abs(x[i]) <= SINCOS_LIMIT:
            cosines[i] = np.cos(x[i])
            sines[i] = np.sin(x[i])


def _fill_rotations(params, index, scale, offset, pauli, slot, out):
    """Write out[b, slot[k]] = cos(a/2) I - i sin(a/2) pauli[k] for a = sum_t params[b, index[k, t]] * scale[k, t]
    + offset[k].

    Args:
        params: float64[B, P] parameter vectors.
        index, scale: int64[K, T], float64[K, T]: the T terms of instance k;
            ``scale[k, t] == 0`` marks an unused term (its ``index`` is not read,
            so P may be 0 for constants).
        offset: float64[K].
        pauli: complex128[K, d, d], each instance's generator (a Pauli string's matrix).
        slot: int64[K], each instance's position in ``out``.
        out: complex[B, G, d, d], written in place at the K slots (complex64 or complex128).
    """
    batch, count = out.shape[0], index.shape[0]
    for block in prange((batch + _ROWS - 1) // _ROWS):
        first = block * _ROWS
        last = min(batch, first + _ROWS)
        halves = np.empty((last - first) * count)
        cosines = np.empty_like(halves)
        sines = np.empty_like(halves)
        j = 0
        for b in range(first, last):
            for k in range(count):
                angle = offset[k]
                for t in range(index.shape[1]):
                    if scale[k, t] != 0.0:
                        angle += params[b, index[k, t]] * scale[k, t]
                halves[j] = 0.5 * angle
                j += 1
        _sincos_compiled(halves, cosines, sines)
        _write_rotations_compiled(cosines, sines, pauli, slot, out[first:last])


def _write_rotations(cosines, sines, pauli, slot, out):
    """out[b, slot[k]] = cosines[j] I - i sines[j] pauli[k], j = b * K + k: -i s pauli has real part s Im(pauli)
    and imaginary part -s Re(pauli). One-qubit generators are written unrolled (a loop over d x d entries of
    runtime size costs three times the arithmetic)."""
    count = slot.shape[0]
    d = pauli.shape[1]
    re = pauli.real.copy()
    im = pauli.imag.copy()
    if d == 2:
        for k in range(count):  # instance by instance: its generator's entries stay in registers
            g = slot[k]
            re00, re01, re10, re11 = re[k, 0, 0], re[k, 0, 1], re[k, 1, 0], re[k, 1, 1]
            im00, im01, im10, im11 = im[k, 0, 0], im[k, 0, 1], im[k, 1, 0], im[k, 1, 1]
            for b in range(out.shape[0]):
                c = cosines[b * count + k]
                s = sines[b * count + k]
                out[b, g, 0, 0] = complex(c + s * im00, -s * re00)
                out[b, g, 0, 1] = complex(s * im01, -s * re01)
                out[b, g, 1, 0] = complex(s * im10, -s * re10)
                out[b, g, 1, 1] = complex(c + s * im11, -s * re11)
        return
    for b in range(out.shape[0]):
        for k in range(count):
            c = cosines[b * count + k]
            s = sines[b * count + k]
            for r in range(d):
                for col in range(d):
                    real = s * im[k, r, col]
                    if r == col:
                        real += c
                    out[b, slot[k], r, col] = complex(real, -s * re[k, r, col])


def _build(function, variant: str, **options):
    """``function`` compiled by numba with ``options`` and cached on disk under a name of its own.

    Numba files its cache by the function's qualified name and keys the entries by bytecode and signature,
    not by options: a parallel and a serial build of one function would load each other's machine code (a
    checkout whose cache held the other build ran the seed batch measurably slower).
    """
    name = f"{function.__name__}_{variant}"
    renamed = types.FunctionType(function.__code__.replace(co_name=name, co_qualname=name), function.__globals__,
                                 name, function.__defaults__, function.__closure__)
    renamed.__qualname__ = name
    renamed.__doc__ = function.__doc__
    return njit(cache=True, **options)(renamed)


# nogil: a fill is up to half of a seed batch's time, and a thread that binds must not stop the process's other
# threads (a Dask worker receiving the next chunk, the local server's event loop, a PennyLane caller's threads)
_sincos_compiled = njit(cache=True, nogil=True)(_sincos)
_write_rotations_compiled = njit(cache=True, nogil=True)(_write_rotations)
fill_rotations_parallel = _build(_fill_rotations, "parallel_nogil", parallel=True, nogil=True)
fill_rotations_serial = _build(_fill_rotations, "serial_nogil", nogil=True)
#: below this many parameter sets a parallel region costs more than the fill
PARALLEL_MIN_BATCH = 64


def fill_rotations(params, index, scale, offset, pauli, slot, out, threads: int) -> None:
    """Fill rotation matrices (see ``_fill_rotations``), on up to ``threads`` threads for large batches.

    The thread count is set here, not left to numba's default (every core): the Cython backend never sets
    numba's, so a one-thread Simulator filled on every core, and two one-thread processes on two cores
    ran slower together than one alone.
    """
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    if threads <= 1 or out.shape[0] < PARALLEL_MIN_BATCH:
        fill_rotations_serial(params, index, scale, offset, pauli, slot, out)
        return
    numba.set_num_threads(threads)
    fill_rotations_parallel(params, index, scale, offset, pauli, slot, out)
