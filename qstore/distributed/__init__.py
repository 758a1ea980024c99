"""Scale-out on Dask (extra ``dask``): :class:`DaskSimulator`, the engine's Simulator API on a cluster.

* :mod:`.simulator`: :class:`DaskSimulator`, :func:`connect` (a cluster by address, or a local one),
  :func:`share` (data scattered to every worker), chunk sizing from measured costs.
* ``as_completed``: Dask's, re-exported so that code using this package needs no import of Dask's own
  (which would fail without the ``dask`` extra before this package could say so).
* :mod:`.sharedmem`, :mod:`.blocks`, :mod:`.standby`, :mod:`.notices`: the same-machine transport
  (rows and results in shared memory, rows claimed in blocks, pre-dispatched tasks, completion notices).
"""

from .._extras import MissingExtraError

try:
    import dask  # noqa: F401  (needed by the modules below)
    from distributed import as_completed
except ImportError as error:
    raise MissingExtraError("dask", "qstore.distributed (and qstore sweep)", error) from error

from .sharedmem import SharedMemoryUnavailable
from .simulator import (
    BLOCK_BYTES,
    CHUNK_BYTES,
    CLIENT_BATCH_SECONDS,
    MIN_BLOCK_SECONDS,
    STAGE_BYTES,
    DaskSimulator,
    RunStats,
    chunk_size,
    connect,
    share,
    worker_slots,
)

__all__ = [
    "BLOCK_BYTES",
    "as_completed",
    "CHUNK_BYTES",
    "CLIENT_BATCH_SECONDS",
    "MIN_BLOCK_SECONDS",
    "STAGE_BYTES",
    "DaskSimulator",
    "RunStats",
    "SharedMemoryUnavailable",
    "chunk_size",
    "connect",
    "share",
    "worker_slots",
]
