"""IonQ adapter: circuit <-> IonQ JSON, a REST client, cost estimates, and a local IonQ-compatible server.

* :mod:`qstore.ionq.serialize`: :func:`to_ionq_json` / :func:`from_ionq_json`
  (driven by the gate table), job bodies, IonQ result dicts <-> arrays.
* :mod:`qstore.ionq.client`: :class:`IonQClient`, a ``requests`` client for
  IonQ's API or the local server (retries, idempotent job creation, polling,
  results as engine arrays, a budget guard).
* :mod:`qstore.ionq.cost`: dry-run cost estimates from ``pricing.json``.
* :mod:`qstore.ionq.server`: the local server (``serve``, ``main`` for the
  command line, ``running_server`` for tests), with its SQLite job store
  (:mod:`qstore.ionq.server.jobstore`) and latency profiles (:mod:`qstore.ionq.server.latency`).
  Imported on demand (it loads starlette and uvicorn).
"""

from .client import (
    IonQAPIError,
    IonQAuthenticationError,
    IonQBadRequestError,
    IonQBudgetError,
    IonQClient,
    IonQError,
    IonQJobError,
    IonQNotFoundError,
    IonQPermissionError,
    IonQRetryError,
    IonQTimeoutError,
    RetryPolicy,
)
from .cost import CostError, CostEstimate, PricingTable, estimate_cost
from .serialize import (
    IonQFormatError,
    JobRequest,
    bind_batch,
    counts_from_ionq,
    from_ionq_json,
    job_body,
    parse_input,
    parse_job_body,
    probabilities_from_ionq,
    probabilities_to_ionq,
    to_ionq_json,
    to_ionq_multi_json,
)

__all__ = [
    "CostError",
    "CostEstimate",
    "IonQAPIError",
    "IonQAuthenticationError",
    "IonQBadRequestError",
    "IonQBudgetError",
    "IonQClient",
    "IonQError",
    "IonQFormatError",
    "IonQJobError",
    "IonQNotFoundError",
    "IonQPermissionError",
    "IonQRetryError",
    "IonQTimeoutError",
    "JobRequest",
    "PricingTable",
    "RetryPolicy",
    "bind_batch",
    "counts_from_ionq",
    "estimate_cost",
    "from_ionq_json",
    "job_body",
    "parse_input",
    "parse_job_body",
    "probabilities_from_ionq",
    "probabilities_to_ionq",
    "to_ionq_json",
    "to_ionq_multi_json",
]
