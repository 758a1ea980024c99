"""The compiler's driver: the passes in order (:func:`_build`) and the cache of compiled programs."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..circuit import Circuit, Operation
from .binding import AnyOp, groups
from .blocking import group_permutation_runs, partition_blocks, permutation_table, split_initial_product
from .clifford import fold_clifford_regions
from .frames import normalise_frames
from .fusion import canonical_runs, drop_invisible_tail, fuse_single_qubit_runs
from .program import CNOT, DEFAULT_BLOCK_QUBITS, PERM, SWAP, U1, U2, U2D, U2X, Program, Step

#: two-qubit kinds whose ``arg`` indexes the bound ``u2`` matrices
_MATRIX_2Q = (U2, U2X, U2D)

#: a CNOT/SWAP run at least this long becomes one permutation step
_MIN_PERM_RUN = 3


def _build(circuit: Circuit, zbasis: bool, block_qubits: int, from_zero: bool) -> Program:
    n = circuit.num_qubits
    original: list[AnyOp] = list(circuit)
    tail = (lambda ops: drop_invisible_tail(ops, n)) if zbasis else list
    framed = normalise_frames(original, n)
    fused = [fuse_single_qubit_runs(tail(fold_clifford_regions(tail(canonical_runs(ops, n)))), n, zbasis)
             for ops in ([framed] if framed == original else [framed, original])]
    # explicit frames can cost a step where they land between two-qubit gates: keep them where they pay
    steps = group_permutation_runs(min(fused, key=len))
    initial: list[Step | None] = [None] * n
    if from_zero:  # the first run on each qubit acts on |0>: together they write a product state
        initial, steps = split_initial_product(steps, n)

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
    for qubits, block_steps in partition_blocks(steps, n, block_qubits):
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
                perm_tables.append(permutation_table(block_steps[k:run_end], local, 1 << len(qubits)))
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
    _, u1_groups, u1_position = groups(u1_flat)
    _, u2_groups, u2_position = groups(u2_ops)
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
        zbasis: drop gates invisible to Z-basis outputs (see
            :mod:`qsim_core.compiler.program`); the result is then only
            valid for probabilities, samples and Z-string expectations.
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
