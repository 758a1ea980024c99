"""A ``requests`` client for IonQ's REST API (v0.4), or any compatible server such as :mod:`qstore.ionq.server`.

* Base URL: ``base_url=``, else ``$IONQ_API_URL``, else IonQ's public API
  (:data:`DEFAULT_BASE_URL`). API key: ``api_key=``, else ``$IONQ_API_KEY``
  (:func:`api_key_from_file` reads one from a file); surrounding whitespace is
  stripped and anything but printable ASCII without spaces is refused, with a
  message that does not contain the key. The key only ever travels in the
  ``Authorization`` header, and only to the base URL's origin (scheme, host
  and port): a URL a server names (a job's result URL) on another origin is
  refused (:class:`IonQOriginError`) before anything is sent. ``repr`` hides
  the key, nothing logs it, and no exception message holds it.
* Every request has a timeout (connect, read). Connection errors, 429 and
  5xx (and 409 on reads) are retried with exponential back-off and jitter,
  waiting at least ``Retry-After`` when the server sends it, within a bounded
  number of attempts and total waiting time (:class:`RetryPolicy`). With
  ``deadline=``, one API call (the request, its retries and lookups) ends
  within that many seconds (:class:`IonQTimeoutError` otherwise): each
  attempt's timeouts are cut to the time left.
* Creating a job is idempotent: the body carries a client-generated
  ``metadata.idempotency_key``. A compatible server (ours) returns the first
  job for a resubmission; and before re-sending after an ambiguous failure
  (no answer, or a 5xx) the client looks the key up among the newest jobs
  (up to :data:`LOOKUP_PAGES` pages of :data:`LOOKUP_PAGE_SIZE`), so a job the
  server did create is not created twice.
* Deleting is idempotent too: a retried ``DELETE`` answered 404 after an
  attempt whose answer was lost counts as done.
* 400/401/403/404 raise :class:`IonQAPIError` subclasses carrying IonQ's own
  error name and message; a failed or canceled job raises :class:`IonQJobError`.
* Cost: :meth:`IonQClient.estimate` prices a job without sending it
  (:mod:`qstore.ionq.cost`); with ``budget=`` the client reserves a job's
  estimated cost before sending it, under a lock (so threads sharing the
  client cannot overspend together), refuses (:class:`IonQBudgetError`,
  nothing sent) a job that does not fit, and gives the reservation back when
  the job was certainly not created.

Example::

    client = IonQClient(base_url="http://127.0.0.1:8000/v0.4")   # key from IONQ_API_KEY
    p = client.run(circuit, params=theta)                          # (2**n,) like Simulator.probabilities
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

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
#: jobs per page, and most pages, read when looking for a job whose creation answer was lost
LOOKUP_PAGE_SIZE = 25
LOOKUP_PAGES = 8


class IonQError(Exception):
    """Base class of the client's errors.

    Attributes:
        maybe_processed: True when the failed request may still have taken
            effect on the server (an answer was lost); False when it certainly did not.
    """

    maybe_processed: bool = False


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
    """A job did not finish, or an API call did not complete, within the time allowed."""


class IonQOriginError(IonQError):
    """A server named a URL outside the client's origin; the client refuses to send its API key there."""


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


def _checked_api_key(key: str, source: str) -> str:
    """``key`` without surrounding whitespace, checked to be printable ASCII without spaces.

    The error names ``source`` and the offending position, never the key itself.
    """
    if not isinstance(key, str):
        raise IonQError(f"the IonQ API key from {source} must be a str, got {type(key).__name__}")
    key = key.strip()
    if not key:
        raise IonQError(f"the IonQ API key from {source} is empty")
    for position, char in enumerate(key, 1):
        if not "!" <= char <= "~":
            kind = "whitespace" if char.isspace() else "a control character" if char.isascii() else "not ASCII"
            raise IonQError(f"the IonQ API key from {source} is not valid: character {position} of {len(key)} is "
                            f"{kind} (a key is printable ASCII without spaces)")
    return key


def api_key_from_file(path: str | os.PathLike) -> str:
    """The API key held in a file (surrounding whitespace ignored), checked as :class:`IonQClient` checks keys.

    Keeps the key out of command lines (where ``ps`` shows it) and shell history.

    Raises:
        OSError: the file cannot be read.
        IonQError: the file does not hold one valid key (the message never contains the file's text).
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise IonQError(f"the API key file {os.fspath(path)!r} is not ASCII text") from None
    return _checked_api_key(text, f"file {os.fspath(path)!r}")


def _origin(url: str) -> str:
    """``scheme://host[:port]/`` of an absolute URL, lower-cased: the prefix every request URL must have."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise IonQError(f"the API URL must be an absolute http(s) URL, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}/".lower()


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
        api_key: the API key; default ``$IONQ_API_KEY``. Surrounding whitespace
            is stripped; it must then be printable ASCII without spaces.
        base_url: versioned API root; default ``$IONQ_API_URL`` or :data:`DEFAULT_BASE_URL`.
            The key is sent to this URL's origin only.
        timeout: ``(connect, read)`` seconds for every request.
        retry: the :class:`RetryPolicy` for transient failures.
        session: a ``requests.Session`` to use (e.g. with custom adapters).
        sleep: the function that waits (tests pass a recorder).
        seed: seed of the back-off jitter.
        budget: refuse jobs once their estimated costs would exceed this
            (in the pricing table's currency); None: no limit.
        pricing: the table estimates use (default: qstore's ``pricing.json``).
        deadline: most seconds one API call may take in all, retries and
            waits included (> 0); None: only ``timeout`` and ``retry`` bound it.

    Raises:
        IonQError: no API key was given or found, or it is not valid (the
            message never contains the key); a bad ``base_url`` or ``deadline``.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: tuple[float, float] = (5.0, 60.0), retry: RetryPolicy = RetryPolicy(),
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 seed: int | None = None, budget: float | None = None, pricing: PricingTable | None = None,
                 deadline: float | None = None) -> None:
        source = "api_key="
        if api_key is None:
            api_key, source = os.environ.get(API_KEY_ENV), f"${API_KEY_ENV}"
            if api_key is None:
                raise IonQError(f"no IonQ API key: pass api_key= or set ${API_KEY_ENV}")
        api_key = _checked_api_key(api_key, source)
        if deadline is not None and not (isinstance(deadline, (int, float)) and deadline > 0):
            raise IonQError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/") + "/"
        self._origin = _origin(self.base_url)
        self.timeout = timeout
        self.retry = retry
        self.deadline = deadline
        self._session = session or requests.Session()
        self._headers = {"Authorization": f"apiKey {api_key}", "Content-Type": "application/json",
                         "User-Agent": "qstore-ionq-client"}
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.budget = budget
        self.pricing = pricing or PricingTable.load()
        self._budget_lock = threading.Lock()
        self.spent = 0.0  # estimated cost of the jobs submitted, or being submitted, under the budget

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
        """An API path (``"jobs/ID"``) or a URL from a response, resolved against the base URL.

        Raises:
            IonQOriginError: the URL leaves the base URL's origin (scheme, host, port).
        """
        url = urljoin(self.base_url, path)
        # a string prefix, not a parsed host: no two URL parsers can disagree on where it points
        if url[:len(self._origin)].lower() != self._origin:
            raise IonQOriginError(f"refusing to send the API key to {url[:200]!r}: the server named a URL outside "
                                  f"the API's origin {self._origin.rstrip('/')}")
        return url

    def _timeouts(self, end: float | None) -> tuple[float, float] | None:
        """This attempt's ``(connect, read)`` timeouts, cut to the time left before ``end``; None: no time left."""
        if end is None:
            return self.timeout
        left = end - time.monotonic()
        if left <= 0:
            return None
        return min(self.timeout[0], left), min(self.timeout[1], left)

    def _request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                 recover: Callable[[float | None], Any] | None = None,
                 absent: Callable[[], Any] | None = None) -> Any:
        """Send one API request with retries; the decoded JSON answer.

        ``recover`` (job creation): called with the call's deadline (monotonic
        seconds, or None) before re-sending after an ambiguous failure (the
        request may have been processed); a non-None return value is taken
        as the answer instead of re-sending. ``absent`` (deletion): on a 404
        after an ambiguous failure, the request took effect before its answer
        was lost; ``absent()`` is the answer.

        Raises:
            IonQError: with ``maybe_processed`` set when an attempt's answer was lost.
        """
        url = self._url(path)
        end = None if self.deadline is None else time.monotonic() + self.deadline
        retryable = RETRY_STATUSES | (RETRY_STATUSES_READ if method == "GET" else frozenset())
        waited = 0.0
        ambiguous = False  # an attempt may have been processed although its answer was lost
        problem = "no answer"
        try:
            for attempt in range(self.retry.attempts):
                timeouts = self._timeouts(end)
                if timeouts is None:
                    raise IonQTimeoutError(f"{method} {url}: not done within the {self.deadline} s deadline "
                                           f"({attempt} attempts; last: {problem})")
                try:
                    response = self._session.request(method, url, json=json, params=params, headers=self._headers,
                                                      timeout=timeouts)
                except (requests.ConnectionError, requests.Timeout) as error:
                    problem, wait, lost = f"{type(error).__name__}", None, True
                else:
                    if response.ok:
                        try:
                            return response.json()
                        except ValueError:  # e.g. a proxy's HTML page: not the API answering
                            ambiguous = True
                            raise IonQError(f"{method} {url}: HTTP {response.status_code} answer is not JSON: "
                                            f"{response.text[:200]!r}") from None
                    if response.status_code == 404 and ambiguous and absent is not None:
                        log.warning("%s %s: 404 after a lost answer: the first attempt took effect", method, url)
                        return absent()
                    if response.status_code not in retryable:
                        raise _api_error(response)
                    problem, wait = f"HTTP {response.status_code}", _retry_after(response)
                    lost = response.status_code != 429  # a rate-limited request was not processed
                ambiguous = ambiguous or lost
                if attempt + 1 == self.retry.attempts:
                    break
                delay = max(wait or 0.0, self.retry.backoff(attempt, self._rng))
                if waited + delay > self.retry.max_total:
                    raise IonQRetryError(f"{method} {url}: {problem}; the next retry (in {delay:.1f} s) would "
                                         f"exceed the {self.retry.max_total} s retry budget")
                if end is not None and time.monotonic() + delay >= end:
                    raise IonQTimeoutError(f"{method} {url}: {problem}; the next retry (in {delay:.1f} s) would "
                                           f"pass the {self.deadline} s deadline")
                log.warning("%s %s: %s; retry %d in %.2f s", method, url, problem, attempt + 1, delay)
                self._sleep(delay)
                waited += delay
                if lost and recover is not None:
                    found = recover(end)
                    if found is not None:
                        return found
            raise IonQRetryError(f"{method} {url}: {problem} after {self.retry.attempts} attempts")
        except IonQError as error:
            error.maybe_processed = ambiguous
            raise

    # ------------------------------------------------------------------ jobs

    def submit_body(self, body: Mapping[str, Any]) -> str:
        """``POST /jobs`` with a complete body (see :func:`qstore.ionq.serialize.job_body`); the job id.

        Adds ``metadata.idempotency_key`` unless present, so retries never create a second job.
        With a ``budget``, the job's estimated cost is reserved before sending
        (atomically: threads sharing this client cannot overspend together) and
        given back when the job was certainly not created (the server refused
        it, or no attempt can have reached it); when that is unknown (an answer
        was lost) it stays counted, the safe side of a budget.

        Raises:
            IonQBudgetError: with a ``budget``, when the job's estimate does not fit (nothing is sent).
        """
        cost = self._reserve(body)
        metadata = dict(body.get("metadata") or {})
        key = metadata.setdefault(IDEMPOTENCY_FIELD, uuid.uuid4().hex)
        try:
            answer = self._request("POST", "jobs", json={**body, "metadata": metadata},
                                   recover=lambda end: self._find_by_key(key, end))
        except Exception as error:
            if not getattr(error, "maybe_processed", False):
                self._release(cost)
            raise
        job_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(job_id, str):  # an answer, so the job may exist: its cost stays counted
            raise IonQError(f"POST jobs: the answer names no job id: {str(answer)[:200]!r}")
        return job_id

    def _reserve(self, body: Mapping[str, Any]) -> float:
        """Count the job's estimated cost against the budget (0 without one); the amount counted."""
        if self.budget is None:
            return 0.0
        estimate = estimate_cost(body, self.pricing)
        with self._budget_lock:
            if self.spent + estimate.cost > self.budget:
                raise IonQBudgetError(estimate, self.budget - self.spent)
            self.spent += estimate.cost
        return estimate.cost

    def _release(self, cost: float) -> None:
        """Give back a reservation of :meth:`_reserve`."""
        if cost:
            with self._budget_lock:
                self.spent -= cost

    def _find_by_key(self, key: str, end: float | None = None) -> dict[str, Any] | None:
        """A job among the newest ones carrying idempotency key ``key``; None if not found or unreachable.

        Reads up to :data:`LOOKUP_PAGES` pages of :data:`LOOKUP_PAGE_SIZE` jobs
        (newest first, following the listing's ``next`` cursor), one try each,
        within the call's deadline ``end`` (monotonic seconds; None: none).
        """
        params: dict[str, Any] = {"limit": LOOKUP_PAGE_SIZE}
        for _ in range(LOOKUP_PAGES):
            timeouts = self._timeouts(end)
            if timeouts is None:
                return None
            try:
                response = self._session.get(self._url("jobs"), params=params, headers=self._headers,
                                             timeout=timeouts)
                page = response.json() if response.ok else None
            except (requests.ConnectionError, requests.Timeout, ValueError):
                return None
            if not isinstance(page, dict) or not isinstance(page.get("jobs"), list):
                return None
            for job in page["jobs"]:
                if isinstance(job, dict) and (job.get("metadata") or {}).get(IDEMPOTENCY_FIELD) == key:
                    log.warning("job %s was created before its answer was lost; not resubmitting", job.get("id"))
                    return job
            cursor = page.get("next")
            if not cursor or not page["jobs"]:
                return None
            params = {"limit": LOOKUP_PAGE_SIZE, "next": cursor}
        log.warning("idempotency key %s not among the newest %d jobs; re-sending", key,
                    LOOKUP_PAGE_SIZE * LOOKUP_PAGES)
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
        multi-circuit job. Fetched from the URL the job names, which must be
        on the base URL's origin.

        Raises:
            IonQOriginError: the job names a result URL on another origin (nothing is sent).
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
        """``DELETE /jobs/{id}``: ``{"id", "status": "deleted"}``.

        A retry answered 404 after an attempt whose answer was lost means the
        first attempt deleted the job: that counts as success.
        """
        return self._request("DELETE", f"jobs/{job_id}", absent=lambda: {"id": job_id, "status": "deleted"})

    def backends(self) -> list[dict[str, Any]]:
        """``GET /backends``: name, status, qubits... of each backend."""
        return self._request("GET", "backends")
