"""What the numba kernels' ``pack_small`` and ``pack_observables`` return (see the kernel contract,
:data:`qsim_core.backends.contract.KERNEL_FUNCTIONS`).

The Cython kernels check and convert the arrays that stay the same from call to call once, into objects that
hold pointers; numba's compiled calls take the arrays themselves, so here the packed forms are tuples of them,
laid out for :func:`qsim_core.backends.numba.kernels.run_packed`.
"""

import numba
import numpy as np

from ...compiler.rotations import PARALLEL_MIN_BATCH, fill_rotations
from ..contract import TASK_EXPVAL, TASK_PROBS, TASK_SAMPLES, TASK_SHOT_EXPVAL, TASK_STATE

#: size-0 stand-ins for the outputs a task does not write and for "no initial states", per state dtype: never
#: written, so every call and thread may share them
PLACEHOLDERS = {dtype: (np.empty((0, 0), dtype), np.empty((0, 0)), np.empty((0, 0)), np.empty((0, 0), np.int64))
                for dtype in (np.complex64, np.complex128)}
#: ``run_small``'s output arguments (psi, probs, values, samples) by task: the position each task writes
OUTPUT_OF_TASK = {TASK_STATE: 0, TASK_PROBS: 1, TASK_EXPVAL: 2, TASK_SHOT_EXPVAL: 2, TASK_SAMPLES: 3}


def pack_small(num_qubits, u1, u2, rotations1, rotations2, refilled, init_u1, kind, q0, q1, arg, run_start,
               run_gate, perm_start, perm_table):
    """``run_small``'s program arguments (``num_qubits`` to ``perm_table``, in its order), the placeholders of the
    state's dtype, the rotation tables that fill ``u1`` and ``u2`` and ``refilled`` (the Cython ``pack_small``'s
    arguments)."""
    arguments = (num_qubits, u1, u2, init_u1, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table)
    rotations = tuple((table, out) for table, out in ((rotations1, u1), (rotations2, u2)) if len(table[0]))
    return arguments, PLACEHOLDERS[u1.dtype.type], rotations, bool(refilled)


def pack_observables(xmask, zmask, ny):
    """``run_small``'s observable arguments, in its order."""
    return xmask, zmask, ny


def shares(program, rows):
    """The slices, each at most a packed program's (:func:`pack_small`) array rows long, in which a batch of
    ``rows`` sets runs a share at a time, or None when the arrays hold it whole.

    Raises:
        ValueError: more sets than rows for a program packed with ``refilled=True`` (its matrices other than the
            rotations are bound per set, for the whole batch).
    """
    (_, u1, *_), _, _, refilled = program
    capacity = len(u1)
    if rows <= capacity:
        return None
    if refilled:
        raise ValueError(f"params must have at most {capacity} rows (unless packed with refilled=False)")
    return [slice(start, start + capacity) for start in range(0, rows, capacity)]


def filled_rows(program, params):
    """The gate matrices ``(u1, u2)`` of a packed program (:func:`pack_small`) for the parameter sets ``params``
    (float64[B, P]): the first B rows of its arrays, with the rotations of ``params`` filled in (the Cython kernels
    fill them per set, inside the run)."""
    (_, u1, u2, *_), _, rotations, _ = program
    rows = len(params)
    if rows < len(u1):
        u1, u2, rotations = u1[:rows], u2[:rows], [(table, matrices[:rows]) for table, matrices in rotations]
    for table, matrices in rotations:  # numba's thread count is set_threads' choice; asked where it could matter
        fill_rotations(params, *table, matrices, 1 if rows < PARALLEL_MIN_BATCH else numba.get_num_threads())
    return u1, u2
