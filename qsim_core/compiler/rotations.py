"""The hot loop of :meth:`qsim_core.compiler.Program.bind`, compiled with numba.

Rotation gates ``exp(-i a P / 2)`` (the gate table's ``generator``) are the
bulk of a QML circuit's parameters. Their matrices ``cos(a/2) I - i sin(a/2) P``
are filled here in one parallel pass over the batch, from the generator
matrices the table provides, instead of a dozen numpy passes per gate name.
Both compiled backends consume the result, so this is backend-independent.
"""

import types

import numba
import numpy as np
from numba import njit, prange


def _fill_rotations(params, index, scale, offset, pauli, out):
    """Write out[b, k] = cos(a/2) I - i sin(a/2) pauli for a = sum_t params[b, index[k, t]] * scale[k, t] + offset[k].

    Args:
        params: float64[B, P] parameter vectors.
        index, scale: int64[K, T], float64[K, T]: the T terms of instance k;
            ``scale[k, t] == 0`` marks an unused term (its ``index`` is not read,
            so P may be 0 for constants).
        offset: float64[K].
        pauli: complex128[d, d], the generator (a Pauli string's matrix).
        out: complex[B, K, d, d], written in place (complex64 or complex128).
    """
    batch = out.shape[0]
    d = pauli.shape[0]
    for b in prange(batch):
        for k in range(index.shape[0]):
            angle = offset[k]
            for t in range(index.shape[1]):
                if scale[k, t] != 0.0:
                    angle += params[b, index[k, t]] * scale[k, t]
            c = np.cos(0.5 * angle)
            s = np.sin(0.5 * angle)
            for r in range(d):
                for col in range(d):
                    value = -1j * s * pauli[r, col]
                    if r == col:
                        value += c
                    out[b, k, r, col] = value


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
fill_rotations_parallel = _build(_fill_rotations, "parallel_nogil", parallel=True, nogil=True)
fill_rotations_serial = _build(_fill_rotations, "serial_nogil", nogil=True)
#: below this many parameter sets a parallel region costs more than the fill
PARALLEL_MIN_BATCH = 64


def fill_rotations(params, index, scale, offset, pauli, out, threads: int) -> None:
    """Fill rotation matrices (see ``_fill_rotations``), on up to ``threads`` threads for large batches.

    The thread count is set here, not left to numba's default (every core): the Cython backend never sets
    numba's, so a one-thread Simulator filled on every core, and two one-thread processes on two cores
    ran slower together than one alone.
    """
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    if threads <= 1 or out.shape[0] < PARALLEL_MIN_BATCH:
        fill_rotations_serial(params, index, scale, offset, pauli, out)
        return
    numba.set_num_threads(threads)
    fill_rotations_parallel(params, index, scale, offset, pauli, out)
