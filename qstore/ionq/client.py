"""A ``requests`` client for IonQ's REST API (v0.4), or any compatible server such as :mod:`qstore.ionq.server`.

* Base URL: ``base_url=``, else ``$IONQ_API_URL``, else IonQ's public API
  (:data:`DEFAULT_BASE_URL`). API key: ``api_key=``, else ``$IONQ_API_KEY``;
  it only ever travels in the ``Authorization`` header (``repr`` hides it and
  nothing logs it).
* Every request has a timeout (connect, read). Connection errors, 429 and
  5xx (and 409 on reads) are retried with exponential back-off and jitter,
  waiting at least ``Retry-After`` when the server sends it, within a bounded
  number of attempts and total waiting time (:class:`RetryPolicy`).
* Creating a job is idempotent: the body carries a client-generated
  ``metadata.idempotency_key``. A compatible server (ours) returns the first
  job for a resubmission; and before re-sending after an ambiguous failure
  (no answer, or a 5xx) the client looks the key up among the recent jobs,
  so a job the server did create is not created twice.
* 400/401/403/404 raise :class:`IonQAPIError` subclasses carrying IonQ's own
  error name and message; a failed or canceled job raises :class:`IonQJobError`.
* Cost: :meth:`IonQClient.estimate` prices a job without sending it
  (:mod:`qstore.ionq.cost`); with ``budget=`` the client refuses
  (:class:`IonQBudgetError`, nothing sent) a job that would take its
  estimated spending past the budget.

Example::

    client = IonQClient(base_url="http://127.0.0.1:8000/v0.4")   # key from IONQ_API_KEY
    p = client.run(circuit, params=theta)                          # (2**n,) like Simulator.probabilities
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import numpy as np
import requests

import qsim_core as qc

from .cost import CostEstimate, PricingTable, estimate_cost
from .results import probabilities_from_ionq
from .serialize import job_body
from .wire import IDEMPOTENCY_FIELD, QIS

log = logging.getLogger("qstore.ionq.client")

DEFAULT_BASE_URL = "https://api.ionq.co/v0.4"
API_KEY_ENV = "IONQ_API_KEY"
BASE_URL_ENV = "IONQ_API_URL"
#: statuses worth retrying: rate limiting, server and gateway errors (Cloudflare's 52x included)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, *range(520, 530)})
#: a conflict on a read means "not ready yet" (as the official clients treat it)
RETRY_STATUSES_READ = frozenset({409})
FINAL_STATUSES = ("completed", "failed", "canceled")


class IonQError(Exception):
    """Base class of the client's errors."""


class IonQAPIError(IonQError):
    """The API answered with an error status.

    Attributes:
        status: HTTP status code.
        error: IonQ's error name (``"Bad Request"``, ...).
        message: IonQ's explanation.
    """

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message


class IonQBadRequestError(IonQAPIError):
    """400: the request is invalid (IonQ's message names the parameter)."""


class IonQAuthenticationError(IonQAPIError):
    """401: the API key is missing or unknown."""


class IonQPermissionError(IonQAPIError):
    """403: the API key may not use this resource."""


class IonQNotFoundError(IonQAPIError):
    """404: no such job or backend (or not this key's)."""


_BY_STATUS: dict[int, type[IonQAPIError]] = {400: IonQBadRequestError, 401: IonQAuthenticationError,
                                             403: IonQPermissionError, 404: IonQNotFoundError}


class IonQRetryError(IonQError):
    """A request still failed after the retry policy's attempts or waiting time ran out."""


class IonQJobError(IonQError):
    """A job ended ``failed`` or ``canceled``.

    Attributes:
        job: the job as ``GET /jobs/{id}`` returned it (``failure`` holds IonQ's code and message).
    """

    def __init__(self, job: Mapping[str, Any]) -> None:
        failure = job.get("failure") or {}
        detail = f": {failure.get('code', '')} {failure.get('error', '')}".rstrip() if failure else ""
        super().__init__(f"job {job.get('id')} {job.get('status')}{detail}")
        self.job = dict(job)


class IonQTimeoutError(IonQError, TimeoutError):
    """A job did not finish within the time allowed."""


class IonQBudgetError(IonQError):
    """A job was not submitted: its estimated cost would exceed the client's budget.

    Attributes:
        estimate: the job's :class:`~qstore.ionq.cost.CostEstimate`.
        remaining: what is left of the budget, in the estimate's currency.
    """

    def __init__(self, estimate: CostEstimate, remaining: float) -> None:
        super().__init__(f"job on {estimate.backend} would cost {estimate.cost:.2f} {estimate.currency}; "
                         f"{remaining:.2f} {estimate.currency} left of the budget")
        self.estimate = estimate
        self.remaining = remaining


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried.

    Attributes:
        attempts: most tries of one request, >= 1 (the first one included).
        initial_delay: back-off before the first retry, seconds; doubles each retry.
        max_delay: cap of one back-off, seconds (a longer ``Retry-After`` still wins).
        max_total: cap of the total time spent waiting between tries, seconds.
        jitter: fraction of each back-off drawn at random (0: none, 1: "full jitter"),
            so that many clients do not retry in lockstep.
    """

    attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 30.0
    max_total: float = 120.0
    jitter: float = 0.5

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        delay = min(self.max_delay, self.initial_delay * 2.0**retry)
        return delay * (1.0 - self.jitter * rng.random())


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _api_error(response: requests.Response) -> IonQAPIError:
    """The exception for an error response, with IonQ's error name and message when the body has them."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error, message = response.reason or "Error", response.text[:500] or "(no body)"
    if isinstance(body, dict):  # {"error", "message"}; also {"code", "message"} and {"error": {"type", "message"}}
        detail = body.get("error")
        if isinstance(detail, dict):
            error, message = str(detail.get("type", error)), str(detail.get("message", message))
        else:
            error, message = str(detail or error), str(body.get("message", message))
    return _BY_STATUS.get(response.status_code, IonQAPIError)(response.status_code, error, message)


class IonQClient:
    """Jobs on IonQ's API (or a compatible server): submit, poll, fetch results, cancel, delete.

    Args:
        api_key: the API key; default ``$IONQ_API_KEY``.
        base_url: versioned API root; default ``$IONQ_API_URL`` or :data:`DEFAULT_BASE_URL`.
        timeout: ``(connect, read)`` seconds for every request.
        retry: the :class:`RetryPolicy` for transient failures.
        session: a ``requests.Session`` to use (e.g. with custom adapters).
        sleep: the function that waits (tests pass a recorder).
        seed: seed of the back-off jitter.
        budget: refuse jobs once their estimated costs would exceed this
            (in the pricing table's currency); None: no limit.
        pricing: the table estimates use (default: qstore's ``pricing.json``).

    Raises:
        IonQError: no API key was given or found.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: tuple[float, float] = (5.0, 60.0), retry: RetryPolicy = RetryPolicy(),
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 seed: int | None = None, budget: float | None = None, pricing: PricingTable | None = None) -> None:
        api_key = api_key or os.environ.get(API_KEY_ENV)
        if not api_key:
            raise IonQError(f"no IonQ API key: pass api_key= or set ${API_KEY_ENV}")
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/") + "/"
        self.timeout = timeout
        self.retry = retry
        self._session = session or requests.Session()
        self._headers = {"Authorization": f"apiKey {api_key}", "Content-Type": "application/json",
                         "User-Agent": "qstore-ionq-client"}
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.budget = budget
        self.pricing = pricing or PricingTable.load()
        self.spent = 0.0  # estimated cost of the jobs submitted under the budget (counted only with one)

    def __repr__(self) -> str:
        return f"IonQClient(base_url={self.base_url!r}, api_key='***')"

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> IonQClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _url(self, path: str) -> str:
        """An API path (``"jobs/ID"``) or a root-relative URL from a response (``"/v0.4/jobs/..."``)."""
        return urljoin(self.base_url, path)

    def _request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                 recover: Callable[[], Any] | None = None) -> Any:
        """Send one API request with retries; the decoded JSON answer.

        ``recover`` (job creation): called before re-sending after an
        ambiguous failure (the request may have been processed); a non-None
        return value is taken as the answer instead of re-sending.
        """
        url = self._url(path)
        retryable = RETRY_STATUSES | (RETRY_STATUSES_READ if method == "GET" else frozenset())
        waited = 0.0
        for attempt in range(self.retry.attempts):
            try:
                response = self._session.request(method, url, json=json, params=params, headers=self._headers,
                                                  timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                problem, wait, ambiguous = f"{type(error).__name__}", None, True
            else:
                if response.ok:
                    try:
                        return response.json()
                    except ValueError:  # e.g. a proxy's HTML page: not the API answering
                        raise IonQError(f"{method} {url}: HTTP {response.status_code} answer is not JSON: "
                                        f"{response.text[:200]!r}") from None
                if response.status_code not in retryable:
                    raise _api_error(response)
                problem, wait = f"HTTP {response.status_code}", _retry_after(response)
                ambiguous = response.status_code != 429  # a rate-limited request was not processed
            if attempt + 1 == self.retry.attempts:
                break
            delay = max(wait or 0.0, self.retry.backoff(attempt, self._rng))
            if waited + delay > self.retry.max_total:
                raise IonQRetryError(f"{method} {url}: {problem}; the next retry (in {delay:.1f} s) would exceed "
                                     f"the {self.retry.max_total} s retry budget")
            log.warning("%s %s: %s; retry %d in %.2f s", method, url, problem, attempt + 1, delay)
            self._sleep(delay)
            waited += delay
            if ambiguous and recover is not None:
                found = recover()
                if found is not None:
                    return found
        raise IonQRetryError(f"{method} {url}: {problem} after {self.retry.attempts} attempts")

    # ------------------------------------------------------------------ jobs

    def submit_body(self, body: Mapping[str, Any]) -> str:
        """``POST /jobs`` with a complete body (see :func:`qstore.ionq.serialize.job_body`); the job id.

        Adds ``metadata.idempotency_key`` unless present, so retries never create a second job.

        Raises:
            IonQBudgetError: with a ``budget``, when the job's estimate does not fit (nothing is sent).
        """
        cost = 0.0
        if self.budget is not None:
            estimate = estimate_cost(body, self.pricing)
            if self.spent + estimate.cost > self.budget:
                raise IonQBudgetError(estimate, self.budget - self.spent)
            cost = estimate.cost
        metadata = dict(body.get("metadata") or {})
        key = metadata.setdefault(IDEMPOTENCY_FIELD, uuid.uuid4().hex)
        answer = self._request("POST", "jobs", json={**body, "metadata": metadata},
                               recover=lambda: self._find_by_key(key))
        self.spent += cost
        return answer["id"]

    def _find_by_key(self, key: str) -> dict[str, Any] | None:
        """A recent job carrying idempotency key ``key`` (one attempt; None if not found or unreachable)."""
        try:
            response = self._session.get(self._url("jobs"), params={"limit": 25}, headers=self._headers,
                                         timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout):
            return None
        if not response.ok:
            return None
        for job in response.json().get("jobs", []):
            if (job.get("metadata") or {}).get(IDEMPOTENCY_FIELD) == key:
                log.warning("job %s was created before its answer was lost; not resubmitting", job.get("id"))
                return job
        return None

    def submit(self, circuits: qc.Circuit | Sequence[qc.Circuit], *, gateset: str = QIS,
               params: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
               backend: str = "simulator", shots: int = 1024, name: str | None = None,
               metadata: Mapping[str, str] | None = None, noise: Mapping[str, Any] | None = None,
               names: Sequence[str | None] | None = None) -> str:
        """Submit one circuit, several (a multi-circuit job), or one circuit with ``params[B, P]``; the job id.

        Arguments as for :func:`qstore.ionq.serialize.job_body`.
        """
        return self.submit_body(job_body(circuits, gateset=gateset, params=params, backend=backend, shots=shots,
                                         name=name, metadata=metadata, noise=noise, names=names))

    def estimate(self, circuits: qc.Circuit | Sequence[qc.Circuit], **options: Any) -> CostEstimate:
        """What :meth:`submit` with these arguments would cost (a dry run: nothing is sent)."""
        return estimate_cost(job_body(circuits, **options), self.pricing)

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: status, metadata, stats, result URLs."""
        return self._request("GET", f"jobs/{job_id}")

    def wait(self, job_id: str, *, timeout: float = 600.0, poll: float = 0.05, max_poll: float = 2.0) -> dict[str, Any]:
        """Poll until the job is final; the completed job.

        Polls every ``poll`` seconds at first, growing by half each time up to
        ``max_poll`` (local jobs finish in milliseconds, cloud jobs in seconds).

        Raises:
            IonQJobError: the job failed or was canceled.
            IonQTimeoutError: not final after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in FINAL_STATUSES:
                if job["status"] != "completed":
                    raise IonQJobError(job)
                return job
            if time.monotonic() + poll > deadline:
                raise IonQTimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            self._sleep(poll)
            poll = min(max_poll, poll * 1.5)

    def results(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """IonQ's result dict of a completed job (as returned by :meth:`wait` or :meth:`job`).

        ``{"<basis index>": p}`` for one circuit; ``{child_id: {...}}`` for a
        multi-circuit job. Fetched from the URL the job names.
        """
        url = ((job.get("results") or {}).get("probabilities") or {}).get("url")
        if url is None:  # servers that do not list result URLs
            url = f"jobs/{job['id']}/results/probabilities" + ("/aggregated" if job.get("child_job_ids") else "")
        return self._request("GET", url)

    def probabilities(self, job_id: str, *, timeout: float = 600.0) -> np.ndarray | list[np.ndarray]:
        """Wait for a job and return its probabilities as the engine lays them out.

        Returns:
            float64 ``(2**n,)`` (index bit k is qubit k), or a list of them in
            circuit order for a multi-circuit job; ``n`` is the job's ``qubits``.
        """
        job = self.wait(job_id, timeout=timeout)
        qubits = int(job["stats"]["qubits"])
        result = self.results(job)
        children = job.get("child_job_ids")
        if children:
            return [probabilities_from_ionq(result[child], qubits) for child in children]
        return probabilities_from_ionq(result, qubits)

    def run(self, circuits: qc.Circuit | Sequence[qc.Circuit], *, timeout: float = 600.0,
            **options: Any) -> np.ndarray | list[np.ndarray]:
        """:meth:`submit` then :meth:`probabilities` (``options`` as for :meth:`submit`)."""
        return self.probabilities(self.submit(circuits, **options), timeout=timeout)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``PUT /jobs/{id}/status/cancel``: ``{"id", "status"}``."""
        return self._request("PUT", f"jobs/{job_id}/status/cancel")

    def delete(self, job_id: str) -> dict[str, Any]:
        """``DELETE /jobs/{id}``: ``{"id", "status": "deleted"}``."""
        return self._request("DELETE", f"jobs/{job_id}")

    def backends(self) -> list[dict[str, Any]]:
        """``GET /backends``: name, status, qubits... of each backend."""
        return self._request("GET", "backends")
