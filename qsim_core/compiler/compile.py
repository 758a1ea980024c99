"""The compiler's driver: the passes in order (:func:`_build`) and the cache of compiled programs.

The cache (:data:`PROGRAM_CACHE`, a :class:`ProgramCache`) keeps the most
recently used programs up to a total size in bytes (the ``nbytes`` of their
numpy arrays, :func:`program_nbytes`), 256 MiB by default, and may be used
from many threads at once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict

import numpy as np

from ..circuit import Circuit, Operation
from .binding import AnyOp, groups
from .blocking import (
    control_masks,
    group_permutation_runs,
    partition_blocks,
    permutation_table,
    split_initial_product,
)
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
    perm_controls: list[list[tuple[int, int]]] = []
    for qubits, block_steps in partition_blocks(steps, n, block_qubits):
        local = {q: k for k, q in enumerate(qubits)}
        k = 0
        while k < len(block_steps):
            step = block_steps[k]
            run_end = k
            while run_end < len(block_steps) and block_steps[run_end].kind in (CNOT, SWAP):
                run_end += 1
            controls = control_masks(block_steps[k:run_end], local)
            if run_end - k >= _MIN_PERM_RUN or controls:  # only a permutation step takes external controls
                kind.append(PERM)
                q0.append(0)
                q1.append(0)
                arg.append(len(perm_tables))
                perm_tables.append(permutation_table(block_steps[k:run_end], local, 1 << len(qubits)))
                perm_controls.append(controls)
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
    perm_control_start = np.concatenate([[0], np.cumsum([len(c) for c in perm_controls])]).astype(np.int64)
    flat_controls = [pair for controls in perm_controls for pair in controls]
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
        perm_control_start=perm_control_start,
        perm_control_qubit=np.array([q for q, _ in flat_controls], np.int32),
        perm_control_mask=np.array([m for _, m in flat_controls], np.int64),
        run_start=run_start,
        run_gate=np.array(u1_position, np.int32),
        u1_groups=u1_groups,
        u2_groups=u2_groups,
    )


#: default bound of :data:`PROGRAM_CACHE`, bytes
DEFAULT_CACHE_BYTES = 256 * 2**20


def program_nbytes(program: Program) -> int:
    """Bytes held by a program's numpy arrays (its own and its gate groups'), as the cache counts them."""
    total = 0
    for holder in (program, *program.u1_groups, *program.u2_groups):
        for spec in dataclasses.fields(holder):
            value = getattr(holder, spec.name)
            if isinstance(value, np.ndarray):
                total += value.nbytes
    return total


class ProgramCache:
    """Compiled programs by key, least recently used first out, bounded by their total bytes; thread-safe.

    Args:
        max_bytes: most bytes (:func:`program_nbytes`) the cached programs may hold
            together, >= 0; a program larger than this on its own is not cached.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[Program, int]] = OrderedDict()
        self._bytes = 0
        self.max_bytes = self._checked(max_bytes)

    @staticmethod
    def _checked(max_bytes: int) -> int:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an integer >= 0, got {max_bytes!r}")
        return max_bytes

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached programs."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def get(self, key: tuple) -> Program | None:
        """The program cached under ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def insert(self, key: tuple, program: Program) -> Program:
        """Cache ``program`` under ``key``; the program now cached there.

        When another thread cached a program under ``key`` first, that one is
        kept and returned, so every caller holds the same object for a key.
        """
        size = program_nbytes(program)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[0]
            if size <= self.max_bytes:
                self._entries[key] = (program, size)
                self._bytes += size
                self._evict()
            return program

    def resize(self, max_bytes: int) -> None:
        """Change the bound (bytes), evicting the least recently used programs beyond it."""
        max_bytes = self._checked(max_bytes)
        with self._lock:
            self.max_bytes = max_bytes
            self._evict()

    def clear(self) -> None:
        """Drop every cached program."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _evict(self) -> None:
        """Drop least recently used programs until the bound holds (the caller holds the lock)."""
        while self._bytes > self.max_bytes:
            _, (_, size) = self._entries.popitem(last=False)
            self._bytes -= size


#: the cache :func:`compile_circuit` uses (``PROGRAM_CACHE.resize(n)`` changes its bound)
PROGRAM_CACHE = ProgramCache()


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
        The :class:`Program`; the same object for the same structure while it
        stays in :data:`PROGRAM_CACHE`, so a batch of any size compiles once.
    """
    options = ("program", zbasis, block_qubits, from_zero)
    program = circuit.memo.get(options)
    if program is not None:
        return program
    key = (circuit.structure_key(), zbasis, block_qubits, from_zero)
    program = PROGRAM_CACHE.get(key)
    if program is None:  # built outside the lock: other structures compile meanwhile
        program = PROGRAM_CACHE.insert(key, _build(circuit, zbasis, block_qubits, from_zero))
    circuit.memo[options] = program
    return program


__all__ = ["DEFAULT_CACHE_BYTES", "PROGRAM_CACHE", "ProgramCache", "compile_circuit", "program_nbytes"]
