"""Standby tasks on a local two-worker cluster: handed a task they run it at once, and otherwise step aside."""

from __future__ import annotations

import os
import socket
import time

import pytest
from distributed import Client

from qstore.distributed.standby import Standby

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix datagram sockets")


@pytest.fixture
def client(address):
    with Client(address) as client:
        yield client


def workers(client: Client) -> dict[str, int]:
    """Threads of each worker of the cluster, by address."""
    return {address: info["nthreads"] for address, info in client.scheduler_info()["workers"].items()}


def where(tag: str) -> tuple[str, int]:
    """Worker side: ``tag`` and the worker process's id."""
    return tag, os.getpid()


def bound(address: str) -> bool:
    """Whether a standby (or anything) is listening at ``address``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
        return True


def listening(standby: Standby, timeout: float = 30.0) -> None:
    """Wait until every standby of ``standby`` is waiting on its worker (bound to its address)."""
    deadline = time.monotonic() + timeout
    for waiting in standby._waiting.values():
        while not bound(waiting.address):
            assert time.monotonic() < deadline, "standby never started"
            time.sleep(0.01)


def test_standbys_run_the_tasks_handed_to_them_one_per_worker_and_dask_reports_their_results(client):
    standby = Standby(client)
    try:
        standby.post(workers(client))
        listening(standby)
        started = standby.start(range(2), where, lambda i: (f"task {i}",))
        assert sorted(started) == [0, 1]
        results = [started[i].result(timeout=30) for i in range(2)]
        assert [tag for tag, _ in results] == ["task 0", "task 1"]
        assert len({pid for _, pid in results}) == 2  # one standby per worker
        assert set(pid for _, pid in results) == set(client.run(os.getpid).values())
    finally:
        standby.close()


def test_posting_again_tops_up_only_the_slots_whose_standby_was_taken(client):
    standby = Standby(client)
    try:
        standby.post(workers(client))
        listening(standby)
        first = {slot: waiting.future.key for slot, waiting in standby._waiting.items()}
        standby.post(workers(client))
        assert {slot: waiting.future.key for slot, waiting in standby._waiting.items()} == first
        started = standby.start(range(1), where, lambda i: ("one task",))
        assert started[0].result(timeout=30)[0] == "one task"
        standby.post(workers(client))
        now = {slot: waiting.future.key for slot, waiting in standby._waiting.items()}
        assert len(now) == 2 and len(set(now.values()) & set(first.values())) == 1  # the other one stayed
    finally:
        standby.close()


def test_a_task_with_no_standby_left_is_for_the_caller_to_submit(client):
    standby = Standby(client, seconds=0.2)
    try:
        standby.post(dict(list(workers(client).items())[:1]))
        listening(standby)
        future = next(iter(standby._waiting.values())).future
        assert future.result(timeout=30) is None  # no call came: it ended on its own
        assert standby.start(range(1), where, lambda i: ("late",)) == {}
        assert standby.start(range(1), where, lambda i: ("none posted",)) == {}
    finally:
        standby.close()


def test_closing_stands_the_standbys_down_at_once_and_they_leave_the_slots_free(client):
    standby = Standby(client, seconds=60.0)
    try:
        standby.post(workers(client))
        listening(standby)
        addresses = [waiting.address for waiting in standby._waiting.values()]
        # out of the thread pools: the one-thread workers run other tasks meanwhile
        assert client.submit(where, "meanwhile", pure=False).result(timeout=30)[0] == "meanwhile"
    finally:
        standby.close()
    deadline = time.monotonic() + 10  # not the 60 s they would wait
    while any(bound(address) for address in addresses):
        assert time.monotonic() < deadline, "a standby still waits after being stood down"
        time.sleep(0.01)


def test_a_message_without_the_token_runs_nothing(client):
    standby = Standby(client)
    try:
        standby.post(dict(list(workers(client).items())[:1]))
        listening(standby)
        waiting = next(iter(standby._waiting.values()))
        address, future = waiting.address, waiting.future
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as intruder:
            intruder.sendto(b"\x00" * 16 + b"not a pickle of ours", address)
        assert future.result(timeout=30) is None
    finally:
        standby.close()
