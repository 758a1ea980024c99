"""One call's rows handed out to its tasks in blocks, on demand, through shared memory (self-scheduling).

A call through shared memory runs one task per worker slot, and the tasks
share out the rows among themselves: each claims the next block of rows from
a board in the call's output segment, runs it, writes its results and claims
again, until no rows are left. A worker that runs slower (its core shared
with the client, a busy neighbour, a slower machine) takes fewer blocks, so
the workers finish within a small block of each other; with equal chunks
fixed in advance, the faster worker sat idle for a noticeable part of the
call while the slower one finished. A claim costs a few lock calls, far
less than a scheduler round trip (with the worker idle meanwhile, which is
what more, smaller Dask tasks cost).

Block sizes shrink as the rows run out (guided self-scheduling): a block is
the rows left divided by twice the tasks, within ``[min_rows, max_rows]``
(:class:`Plan`), so the first blocks are large and the last ones small.

The board (:class:`Board`) holds the number of claims and per claim its rows, its task, whether its results are written,
and the engine's seconds on it. Claims are made under an exclusive lock of
the segment and results written under the call's stamp
(:func:`~qstore.distributed.sharedmem.writing`), so a task that outlives its call touches
neither. A claim whose task ended without finishing it (its worker died; the
rerun Dask makes of the task claims afresh) is *lost*: the client gives it to
a new task (:func:`lost`, and :func:`serve`'s ``redo``), so no row goes
unwritten; a row written twice (by that task and a late original) gets the
same values both times.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from .notices import notify
from .sharedmem import ArrayRef, attach, writing

#: claim columns on the board: first row, stop row, task, done (0 or 1)
_FIRST, _STOP, _TASK, _DONE = range(4)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a call's ``rows`` are shared out: among ``tasks`` tasks, in blocks of ``min_rows..max_rows`` rows."""

    rows: int
    tasks: int
    min_rows: int
    max_rows: int

    def __post_init__(self) -> None:
        if not (self.rows >= 1 and self.tasks >= 1 and 1 <= self.min_rows <= self.max_rows):
            raise ValueError(f"a plan needs rows, tasks >= 1 and 1 <= min_rows <= max_rows, got {self}")

    def block(self, left: int) -> int:
        """Rows of the next block when ``left`` rows are unclaimed (all of them if fewer than ``min_rows``)."""
        guided = -(-left // (2 * self.tasks))
        return min(left, max(self.min_rows, min(self.max_rows, guided)))

    @property
    def max_claims(self) -> int:
        """Most claims the rows can be cut into: every block but the last has at least ``min_rows`` rows."""
        return -(-self.rows // self.min_rows)


@dataclasses.dataclass(frozen=True)
class Board:
    """Where a call's board lives in its output segment.

    Attributes:
        count: int64[1], the number of claims (claim ``j`` starts where ``j - 1`` stops).
        claims: int64[max_claims, 4], per claim its first row, stop row, task and done flag.
        seconds: float64[max_claims], the engine's seconds on each claim.
    """

    count: ArrayRef
    claims: ArrayRef
    seconds: ArrayRef

    @staticmethod
    def specs(plan: Plan) -> list[tuple[Any, tuple[int, ...]]]:
        """(dtype, shape) of the board's arrays, for :func:`~qstore.distributed.sharedmem.layout`."""
        return [(np.int64, (1,)), (np.int64, (plan.max_claims, 4)), (np.float64, (plan.max_claims,))]


@dataclasses.dataclass
class Progress:
    """Client side: a view of one call's board (arrays in its output segment; drop it before the segment goes).

    ``counter``, ``claims`` and ``seconds`` as in :class:`Board`, cleared by :meth:`clear` before the tasks go.
    """

    plan: Plan
    counter: np.ndarray
    claims: np.ndarray
    seconds: np.ndarray

    def clear(self) -> None:
        """No row claimed yet."""
        self.counter[:] = 0
        self.claims[:] = 0
        self.seconds[:] = 0.0

    @property
    def count(self) -> int:
        """Claims made so far."""
        return int(self.counter[0])

    def done(self) -> np.ndarray:
        """Indices of the claims whose results are written."""
        return np.flatnonzero(self.claims[:self.count, _DONE])

    def rows(self, claim: int) -> slice:
        """Rows of ``claim``."""
        first, stop = self.claims[claim, [_FIRST, _STOP]]
        return slice(int(first), int(stop))

    def complete(self) -> bool:
        """Every row claimed, and every claim's results written (so every row's)."""
        count = self.count
        return _next_row(self.claims, count) >= self.plan.rows and bool(self.claims[:count, _DONE].all())

    def lost(self, ended: Collection[int], owners: dict[int, int]) -> list[int]:
        """Claims not done whose task has ended: ``ended`` task indices; ``owners`` maps claims the client has
        given to another task (``redo``) to that task, which owns them instead of the claimant."""
        count = self.count
        return [j for j in range(count) if not self.claims[j, _DONE]
                and owners.get(j, int(self.claims[j, _TASK])) in ended]

    def engine_seconds(self) -> float:
        """The engine's seconds on every claim."""
        return float(self.seconds[:self.count].sum())


def progress(plan: Plan, board: Board, array: Callable[[ArrayRef], np.ndarray]) -> Progress:
    """Client side: the board's arrays, through ``array`` (the output segment's
    :meth:`~qstore.distributed.sharedmem.Segment.array`)."""
    return Progress(plan, array(board.count), array(board.claims), array(board.seconds))


@dataclasses.dataclass(frozen=True)
class Call:
    """Worker side: what a task needs to find its call's board: the output segment ``target``, the call's
    ``stamp`` at ``stamp_ref``, the board, the plan, and the client's inbox for notices."""

    target: str
    stamp_ref: ArrayRef
    stamp: int
    board: Board
    plan: Plan
    inbox: str


def serve(call: Call, task: int, outputs: Sequence[ArrayRef | None],
          run: Callable[[int, int], Any], redo: Sequence[int] = ()) -> int:
    """Worker side: run the claims ``redo`` (lost by other tasks), then claim blocks and run them until no rows
    are left or the call has ended; returns the claims run.

    ``run(first, stop)`` computes rows ``first..stop-1``: an array, or a tuple of arrays (None entries
    skipped), written at those rows of the arrays at ``outputs``. The client gets a notice per claim written.
    """
    served = 0
    for claim in redo:
        rows = _take(call, claim, task)
        if rows is not None and _finish(call, claim, rows, outputs, run):
            served += 1
    while (claimed := _claim(call, task)) is not None:
        claim, rows = claimed
        if not _finish(call, claim, rows, outputs, run):
            break
        served += 1
    return served


def _claim(call: Call, task: int) -> tuple[int, slice] | None:
    """The next block for ``task``, as (claim, rows); None when no rows are left or the call has ended."""
    with writing(call.target, call.stamp_ref, call.stamp, exclusive=True) as current:
        if not current:
            return None
        counter = attach(call.target, call.board.count)
        claims = attach(call.target, call.board.claims)
        claim = int(counter[0])
        first = _next_row(claims, claim)
        if first >= call.plan.rows:
            return None
        stop = first + call.plan.block(call.plan.rows - first)
        # The claim goes on the board before the count moves (one aligned store): a task killed in between
        # leaves its rows unclaimed, for the next claim to take.
        claims[claim] = (first, stop, task, 0)
        counter[0] = claim + 1
        return claim, slice(first, stop)


def _next_row(claims: np.ndarray, count: int) -> int:
    """The first row not claimed by the first ``count`` claims."""
    return int(claims[count - 1, _STOP]) if count else 0


def _take(call: Call, claim: int, task: int) -> slice | None:
    """``claim``'s rows for ``task`` to redo; None if it is done meanwhile or the call has ended."""
    with writing(call.target, call.stamp_ref, call.stamp, exclusive=True) as current:
        if not current:
            return None
        row = attach(call.target, call.board.claims)[claim]
        if row[_DONE]:
            return None
        row[_TASK] = task
        return slice(int(row[_FIRST]), int(row[_STOP]))


def _finish(call: Call, claim: int, rows: slice, outputs: Sequence[ArrayRef | None],
            run: Callable[[int, int], Any]) -> bool:
    """Run ``claim``'s rows and write their results; False if the call ended meanwhile (nothing written)."""
    start = time.perf_counter()
    result = run(rows.start, rows.stop)
    seconds = time.perf_counter() - start
    with writing(call.target, call.stamp_ref, call.stamp) as current:
        if not current:
            return False
        for ref, part in zip(outputs, result if isinstance(result, tuple) else (result,), strict=True):
            if ref is not None:
                attach(call.target, ref)[rows] = part
        attach(call.target, call.board.seconds)[claim] = seconds
        attach(call.target, call.board.claims)[claim, _DONE] = 1  # last: the client copies done claims
    notify(call.inbox, claim)
    return True


__all__ = ["Board", "Call", "Plan", "Progress", "progress", "serve"]
