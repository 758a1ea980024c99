"""Gate matrices: what :meth:`Program.bind <qsim_core.compiler.program.Program.bind>` fills, and how.

The compiler lays the gate instances of a program out as :class:`GateGroup`
slices (:func:`groups`, at compile time); :func:`fill` turns a batch of
parameter vectors into their matrices (RX/RY/RZ through the numba kernel of
:mod:`qsim_core.compiler.rotations`). The compiler's own single-qubit gates
with a fixed matrix (:class:`ConstantOp`) and the compile-time matrix of an
operation (:func:`constant_matrix`) are here too, so that every pass can use them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..circuit import Operation, is_symbolic
from ..gates import GATES
from .rotations import fill_rotations


@dataclass(frozen=True, eq=False)
class ConstantOp:
    """A compiler-made single-qubit gate with a fixed matrix (folded Cliffords, merged constants).

    It stands in the operation list beside the gate table's :class:`Operation`
    objects; its matrix is bound as is (the ``"constant"`` gate group).
    """

    qubits: tuple[int, ...]
    matrix: np.ndarray  # complex128[2, 2]
    name: str = field(default="constant", init=False)
    params: tuple = field(default=(), init=False)


AnyOp = Operation | ConstantOp


@dataclass(frozen=True)
class GateGroup:
    """All instances of one gate in a program: a contiguous slice of the matrix array.

    A parameter slot's value is ``offset + sum_t scale[.., t] * params[index[.., t]]``
    (T terms; constants have all scales 0, a :class:`Param` one term, a
    :class:`ParamSum` several). When no slot refers to a parameter, the
    matrices are computed once, at compile time (``matrices``).
    """

    name: str
    start: int
    stop: int
    index: np.ndarray  # int64[num_params, count, T]: parameter columns (0 where unused)
    scale: np.ndarray  # float64[num_params, count, T]: 0 for constants and padding
    offset: np.ndarray  # float64[num_params, count]: the constant, or the reference's offset
    generator: np.ndarray | None  # rotation gates: the Pauli matrix P of exp(-i a P / 2)
    matrices: np.ndarray | None = None  # complex128[count, d, d] when no slot refers to a parameter

    def values(self, params: np.ndarray) -> list[np.ndarray]:
        """Each slot's value for every instance and parameter set: float64[B, count] per slot.

        For rotation gates the values are in radians (the unit is folded in).
        """
        batch = params.shape[0]
        out = []
        for slot in range(self.index.shape[0]):
            value = np.broadcast_to(self.offset[slot], (batch, self.stop - self.start)).copy()
            for t in range(self.index.shape[2]):
                if self.scale[slot, :, t].any():
                    value += params[:, self.index[slot, :, t]] * self.scale[slot, :, t]
            out.append(value)
        return out


def groups(ops: Sequence[AnyOp]) -> tuple[list[AnyOp], tuple[GateGroup, ...], list[int]]:
    """Order ``ops`` by gate name; returns (ordered ops, groups, new position of each op).

    Compiler-made constants come last, as one ``"constant"`` group. A group
    whose parameters are all constants gets its matrices computed here, once.
    """
    order = sorted(range(len(ops)), key=lambda k: (_opcode(ops[k]), k))
    ordered = [ops[k] for k in order]
    position = [0] * len(ops)
    for new, old in enumerate(order):
        position[old] = new
    groups = []
    start = 0
    while start < len(ordered):
        name = ordered[start].name
        stop = start
        while stop < len(ordered) and ordered[stop].name == name:
            stop += 1
        members = ordered[start:stop]
        if name == ConstantOp.name:
            count = len(members)
            groups.append(GateGroup(name, start, stop, np.zeros((0, count, 1), np.int64), np.zeros((0, count, 1)),
                                     np.zeros((0, count)), None, np.stack([op.matrix for op in members])))
            start = stop
            continue
        slots = GATES[name].num_params
        width = max([len(v.terms) for op in members for v in op.params if is_symbolic(v)] + [1])
        index = np.zeros((slots, len(members), width), np.int64)
        scale = np.zeros((slots, len(members), width))
        offset = np.zeros((slots, len(members)))
        for k, op in enumerate(members):
            for slot, value in enumerate(op.params):
                if is_symbolic(value):
                    for t, (column, factor) in enumerate(value.terms):
                        index[slot, k, t], scale[slot, k, t] = column, factor
                    offset[slot, k] = value.offset
                else:
                    offset[slot, k] = value
        spec = GATES[name]
        matrices = None
        if not scale.any():  # constants: the same matrices for every parameter set
            matrices = spec.matrix(*offset) if slots else np.broadcast_to(spec.matrix(), (len(members),) * 1
                                                                          + spec.matrix().shape)
        if spec.generator:  # fold the unit into the angle: a = radians_per_unit * value
            scale, offset = scale * spec.radians_per_unit, offset * spec.radians_per_unit
        groups.append(GateGroup(name, start, stop, index, scale, offset, spec.generator_matrix, matrices))
        start = stop
    return ordered, tuple(groups), position


def _opcode(op: AnyOp) -> int:
    return len(GATES) if isinstance(op, ConstantOp) else op.gate.opcode


class GateMatrices:
    """The gate matrices of one group list for a fixed batch size, in an array that is refilled call by call.

    Constant groups are written once, here; :meth:`fill` rewrites only the
    parametrised ones. The array is overwritten by every :meth:`fill`, so an
    instance belongs to one thread and its array must not be handed to a caller
    who keeps it (:mod:`qsim_core.backends.driver` keeps one per thread for small batches).

    Args:
        groups: the program's :class:`GateGroup` slices (``u1_groups`` or ``u2_groups``).
        batch: parameter sets B per fill.
        dim: matrix size d (2 or 4).
        dtype: complex64 or complex128.

    Attributes:
        out: ``[B, count, d, d]``, what :meth:`fill` fills (and returns, or its first rows).
        rotations: every rotation instance of the groups as one table, what
            :func:`~qsim_core.compiler.rotations.fill_rotations` takes before ``out``:
            ``(index, scale, offset, pauli, slot)`` (no rows when there are no rotations).
        refilled: whether a fill without the rotations writes anything (a parametrised gate other than a
            rotation); else every other matrix is written once, here.
    """

    def __init__(self, groups: Sequence[GateGroup], batch: int, dim: int, dtype: np.dtype) -> None:
        count = groups[-1].stop if groups else 0
        self.out = np.empty((batch, count, dim, dim), dtype)
        rotations = []
        self._tabled = []
        for group in groups:
            view = self.out[:, group.start:group.stop]
            if group.matrices is not None:
                view[...] = group.matrices
            elif group.generator is not None:
                rotations.append(group)
            else:
                self._tabled.append((GATES[group.name].matrix, group, view))
        self.rotations = _rotation_table(rotations, dim)
        self._has_rotations = bool(rotations)
        self.refilled = bool(self._tabled)

    def fill(self, params: np.ndarray, threads: int, rotations: bool = True) -> np.ndarray:
        """The matrices for ``params`` (float64[R, P], R up to the batch size B): one vectorised call for all the
        rotations (unless ``rotations`` is False: a kernel that fills them from :attr:`rotations` itself),
        one per other parametrised gate name.

        Returns the first R rows of the instance's array, ``[R, count, d, d]``, overwritten by the next call.
        """
        rows = params.shape[0]
        if rows > self.out.shape[0]:
            raise ValueError(f"{rows} parameter sets do not fit matrices for {self.out.shape[0]}")
        out = self.out if rows == self.out.shape[0] else self.out[:rows]
        if rotations and self._has_rotations:
            fill_rotations(params, *self.rotations, out, threads)
        for matrix, group, view in self._tabled:
            matrix(*group.values(params), out=view[:rows])
        return out


def _rotation_table(groups: Sequence[GateGroup], dim: int) -> tuple[np.ndarray, ...]:
    """The rotation groups' instances as one table (see :attr:`GateMatrices.rotations`), terms padded with zero
    scales to the widest group's."""
    width = max([group.index.shape[2] for group in groups] + [1])

    def padded(array: np.ndarray) -> np.ndarray:
        return np.pad(array[0], ((0, 0), (0, width - array.shape[2])))

    index = np.zeros((0, width), np.int64)
    scale = np.zeros((0, width))
    offset = np.zeros(0)
    pauli = np.zeros((0, dim, dim), np.complex128)
    slot = np.zeros(0, np.int64)
    return (np.concatenate([index] + [padded(group.index) for group in groups]),
            np.concatenate([scale] + [padded(group.scale) for group in groups]),
            np.concatenate([offset] + [group.offset[0] for group in groups]),
            np.concatenate([pauli] + [np.broadcast_to(group.generator, (group.stop - group.start, dim, dim))
                                      for group in groups]),
            np.concatenate([slot] + [np.arange(group.start, group.stop) for group in groups]))


def fill(groups: Sequence[GateGroup], params: np.ndarray, dim: int, dtype: np.dtype, threads: int) -> np.ndarray:
    """Matrices of every gate instance, in a new array ``[B, count, dim, dim]`` (see :class:`GateMatrices`)."""
    return GateMatrices(groups, params.shape[0], dim, dtype).fill(params, threads)


def constant_matrix(op: AnyOp) -> np.ndarray:
    """The matrix of an operation without parameter references."""
    if isinstance(op, ConstantOp):
        return op.matrix
    return table_matrix(op.name, op.params)


@functools.lru_cache(maxsize=4096)
def table_matrix(name: str, params: tuple[float, ...]) -> np.ndarray:
    spec = GATES[name]
    matrix = np.array(spec.matrix(*params) if params else spec.matrix())
    matrix.setflags(write=False)
    return matrix
