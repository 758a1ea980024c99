"""Diagonal tails of single-qubit runs, split off and gathered into layers (multi-block programs only).

A fused run such as ``RZ(b) RY(a)`` is a complex 2x2 matrix, and a complex
2x2 costs the kernels about two and a half times the arithmetic of a real
one. Written as a real head (``RY(a)``) followed by a diagonal tail
(``RZ(b)``), the heads take the kernels' real path, and the tails, moved
later past steps on other qubits until a multi-qubit step, stand next to each
other: the kernels apply such a stretch of diagonal ``U1`` steps together, one
phase per amplitude (``apply_steps``), for about the arithmetic of one.

Only :func:`~qsim_core.compiler.blocking.partition_blocks` calls this, and only
for programs of several blocks. Those never reach the adjoint sweep, which
compiles every program as one block (``backends.driver.plan_for``), so the
adjoint's fused runs are the same as before. The rewrite is exact up to
rounding: the head and the tail multiply to the run's matrix, and a diagonal
tail commutes with every step on other qubits.
"""

from __future__ import annotations

import numpy as np

from .binding import AnyOp, ConstantOp
from .fusion import structure
from .program import TOL, U1, Step


def _real(op: AnyOp) -> bool:
    """Whether the operation's matrix is real for every parameter value."""
    if isinstance(op, ConstantOp):
        return bool(np.abs(op.matrix.imag).max() <= TOL)
    return op.gate.real


def _split(step: Step) -> tuple[Step | None, Step | None]:
    """(real head, diagonal tail) of a U1 run, or (step, None) when no real head is followed by a diagonal tail.

    A run that is diagonal as a whole is all tail.
    """
    ops = step.ops
    cut = len(ops)
    while cut > 0 and structure(ops[cut - 1])[0]:
        cut -= 1
    if cut == len(ops):
        return step, None
    if cut == 0:
        return None, step
    if not all(_real(op) for op in ops[:cut]):
        return step, None
    return Step(U1, step.qubits, ops[:cut]), Step(U1, step.qubits, ops[cut:])


def defer_diagonal_tails(steps: list[Step]) -> list[Step]:
    """The block's steps with every U1 run's diagonal tail moved to just before the next multi-qubit step.

    A U1 on a qubit with a pending tail first flushes that tail (the order on
    each qubit is kept); the tails flushed together stand in one stretch.
    """
    out: list[Step] = []
    pending: dict[int, Step] = {}

    def flush(qubits) -> None:
        for q in [q for q in pending if q in qubits]:
            out.append(pending.pop(q))

    for step in steps:
        if step.kind != U1:
            flush(set(pending))
            out.append(step)
            continue
        q = step.qubits[0]
        flush({q})
        head, tail = _split(step)
        if head is not None:
            out.append(head)
        if tail is not None:
            pending[q] = tail
    flush(set(pending))
    return out


__all__ = ["defer_diagonal_tails"]
