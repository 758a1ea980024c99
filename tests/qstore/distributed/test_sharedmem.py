"""Shared-memory segments for same-host Dask workers: layout, ownership, reuse, and the failures they report."""

from __future__ import annotations

import errno
import multiprocessing
import os
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qstore.distributed import sharedmem
from qstore.distributed.sharedmem import ArrayRef, Segment, SegmentPool, attach, layout, wait_ready

pytestmark = pytest.mark.skipif(not sharedmem.SHM_DIR.is_dir(), reason="POSIX shared memory through /dev/shm (Linux)")


def test_layout_places_arrays_aligned_and_apart():
    refs, size = layout([(np.float64, (3, 5)), None, (np.complex64, (2,)), (np.int8, (7,))])
    first, missing, second, third = refs
    assert missing is None
    assert [ref.offset % sharedmem.ALIGN for ref in (first, second, third)] == [0, 0, 0]
    assert first.offset == 0 and second.offset >= first.nbytes and third.offset >= second.offset + second.nbytes
    assert (first.nbytes, second.nbytes, third.nbytes) == (120, 16, 7)
    assert size == third.offset + third.nbytes
    assert layout([])[1] == 1  # a segment has at least a byte


def _read_in_child(name: str, ref: ArrayRef, queue) -> None:
    view = attach(name, ref)
    queue.put(view.copy())
    view *= -1  # writes reach the creator


def test_another_process_reads_and_writes_the_segment():
    data = np.arange(12.0).reshape(3, 4)
    [ref], size = layout([(data.dtype, data.shape)])
    segment = Segment(size)
    try:
        view = segment.array(ref)
        view[...] = data
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(target=_read_in_child, args=(segment.name, ref, queue))
        child.start()
        np.testing.assert_array_equal(queue.get(timeout=60), data)
        child.join(timeout=60)
        assert child.exitcode == 0
        np.testing.assert_array_equal(view, -data)
        del view
    finally:
        segment.unlink()
    assert not (sharedmem.SHM_DIR / segment.name).exists()


def test_a_pool_reuses_segments_and_keeps_only_the_largest_idle_ones():
    pool = SegmentPool(keep=2)
    try:
        small, large = pool.acquire(1000), pool.acquire(100_000)
        assert small.size >= 1000 and large.size >= 100_000
        pool.release(small)
        pool.release(large)
        again = pool.acquire(500)  # the smallest idle segment that fits
        assert again is small
        pool.release(again)
        extra = pool.acquire(200_000)  # new: nothing idle fits
        assert extra not in (small, large)
        pool.release(extra)  # three idle segments: the smallest is unlinked
        assert sorted(pool.names) == sorted([large.name, extra.name])
        assert not (sharedmem.SHM_DIR / small.name).exists()
    finally:
        pool.close()
    assert pool.names == []
    assert not any((sharedmem.SHM_DIR / segment.name).exists() for segment in (small, large, extra))


def test_a_segment_not_on_this_machine_is_reported_not_visible():
    missing = f"qsim-{secrets.token_hex(8)}"
    with pytest.raises(sharedmem.SegmentNotVisible, match=f"{missing} is not visible on this worker"):
        attach(missing, ArrayRef(0, "<f8", (1,)))
    assert not sharedmem.visible(missing, b"token")


def test_visible_checks_the_token():
    token = secrets.token_bytes(16)
    segment = sharedmem.token_segment(token)
    try:
        assert sharedmem.visible(segment.name, token)
        assert not sharedmem.visible(segment.name, secrets.token_bytes(16))
    finally:
        segment.unlink()


def test_kept_mappings_are_bounded_and_can_be_dropped():
    segments = [Segment(64) for _ in range(sharedmem._MAPPINGS + 2)]
    try:
        for segment in segments:
            attach(segment.name, ArrayRef(0, "<f8", (8,)))[0] = 1.0
        assert len(sharedmem._mapped) == sharedmem._MAPPINGS
        assert segments[0].name not in sharedmem._mapped  # least recently used first
        sharedmem.forget([segment.name for segment in segments])
        assert not any(segment.name in sharedmem._mapped for segment in segments)
    finally:
        for segment in segments:
            segment.unlink()


def test_no_room_is_a_clear_error_and_leaves_nothing_behind(monkeypatch):
    created = []

    def full(fd, size):
        created.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sharedmem, "_reserve", full)  # a /dev/shm too small for the segment
    with pytest.raises(sharedmem.SharedMemoryUnavailable, match="has no room for 4,096 bytes"):
        Segment(4096)
    assert created and not created[0].exists()


def _read_when_ready(name: str, ref: ArrayRef, chunk: int, queue) -> None:
    queue.put("waiting")
    wait_ready(name, chunk)
    queue.put(attach(name, ref)[chunk])


def test_a_worker_waits_for_its_chunk_and_then_sees_its_rows():
    segment = Segment(64)
    ref = ArrayRef(0, "<f8", (4,))
    rows = segment.array(ref)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    segment.hold(4)
    child = context.Process(target=_read_when_ready, args=(segment.name, ref, 2, queue))
    child.start()
    try:
        assert queue.get(timeout=60) == "waiting"
        rows[:2] = 1.0
        segment.ready(0, 2)  # other chunks released: chunk 2 still waits
        time.sleep(0.3)
        assert queue.empty()
        rows[2] = 42.0
        segment.ready(2, 3)
        assert queue.get(timeout=30) == 42.0
    finally:
        segment.ready_all()
        child.join(timeout=30)
        del rows
        segment.unlink()
    assert child.exitcode == 0


def test_release_frees_every_waiter_and_a_thread_of_this_process_waits_too():
    segment = Segment(64)
    segment.hold(3)
    done = []
    waiters = [threading.Thread(target=lambda k=k: done.append(wait_ready(segment.name, k) or k)) for k in range(3)]
    for waiter in waiters:
        waiter.start()
    try:
        time.sleep(0.3)
        assert not done  # a waiter in the holder's own process is not let through by sharing its locks
        segment.ready_all()
        for waiter in waiters:
            waiter.join(timeout=30)
        assert sorted(done) == [0, 1, 2]
    finally:
        segment.ready_all()
        segment.unlink()
    with pytest.raises(sharedmem.SegmentNotVisible):
        wait_ready(segment.name, 0)


def test_a_stamp_waits_for_writers_inside_and_turns_away_later_ones():
    segment = Segment(64)
    stamp = ArrayRef(0, "<i8", (1,))
    inside, results = threading.Event(), []

    def slow_writer() -> None:
        with sharedmem.writing(segment.name, stamp, 1) as current:
            inside.set()
            time.sleep(0.3)
            results.append(("wrote", current))

    try:
        segment.stamp(stamp, 1)
        writer = threading.Thread(target=slow_writer)
        writer.start()
        assert inside.wait(timeout=30)
        segment.stamp(stamp, 2)  # a new call: waits for the writer of the old one to leave
        assert results == [("wrote", True)]
        writer.join(timeout=30)
        with sharedmem.writing(segment.name, stamp, 1) as current:
            assert not current  # a task of the old call that comes late finds the segment taken
        with sharedmem.writing(segment.name, stamp, 2) as current:
            assert current
    finally:
        segment.unlink()
