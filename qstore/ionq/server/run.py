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


def _uvicorn(app: Any) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))


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
    server = _uvicorn(wrap(app) if wrap else app)
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
          profile: str | os.PathLike = "none", *, workers: int = 2, max_qubits: int = 20,
          max_shots: int = 1_000_000, max_body_bytes: int = 10 * 2**20) -> None:
    """Run the server until interrupted; prints ``listening on http://HOST:PORT`` once it accepts connections.

    Args:
        host: interface to bind, e.g. ``"127.0.0.1"``.
        port: TCP port; 0 picks a free one (printed).
        api_keys_file: file with one API key per line (also read: ``QSTORE_API_KEYS``).
        db: SQLite job store; unfinished jobs in it resume at start-up.
        profile: latency profile name (``"none"``, ``"ionq-cloud"``) or a JSON file path.
        workers, max_qubits, max_shots, max_body_bytes: see :class:`ServerConfig`.
    """
    config = ServerConfig(db=Path(db), api_keys=read_api_keys(api_keys_file), profile=LatencyProfile.load(profile),
                          workers=workers, max_qubits=max_qubits, max_shots=max_shots, max_body_bytes=max_body_bytes)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    server = _uvicorn(create_app(config))

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


