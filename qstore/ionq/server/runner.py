"""Running the local server's jobs: the engine calls, the worker pool, the order jobs run in."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import qsim_core as qc

from ..noise import emulated_qpu_model
from ..parse import JobRequest, parse_job_body
from ..results import frequencies_to_ionq, probabilities_to_ionq
from ..wire import IonQFormatError
from .jobstore import Claim, JobStore
from .latency import LatencyProfile
from .limits import JobLimits, LimitError
from .strictjson import BodyError, loads_strict

log = logging.getLogger("qstore.ionq.server")

#: amplitudes one engine call may hold (a batch of B states of 2**n): 16 MiB of complex128, so a
#: 1,000-circuit job of 20 qubits runs a state at a time instead of allocating 16 GiB at once
_BATCH_AMPLITUDES = 2**20
#: jobs up to this many amplitudes (circuits x 2**qubits; simulating and writing the results
#: costs time in proportion to them) and gates to compile run on the event loop, see :func:`runs_inline`
_INLINE_AMPLITUDES = 2**12
_INLINE_GATES = 512
#: noisy jobs up to this many shots in all (a trajectory each) run on the event loop
_INLINE_SAMPLES = 2**13
#: noisy samples one engine call may hold (rows x shots int64 indices): 32 MiB
_BATCH_SAMPLES = 2**22


def runs_inline(request: JobRequest) -> bool:
    """Whether a job is small enough to run on the event loop rather than in a worker thread.

    For a small job, two thread hand-offs and the contention for the
    interpreter lock cost about as much as the job (the work is
    Python-bound: writing the results as JSON takes far longer than the
    engine's simulation of a few small circuits), and a status poll that
    arrives meanwhile sees the job completed instead of waiting for the
    client's next poll. Bounded by amplitudes (simulation, sampling, JSON), noisy shots (a trajectory each)
    and by the gates of its distinct gate sequences (compiling one not seen
    before costs time in proportion to its gates), so the loop is never
    blocked for long.
    """
    return (len(request.names) << request.qubits <= _INLINE_AMPLITUDES
            and sum(len(batch.template) for batch in request.batches) <= _INLINE_GATES
            and (noise_of(request) is None or len(request.names) * request.shots <= _INLINE_SAMPLES))


def job_seed(request: JobRequest, job_id: str) -> int:
    """The sampling seed: ``noise.seed`` if the client set one, else derived from the job id (reproducible)."""
    seed = request.noise_request.seed
    return seed if seed is not None else uuid.UUID(job_id).int & (2**63 - 1)


def noise_of(request: JobRequest) -> qc.NoiseModel | None:
    """The noise model the job runs with: its ``noise.model`` on the simulator; on an emulated QPU, that QPU's
    published model (IonQ's QPUs take no ``noise`` field), none where IonQ has published no rates."""
    if request.backend == "simulator":
        return request.noise_request.model
    return emulated_qpu_model(request.backend)


class JobStopped(Exception):
    """A running job lost its claim (canceled or deleted): its run stops before the next circuit."""


def execute(request: JobRequest, job_id: str, threads: int,
            emit: Callable[[int, str], bool] | None = None) -> tuple[list[str], list[str], int]:
    """Run a job: one result (JSON text) per circuit, warnings, and simulation time in ms.

    Runs in a worker thread (or, for a small job, on the event loop), one
    engine call per batch of circuits with the same gate sequence (:class:`~qstore.ionq.parse.CircuitBatch`)
    and at most :data:`_BATCH_AMPLITUDES` amplitudes (and :data:`_BATCH_SAMPLES` noisy samples). Exact
    probabilities for the ideal simulator; ``shots`` outcomes as frequencies ``count / shots`` for a noise
    model on the simulator and for emulated QPUs, which run their QPU's published model (one quantum
    trajectory per shot, as IonQ's noisy simulator; seeded by the job's seed and the engine call, so the same
    body and seed give the same counts); a QPU without published rates is sampled from the noiseless state
    (per circuit from a stream seeded by the job's seed and the circuit's position).

    With ``emit``, each circuit's result is handed to ``emit(position, text)``
    as soon as it is computed instead of being returned (the list is then
    empty); ``emit`` returning False stops the run with :class:`JobStopped`.
    """
    model = noise_of(request)
    emulated = request.backend.startswith("qpu")
    warnings = []
    if emulated:
        how = (f"IonQ's published {model.name} noise model (depolarizing after every gate), one trajectory per shot"
               if model is not None else "noiseless simulation (IonQ has published no noise rates for it)")
        warnings.append(f"{request.backend} is emulated by this local server: {how}, {request.shots} shots per "
                        "circuit")
    if request.dry_run:
        warnings.append("dry_run has no effect on this local server; the job was run")
    start = time.perf_counter()
    seed = job_seed(request, job_id)
    results: list[str] = [""] * len(request.names) if emit is None else []
    rows_per_call = max(1, _BATCH_AMPLITUDES >> request.qubits)
    if model is not None:  # the calls also hold rows x shots samples
        rows_per_call = max(1, min(rows_per_call, _BATCH_SAMPLES // request.shots))
    for batch in request.batches:
        for first in range(0, len(batch.positions), rows_per_call):
            positions = batch.positions[first:first + rows_per_call]
            rows = batch.params[first:first + rows_per_call]
            if model is not None:
                texts = _noisy_results(batch.template, rows, request.shots, model, threads, (seed, positions[0]))
            else:
                texts = _results(batch.template, rows, positions, request.shots if emulated else None, threads, seed)
            for position, text in zip(positions, texts, strict=True):
                if emit is None:
                    results[position] = text
                elif not emit(position, text):
                    raise JobStopped(job_id)
    return results, warnings, round(1000 * (time.perf_counter() - start))


def _results(template: qc.Circuit, rows: np.ndarray, positions: Sequence[int], shots: int | None, threads: int,
             seed: int) -> Iterator[str]:
    """Noiseless results of one engine call: exact probabilities, or (``shots``) frequencies of that many
    samples drawn per circuit from a stream seeded by the job's seed and the circuit's position."""
    # a circuit without parameters takes none: its one state stands for every row
    probabilities = qc.Simulator(threads=threads).probabilities(template, rows if rows.shape[1] else None)
    probabilities = np.broadcast_to(probabilities, (len(rows), probabilities.shape[-1]))
    for position, vector in zip(positions, probabilities, strict=True):
        if shots is not None:
            rng = np.random.default_rng((seed, position))
            vector = rng.multinomial(shots, vector / vector.sum()) / shots
        yield json.dumps(probabilities_to_ionq(vector))


def _noisy_results(template: qc.Circuit, rows: np.ndarray, shots: int, model: qc.NoiseModel, threads: int,
                   key: tuple[int, int]) -> Iterator[str]:
    """Noisy results of one engine call: each circuit's ``shots`` trajectories (one per shot, as IonQ's noisy
    simulator runs them) as frequencies ``count / shots``. Seeded by ``key`` (the job's seed and the call's
    first circuit position)."""
    seed = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0])
    samples = qc.Simulator(threads=threads, noise=model, seed=seed).sample(template, shots, rows)
    for row in samples:
        yield json.dumps(frequencies_to_ionq(row, shots))


def parse_stored(request: bytes | str, limits: JobLimits) -> JobRequest:
    """A stored job body parsed again, and checked against today's limits (a restart may have lowered them)."""
    body = loads_strict(request.encode() if isinstance(request, str) else request)
    limits.check(body)
    return parse_job_body(body)


def _failure_code(error: BaseException) -> str:
    """IonQ's failure code for an exception raised while running a job."""
    if isinstance(error, IonQFormatError | BodyError):
        return "CompilationError"
    if isinstance(error, LimitError | qc.CircuitTooLargeError):
        return "CircuitTooLarge"
    if isinstance(error, qc.QsimError):
        return "SimulationError"
    return "InternalError"


class Runner:
    """Moves jobs through ``submitted -> ready -> started -> completed|failed`` with bounded concurrency.

    The event loop owns the store; ``workers`` consumer tasks run one job
    each: in a thread pool of as many threads (writing results circuit by
    circuit, so a canceled or deleted job stops at the next circuit), or on
    the loop itself when the job is small (:func:`runs_inline`). Queued jobs
    are taken round-robin across API keys (oldest first within a key), so
    one key's burst does not delay another key's next job by more than a
    job per key. A job submitted by this process runs from the
    :class:`~qstore.ionq.parse.JobRequest` its ``POST`` parsed; one recovered
    at start-up is parsed and checked against ``limits`` again, in a thread.
    """

    def __init__(self, store: JobStore, profile: LatencyProfile, workers: int, limits: JobLimits) -> None:
        self._store = store
        self._profile = profile
        self._limits = limits
        self._rng = np.random.default_rng()
        #: per owner, the jobs waiting in line; and the owners with waiting jobs, whose turn is next first
        self._lines: dict[str, deque[tuple[str, JobRequest | None]]] = {}
        self._turns: deque[str] = deque()
        self._waiting = asyncio.Semaphore(0)  # one release per job in a line
        #: per owner, its jobs submitted and not yet finished (what the per-key quota counts)
        self._unfinished: dict[str, set[str]] = {}
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="qstore-ionq-sim")
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._tasks = {asyncio.create_task(self._consume()) for _ in range(workers)}

    def latency(self, phase: str, fraction: float = 1.0) -> float:
        """Seconds of injected latency for a phase (see :mod:`qstore.ionq.server.latency`)."""
        return self._profile.draw(phase, self._rng, fraction)

    def unfinished(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or running."""
        return len(self._unfinished.get(owner, ()))

    def submit(self, job_id: str, owner: str, parsed: JobRequest | None = None) -> None:
        """Schedule a stored job: a new one with its parsed body, or one unfinished at start-up."""
        self._unfinished.setdefault(owner, set()).add(job_id)
        task = asyncio.create_task(self._admit(job_id, owner, parsed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, job_id: str, owner: str) -> None:
        """A job was canceled or deleted: it no longer counts against its owner's quota."""
        jobs = self._unfinished.get(owner)
        if jobs is not None:
            jobs.discard(job_id)
            if not jobs:
                del self._unfinished[owner]

    async def _admit(self, job_id: str, owner: str, parsed: JobRequest | None) -> None:
        await asyncio.sleep(self.latency("serialization"))
        self._store.mark_ready(job_id)
        await asyncio.sleep(self.latency("queue"))
        line = self._lines.get(owner)
        if line is None:
            line = self._lines[owner] = deque()
            self._turns.append(owner)
        line.append((job_id, parsed))
        self._waiting.release()

    def _next(self) -> tuple[str, str, JobRequest | None]:
        """The next job in round-robin order of owners: ``(owner, job id, parsed body or None)``."""
        owner = self._turns.popleft()
        line = self._lines[owner]
        job_id, parsed = line.popleft()
        if line:
            self._turns.append(owner)
        else:
            del self._lines[owner]
        return owner, job_id, parsed

    async def _consume(self) -> None:
        while True:
            await self._waiting.acquire()
            owner, job_id, parsed = self._next()
            try:
                claim = self._store.claim(job_id)  # None: canceled or deleted while queued
                if claim is not None:
                    await self._run(claim, parsed)
            except Exception:  # e.g. a full disk: log it, keep serving; the job resumes at the next start
                log.exception("job %s could not be run", job_id)
            finally:
                self.forget(job_id, owner)

    def _run_in_thread(self, claim: Claim, parsed: JobRequest | None) -> tuple[list[str], int]:
        """In a worker thread: parse (if recovered) and run a job, streaming its results to the store."""
        request = parsed or parse_stored(claim.request, self._limits)
        with self._store.result_writer() as writer:
            _, warnings, execution_ms = execute(request, claim.job_id, self._threads,
                                                functools.partial(writer.write, claim, request.multi))
        return warnings, execution_ms

    async def _run(self, claim: Claim, parsed: JobRequest | None) -> None:
        started = time.monotonic()
        minimum = self.latency("simulation")
        results: list[str] | None = None
        try:
            if parsed is not None and runs_inline(parsed):
                results, warnings, execution_ms = execute(parsed, claim.job_id, self._threads)
            else:
                warnings, execution_ms = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run_in_thread, claim, parsed)
        except JobStopped:
            log.info("job %s was canceled or deleted while running; it stopped", claim.job_id)
            return
        except Exception as error:  # a failed job must never take its worker down
            log.warning("job %s failed: %r", claim.job_id, error)
            self._store.fail(claim, _failure_code(error), str(error) or type(error).__name__)
            return
        if minimum:  # else complete at once: a poll served in between would only see "started"
            await asyncio.sleep(max(0.0, minimum - (time.monotonic() - started)))
        if not self._store.complete(claim, results, execution_ms, warnings):
            log.info("job %s was canceled or deleted while running; result discarded", claim.job_id)

    async def close(self) -> None:
        """Stop consuming; running simulations are abandoned (their jobs resume on the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
