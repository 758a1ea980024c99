"""Notices of finished chunks from workers: delivered across processes, woken by posts, never blocking a sender."""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time

import pytest

from qstore.distributed.notices import Inbox, notify

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix datagram sockets")


def _notify_all(address: str, chunks: list[int]) -> None:
    for chunk in chunks:
        notify(address, chunk)


def test_notices_from_another_process_arrive_in_order():
    with Inbox() as inbox:
        process = multiprocessing.get_context("spawn").Process(target=_notify_all, args=(inbox.address, [3, 0, 7]))
        process.start()
        received: list[int] = []
        deadline = time.monotonic() + 60
        while len(received) < 3 and time.monotonic() < deadline:
            received += inbox.receive(timeout=1.0)
        process.join(timeout=30)
    assert received == [3, 0, 7]


def test_receive_waits_for_a_notice_or_the_timeout():
    with Inbox() as inbox:
        started = time.monotonic()
        assert inbox.receive(timeout=0.05) == []  # nothing: an empty list after the timeout
        assert time.monotonic() - started >= 0.04
        timer = threading.Timer(0.2, notify, args=(inbox.address, 5))
        timer.start()
        assert inbox.receive(timeout=30) == [5]
        timer.join()


def test_a_full_queue_drops_notices_instead_of_blocking_the_worker():
    with Inbox() as inbox:
        for chunk in range(1000):  # far more than a Unix datagram queue holds
            notify(inbox.address, chunk)
        received = inbox.receive(timeout=1.0)
    assert received == list(range(len(received))) and received  # the first ones, in order


def test_a_notice_to_a_closed_inbox_is_dropped():
    inbox = Inbox()
    inbox.close()
    started = time.monotonic()
    notify(inbox.address, 1)  # nobody listens: neither an error nor a wait
    notify("\0qsim-notices-nobody", 2)
    assert time.monotonic() - started < 1
