"""Run many circuits on the local engine, a local IonQ-compatible server or IonQ's cloud.

:class:`AsyncQuantumExecutor` takes one circuit with many parameter rows (or
several circuits), packs the bound circuits into jobs of up to
``circuits_per_job`` circuits (IonQ multi-circuit jobs), runs at most
``max_concurrent`` jobs at once, and returns one counts dict
``{basis index: count}`` per circuit (qubit k is bit k), in input order. It is
a counts-only executor of :mod:`qsim_core.measurement`, so
``sim.gradient(c, obs, theta, method="parameter-shift", shots=1024, executor=exe)``
runs its shifted circuits through it. Blocking (:meth:`~AsyncQuantumExecutor.execute`,
or calling the executor) and asyncio (:meth:`~AsyncQuantumExecutor.execute_async`)
callers share one worker pool, cache and job record.

Targets
-------
* a :class:`qsim_core.Simulator`: in process. A job's rows of one circuit run
  in one batched ``Simulator.counts`` call; one job at a time (the compiled
  kernels already use every core, and the simulator's sample streams are
  not meant to be drawn from two threads at once).
* a server URL such as ``"http://127.0.0.1:8000"`` (``/v0.4`` is appended when
  it names no API version) with ``api_key=``: :mod:`qstore.ionq.server` or any
  IonQ-compatible API.
* ``"ionq"``: IonQ's cloud (key from ``api_key=`` or ``$IONQ_API_KEY``), or an
  :class:`~qstore.ionq.client.IonQClient` the caller configured.

Remote jobs go through :class:`~qstore.ionq.client.IonQClient` (retries,
idempotent creation, IonQ's error messages). The ideal simulator returns
exact probabilities, which are sampled here to ``shots`` counts, seeded per
circuit (same ``seed`` and circuit, same counts, whatever the scheduling);
other backends return frequencies of real shots, rounded back to counts.

Cache
-----
An LRU of counts keyed by SHA-256 of (target, shots, the circuit's structure
(width, gate names and qubits) and the bound value of every gate parameter),
so one bound circuit hits however its parameters were written. A circuit
already in flight is not submitted twice: later requests wait for the first.
``cache_size=0`` turns caching off (fresh samples on every call).

Timing breakdown
----------------
Every job records a :class:`JobTiming` (seconds). For a remote job
``total = serialization + network + queue + simulation + download``:

* **serialization**: client-side work: building the job body from the
  circuits (:func:`~qstore.ionq.serialize.job_body`) and turning the results
  into counts. Encoding the body to JSON text happens inside ``requests`` and
  counts as network.
* **queue**: the server's ``started_at - submitted_at``: admission and waiting.
* **simulation**: the server's ``completed_at - started_at``
  (``execution_duration_ms`` when the timestamps are missing).
* **network**: the time from sending ``POST /jobs`` to receiving the
  ``completed`` status that the server's own time (queue + simulation) does not
  explain: request and answer transfers, status polls, the lag before a poll
  sees the completion, and the server's work on the request before it records
  ``submitted_at`` (parsing and validating the body: no API reports an
  earlier time). A transfer that overlaps server work (the POST's answer
  travelling while the job already queues) is not counted twice.
* **download**: fetching the results (``GET .../results/probabilities``).

In process, queue is the wait for the engine and simulation the
``Simulator.counts`` calls; the other phases are 0. A circuit's latency is its
job's total: time a job waits for one of the ``max_concurrent`` slots is not
in it (that is the caller's throughput, see ``bench/server.py``).

Example::

    with AsyncQuantumExecutor("http://127.0.0.1:8000", api_key="key", max_concurrent=10) as exe:
        counts = exe.execute(circuit, theta, shots=1024)            # theta[N, P] -> N counts dicts
        grad = sim.gradient(circuit, "Z0", theta[0], method="parameter-shift", shots=1024, executor=exe)
        print(exe.timings[-1], exe.cache_info())
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import requests

import qsim_core as qc

from ..ionq.client import DEFAULT_BASE_URL, IonQClient, IonQError, IonQJobError, IonQTimeoutError
from ..ionq.noise import MAX_NOISE_SEED
from ..ionq.results import counts_from_ionq
from ..ionq.serialize import job_body
from ..ionq.wire import QIS, IonQFormatError

log = logging.getLogger("qstore.execution.executor")

Counts = dict[int, int]
#: key of the executor's derived form of a circuit in ``Circuit.memo`` (cleared when the circuit changes)
_MEMO_KEY = "qstore.execution.executor.plan"
_VERSIONED = re.compile(r"/v\d+\.\d+/?$")


class ExecutorClosedError(RuntimeError):
    """The executor was closed: no new work, and work still outstanding at ``close()`` ends with this."""


@dataclass(frozen=True)
class JobTiming:
    """Where one job's time went, in seconds (definitions: the module docstring).

    Attributes:
        job_id: the remote job's id; None in process.
        circuits: circuits in the job.
        shots: shots per circuit.
        serialization, network, queue, simulation, download: the phases, seconds, each >= 0.
        total: wall time of the job, seconds, from building its body to its counts.
    """

    job_id: str | None
    circuits: int
    shots: int
    serialization: float
    network: float
    queue: float
    simulation: float
    download: float
    total: float

    #: the phase fields, in pipeline order
    PHASES = ("serialization", "network", "queue", "simulation", "download")


class CacheInfo(NamedTuple):
    """Cache statistics, as ``functools.lru_cache`` names them.

    Attributes:
        hits: circuits answered from the cache or by a job already in flight.
        misses: circuits that needed a job.
        maxsize: capacity, in circuits (0: no cache).
        currsize: circuits cached now.
    """

    hits: int
    misses: int
    maxsize: int
    currsize: int


@dataclass(frozen=True)
class _Plan:
    """What the executor derives from a circuit once: structure digest, parameter binding, gate set.

    The bound values of all gate parameters of parameter rows ``theta[N, P]``
    are ``theta @ binding.T + offset``: float64 ``(N, S)`` for ``S`` parameter slots.
    """

    structure: bytes
    binding: np.ndarray  # (S, P)
    offset: np.ndarray  # (S,)
    gateset: str | None  # None: the circuit mixes QIS and native gates


def _plan(circuit: qc.Circuit) -> _Plan:
    plan = circuit.memo.get(_MEMO_KEY)
    if plan is None:
        values = [value for op in circuit for value in op.params]
        binding = np.zeros((len(values), circuit.num_params))
        offset = np.zeros(len(values))
        for slot, value in enumerate(values):
            if isinstance(value, (qc.Param, qc.ParamSum)):
                for index, scale in value.terms:
                    binding[slot, index] = scale
                offset[slot] = value.offset
            else:
                offset[slot] = value
        layout = repr((circuit.num_qubits, [(op.name, op.qubits) for op in circuit]))
        gatesets = {op.gate.gateset for op in circuit} or {QIS}
        plan = _Plan(hashlib.sha256(layout.encode()).digest(), binding, offset,
                     gatesets.pop() if len(gatesets) == 1 else None)
        circuit.memo[_MEMO_KEY] = plan
    return plan


@dataclass(frozen=True)
class _Task:
    """One bound circuit to run: the circuit, its parameter row ``(P,)``, cache key, gate set."""

    circuit: qc.Circuit
    row: np.ndarray
    key: bytes
    gateset: str | None


def _parameter_groups(circuits: qc.Circuit | Sequence[qc.Circuit],
                      params: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None,
                      ) -> tuple[list[tuple[qc.Circuit, np.ndarray]], bool]:
    """``[(circuit, rows float64[N, P])]`` in input order, and whether the caller asked for a list.

    ``params`` as for :meth:`AsyncQuantumExecutor.execute`; rows longer than a
    circuit's ``num_params`` are cut to it (one vector may serve several circuits).
    """
    single = isinstance(circuits, qc.Circuit)
    many = [circuits] if single else list(circuits)
    for circuit in many:
        if not isinstance(circuit, qc.Circuit):
            raise qc.CircuitError(f"expected a qsim_core.Circuit, got {type(circuit).__name__}")
    if params is None:
        matrix = np.zeros((0,))
    else:
        try:
            matrix = np.asarray(params, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise qc.ParameterError(f"params must be numbers (a vector or a 2-D batch): {error}") from None
    if matrix.ndim == 1:
        groups = [(circuit, matrix[np.newaxis, :]) for circuit in many]  # one vector for every circuit
    elif matrix.ndim == 2 and single:
        groups = [(many[0], matrix)]
    elif matrix.ndim == 2 and len(matrix) == len(many):
        groups = [(circuit, matrix[k:k + 1]) for k, circuit in enumerate(many)]
    else:
        raise qc.ParameterError(f"params must be one vector (P,) or one row per circuit ({len(many)}, P); "
                                f"got shape {matrix.shape}")
    out = []
    for k, (circuit, rows) in enumerate(groups):
        label = "" if single else f"circuit {k}: "
        if rows.shape[1] < circuit.num_params:
            hint = "; pass params" if params is None else f" (params shape {matrix.shape})"
            raise qc.ParameterError(f"{label}the circuit has {circuit.num_params} parameter(s) but params has "
                                    f"{rows.shape[1]} per row{hint}")
        rows = rows[:, :circuit.num_params]
        bad = np.argwhere(~np.isfinite(rows))
        if len(bad):
            row, col = map(int, bad[0])
            raise qc.ParameterError(f"{label}params row {row}, entry {col} is {rows[row, col]} (not finite)")
        out.append((circuit, rows))
    return out, not single or matrix.ndim == 2


def _check_shots(shots: object) -> int:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise qc.ParameterError(f"shots must be a positive integer, got {shots!r}")
    return int(shots)


def _instant(value: object) -> float | None:
    """Unix seconds of an ISO 8601 timestamp from the API (None if absent or unreadable)."""
    try:
        return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None
    except ValueError:
        return None


def _server_phases(job: Mapping[str, Any]) -> tuple[float, float]:
    """``(queue, simulation)`` seconds a completed job spent on the server, from what it reports.

    Queue is ``started_at - submitted_at``; simulation ``completed_at - started_at``,
    else ``execution_duration_ms`` (v0.3: ``execution_time``), else 0.
    """
    submitted, started, completed = (_instant(job.get(name)) for name in ("submitted_at", "started_at",
                                                                          "completed_at"))
    execution_ms = job.get("execution_duration_ms", job.get("execution_time"))
    if started is not None and completed is not None:
        simulation = max(0.0, completed - started)
    else:
        simulation = execution_ms / 1000 if isinstance(execution_ms, (int, float)) else 0.0
    if submitted is not None and started is not None:
        queue = started - submitted
    elif submitted is not None and completed is not None:
        queue = completed - submitted - simulation
    else:
        queue = 0.0
    return max(0.0, queue), simulation


class _Engine:
    """The in-process target: a :class:`qsim_core.Simulator`."""

    def __init__(self, simulator: qc.Simulator) -> None:
        self.simulator = simulator
        self.name = f"in-process ({simulator.backend}, {simulator.precision})"
        self._lock = threading.Lock()

    def check(self, plan: _Plan) -> None:
        """Every circuit the engine can build, it can run."""

    def run(self, tasks: Sequence[_Task], shots: int) -> tuple[list[Counts], JobTiming]:
        start = time.perf_counter()
        by_circuit: dict[int, list[int]] = {}
        for position, task in enumerate(tasks):
            by_circuit.setdefault(id(task.circuit), []).append(position)
        counts: list[Counts] = [{}] * len(tasks)
        with self._lock:
            started = time.perf_counter()
            for positions in by_circuit.values():  # one batched call per distinct circuit
                rows = np.stack([tasks[k].row for k in positions])
                for k, result in zip(positions, self.simulator.counts(tasks[positions[0]].circuit, shots, rows),
                                     strict=True):
                    counts[k] = result
        end = time.perf_counter()
        return counts, JobTiming(None, len(tasks), shots, 0.0, 0.0, started - start, end - started, 0.0, end - start)

    def cancel_outstanding(self) -> None:
        """Nothing to cancel: a running simulation takes milliseconds."""

    def close(self) -> None:
        """Nothing to release."""


class _Remote:
    """An IonQ-compatible API through an :class:`IonQClient`; tracks submitted jobs to cancel them on close."""

    def __init__(self, client: IonQClient, owned: bool, backend: str, noise: Mapping[str, Any] | None,
                 timeout: float, poll: float, max_poll: float, seed: int) -> None:
        self.client = client
        self.name = f"{client.base_url.rstrip('/')} {backend}"
        self._owned = owned
        self._backend = backend
        self._noise = dict(noise) if noise is not None else None
        # the ideal simulator answers exact probabilities; QPUs and noise models frequencies of real shots
        self._sampled = backend == "simulator" and (self._noise or {}).get("model", "ideal") == "ideal"
        self._timeout, self._poll, self._max_poll = timeout, poll, max_poll
        self._seed = seed
        self._lock = threading.Lock()
        self._outstanding: set[str] = set()  # submitted, not known to be final
        self._closing = False

    def check(self, plan: _Plan) -> None:
        """IonQ runs one gate set per circuit."""
        if plan.gateset is None:
            raise IonQFormatError("the circuit mixes QIS and native gates; IonQ runs one gate set per circuit "
                                  "(compile it with qsim_core.to_native)")

    def run(self, tasks: Sequence[_Task], shots: int) -> tuple[list[Counts], JobTiming]:
        start = time.perf_counter()
        circuits, rows = ((tasks[0].circuit, tasks[0].row) if len(tasks) == 1  # a single-circuit job
                          else ([t.circuit for t in tasks], [t.row for t in tasks]))
        body = job_body(circuits, params=rows, gateset=tasks[0].gateset, backend=self._backend, shots=shots,
                        noise=self._job_noise(tasks))
        sent = time.perf_counter()
        job_id = self.client.submit_body(body)
        with self._lock:
            closing = self._closing
            if not closing:
                self._outstanding.add(job_id)
        if closing:  # close() began while this job was being created, and did not see it
            self._cancel(job_id)
            raise ExecutorClosedError(f"job {job_id} canceled: the executor was closed")
        job = self._wait(job_id)
        known = time.perf_counter()
        result = self.client.results(job)
        fetched = time.perf_counter()
        children = job.get("child_job_ids")
        parts = [result.get(child) for child in children] if children else [result]
        if len(parts) != len(tasks) or any(part is None for part in parts):
            raise IonQError(f"job {job_id} returned results for {sum(p is not None for p in parts)} of "
                            f"{len(tasks)} circuits")
        qubits = int((job.get("stats") or {}).get("qubits") or max(t.circuit.num_qubits for t in tasks))
        counts = [counts_from_ionq(part, qubits, shots, sample=self._sampled, seed=self._seed_of(task))
                  for part, task in zip(parts, tasks, strict=True)]
        end = time.perf_counter()
        queue, simulation = _server_phases(job)
        network = max(0.0, known - sent - queue - simulation)
        return counts, JobTiming(job_id, len(tasks), shots, (sent - start) + (end - fetched), network, queue,
                                 simulation, fetched - known, end - start)

    def _job_noise(self, tasks: Sequence[_Task]) -> dict[str, Any] | None:
        """The job's ``noise``: as given; a noise model without a seed gets one from the executor's seed and the
        job's circuits, so noisy runs are reproducible (same seed and circuits, same counts, as for sampled
        exact probabilities) and jobs of different circuits draw different trajectories."""
        if self._sampled or self._noise is None or self._noise.get("seed") is not None:
            return self._noise
        digest = hashlib.sha256(b"".join(task.key for task in tasks)).digest()
        return {**self._noise, "seed": (self._seed ^ int.from_bytes(digest[:8], "little")) & MAX_NOISE_SEED}

    def _seed_of(self, task: _Task) -> int:
        """The sampling seed of a circuit: the executor's seed mixed with the circuit's cache key."""
        return self._seed ^ int.from_bytes(task.key[:8], "little")

    def _wait(self, job_id: str) -> dict[str, Any]:
        """The completed job. It stays outstanding (for :meth:`cancel_outstanding`) until it is final."""
        try:
            job = self.client.wait(job_id, timeout=self._timeout, poll=self._poll, max_poll=self._max_poll)
        except IonQTimeoutError as error:
            self._cancel(job_id)
            self._forget(job_id)
            raise IonQTimeoutError(f"{error}; the job was canceled") from None
        except IonQJobError as error:
            self._forget(job_id)
            if self._closing and error.job.get("status") == "canceled":
                raise ExecutorClosedError(f"job {job_id} canceled: the executor was closed") from None
            raise
        self._forget(job_id)
        return job

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._outstanding.discard(job_id)

    def _cancel(self, job_id: str) -> None:
        """Cancel a remote job; a failure is logged, not raised (the job may already be gone)."""
        try:
            self.client.cancel(job_id)
        except (IonQError, ExecutorClosedError) as error:
            log.warning("could not cancel job %s: %s", job_id, error)

    def cancel_outstanding(self) -> None:
        """Cancel every submitted, unfinished job; jobs submitted from now on cancel themselves."""
        with self._lock:
            self._closing = True
            outstanding = sorted(self._outstanding)
        for job_id in outstanding:
            self._cancel(job_id)

    def close(self) -> None:
        """Close the HTTP session if this executor created the client."""
        if self._owned:
            self.client.close()


def _versioned(url: str) -> str:
    """A server URL with an API version: ``http://host:port`` -> ``http://host:port/v0.4``."""
    url = url.rstrip("/")
    return url if _VERSIONED.search(url) else f"{url}/v0.4"


class AsyncQuantumExecutor:
    """Bounded-concurrency execution of circuits as (multi-circuit) jobs, with a result cache and job timings.

    Args:
        target: a :class:`qsim_core.Simulator` (in process); a server URL
            (``"http://127.0.0.1:8000"``, needs ``api_key``); ``"ionq"``
            (IonQ's cloud); or an :class:`~qstore.ionq.client.IonQClient`.
        api_key: API key for a URL or ``"ionq"`` target; default ``$IONQ_API_KEY``.
        max_concurrent: jobs in flight at once, >= 1.
        circuits_per_job: most circuits packed into one job, >= 1 (1: single-circuit jobs).
        cache_size: circuits whose counts are kept (LRU), >= 0; 0 disables the cache.
        backend: remote backend: ``"simulator"``, ``"qpu.aria-1"``, ...
        noise: remote simulator noise, e.g. ``{"model": "aria-1", "seed": 1}``; a model without a seed gets
            one per job from ``seed`` and the job's circuits (a given seed is sent with every job).
        timeout: seconds a remote job may take from submission to completion;
            a slower job is canceled and raises :class:`~qstore.ionq.client.IonQTimeoutError`.
        poll: first interval between status polls, seconds; grows by half each
            poll up to ``max_poll`` (local jobs finish in milliseconds, cloud jobs in seconds).
        max_poll: longest interval between status polls, seconds.
        seed: seed of the sampling of exact probabilities (remote ideal
            simulator); None draws one. In process, the simulator's own seed applies.

    Raises:
        ValueError: a non-positive ``max_concurrent``, ``circuits_per_job``,
            ``timeout`` or poll interval, or a negative ``cache_size``.
        TypeError: a target of another kind.
        IonQError: a URL or ``"ionq"`` target without an API key.

    Close it (``close()``, or use it as a context manager, ``with`` or
    ``async with``): jobs still outstanding are canceled on the server and
    their callers get :class:`ExecutorClosedError`.
    """

    def __init__(self, target: qc.Simulator | IonQClient | str, *, api_key: str | None = None,
                 max_concurrent: int = 10, circuits_per_job: int = 10, cache_size: int = 4096,
                 backend: str = "simulator", noise: Mapping[str, Any] | None = None, timeout: float = 600.0,
                 poll: float = 0.002, max_poll: float = 0.5, seed: int | None = None) -> None:
        for name, value, low in (("max_concurrent", max_concurrent, 1), ("circuits_per_job", circuits_per_job, 1),
                                 ("cache_size", cache_size, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, value in (("timeout", timeout), ("poll", poll), ("max_poll", max_poll)):
            if not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.max_concurrent = max_concurrent
        self.circuits_per_job = circuits_per_job
        self.cache_size = cache_size
        self._stop = threading.Event()
        self._target = self._connect(target, api_key, backend, noise, timeout, poll, max_poll,
                                     int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0]))
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="qstore-executor")
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, Counts] = OrderedDict()
        self._inflight: dict[bytes, Future[Counts]] = {}
        self._timings: list[JobTiming] = []
        self._hits = self._misses = 0
        self._closed = False

    def _connect(self, target: object, api_key: str | None, backend: str, noise: Mapping[str, Any] | None,
                 timeout: float, poll: float, max_poll: float, seed: int) -> _Engine | _Remote:
        if isinstance(target, qc.Simulator):
            return _Engine(target)
        if isinstance(target, IonQClient):
            return _Remote(target, False, backend, noise, timeout, poll, max_poll, seed)
        if not isinstance(target, str):
            raise TypeError("target must be a qsim_core.Simulator, a server URL, 'ionq' or an IonQClient; "
                            f"got {type(target).__name__}")
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.max_concurrent)  # one connection per job slot
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        base_url = DEFAULT_BASE_URL if target == "ionq" else _versioned(target)
        # waits (polls, back-offs) end at close(), which cancels the jobs instead
        client = IonQClient(api_key, base_url, session=session, sleep=self._sleep)
        return _Remote(client, True, backend, noise, timeout, poll, max_poll, seed)

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise ExecutorClosedError("the executor was closed")

    @property
    def target(self) -> str:
        """What runs the circuits: ``"in-process (cython, double)"`` or ``"<base URL> <backend>"``."""
        return self._target.name

    @property
    def timings(self) -> list[JobTiming]:
        """One :class:`JobTiming` per finished job, in completion order (a copy)."""
        with self._lock:
            return list(self._timings)

    def cache_info(self) -> CacheInfo:
        """Hits, misses, capacity and current size of the result cache."""
        with self._lock:
            return CacheInfo(self._hits, self._misses, self.cache_size, len(self._cache))

    # ------------------------------------------------------------------ running

    def execute(self, circuits: qc.Circuit | Sequence[qc.Circuit],
                params: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
                shots: int = 1024) -> Counts | list[Counts]:
        """Run bound circuits and wait for their counts (blocking).

        Args:
            circuits: one circuit, or a sequence of circuits.
            params: None (circuits without parameters); one vector ``(P,)``
                (shared by every circuit); for one circuit a batch
                ``params[N, P]`` (N bound copies: qsim_core's executor
                protocol); for several circuits one row per circuit.
                ``P >= num_params`` of each circuit, in the gates' units.
            shots: shots per circuit, >= 1.

        Returns:
            ``{basis index: count}`` (counts sum to ``shots``; qubit k is bit
            k): one dict for one circuit with no or 1-D params, else a list in
            input order. The dicts are the caller's own copies.

        Raises:
            CircuitError, ParameterError: bad circuits, params or shots (nothing is submitted).
            IonQFormatError: a circuit IonQ cannot take (mixed gate sets).
            IonQAPIError: the API refused a job (its ``message`` is IonQ's).
            IonQJobError: a job failed (IonQ's failure code and message) or was canceled.
            IonQTimeoutError: a job took longer than ``timeout``.
            ExecutorClosedError: the executor is or was closed before the jobs finished.
        """
        return self._submit(circuits, params, shots).result()

    __call__ = execute

    async def execute_async(self, circuits: qc.Circuit | Sequence[qc.Circuit],
                            params: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
                            shots: int = 1024) -> Counts | list[Counts]:
        """:meth:`execute` for asyncio code: awaits the counts without blocking the event loop.

        Cancelling the awaiting task stops the wait only: its jobs still run
        and fill the cache (:meth:`close` cancels jobs).
        """
        return await asyncio.wrap_future(self._submit(circuits, params, shots))

    def _submit(self, circuits: qc.Circuit | Sequence[qc.Circuit], params: Any, shots: int) -> Future:
        """Validate, look up the cache, start jobs; a future of this call's result (see :meth:`execute`)."""
        shots = _check_shots(shots)
        groups, batched = _parameter_groups(circuits, params)
        tasks = list(self._tasks(groups, shots))
        futures: list[Future[Counts]] = []
        fresh: list[tuple[_Task, Future[Counts]]] = []
        with self._lock:  # also orders job starts before close()'s pool shutdown
            if self._closed:
                raise ExecutorClosedError("the executor is closed")
            for task in tasks:
                future = self._inflight.get(task.key)
                cached = self._cache.get(task.key) if future is None else None
                if cached is not None:
                    self._cache.move_to_end(task.key)
                    future = Future()
                    future.set_result(cached)
                elif future is None:
                    future = self._inflight[task.key] = Future()
                    fresh.append((task, future))
                futures.append(future)
            self._misses += len(fresh)
            self._hits += len(tasks) - len(fresh)
            for job in self._pack(fresh):
                self._pool.submit(self._run, job, shots)
        return _gather(futures, batched)

    def _tasks(self, groups: Sequence[tuple[qc.Circuit, np.ndarray]], shots: int) -> Iterator[_Task]:
        """The bound circuits of ``groups``, each with its cache key."""
        for circuit, rows in groups:
            plan = _plan(circuit)
            self._target.check(plan)
            prefix = hashlib.sha256(f"{self.target}|{shots}|".encode() + plan.structure)
            bound = rows @ plan.binding.T + plan.offset + 0.0  # + 0.0: -0.0 and 0.0 are one angle
            for row, values in zip(rows, bound, strict=True):
                digest = prefix.copy()
                digest.update(values.tobytes())
                yield _Task(circuit, row, digest.digest(), plan.gateset)

    def _pack(self, fresh: Sequence[tuple[_Task, Future[Counts]]]) -> Iterator[list[tuple[_Task, Future[Counts]]]]:
        """Jobs of up to ``circuits_per_job`` circuits of one gate set, in submission order."""
        by_gateset: dict[str | None, list[tuple[_Task, Future[Counts]]]] = {}
        for item in fresh:
            by_gateset.setdefault(item[0].gateset, []).append(item)
        for items in by_gateset.values():
            for start in range(0, len(items), self.circuits_per_job):
                yield items[start:start + self.circuits_per_job]

    def _run(self, job: list[tuple[_Task, Future[Counts]]], shots: int) -> None:
        """One job in a worker thread: run it, then settle every future of its circuits exactly once."""
        tasks = [task for task, _ in job]
        try:
            if self._closed:
                raise ExecutorClosedError("the executor was closed before this job started")
            counts, timing = self._target.run(tasks, shots)
        except BaseException as error:  # every waiting caller must hear about it, whatever it is
            with self._lock:
                for task in tasks:
                    self._inflight.pop(task.key, None)
            for _, future in job:
                future.set_exception(error)
            return
        with self._lock:
            self._timings.append(timing)
            for task, result in zip(tasks, counts, strict=True):
                self._inflight.pop(task.key, None)
                if self.cache_size:
                    self._cache[task.key] = result
                    self._cache.move_to_end(task.key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        for (_, future), result in zip(job, counts, strict=True):
            future.set_result(result)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop: cancel outstanding remote jobs, fail waiting calls with :class:`ExecutorClosedError`.

        Jobs not yet started never start; submitted jobs are canceled on the
        server; a running in-process simulation finishes. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()  # wakes this executor's polls: their jobs end with ExecutorClosedError
        self._target.cancel_outstanding()
        self._pool.shutdown(wait=True)
        self._target.close()

    def __enter__(self) -> AsyncQuantumExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> AsyncQuantumExecutor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        return (f"AsyncQuantumExecutor({self.target!r}, max_concurrent={self.max_concurrent}, "
                f"circuits_per_job={self.circuits_per_job}, cache_size={self.cache_size})")


def _gather(futures: Sequence[Future[Counts]], batched: bool) -> Future:
    """One future for a call: copies of its counts (a list, or the one dict), or its first error."""
    call: Future = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def settle(future: Future[Counts]) -> None:
        with lock:
            if call.done():  # an earlier error, or the caller stopped waiting (asyncio cancellation)
                return
            if future.exception() is not None:
                call.set_exception(future.exception())
                return
            remaining[0] -= 1
            if not remaining[0]:
                results = [dict(f.result()) for f in futures]
                call.set_result(results if batched else results[0])

    if not futures:
        call.set_result([])
    for future in futures:
        future.add_done_callback(settle)
    return call


__all__ = ["AsyncQuantumExecutor", "CacheInfo", "ExecutorClosedError", "JobTiming"]
