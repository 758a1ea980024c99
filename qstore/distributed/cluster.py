"""Getting a Dask cluster to work on: an existing one by address or client, or a local one started here.

Everything goes through Dask's public API: :class:`~distributed.Client`,
:class:`~distributed.LocalCluster` and its configuration keys.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import dask
from distributed import Client, Future, LocalCluster


@dataclass
class Connection:
    """A client, and what this process started for it (closed by :meth:`close`, in that order).

    Attributes:
        client: the Dask client.
        cluster: the local cluster started for it, or None for an existing scheduler.
        owns_client: whether :meth:`close` closes the client (False for a client the caller gave).
        timeout: seconds the client tries to reconnect to a lost scheduler before it closes itself.
    """

    client: Client
    cluster: LocalCluster | None = None
    owns_client: bool = True
    timeout: float = 60.0
    _scratch: str | None = field(default=None, repr=False)

    def close(self) -> None:
        """Close the client (if it was opened here), then the local cluster and its scratch folder."""
        if self.owns_client:
            self._settle()
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _settle(self) -> None:
        # A client that lost its scheduler reconnects for `timeout` seconds, then closes itself. Closing it
        # from here meanwhile runs two closes of its connection pool at once, and distributed's second
        # one raises "Cannot change state of expiring Timeout": wait for its own close instead.
        deadline = time.monotonic() + self.timeout + 5.0
        while self.client.status in ("connecting", "closing") and time.monotonic() < deadline:
            time.sleep(0.05)


def connect(address: str | None = None, workers: int | None = None, *, client: Client | None = None,
            timeout: float = 60.0) -> Connection:
    """A client of the scheduler at ``address``, a given client, or a client of a new local cluster.

    Args:
        address: a scheduler address (``"tcp://host:8786"``); None (and no ``client``) starts a
            :class:`~distributed.LocalCluster` of worker processes on the loopback interface.
        workers: worker processes of the local cluster, one thread each (default: one per core);
            only without ``address`` and ``client``.
        client: an existing client to use as it is (not closed by :meth:`Connection.close`).
        timeout: seconds to wait for the scheduler and for its first worker(s).

    Returns:
        The :class:`Connection`; close it when done.

    Raises:
        ValueError: conflicting arguments, or ``workers`` not a positive integer.
        OSError: the scheduler cannot be reached, or no worker joins, within ``timeout`` (the message
            names the address).
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if client is not None or address is not None:
        if workers is not None:
            raise ValueError("workers= sizes a local cluster; an existing cluster has its own workers")
        if client is not None and address is not None:
            raise ValueError("give a scheduler address or a client, not both")
    if client is not None:
        return Connection(client, owns_client=False)
    if address is not None:
        try:
            remote = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise OSError(f"cannot reach a Dask scheduler at {address!r} within {timeout:g} s: {error}") from None
        connection = Connection(remote, timeout=timeout)
        _wait_for_workers(connection, 1, timeout, address)
        return connection
    scratch = tempfile.mkdtemp(prefix="qstore-dask-")
    # One engine thread per worker process: NUMBA_NUM_THREADS caps numba's pool (Dask's nanny sets
    # OMP_NUM_THREADS=1, which caps the Cython kernels), so neighbouring workers do not fight for cores.
    # Quiet workers: with every core running the engine, each wake-up of a worker's own threads preempts it.
    quiet = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
             "distributed.admin.system-monitor.interval": "2s"}
    # Dask keeps its workers' folders and their lock files under its temporary directory: ours, removed on close.
    # glibc's own malloc policy, not Dask's MALLOC_TRIM_THRESHOLD_=65536 (None unsets it: Dask's documented
    # override). That setting also freezes glibc's mmap threshold at 128 KiB, so every array a task receives or
    # makes (its rows, its results, the engine's buffers) is fresh mmapped memory that the kernel zeroes page
    # by page: 12-17 % of a worker's CPU in the 8Z benchmark, and a vjp 7-9 % slower. A worker's memory is a
    # few chunks of rows, which glibc's default keeps for reuse instead.
    with dask.config.set({"temporary-directory": scratch,
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", env={"NUMBA_NUM_THREADS": "1"}, config=quiet,
                               local_directory=scratch)
    connection = Connection(Client(cluster, timeout=timeout), cluster, timeout=timeout, _scratch=scratch)
    _wait_for_workers(connection, len(cluster.workers), timeout, "a local cluster")
    return connection


def _wait_for_workers(connection: Connection, count: int, timeout: float, where: str) -> None:
    try:
        connection.client.wait_for_workers(count, timeout=timeout)
    except (OSError, TimeoutError) as error:
        connection.close()
        raise OSError(f"no Dask worker joined {where} within {timeout:g} s: {error}") from None


def share(client: Client, value: Any, name: str) -> Future:
    """``value`` on the cluster as the result of a task: each worker fetches it once, when a task needs it.

    Unlike :meth:`~distributed.Client.scatter`, the scheduler can recompute it
    if every worker holding it dies. Keep the future while tasks use it.
    """
    return client.submit(_identity, value, key=f"{name}-{uuid.uuid4().hex}", pure=False)


def worker_slots(client: Client) -> int:
    """Worker threads of the cluster now (at least 1, so a cluster between worker restarts still plans work)."""
    return max(1, sum(client.nthreads().values()))


def _identity(value: Any) -> Any:
    return value
