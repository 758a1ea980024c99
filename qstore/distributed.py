"""Scale-out on Dask: the engine's batch contract on a cluster, with :class:`DaskExecutor`.

When one machine is not enough, bring a Dask cluster (``dask-scheduler`` and
``dask-worker`` processes, or any Dask deployment whose workers have this
package installed); with no address a :class:`~distributed.LocalCluster` of
worker processes with one thread each is started on this machine.

:class:`DaskExecutor` *is* a :class:`qsim_core.Simulator` (same methods, same
signatures, same seeding) whose backend is the cluster, so anything that
takes a Simulator takes it: :class:`qstore.layers.QuantumLayer`, the
in-process target of :class:`qstore.executor.AsyncQuantumExecutor`, and, by
``__call__``, qsim_core's counts-only executor protocol
``executor(circuit, params[N, P], shots) -> list[dict[int, int]]``.

How a call runs
---------------
The Simulator validates the input and draws the call's sampling key as it
always does; then the batch ``params[B, P]`` is cut into chunks of
consecutive rows, one task per chunk, each run by the engine (numba or
Cython, or the reference backend for checking) on a worker with one thread, and the results are put back
in row order as the chunks finish.

* **The circuit travels once per worker.** Each distinct circuit structure is
  put on the cluster once, as the result of a task (so the scheduler can
  recompute it if every copy is lost, which a scattered value would not
  allow); a worker fetches it from a peer the first time one of its chunks
  needs it and keeps it, and compiles it once (the compiled program is cached
  on the circuit object the worker keeps). A chunk carries only its rows.
* **Chunk size from a measured overhead.** On connecting, the executor times
  no-op tasks: :attr:`DaskExecutor.task_overhead` is the seconds of a worker
  slot each task costs beyond its work. Every finished call records the
  engine's seconds per row for its (circuit structure, method, shots), and
  the next call of the same kind sizes its chunks so that the overhead is at
  most ``max_overhead`` of a chunk's work, in whole rounds over the worker
  slots (:func:`chunk_size`), and no chunk carries more than
  :data:`CHUNK_BYTES` of rows. Chunks are submitted as a sliding window,
  :data:`WINDOW` per worker slot: the first ones start without waiting behind
  the whole batch's data, and each worker receives its next chunk while it
  runs one.
* **Same results.** A row's expectations, probabilities, state and gradients
  do not depend on which rows share its call, so they equal the in-process
  engine's bit for bit (for circuits wider than ``block_qubits``, numba's
  state-parallel reductions depend on the thread count: they equal
  ``Simulator(threads=1)``'s, the thread count of a task). Samples: row ``g``
  of a call draws from a stream of its own, derived from the call's key and
  ``g``; a chunk whose first row is ``g0`` runs as one batch with the
  backend's ``offset=g0``, so its rows draw the streams of their rows in the
  whole batch, and a DaskExecutor and a Simulator with the same seed return
  the same samples, shot estimates and SPSA gradients whatever the chunking.
* **Faults.** Chunks are pure tasks holding their own rows. A worker that
  dies takes only its unfinished chunks (and finished ones not yet gathered)
  with it; the scheduler reruns them elsewhere (up to Dask's
  ``distributed.scheduler.allowed-failures`` times, then the call raises
  :class:`~distributed.KilledWorker`). Results are gathered as chunks finish
  and placed by row offset, so no row is lost or counted twice.

Example::

    with DaskExecutor(workers=2, seed=7) as sim:            # or DaskExecutor("tcp://scheduler:8786")
        ev = sim.expectation(circuit, ["Z0", "Z1"], theta)   # theta[B, P] -> [B, 2], as a Simulator
        layer = QuantumLayer(config, sim, rng)               # the model trains on the cluster
        print(sim.task_overhead, sim.last_run)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
from distributed import Client, Future, LocalCluster, as_completed

import qsim_core as qc
from qsim_core.backends import Job, get_backend
from qsim_core.circuit import Circuit
from qsim_core.observables import PauliStrings
from qsim_core.program import DEFAULT_BLOCK_QUBITS

#: circuit structures whose shared copy the executor keeps on the cluster (least recently used dropped)
_SHARED_CIRCUITS = 64
#: (structure, method, shots) kinds of call whose measured cost per row the executor remembers
_COSTS = 1024
#: calls with fewer rows than this do not update the learned seconds per row (their time is mostly one-off cost)
_MIN_ROWS_TO_LEARN = 64
#: chunks in flight per worker slot: one running, one arriving
WINDOW = 2
#: most bytes of rows one task carries: its rows travel inside its message, through the scheduler (which
#: warns about tasks over 10 MB)
CHUNK_BYTES = 4 << 20


def connect(address: str | None = None, workers: int | None = None, *,
            timeout: float = 60.0) -> tuple[Client, LocalCluster | None]:
    """A client of the scheduler at ``address``, or of a new local cluster.

    Args:
        address: a scheduler address (``"tcp://host:8786"``); None starts a
            :class:`~distributed.LocalCluster` on the loopback interface.
        workers: worker processes of the local cluster, one thread each
            (default: one per core); only without ``address``.
        timeout: seconds to wait for the scheduler and for the first worker(s).

    Returns:
        ``(client, cluster)``; ``cluster`` is None for an existing scheduler.
        Close both when done (the client first).

    Raises:
        ValueError: ``workers`` with an address, or not a positive integer.
        OSError, TimeoutError: the scheduler or its workers cannot be reached in time.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if address is not None:
        if workers is not None:
            raise ValueError("workers= sizes a local cluster; a scheduler at an address has its own workers")
        client = Client(address, timeout=timeout)
        client.wait_for_workers(1, timeout=timeout)
        return client, None
    # Everything on loopback, the scheduler's HTTP endpoint (health, dashboard) on a free port rather than 8787.
    # One engine thread per worker process: NUMBA_NUM_THREADS caps numba's pool (Dask's nanny sets
    # OMP_NUM_THREADS=1, which caps the Cython kernels), so neighbouring workers do not fight for cores. Not
    # Dask's MALLOC_TRIM_THRESHOLD_: it switches off glibc's adaptive mmap threshold, so every chunk's
    # multi-megabyte buffers would be fresh pages (a 10 % slower engine).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", env={"NUMBA_NUM_THREADS": "1"})
    try:
        client = Client(cluster, timeout=timeout)
        client.wait_for_workers(len(cluster.workers), timeout=timeout)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def share(client: Client, value: Any, name: str) -> Future:
    """``value`` on the cluster as the result of a task: each worker fetches it once, when a task needs it.

    Unlike :meth:`~distributed.Client.scatter`, the scheduler can recompute it
    if every worker holding it dies. Keep the future while tasks use it.
    """
    return client.submit(_identity, value, key=f"{name}-{uuid.uuid4().hex}", pure=False)


def worker_slots(client: Client) -> int:
    """Worker threads of the cluster (at least 1, so a cluster between worker restarts still plans work)."""
    return max(1, sum(worker["nthreads"] for worker in client.scheduler_info()["workers"].values()))


def chunk_size(batch: int, row_seconds: float | None, task_overhead: float, slots: int,
               max_overhead: float = 0.05) -> int:
    """Rows per task for a batch of ``batch`` rows (>= 1).

    Args:
        batch: rows B of the call.
        row_seconds: the engine's seconds per row for this kind of call, None
            if not measured yet (then two tasks per slot).
        task_overhead: seconds of a worker slot one task costs beyond its work.
        slots: worker threads.
        max_overhead: largest overhead of a task as a fraction of its work.

    The number of tasks is the largest that keeps each one's overhead within
    ``max_overhead``, rounded down to whole rounds over the slots (so all
    slots finish together); with less work than that needs for every slot,
    the work is still spread over as many slots as have more work than
    overhead.
    """
    if row_seconds is None:
        tasks = 2 * slots
    else:
        work = batch * row_seconds
        tasks = math.floor(work * max_overhead / task_overhead)
        tasks = tasks // slots * slots if tasks >= slots else min(slots, math.floor(work / task_overhead))
    tasks = min(max(tasks, 1), max(batch, 1))
    return -(-batch // tasks) if batch else 1


@dataclasses.dataclass(frozen=True)
class RunStats:
    """One call on the cluster.

    Attributes:
        method: the backend method (``"expectation"``, ``"sample"``, ``"adjoint"``, ...).
        rows: parameter rows B.
        chunks: tasks the rows were cut into.
        rows_per_chunk: rows of every chunk but possibly the last.
        seconds: wall seconds of the call on the client.
        engine_seconds: seconds the engine ran on the workers, summed over chunks (reruns not counted).
    """

    method: str
    rows: int
    chunks: int
    rows_per_chunk: int
    seconds: float
    engine_seconds: float


class DaskExecutor(qc.Simulator):
    """A :class:`qsim_core.Simulator` whose batches run on a Dask cluster (see the module docstring).

    Args:
        address: scheduler address; None starts a local cluster (see :func:`connect`).
        workers: worker processes of the local cluster (default: one per core).
        backend: the engine the workers run: ``"numba"``, ``"cython"`` or ``"auto"``
            (resolved here, the fastest on this machine; the workers must have it
            too); ``"reference"``, the slow numpy oracle, for checking.
        precision, seed, block_qubits: as for :class:`~qsim_core.Simulator`; the
            same seed gives the same samples as a Simulator's.
        chunk_rows: rows per task; None sizes chunks from the measured overhead.
        max_overhead: largest task overhead as a fraction of a task's work, in (0, 1).
        timeout: seconds to wait for the scheduler and its workers.

    Raises:
        BackendUnavailableError: the backend is unknown or not built here.
        ValueError: a bad ``workers``, ``chunk_rows`` or ``max_overhead``.

    Close it (``close()`` or ``with``); closing a local cluster stops its workers.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, backend: str = "auto",
                 precision: str = "double", seed: int | None = None, block_qubits: int = DEFAULT_BLOCK_QUBITS,
                 chunk_rows: int | None = None, max_overhead: float = 0.05, timeout: float = 60.0) -> None:
        super().__init__(backend=backend, precision=precision, seed=seed, threads=1, block_qubits=block_qubits)
        engine = self._backend.name
        if chunk_rows is not None and (isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int)
                                       or chunk_rows < 1):
            raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}")
        if not isinstance(max_overhead, (int, float)) or not 0 < max_overhead < 1:
            raise ValueError(f"max_overhead must be a fraction in (0, 1), got {max_overhead!r}")
        self.chunk_rows = chunk_rows
        self.max_overhead = float(max_overhead)
        self.client, self._cluster = connect(address, workers, timeout=timeout)
        # every call goes through the Simulator's backend: here, the cluster
        self._backend = self._cluster_backend = _ClusterBackend(self, engine)
        try:
            self.client.run(get_backend, engine)  # load the engine in every worker now, not in the first chunks
            self.task_overhead = self.measure_overhead()
        except BaseException:
            self.close()
            raise

    @property
    def engine(self) -> str:
        """The backend the workers run."""
        return self._cluster_backend.engine

    @property
    def slots(self) -> int:
        """Worker threads of the cluster now."""
        return worker_slots(self.client)

    @property
    def last_run(self) -> RunStats | None:
        """Statistics of the last call that ran on the cluster (None before the first)."""
        return self._cluster_backend.last_run

    def measure_overhead(self, tasks_per_slot: int = 8, repeat: int = 3) -> float:
        """Seconds of a worker slot one task costs beyond its work (median of ``repeat`` rounds).

        A round submits ``tasks_per_slot`` no-op tasks per slot at once (the way
        chunks are submitted) and charges its wall time, times the slots, to its tasks.
        """
        workers = self.slots
        rounds = []
        for _ in range(repeat):
            start = time.perf_counter()
            self.client.gather(self.client.map(_identity, range(tasks_per_slot * workers), pure=False))
            rounds.append((time.perf_counter() - start) / tasks_per_slot)
        return statistics.median(rounds)

    def __call__(self, circuit: Circuit, params: np.ndarray, shots: int) -> list[dict[int, int]]:
        """qsim_core's counts-only executor protocol: one counts dict per row of ``params[N, P]``."""
        return self.counts(circuit, shots, np.asarray(params, np.float64).reshape(len(params), -1))

    def close(self) -> None:
        """Release the circuits kept on the cluster, disconnect, and stop the local cluster if one was started."""
        self._cluster_backend.circuits.clear()
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DaskExecutor({self.client.scheduler.address!r}, engine={self.engine!r}, slots={self.slots}, "
                f"task_overhead={self.task_overhead * 1e3:.1f} ms)")


class _ClusterBackend:
    """qsim_core's Backend protocol over the cluster: a job's rows in chunks, each run by ``engine`` on a worker."""

    def __init__(self, executor: DaskExecutor, engine: str) -> None:
        self.executor = executor
        self.engine = engine
        self.name = f"dask:{engine}"
        self.circuits: OrderedDict[tuple, Future] = OrderedDict()
        self.row_seconds: OrderedDict[tuple, float] = OrderedDict()
        self.last_run: RunStats | None = None

    def statevector(self, job: Job) -> np.ndarray:
        """Final states, dtype[B, 2**n]."""
        return self._map(job, "statevector")

    def probabilities(self, job: Job) -> np.ndarray:
        """Basis-state probabilities, float64[B, 2**n]."""
        return self._map(job, "probabilities")

    def expectation(self, job: Job, observables: PauliStrings) -> np.ndarray:
        """Exact expectations, float64[B, K]."""
        return self._map(job, "expectation", (observables,))

    def sample(self, job: Job, shots: int, key: int) -> np.ndarray:
        """Basis indices, int64[B, shots], row g from the stream (key, g)."""
        return self._map(job, "sample", (shots,), key=key)

    def shot_expectation(self, job: Job, observables: PauliStrings, shots: int, key: int) -> np.ndarray:
        """Shot estimates of the expectations, float64[B, K], row g from the stream (key, g)."""
        return self._map(job, "shot_expectation", (observables, shots), key=key)

    def adjoint(self, job: Job, observables: PauliStrings, weights: np.ndarray) -> tuple:
        """The engine's adjoint results (expectations [B, K], gradients [B, L, P], ...), rows in order."""
        return self._map(job, "adjoint", (observables,), batched=(weights,))

    def _map(self, job: Job, method: str, args: tuple = (), *, batched: Sequence[np.ndarray] = (),
             key: int | None = None) -> Any:
        """``engine.method(job, *args, *batched, [key])`` chunk by chunk on the cluster, merged in row order."""
        executor = self.executor
        if job.batch == 0:  # nothing to distribute; the engine gives the empty results their shapes
            arguments = (*args, *batched) if key is None else (*args, key)
            return getattr(get_backend(self.engine), method)(job, *arguments)
        started = time.perf_counter()
        structure = job.circuit.structure_key()
        cost = (structure, method, args[-1] if key is not None else 0)
        size = executor.chunk_rows
        if size is None:
            row_bytes = sum(array[0].nbytes for array in (*_batch_arrays(job).values(), *batched))
            size = min(chunk_size(job.batch, self.row_seconds.get(cost), executor.task_overhead, executor.slots,
                                  executor.max_overhead), max(1, CHUNK_BYTES // row_bytes))
        starts = range(0, job.batch, size)
        token = uuid.uuid4().hex[:12]
        circuit = self._shared(job.circuit, structure)
        client = executor.client

        def submit(k: int) -> Future:
            rows = slice(starts[k], starts[k] + size)
            return client.submit(_run_chunk, circuit, _job_fields(_rows(job, rows)), self.engine, method,
                                 (*args, *(array[rows] for array in batched)), key, starts[k],
                                 key=f"qsim-{method}-{token}-{k}", pure=False)

        # A window of chunks in flight, the next one submitted as one finishes: the first chunks reach the
        # workers without waiting behind the whole batch's data, and a worker has its next chunk while it runs one.
        in_flight = {submit(k): k for k in range(min(len(starts), WINDOW * executor.slots))}
        following = iter(range(len(in_flight), len(starts)))
        finished = as_completed(in_flight, with_results=True)
        parts: list[Any] = [None] * len(starts)
        engine_seconds = 0.0
        try:
            for future, (part, seconds) in finished:
                parts[in_flight.pop(future)] = part
                engine_seconds += seconds
                k = next(following, None)
                if k is not None:
                    future = submit(k)
                    in_flight[future] = k
                    finished.add(future)
        except BaseException:
            client.cancel(list(in_flight))  # a chunk failed or the caller gave up: stop the chunks still running
            raise
        # A small call's time is mostly one-off cost (compilation, the first touch of a program), which
        # would make the next large batch look expensive and be cut into thousands of tiny tasks: learn
        # only from calls of some size, and keep the cheapest rate seen (one-off costs only ever add).
        if job.batch >= _MIN_ROWS_TO_LEARN:
            rate = engine_seconds / job.batch
            self.row_seconds[cost] = min(rate, self.row_seconds.get(cost, rate))
            self.row_seconds.move_to_end(cost)
        if len(self.row_seconds) > _COSTS:
            self.row_seconds.popitem(last=False)
        self.last_run = RunStats(method, job.batch, len(starts), size, time.perf_counter() - started, engine_seconds)
        return _merge(parts)

    def _shared(self, circuit: Circuit, structure: tuple) -> Future:
        """The cluster's copy of circuits of this structure (shared on first use)."""
        future = self.circuits.get(structure)
        if future is None:
            # a copy: the circuit's memo (compiled programs) stays here, the workers compile their own
            future = self.circuits[structure] = share(self.executor.client, circuit.copy(), "qsim-circuit")
            if len(self.circuits) > _SHARED_CIRCUITS:
                self.circuits.popitem(last=False)
        else:
            self.circuits.move_to_end(structure)
        return future


def _identity(value: Any) -> Any:
    return value


def _batch_arrays(job: Job) -> dict[str, np.ndarray]:
    """The job's batch-first arrays by field name: the parameters (and initial states, where a job has them)."""
    return {field.name: getattr(job, field.name) for field in dataclasses.fields(job)
            if isinstance(getattr(job, field.name), np.ndarray)}


def _rows(job: Job, rows: slice) -> Job:
    """``job`` restricted to ``rows``."""
    return dataclasses.replace(job, **{name: array[rows] for name, array in _batch_arrays(job).items()})


def _job_fields(job: Job) -> dict[str, Any]:
    """What a chunk task needs of its job: all but the circuit (shared once), one engine thread."""
    fields = {field.name: getattr(job, field.name) for field in dataclasses.fields(job) if field.name != "circuit"}
    return {**fields, "threads": 1}


def _run_chunk(circuit: Circuit, fields: dict[str, Any], engine: str, method: str, args: tuple, key: int | None,
               offset: int) -> tuple[Any, float]:
    """Worker side: ``method`` of the engine on one chunk, rows ``offset..``; returns (result, engine seconds)."""
    backend = get_backend(engine)
    job = Job(circuit=circuit, **fields)
    start = time.perf_counter()
    if key is None:
        result = getattr(backend, method)(job, *args)
    else:  # the chunk's rows draw the streams of their rows in the whole batch
        result = getattr(backend, method)(job, *args, key, offset)
    return result, time.perf_counter() - start


def _merge(parts: list[Any]) -> Any:
    """Chunk results concatenated along the batch: arrays, or tuples of arrays (None entries stay None)."""
    if isinstance(parts[0], tuple):
        return tuple(None if column[0] is None else np.concatenate(column) for column in zip(*parts, strict=True))
    return np.concatenate(parts)


__all__ = ["CHUNK_BYTES", "DaskExecutor", "RunStats", "chunk_size", "connect", "share", "worker_slots"]
