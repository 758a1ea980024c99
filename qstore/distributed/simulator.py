"""Scale-out on Dask: the engine's batch contract on a cluster, with :class:`DaskSimulator`.

Over 800 lines: the same-machine transport's call paths live here; the plain-Dask rewrite (issue 15) replaces them.

When one machine is not enough, bring a Dask cluster (``dask-scheduler`` and
``dask-worker`` processes, or any Dask deployment whose workers have this
package installed); with no address a :class:`~distributed.LocalCluster` of
worker processes with one thread each is started on this machine.

:class:`DaskSimulator` *is* a :class:`qsim_core.Simulator` (same methods, same
signatures, same seeding) whose backend is the cluster, so anything that
takes a Simulator takes it: :class:`qstore.ml.layers.QuantumLayer`, the
in-process target of :class:`qstore.execution.executor.AsyncQuantumExecutor`, and, by
``__call__``, qsim_core's counts-only executor protocol
``executor(circuit, params[N, P], shots) -> list[dict[int, int]]``.

How a call runs
---------------
The Simulator validates the input and draws the call's sampling key as it
always does; then the batch ``params[B, P]`` is run in parts of consecutive
rows by Dask tasks, each part by the engine (numba or Cython, or the
reference backend for checking) on a worker with one thread, and the results
are put back in row order.

* **The circuit travels once per worker.** Each distinct circuit structure is
  installed on every worker as a Dask worker plugin, which Dask also sends to
  workers that join later (a restarted one included); the worker compiles it
  once (the compiled program is cached on the circuit object it keeps). A
  task carries only the circuit's name, so it depends on no data held
  by particular workers and the scheduler gives it to whichever is free (a
  dependency on a copy held by one worker made Dask queue every task there).
* **Rows through shared memory on the same machine, shared out on demand.**
  When every worker can map this client's POSIX shared-memory segments
  (checked on connecting: a local cluster, or workers on this host), a call
  copies its rows once into a segment and the workers write their results
  into another, both reused by later calls (their pages are mapped once), so
  a task message is a few hundred bytes whatever the batch
  (:mod:`qstore.distributed.sharedmem`). Such a call runs one
  task per worker slot, and the tasks share the rows out among themselves:
  each claims the next block of rows from a board in the output segment,
  runs it and claims again until none are left, the blocks shrinking as the
  rows run out (:mod:`qstore.distributed.blocks`). So a worker slowed down by anything
  (a core shared with this client, a busy neighbour) takes fewer blocks, and
  the workers finish within a small block of each other, where with equal
  chunks fixed in advance the faster worker sat idle while the slower one
  finished; a claim costs a few lock calls, far less than the scheduler
  round trip each further Dask task costs. The tasks go out first; the rows
  are copied in :data:`STAGE_BYTES` parts while the tasks travel to the
  workers, each part released by a lock, so a block waits only for its own rows.
  A worker that has written a block tells the client at once through a
  datagram (:mod:`qstore.distributed.notices`), and the client copies each block's
  results out while the others run.
* **Standby tasks skip Dask's dispatch.** Each such call also leaves one
  task per worker slot waiting on the workers, out of their thread pools,
  for the next call (:mod:`qstore.distributed.standby`): the next call hands its tasks
  to them by datagram and they start at once, without Dask's dispatch
  (client, scheduler and worker event loops), which takes most of a small
  call's time. With them a small call through shared memory is much faster
  than in task messages, which is why every call goes through shared memory
  where the workers can map it. The
  client's message batching is also cut from Dask's 10 ms to
  :data:`CLIENT_BATCH_SECONDS`, so a call's tasks do not wait behind the
  previous call's messages.
* **Rows in messages otherwise** (workers on other machines, or a
  worker that cannot map the segments): chunks of at most
  :data:`CHUNK_BYTES` of rows, a task each, as a sliding window of
  :data:`WINDOW` chunks per worker slot so that the first ones start
  without waiting behind the whole batch's data. A worker that turns out
  not to see the segments (one that joined from elsewhere) switches shared
  memory off for good and the call is rerun in messages;
  :attr:`RunStats.transport` says which way a call went.
* **Sizes from measured costs.** On connecting, the executor times no-op
  tasks: :attr:`DaskSimulator.task_overhead` is the seconds of a worker slot
  each task costs beyond its work. Every finished call records the engine's
  seconds per row for its (circuit structure, method, shots). The next call
  of the same kind through shared memory runs a task on every slot that
  gets more work than that overhead, in blocks of at least
  :data:`MIN_BLOCK_SECONDS` of work; in messages it sizes its chunks so that
  the overhead is at most ``max_overhead`` of a chunk's work, in whole rounds
  over the worker slots (:func:`chunk_size`). Tasks that go out together go
  in one message (Dask's client batches messages: with its default 10 ms,
  the second worker of a call started a whole batching interval late).
* **Same results.** A row's expectations, probabilities, state and gradients
  do not depend on which rows share its call, so they equal the in-process
  engine's bit for bit (for circuits wider than ``block_qubits``, numba's
  state-parallel reductions depend on the thread count: they equal
  ``Simulator(threads=1)``'s, the thread count of a task). Samples: row ``g``
  of a call draws from a stream of its own, derived from the call's key and
  ``g``; a part whose first row is ``g0`` runs as one batch with the
  backend's ``offset=g0``, so its rows draw the streams of their rows in the
  whole batch, and a DaskSimulator and a Simulator with the same seed return
  the same samples, shot estimates and SPSA gradients however the rows are
  cut.
* **Faults.** Tasks are pure: their rows are in their message, or in the
  client's input segment until the call ends. A worker that dies takes only
  its unfinished tasks (and, in messages, finished ones not yet gathered)
  with it; the scheduler reruns them elsewhere (up to Dask's
  ``distributed.scheduler.allowed-failures`` times, then the call raises
  :class:`~distributed.KilledWorker`). Through shared memory, the block the
  dead worker was running is left claimed but not written: once its task
  has ended (rerun or not), the client gives that block to a new task
  (:attr:`RunStats.redone` counts them). A rerun computes and writes the same
  rows again, so no row is lost or counted twice. A task still running after
  its call ended (cancelled, or a late duplicate) claims and writes nothing:
  each call stamps its output segment, and a worker claims and writes only
  while the stamp is its call's (:func:`~qstore.distributed.sharedmem.writing`).
* **Several executors in one process** each wait on their own client's event
  loop (Dask's ``as_completed`` defaults to the newest client's, on which an
  older client's calls waited until that loop happened to wake up, or forever).

Example::

    with DaskSimulator(workers=2, seed=7) as sim:            # or DaskSimulator("tcp://scheduler:8786")
        ev = sim.expectation(circuit, ["Z0", "Z1"], theta)   # theta[B, P] -> [B, 2], as a Simulator
        layer = QuantumLayer(config, sim, rng)               # the model trains on the cluster
        print(sim.task_overhead, sim.last_run)
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import statistics
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import dask
import numpy as np
from distributed import Client, Future, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

import qsim_core as qc
from qsim_core import Circuit
from qsim_core.backends import Job, get_backend
from qsim_core.compiler import DEFAULT_BLOCK_QUBITS
from qsim_core.observables import PauliStrings

from .blocks import Board, Call, Plan, progress, serve
from .notices import Inbox
from .sharedmem import (
    ArrayRef,
    SegmentNotVisible,
    SegmentPool,
    SharedMemoryUnavailable,
    attach,
    forget,
    layout,
    token_segment,
    visible,
    wait_ready,
)
from .standby import Standby

#: circuit structures the executor keeps installed on the workers (least recently used removed)
_SHARED_CIRCUITS = 64
#: (structure, method, shots) kinds of call whose measured cost per row the executor remembers
_COSTS = 1024
#: calls with fewer rows than this do not update the learned seconds per row (their time is mostly one-off cost)
_MIN_ROWS_TO_LEARN = 64
#: chunks in flight per worker slot: one running, one arriving
WINDOW = 2
#: name prefix, among a shared-memory task's input arrays, of the method's batch-first arguments (weights)
_BATCHED = "batched:"
#: seconds the executor plans with a known number of worker slots before asking the scheduler again (a
#: round trip, as long as a small call's work)
SLOTS_MAX_AGE = 1.0
#: seconds Dask's client holds a message back to send it with the next ones (Dask's own is 10 ms)
CLIENT_BATCH_SECONDS = 0.001
#: seconds between looks at Dask's reports while a call waits for its workers' notices (which come sooner)
_DASK_POLL = 0.02
#: bytes of rows the client copies into shared memory and releases at a time (a block waits for the parts of
#: its rows, not for the whole batch)
STAGE_BYTES = 1 << 20
#: most bytes of rows in one block of a call through shared memory (so the first blocks wait little for
#: their rows to be copied)
BLOCK_BYTES = 4 << 20
#: fewest seconds of engine work in a block of a call through shared memory (so that a claim's cost, a few lock
#: calls, stays small next to its block's work)
MIN_BLOCK_SECONDS = 0.001
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
        client = _prompt(Client(address, timeout=timeout))
        client.wait_for_workers(1, timeout=timeout)
        return client, None
    # Everything on loopback, the scheduler's HTTP endpoint (health, dashboard) on a free port rather than 8787.
    # One engine thread per worker process: NUMBA_NUM_THREADS caps numba's pool (Dask's nanny sets
    # OMP_NUM_THREADS=1, which caps the Cython kernels), so neighbouring workers do not fight for cores. Not
    # Dask's MALLOC_TRIM_THRESHOLD_: it switches off glibc's adaptive mmap threshold, so every chunk's
    # multi-megabyte buffers would be fresh pages (a slower engine). And one malloc arena: tasks run in a
    # thread of the worker, whose own arena returns freed buffers to the system, so that each task faults in
    # megabytes of fresh pages again (the engine slower than on a main thread).
    environ = {"MALLOC_TRIM_THRESHOLD_": None, "MALLOC_ARENA_MAX": "1"}
    settings = {f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in environ.items()}
    # Quiet workers: with every core running the engine, each wake-up of a worker's Dask threads preempts it;
    # the statistical profiler samples 100 times a second and the event-loop watchdog ticks 50 times. This
    # process (scheduler, nannies, client) keeps its ticks: without them a lone worker's call took noticeably
    # longer (its idle core slept between the messages of a call).
    quiet = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
             "distributed.admin.system-monitor.interval": "2s"}
    with dask.config.set(settings):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", env={"NUMBA_NUM_THREADS": "1"}, config=quiet)
    try:
        client = _prompt(Client(cluster, timeout=timeout))
        client.wait_for_workers(len(cluster.workers), timeout=timeout)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def _prompt(client: Client) -> Client:
    """``client``, sending its messages to the scheduler at most :data:`CLIENT_BATCH_SECONDS` after one another.

    Dask's client batches its messages: one sent within 10 ms of the previous is held until those 10 ms are
    up, so a call's tasks waited behind the previous call's releases (for a small call, a large part of its
    time). The batching stream is Dask's internals: a version without it keeps Dask's pace.
    """
    stream = getattr(client, "scheduler_comm", None)
    if stream is not None and isinstance(getattr(stream, "interval", None), float):
        stream.interval = CLIENT_BATCH_SECONDS
    return client


def share(client: Client, value: Any, name: str) -> Future:
    """``value`` on the cluster as the result of a task: each worker fetches it once, when a task needs it.

    Unlike :meth:`~distributed.Client.scatter`, the scheduler can recompute it
    if every worker holding it dies. Keep the future while tasks use it.
    """
    return client.submit(_identity, value, key=f"{name}-{uuid.uuid4().hex}", pure=False)


def worker_slots(client: Client) -> int:
    """Worker threads of the cluster (at least 1, so a cluster between worker restarts still plans work)."""
    return _slots(_threads(client.scheduler_info()))


def _slots(threads: dict[str, int]) -> int:
    return max(1, sum(threads.values()))


def _threads(scheduler_info: dict[str, Any]) -> dict[str, int]:
    return {address: worker["nthreads"] for address, worker in scheduler_info["workers"].items()}


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
        tasks: Dask tasks the call submitted.
        chunks: parts the rows were run in: a task each in messages; blocks claimed by the tasks through shared
            memory (:mod:`qstore.distributed.blocks`).
        rows_per_chunk: rows of the largest part.
        seconds: wall seconds of the call on the client.
        engine_seconds: seconds the engine ran on the workers, summed over parts (reruns not counted).
        redone: blocks given to another task after theirs ended without finishing them (a worker died).
        transport: how the rows travelled: ``"shared memory"`` or ``"messages"``.
    """

    method: str
    rows: int
    tasks: int
    chunks: int
    rows_per_chunk: int
    seconds: float
    engine_seconds: float
    redone: int
    transport: str


class DaskSimulator(qc.Simulator):
    """A :class:`qsim_core.Simulator` whose batches run on a Dask cluster (see the module docstring).

    Args:
        address: scheduler address; None starts a local cluster (see :func:`connect`).
        workers: worker processes of the local cluster (default: one per core).
        backend: the engine the workers run: ``"numba"``, ``"cython"`` or ``"auto"``
            (resolved on the client: the first engine that loads there, in qsim_core's
            order of preference; the workers must have it too); ``"reference"``, the
            slow numpy oracle, for checking.
        precision, seed, block_qubits: as for :class:`~qsim_core.Simulator`; the
            same seed gives the same samples as a Simulator's.
        chunk_rows: rows per chunk in messages and per block through shared memory; None sizes them from
            measured costs.
        max_overhead: largest task overhead as a fraction of a chunk's work in messages, in (0, 1).
        shared_memory: rows and results of the compiled engines travel through
            shared memory when every worker can map the client's segments (same
            machine, Linux): None (default) checks that on connecting; False
            always sends them in task messages; True requires shared memory.
        timeout: seconds to wait for the scheduler and its workers.

    Raises:
        BackendUnavailableError: the backend is unknown or not built here.
        ValueError: a bad ``workers``, ``chunk_rows``, ``max_overhead`` or ``shared_memory``.
        SharedMemoryUnavailable: ``shared_memory=True`` and a worker cannot map the client's segments.

    Attributes:
        shared_memory: whether calls now send their rows through shared memory
            (turned off for good if a worker that cannot map it turns up).

    Close it (``close()`` or ``with``); closing a local cluster stops its workers.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, backend: str = "auto",
                 precision: str = "double", seed: int | None = None, block_qubits: int = DEFAULT_BLOCK_QUBITS,
                 chunk_rows: int | None = None, max_overhead: float = 0.05, shared_memory: bool | None = None,
                 timeout: float = 60.0) -> None:
        engine = get_backend(backend).name
        if chunk_rows is not None and (isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int)
                                       or chunk_rows < 1):
            raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}")
        if not isinstance(max_overhead, (int, float)) or not 0 < max_overhead < 1:
            raise ValueError(f"max_overhead must be a fraction in (0, 1), got {max_overhead!r}")
        if shared_memory is not None and not isinstance(shared_memory, bool):
            raise ValueError(f"shared_memory must be None, True or False, got {shared_memory!r}")
        self.chunk_rows = chunk_rows
        self.max_overhead = float(max_overhead)
        self.client, self._cluster = connect(address, workers, timeout=timeout)
        self.shared_memory = False
        self._workers: dict[str, int] = {}
        self._workers_asked = -math.inf
        self._cluster_backend = _ClusterBackend(self, engine)
        try:
            # every call goes through the Simulator's backend: here, the cluster
            super().__init__(backend=self._cluster_backend, precision=precision, seed=seed, threads=1,
                             block_qubits=block_qubits)
            self.client.run(get_backend, engine)  # load the engine in every worker now, not in the first tasks
            if shared_memory is not False:
                self.shared_memory = self.workers_share_memory()
                if shared_memory and not self.shared_memory:
                    raise SharedMemoryUnavailable("shared_memory=True, but not every worker can map this client's "
                                                  "shared memory (another machine or another /dev/shm?)")
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
        """Worker threads of the cluster (at least 1, so a cluster between worker restarts still plans work)."""
        return _slots(self.worker_threads())

    def worker_threads(self) -> dict[str, int]:
        """Threads of each worker, by address (asked of the scheduler at most once every :data:`SLOTS_MAX_AGE`
        s, or known at once for a local cluster)."""
        if self._cluster is not None:  # which keeps its list of workers up to date, without a round trip
            return _threads(self._cluster.scheduler_info)
        now = time.monotonic()
        if now - self._workers_asked > SLOTS_MAX_AGE:
            self._workers, self._workers_asked = _threads(self.client.scheduler_info()), now
        return self._workers

    @property
    def last_run(self) -> RunStats | None:
        """Statistics of the last call that ran on the cluster (None before the first)."""
        return self._cluster_backend.last_run

    def workers_share_memory(self) -> bool:
        """Whether every worker now can map a shared-memory segment of this client (and there is a worker)."""
        token = secrets.token_bytes(16)
        try:
            probe = token_segment(token)
        except SharedMemoryUnavailable:
            return False
        try:
            answers = self.client.run(visible, probe.name, token)
        finally:
            probe.unlink()
        return bool(answers) and all(answers.values())

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
        """Release the circuits and segments kept for the cluster, disconnect, and stop a local cluster."""
        backend = self._cluster_backend
        segments = backend.inputs.names + backend.outputs.names
        backend.standby.close()
        backend.inputs.close()
        backend.outputs.close()
        if self.client.status == "running":
            try:  # a cluster that outlives this executor keeps none of its circuits or segment mappings
                backend.release(list(backend.circuits.values()))
                if segments:
                    self.client.run(forget, segments)
            except (OSError, TimeoutError):
                pass  # scheduler or workers gone: what they held went with them
        backend.circuits.clear()
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DaskSimulator({self.client.scheduler.address!r}, engine={self.engine!r}, slots={self.slots}, "
                f"task_overhead={self.task_overhead * 1e3:.1f} ms)")


class _ClusterBackend:
    """qsim_core's Backend protocol over the cluster: a job's rows in parts, each run by ``engine`` on a worker."""

    def __init__(self, executor: DaskSimulator, engine: str) -> None:
        self.executor = executor
        self.engine = engine
        self.name = f"dask:{engine}"
        self.circuits: OrderedDict[tuple, str] = OrderedDict()
        self.row_seconds: OrderedDict[tuple, float] = OrderedDict()
        self.last_run: RunStats | None = None
        self.inputs = SegmentPool()
        self.outputs = SegmentPool()
        self.standby = Standby(executor.client)

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
        """``engine.method(job, *args, *batched, [key])`` in parts of the rows on the cluster, merged in row order."""
        executor = self.executor
        if job.batch == 0:  # nothing to distribute; the engine gives the empty results their shapes
            return _call(get_backend(self.engine), method, job, args, batched, key, 0)
        started = time.perf_counter()
        structure = job.circuit.structure_key()
        cost = (structure, method, args[-1] if key is not None else 0)
        circuit = self._shared(job.circuit, structure)
        call = _CallSpec(circuit, self.engine, method, args, key, job, batched)
        row_bytes = sum(array[0].nbytes for array in (*_batch_arrays(job).values(), *batched))
        run: _Run | None = None
        if executor.shared_memory and self.engine != "reference":
            try:
                run = self._through_shared_memory(call, self._plan(job.batch, row_bytes, cost), row_bytes)
            except SharedMemoryUnavailable as error:
                # a worker that cannot map our segments (one that joined from another machine) turns shared
                # memory off for good; no room for this call's segments sends only this call in messages
                executor.shared_memory = not isinstance(error, SegmentNotVisible)
        if run is None:
            size = executor.chunk_rows or chunk_size(job.batch, self.row_seconds.get(cost), executor.task_overhead,
                                                     executor.slots, executor.max_overhead)
            if executor.chunk_rows is None:  # rows travel inside the task messages: bound their size
                size = min(size, max(1, CHUNK_BYTES // row_bytes))
            run = self._in_messages(call, size)
        # A small call's time is mostly one-off cost (compilation, the first touch of a program), which
        # would make the next large batch look expensive and be cut into thousands of tiny tasks: learn
        # only from calls of some size, and keep the cheapest rate seen (one-off costs only ever add).
        if job.batch >= _MIN_ROWS_TO_LEARN:
            rate = run.engine_seconds / job.batch
            self.row_seconds[cost] = min(rate, self.row_seconds.get(cost, rate))
            self.row_seconds.move_to_end(cost)
        if len(self.row_seconds) > _COSTS:
            self.row_seconds.popitem(last=False)
        self.last_run = RunStats(method, job.batch, run.tasks, run.chunks, run.rows_per_chunk,
                                 time.perf_counter() - started, run.engine_seconds, run.redone, run.transport)
        return run.result

    def _plan(self, batch: int, row_bytes: int, cost: tuple) -> Plan:
        """How a call through shared memory shares its rows out among tasks (see :mod:`qstore.distributed.blocks`)."""
        executor = self.executor
        slots = executor.slots
        if executor.chunk_rows is not None:
            size = executor.chunk_rows
            return Plan(batch, min(slots, -(-batch // size)), size, size)
        row_seconds = self.row_seconds.get(cost)
        if row_seconds is None:  # the first call of its kind: blocks small enough to share out evenly
            tasks, min_rows = slots, max(1, batch // (16 * slots))
        else:  # a task for each slot that gets more work than a task's overhead; blocks of MIN_BLOCK_SECONDS at least
            tasks = max(1, min(slots, math.floor(batch * row_seconds / executor.task_overhead)))
            min_rows = max(1, math.ceil(MIN_BLOCK_SECONDS / row_seconds))
        return Plan(batch, min(tasks, -(-batch // min_rows)), min_rows, max(min_rows, BLOCK_BYTES // row_bytes))

    def _in_messages(self, call: _CallSpec, size: int) -> _Run:
        """Chunks of ``size`` rows, each chunk's rows inside its task message, its results gathered from the
        worker."""
        job, batched = call.job, call.batched
        count = -(-job.batch // size)
        tasks = _Tasks(self.executor.client, call.method)

        def arguments(k: int) -> tuple:
            rows = slice(k * size, min((k + 1) * size, job.batch))
            return (*call.task_arguments(), rows.start, _job_fields(_rows(job, rows)),
                    tuple(array[rows] for array in batched))

        # A window of chunks in flight, the next one submitted as one finishes: the first chunks reach the
        # workers without waiting behind the whole batch's data, and a worker has its next chunk while it runs one.
        window = min(count, WINDOW * self.executor.slots)
        for k in range(window):  # one message each: together they would make one message of the whole window
            tasks.submit([k], _run_chunk, arguments)
        following = iter(range(window, count))
        parts: list[Any] = [None] * count
        engine_seconds = 0.0
        for k, (part, seconds) in tasks.results():
            parts[k] = part
            engine_seconds += seconds
            successor = next(following, None)
            if successor is not None:
                tasks.submit([successor], _run_chunk, arguments)
        return _Run(_merge(parts), count, count, size, engine_seconds, 0, "messages")

    def _through_shared_memory(self, call: _CallSpec, plan: Plan, row_bytes: int) -> _Run:
        """Rows copied into an input segment, shared out in blocks among ``plan.tasks`` tasks that write their
        results into an output segment (:mod:`qstore.distributed.blocks`).

        Both segments are pooled, so their pages are mapped once. A call stamps its output segment with a
        number of its own, and workers claim rows and write only while it bears their call's: a task that
        outlives its call (cancelled, or a late duplicate) cannot touch a later call's board or results.
        """
        job, batched = call.job, call.batched
        # The engine on no rows gives every result's dtype and trailing shape: the output segment's layout.
        empty = _call(get_backend(self.engine), call.method, _rows(job, slice(0, 0)), call.args,
                      [array[:0] for array in batched], call.key, 0)
        results = tuple(None if out is None else np.empty((job.batch, *out.shape[1:]), out.dtype)
                        for out in (empty if isinstance(empty, tuple) else (empty,)))
        inputs = {**_batch_arrays(job), **{f"{_BATCHED}{i}": array for i, array in enumerate(batched)}}
        input_refs, input_bytes = layout([(array.dtype, array.shape) for array in inputs.values()])
        (stamp_ref, *output_refs), output_bytes = layout([
            (np.int64, (1,)), *(None if out is None else (out.dtype, out.shape) for out in results),
            *Board.specs(plan)])
        output_refs, board = output_refs[:len(results)], Board(*output_refs[len(results):])
        stamp = secrets.randbits(63)
        source = self.inputs.acquire(input_bytes)
        try:
            target = self.outputs.acquire(output_bytes)
        except SharedMemoryUnavailable:
            self.inputs.release(source)
            raise
        # views into the segments, dropped before their release
        staged = [source.array(ref) for ref in input_refs]
        written = [None if ref is None else target.array(ref) for ref in output_refs]
        state = progress(plan, board, target.array)
        tasks = _Tasks(self.executor.client, call.method, results=False)
        standing: dict[int, Future] = {}  # the tasks handed to standbys
        redone = 0
        try:
            target.stamp(stamp_ref, stamp)
            state.clear()
            part_rows = max(1, STAGE_BYTES // row_bytes)
            source.hold(-(-job.batch // part_rows))
            with Inbox() as inbox:
                where = Call(target.name, stamp_ref, stamp, board, plan, inbox.address)
                fields = _job_fields(job, without=list(_batch_arrays(job)))
                refs = dict(zip(inputs, input_refs, strict=True))

                def arguments(task: int, redo: tuple[int, ...] = ()) -> tuple:
                    return (*call.task_arguments(), fields, source.name, refs, part_rows, where, output_refs, task,
                            redo)

                # The tasks go out first (to the standbys the last call left, the others in one message), and
                # the rows are copied while they travel: a block waits only for the part of its rows not copied yet.
                standing = self.standby.start(range(plan.tasks), _run_shared_task, arguments)
                tasks.adopt(standing)
                tasks.submit([task for task in range(plan.tasks) if task not in standing], _run_shared_task,
                             arguments)
                # Standbys for the next call, now: each waits in its worker's queue behind this call's task
                # there and is listening as this call ends, even if the next call follows at once.
                self.standby.post(self.executor.worker_threads())
                for part, first in enumerate(range(0, job.batch, part_rows)):
                    rows = slice(first, first + part_rows)
                    for place, array in zip(staged, inputs.values(), strict=True):
                        place[rows] = array[rows]
                    source.ready(part, part + 1)
                copied = np.zeros(plan.max_claims, bool)
                ended: set[int] = set()
                owners: dict[int, int] = {}  # lost claims given to another task: to which
                while True:
                    complete = state.complete()  # before the copying, which then sees every claim done
                    for claim in state.done():  # copied out while the other blocks run
                        if not copied[claim]:
                            rows = state.rows(claim)
                            for result, part in zip(results, written, strict=True):
                                if result is not None:
                                    result[rows] = part[rows]
                            copied[claim] = True
                    if complete:
                        break
                    ended.update(tasks.ended())
                    lost = state.lost(ended, owners)
                    if lost or not tasks.running:  # a worker died inside a block, or every task ended early
                        if tasks.submitted >= plan.tasks + plan.max_claims:
                            raise RuntimeError(f"{call.method} on the cluster: {tasks.submitted} tasks ended "
                                               f"without covering the {job.batch} rows; giving up")
                        task = tasks.submitted
                        owners |= dict.fromkeys(lost, task)
                        redone += len(lost)
                        tasks.submit([task], _run_shared_task, lambda i, redo=tuple(lost): arguments(i, redo))
                    inbox.receive(timeout=_DASK_POLL)
            engine_seconds = state.engine_seconds()
            claims = [state.rows(claim) for claim in range(state.count)]
        except BaseException:
            tasks.cancel()
            raise
        finally:
            staged.clear()
            written.clear()
            del state
            self.standby.ended(standing)
            source.ready_all()
            self.inputs.release(source)
            self.outputs.release(target)
        result = results if isinstance(empty, tuple) else results[0]
        largest = max(rows.stop - rows.start for rows in claims)
        return _Run(result, tasks.submitted, len(claims), largest, engine_seconds, redone, "shared memory")

    def _shared(self, circuit: Circuit, structure: tuple) -> str:
        """The name under which every worker holds circuits of this structure (installed on first use)."""
        name = self.circuits.get(structure)
        if name is None:
            name = self.circuits[structure] = f"qsim-circuit-{uuid.uuid4().hex}"
            # a copy: the circuit's memo (compiled programs) stays here, the workers compile their own
            self.executor.client.register_plugin(_CircuitPlugin(name, circuit.copy()), name=name)
            if len(self.circuits) > _SHARED_CIRCUITS:
                self.release([self.circuits.popitem(last=False)[1]])
        else:
            self.circuits.move_to_end(structure)
        return name

    def release(self, names: Sequence[str]) -> None:
        """Remove these circuits from the workers and the scheduler's list of plugins for new workers."""
        for name in names:
            self.executor.client.unregister_worker_plugin(name)


class _CircuitPlugin(WorkerPlugin):
    """A circuit installed on every worker of the cluster, present and future (restarted workers included).

    Dask sends its worker plugins to each worker as it joins, so a chunk task
    carries only the circuit's name, and, depending on no data held by some
    workers, goes to whichever worker is free.
    """

    def __init__(self, name: str, circuit: Circuit) -> None:
        self.name = name
        self.circuit = circuit

    def setup(self, worker: Any) -> None:
        _installed[self.name] = self.circuit

    def teardown(self, worker: Any) -> None:
        _installed.pop(self.name, None)


#: worker side: the circuits installed by :class:`_CircuitPlugin`, by name (each compiles once, on first use)
_installed: dict[str, Circuit] = {}


def _identity(value: Any) -> Any:
    return value


class _Run(NamedTuple):
    """A call's results and how it ran (the fields of :class:`RunStats` it sets, by the same names)."""

    result: Any
    tasks: int
    chunks: int
    rows_per_chunk: int
    engine_seconds: float
    redone: int
    transport: str


@dataclasses.dataclass(frozen=True)
class _CallSpec:
    """One call: the installed circuit's name, the engine and its method with ``args`` (and sampling ``key``),
    the job and the method's batch-first arguments (weights)."""

    circuit: str
    engine: str
    method: str
    args: tuple
    key: int | None
    job: Job
    batched: Sequence[np.ndarray]

    def task_arguments(self) -> tuple:
        """The leading arguments of every task of the call."""
        return self.circuit, self.engine, self.method, self.args, self.key


class _Tasks:
    """One call's tasks on the cluster: their submission, and their ends as Dask reports them."""

    def __init__(self, client: Client, method: str, *, results: bool = True) -> None:
        self.client = client
        self.method = method
        self.submitted = 0
        self.token = uuid.uuid4().hex[:12]
        self._running: dict[Future, int] = {}
        # this client's loop: by default as_completed waits on the loop of the process's newest client, which
        # with several clients in one process never hears of these futures (the call hangs)
        self._ended = as_completed([], loop=client.loop, with_results=results)

    @property
    def running(self) -> int:
        """Tasks not reported ended yet."""
        return len(self._running)

    def adopt(self, futures: dict[int, Future]) -> None:
        """Count these tasks (by id) as this call's: tasks handed to standbys (:mod:`qstore.distributed.standby`)."""
        for i, future in futures.items():
            self._running[future] = i
            self._ended.add(future)
        self.submitted += len(futures)

    def submit(self, ids: Sequence[int], task: Any, arguments: Any) -> None:
        """Tasks ``task(*arguments(i))`` for ``i`` in ``ids``, in one message.

        One message, because Dask's client holds a message sent soon after the previous one until its
        batching interval is up (10 ms by default, :data:`CLIENT_BATCH_SECONDS` for clients of
        :func:`connect`): tasks submitted one by one would start that far apart.
        """
        if not ids:
            return
        columns = zip(*(arguments(i) for i in ids), strict=True)
        futures = self.client.map(task, *columns, key=[f"qsim-{self.method}-{self.token}-{i}" for i in ids],
                                  pure=False)
        for i, future in zip(ids, futures, strict=True):
            self._running[future] = i
            self._ended.add(future)
        self.submitted += len(ids)

    def results(self) -> Any:
        """``(i, result)`` of each submitted task as it finishes (tasks submitted meanwhile included).

        A failing task, or the caller giving up, cancels the tasks still running.
        """
        try:
            for future, result in self._ended:
                yield self._running.pop(future), result
        except BaseException:
            self.cancel()
            raise

    def ended(self) -> list[int]:
        """The tasks Dask has reported finished since the last look, without waiting; a failed task raises its
        error."""
        ended = []
        if self._ended.has_ready():
            for future in self._ended.next_batch(block=False):
                if future.status != "finished":
                    future.result()  # raises the task's error
                ended.append(self._running.pop(future))
        return ended

    def cancel(self) -> None:
        """Cancel the tasks not reported ended (a call that gives up)."""
        self.client.cancel(list(self._running))
        self._running.clear()


def _batch_arrays(job: Job) -> dict[str, np.ndarray]:
    """The job's batch-first arrays by field name: the parameters (and initial states, where a job has them)."""
    return {field.name: getattr(job, field.name) for field in dataclasses.fields(job)
            if isinstance(getattr(job, field.name), np.ndarray)}


def _rows(job: Job, rows: slice) -> Job:
    """``job`` restricted to ``rows``."""
    return dataclasses.replace(job, **{name: array[rows] for name, array in _batch_arrays(job).items()})


def _job_fields(job: Job, without: Sequence[str] = ()) -> dict[str, Any]:
    """What a task needs of its job: all but the circuit (shared once) and ``without``, one engine thread."""
    fields = {field.name: getattr(job, field.name) for field in dataclasses.fields(job)
              if field.name != "circuit" and field.name not in without}
    return {**fields, "threads": 1}


def _call(backend: Any, method: str, job: Job, args: tuple, batched: Sequence[np.ndarray], key: int | None,
          offset: int) -> Any:
    """``backend.method(job, *args, *batched)``; sampling methods also get the key and row ``offset`` of the job."""
    if key is None:
        return getattr(backend, method)(job, *args, *batched)
    return getattr(backend, method)(job, *args, key, offset)  # rows draw the streams of their rows in the batch


def _run_chunk(circuit: str, engine: str, method: str, args: tuple, key: int | None, first: int,
               fields: dict[str, Any], batched: tuple) -> tuple[Any, float]:
    """Worker side: ``method`` of the engine on the rows in ``fields``, the first of them row ``first`` of the
    call; returns (result, seconds)."""
    job = Job(circuit=_installed[circuit], **fields)
    start = time.perf_counter()
    result = _call(get_backend(engine), method, job, args, batched, key, first)
    return result, time.perf_counter() - start


def _run_shared_task(circuit: str, engine: str, method: str, args: tuple, key: int | None, fields: dict[str, Any],
                     source: str, inputs: dict[str, ArrayRef], part_rows: int, call: Call,
                     outputs: list[ArrayRef | None], task: int, redo: tuple[int, ...]) -> int:
    """Worker side: task ``task`` of a call through shared memory: the claims ``redo`` and then blocks of rows
    claimed from the call's board (:func:`qstore.distributed.blocks.serve`), each read from segment ``source`` once the
    client has copied its rows there (parts of ``part_rows`` rows); returns the claims it ran."""
    arrays = {name: attach(source, ref) for name, ref in inputs.items()}
    installed = _installed[circuit]
    backend = get_backend(engine)

    def run(first: int, stop: int) -> Any:
        wait_ready(source, (stop - 1) // part_rows)
        rows = {name: array[first:stop] for name, array in arrays.items()}
        batched = [rows.pop(name) for name in list(rows) if name.startswith(_BATCHED)]
        return _call(backend, method, Job(circuit=installed, **fields, **rows), args, batched, key, first)

    return serve(call, task, outputs, run, redo)


def _merge(parts: list[Any]) -> Any:
    """Chunk results concatenated along the batch: arrays, or tuples of arrays (None entries stay None)."""
    if isinstance(parts[0], tuple):
        return tuple(None if column[0] is None else np.concatenate(column) for column in zip(*parts, strict=True))
    return np.concatenate(parts)


__all__ = ["BLOCK_BYTES", "CHUNK_BYTES", "CLIENT_BATCH_SECONDS", "MIN_BLOCK_SECONDS", "STAGE_BYTES",
           "DaskSimulator", "RunStats", "chunk_size", "connect", "share", "worker_slots"]
