"""Compile a :class:`~qsim_core.Circuit` into a :class:`Program` of flat arrays.

The compiled form is what every compiled backend executes; it is independent
of the backend. Compilation runs these passes, in order:

1. **Tail pass** (only for Z-basis outputs: probabilities, samples, Z-string
   expectations). Diagonal gates that are followed on all their qubits only
   by diagonal or monomial gates (CNOT, SWAP, X, ...) cannot change any
   basis-state probability, so they are dropped.
2. **Single-qubit fusion**: every maximal run of 1-qubit gates on one qubit
   (uninterrupted by a multi-qubit gate on that qubit) becomes one ``U1``
   step whose 2x2 matrix is the product of the run, formed per parameter set
   at bind time.
3. **Product initialisation**: a ``U1`` that is the first step on its qubit
   acts on ``|0>``, so the state after all of them is a product state; the
   kernels write it directly (one pass) instead of applying the gates.
4. **Blocking**: steps are grouped into blocks acting on at most
   ``block_qubits`` qubits. For ``num_qubits <= block_qubits`` there is one
   block and kernels work on the state in place; for larger circuits each
   block is one pass over the state: a cache-sized slice is gathered, all the
   block's steps are applied to it, and it is scattered back.
5. **Permutation runs**: within a block, a run of CNOT/SWAP steps becomes one
   ``PERM`` step, a basis permutation applied with a single gather (the seed
   circuit's 28-CNOT cascade costs one pass over the state, not 28).

:meth:`Program.bind` turns a batch of parameter vectors into the per-step
matrices (``params[B, P]`` to ``u1[B, S1, 2, 2]`` and ``u2[B, S2, 4, 4]``);
rebinding never recompiles. Compiled programs are cached per circuit
structure (see :func:`compile_circuit`).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bind_kernels import fill_rotations
from .circuit import Circuit, Operation, is_symbolic
from .gates import GATES

#: step kinds understood by the kernels
U1, U2, CNOT, SWAP, PERM = 0, 1, 2, 3, 4

#: how many low qubits every gathered block includes, so that each gathered
#: run of amplitudes fills whole cache lines
_LOW_QUBITS_IN_BLOCK = 3
#: a CNOT/SWAP run at least this long becomes one permutation step
_MIN_PERM_RUN = 3

DEFAULT_BLOCK_QUBITS = 14


@dataclass(frozen=True)
class _Step:
    kind: int
    qubits: tuple[int, ...]
    ops: tuple[Operation, ...]  # gates applied in order (U1 runs have several)


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
        kind: int8[S]; U1, U2, CNOT, SWAP or PERM per step.
        q0, q1: int32[S]; the step's qubits as *local* indices within its
            block (position in the block's ascending qubit list). For 2-qubit
            steps q0 is the matrix's most significant qubit (CNOT: control).
        arg: int32[S]; index into ``u1`` / ``u2`` / the permutation tables.
        perm_start: int64[np + 1]; permutation table t is
            ``perm_table[perm_start[t]:perm_start[t+1]]``: ``new[i] = old[table[i]]``
            over local indices.
        perm_table: int64[...].
        run_start: int64[S1 + 1]; fused single-qubit run r multiplies the gate
            matrices ``u1[run_gate[run_start[r]:run_start[r+1]]]`` in order
            (the kernels form the product, first gate rightmost).
        run_gate: int32[...]; indices into the ``u1`` gate matrices.
        u1_groups, u2_groups: how :meth:`bind` fills the gate matrices: one
            :class:`_GateGroup` per gate name, a contiguous slice each.
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

    def bind(self, params: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Gate matrices for a batch of parameter vectors.

        Args:
            params: float64[B, P], already validated.
            dtype: complex64 or complex128, the state's dtype.

        Returns:
            ``(u1, u2)``: ``u1[B, G1, 2, 2]`` single-qubit gate matrices (fused
            by the kernels through ``run_start``/``run_gate``) and
            ``u2[B, G2, 4, 4]`` two-qubit matrices (first qubit most significant).
        """
        return _fill(self.u1_groups, params, 2, dtype), _fill(self.u2_groups, params, 4, dtype)


@dataclass(frozen=True)
class _GateGroup:
    """All instances of one gate in a program: a contiguous slice of the matrix array.

    A parameter slot's value is ``offset + sum_t scale[.., t] * params[index[.., t]]``
    (T terms; constants have all scales 0, a :class:`Param` one term, a
    :class:`ParamSum` several).
    """

    name: str
    start: int
    stop: int
    index: np.ndarray  # int64[num_params, count, T]: parameter columns (0 where unused)
    scale: np.ndarray  # float64[num_params, count, T]: 0 for constants and padding
    offset: np.ndarray  # float64[num_params, count]: the constant, or the reference's offset
    generator: np.ndarray | None  # rotation gates: the Pauli matrix P of exp(-i a P / 2)

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


def _groups(ops: Sequence[Operation]) -> tuple[list[Operation], tuple[_GateGroup, ...], list[int]]:
    """Order ``ops`` by gate name; returns (ordered ops, groups, new position of each op)."""
    order = sorted(range(len(ops)), key=lambda k: (ops[k].gate.opcode, k))
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
        if spec.generator:  # fold the unit into the angle: a = radians_per_unit * value
            scale, offset = scale * spec.radians_per_unit, offset * spec.radians_per_unit
        groups.append(_GateGroup(name, start, stop, index, scale, offset, spec.generator_matrix))
        start = stop
    return ordered, tuple(groups), position


def _fill(groups: Sequence[_GateGroup], params: np.ndarray, dim: int, dtype: np.dtype) -> np.ndarray:
    """Matrices of every gate instance: one vectorised matrix call per gate name."""
    batch = params.shape[0]
    count = groups[-1].stop if groups else 0
    out = np.empty((batch, count, dim, dim), dtype)
    for group in groups:
        spec = GATES[group.name]
        if spec.num_params == 0:
            out[:, group.start:group.stop] = spec.matrix()
        elif group.generator is not None:
            fill_rotations(params, group.index[0], group.scale[0], group.offset[0], group.generator,
                           out[:, group.start:group.stop])
        else:
            spec.matrix(*group.values(params), out=out[:, group.start:group.stop])
    return out


def _drop_invisible_tail(ops: Sequence[Operation], num_qubits: int) -> list[Operation]:
    """Remove diagonal gates that no later non-monomial gate can turn into amplitude changes."""
    tail = [True] * num_qubits
    keep = [True] * len(ops)
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        spec = op.gate
        in_tail = spec.monomial and all(tail[q] for q in op.qubits)
        if in_tail and spec.diagonal:
            keep[k] = False
        if not in_tail:
            for q in op.qubits:
                tail[q] = False
    return [op for op, kept in zip(ops, keep, strict=False) if kept]


def _fuse_single_qubit_runs(ops: Sequence[Operation], num_qubits: int) -> list[_Step]:
    steps: list[_Step] = []
    pending: list[list[Operation]] = [[] for _ in range(num_qubits)]

    def flush(q: int) -> None:
        if pending[q]:
            steps.append(_Step(U1, (q,), tuple(pending[q])))
            pending[q] = []

    for op in ops:
        if len(op.qubits) == 1:
            pending[op.qubits[0]].append(op)
            continue
        for q in op.qubits:
            flush(q)
        kind = {"cnot": CNOT, "swap": SWAP}.get(op.name, U2)
        steps.append(_Step(kind, op.qubits, (op,)))
    for q in range(num_qubits):
        flush(q)
    return steps


def _group_permutation_runs(steps: list[_Step]) -> list[_Step]:
    """Reorder steps (respecting per-qubit order) so CNOT/SWAP steps form long runs.

    Kahn's topological sort in alternating phases: emit every ready non-CNOT
    step, then every ready CNOT/SWAP step, and so on; within a phase, in the
    original order. A layer's single-qubit gates then come before its whole
    CNOT cascade instead of being interleaved with it.
    """
    last_on: dict[int, int] = {}
    successors: list[list[int]] = [[] for _ in steps]
    waiting = [0] * len(steps)
    for k, step in enumerate(steps):
        for p in {last_on[q] for q in step.qubits if q in last_on}:
            successors[p].append(k)
            waiting[k] += 1
        for q in step.qubits:
            last_on[q] = k
    ready = {False: [k for k in range(len(steps)) if waiting[k] == 0 and steps[k].kind not in (CNOT, SWAP)],
             True: [k for k in range(len(steps)) if waiting[k] == 0 and steps[k].kind in (CNOT, SWAP)]}
    for heap in ready.values():
        heapq.heapify(heap)
    out: list[_Step] = []
    permutation_phase = False
    while len(out) < len(steps):
        heap = ready[permutation_phase]
        while heap:
            k = heapq.heappop(heap)
            out.append(steps[k])
            for s in successors[k]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(ready[steps[s].kind in (CNOT, SWAP)], s)
        permutation_phase = not permutation_phase
    return out


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


def _build(circuit: Circuit, zbasis: bool, block_qubits: int) -> Program:
    n = circuit.num_qubits
    ops = list(circuit)
    if zbasis:
        ops = _drop_invisible_tail(ops, n)
    initial, steps = _split_initial_product(_group_permutation_runs(_fuse_single_qubit_runs(ops, n)), n)

    u1_runs: list[tuple[Operation, ...]] = []
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
            elif step.kind == U2:
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
    arg = [u2_position[a] if k == U2 else a for k, a in zip(kind, arg, strict=False)]
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


def compile_circuit(circuit: Circuit, *, zbasis: bool = False, block_qubits: int = DEFAULT_BLOCK_QUBITS) -> Program:
    """Compile ``circuit`` (cached per circuit structure and options).

    Args:
        circuit: the circuit to compile.
        zbasis: drop gates invisible to Z-basis outputs (see module docstring);
            the result is then only valid for probabilities, samples and
            Z-string expectations.
        block_qubits: largest number of qubits one gathered block may span.

    Returns:
        The :class:`Program`; the same object for the same structure, so a
        batch of any size compiles once.
    """
    options = ("program", zbasis, block_qubits)
    program = circuit.memo.get(options)
    if program is not None:
        return program
    key = (circuit.structure_key(), zbasis, block_qubits)
    program = _CACHE.get(key)
    if program is None:
        program = _build(circuit, zbasis, block_qubits)
        _CACHE[key] = program
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    circuit.memo[options] = program
    return program
