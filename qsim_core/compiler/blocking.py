"""Steps to blocks: passes 6 to 8 of :mod:`qsim_core.compiler.program`.

Product-state initialisation (:func:`split_initial_product`), the partition
into gathered blocks (:func:`partition_blocks`) and the permutation runs: CNOT
and SWAP steps grouped into runs (:func:`group_permutation_runs`), and a run's
basis permutation (:func:`permutation_table`).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from .diagonals import defer_diagonal_tails
from .program import CNOT, SWAP, U1, Step

#: how many low qubits every gathered block includes, so that each gathered
#: run of amplitudes fills whole cache lines
_LOW_QUBITS_IN_BLOCK = 3


def group_permutation_runs(steps: list[Step]) -> list[Step]:
    """Reorder steps (respecting per-qubit order) so CNOT/SWAP steps form long runs.

    A layer's single-qubit gates then come before its whole CNOT cascade
    instead of being interleaved with it (see :func:`alternating_order`).
    """
    phases = alternating_order([step.qubits for step in steps], [step.kind in (CNOT, SWAP) for step in steps])
    return [steps[k] for _, items in phases for k in items]


def alternating_order(qubits: Sequence[tuple[int, ...]], flag: Sequence[bool]) -> list[tuple[bool, list[int]]]:
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


def split_initial_product(steps: list[Step], num_qubits: int) -> tuple[list[Step | None], list[Step]]:
    """Separate the U1 steps that act first on their qubit (they build a product state)."""
    initial: list[Step | None] = [None] * num_qubits
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


def partition_blocks(steps: list[Step], num_qubits: int, block_qubits: int) -> list[tuple[list[int], list[Step]]]:
    """Greedy dependency-respecting grouping of steps into blocks of <= block_qubits qubits.

    Every block includes the lowest qubits (``_LOW_QUBITS_IN_BLOCK``), so that a
    gathered run of amplitudes fills whole cache lines. The diagonal tails of
    a block's single-qubit runs are split off and gathered into stretches
    (:func:`~qsim_core.compiler.diagonals.defer_diagonal_tails`); a program of
    one block is left as it is (the adjoint sweep runs on it).
    """
    if num_qubits <= block_qubits:
        return [(list(range(num_qubits)), steps)]
    # leave room for a two-qubit gate on two qubits outside the forced ones
    forced = set(range(min(_LOW_QUBITS_IN_BLOCK, num_qubits, block_qubits - 2)))
    blocks = []
    remaining = steps
    while remaining:
        active, taken, rest = _greedy_block(remaining, forced, block_qubits)
        blocks.append((sorted(active), defer_diagonal_tails(taken)))
        remaining = rest
    return blocks


def _greedy_block(steps: list[Step], forced: set[int], block_qubits: int) -> tuple[set[int], list[Step], list[Step]]:
    """(qubits, steps taken, steps left): every step, in order, whose earlier steps on its qubits were all
    taken and whose qubits still fit; a CNOT whose target fits but whose control does not is taken too, its
    control left outside the block (an external control: fixed within each gathered slice, so the CNOT
    flips the slice's indices or not, see :func:`control_masks`)."""
    active = set(forced)
    blocked: set[int] = set()
    taken, rest = [], []
    for step in steps:
        qs = set(step.qubits)
        if qs & blocked:
            pass
        elif len(active | qs) <= block_qubits:
            active |= qs
            taken.append(step)
            continue
        elif step.kind == CNOT and len(active | {step.qubits[1]}) <= block_qubits:
            active.add(step.qubits[1])
            taken.append(step)
            continue
        blocked |= qs
        rest.append(step)
    return active, taken, rest


def permutation_table(steps: Sequence[Step], local: dict[int, int], size: int) -> np.ndarray:
    """``src`` with ``new[i] = old[src[i]]`` for a run of CNOT/SWAP steps on local indices; CNOTs whose control
    is not in ``local`` (external controls) are left out, :func:`control_masks` gives their effect."""
    return _apply_backwards(steps, local, np.arange(size, dtype=np.int64))


def control_masks(steps: Sequence[Step], local: dict[int, int]) -> list[tuple[int, int]]:
    """``(control, mask)`` for each CNOT of the run whose control (a global qubit) is not in ``local``.

    Within a gathered slice such a control has one value; where it is 1 the CNOT flips its local target bit,
    and the run's permutation becomes ``new[i] = old[src[i] ^ mask]`` (XOR of the masks of the controls that
    are 1), with ``src`` from :func:`permutation_table`. The run is linear over GF(2), so a flip between
    ``f_1 ... f_(k-1)`` and the rest reaches the source index as ``f_1(...f_(k-1)(target bit))``.
    """
    masks = []
    for k, step in enumerate(steps):
        if step.kind == CNOT and step.qubits[0] not in local:
            flip = np.array([1 << local[step.qubits[1]]], np.int64)
            masks.append((step.qubits[0], int(_apply_backwards(steps[:k], local, flip)[0])))
    return masks


def _apply_backwards(steps: Sequence[Step], local: dict[int, int], src: np.ndarray) -> np.ndarray:
    """``f_1(f_2(...f_m(src)))`` for the run's steps ``f_1 ... f_m`` (each its own inverse) on local indices,
    external controls skipped."""
    for step in reversed(steps):
        if step.kind == CNOT and step.qubits[0] not in local:
            continue
        a, b = (local[q] for q in step.qubits)
        if step.kind == CNOT:
            src ^= ((src >> a) & 1) << b
        else:
            diff = ((src >> a) ^ (src >> b)) & 1
            src ^= (diff << a) | (diff << b)
    return src
