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
``GET    /jobs/{id}/results/histogram``     ``{"<basis index>": count}`` of a sampled circuit (noise model, QPU)
``GET    /jobs/{id}/results``               v0.3: either of the two forms above
``PUT    /jobs/{id}/status/cancel``         cancel a pending job (a no-op on a finished one)
``GET    /jobs/estimate``                   price of a job from gate counts (``qstore/ionq/pricing.json``)
``DELETE /jobs/{id}``                       delete a job; later requests for it get 404
``GET    /backends``, ``/backends/{name}``  no API key needed (qiskit-ionq probes it without one)
``GET    /v0.4/openapi.json``               this API as an OpenAPI 3 document (:mod:`.openapi`)
=========================================  ==========================================================

Requests carry ``Authorization: apiKey <key>``; keys come from a file (one per
line, ``#`` comments) and/or ``QSTORE_API_KEYS`` (comma or whitespace
separated). An unknown key gets 401; a key never sees another key's jobs
(404, as if they did not exist). Errors have IonQ's shape
``{"error": "<HTTP phrase>", "message": "...", "statusCode": <int>}``.

Nothing a client sends can cause a 5xx: bodies are strict JSON
(:mod:`.strictjson`: no ``NaN``, no lone surrogates, bounded numbers and
nesting), checked against the job limits (:mod:`.limits`) before any circuit
is built; bodies over ``max_body_bytes`` get 413, slower than
``receive_timeout`` 408, a key with ``max_queued_per_key`` unfinished jobs
429 with ``Retry-After``. Anything unexpected is a logged 500 quoting a
request id.

Jobs persist in SQLite (:mod:`qstore.ionq.server.jobstore`). A job's body is parsed
once, on ``POST``, into its circuits grouped by gate sequence: each group is
one template compiled once (and kept compiled for later jobs) and run as one
batched engine call. Jobs run in a thread pool (the compiled kernels release
the GIL), except small ones, which run on the event loop: for them the thread
hand-offs cost as much as the job (see :func:`runs_inline`).
``metadata.idempotency_key`` (a string) makes ``POST /jobs`` idempotent per
API key: a resubmission returns the first job.
Simulator jobs return the exact probabilities, or with ``noise.model``
(``aria-1``, ``aria-2``, ``forte-1``; :mod:`qstore.ionq.noise`) ``shots``
noisy trajectories as frequencies ``count / shots``, seeded by ``noise.seed``
(else by the job id); their job reports ``noise`` as ``{"model", "seed"}``
with the seed used. ``qpu.*`` backends are emulated (a warning on the job
says so): ``shots`` trajectories under the QPU's published noise model
(``qpu.aria-1``, ``qpu.aria-2``, ``qpu.forte-1``), or ``shots`` outcomes
sampled from the noiseless state where IonQ has published no rates.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from ..cost import CostError, PricingTable
from ..noise import IDEAL, noise_field
from ..parse import JobRequest, gate_counts, parse_job_body
from ..wire import IDEMPOTENCY_FIELD, MULTI_CIRCUIT, SINGLE_CIRCUIT, IonQFormatError
from .jobstore import PENDING, TERMINAL, JobRow, JobStore
from .latency import LatencyProfile
from .limits import ESTIMATE_MAXIMA, JobLimits, LimitError
from .openapi import openapi_document
from .runner import Runner, job_seed
from .strictjson import BodyError, loads_strict

log = logging.getLogger("qstore.ionq.server")

API_KEYS_ENV = "QSTORE_API_KEYS"
#: qubits of the QPUs IonQ lists (reported capped by the server's own limit; jobs on them are emulated)
DEVICE_QUBITS = {"qpu.aria-1": 25, "qpu.aria-2": 25, "qpu.forte-1": 36, "qpu.forte-enterprise-1": 36}
#: also accepted as a job's backend: cirq-ionq's bare QPU target
_QPU_ALIASES = ("qpu",)
#: how each API version spells a status (v0.3 said "running" where v0.4 says "started")
_STATUS_NAMES = {"v0.3": {"started": "running"}, "v0.4": {}}
_JSON = "application/json"
#: bodies up to this size (quick to validate) are parsed on the event loop, larger ones in a thread
_INLINE_BODY_BYTES = 2**16
#: aggregated results up to this many probability entries are answered in one piece, larger ones streamed
_INLINE_RESULT_ENTRIES = 2**16
#: the largest integer query parameter accepted (``next`` is a SQLite rowid, a signed 64-bit integer)
_MAX_QUERY_INT = 2**63 - 1


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server instance needs.

    Attributes:
        db: SQLite database file of the job store.
        api_keys: the accepted API keys (never stored or shown; jobs record their SHA-256 digests).
        profile: injected latency (:class:`~qstore.ionq.server.latency.LatencyProfile`).
        workers: simulation threads (jobs that run at once).
        limits: what one job may ask for (qubits, shots, circuits, gates, work, result size; see
            :class:`~qstore.ionq.server.limits.JobLimits`, which explains the defaults).
        max_body_bytes: largest request body accepted, bytes (larger: 413).
        max_queued_per_key: most unfinished (queued or running) jobs per API key (more: 429 with Retry-After).
        max_attempts: runs of a job the server may die during before the job is marked failed.
        retain: seconds a finished job (body, results, children) is kept; None keeps jobs forever.
        receive_timeout: seconds a client may take to send a request body (slower: 408).
        max_connections: connections served at once (uvicorn's ``limit_concurrency``; more get 503).
        keep_alive: seconds an idle keep-alive connection stays open.
        pricing: prices ``GET /jobs/estimate`` quotes.
    """

    db: Path
    api_keys: frozenset[str] = field(repr=False)
    profile: LatencyProfile
    workers: int = 2
    limits: JobLimits = field(default_factory=JobLimits)
    max_body_bytes: int = 10 * 2**20
    max_queued_per_key: int = 100
    max_attempts: int = 3
    retain: float | None = None
    receive_timeout: float = 30.0
    max_connections: int = 256
    keep_alive: float = 5.0
    pricing: PricingTable = field(default_factory=PricingTable.load)

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError(f"no API keys: pass an api keys file or set {API_KEYS_ENV}")
        for name in ("workers", "max_body_bytes", "max_queued_per_key", "max_attempts", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("receive_timeout", "keep_alive", "retain"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value}")


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
    """An error answered in IonQ's shape with this HTTP status (and headers, e.g. ``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    """IonQ's error body: ``{"error": <HTTP phrase>, "message": ..., "statusCode": status}`` (plus ``extra``)."""
    message = message.encode("utf-8", "backslashreplace").decode()  # whatever a message quotes, it is text
    body = {"error": HTTPStatus(status).phrase, "message": message, "statusCode": status, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def _query_int(value: object, name: str, default: int, low: int, high: int) -> int:
    """An integer query (or JSON body) parameter in ``[low, high]``; ``default`` if absent."""
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.strip().isdecimal() and len(value.strip()) <= 19:
        number = int(value)
    else:
        raise ApiError(400, f"{name!r} must be an integer from {low} to {high}, got {value!r:.60}")
    if not low <= number <= high:
        raise ApiError(400, f"{name!r} must be an integer from {low} to {high}, got {str(number):.40}")
    return number


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
        return [Route(path, _guarded(endpoint), methods=[method]) for path, endpoint, method in [
            ("/jobs", self.create_job, "POST"),
            ("/jobs", self.list_jobs, "GET"),
            ("/jobs/estimate", self.estimate, "GET"),  # before /jobs/{job_id}, which would take it
            ("/jobs/{job_id}", self.get_job, "GET"),
            ("/jobs/{job_id}", self.delete_job, "DELETE"),
            ("/jobs/{job_id}/status/cancel", self.cancel_job, "PUT"),
            ("/jobs/{job_id}/results", self.results, "GET"),
            ("/jobs/{job_id}/results/probabilities", self.probabilities, "GET"),
            ("/jobs/{job_id}/results/probabilities/aggregated", self.aggregated, "GET"),
            ("/jobs/{job_id}/results/histogram", self.histogram, "GET"),
            ("/backends", self.list_backends, "GET"),
            ("/backends/{name:path}", self.get_backend, "GET"),
        ]]

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
        row = self.state.store.get(owner, job_id) if _is_uuid(job_id) else None
        if row is None:  # also for another key's job: its existence is not revealed
            raise ApiError(404, f"job {job_id:.100} not found")
        return owner, row

    def _top_level(self, row: JobRow, action: str) -> None:
        if row.parent is not None:
            raise ApiError(400, f"job {row.id} is circuit {row.position} of job {row.parent}; {action} the parent")

    async def _raw_body(self, request: Request) -> bytes:
        """The request body as received: at most ``max_body_bytes`` (else 413), within ``receive_timeout`` (408)."""
        config = self.state.config
        limit = config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdecimal() and int(declared[:20]) > limit:
            raise ApiError(413, f"request body of {declared:.20} bytes exceeds this server's limit of {limit} bytes "
                                "(max_body_bytes)")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(config.receive_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, f"request body exceeds this server's limit of {limit} bytes "
                                            "(max_body_bytes)")
                    chunks.append(chunk)
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {config.receive_timeout:g} s") from None
        return b"".join(chunks)

    async def _body(self, request: Request) -> tuple[Any, bytes]:
        """The request body decoded from strict JSON (None if empty), and as received."""
        raw = await self._raw_body(request)
        try:
            return (loads_strict(raw) if len(raw) <= _INLINE_BODY_BYTES
                    else await asyncio.to_thread(loads_strict, raw)), raw
        except BodyError as error:
            raise ApiError(400, str(error)) from None

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
                results = {"probabilities": {"url": self._url(row.id, tail)}}
                if _sampled(summary) and not children:
                    results["histogram"] = {"url": self._url(row.id, "results/histogram")}
                view.update({"results": results, "execution_duration_ms": row.execution_ms})
        if row.failure:
            view["failure"] = row.failure
        if row.warnings:
            view["warning"] = {"messages": row.warnings}
        return view

    def _parse(self, body: Any) -> JobRequest:
        """A ``POST /jobs`` body checked against the limits (before any circuit is built), then parsed."""
        try:
            self.state.config.limits.check(body)
            job = parse_job_body(body)
        except (LimitError, IonQFormatError) as error:
            raise ApiError(getattr(error, "status", 400), str(error)) from None
        backends = {"simulator", *DEVICE_QUBITS, *_QPU_ALIASES}
        if job.backend not in backends:
            raise ApiError(400, f"unknown backend {job.backend!r:.100}; this server runs "
                                f"{', '.join(sorted(backends))}")
        return job

    # -------------------------------------------------------------- jobs

    async def create_job(self, request: Request) -> Response:
        """``POST /jobs``: validate, store durably, schedule; ``{"id", "status": "submitted"}``."""
        owner = self._owner(request)
        quota = self.state.config.max_queued_per_key
        if self.state.runner.unfinished(owner) >= quota:  # before reading the body: refusing costs nothing
            raise ApiError(429, f"this API key has {quota} unfinished jobs, this server's limit (max_queued_per_key); "
                                "retry when some have finished", {"Retry-After": "1"})
        body, raw = await self._body(request)
        # a large body in a thread: it takes a while to validate, and the loop keeps answering meanwhile
        job = self._parse(body) if len(raw) <= _INLINE_BODY_BYTES else await asyncio.to_thread(self._parse, body)
        key = job.metadata.get(IDEMPOTENCY_FIELD)
        key = key if isinstance(key, str) and key else None
        existing = self.state.store.by_idempotency_key(owner, key) if key else None
        if existing is not None:
            if not _same_body(body, self.state.store.request(existing.id)):
                raise ApiError(409, f"{IDEMPOTENCY_FIELD} {key!r} was already used for a different job")
            return JSONResponse({"id": existing.id, "status": self.statuses.get(existing.status, existing.status),
                                 "session_id": None})
        job_id = str(uuid.uuid4())
        noise = noise_field(job.noise_request, job_seed(job, job_id)) if job.backend == "simulator" else job.noise
        shared = {"backend": job.backend, "shots": job.shots, "noise": noise, "settings": job.settings,
                  "session_id": job.session_id}
        counts = _circuit_gate_counts(job)
        summary = {**shared, "type": MULTI_CIRCUIT if job.multi else SINGLE_CIRCUIT, "name": job.name,
                   "metadata": job.metadata, "stats": _stats(counts, job.qubits)}
        children = [(str(uuid.uuid4()), {**shared, "type": SINGLE_CIRCUIT, "name": name, "metadata": {},
                                         "stats": _stats([count], job.qubits)})
                    for name, count in zip(job.names, counts, strict=True)] if job.multi else []
        self.state.store.create(owner, job_id, summary, raw, key, children)
        self.state.runner.submit(job_id, owner, job)
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
        limit = query.get("limit", body.get("limit") if isinstance(body, dict) else None)
        limit = _query_int(limit, "limit", 100, 1, 1000)
        cursor = query.get("next")
        cursor = None if cursor is None else _query_int(cursor, "next", 0, 0, _MAX_QUERY_INT)
        status = query.get("status")
        stored = {wire: name for name, wire in self.statuses.items()}.get(status, status)
        if stored is not None and stored not in (*PENDING, *TERMINAL):
            known = sorted(self.statuses.get(name, name) for name in (*PENDING, *TERMINAL))
            raise ApiError(400, f"'status' must be one of {', '.join(known)}, got {status!r:.60}")
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
        one, two, shots, qubits = (_query_int(query.get(name), name, 0, 0, ESTIMATE_MAXIMA[name])
                                   for name in ("1q_gates", "2q_gates", "shots", "qubits"))
        job_type = query.get("type", SINGLE_CIRCUIT)
        if job_type not in (SINGLE_CIRCUIT, MULTI_CIRCUIT):
            raise ApiError(400, f"'type' must be {SINGLE_CIRCUIT!r} or {MULTI_CIRCUIT!r}, got {job_type!r:.60}")
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
                             "type": job_type},
            "estimated_at": _iso(time.time()),
        })

    async def cancel_job(self, request: Request) -> Response:
        """``PUT /jobs/{id}/status/cancel``: pending jobs become ``canceled``; finished ones are unchanged."""
        owner, row = self._job(request)
        self._top_level(row, "cancel")
        if self.state.store.cancel(owner, row.id):
            self.state.runner.forget(row.id, owner)
        status = self.state.store.get(owner, row.id).status
        return JSONResponse({"id": row.id, "status": self.statuses.get(status, status)})

    async def delete_job(self, request: Request) -> Response:
        """``DELETE /jobs/{id}``: the job and its children are gone (404 afterwards)."""
        owner, row = self._job(request)
        self._top_level(row, "delete")
        self.state.store.delete(owner, row.id)
        self.state.runner.forget(row.id, owner)
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

    async def _aggregated(self, row: JobRow) -> Response:
        """``{child_id: probabilities}`` in circuit order (a single job: ``{id: probabilities}``).

        Small results in one piece; large ones streamed a circuit at a time, never held together in memory.
        """
        stats = row.summary["stats"]
        if stats["circuits"] << stats["qubits"] <= _INLINE_RESULT_ENTRIES:
            pairs = self.state.store.child_results(row.id) or [(row.id, row.result)]
            return await self._answer("{" + ", ".join(f"{json.dumps(job_id)}: {result}"
                                                      for job_id, result in pairs) + "}")
        await asyncio.sleep(self.state.runner.latency("network", 0.5))
        store = self.state.store

        async def pieces() -> AsyncIterator[str]:
            yield "{"
            for k, child in enumerate(store.child_ids(row.id) or [row.id]):
                yield f"{', ' if k else ''}{json.dumps(child)}: {store.result(child)}"
            yield "}"

        return StreamingResponse(pieces(), media_type=_JSON)

    async def probabilities(self, request: Request) -> Response:
        """``GET /jobs/{id}/results/probabilities``: one circuit's ``{"<index>": p}``."""
        _, row = self._job(request)
        self._completed(row)
        if row.result is None:
            raise ApiError(400, f"job {row.id} is a multi-circuit job; its results are at "
                                f"{self._url(row.id, 'results/probabilities/aggregated')}")
        return await self._answer(row.result)

    async def histogram(self, request: Request) -> Response:
        """``GET /jobs/{id}/results/histogram``: a sampled circuit's (noisy simulator or emulated QPU) shot counts,
        ``{"<index>": count}`` summing to ``shots``."""
        _, row = self._job(request)
        self._completed(row)
        if row.result is None:
            raise ApiError(400, f"job {row.id} is a multi-circuit job; each child job has its histogram "
                                f"({', '.join(self.state.store.child_ids(row.id)[:3])}...)")
        if not _sampled(row.summary):
            raise ApiError(400, f"job {row.id} ran on the ideal simulator: its results are exact probabilities, "
                                "not shots; there is no histogram")
        shots = row.summary["shots"]
        frequencies = json.loads(row.result)
        return await self._answer(json.dumps({key: round(value * shots) for key, value in frequencies.items()}))

    async def aggregated(self, request: Request) -> Response:
        """``GET /jobs/{id}/results/probabilities/aggregated``: ``{child_id: {"<index>": p}}``."""
        _, row = self._job(request)
        self._completed(row)
        return await self._aggregated(row)

    async def results(self, request: Request) -> Response:
        """v0.3 ``GET /jobs/{id}/results``: probabilities, nested by child for a multi-circuit job."""
        _, row = self._job(request)
        self._completed(row)
        return await self._answer(row.result) if row.result is not None else await self._aggregated(row)

    # -------------------------------------------------------------- backends (no key needed)

    def _backends(self) -> list[dict[str, Any]]:
        limit = self.state.config.limits.max_qubits
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
    return error_response(error.status, error.message, error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return error_response(error.status_code, str(error.detail), error.headers)


def _internal_error(request: Request, error: Exception) -> Response:
    """Anything unexpected: logged with a request id, which the answer quotes (and nothing else about it)."""
    request_id = uuid.uuid4().hex
    log.error("internal error %s on %s %s", request_id, request.method, request.url.path, exc_info=error)
    return error_response(500, f"internal server error (request id {request_id}; the server log has the details)",
                          {"X-Request-Id": request_id}, request_id=request_id)


def _guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint`` answering any unexpected exception with :func:`_internal_error`'s 500.

    Here rather than as the app's ``Exception`` handler: Starlette re-raises
    after that handler answers, and uvicorn then drops the connection.
    """
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (ApiError, HTTPException):
            raise
        except Exception as error:
            return _internal_error(request, error)

    return guarded


def _sampled(summary: dict[str, Any]) -> bool:
    """Whether a job's results are shots (an emulated QPU, or a noise model on the simulator)."""
    noise = summary.get("noise") if summary["backend"] == "simulator" else None
    return summary["backend"] != "simulator" or (noise or {}).get("model", IDEAL) != IDEAL


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def _purge_finished(store: JobStore, retain: float) -> None:
    """Forever: delete jobs that finished more than ``retain`` seconds ago, checking every ``retain / 10`` s."""
    while True:
        removed = store.purge(time.time() - retain)
        if removed:
            log.info("retention: deleted %d jobs finished over %g s ago", removed, retain)
        await asyncio.sleep(min(retain / 10, 600))


def create_app(config: ServerConfig) -> Starlette:
    """The ASGI app. The job store opens, and unfinished jobs resume, when the app starts (lifespan)."""
    state = _State(config, frozenset(_digest(key) for key in config.api_keys))

    @asynccontextmanager
    async def lifespan(app: Starlette):
        state.store = JobStore(config.db)
        state.runner = Runner(state.store, config.profile, config.workers, config.limits)
        for job_id, owner in state.store.recover(config.max_attempts):
            state.runner.submit(job_id, owner)
        retention = asyncio.create_task(_purge_finished(state.store, config.retain)) if config.retain else None
        try:
            yield
        finally:
            if retention is not None:
                retention.cancel()
            await state.runner.close()
            state.store.close()

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(config))

    v04, v03 = IonQApi(state, "v0.4"), IonQApi(state, "v0.3")
    routes = [Mount("/v0.4", routes=[Route("/openapi.json", _guarded(openapi), methods=["GET"]), *v04.routes()]),
              Mount("/v0.3", routes=v03.routes()), *v04.routes()]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error})
