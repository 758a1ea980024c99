"""Starting the local server: in a background thread of this process (tests, notebooks) or in the foreground."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import ServerConfig, create_app, read_api_keys
from .latency import LatencyProfile


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free port chosen by the OS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on such sockets, and without it every
    # keep-alive response stalls until the client's delayed-ACK timer fires (Nagle's algorithm against the
    # client's delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _head_deadline_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose next request head is not complete within ``seconds``.

    uvicorn times out only idle keep-alive connections, and any byte received
    resets that timer, so a client that opens a connection and sends nothing,
    or dribbles a request head a byte at a time, would hold it (and a file
    descriptor) forever. The deadline runs from the connection's opening and
    from each response's end; request bodies have their own (the app's
    ``receive_timeout``), and a request being answered is never cut.
    """

    class HeadDeadlineProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self) -> None:
            self.loop.call_later(seconds, self._expire, self.cycle)

        def _expire(self, armed: Any) -> None:
            waiting = self.cycle is None or self.cycle.response_complete  # no request in progress...
            if waiting and self.cycle is armed and not self.transport.is_closing():  # ...and no new one since
                self.transport.close()

    return HeadDeadlineProtocol


def _uvicorn(app: Any, config: ServerConfig) -> uvicorn.Server:
    """uvicorn with the config's connection limits: at most ``max_connections`` at once (more get 503),
    idle keep-alive connections closed after ``keep_alive`` s, request heads within ``receive_timeout`` s
    (:func:`_head_deadline_protocol`; h11 caps their size at 16 KiB) and bodies by the app (``max_body_bytes``,
    ``receive_timeout``)."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                         http=_head_deadline_protocol(config.receive_timeout),
                                         limit_concurrency=config.max_connections,
                                         timeout_keep_alive=config.keep_alive))


@contextmanager
def running_server(config: ServerConfig, host: str = "127.0.0.1", port: int = 0, *,
                   wrap: Callable[[Any], Any] | None = None) -> Iterator[str]:
    """Run a server in a background thread of this process; yields its root URL ``http://HOST:PORT``.

    For tests and notebooks. ``wrap`` may put ASGI middleware around the app
    (it must pass lifespan events through). The server stops (gracefully,
    like SIGTERM) when the block exits.
    """
    sock = bind(host, port)
    app = create_app(config)
    server = _uvicorn(wrap(app) if wrap else app, config)
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),), daemon=True,
                              name="qstore-ionq-server")
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start (see the log)")
            time.sleep(0.005)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def serve(host: str, port: int, api_keys_file: str | os.PathLike | None, db: str | os.PathLike,
          profile: str | os.PathLike = "none", **settings: Any) -> None:
    """Run the server until interrupted; prints ``listening on http://HOST:PORT`` once it accepts connections.

    Args:
        host: interface to bind, e.g. ``"127.0.0.1"``.
        port: TCP port; 0 picks a free one (printed).
        api_keys_file: file with one API key per line (also read: ``QSTORE_API_KEYS``).
        db: SQLite job store; unfinished jobs in it resume at start-up.
        profile: latency profile name (``"none"``, ``"ionq-cloud"``) or a JSON file path.
        settings: any other field of :class:`ServerConfig` (``workers``, ``limits``, ``retain``...).
    """
    config = ServerConfig(db=Path(db), api_keys=read_api_keys(api_keys_file), profile=LatencyProfile.load(profile),
                          **settings)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    server = _uvicorn(create_app(config), config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"listening on http://{host}:{actual}", flush=True)
        await task
        if not server.started:  # uvicorn logged why (e.g. the job store is locked by another server)
            raise SystemExit(3)

    asyncio.run(run())


