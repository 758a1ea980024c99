"""Notices of finished blocks of rows straight from workers on the client's machine.

Dask tells a client that a task finished in two hops (worker to scheduler,
scheduler to client), each through a stream that batches messages, so the
news lags the task's end by both hops and their batching, long next to a
small block's work. A worker that runs on the client's
machine (it maps the client's shared memory) instead sends the client a
datagram the moment a block's results are in place: a Unix datagram socket
in Linux's abstract namespace, one per call (:class:`Inbox`), so no file is
left behind and a notice for a call that has ended finds nobody
(:func:`notify` drops it).

Notices only wake the client. A datagram can be dropped (the inbox's queue
is full, or the worker is in another network namespace), so the caller also
looks at the call's board (:mod:`qstore.distributed.blocks`) and Dask's reports at a
fixed interval.
"""

from __future__ import annotations

import secrets
import socket
import struct
import threading

#: a notice: the block's index (its claim on the call's board)
_NOTICE = struct.Struct("<q")


class Inbox:
    """Client side: one call's notices (:func:`notify`), received in the order they were sent.

    Raises:
        OSError: the socket cannot be created (not Linux).
    """

    def __init__(self) -> None:
        self.address = f"\0qsim-notices-{secrets.token_hex(8)}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._socket.bind(self.address)
        except OSError:
            self._socket.close()
            raise

    def receive(self, timeout: float) -> list[int]:
        """The blocks notified since the last call, waiting at most ``timeout`` seconds for the first (then an
        empty list)."""
        blocks: list[int] = []
        self._socket.settimeout(timeout)
        while True:
            try:
                data = self._socket.recv(_NOTICE.size)
            except (TimeoutError, BlockingIOError):
                return blocks
            blocks.append(_NOTICE.unpack(data)[0])
            self._socket.settimeout(0.0)  # and the others already there

    def close(self) -> None:
        """Close the socket: later notices to this inbox are dropped by their senders."""
        self._socket.close()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_sender: socket.socket | None = None
_sender_lock = threading.Lock()


def notify(address: str, block: int) -> None:
    """Worker side: tell the inbox at ``address`` that ``block`` is finished; never blocks, never raises
    (a notice that cannot be delivered is dropped: Dask's report follows)."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        try:
            _sender.sendto(_NOTICE.pack(block), address)
        except OSError:
            pass


__all__ = ["Inbox", "notify"]
