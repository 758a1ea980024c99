"""Tasks that wait on the workers for the next call, so that a call soon after another skips Dask's dispatch.

From a client's ``submit`` to a task's start on a local worker takes Dask
5-10 ms on this 2-core VM (client, scheduler and worker event loops, and the
call's own copying competing for the cores): a tenth of a 100,000-row call,
and most of a small one. After a call through shared memory the executor
therefore leaves one *standby* task per worker slot (:class:`Standby`). Each
leaves its worker's thread pool (``secede``, so the slot stays free for any
other work), binds a Unix datagram socket of its own in Linux's abstract
namespace, and waits there up to :data:`STANDBY_SECONDS` for a message. The
next call sends each standby the task it should run (a pickled function and
its arguments); the standby rejoins the thread pool and runs it, in well
under a millisecond, and Dask reports its end and any error as for any task.

Anything that goes wrong falls back on plain submission: a standby not
listening (still on its way, timed out, its worker gone) refuses the message
and the caller submits that task instead; a message that arrives as its
standby times out is lost, and the caller, which watches its tasks end,
submits another. A standby rerun by Dask after its worker died finds nobody
sending to it any more (each generation of standbys has addresses of its
own) and times out. Messages start with a token drawn per generation, known
only to the client and its standbys (through Dask), so no other local
process can make a worker run code.
"""

from __future__ import annotations

import pickle
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from distributed import Client, Future, rejoin, secede

#: seconds a standby task waits for the next call before it ends
STANDBY_SECONDS = 5.0
#: largest message a standby receives (a task's function and arguments, pickled)
_MAX_MESSAGE = 1 << 16


class Standby:
    """Client side: the standby tasks of one client, one per worker slot, renewed after each call.

    Thread-safe: a call takes the standbys it uses; a concurrent call finds fewer (or none) and submits.
    """

    def __init__(self, client: Client, seconds: float = STANDBY_SECONDS) -> None:
        self.client = client
        self.seconds = seconds
        self._waiting: list[tuple[str, Future]] = []  # (address, future), by slot, spread over the workers
        self._token = b""
        self._lock = threading.Lock()
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    def post(self, workers: dict[str, int]) -> None:
        """Stand down the current standbys and post new ones, one per worker slot: ``workers`` maps each
        worker's address to its threads.

        Each standby is bound to its worker (Dask would as well put two on one idle worker, and a call's tasks
        would then take turns on one core), and may run elsewhere only if that worker dies. The slots of
        different workers come first, so that a call of k tasks gets k workers.
        """
        token = secrets.token_bytes(16)
        name = uuid.uuid4().hex[:12]
        slots = [address for depth in range(max(workers.values(), default=0))
                 for address, threads in workers.items() if depth < threads]
        waiting = []
        for slot, worker in enumerate(slots):
            address = f"\0qsim-standby-{name}-{slot}"
            future = self.client.submit(_stand_by, address, token, self.seconds, key=f"qsim-standby-{name}-{slot}",
                                        workers=[worker], allow_other_workers=True, pure=False)
            waiting.append((address, future))
        with self._lock:
            previous, self._waiting, self._token = self._waiting, waiting, token
        self._stand_down(previous)

    def start(self, tasks: Iterable[int], function: Callable[..., Any],
              arguments: Callable[[int], tuple]) -> dict[int, Future]:
        """Hand task ``i`` (``function(*arguments(i))``) to a standby, for each ``i`` while standbys last; returns
        the futures of the tasks handed over, by ``i`` (submit the others)."""
        with self._lock:
            waiting, token = self._waiting, self._token
            self._waiting = []
        started: dict[int, Future] = {}
        for i, (address, future) in zip(tasks, waiting, strict=False):
            try:
                message = token + pickle.dumps((function, arguments(i)), protocol=pickle.HIGHEST_PROTOCOL)
                self._sender.sendto(message, address)
            except (OSError, pickle.PicklingError):
                continue  # not listening (yet, or any more), or too large: the caller submits it
            started[i] = future
        self._stand_down([entry for entry in waiting if entry[1] not in started.values()])
        return started

    def close(self) -> None:
        """Stand down every standby."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        self._stand_down(waiting)
        self._sender.close()

    def _stand_down(self, waiting: list[tuple[str, Future]]) -> None:
        """End these standbys now (an empty message) and forget their tasks."""
        for address, _ in waiting:
            try:
                self._sender.sendto(b"", address)
            except OSError:
                pass  # not listening: it ends on its own
        if waiting and self.client.status == "running":
            self.client.cancel([future for _, future in waiting])


def _stand_by(address: str, token: bytes, seconds: float) -> Any:
    """Worker side: out of the thread pool, wait up to ``seconds`` at ``address`` for a message starting with
    ``token``; run the task it carries back in the pool, and return its result (None if no task came)."""
    secede()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as inbox:
        try:
            inbox.bind(address)
        except OSError:
            return None  # an earlier run of this standby still holds it
        inbox.settimeout(seconds)
        try:
            message = inbox.recv(_MAX_MESSAGE)
        except TimeoutError:
            return None
    if len(message) <= len(token) or not secrets.compare_digest(message[:len(token)], token):
        return None  # stood down (or not a message of this client's)
    function, arguments = pickle.loads(message[len(token):])
    rejoin()
    return function(*arguments)


__all__ = ["STANDBY_SECONDS", "Standby"]
