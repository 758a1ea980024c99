"""A local IonQ-compatible REST server backed by :mod:`qsim_core`.

It implements the subset of IonQ's API that the official clients (qiskit-ionq,
cirq-ionq, pennylane-ionq) and :mod:`qstore.ionq.client` call, under
``/v0.4`` (current), ``/v0.3`` (legacy shapes) and un-versioned paths (as
v0.4; qiskit reaches them when its base URL has no version):

=========================================  ==========================================================
``POST   /jobs``                            create a single- or multi-circuit job (v0.4 or v0.3 body)
``GET    /jobs``                            list the caller's jobs (``status``, ``limit``, ``next``)
``GET    /jobs/{id}``                       status, echoed metadata, stats, result URL, children
``GET    /jobs/{id}/results/probabilities`` ``{"<basis index>": p}`` (v0.4)
``GET    /jobs/{id}/results/probabilities/aggregated``  ``{child_id: {...}}`` of a multi-circuit job
``GET    /jobs/{id}/results``               v0.3: either of the two forms above
``PUT    /jobs/{id}/status/cancel``         cancel a pending job (a no-op on a finished one)
``GET    /jobs/estimate``                   price of a job from gate counts (``qstore/ionq/pricing.json``)
``DELETE /jobs/{id}``                       delete a job; later requests for it get 404
``GET    /backends``, ``/backends/{name}``  no API key needed (qiskit-ionq probes it without one)
=========================================  ==========================================================

Requests carry ``Authorization: apiKey <key>``; keys come from a file (one per
line, ``#`` comments) and/or ``QSTORE_API_KEYS`` (comma or whitespace
separated). An unknown key gets 401; a key never sees another key's jobs
(404, as if they did not exist). Errors have IonQ's shape
``{"error": "<HTTP phrase>", "message": "...", "statusCode": <int>}``.

Jobs persist in SQLite (:mod:`qstore.ionq.jobstore`). A job's body is parsed
once, on ``POST``, into its circuits grouped by gate sequence: each group is
one template compiled once (and kept compiled for later jobs) and run as one
batched engine call. Jobs run in a thread pool (the compiled kernels release
the GIL), except small ones, which run on the event loop: for them the thread
hand-offs cost as much as the job (see :func:`runs_inline`).
``metadata.idempotency_key`` (a string) makes ``POST /jobs`` idempotent per
API key: a resubmission returns the first job.
Simulator jobs return the exact probabilities; ``qpu.*`` backends and noise
models other than ``ideal`` are emulated by sampling ``shots`` outcomes from
the noiseless state (a warning on the job says so).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

import qsim_core as qc

from .cost import CostError, PricingTable
from .jobstore import PENDING, Claim, JobRow, JobStore
from .latency import LatencyProfile
from .serialize import (
    IDEMPOTENCY_FIELD,
    MULTI_CIRCUIT,
    SINGLE_CIRCUIT,
    IonQFormatError,
    JobRequest,
    gate_counts,
    parse_job_body,
    probabilities_to_ionq,
)

log = logging.getLogger("qstore.ionq.server")

API_KEYS_ENV = "QSTORE_API_KEYS"
#: qubits of the QPUs IonQ lists (reported capped by the server's own limit; jobs on them are emulated)
DEVICE_QUBITS = {"qpu.aria-1": 25, "qpu.aria-2": 25, "qpu.forte-1": 36, "qpu.forte-enterprise-1": 36}
#: also accepted as a job's backend: cirq-ionq's bare QPU target
_QPU_ALIASES = ("qpu",)
#: how each API version spells a status (v0.3 said "running" where v0.4 says "started")
_STATUS_NAMES = {"v0.3": {"started": "running"}, "v0.4": {}}
_JSON = "application/json"


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server instance needs.

    Attributes:
        db: SQLite database file of the job store.
        api_keys: the accepted API keys (never stored or shown; jobs record their SHA-256 digests).
        profile: injected latency (:class:`~qstore.ionq.latency.LatencyProfile`).
        workers: simulation threads (jobs that run at once).
        max_qubits: widest ``input.qubits`` accepted. A running job holds a 2**n complex128
            state, and a dense result lists up to 2**n states as JSON (about 30 MB at 20 qubits).
        max_shots: largest ``shots`` accepted.
        max_circuits: most circuits in one multi-circuit job.
        max_body_bytes: largest request body accepted, bytes.
        pricing: prices ``GET /jobs/estimate`` quotes.
    """

    db: Path
    api_keys: frozenset[str] = field(repr=False)
    profile: LatencyProfile
    workers: int = 2
    max_qubits: int = 20
    max_shots: int = 1_000_000
    max_circuits: int = 1_000
    max_body_bytes: int = 10 * 2**20
    pricing: PricingTable = field(default_factory=PricingTable.load)

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError(f"no API keys: pass an api keys file or set {API_KEYS_ENV}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


def _digest(key: str) -> str:
    """How the server knows a key: its SHA-256 hex digest (also the owner recorded on its jobs)."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_api_keys(api_keys_file: str | os.PathLike | None, environ: dict[str, str] | None = None) -> frozenset[str]:
    """Keys from ``api_keys_file`` (one per line; blank lines and ``#`` comments skipped) and ``QSTORE_API_KEYS``."""
    keys: set[str] = set()
    if api_keys_file is not None:
        for line in Path(api_keys_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keys.add(line)
    keys.update((environ if environ is not None else os.environ).get(API_KEYS_ENV, "").replace(",", " ").split())
    return frozenset(keys)


class ApiError(Exception):
    """An error answered in IonQ's shape with this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """IonQ's error body: ``{"error": <HTTP phrase>, "message": ..., "statusCode": status}``."""
    body = {"error": HTTPStatus(status).phrase, "message": message, "statusCode": status}
    return JSONResponse(body, status_code=status, headers=headers)


# --------------------------------------------------------------------------- simulation

#: amplitudes one engine call may hold (a batch of B states of 2**n): 16 MiB of complex128, so a
#: 1,000-circuit job of 20 qubits runs a state at a time instead of allocating 16 GiB at once
_BATCH_AMPLITUDES = 2**20
#: jobs up to this many amplitudes (circuits x 2**qubits; simulating and writing the results
#: takes about 0.5 us each) and gates to compile run on the event loop, see :func:`runs_inline`
_INLINE_AMPLITUDES = 2**12
_INLINE_GATES = 512
#: bodies up to this size (about 3 ms to validate) are parsed on the event loop, larger ones in a thread
_INLINE_BODY_BYTES = 2**16


def runs_inline(request: JobRequest) -> bool:
    """Whether a job is small enough to run on the event loop rather than in a worker thread.

    For a job of a few milliseconds, two thread hand-offs and the contention
    for the interpreter lock cost about as much as the job (the work is
    Python-bound: the engine needs 0.03 ms for ten 8-qubit circuits, writing
    their results as JSON 1.5 ms), and a status poll that arrives meanwhile
    sees the job completed instead of waiting for the client's next poll.
    Bounded by amplitudes (simulation, sampling, JSON) and by the gates of
    its distinct gate sequences (compiling one not seen before: ~1.5 ms per
    100 gates), so the loop is never blocked for long.
    """
    return (len(request.names) << request.qubits <= _INLINE_AMPLITUDES
            and sum(len(batch.template) for batch in request.batches) <= _INLINE_GATES)


def _seed(request: JobRequest, job_id: str) -> int:
    """The sampling seed: ``noise.seed`` if the client set one, else derived from the job id (reproducible)."""
    seed = (request.noise or {}).get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        return seed
    return uuid.UUID(job_id).int & (2**63 - 1)


def execute(request: JobRequest, job_id: str, threads: int) -> tuple[list[str], list[str], int]:
    """Run a job: one result (JSON text) per circuit, warnings, and simulation time in ms.

    Runs in a worker thread (or, for a small job, on the event loop), one
    engine call per batch of circuits with the same gate sequence (:class:`~qstore.ionq.serialize.CircuitBatch`). Exact
    probabilities for the ideal simulator; ``shots`` sampled outcomes (as
    frequencies) for emulated QPUs and noise models, drawn per circuit from a
    stream seeded by the job's seed and the circuit's position (so how the
    circuits are batched does not change them).
    """
    noise_model = (request.noise or {}).get("model", "ideal")
    sampled = request.backend.startswith("qpu") or noise_model != "ideal"
    warnings = []
    if sampled:
        what = request.backend if request.backend.startswith("qpu") else f"noise model {noise_model!r}"
        warnings.append(f"{what} is emulated by this local server: noiseless simulation, "
                        f"{request.shots} shots sampled per circuit")
    if request.dry_run:
        warnings.append("dry_run has no effect on this local server; the job was run")
    start = time.perf_counter()
    simulator = qc.Simulator(threads=threads)
    seed = _seed(request, job_id)
    results: list[str] = [""] * len(request.names)
    rows_per_call = max(1, _BATCH_AMPLITUDES >> request.qubits)
    for batch in request.batches:
        for first in range(0, len(batch.positions), rows_per_call):
            rows = batch.params[first:first + rows_per_call]
            # a circuit without parameters takes none: its one state stands for every row
            probabilities = simulator.probabilities(batch.template, rows if rows.shape[1] else None)
            probabilities = np.broadcast_to(probabilities, (len(rows), probabilities.shape[-1]))
            for position, vector in zip(batch.positions[first:first + rows_per_call], probabilities, strict=True):
                if sampled:
                    rng = np.random.default_rng((seed, position))
                    vector = rng.multinomial(request.shots, vector / vector.sum()) / request.shots
                results[position] = json.dumps(probabilities_to_ionq(vector))
    return results, warnings, round(1000 * (time.perf_counter() - start))


def _execute_claim(claim: Claim, request: JobRequest | None, threads: int) -> tuple[list[str], list[str], int]:
    """:func:`execute` a claimed job, parsing its stored body first if this process did not accept it."""
    return execute(request or parse_job_body(json.loads(claim.request)), claim.job_id, threads)


def _failure_code(error: BaseException) -> str:
    """IonQ's failure code for an exception raised while running a job."""
    if isinstance(error, IonQFormatError):
        return "CompilationError"
    if isinstance(error, qc.CircuitTooLargeError):
        return "CircuitTooLarge"
    if isinstance(error, qc.QsimError):
        return "SimulationError"
    return "InternalError"


class Runner:
    """Moves jobs through ``submitted -> ready -> started -> completed|failed`` with bounded concurrency.

    The event loop owns the store; ``workers`` consumer tasks run one job
    each: in a thread pool of as many threads, or on the loop itself when
    the job is small (:func:`runs_inline`). A job submitted by this process
    runs from the :class:`~qstore.ionq.serialize.JobRequest` its ``POST``
    parsed; one recovered at start-up is parsed again (in a thread) from its
    stored body.
    """

    def __init__(self, store: JobStore, profile: LatencyProfile, workers: int) -> None:
        self._store = store
        self._profile = profile
        self._rng = np.random.default_rng()
        self._queue: asyncio.Queue[tuple[str, JobRequest | None]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="qstore-ionq-sim")
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._tasks = {asyncio.create_task(self._consume()) for _ in range(workers)}

    def latency(self, phase: str, fraction: float = 1.0) -> float:
        """Seconds of injected latency for a phase (see :mod:`qstore.ionq.latency`)."""
        return self._profile.draw(phase, self._rng, fraction)

    def submit(self, job_id: str, parsed: JobRequest | None = None) -> None:
        """Schedule a stored job: a new one with its parsed body, or one unfinished at start-up."""
        task = asyncio.create_task(self._admit(job_id, parsed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _admit(self, job_id: str, parsed: JobRequest | None) -> None:
        await asyncio.sleep(self.latency("serialization"))
        self._store.mark_ready(job_id)
        await asyncio.sleep(self.latency("queue"))
        await self._queue.put((job_id, parsed))

    async def _consume(self) -> None:
        while True:
            job_id, parsed = await self._queue.get()
            try:
                claim = self._store.claim(job_id)  # None: canceled or deleted while queued
                if claim is not None:
                    await self._run(claim, parsed)
            except Exception:  # e.g. a full disk: log it, keep serving; the job resumes at the next start
                log.exception("job %s could not be run", job_id)

    async def _run(self, claim: Claim, parsed: JobRequest | None) -> None:
        started = time.monotonic()
        minimum = self.latency("simulation")
        try:
            if parsed is not None and runs_inline(parsed):
                results, warnings, execution_ms = execute(parsed, claim.job_id, self._threads)
            else:
                results, warnings, execution_ms = await asyncio.get_running_loop().run_in_executor(
                    self._executor, _execute_claim, claim, parsed, self._threads)
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


# --------------------------------------------------------------------------- HTTP


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _circuit_gate_counts(job: JobRequest) -> list[tuple[int, int]]:
    """``(one-qubit, two-qubit)`` gate counts of each circuit, in job order (counted once per batch)."""
    counts = [(0, 0)] * len(job.names)
    for batch in job.batches:
        shared = gate_counts([batch.template])
        for position in batch.positions:
            counts[position] = shared
    return counts


def _stats(counts: Sequence[tuple[int, int]], qubits: int) -> dict[str, Any]:
    """IonQ's ``stats`` of circuits with these ``(one-qubit, two-qubit)`` gate counts."""
    return {"qubits": qubits, "circuits": len(counts),
            "gate_counts": {"1q": sum(one for one, _ in counts), "2q": sum(two for _, two in counts)}}


def _same_body(body: Any, stored: str | bytes) -> bool:
    """Whether a resubmitted body is the stored one up to key order and spacing.

    Only idempotent resubmissions (retries) compare bodies, so new jobs
    store theirs as received instead of paying for a canonical form each.
    """
    return json.dumps(body, sort_keys=True) == json.dumps(json.loads(stored), sort_keys=True)


class IonQApi:
    """The endpoints of one API version (``"v0.4"`` or ``"v0.3"``); see the module docstring."""

    def __init__(self, state: _State, version: str) -> None:
        self.state = state
        self.version = version
        self.statuses = _STATUS_NAMES[version]

    def routes(self) -> list[Route]:
        """The routes, relative to the version prefix."""
        return [
            Route("/jobs", self.create_job, methods=["POST"]),
            Route("/jobs", self.list_jobs, methods=["GET"]),
            Route("/jobs/estimate", self.estimate, methods=["GET"]),  # before /jobs/{job_id}, which would take it
            Route("/jobs/{job_id}", self.get_job, methods=["GET"]),
            Route("/jobs/{job_id}", self.delete_job, methods=["DELETE"]),
            Route("/jobs/{job_id}/status/cancel", self.cancel_job, methods=["PUT"]),
            Route("/jobs/{job_id}/results", self.results, methods=["GET"]),
            Route("/jobs/{job_id}/results/probabilities", self.probabilities, methods=["GET"]),
            Route("/jobs/{job_id}/results/probabilities/aggregated", self.aggregated, methods=["GET"]),
            Route("/backends", self.list_backends, methods=["GET"]),
            Route("/backends/{name:path}", self.get_backend, methods=["GET"]),
        ]

    # -------------------------------------------------------------- helpers

    def _owner(self, request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        digest = _digest(key.strip()) if scheme == "apiKey" and key.strip() else None
        if digest not in self.state.key_digests:
            raise ApiError(401, "missing or unknown API key (send 'Authorization: apiKey <key>')")
        return digest

    def _job(self, request: Request) -> tuple[str, JobRow]:
        owner = self._owner(request)
        job_id = request.path_params["job_id"]
        row = self.state.store.get(owner, job_id)
        if row is None:  # also for another key's job: its existence is not revealed
            raise ApiError(404, f"job {job_id} not found")
        return owner, row

    def _top_level(self, row: JobRow, action: str) -> None:
        if row.parent is not None:
            raise ApiError(400, f"job {row.id} is circuit {row.position} of job {row.parent}; {action} the parent")

    async def _body(self, request: Request) -> tuple[Any, bytes]:
        """The request body decoded from JSON (None if empty), and as received."""
        limit = self.state.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(400, f"request body of {declared} bytes exceeds this server's limit of {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(400, f"request body exceeds this server's limit of {limit} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            return (json.loads(raw) if size else None), raw
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ApiError(400, f"request body is not valid JSON: {error}") from None

    def _url(self, job_id: str, tail: str) -> str:
        return f"/{self.version}/jobs/{job_id}/{tail}"

    def _view(self, row: JobRow) -> dict[str, Any]:
        """What GET /jobs/{id} answers, in this version's shape."""
        summary = row.summary
        children = self.state.store.child_ids(row.id) if row.parent is None else []
        status = self.statuses.get(row.status, row.status)
        if self.version == "v0.3":
            view = {"id": row.id, "status": status, "name": summary["name"], "target": summary["backend"],
                    "shots": summary["shots"], "noise": summary["noise"], "metadata": summary["metadata"],
                    "qubits": summary["stats"]["qubits"], "circuits": summary["stats"]["circuits"],
                    "request": int(row.submitted_at), "start": row.started_at and int(row.started_at),
                    "response": row.completed_at and int(row.completed_at)}
            if children:
                view["children"] = children
            if row.status == "completed":
                view.update({"execution_time": row.execution_ms, "results_url": self._url(row.id, "results")})
        else:
            view = {"id": row.id, "type": summary["type"], "name": summary["name"], "status": status,
                    "backend": summary["backend"], "shots": summary["shots"], "noise": summary["noise"],
                    "settings": summary["settings"], "metadata": summary["metadata"],
                    "session_id": summary["session_id"], "dry_run": False, "stats": summary["stats"],
                    "submitted_at": _iso(row.submitted_at), "started_at": _iso(row.started_at),
                    "completed_at": _iso(row.completed_at)}
            if row.parent is not None:
                view["parent_job_id"] = row.parent
            if children:
                view["child_job_ids"] = children
            if row.status == "completed":
                tail = "results/probabilities/aggregated" if children else "results/probabilities"
                view.update({"results": {"probabilities": {"url": self._url(row.id, tail)}},
                             "execution_duration_ms": row.execution_ms})
        if row.failure:
            view["failure"] = row.failure
        if row.warnings:
            view["warning"] = {"messages": row.warnings}
        return view

    def _check_limits(self, job: JobRequest) -> None:
        config = self.state.config
        backends = {"simulator", *DEVICE_QUBITS, *_QPU_ALIASES}
        if job.backend not in backends:
            raise ApiError(400, f"unknown backend {job.backend!r}; this server runs {', '.join(sorted(backends))}")
        if job.qubits > config.max_qubits:
            raise ApiError(400, f"input.qubits = {job.qubits} exceeds this server's limit of {config.max_qubits}")
        if job.shots > config.max_shots:
            raise ApiError(400, f"shots = {job.shots} exceeds this server's limit of {config.max_shots}")
        if len(job.names) > config.max_circuits:
            raise ApiError(400, f"{len(job.names)} circuits exceed this server's limit of {config.max_circuits}")

    # -------------------------------------------------------------- jobs

    async def create_job(self, request: Request) -> Response:
        """``POST /jobs``: validate, store durably, schedule; ``{"id", "status": "submitted"}``."""
        owner = self._owner(request)
        body, raw = await self._body(request)
        try:  # a large body in a thread: it takes a while to validate, and the loop keeps answering meanwhile
            job = (parse_job_body(body) if len(raw) <= _INLINE_BODY_BYTES
                   else await asyncio.to_thread(parse_job_body, body))
        except IonQFormatError as error:
            raise ApiError(400, str(error)) from None
        self._check_limits(job)
        key = job.metadata.get(IDEMPOTENCY_FIELD)
        key = key if isinstance(key, str) and key else None
        existing = self.state.store.by_idempotency_key(owner, key) if key else None
        if existing is not None:
            if not _same_body(body, self.state.store.request(existing.id)):
                raise ApiError(409, f"{IDEMPOTENCY_FIELD} {key!r} was already used for a different job")
            return JSONResponse({"id": existing.id, "status": self.statuses.get(existing.status, existing.status),
                                 "session_id": None})
        job_id = str(uuid.uuid4())
        shared = {"backend": job.backend, "shots": job.shots, "noise": job.noise, "settings": job.settings,
                  "session_id": job.session_id}
        counts = _circuit_gate_counts(job)
        summary = {**shared, "type": MULTI_CIRCUIT if job.multi else SINGLE_CIRCUIT, "name": job.name,
                   "metadata": job.metadata, "stats": _stats(counts, job.qubits)}
        children = [(str(uuid.uuid4()), {**shared, "type": SINGLE_CIRCUIT, "name": name, "metadata": {},
                                         "stats": _stats([count], job.qubits)})
                    for name, count in zip(job.names, counts, strict=True)] if job.multi else []
        self.state.store.create(owner, job_id, summary, raw, key, children)
        self.state.runner.submit(job_id, job)
        await asyncio.sleep(self.state.runner.latency("network", 0.5))
        return JSONResponse({"id": job_id, "status": "submitted", "session_id": None})

    async def get_job(self, request: Request) -> Response:
        """``GET /jobs/{id}``."""
        _, row = self._job(request)
        return JSONResponse(self._view(row))

    async def list_jobs(self, request: Request) -> Response:
        """``GET /jobs?status=&limit=&next=`` (cirq-ionq sends ``limit`` in a JSON body), newest first."""
        owner = self._owner(request)
        body, _ = await self._body(request)
        query = request.query_params
        limit = query.get("limit", body.get("limit") if isinstance(body, dict) else None) or 100
        cursor = query.get("next")
        try:
            limit, cursor = min(int(limit), 1000), None if cursor is None else int(cursor)
        except ValueError:
            raise ApiError(400, "'limit' and 'next' must be integers") from None
        if limit < 1:
            raise ApiError(400, "'limit' must be >= 1")
        status = query.get("status")
        stored = {wire: name for name, wire in self.statuses.items()}.get(status, status)
        rows = self.state.store.jobs(owner, stored, limit, cursor)
        answer: dict[str, Any] = {"jobs": [self._view(row) for row in rows]}
        if len(rows) == limit:
            answer["next"] = str(rows[-1].seq)
        return JSONResponse(answer)

    async def estimate(self, request: Request) -> Response:
        """``GET /jobs/estimate?backend=&1q_gates=&2q_gates=&shots=[&error_mitigation=][&type=&qubits=&session=]``.

        Answers as qiskit-ionq's ``JobEstimate`` reads it: ``estimated_cost``,
        ``cost_unit`` and the echoed ``input_values``. Error mitigation
        defaults to on for QPUs, as for real jobs.
        """
        self._owner(request)
        query = request.query_params
        try:
            one, two, shots, qubits = (int(query.get(name, "0"))
                                       for name in ("1q_gates", "2q_gates", "shots", "qubits"))
        except ValueError:
            raise ApiError(400, "'1q_gates', '2q_gates', 'shots' and 'qubits' must be integers") from None
        if min(one, two, shots, qubits) < 0:
            raise ApiError(400, "gate counts, shots and qubits must be >= 0")
        backend = query.get("backend", "")
        try:
            price = self.state.config.pricing.price(backend)
        except CostError as error:
            raise ApiError(400, str(error)) from None
        mitigation = query.get("error_mitigation", str(backend.startswith("qpu"))).lower() == "true"
        return JSONResponse({
            "estimated_cost": price.cost(1, shots, one, two, mitigation),
            "cost_unit": self.state.config.pricing.currency,
            "input_values": {"backend": backend, "1q_gates": one, "2q_gates": two, "shots": shots, "qubits": qubits,
                             "error_mitigation": mitigation, "session": query.get("session", "false").lower() == "true",
                             "type": query.get("type", SINGLE_CIRCUIT)},
            "estimated_at": _iso(time.time()),
        })

    async def cancel_job(self, request: Request) -> Response:
        """``PUT /jobs/{id}/status/cancel``: pending jobs become ``canceled``; finished ones are unchanged."""
        owner, row = self._job(request)
        self._top_level(row, "cancel")
        self.state.store.cancel(owner, row.id)
        status = self.state.store.get(owner, row.id).status
        return JSONResponse({"id": row.id, "status": self.statuses.get(status, status)})

    async def delete_job(self, request: Request) -> Response:
        """``DELETE /jobs/{id}``: the job and its children are gone (404 afterwards)."""
        owner, row = self._job(request)
        self._top_level(row, "delete")
        self.state.store.delete(owner, row.id)
        return JSONResponse({"id": row.id, "status": "deleted"})

    # -------------------------------------------------------------- results

    def _completed(self, row: JobRow) -> None:
        if row.status != "completed":
            status = self.statuses.get(row.status, row.status)
            pending = " (not finished yet)" if row.status in PENDING else ""
            raise ApiError(400, f"job {row.id} has no results: its status is {status}{pending}")

    async def _answer(self, text: str) -> Response:
        await asyncio.sleep(self.state.runner.latency("network", 0.5))
        return Response(text, media_type=_JSON)

    def _aggregated_text(self, row: JobRow) -> str:
        """``{child_id: probabilities}`` in circuit order (a single job: ``{id: probabilities}``)."""
        pairs = self.state.store.child_results(row.id) or [(row.id, row.result)]
        return "{" + ", ".join(f"{json.dumps(job_id)}: {result}" for job_id, result in pairs) + "}"

    async def probabilities(self, request: Request) -> Response:
        """``GET /jobs/{id}/results/probabilities``: one circuit's ``{"<index>": p}``."""
        _, row = self._job(request)
        self._completed(row)
        if row.result is None:
            raise ApiError(400, f"job {row.id} is a multi-circuit job; its results are at "
                                f"{self._url(row.id, 'results/probabilities/aggregated')}")
        return await self._answer(row.result)

    async def aggregated(self, request: Request) -> Response:
        """``GET /jobs/{id}/results/probabilities/aggregated``: ``{child_id: {"<index>": p}}``."""
        _, row = self._job(request)
        self._completed(row)
        return await self._answer(self._aggregated_text(row))

    async def results(self, request: Request) -> Response:
        """v0.3 ``GET /jobs/{id}/results``: probabilities, nested by child for a multi-circuit job."""
        _, row = self._job(request)
        self._completed(row)
        return await self._answer(row.result if row.result is not None else self._aggregated_text(row))

    # -------------------------------------------------------------- backends (no key needed)

    def _backends(self) -> list[dict[str, Any]]:
        limit = self.state.config.max_qubits
        now = _iso(time.time())
        return [{"backend": name, "status": "available", "qubits": min(qubits, limit), "average_queue_time": 0,
                 "last_updated": now, "has_access": True, "degraded": False}
                for name, qubits in {"simulator": limit, **DEVICE_QUBITS}.items()]

    async def list_backends(self, request: Request) -> Response:
        """``GET /backends``."""
        return JSONResponse(self._backends())

    async def get_backend(self, request: Request) -> Response:
        """``GET /backends/{name}`` (qiskit-ionq reads ``qubits`` from it, without a key)."""
        name = request.path_params["name"]
        for backend in self._backends():
            if backend["backend"] == name:
                return JSONResponse(backend)
        raise ApiError(404, f"backend {name!r} not found")


@dataclass
class _State:
    """What the endpoints share; the store and runner exist while the app runs (lifespan)."""

    config: ServerConfig
    key_digests: frozenset[str]
    store: JobStore = field(init=False)
    runner: Runner = field(init=False)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.message)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return error_response(error.status_code, str(error.detail), error.headers)


async def _internal_error(request: Request, error: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, f"internal server error: {type(error).__name__}")


def create_app(config: ServerConfig) -> Starlette:
    """The ASGI app. The job store opens, and unfinished jobs resume, when the app starts (lifespan)."""
    state = _State(config, frozenset(_digest(key) for key in config.api_keys))

    @asynccontextmanager
    async def lifespan(app: Starlette):
        state.store = JobStore(config.db)
        state.runner = Runner(state.store, config.profile, config.workers)
        for job_id in state.store.recover():
            state.runner.submit(job_id)
        try:
            yield
        finally:
            await state.runner.close()
            state.store.close()

    v04, v03 = IonQApi(state, "v0.4"), IonQApi(state, "v0.3")
    routes = [Mount("/v0.4", routes=v04.routes()), Mount("/v0.3", routes=v03.routes()), *v04.routes()]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error})


# --------------------------------------------------------------------------- entry points


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free port chosen by the OS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on such sockets, and without it every
    # keep-alive response stalls ~40 ms (Nagle's algorithm against the client's delayed ACK)
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


def main(argv: Sequence[str] | None = None) -> None:
    """``qstore serve``-style command line: ``--host --port --api-keys-file --db --profile`` (and limits)."""
    parser = argparse.ArgumentParser(prog="qstore serve", description="Run a local IonQ-compatible API server.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one and prints it (default)")
    parser.add_argument("--api-keys-file", help=f"file with one API key per line (also read: ${API_KEYS_ENV})")
    parser.add_argument("--db", default="qstore-ionq.sqlite", help="SQLite job store (default qstore-ionq.sqlite)")
    parser.add_argument("--profile", default="none",
                        help="injected latency: 'none', 'ionq-cloud', or a profile JSON file (default none)")
    parser.add_argument("--workers", type=int, default=2, help="jobs simulated at once (default 2)")
    parser.add_argument("--max-qubits", type=int, default=20, help="widest circuit accepted (default 20)")
    parser.add_argument("--max-shots", type=int, default=1_000_000, help="most shots accepted (default 1000000)")
    parser.add_argument("--max-body-bytes", type=int, default=10 * 2**20, help="largest request body (default 10 MiB)")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.api_keys_file, args.db, args.profile, workers=args.workers,
              max_qubits=args.max_qubits, max_shots=args.max_shots, max_body_bytes=args.max_body_bytes)
    except (ValueError, OSError) as error:
        parser.exit(2, f"qstore serve: error: {error}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
