"""Rows shared out in blocks through a board in shared memory: sizes, coverage, balance, lost claims, stale tasks."""

from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstore.distributed import sharedmem
from qstore.distributed.blocks import Board, Call, Plan, progress, serve
from qstore.distributed.notices import Inbox
from qstore.distributed.sharedmem import ArrayRef, Segment, layout

pytestmark = pytest.mark.skipif(not sharedmem.SHM_DIR.is_dir(), reason="POSIX shared memory through /dev/shm (Linux)")


def claims_in_turn(plan: Plan) -> list[int]:
    """Block sizes when the rows are claimed one block after another."""
    sizes, left = [], plan.rows
    while left:
        sizes.append(plan.block(left))
        left -= sizes[-1]
    return sizes


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 100_000), st.integers(1, 16), st.integers(1, 5000), st.integers(0, 5000))
def test_blocks_cover_the_rows_within_their_bounds_and_fit_the_board(rows, tasks, min_rows, extra):
    plan = Plan(rows, tasks, min_rows, min_rows + extra)
    sizes = claims_in_turn(plan)
    assert sum(sizes) == rows and len(sizes) <= plan.max_claims
    assert all(plan.min_rows <= size <= plan.max_rows for size in sizes[:-1])
    assert sizes[-1] <= plan.max_rows
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))  # they only shrink


def test_blocks_shrink_as_rows_run_out():
    assert claims_in_turn(Plan(1000, 2, 10, 1000))[:4] == [250, 188, 141, 106]
    assert claims_in_turn(Plan(1000, 2, 10, 100))[:3] == [100, 100, 100]
    assert claims_in_turn(Plan(1000, 2, 10, 1000))[-3:] == [10, 10, 10]  # the last ones the smallest
    assert claims_in_turn(Plan(25, 1, 10, 10)) == [10, 10, 5]


@pytest.mark.parametrize(("rows", "tasks", "min_rows", "max_rows"), [(0, 1, 1, 1), (5, 0, 1, 1), (5, 1, 0, 1),
                                                                     (5, 1, 3, 2)])
def test_impossible_plans_are_refused(rows, tasks, min_rows, max_rows):
    with pytest.raises(ValueError, match="a plan needs"):
        Plan(rows, tasks, min_rows, max_rows)


class Board1:
    """A call's output segment: stamp, one float64 result per row (its row number, squared), and the board."""

    def __init__(self, plan: Plan, inbox: str = "\0qsim-test-nobody") -> None:
        (stamp_ref, self.output, *board), size = layout([(np.int64, (1,)), (np.float64, (plan.rows,)),
                                                         *Board.specs(plan)])
        self.plan = plan
        self.segment = Segment(size)
        self.stamp = 7
        self.segment.stamp(stamp_ref, self.stamp)
        self.call = Call(self.segment.name, stamp_ref, self.stamp, Board(*board), plan, inbox)
        self.state = progress(plan, self.call.board, self.segment.array)
        self.state.clear()
        self.segment.array(self.output)[:] = np.nan

    def results(self) -> np.ndarray:
        return self.segment.array(self.output).copy()

    def close(self) -> None:
        del self.state
        self.segment.unlink()


def squares(first: int, stop: int) -> np.ndarray:
    return np.arange(first, stop, dtype=np.float64) ** 2


def _serve_in_child(call: Call, output: ArrayRef, task: int) -> None:
    serve(call, task, [output], squares)


def test_tasks_in_several_processes_write_every_row_once_in_claims_that_partition_the_rows():
    plan = Plan(20_000, 3, 7, 900)
    board = Board1(plan)
    try:
        context = multiprocessing.get_context("spawn")
        children = [context.Process(target=_serve_in_child, args=(board.call, board.output, task))
                    for task in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=120)
        assert [child.exitcode for child in children] == [0, 0, 0]
        state = board.state
        assert state.complete() and state.count == len(state.done()) <= plan.max_claims
        edges = [state.rows(claim) for claim in range(state.count)]
        assert edges[0].start == 0 and edges[-1].stop == plan.rows
        assert all(a.stop == b.start for a, b in zip(edges, edges[1:], strict=False))
        np.testing.assert_array_equal(board.results(), squares(0, plan.rows))
        assert state.engine_seconds() > 0
        assert state.lost(ended={0, 1, 2}, owners={}) == []
    finally:
        board.close()


def test_a_slower_task_takes_fewer_blocks():
    plan = Plan(200, 2, 5, 5)
    board = Board1(plan)
    served = {}

    def task(index: int, pause: float) -> None:
        def run(first: int, stop: int) -> np.ndarray:
            time.sleep(pause)
            return squares(first, stop)
        served[index] = serve(board.call, index, [board.output], run)

    try:
        threads = [threading.Thread(target=task, args=(0, 0.03)), threading.Thread(target=task, args=(1, 0.002))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert served[0] + served[1] == 40 and served[1] >= 3 * served[0]
        np.testing.assert_array_equal(board.results(), squares(0, plan.rows))
    finally:
        board.close()


class Died(Exception):
    """A task's worker dying in the middle of a block."""


def test_a_claim_whose_task_died_is_lost_and_redone_by_another_task():
    plan = Plan(100, 2, 10, 10)
    board = Board1(plan)

    def dies_in_its_third_block(first: int, stop: int) -> np.ndarray:
        if first >= 20:
            raise Died
        return squares(first, stop)

    try:
        with pytest.raises(Died):
            serve(board.call, 0, [board.output], dies_in_its_third_block)
        state = board.state
        assert state.lost(ended=set(), owners={}) == []  # its task has not ended: still running, maybe
        assert state.lost(ended={0}, owners={}) == [2]
        assert serve(board.call, 1, [board.output], squares) == 7  # the other task claims the rest
        assert not state.complete() and np.isnan(board.results()[20:30]).all()
        # given to task 2, the claim is task 2's: lost again only if task 2 ends without it
        assert state.lost(ended={0, 1}, owners={2: 2}) == []
        assert state.lost(ended={0, 1, 2}, owners={2: 2}) == [2]
        assert serve(board.call, 2, [board.output], squares, redo=[2]) == 1
        assert state.complete() and state.count == 10
        np.testing.assert_array_equal(board.results(), squares(0, plan.rows))
        assert serve(board.call, 3, [board.output], squares, redo=[2]) == 0  # done already: nothing to redo
    finally:
        board.close()


def test_a_task_of_an_ended_call_claims_and_writes_nothing():
    plan = Plan(50, 1, 10, 10)
    board = Board1(plan)
    started, release = threading.Event(), threading.Event()
    served = []

    def late(first: int, stop: int) -> np.ndarray:
        started.set()
        release.wait(timeout=30)
        return squares(first, stop)

    try:
        worker = threading.Thread(target=lambda: served.append(serve(board.call, 0, [board.output], late)))
        worker.start()
        assert started.wait(timeout=30)
        board.segment.stamp(board.call.stamp_ref, board.stamp + 1)  # the segment goes to a later call
        release.set()
        worker.join(timeout=30)
        assert served == [0] and board.state.count == 1  # its block not written, and no further claim
        assert np.isnan(board.results()).all()
    finally:
        board.close()


def test_the_client_hears_of_each_claim_written():
    plan = Plan(30, 1, 10, 10)
    with Inbox() as inbox:
        board = Board1(plan, inbox.address)
        try:
            serve(board.call, 0, [board.output], squares)
            assert inbox.receive(timeout=5.0) == [0, 1, 2]
        finally:
            board.close()
