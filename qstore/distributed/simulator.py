"""Scale-out on Dask: :class:`DaskSimulator`, the engine's Simulator API with its batches on a cluster.

:class:`DaskSimulator` *is* a :class:`qsim_core.Simulator` (same methods, signatures and seeding) whose
backend is the cluster, so anything that takes a Simulator takes it: :class:`qstore.ml.QuantumLayer`,
training, the in-process target of :class:`qstore.execution.AsyncQuantumExecutor`, and, by ``__call__``,
qsim_core's counts-only executor protocol ``executor(circuit, params[N, P], shots)``.

How a call runs
---------------
The Simulator validates the input and draws the call's sampling key as it always does; then the batch
``params[B, P]`` is cut into chunks of consecutive rows, each run by a Dask task with the engine (numba or
Cython, or the reference backend for checking) on one worker thread, and the results are put back in row
order. Only Dask's public API is used: ``scatter``, ``map``, ``submit``, ``as_completed``, ``gather``, ``run``.

* **The circuit travels once.** A circuit structure seen for the first time is scattered to every worker
  (``broadcast=True``) and kept there for later calls (the last :data:`CIRCUITS` structures); a worker
  compiles it once, as the compiled program is cached on the circuit object it holds. Before each call of
  more than one task the simulator asks the scheduler which workers hold it (``who_has``) and replicates it
  to the others: workers that joined since, and workers whose copy Dask's active memory manager dropped
  between calls (its ``ReduceReplicas`` policy keeps one replica of data no task waits for). The scheduler
  prefers workers that hold a task's inputs, so a worker without the circuit would get no chunks. A call
  that is one task whatever the cluster's size (a training step's batch) asks nothing: it runs where a copy
  is, one scheduler round trip after another saved.
* **Chunks carry 0.4 s of work.** Every task reports the engine's seconds for its rows,
  and the simulator keeps the seconds per row of each kind of call (circuit structure, method, shots).
  A call is cut into chunks of about ``chunk_seconds`` of work, in whole rounds over the worker threads
  (:func:`chunk_rows`); a call with less work than one chunk is still shared by the worker threads while
  each share carries :data:`SHARE_SECONDS` or more, and is one task below that. A kind of call not
  measured yet is cut into up to two chunks per worker thread of at least :data:`LEARN_ROWS` rows each (a
  small call is one task), and teaches the model. A call of scattered rows (below) with two rounds or
  more starts with rounds of short chunks that double in size, from the smallest that carries
  :data:`SHARE_SECONDS` (at most 2** :data:`RAMP` times smaller) to half a chunk, and ends with a round
  :data:`TAPER` times smaller (:func:`chunk_starts`): each worker starts after a short transfer, the next
  chunk's rows arrive while it computes the one before, and the workers end within a short chunk of each
  other. A scattered call of one task is cut the same way, so that its work no longer waits for all its
  rows, nor all its results for its work. A call's tasks carry priorities in row order, so a worker runs
  its chunks in that order.
* **Rows go straight to the workers.** A call whose rows take more than :data:`INLINE_BYTES` is scattered
  a chunk at a time, each chunk's task submitted as soon as its rows are there, so the first chunks compute
  while the later ones travel; a smaller call's rows travel in its tasks. With ``direct`` (the default for
  a local cluster started here) rows and results move between the client and the workers in one hop, not
  through the scheduler, and scattered rows are not hashed (each chunk is sent once, under a fresh key).
* **Results come back while the rest computes.** Each task's result is fetched as soon as it ends
  (``as_completed``), not all after the last one, and copied into its rows of the call's result then, so
  no copy of the whole result is left for after the last task.
* **Same results.** A row's expectations, probabilities, state and gradients do not depend on which rows
  share its chunk, so they equal the in-process engine's bit for bit (for circuits wider than
  ``block_qubits``, those of ``Simulator(threads=1)``, the thread count of a task). Samples: row ``g`` of a
  call draws from a stream of its own, derived from the call's key and ``g``; a chunk whose first row is
  ``g0`` runs with the backend's ``offset=g0``, so a DaskSimulator and a Simulator with the same seed return
  the same samples, shot estimates and SPSA gradients however the rows are cut.
* **Faults.** Tasks are pure. A task whose worker dies is rerun by Dask on another worker (up to its
  ``distributed.scheduler.allowed-failures``); a chunk whose scattered rows died with their worker is
  scattered again and rerun (:attr:`RunStats.rerun` counts them), at most ``retries`` times. A dead worker
  costs only its chunks and changes no result.

When to use it: on one machine, ``qsim_core.Simulator(threads=N)`` is the fast path (its threads share a
call's rows with no task, scheduler or serialisation cost). A DaskSimulator pays a few scheduler round
trips per call; it is for work bigger than one machine and for many runs at once (``bench/distributed.py``
measures both the throughput and the per-call overhead).

Example::

    with DaskSimulator(workers=2, seed=7) as sim:            # or DaskSimulator("tcp://scheduler:8786")
        ev = sim.expectation(circuit, ["Z0", "Z1"], theta)   # theta[B, P] -> [B, 2], as a Simulator
        layer = QuantumLayer(config, sim, rng)               # the model trains on the cluster
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError
from typing import Any

import numpy as np
from distributed import Client, Future, as_completed

import qsim_core as qc
from qsim_core import Circuit
from qsim_core.backends import Job, get_backend
from qsim_core.compiler import DEFAULT_BLOCK_QUBITS
from qsim_core.observables import PauliStrings

from .cluster import connect, worker_slots

#: a chunk whose rows take more bytes than this is scattered to the workers; a smaller one travels in its task
INLINE_BYTES = 1 << 20
#: circuit structures kept on the workers (the oldest is released beyond this)
CIRCUITS = 64
#: kinds of call (structure, method, shots) whose engine seconds per row are remembered
_COSTS = 1024
#: chunks smaller than this do not teach the cost model (their time is mostly one-off costs: compilation);
#: a kind of call not measured yet is cut into chunks at least this large
LEARN_ROWS = 64
#: engine seconds below which a share of a call is not worth a task of its own (a task costs Dask a few ms)
SHARE_SECONDS = 0.02
#: a scattered call's last round of chunks is this many times smaller than the rest (:func:`chunk_starts`)
TAPER = 4
#: a scattered call's first round of chunks is at most 2**RAMP times smaller than the rest (:func:`chunk_starts`)
RAMP = 4


def chunk_rows(batch: int, row_seconds: float | None, slots: int, chunk_seconds: float) -> int:
    """Rows per task for a call of ``batch`` rows (>= 1).

    Args:
        batch: rows B of the call.
        row_seconds: the engine's seconds per row for this kind of call; None if not measured yet (then
            up to two tasks per worker thread, of at least :data:`LEARN_ROWS` rows each).
        slots: worker threads of the cluster.
        chunk_seconds: the engine work a task should carry.

    The number of tasks is the work over ``chunk_seconds``, rounded up to whole rounds over the worker
    threads (so they finish together). A call with less work than one chunk is still shared by the worker
    threads as long as each share carries at least :data:`SHARE_SECONDS` of it; a smaller call is one task.
    """
    if row_seconds is None:
        tasks = min(2 * slots, batch // LEARN_ROWS)
    else:
        work = batch * row_seconds
        tasks = max(math.ceil(work / chunk_seconds), min(slots, int(work / SHARE_SECONDS)))
        if tasks > 1:
            tasks = -(-tasks // slots) * slots
    tasks = max(1, min(tasks, batch))
    return max(1, -(-batch // tasks))


def chunk_starts(batch: int, row_seconds: float | None, slots: int, chunk_seconds: float, *, taper: bool = False,
                 smallest: int = 1) -> list[int]:
    """The first row of each task's chunk for a call of ``batch`` rows, followed by ``batch``.

    Args:
        batch: rows B of the call.
        row_seconds: the engine's seconds per row, or None (as for :func:`chunk_rows`, which sizes the chunks).
        slots: worker threads of the cluster.
        chunk_seconds: the engine work a task should carry.
        taper: for rows that travel apart from their tasks (scattered): a call of two rounds over the worker
            threads or more, or of one task, has its last round cut into chunks :data:`TAPER` times smaller
            than the others, and its first rounds into chunks that double from the smallest carrying
            :data:`SHARE_SECONDS` of work (at most 2** :data:`RAMP` times smaller than the others; a quarter
            while the cost per row is not known) to half a chunk, as long as the rounds in between keep at
            least that size. Each worker then starts computing after a short transfer instead of a whole
            chunk's, each chunk's rows travel while the one before computes (a chunk twice as large as the
            last needs its transfer at most twice as fast as the engine), and the workers' last chunks are
            short, so one that ran slower keeps the others waiting less. A call of one task is cut the same
            way. One round of several tasks is left whole: its later workers wait for their rows, but on a
            machine they share with the client that waiting leaves the cores to its sending, and ramped
            chunks measured no faster (``docs/benchmarks.md``).
        smallest: no chunk has fewer rows (unless the call has): the engine's ``stable_rows``, so that every
            row's results are the bits the whole call gives in process.
    """
    starts = _chunk_starts(batch, row_seconds, slots, chunk_seconds, taper)
    kept = [0]
    for start in starts[1:-1]:
        if start - kept[-1] >= smallest and batch - start >= smallest:
            kept.append(start)
    return [*kept, batch]


def _chunk_starts(batch: int, row_seconds: float | None, slots: int, chunk_seconds: float, taper: bool
                  ) -> list[int]:
    """:func:`chunk_starts` before chunks below ``smallest`` are merged."""
    size = chunk_rows(batch, row_seconds, slots, chunk_seconds)
    uniform = [*range(0, batch, size), batch]
    single = size >= batch
    if not taper or not (single or batch >= 2 * slots * size):
        return uniform

    def worth_a_task(rows: int) -> bool:
        return rows > 0 and (row_seconds is None or rows * row_seconds >= SHARE_SECONDS)

    last = size // TAPER
    if not worth_a_task(last):
        return uniform
    # the first rounds double from the smallest chunk worth a task (at most RAMP halvings; a quarter while the
    # cost is not known) up to half a chunk, as long as the middle keeps a round at least that large (a round of
    # quarter chunks, ``last``'s size, always leaves it one)
    levels = range(RAMP if row_seconds is not None else TAPER.bit_length() - 1, 0, -1)
    head = [size >> level for level in levels if worth_a_task(size >> level)]
    spread = 1 if single else slots  # the worker threads a round has a chunk for
    while batch - spread * (sum(head) + last) < spread * head[-1]:
        head.pop()
    middle = batch - spread * (sum(head) + last)
    tasks = -(-middle // size)
    middle_size = -(-middle // (-(-tasks // spread) * spread))
    starts = [0]
    for rows in head:
        starts += [starts[-1] + rows * k for k in range(1, spread + 1)]
    tail = batch - spread * last
    starts += [*range(starts[-1] + middle_size, tail, middle_size), *range(tail, batch, last), batch]
    return starts


@dataclasses.dataclass(frozen=True)
class RunStats:
    """One call on the cluster.

    Attributes:
        method: the backend method (``"expectation"``, ``"sample"``, ``"adjoint"``, ...).
        rows: parameter rows B.
        tasks: chunks the rows were cut into, a Dask task each.
        rows_per_task: rows of the largest chunk.
        scattered: whether the chunks were scattered to the workers (else they travelled in their tasks).
        seconds: wall seconds of the call on the client.
        engine_seconds: seconds the engine ran on the workers, summed over the chunks.
        rerun: chunks submitted again because their scattered rows were lost with a worker.
    """

    method: str
    rows: int
    tasks: int
    rows_per_task: int
    scattered: bool
    seconds: float
    engine_seconds: float
    rerun: int


class DaskSimulator(qc.Simulator):
    """A :class:`qsim_core.Simulator` whose batches run on a Dask cluster (see the module docstring).

    Args:
        address: a scheduler address (``"tcp://host:8786"``); None, with no ``client``, starts a
            :class:`~distributed.LocalCluster` of worker processes with one thread each on this machine.
        client: an existing :class:`~distributed.Client` to use (left open by :meth:`close`).
        workers: worker processes of the local cluster (default: one per core).
        chunk_seconds: engine seconds of work per task, > 0. Each task costs a few milliseconds of Dask's
            own (scheduling, its rows' round trip, the worker starting it), more when the cores are busy
            computing: 0.4 s of work keeps that to a few percent (a call is still cut into at least
            one task per worker thread when it has the rows).
        retries: how often a task that failed, or a chunk whose rows were lost, is run again (>= 0).
        timeout: seconds to wait for the scheduler and its first worker(s).
        direct: whether rows and results travel straight between this client and the workers (Dask's
            ``direct=`` of ``scatter`` and ``gather``) instead of through the scheduler, one hop instead of
            two and no scheduler time per byte. None: yes for the local cluster started here, else the
            client's own ``direct_to_workers`` setting (Dask's default: through the scheduler, for clients
            that cannot reach the workers). The cost: rows on their way to a worker that dies wait up to the
            client's connect timeout (``timeout`` for a client made here) before they are sent elsewhere.
        backend: the engine the workers run: ``"numba"``, ``"cython"`` or ``"auto"`` (resolved on the
            client: the first that loads there, in qsim_core's order of preference; the workers must have
            it too); ``"reference"``, the slow numpy oracle, for checking.
        precision: as for :class:`~qsim_core.Simulator`.
        seed: as for :class:`~qsim_core.Simulator`; the same seed gives the same samples as a Simulator's.
        block_qubits: as for :class:`~qsim_core.Simulator`.
        noise: as for :class:`~qsim_core.Simulator`: noisy shots run their trajectories' batches on the
            cluster (exact noisy results are density matrices, computed on the client).

    Raises:
        BackendUnavailableError: the backend is unknown or not built here.
        ValueError: a bad ``workers``, ``chunk_seconds``, ``retries`` or conflicting arguments.
        OSError: the scheduler cannot be reached, or no worker joins, within ``timeout``.

    Close it (``close()`` or ``with``); closing stops a local cluster it started.
    """

    def __init__(self, address: str | None = None, *, client: Client | None = None, workers: int | None = None,
                 chunk_seconds: float = 0.4, retries: int = 3, timeout: float = 60.0, direct: bool | None = None,
                 backend: str = "auto",
                 precision: str = "double", seed: int | None = None,
                 block_qubits: int = DEFAULT_BLOCK_QUBITS, noise: str | qc.NoiseModel | None = None) -> None:
        engine = get_backend(backend).name
        if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, int | float) \
                or not 0 < chunk_seconds < math.inf:
            raise ValueError(f"chunk_seconds must be a positive number of seconds, got {chunk_seconds!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        self.chunk_seconds = float(chunk_seconds)
        self.retries = retries
        self._connection = connect(address, workers, client=client, timeout=timeout)
        self.client = self._connection.client
        #: whether rows and results bypass the scheduler (see ``direct``)
        self.direct: bool = bool(direct if direct is not None
                                 else self._connection.cluster is not None or self.client.direct_to_workers)
        #: the scheduler's address (for messages: the client may have lost it)
        self.address: str = self.client.scheduler.address
        self._cluster_backend = _ClusterBackend(self, engine)
        try:
            # every call goes through the Simulator's backend: here, the cluster
            super().__init__(backend=self._cluster_backend, precision=precision, seed=seed, threads=1,
                             block_qubits=block_qubits, noise=noise)
            self.client.run(get_backend, engine)  # load the engine on every worker now, not in the first tasks
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

    def __call__(self, circuit: Circuit, params: np.ndarray, shots: int) -> list[dict[int, int]]:
        """qsim_core's counts-only executor protocol: one counts dict per row of ``params[N, P]``."""
        return self.counts(circuit, shots, np.asarray(params, np.float64).reshape(len(params), -1))

    def close(self) -> None:
        """Release the circuits kept on the workers, disconnect, and stop a local cluster started here."""
        self._cluster_backend.circuits.clear()
        self._connection.close()

    def __enter__(self) -> DaskSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DaskSimulator({self.address!r}, engine={self.engine!r})"


class _ClusterBackend:
    """qsim_core's backend contract over the cluster: a job's rows in chunks, each run by ``engine`` in a task."""

    def __init__(self, simulator: DaskSimulator, engine: str) -> None:
        self.simulator = simulator
        self.engine = engine
        self.name = f"dask:{engine}"
        self.stable_rows = get_backend(engine).stable_rows  # chunks are never smaller (unless the job is)
        #: circuit structure -> its future on the cluster
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

    def adjoint(self, job: Job, observables: PauliStrings, weights: np.ndarray, values: bool = True) -> tuple:
        """The engine's adjoint results (expectations [B, K] or None, gradients [B, L, P], ...), rows in order."""
        return self._map(job, "adjoint", (observables,), batched=(weights,), options={"values": values})

    def _map(self, job: Job, method: str, args: tuple = (), *, batched: Sequence[np.ndarray] = (),
             key: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """``engine.method(job, *args, *batched, [key], **options)`` in chunks of the rows on the cluster, in row
        order."""
        options = options or {}
        if job.batch == 0:  # nothing to distribute; the engine gives the empty results their shapes
            return _call(get_backend(self.engine), method, job, args, batched, key, 0, options)
        started = time.perf_counter()
        structure = job.circuit.structure_key()
        cost = (structure, method, args[-1] if key is not None else 0)  # the shots, for sampling methods
        sim = self.simulator
        rate = self.row_seconds.get(cost)
        # A call that is one task however many worker threads there are asks the scheduler nothing before it
        # goes out: not for the worker threads (to size chunks), nor where the circuit's replicas are (its one
        # task runs where one is). Each question is a round trip; a 32-row call took 17 ms with them, 11 without.
        workers: dict[str, int] | None = None
        if chunk_rows(job.batch, rate, job.batch, sim.chunk_seconds) < job.batch:
            with self._scheduler_errors():
                workers = sim.client.nthreads()
        arrays = {**_batch_arrays(job), **{f"batched{k}": array for k, array in enumerate(batched)}}
        scatter = sum(array.nbytes for array in arrays.values()) > INLINE_BYTES
        slots = max(1, sum(workers.values())) if workers else 1
        starts = chunk_starts(job.batch, rate, slots, sim.chunk_seconds, taper=scatter, smallest=self.stable_rows)
        firsts = starts[:-1]
        chunks = [{name: array[first:stop] for name, array in arrays.items()}
                  for first, stop in zip(firsts, starts[1:], strict=True)]
        size = max(stop - first for first, stop in zip(firsts, starts[1:], strict=True))
        task = dict(engine=self.engine, method=method, args=args, sampling_key=key, fields=_job_fields(job),
                    batched=len(batched), options=options)
        with self._scheduler_errors():
            result = _Assembly(job.batch)
            engine_seconds, rerun = self._run(job.circuit, structure, chunks, firsts, scatter, task,
                                              None if workers is None else frozenset(workers), result)
        # A small chunk's time is mostly one-off cost (compilation, the first touch of a program), which
        # would make the next large batch look expensive: learn only from chunks of some size, and keep the
        # cheapest rate seen (one-off costs only ever add).
        if size >= LEARN_ROWS:
            rate = engine_seconds / job.batch
            self.row_seconds[cost] = min(rate, self.row_seconds.get(cost, rate))
            self.row_seconds.move_to_end(cost)
            if len(self.row_seconds) > _COSTS:
                self.row_seconds.popitem(last=False)
        self.last_run = RunStats(method, job.batch, len(chunks), size, scatter,
                                 time.perf_counter() - started, engine_seconds, rerun)
        return result.value()

    @contextlib.contextmanager
    def _scheduler_errors(self) -> Iterator[None]:
        """Turn the client's failure to reach a scheduler that went away into one clear ConnectionError."""
        client = self.simulator.client
        try:
            yield
        except (OSError, TimeoutError) as error:
            if client.status == "running":
                raise
            raise ConnectionError(f"lost the Dask scheduler {self.simulator.address!r} during a call: "
                                  f"{error}") from None

    def _run(self, circuit: Circuit, structure: tuple, chunks: list[dict[str, np.ndarray]],
             firsts: list[int], scatter: bool, task: dict[str, Any], workers: frozenset[str] | None,
             result: _Assembly) -> tuple[float, int]:
        """Each chunk as a task, its result put into ``result`` as it arrives; returns the engine seconds and
        the chunks run again.

        ``workers`` are the worker addresses the call began with (None: not asked, for a call of one task); a
        retry asks the scheduler again."""
        client = self.simulator.client
        done = [False] * len(chunks)
        engine_seconds = 0.0
        pending = list(range(len(chunks)))
        rerun = 0
        for _ in range(self.simulator.retries + 1):
            futures = self._submit(circuit, structure, chunks, firsts, pending, scatter, task, workers)
            for i, (part, seconds) in self._collect(futures):
                result.put(firsts[i], part)
                done[i] = True
                engine_seconds += seconds
            lost = [i for i in pending if not done[i]]
            if not lost:
                return engine_seconds, rerun
            if client.status != "running":
                raise ConnectionError(f"lost the Dask scheduler {self.simulator.address!r} during a call")
            # rows (or the circuit) sent to a worker that died: send them again
            self.circuits.pop(structure, None)
            pending, rerun = lost, rerun + len(lost)
            workers = frozenset(client.nthreads())
        raise RuntimeError(f"{len(pending)} chunk(s) lost their rows with a worker {self.simulator.retries + 1} "
                           "times in a row")

    def _collect(self, futures: dict[int, Future]) -> Iterator[tuple[int, Any]]:
        """(chunk, task result) of the finished tasks, each fetched as soon as its task ends, while the others
        still run (one gather at the end would move every result after the last task); the chunks of tasks
        whose rows died with a worker are missing."""
        client = self.simulator.client
        chunk_of = {future.key: i for i, future in futures.items()}
        for future in as_completed(list(futures.values())):
            if future.status == "error":
                raise future.exception()  # the engine's own error, or KilledWorker after repeated deaths
            if future.status == "finished":
                # nothing comes back for a result lost with its worker after the task finished
                for result in client.gather([future], errors="skip", direct=self.simulator.direct):
                    if result is not None:
                        yield chunk_of[future.key], result

    def _submit(self, circuit: Circuit, structure: tuple, chunks: list[dict[str, np.ndarray]], firsts: list[int],
                pending: list[int], scatter: bool, task: dict[str, Any], workers: frozenset[str] | None
                ) -> dict[int, Future]:
        """The tasks of the ``pending`` chunks, by chunk; those not submitted because a worker died while the
        circuit or their rows were sent to it are missing (the caller sends them again)."""
        client = self.simulator.client
        token = uuid.uuid4().hex[:12]
        keys = {i: f"qsim-{task['method']}-{token}-{i}" for i in pending}
        futures: dict[int, Future] = {}
        # a worker that died while its rows were sent: a closed comm, or with ``direct`` no connection within
        # the client's connect timeout (the scheduler still listed it); those chunks go again on the retry
        with contextlib.suppress(OSError):
            shared = self._circuit(circuit, structure, workers)
            if not scatter:
                mapped = client.map(_run_chunk, [shared] * len(pending), [chunks[i] for i in pending],
                                    [firsts[i] for i in pending], key=list(keys.values()), pure=False,
                                    retries=self.simulator.retries, **task)
                return dict(zip(pending, mapped, strict=True))
            # a chunk at a time, each task submitted as soon as its rows are there: the first chunks compute
            # while the later ones travel
            for i in pending:
                rows = client.scatter([chunks[i]], hash=False, direct=self.simulator.direct)[0]
                futures[i] = client.submit(_run_chunk, shared, rows, firsts[i], key=keys[i], pure=False,
                                           retries=self.simulator.retries, priority=-i, **task)
        return futures

    def _circuit(self, circuit: Circuit, structure: tuple, workers: frozenset[str] | None) -> Future:
        """The circuit of this structure on every one of ``workers`` (the cluster's worker addresses now):
        scattered once and kept for later calls, replicated to the workers that lack it (see the module
        docstring); with ``workers`` None, wherever it is kept."""
        client = self.simulator.client
        shared = self.circuits.get(structure)
        # every copy gone with the workers that held it (the scheduler forgot the key, or lists no holder):
        # scattered afresh, as replicating a forgotten future fails
        if shared is not None and shared.status != "finished":
            shared = None
        if shared is not None and workers is not None:
            try:
                holders = set(client.who_has([shared]).get(shared.key, ()))
            except CancelledError:  # forgotten since
                holders = set()
            if not holders:
                shared = None
            elif workers - holders:
                client.replicate([shared])
        if shared is None:
            shared = client.scatter(circuit, broadcast=True, hash=False)
        self.circuits[structure] = shared
        self.circuits.move_to_end(structure)
        if len(self.circuits) > CIRCUITS:
            self.circuits.popitem(last=False)  # dropping the future releases it on the workers
        return shared


def _batch_arrays(job: Job) -> dict[str, np.ndarray]:
    """The job's batch-first arrays by field name: the parameters (and initial states, where a job has them)."""
    return {field.name: getattr(job, field.name) for field in dataclasses.fields(job)
            if isinstance(getattr(job, field.name), np.ndarray)}


def _job_fields(job: Job) -> dict[str, Any]:
    """What a task needs of its job besides the circuit and the rows: dtype, block width; one engine thread."""
    arrays = _batch_arrays(job)
    fields = {field.name: getattr(job, field.name) for field in dataclasses.fields(job)
              if field.name != "circuit" and field.name not in arrays}
    return {**fields, "threads": 1}


def _call(backend: Any, method: str, job: Job, args: tuple, batched: Sequence[np.ndarray], key: int | None,
          offset: int, options: dict[str, Any]) -> Any:
    """``backend.method(job, *args, *batched, **options)``; sampling methods also get the key and row ``offset``
    of the job."""
    if key is None:
        return getattr(backend, method)(job, *args, *batched, **options)
    return getattr(backend, method)(job, *args, key, offset, **options)  # rows draw their rows' streams


def _run_chunk(circuit: Circuit, rows: dict[str, np.ndarray], first: int, *, engine: str, method: str, args: tuple,
               sampling_key: int | None, fields: dict[str, Any], batched: int, options: dict[str, Any]
               ) -> tuple[Any, float]:
    """Worker side: ``method`` of the engine on ``rows``, the first of them row ``first`` of the call;
    returns (result, engine seconds)."""
    extra = [rows[f"batched{k}"] for k in range(batched)]
    job_rows = {name: array for name, array in rows.items() if not name.startswith("batched")}
    job = Job(circuit=circuit, **fields, **job_rows)
    start = time.perf_counter()
    result = _call(get_backend(engine), method, job, args, extra, sampling_key, first, options)
    return result, time.perf_counter() - start


class _Assembly:
    """A call's result put together from its chunks' results as they arrive, in any order: arrays, or tuples of
    arrays (None entries stay None), batch first. Each chunk is copied into place on arrival, while the other
    tasks run, so no copy of the whole result is left for after the last task."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.columns: list[np.ndarray | None] | None = None
        self.is_tuple = False

    def put(self, first: int, part: Any) -> None:
        """Rows ``first``... of the result: ``part``, an array or a tuple of arrays (or None) like the whole."""
        self.is_tuple = isinstance(part, tuple)
        parts = part if self.is_tuple else (part,)
        if self.columns is None:
            self.columns = [None if column is None else np.empty((self.batch, *column.shape[1:]), column.dtype)
                            for column in parts]
        for whole, column in zip(self.columns, parts, strict=True):
            if whole is not None:
                whole[first:first + len(column)] = column

    def value(self) -> Any:
        """The whole result, once every chunk is in."""
        assert self.columns is not None, "no chunk arrived"
        return tuple(self.columns) if self.is_tuple else self.columns[0]


__all__ = ["CIRCUITS", "INLINE_BYTES", "LEARN_ROWS", "RAMP", "SHARE_SECONDS", "TAPER", "DaskSimulator",
           "RunStats", "chunk_rows", "chunk_starts"]
