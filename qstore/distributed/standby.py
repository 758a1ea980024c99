"""Tasks that wait on the workers for the next call, so that a call soon after another skips Dask's dispatch.

From a client's ``submit`` to a task's start on a local worker, Dask takes
two hops through the scheduler (client, scheduler and worker event loops,
and the call's own copying competing for the cores): a noticeable share of
a large call, and most of a small one. After a call through shared memory the
executor therefore leaves one *standby* task per worker slot (:class:`Standby`). Each
leaves its worker's thread pool (``secede``, so the slot stays free for any
other work), binds a Unix datagram socket of its own in Linux's abstract
namespace, and waits there up to :data:`STANDBY_SECONDS` for a message. The
next call sends each standby the task it should run (a pickled function and
its arguments); the standby rejoins the thread pool and runs it at once,
with no scheduler round trip, and Dask reports its end and any error as for any task.

Anything that goes wrong falls back on plain submission: a standby not
listening (still on its way, timed out, its worker gone) refuses the message
and the caller submits that task instead; a message that arrives as its
standby times out is lost, and the caller, which watches its tasks end,
submits another. A standby whose worker dies while it runs its task is
rerun by Dask elsewhere; the rerun finds the marker file the standby kept
in ``/dev/shm`` while it ran and ends at once, and the caller, which sees
the task end with its rows not done, gives them to another task. Messages
start with a token drawn per standby, known only to the client and the
standby (through Dask), so no other local process can make a worker run
code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from distributed import Client, Future, rejoin, secede

from .sharedmem import SHM_DIR

#: seconds a standby task waits for the next call before it ends
STANDBY_SECONDS = 5.0
#: a standby with less than this many seconds of its wait left is replaced when the standbys are topped up
_RENEW_SECONDS = 1.0
#: largest message a standby receives (a task's function and arguments, pickled)
_MAX_MESSAGE = 1 << 16


@dataclasses.dataclass(frozen=True)
class _Waiting:
    """A standby posted for a worker slot: where it listens, its token, its task, and when it gives up at the
    latest (monotonic seconds)."""

    address: str
    token: bytes
    future: Future
    until: float


class Standby:
    """Client side: standby tasks of one client, one per worker slot, topped up after each call takes some.

    Thread-safe: a call takes the standbys it uses; a concurrent call finds fewer (or none) and submits.
    """

    def __init__(self, client: Client, seconds: float = STANDBY_SECONDS) -> None:
        self.client = client
        self.seconds = seconds
        self._waiting: dict[tuple[str, int], _Waiting] = {}  # by (worker, slot of the worker), workers first
        self._lock = threading.Lock()
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    def post(self, workers: dict[str, int]) -> None:
        """A standby for every worker slot without one: ``workers`` maps each worker's address to its threads.

        Standbys still waiting stay (unless their wait is nearly over); those of workers gone are stood down.
        Each standby is bound to its worker (Dask would as well put two on one idle worker, and a call's tasks
        would then take turns on one core), and may run elsewhere only if that worker dies. The slots of
        different workers come first, so that a call of k tasks gets k workers.
        """
        slots = [(worker, depth) for depth in range(max(workers.values(), default=0))
                 for worker, threads in workers.items() if depth < threads]
        fresh = time.monotonic() + _RENEW_SECONDS
        with self._lock:
            kept = {slot: waiting for slot, waiting in self._waiting.items()
                    if slot in slots and waiting.until > fresh and not waiting.future.done()}
            gone = [waiting for slot, waiting in self._waiting.items() if slot not in kept]
        posted = {}
        for worker, depth in slots:
            if (worker, depth) not in kept:
                key = f"qsim-standby-{uuid.uuid4().hex}"
                token = secrets.token_bytes(16)
                future = self.client.submit(_stand_by, f"\0{key}", token, self.seconds, key=key, workers=[worker],
                                            allow_other_workers=True, pure=False)
                posted[worker, depth] = _Waiting(f"\0{key}", token, future, time.monotonic() + self.seconds)
        with self._lock:
            self._waiting = {slot: kept.get(slot) or posted[slot] for slot in slots}
        self._stand_down(gone)

    def start(self, tasks: Iterable[int], function: Callable[..., Any],
              arguments: Callable[[int], tuple]) -> dict[int, Future]:
        """Hand task ``i`` (``function(*arguments(i))``) to a standby, for each ``i`` while standbys last; returns
        the futures of the tasks handed over, by ``i`` (submit the others). A standby not listening yet stays
        for the next call."""
        started: dict[int, Future] = {}
        with self._lock:
            candidates = list(self._waiting.items())
        remaining = iter(candidates)
        for i in tasks:
            try:
                task = pickle.dumps((function, arguments(i)), protocol=pickle.HIGHEST_PROTOCOL)
            except pickle.PicklingError:
                break  # the caller submits it (and the rest) through Dask, which says what cannot be pickled
            for slot, waiting in remaining:
                try:
                    self._sender.sendto(waiting.token + task, waiting.address)
                except OSError:
                    continue  # not listening (yet, or any more), or too large
                started[i] = waiting.future
                with self._lock:
                    self._waiting.pop(slot, None)
                break
            else:
                break  # no standby left: the caller submits the rest
        return started

    @staticmethod
    def ended(started: dict[int, Future]) -> None:
        """The call that took these standbys has ended: remove their markers (a standby whose worker died, and
        that Dask has not rerun, leaves its marker behind)."""
        for future in started.values():
            _marker(f"\0{future.key}").unlink(missing_ok=True)

    def close(self) -> None:
        """Stand down every standby."""
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        self._stand_down(waiting)
        self._sender.close()

    def _stand_down(self, waiting: list[_Waiting]) -> None:
        """End these standbys now (an empty message) and forget their tasks."""
        for standby in waiting:
            try:
                self._sender.sendto(b"", standby.address)
            except OSError:
                pass  # not listening: it ends on its own
        if waiting and self.client.status == "running":
            self.client.cancel([standby.future for standby in waiting])


def _stand_by(address: str, token: bytes, seconds: float) -> Any:
    """Worker side: out of the thread pool, wait up to ``seconds`` at ``address`` for a message starting with
    ``token``; run the task it carries back in the pool, and return its result (None if no task came)."""
    # While it runs its task, a standby keeps a marker file: Dask's rerun of a standby whose worker died
    # in its task finds it and ends at once, so that the caller hears of the lost task now, not in ``seconds``.
    marker = _marker(address)
    if marker.exists():
        marker.unlink(missing_ok=True)
        return None
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
    with contextlib.suppress(OSError):  # without the marker, a rerun waits its ``seconds`` instead
        marker.touch()
    try:
        rejoin()
        return function(*arguments)
    finally:
        marker.unlink(missing_ok=True)


def _marker(address: str) -> Path:
    """The file a standby listening at ``address`` keeps while it runs its task."""
    return SHM_DIR / f"{address.lstrip(chr(0))}.running"


__all__ = ["STANDBY_SECONDS", "Standby"]
