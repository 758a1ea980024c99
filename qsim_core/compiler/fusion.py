"""The tail pass, single-qubit canonical runs and fusion, and the two-qubit step kinds.

Passes 3 to 5 of :mod:`qsim_core.compiler.program`: :func:`drop_invisible_tail`
(Z-basis programs), :func:`canonical_runs` (before Clifford folding) and
:func:`fuse_single_qubit_runs`, which turns the operations into kernel steps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from ..circuit import Operation, ParamSum, is_symbolic
from ..gates import GATES, PAULI
from .binding import AnyOp, ConstantOp, constant_matrix, table_matrix
from .program import CNOT, SWAP, TOL, U1, U2, U2D, U2X, Step

# ---------------------------------------------------------------- pass 3: tail pass

def drop_invisible_tail(ops: Sequence[AnyOp], num_qubits: int) -> list[AnyOp]:
    """Remove diagonal gates that no later non-monomial gate can turn into amplitude changes."""
    flags = _tail_flags(ops, num_qubits)
    return [op for op, after in zip(ops, flags, strict=True) if not (after and structure(op)[0])]


def _tail_flags(ops: Sequence[AnyOp], num_qubits: int) -> list[bool]:
    """Per operation: whether only monomial gates follow it, on its qubits and on every qubit they reach.

    A diagonal factor applied at such a point cannot change any basis-state probability.
    """
    tail = [True] * num_qubits
    flags = [False] * len(ops)
    for k in range(len(ops) - 1, -1, -1):
        flags[k] = all(tail[q] for q in ops[k].qubits)
        if not (flags[k] and structure(ops[k])[1]):
            for q in ops[k].qubits:
                tail[q] = False
    return flags


def structure(op: AnyOp) -> tuple[bool, bool]:
    """(diagonal, monomial) of an operation's matrix for every parameter value."""
    if isinstance(op, ConstantOp):
        off = abs(op.matrix[0, 1]) > TOL or abs(op.matrix[1, 0]) > TOL
        on = abs(op.matrix[0, 0]) > TOL or abs(op.matrix[1, 1]) > TOL
        return not off, not (off and on)
    return op.gate.diagonal, op.gate.monomial


# ---------------------------------------------------------------- pass 4: single-qubit fusion

def fuse_single_qubit_runs(ops: Sequence[AnyOp], num_qubits: int, zbasis: bool) -> list[Step]:
    steps: list[Step] = []
    pending: list[list[AnyOp]] = [[] for _ in range(num_qubits)]
    in_tail = _tail_flags(ops, num_qubits) if zbasis else [False] * len(ops)
    left_free = [False] * num_qubits  # the pending run ends where a diagonal factor is invisible

    def flush(q: int) -> None:
        if pending[q]:
            run = _canonical_run(q, pending[q], zbasis, left_free[q])
            if run:
                steps.append(Step(U1, (q,), tuple(run)))
            pending[q] = []

    for k, op in enumerate(ops):
        if len(op.qubits) == 1:
            pending[op.qubits[0]].append(op)
            left_free[op.qubits[0]] = in_tail[k]
            continue
        for q in op.qubits:
            flush(q)
        steps.append(Step(_two_qubit_kind(op), op.qubits, (op,)))
    for q in range(num_qubits):
        flush(q)
    return steps


def canonical_runs(ops: Sequence[AnyOp], num_qubits: int) -> list[AnyOp]:
    """Every single-qubit run in canonical form (:func:`_canonical_run`), before Clifford folding.

    The run's Clifford constants then stand first, next to the two-qubit gates
    before it, so that a region folded there takes them in: the local frame
    the region leaves behind is then often no more than phases, and the
    run's matrix stays real.
    """
    out: list[AnyOp] = []
    pending: list[list[AnyOp]] = [[] for _ in range(num_qubits)]
    for op in [*ops, None]:
        if op is not None and len(op.qubits) == 1:
            pending[op.qubits[0]].append(op)
            continue
        for q in range(num_qubits) if op is None else op.qubits:
            out.extend(_canonical_run(q, pending[q], zbasis=False))
            pending[q] = []
        if op is not None:
            out.append(op)
    return out


# ---------------------------------------------------------------- pass 4: canonical single-qubit runs

def _canonical_run(q: int, ops: Sequence[AnyOp], zbasis: bool, left_free: bool = False) -> list[AnyOp]:
    """An equivalent, shorter form of the single-qubit run ``ops`` on qubit ``q``.

    Constant gates are multiplied into one matrix; a constant Clifford ``G``
    also moves in front of the parametrised RX/RY/RZ rotations before it, as
    ``G R_P(a) = R_{G P G^dagger}(a) G``. Adjacent rotations about one axis
    merge into one with the summed angle. Any other parametrised gate, or a
    non-Clifford constant after a rotation, starts a new segment. A constant
    that is the identity (in Z-basis programs, a global phase) is dropped.
    In a Z-basis program a run of one segment is also made real where its
    free phases allow (see :func:`_real_form`; ``left_free``: the run ends
    where a diagonal factor is invisible), so the kernels take their real path.
    """
    out: list[AnyOp] = []
    constant: np.ndarray | None = None  # applied first within the segment
    source: AnyOp | None = None  # the one gate ``constant`` is, if it is one
    rotations: list[list] = []  # [axis, angle], applied after it in this order

    def flush() -> None:
        nonlocal constant, source, rotations
        if constant is not None and not is_identity(constant, up_to_phase=zbasis):
            out.append(source or ConstantOp((q,), constant))
        out.extend(Operation("r" + axis.lower(), (q,), (angle,)) for axis, angle in rotations)
        constant, source, rotations = None, None, []

    def absorb(matrix: np.ndarray, op: AnyOp | None = None) -> None:
        nonlocal constant, source, rotations
        if rotations:
            images = [_conjugated_axis(matrix, axis) for axis, _ in rotations]
            if None in images:
                flush()
            else:
                rotations = [[letter, angle if sign > 0 else -angle]
                             for (letter, sign), (_, angle) in zip(images, rotations, strict=True)]
        constant, source = (matrix, op) if constant is None else (matrix @ constant, None)

    for op in ops:
        if not any(is_symbolic(v) for v in op.params):
            absorb(constant_matrix(op), op)
        elif op.name in ("rx", "ry", "rz"):
            axis, angle = op.gate.generator, op.params[0]
            if rotations and rotations[-1][0] == axis:
                angle = ParamSum.combine(rotations.pop()[1], angle)
            if is_symbolic(angle):
                rotations.append([axis, angle])
            else:  # the angles cancelled up to a constant
                absorb(table_matrix("r" + axis.lower(), (angle,)))
        else:
            flush()
            out.append(op)
    last = None
    if zbasis and not out:
        before = constant
        constant, rotations, last = _real_form(constant, rotations, left_free)
        source = source if constant is before else None
    flush()
    if last is not None:
        out.append(ConstantOp((q,), last))
    return out


def _real_form(constant: np.ndarray | None, rotations: list[list], left_free: bool
               ) -> tuple[np.ndarray | None, list[list], np.ndarray | None]:
    """A Z-basis run ``rotations . constant`` made real for every angle, where its free phases allow.

    A Z-basis program may multiply a run by a global phase; when only
    monomial gates follow the run (``left_free``) also by a diagonal matrix
    on the left, which drops trailing RZ rotations. If a constant choice of
    that phase makes the run's product real (checked on random angles), it
    moves in front of the rotations, or when it is no Clifford it is
    returned as a constant to apply last. Returns (constant, rotations, last).
    """
    if left_free:
        while rotations and rotations[-1][0] == "Z":
            rotations = rotations[:-1]
    start = PAULI["I"] if constant is None else constant
    if np.abs(start.imag).max() < TOL and all(axis == "Y" for axis, _ in rotations):
        return constant, rotations, None  # real already (RY is real)
    rng = np.random.default_rng(3)
    samples = []
    for _ in range(3):
        product = start
        for axis, _ in rotations:
            half = rng.uniform(-np.pi, np.pi) / 2
            product = (math.cos(half) * PAULI["I"] - 1j * math.sin(half) * PAULI[axis]) @ product
        samples.append(product)
    if all(np.abs(sample.imag).max() < TOL for sample in samples):
        return constant, rotations, None
    first = np.abs(samples[0])
    if left_free:
        pivots = np.array([samples[0][r, np.argmax(first[r])] for r in range(2)])
    else:
        pivots = np.array([samples[0].flat[np.argmax(first)]] * 2)
    pivots = np.conj(pivots) / np.abs(pivots)
    phase = np.diag(np.where(pivots.real < -TOL, -pivots, pivots))  # a sign is free: stay near the identity
    if not all(np.abs((phase @ sample).imag).max() < TOL for sample in samples):
        return constant, rotations, None
    images = [_conjugated_axis(phase, axis) for axis, _ in rotations]
    if None in images:
        return constant, rotations, phase
    rotations = [[letter, angle if sign > 0 else -angle] for (letter, sign), (_, angle) in zip(images, rotations,
                                                                                              strict=True)]
    return phase @ start, rotations, None


_AXES = "XYZ"


def _conjugated_axis(matrix: np.ndarray, axis: str) -> tuple[str, float] | None:
    """``(P', sign)`` with ``matrix P matrix^dagger = sign P'`` for the Pauli P = ``axis``; None if no such P'."""
    image = matrix @ PAULI[axis] @ matrix.conj().T
    for letter in _AXES:
        for sign in (1.0, -1.0):
            if np.allclose(image, sign * PAULI[letter], rtol=0, atol=TOL):  # entrywise: a small angle shows
                return letter, sign
    return None


def is_identity(matrix: np.ndarray, up_to_phase: bool = False) -> bool:
    """Whether a 2x2 matrix is the identity (or, with ``up_to_phase``, a multiple of it)."""
    if up_to_phase:
        return abs(matrix[0, 1]) < TOL and abs(matrix[1, 0]) < TOL and abs(matrix[0, 0] - matrix[1, 1]) < TOL
    return bool(np.allclose(matrix, PAULI["I"], rtol=0, atol=1e-14))


# ---------------------------------------------------------------- pass 5: two-qubit step kinds

#: entries of a pair-mixing 4x4 (index 2*bit(q0)+bit(q1)) that may be non-zero
_PAIR_MIXING = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]], bool)


def _two_qubit_kind(op: Operation) -> int:
    """CNOT, SWAP, or the structured kind the matrix's sparsity pattern allows (U2D, U2X, else U2)."""
    if op.name in ("cnot", "swap"):
        return CNOT if op.name == "cnot" else SWAP
    if any(is_symbolic(v) for v in op.params):
        pattern = _generic_pattern(op.name)
    else:
        pattern = np.abs(constant_matrix(op)) > 0
    if not (pattern & ~np.eye(4, dtype=bool)).any():
        return U2D
    if not (pattern & ~_PAIR_MIXING).any():
        return U2X
    return U2


@functools.cache
def _generic_pattern(name: str) -> np.ndarray:
    """Entries of the gate's matrix that are non-zero for some parameter values (three random draws)."""
    spec = GATES[name]
    values = np.random.default_rng(20260).uniform(-1.0, 1.0, (spec.num_params, 3))
    return (np.abs(spec.matrix(*values)) > 1e-12).any(axis=0)
