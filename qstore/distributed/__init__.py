"""Scale-out on Dask (extra ``dask``): :class:`DaskSimulator`, the engine's Simulator API on a cluster.

* :mod:`.simulator`: :class:`DaskSimulator`, :class:`RunStats`, :func:`chunk_rows` and
  :func:`chunk_starts` (the cost model: how a call's rows are cut into tasks).
* :mod:`.cluster`: :func:`connect` (a cluster by address or client, or a local one started here),
  :func:`share` (data every task of a run may need), :func:`worker_slots`.
* ``Client``, ``as_completed``: Dask's, re-exported so that code using this package needs no import of Dask's own
  (which would fail without the ``dask`` extra before this package could say so).
"""

from .._extras import MissingExtraError

try:
    import dask  # noqa: F401  (needed by the modules below)
    from distributed import Client, as_completed
except ImportError as error:
    raise MissingExtraError("dask", "qstore.distributed (and qstore sweep)", error) from error

from .cluster import Connection, connect, share, worker_slots
from .simulator import CIRCUITS, INLINE_BYTES, DaskSimulator, RunStats, chunk_rows, chunk_starts

__all__ = [
    "CIRCUITS",
    "INLINE_BYTES",
    "Client",
    "Connection",
    "DaskSimulator",
    "RunStats",
    "as_completed",
    "chunk_rows",
    "chunk_starts",
    "connect",
    "share",
    "worker_slots",
]
