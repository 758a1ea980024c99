"""Compile a :class:`~qsim_core.Circuit` into a :class:`Program` of flat arrays.

The compiled form is what every compiled backend executes; it is independent
of the backend. Compilation runs these passes, in order:

1. **Frame normalisation** (native gates). A phase parameter of GPi, GPi2 or
   MS is a Z frame: ``G(c + L) = RZ(2 pi L) G(c) RZ(-2 pi L)`` on its qubit.
   Where the constant part ``G(c)`` is a Clifford gate, the parameter-
   dependent part ``L`` is moved out into explicit RZ rotations, which cancel
   between gates that share a frame. This undoes IonQ's *virtual Z*: a native
   circuit compiled from RY/RZ/CNOT gets back its RZ rotations and constant
   MS and GPi2 gates. The circuit is compiled with and without this pass,
   and the program with fewer steps is kept (an explicit RZ costs a step
   where it lands between two two-qubit gates).
2. **Clifford folding**. Every maximal region of constant Clifford gates
   that contains a structured two-qubit gate (MS, XX, YY, ZZ; not only
   CNOT/SWAP) is rewritten, when possible, as one-qubit gates, a CNOT
   network, one-qubit gates: ``U = A D P_L D' X^c B`` with ``A``, ``B``
   one-qubit Cliffords, ``D``, ``D'`` one-qubit phases, ``X^c`` bit flips
   and ``P_L`` a linear basis permutation. A native CNOT cascade (28 MS
   gates in each layer of the native seed circuit) becomes the same
   permutation as its QIS form.
3. **Tail pass** (only for Z-basis outputs: probabilities, samples, Z-string
   expectations; also run before pass 2). Diagonal gates that are followed
   on all their qubits only by diagonal or monomial gates (CNOT, SWAP, X,
   ...) cannot change any basis-state probability, so they are dropped.
4. **Single-qubit fusion**: every maximal run of 1-qubit gates on one qubit
   (uninterrupted by a multi-qubit gate on that qubit) becomes one ``U1``
   step whose 2x2 matrix is the product of the run, formed per parameter set
   at bind time. Each run is first put in a canonical form (also before
   pass 2, so that a folded region takes in the runs' Clifford constants):
   its constant gates are multiplied into one compile-time matrix, moved
   (when they are Cliffords) in front of the parametrised RX/RY/RZ
   rotations, which change axis accordingly, and adjacent rotations about
   one axis are merged (``GPi2(0) RZ(t) GPi2(1/2)`` becomes ``RY(t)``;
   ``RY(a) RY(b)`` becomes ``RY(a + b)``). In Z-basis programs a run's free phases (global, and a
   diagonal factor where only monomial gates follow) are chosen to make its
   matrix real where possible, for the kernels' real fast path.
5. **Two-qubit kinds**: a two-qubit gate's step kind follows from its
   matrix's sparsity pattern: ``U2D`` when it is diagonal (ZZ, native ZZ),
   ``U2X`` when it only couples ``|00>`` with ``|11>`` and ``|01>`` with
   ``|10>`` (MS, XX, YY: two 2x2 mixes per amplitude quartet), ``U2``
   otherwise; CNOT and SWAP have their own.
6. **Product initialisation**: a ``U1`` that is the first step on its qubit
   acts on ``|0>``, so the state after all of them is a product state; the
   kernels write it directly (one pass) instead of applying the gates.
7. **Blocking**: steps are grouped into blocks acting on at most
   ``block_qubits`` qubits. For ``num_qubits <= block_qubits`` there is one
   block and kernels work on the state in place; for larger circuits each
   block is one pass over the state: a cache-sized slice is gathered, all the
   block's steps are applied to it, and it is scattered back.
8. **Permutation runs**: within a block, a run of CNOT/SWAP steps becomes one
   ``PERM`` step, a basis permutation applied with a single gather (the seed
   circuit's 28-CNOT cascade costs one pass over the state, not 28).

Every pass is exact up to rounding (a gate within 1e-12 of a Clifford counts
as one); Z-basis programs also drop what cannot change a probability (global
phases, diagonal factors followed only by monomial gates).

:meth:`Program.bind` turns a batch of parameter vectors into the per-step
matrices (``params[B, P]`` to ``u1[B, S1, 2, 2]`` and ``u2[B, S2, 4, 4]``);
rebinding never recompiles. Compiled programs are cached per circuit
structure (see :func:`compile_circuit`).
"""

from __future__ import annotations

import functools
import heapq
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..circuit import Circuit, Operation, Param, ParamSum, ParamValue, is_symbolic
from ..gates import GATES, PAULI
from .rotations import fill_rotations

#: step kinds understood by the kernels (U2X: pair-mixing 4x4, U2D: diagonal 4x4; both read ``u2[arg]``)
U1, U2, CNOT, SWAP, PERM, U2X, U2D = 0, 1, 2, 3, 4, 5, 6

#: two-qubit kinds whose ``arg`` indexes the bound ``u2`` matrices
_MATRIX_2Q = (U2, U2X, U2D)

#: how many low qubits every gathered block includes, so that each gathered
#: run of amplitudes fills whole cache lines
_LOW_QUBITS_IN_BLOCK = 3
#: a CNOT/SWAP run at least this long becomes one permutation step
_MIN_PERM_RUN = 3
#: widest region Clifford folding considers (it works on the region's dense 2^m x 2^m unitary)
_MAX_FOLD_QUBITS = 10
#: at most this many local-Clifford frames are tried per region, and compared once this many work
_MAX_FOLD_ATTEMPTS = 32
_MAX_FOLD_FORMS = 2
#: tolerance of the compile-time matrix identities (Clifford, monomial, identity tests): a gate this
#: close to a Clifford is treated as one, so it bounds the error a rewrite may add (double precision
#: results are checked to 1e-10)
_TOL = 1e-12

DEFAULT_BLOCK_QUBITS = 14


@dataclass(frozen=True, eq=False)
class _ConstantOp:
    """A compiler-made single-qubit gate with a fixed matrix (folded Cliffords, merged constants).

    It stands in the operation list beside the gate table's :class:`Operation`
    objects; its matrix is bound as is (the ``"constant"`` gate group).
    """

    qubits: tuple[int, ...]
    matrix: np.ndarray  # complex128[2, 2]
    name: str = field(default="constant", init=False)
    params: tuple = field(default=(), init=False)


AnyOp = Operation | _ConstantOp


@dataclass(frozen=True)
class _Step:
    kind: int
    qubits: tuple[int, ...]
    ops: tuple[AnyOp, ...]  # gates applied in order (U1 runs have several)


@dataclass(frozen=True)
class Program:
    """A compiled circuit: flat arrays the kernels execute.

    Attributes:
        num_qubits: register size n; the state has 2**n amplitudes.
        num_params: length P of each parameter vector.
        zbasis: compiled for Z-basis outputs only (tail pass applied).
        init_u1: int32[n]; index into ``u1`` of the matrix whose first column
            is qubit q's initial single-qubit state, or -1 for ``|0>``.
        block_start: int64[nb + 1]; steps of block i are
            ``block_start[i]:block_start[i+1]``.
        block_qubit_start: int64[nb + 1]; block i's qubits (ascending) are
            ``block_qubits[block_qubit_start[i]:block_qubit_start[i+1]]``.
        block_qubits: int32[...]; global qubit indices of every block.
        kind: int8[S]; U1, U2, U2X, U2D, CNOT, SWAP or PERM per step.
        q0, q1: int32[S]; the step's qubits as *local* indices within its
            block (position in the block's ascending qubit list). For 2-qubit
            steps q0 is the matrix's most significant qubit (CNOT: control).
        arg: int32[S]; index into ``u1`` / ``u2`` / the permutation tables
            (U2, U2X and U2D all index ``u2``: a kernel may treat the
            structured kinds as a generic 4x4).
        perm_start: int64[np + 1]; permutation table t is
            ``perm_table[perm_start[t]:perm_start[t+1]]``: ``new[i] = old[table[i]]``
            over local indices.
        perm_table: int64[...].
        run_start: int64[S1 + 1]; fused single-qubit run r multiplies the gate
            matrices ``u1[run_gate[run_start[r]:run_start[r+1]]]`` in order
            (the kernels form the product, first gate rightmost).
        run_gate: int32[...]; indices into the ``u1`` gate matrices.
        u1_groups, u2_groups: how :meth:`bind` fills the gate matrices: one
            :class:`_GateGroup` per gate name, a contiguous slice each; the
            compiler's own constant matrices (folded Cliffords, merged
            constant gates) are the last u1 group, named ``"constant"``,
            with no parameter slots.
    """

    num_qubits: int
    num_params: int
    zbasis: bool
    init_u1: np.ndarray
    block_start: np.ndarray
    block_qubit_start: np.ndarray
    block_qubits: np.ndarray
    kind: np.ndarray
    q0: np.ndarray
    q1: np.ndarray
    arg: np.ndarray
    perm_start: np.ndarray
    perm_table: np.ndarray
    run_start: np.ndarray
    run_gate: np.ndarray
    u1_groups: tuple[_GateGroup, ...]
    u2_groups: tuple[_GateGroup, ...]

    @property
    def single_block(self) -> bool:
        """True when the program is one block over all qubits (kernels work in place)."""
        return len(self.block_start) == 2 and len(self.block_qubits) == self.num_qubits

    @property
    def num_steps(self) -> int:
        """Number of kernel steps (after fusion and permutation merging)."""
        return len(self.kind)

    def bind(self, params: np.ndarray, dtype: np.dtype, threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Gate matrices for a batch of parameter vectors.

        Args:
            params: float64[B, P], already validated.
            dtype: complex64 or complex128, the state's dtype.
            threads: most threads to fill them on.

        Returns:
            ``(u1, u2)``: ``u1[B, G1, 2, 2]`` single-qubit gate matrices (fused
            by the kernels through ``run_start``/``run_gate``) and
            ``u2[B, G2, 4, 4]`` two-qubit matrices (first qubit most significant).
        """
        return _fill(self.u1_groups, params, 2, dtype, threads), _fill(self.u2_groups, params, 4, dtype, threads)


@dataclass(frozen=True)
class _GateGroup:
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


def _groups(ops: Sequence[AnyOp]) -> tuple[list[AnyOp], tuple[_GateGroup, ...], list[int]]:
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
        if name == _ConstantOp.name:
            count = len(members)
            groups.append(_GateGroup(name, start, stop, np.zeros((0, count, 1), np.int64), np.zeros((0, count, 1)),
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
        groups.append(_GateGroup(name, start, stop, index, scale, offset, spec.generator_matrix, matrices))
        start = stop
    return ordered, tuple(groups), position


def _opcode(op: AnyOp) -> int:
    return len(GATES) if isinstance(op, _ConstantOp) else op.gate.opcode


def _fill(groups: Sequence[_GateGroup], params: np.ndarray, dim: int, dtype: np.dtype, threads: int) -> np.ndarray:
    """Matrices of every gate instance: one vectorised matrix call per parametrised gate name."""
    batch = params.shape[0]
    count = groups[-1].stop if groups else 0
    out = np.empty((batch, count, dim, dim), dtype)
    for group in groups:
        if group.matrices is not None:
            out[:, group.start:group.stop] = group.matrices
        elif group.generator is not None:
            fill_rotations(params, group.index[0], group.scale[0], group.offset[0], group.generator,
                           out[:, group.start:group.stop], threads)
        else:
            GATES[group.name].matrix(*group.values(params), out=out[:, group.start:group.stop])
    return out


def _drop_invisible_tail(ops: Sequence[AnyOp], num_qubits: int) -> list[AnyOp]:
    """Remove diagonal gates that no later non-monomial gate can turn into amplitude changes."""
    flags = _tail_flags(ops, num_qubits)
    return [op for op, after in zip(ops, flags, strict=True) if not (after and _structure(op)[0])]


def _tail_flags(ops: Sequence[AnyOp], num_qubits: int) -> list[bool]:
    """Per operation: whether only monomial gates follow it, on its qubits and on every qubit they reach.

    A diagonal factor applied at such a point cannot change any basis-state probability.
    """
    tail = [True] * num_qubits
    flags = [False] * len(ops)
    for k in range(len(ops) - 1, -1, -1):
        flags[k] = all(tail[q] for q in ops[k].qubits)
        if not (flags[k] and _structure(ops[k])[1]):
            for q in ops[k].qubits:
                tail[q] = False
    return flags


def _structure(op: AnyOp) -> tuple[bool, bool]:
    """(diagonal, monomial) of an operation's matrix for every parameter value."""
    if isinstance(op, _ConstantOp):
        off = abs(op.matrix[0, 1]) > _TOL or abs(op.matrix[1, 0]) > _TOL
        on = abs(op.matrix[0, 0]) > _TOL or abs(op.matrix[1, 1]) > _TOL
        return not off, not (off and on)
    return op.gate.diagonal, op.gate.monomial


def _fuse_single_qubit_runs(ops: Sequence[AnyOp], num_qubits: int, zbasis: bool) -> list[_Step]:
    steps: list[_Step] = []
    pending: list[list[AnyOp]] = [[] for _ in range(num_qubits)]
    in_tail = _tail_flags(ops, num_qubits) if zbasis else [False] * len(ops)
    left_free = [False] * num_qubits  # the pending run ends where a diagonal factor is invisible

    def flush(q: int) -> None:
        if pending[q]:
            run = _canonical_run(q, pending[q], zbasis, left_free[q])
            if run:
                steps.append(_Step(U1, (q,), tuple(run)))
            pending[q] = []

    for k, op in enumerate(ops):
        if len(op.qubits) == 1:
            pending[op.qubits[0]].append(op)
            left_free[op.qubits[0]] = in_tail[k]
            continue
        for q in op.qubits:
            flush(q)
        steps.append(_Step(_two_qubit_kind(op), op.qubits, (op,)))
    for q in range(num_qubits):
        flush(q)
    return steps


def _canonical_runs(ops: Sequence[AnyOp], num_qubits: int) -> list[AnyOp]:
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


def _group_permutation_runs(steps: list[_Step]) -> list[_Step]:
    """Reorder steps (respecting per-qubit order) so CNOT/SWAP steps form long runs.

    A layer's single-qubit gates then come before its whole CNOT cascade
    instead of being interleaved with it (see :func:`_alternating_order`).
    """
    phases = _alternating_order([step.qubits for step in steps], [step.kind in (CNOT, SWAP) for step in steps])
    return [steps[k] for _, items in phases for k in items]


# ---------------------------------------------------------------- two-qubit step kinds

#: entries of a pair-mixing 4x4 (index 2*bit(q0)+bit(q1)) that may be non-zero
_PAIR_MIXING = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]], bool)


def _two_qubit_kind(op: Operation) -> int:
    """CNOT, SWAP, or the structured kind the matrix's sparsity pattern allows (U2D, U2X, else U2)."""
    if op.name in ("cnot", "swap"):
        return CNOT if op.name == "cnot" else SWAP
    if any(is_symbolic(v) for v in op.params):
        pattern = _generic_pattern(op.name)
    else:
        pattern = np.abs(_constant_matrix(op)) > 0
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


def _constant_matrix(op: AnyOp) -> np.ndarray:
    """The matrix of an operation without parameter references."""
    if isinstance(op, _ConstantOp):
        return op.matrix
    return _table_matrix(op.name, op.params)


@functools.lru_cache(maxsize=4096)
def _table_matrix(name: str, params: tuple[float, ...]) -> np.ndarray:
    spec = GATES[name]
    matrix = np.array(spec.matrix(*params) if params else spec.matrix())
    matrix.setflags(write=False)
    return matrix


# ---------------------------------------------------------------- Pauli and Clifford helpers

_AXES = "XYZ"
_H = np.array([[1, 1], [1, -1]], np.complex128) / math.sqrt(2)
_S = np.diag([1, 1j])
#: C[P] maps Z to P by conjugation: C Z C^dagger = P
_TO_AXIS = {"Z": np.eye(2, dtype=np.complex128), "X": _H, "Y": _S @ _H}


def _conjugated_axis(matrix: np.ndarray, axis: str) -> tuple[str, float] | None:
    """``(P', sign)`` with ``matrix P matrix^dagger = sign P'`` for the Pauli P = ``axis``; None if no such P'."""
    image = matrix @ PAULI[axis] @ matrix.conj().T
    for letter in _AXES:
        for sign in (1.0, -1.0):
            if np.allclose(image, sign * PAULI[letter], rtol=0, atol=_TOL):  # entrywise: a small angle shows
                return letter, sign
    return None


def _kron(factors: Iterator[np.ndarray]) -> np.ndarray:
    out = np.ones((1, 1), np.complex128)
    for factor in factors:
        out = np.kron(out, factor)
    return out


@functools.cache
def _pauli_strings(k: int) -> tuple[tuple[str, np.ndarray], ...]:
    """The 4**k Pauli strings on k qubits: (letters, first qubit first; matrix)."""
    letters = [""]
    for _ in range(k):
        letters = [s + a for s in letters for a in "IXYZ"]
    return tuple((s, _kron(PAULI[a] for a in s)) for s in letters)


def _pauli_map(matrix: np.ndarray) -> dict[str, str] | None:
    """How a 2x2 or 4x4 unitary maps Pauli strings by conjugation (``G P G^dagger = +-P'``, signs
    dropped), as letters to letters; None if it is not a Clifford gate."""
    return _pauli_map_cached(matrix.shape[0], np.ascontiguousarray(matrix, np.complex128).tobytes())


@functools.lru_cache(maxsize=4096)
def _pauli_map_cached(dim: int, data: bytes) -> dict[str, str] | None:
    matrix = np.frombuffer(data, np.complex128).reshape(dim, dim)
    strings = _pauli_strings(dim.bit_length() - 1)
    mapping = {}
    for letters, pauli in strings:
        image = matrix @ pauli @ matrix.conj().T
        mapped = next((other for other, candidate in strings
                       if np.allclose(np.abs(image), np.abs(candidate), rtol=0, atol=_TOL)
                       and min(np.abs(image - candidate).max(), np.abs(image + candidate).max()) < _TOL), None)
        if mapped is None:
            return None
        mapping[letters] = mapped
    return mapping


def _clifford_table_gate(name: str, params: tuple[float, ...]) -> bool:
    return _pauli_map(_table_matrix(name, params)) is not None


def _is_constant_clifford(op: AnyOp) -> bool:
    if any(is_symbolic(v) for v in op.params):
        return False
    return _pauli_map(_constant_matrix(op)) is not None


# ---------------------------------------------------------------- pass 1: frame normalisation

@functools.cache
def _phase_slots(name: str) -> tuple[tuple[int, int], ...]:
    """``(slot, qubit position)`` of every parameter that is a Z frame of one of the gate's qubits.

    Read off the gate table's matrices: parameter ``slot`` (in turns) is the
    frame of qubit ``position`` when shifting it by ``d`` conjugates the
    matrix by ``RZ(2 pi d)`` on that qubit (GPi, GPi2, both MS phases).
    """
    spec = GATES[name]
    if spec.unit != "turns" or spec.diagonal:
        return ()
    values = list(np.random.default_rng(7).uniform(-1.0, 1.0, spec.num_params))
    base = spec.matrix(*values)
    found = []
    delta = 0.1234
    rz = np.diag([np.exp(-1j * math.pi * delta), np.exp(1j * math.pi * delta)])
    for slot in range(spec.num_params):
        shifted = values.copy()
        shifted[slot] += delta
        for position in range(spec.num_qubits):
            frame = _kron(rz if j == position else PAULI["I"] for j in range(spec.num_qubits))
            if np.allclose(spec.matrix(*shifted), frame @ base @ frame.conj().T, rtol=0, atol=_TOL):
                found.append((slot, position))
                break
    return tuple(found)


Form = dict[int, float]  # a linear form in the parameters: index -> coefficient


def _split(value: ParamValue) -> tuple[float, Form]:
    """A parameter value as (constant, linear form)."""
    if is_symbolic(value):
        return value.offset, dict(value.terms)
    return float(value), {}


def _form_value(form: Form, factor: float) -> ParamValue:
    """``factor * form`` as a Param or ParamSum (0.0 for the empty form)."""
    return ParamSum.combine(*(Param(k, factor * c) for k, c in sorted(form.items())))


def _difference(a: Form, b: Form) -> Form:
    """``a - b``, dropping coefficients that cancel up to rounding."""
    out = {}
    for k in a.keys() | b.keys():
        x, y = a.get(k, 0.0), b.get(k, 0.0)
        if abs(x - y) > 1e-12 * max(abs(x), abs(y)):
            out[k] = x - y
    return out


def _normalise_frames(ops: Sequence[Operation], num_qubits: int) -> list[Operation]:
    """Pass 1: move the parameter-dependent Z frames of Clifford-based native gates into RZ rotations.

    ``frames[q]`` (in turns) is an ``RZ(2 pi F_q)`` that the emitted
    operations still owe qubit q; it is emitted just before the next gate on
    q that does not commute with it, and at the end.
    """
    frames: list[Form] = [{} for _ in range(num_qubits)]
    out: list[Operation] = []

    def rotate(q: int, form: Form) -> None:
        if form:
            out.append(Operation("rz", (q,), (_form_value(form, 2 * math.pi),)))

    for op in ops:
        slots = _phase_slots(op.name)
        split = [_split(v) for v in op.params]
        if slots and _frame_free_clifford(op, slots, split):
            params = list(op.params)
            for slot, position in slots:
                q = op.qubits[position]
                constant, form = split[slot]
                rotate(q, _difference(frames[q], form))  # RZ(2 pi (F - L)), then G(c), after which F = L
                frames[q] = form
                params[slot] = constant
            out.append(Operation(op.name, op.qubits, tuple(params)))
            continue
        if not op.gate.diagonal:  # a diagonal gate commutes with the owed frames
            for q in op.qubits:
                rotate(q, frames[q])
                frames[q] = {}
        out.append(op)
    for q in range(num_qubits):
        rotate(q, frames[q])
    return out


def _frame_free_clifford(op: Operation, slots: tuple[tuple[int, int], ...], split: list[tuple[float, Form]]) -> bool:
    """Whether ``op`` with its frame slots' linear parts removed is a constant Clifford gate."""
    frame_slots = {slot for slot, _ in slots}
    if any(form for k, (_, form) in enumerate(split) if k not in frame_slots):
        return False
    return _clifford_table_gate(op.name, tuple(constant for constant, _ in split))


# ---------------------------------------------------------------- pass 2: Clifford folding

def _alternating_order(qubits: Sequence[tuple[int, ...]], flag: Sequence[bool]) -> list[tuple[bool, list[int]]]:
    """A topological order of operations on ``qubits``, as phases of equal ``flag``.

    Kahn's sort in alternating phases: every ready unflagged item, then every
    ready flagged one, and so on; within a phase in the original order. The
    items of one phase form a convex set: no dependency path leaves it and
    comes back.
    """
    last_on: dict[int, int] = {}
    successors: list[list[int]] = [[] for _ in qubits]
    waiting = [0] * len(qubits)
    for k, qs in enumerate(qubits):
        for p in {last_on[q] for q in qs if q in last_on}:
            successors[p].append(k)
            waiting[k] += 1
        for q in qs:
            last_on[q] = k
    ready: dict[bool, list[int]] = {False: [], True: []}
    for k in range(len(qubits)):
        if waiting[k] == 0:
            ready[bool(flag[k])].append(k)
    phases: list[tuple[bool, list[int]]] = []
    phase = False
    emitted = 0
    while emitted < len(qubits):
        heap = ready[phase]
        heapq.heapify(heap)
        items = []
        while heap:
            k = heapq.heappop(heap)
            items.append(k)
            for s in successors[k]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(ready[bool(flag[s])], s)
        if items:
            phases.append((phase, items))
            emitted += len(items)
        phase = not phase
    return phases


def _structured(op: AnyOp) -> bool:
    """A two-qubit gate other than CNOT and SWAP: what Clifford folding is for."""
    return len(op.qubits) == 2 and op.name not in ("cnot", "swap")


def _fold_clifford_regions(ops: Sequence[AnyOp]) -> list[AnyOp]:
    """Pass 2: rewrite constant Clifford regions as one-qubit gates around a CNOT network.

    When no region is rewritten, the result is ``ops`` in its original order.
    """
    foldable = [_is_constant_clifford(op) for op in ops]
    if not any(f and _structured(op) for f, op in zip(foldable, ops, strict=True)):
        return list(ops)
    out: list[AnyOp] = []
    folded = False
    for flagged, items in _alternating_order([op.qubits for op in ops], foldable):
        if not flagged:
            out.extend(ops[k] for k in items)
            continue
        for region in _connected(ops, items):
            region_ops = [ops[k] for k in region]
            replacement = _fold_region(region_ops) if any(_structured(op) for op in region_ops) else None
            out.extend(region_ops if replacement is None else replacement)
            folded |= replacement is not None
    return out if folded else list(ops)


def _connected(ops: Sequence[AnyOp], items: list[int]) -> list[list[int]]:
    """``items`` split into groups that share no qubit, each group in the given order."""
    parent: dict[int, int] = {}

    def find(q: int) -> int:
        while parent.setdefault(q, q) != q:
            q = parent[q]
        return q

    for k in items:
        first = find(ops[k].qubits[0])
        for q in ops[k].qubits[1:]:
            parent[find(q)] = first
    groups: dict[int, list[int]] = {}
    for k in items:
        groups.setdefault(find(ops[k].qubits[0]), []).append(k)
    return list(groups.values())


def _apply_local(states: np.ndarray, matrix: np.ndarray, positions: Sequence[int]) -> np.ndarray:
    """``matrix`` (one or two qubits, first position most significant) applied to every row of ``states[R, 2**m]``.

    Works on strided views split at the qubits' bits (no BLAS: these are many
    small products, which a threaded BLAS makes slow on a busy machine).
    """
    rows, size = states.shape
    hi, lo = max(positions), min(positions)
    if len(positions) == 1:
        view = states.reshape(rows, size >> (hi + 1), 2, 1 << hi)
        parts = [view[:, :, 0], view[:, :, 1]]
    else:
        view = states.reshape(rows, size >> (hi + 1), 2, 1 << (hi - lo - 1), 2, 1 << lo)
        first_high = positions[0] == hi  # the matrix index is 2 * bit(first) + bit(second)
        parts = [view[:, :, a, :, b] if first_high else view[:, :, b, :, a] for a in (0, 1) for b in (0, 1)]
    out = np.empty_like(view)
    targets = [out[:, :, 0], out[:, :, 1]] if len(positions) == 1 else [
        out[:, :, a, :, b] if first_high else out[:, :, b, :, a] for a in (0, 1) for b in (0, 1)]
    for r, target in enumerate(targets):
        target[...] = sum(matrix[r, c] * part for c, part in enumerate(parts) if matrix[r, c] != 0)
    return out.reshape(rows, size)


def _region_unitary(ops: Sequence[AnyOp], local: dict[int, int]) -> np.ndarray:
    """The dense unitary ``U[y, x]`` of constant ``ops``; bit j of x and y is qubit ``q`` with ``local[q] = j``."""
    states = np.eye(1 << len(local), dtype=np.complex128)  # row x: U e_x
    for op in ops:
        states = _apply_local(states, _constant_matrix(op), [local[q] for q in op.qubits])
    return states.T


def _pauli_images(ops: Sequence[AnyOp], local: dict[int, int]) -> list[dict[str, str]]:
    """``U P_j U^dagger`` of constant Clifford ``ops`` for every local qubit j and P in X, Y, Z, as letters
    (local qubit 0 first), propagated gate by gate through each gate's :func:`_pauli_map`."""
    maps = [(_pauli_map(_constant_matrix(op)), [local[q] for q in op.qubits]) for op in ops]
    images = []
    for j in range(len(local)):
        image = {}
        for axis in "ZXY":
            letters = ["I"] * len(local)
            letters[j] = axis
            for mapping, positions in maps:
                key = "".join(letters[p] for p in positions)
                if key.strip("I"):
                    for p, letter in zip(positions, mapping[key], strict=True):
                        letters[p] = letter
            image[axis] = "".join(letters)
        images.append(image)
    return images


def _letter_choices(images: list[dict[str, str]], limit: int) -> list[tuple[str, str]]:
    """Local Clifford frames in which the region's unitary U is monomial, up to ``limit`` of them.

    A choice is ``(inputs, outputs)``: a letter ``p_j`` per input qubit and
    ``s_k`` per output qubit such that every image ``U p_j U^dagger`` has, on
    every qubit k, I or ``s_k``. With ``B_j`` mapping ``p_j`` to Z and ``A_k``
    mapping Z to ``s_k``, ``A^dagger U B^dagger`` then maps each Z_j to a
    Z string, so it is monomial. Each input first tries the letters whose
    image has the fewest X and Y, so that choices with ``s_k = Z`` (no
    one-qubit gate after the region) come first.
    """
    m = len(images)
    outputs: list[str | None] = [None] * m
    inputs = [""] * m
    found: list[tuple[str, str]] = []

    def search(j: int) -> None:
        if len(found) >= limit:
            return
        if j == m:
            found.append(("".join(inputs), "".join(s or "Z" for s in outputs)))
            return
        for axis in sorted("ZXY", key=lambda a: sum(letter in "XY" for letter in images[j][a])):
            assigned = []
            for k, letter in enumerate(images[j][axis]):
                if letter == "I" or outputs[k] == letter:
                    continue
                if outputs[k] is not None:
                    break
                outputs[k] = letter
                assigned.append(k)
            else:
                inputs[j] = axis
                search(j + 1)
            for k in assigned:
                outputs[k] = None

    search(0)
    return found


def _fold_region(ops: list[AnyOp]) -> list[AnyOp] | None:
    """``ops`` (a convex region of constant Cliffords) as one-qubit gates around CNOTs, or None.

    In local frames from :func:`_letter_choices`, ``M = A^dagger U B^dagger``
    is monomial: bit flips, phases, ``P_L |x> = |L x>`` for an invertible
    GF(2) matrix L (CNOTs by Gaussian elimination), phases (see
    :func:`_monomial_form`). U is then: one-qubit gates (``B``, the flips and
    phases), the CNOTs, one-qubit gates (phases, ``A``). Of the frames
    that work, the one with the fewest non-diagonal gates after the CNOTs
    wins (a diagonal gate at the end of a Z-basis program is dropped; ``B``
    merges into the gates before), then the fewest one-qubit gates. The
    result is checked against the region's unitary before it is used.
    """
    qubits = sorted({q for op in ops for q in op.qubits})
    if len(qubits) > _MAX_FOLD_QUBITS:
        return None
    local = {q: j for j, q in enumerate(qubits)}
    images = _pauli_images(ops, local)
    unitary = _region_unitary(ops, local)
    best: tuple[tuple[int, int], list[AnyOp]] | None = None
    found = 0
    for inputs, outputs in _letter_choices(images, _MAX_FOLD_ATTEMPTS):
        replacement = _monomial_form(unitary, inputs, outputs, qubits)
        if replacement is None:
            continue
        found += 1
        cnots = [k for k, op in enumerate(replacement) if not isinstance(op, _ConstantOp)]
        after = replacement[cnots[-1] + 1:] if cnots else []
        cost = (sum(not _structure(op)[0] for op in after), len(replacement) - len(cnots))
        if best is None or cost < best[0]:
            best = (cost, replacement)
        if cost[0] == 0 or found == _MAX_FOLD_FORMS:
            break
    if best is None or not np.allclose(_region_unitary(best[1], local), unitary, rtol=0, atol=_TOL):
        return None
    return best[1]


def _monomial_form(unitary: np.ndarray, inputs: str, outputs: str, qubits: list[int]) -> list[AnyOp] | None:
    """The folded operations for one choice of local frames, or None.

    ``M = A^dagger U B^dagger`` must be monomial with an affine permutation,
    ``M |x> = phi(x') |L x'>`` for ``x' = x ^ c``, and Clifford phases
    ``phi(x') = g i^(beta . x') i^(a . L x')``: bit flips ``X^c`` and phases
    ``i^beta_j`` join the one-qubit gates before the CNOTs, phases ``i^a_k``
    those after them. The output phases carry the CZ-like cross terms of
    ``phi`` (``a . L x'`` sums parities); they are only used where needed,
    so that a region at the end of a Z-basis program leaves no gate after
    its CNOTs that is not diagonal.
    """
    m = len(qubits)
    size = 1 << m
    index = np.arange(size)
    # M = (x)A_k^dagger U (x)B_j^dagger, B_j^dagger = C[p_j] and A_k = C[s_k]: a right factor acts on
    # every row of U (as its transpose), a left factor on every column
    product = unitary
    for j, axis in enumerate(inputs):
        product = _apply_local(product, _TO_AXIS[axis].T, [j])
    product = product.T
    for k, axis in enumerate(outputs):
        product = _apply_local(product, _TO_AXIS[axis].conj().T, [k])
    monomial = product.T  # M[y, x]
    image = np.argmax(np.abs(monomial), axis=0)  # y = pi(x)
    values = monomial[image, index]
    if not np.allclose(np.abs(values), 1, rtol=0, atol=_TOL) or len(set(image.tolist())) != size:
        return None
    flips = int(np.flatnonzero(image == 0)[0])  # c, with L c = pi(0)
    columns = [int(image[(1 << k) ^ flips]) for k in range(m)]  # L e_k = pi(e_k ^ c)
    linear = np.zeros(size, np.int64)  # L x'
    for k in range(m):
        linear ^= ((index >> k) & 1) * columns[k]
    if not (linear[index ^ flips] == image).all():
        return None
    phase = values[index ^ flips]  # phi(x')
    ratio = phase / phase[0]
    quarter = np.round(np.angle(ratio) / (np.pi / 2)).astype(np.int64) % 4  # phi = g i^Q
    if not np.allclose(ratio, 1j**quarter, rtol=0, atol=_TOL):
        return None
    # Q's cross terms Q(e_i + e_j) - Q(e_i) - Q(e_j) (0 or 2 mod 4) must come from the output parities:
    # a . L x' contributes 2 * parity(a & L_i & L_j) to pair (i, j)
    candidates = np.arange(size)
    fits = np.ones(size, bool)
    for i in range(m):
        for j in range(i + 1, m):
            cross = (quarter[(1 << i) | (1 << j)] - quarter[1 << i] - quarter[1 << j]) % 4
            if cross % 2:
                return None
            fits &= (np.bitwise_count(candidates & columns[i] & columns[j]) & 1) == cross // 2
    if not fits.any():
        return None
    outputs_phase = int(min(candidates[fits], key=lambda a: (bin(int(a)).count("1"), a)))
    rest = (quarter - np.bitwise_count(linear & outputs_phase).astype(np.int64)) % 4
    inputs_phase = [int(rest[1 << j]) for j in range(m)]
    if not (sum(((index >> j) & 1) * inputs_phase[j] for j in range(m)) % 4 == rest).all():
        return None
    flip = np.array([[0, 1], [1, 0]], np.complex128)
    before = [(qubits[j], np.diag([1, 1j**inputs_phase[j]]) @ (flip if (flips >> j) & 1 else PAULI["I"])
               @ _TO_AXIS[axis].conj().T) for j, axis in enumerate(inputs)]
    after = [(qubits[k], _TO_AXIS[axis] @ np.diag([1, 1j**((outputs_phase >> k) & 1)]))
             for k, axis in enumerate(outputs)]
    before = [(q, b) for q, b in before if not _is_identity(b)]
    after = [(q, a) for q, a in after if not _is_identity(a)]
    if abs(phase[0] - 1) > _TOL:  # the global phase g joins a one-qubit gate, a new one if there is none
        side = after if after or not before else before
        q, matrix = side[0] if side else (qubits[0], PAULI["I"])
        side[:1] = [(q, phase[0] * matrix)]
    out: list[AnyOp] = [_ConstantOp((q,), b) for q, b in before]
    out += [Operation("cnot", (qubits[c], qubits[t]), ()) for c, t in _cnot_network(columns)]
    out += [_ConstantOp((q,), a) for q, a in after]
    return out


def _cnot_network(columns: list[int]) -> list[tuple[int, int]]:
    """CNOTs ``(control, target)``, in time order, whose product maps x to L x.

    ``columns[k]`` is column k of the invertible GF(2) matrix L as a bit mask.
    Gaussian elimination by row additions ``row_t += row_c`` (each one a
    CNOT(c, t) multiplied on the left) reduces L to the identity; L is then
    their product in reverse, so the last addition is applied first.
    """
    m = len(columns)
    rows = [sum(((columns[k] >> r) & 1) << k for k in range(m)) for r in range(m)]
    additions = []
    for col in range(m):
        if not (rows[col] >> col) & 1:
            pivot = next(r for r in range(col + 1, m) if (rows[r] >> col) & 1)
            rows[col] ^= rows[pivot]
            additions.append((pivot, col))
        for r in range(m):
            if r != col and (rows[r] >> col) & 1:
                rows[r] ^= rows[col]
                additions.append((col, r))
    return additions[::-1]


def _is_identity(matrix: np.ndarray, up_to_phase: bool = False) -> bool:
    """Whether a 2x2 matrix is the identity (or, with ``up_to_phase``, a multiple of it)."""
    if up_to_phase:
        return abs(matrix[0, 1]) < _TOL and abs(matrix[1, 0]) < _TOL and abs(matrix[0, 0] - matrix[1, 1]) < _TOL
    return bool(np.allclose(matrix, PAULI["I"], rtol=0, atol=1e-14))


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
        if constant is not None and not _is_identity(constant, up_to_phase=zbasis):
            out.append(source or _ConstantOp((q,), constant))
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
            absorb(_constant_matrix(op), op)
        elif op.name in ("rx", "ry", "rz"):
            axis, angle = op.gate.generator, op.params[0]
            if rotations and rotations[-1][0] == axis:
                angle = ParamSum.combine(rotations.pop()[1], angle)
            if is_symbolic(angle):
                rotations.append([axis, angle])
            else:  # the angles cancelled up to a constant
                absorb(_table_matrix("r" + axis.lower(), (angle,)))
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
        out.append(_ConstantOp((q,), last))
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
    if np.abs(start.imag).max() < _TOL and all(axis == "Y" for axis, _ in rotations):
        return constant, rotations, None  # real already (RY is real)
    rng = np.random.default_rng(3)
    samples = []
    for _ in range(3):
        product = start
        for axis, _ in rotations:
            half = rng.uniform(-np.pi, np.pi) / 2
            product = (math.cos(half) * PAULI["I"] - 1j * math.sin(half) * PAULI[axis]) @ product
        samples.append(product)
    if all(np.abs(sample.imag).max() < _TOL for sample in samples):
        return constant, rotations, None
    first = np.abs(samples[0])
    if left_free:
        pivots = np.array([samples[0][r, np.argmax(first[r])] for r in range(2)])
    else:
        pivots = np.array([samples[0].flat[np.argmax(first)]] * 2)
    pivots = np.conj(pivots) / np.abs(pivots)
    phase = np.diag(np.where(pivots.real < -_TOL, -pivots, pivots))  # a sign is free: stay near the identity
    if not all(np.abs((phase @ sample).imag).max() < _TOL for sample in samples):
        return constant, rotations, None
    images = [_conjugated_axis(phase, axis) for axis, _ in rotations]
    if None in images:
        return constant, rotations, phase
    rotations = [[letter, angle if sign > 0 else -angle] for (letter, sign), (_, angle) in zip(images, rotations,
                                                                                              strict=True)]
    return phase @ start, rotations, None


def _split_initial_product(steps: list[_Step], num_qubits: int) -> tuple[list[_Step | None], list[_Step]]:
    """Separate the U1 steps that act first on their qubit (they build a product state)."""
    initial: list[_Step | None] = [None] * num_qubits
    touched = [False] * num_qubits
    rest = []
    for step in steps:
        if step.kind == U1 and not touched[step.qubits[0]]:
            initial[step.qubits[0]] = step
        else:
            rest.append(step)
        for q in step.qubits:
            touched[q] = True
    return initial, rest


def _partition_blocks(steps: list[_Step], num_qubits: int, block_qubits: int) -> list[tuple[list[int], list[_Step]]]:
    """Greedy dependency-respecting grouping of steps into blocks of <= block_qubits qubits."""
    if num_qubits <= block_qubits:
        return [(list(range(num_qubits)), steps)]
    # leave room for a two-qubit gate on two qubits outside the forced ones
    forced = set(range(min(_LOW_QUBITS_IN_BLOCK, num_qubits, block_qubits - 2)))
    blocks = []
    remaining = steps
    while remaining:
        active = set(forced)
        blocked: set[int] = set()
        taken, rest = [], []
        for step in remaining:
            qs = set(step.qubits)
            if not (qs & blocked) and len(active | qs) <= block_qubits:
                active |= qs
                taken.append(step)
            else:
                blocked |= qs
                rest.append(step)
        blocks.append((sorted(active), taken))
        remaining = rest
    return blocks


def _permutation_table(steps: Sequence[_Step], local: dict[int, int], size: int) -> np.ndarray:
    """``src`` with ``new[i] = old[src[i]]`` for a run of CNOT/SWAP steps on local indices."""
    src = np.arange(size, dtype=np.int64)
    for step in reversed(steps):  # each gate is its own inverse: src = f1(f2(...fm(i)))
        a, b = (local[q] for q in step.qubits)
        if step.kind == CNOT:
            src ^= ((src >> a) & 1) << b
        else:
            diff = ((src >> a) ^ (src >> b)) & 1
            src ^= (diff << a) | (diff << b)
    return src


def _build(circuit: Circuit, zbasis: bool, block_qubits: int, from_zero: bool) -> Program:
    n = circuit.num_qubits
    original: list[AnyOp] = list(circuit)
    tail = (lambda ops: _drop_invisible_tail(ops, n)) if zbasis else list
    framed = _normalise_frames(original, n)
    fused = [_fuse_single_qubit_runs(tail(_fold_clifford_regions(tail(_canonical_runs(ops, n)))), n, zbasis)
             for ops in ([framed] if framed == original else [framed, original])]
    # explicit frames can cost a step where they land between two-qubit gates: keep them where they pay
    steps = _group_permutation_runs(min(fused, key=len))
    initial: list[_Step | None] = [None] * n
    if from_zero:  # the first run on each qubit acts on |0>: together they write a product state
        initial, steps = _split_initial_product(steps, n)

    u1_runs: list[tuple[AnyOp, ...]] = []
    u2_ops: list[Operation] = []
    init_u1 = np.full(n, -1, np.int32)
    for q, step in enumerate(initial):
        if step is not None:
            init_u1[q] = len(u1_runs)
            u1_runs.append(step.ops)

    kind, q0, q1, arg = [], [], [], []
    block_start, block_qubit_start, all_block_qubits = [0], [0], []
    perm_tables: list[np.ndarray] = []
    for qubits, block_steps in _partition_blocks(steps, n, block_qubits):
        local = {q: k for k, q in enumerate(qubits)}
        k = 0
        while k < len(block_steps):
            step = block_steps[k]
            run_end = k
            while run_end < len(block_steps) and block_steps[run_end].kind in (CNOT, SWAP):
                run_end += 1
            if run_end - k >= _MIN_PERM_RUN:
                kind.append(PERM)
                q0.append(0)
                q1.append(0)
                arg.append(len(perm_tables))
                perm_tables.append(_permutation_table(block_steps[k:run_end], local, 1 << len(qubits)))
                k = run_end
                continue
            kind.append(step.kind)
            q0.append(local[step.qubits[0]])
            q1.append(local[step.qubits[1]] if len(step.qubits) > 1 else 0)
            if step.kind == U1:
                arg.append(len(u1_runs))
                u1_runs.append(step.ops)
            elif step.kind in _MATRIX_2Q:
                arg.append(len(u2_ops))
                u2_ops.append(step.ops[0])
            else:
                arg.append(0)
            k += 1
        block_start.append(len(kind))
        all_block_qubits.extend(qubits)
        block_qubit_start.append(len(all_block_qubits))

    u1_flat = [op for run in u1_runs for op in run]
    _, u1_groups, u1_position = _groups(u1_flat)
    _, u2_groups, u2_position = _groups(u2_ops)
    arg = [u2_position[a] if k in _MATRIX_2Q else a for k, a in zip(kind, arg, strict=False)]
    run_start = np.concatenate([[0], np.cumsum([len(run) for run in u1_runs])]).astype(np.int64)
    perm_start = np.concatenate([[0], np.cumsum([len(t) for t in perm_tables], dtype=np.int64)]).astype(np.int64)
    perm_table = np.concatenate(perm_tables) if perm_tables else np.zeros(0, np.int64)
    return Program(
        num_qubits=n,
        num_params=circuit.num_params,
        zbasis=zbasis,
        init_u1=init_u1,
        block_start=np.array(block_start, np.int64),
        block_qubit_start=np.array(block_qubit_start, np.int64),
        block_qubits=np.array(all_block_qubits, np.int32),
        kind=np.array(kind, np.int8),
        q0=np.array(q0, np.int32),
        q1=np.array(q1, np.int32),
        arg=np.array(arg, np.int32),
        perm_start=perm_start,
        perm_table=perm_table.astype(np.int64),
        run_start=run_start,
        run_gate=np.array(u1_position, np.int32),
        u1_groups=u1_groups,
        u2_groups=u2_groups,
    )


_CACHE: OrderedDict[tuple, Program] = OrderedDict()
_CACHE_SIZE = 256


def compile_circuit(circuit: Circuit, *, zbasis: bool = False, block_qubits: int = DEFAULT_BLOCK_QUBITS,
                    from_zero: bool = True) -> Program:
    """Compile ``circuit`` (cached per circuit structure and options).

    Args:
        circuit: the circuit to compile.
        zbasis: drop gates invisible to Z-basis outputs (see module docstring);
            the result is then only valid for probabilities, samples and
            Z-string expectations.
        block_qubits: largest number of qubits one gathered block may span.
        from_zero: the circuit starts from ``|0...0>`` (product-state
            initialisation applies); False for a program run on given initial states.

    Returns:
        The :class:`Program`; the same object for the same structure, so a
        batch of any size compiles once.
    """
    options = ("program", zbasis, block_qubits, from_zero)
    program = circuit.memo.get(options)
    if program is not None:
        return program
    key = (circuit.structure_key(), zbasis, block_qubits, from_zero)
    program = _CACHE.get(key)
    if program is None:
        program = _build(circuit, zbasis, block_qubits, from_zero)
        _CACHE[key] = program
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    circuit.memo[options] = program
    return program
