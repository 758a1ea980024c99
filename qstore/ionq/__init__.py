"""IonQ adapter: circuit <-> IonQ JSON, a REST client, cost estimates, and a local IonQ-compatible server.

* :mod:`qstore.ionq.wire`: IonQ's JSON wire format, each gate's JSON form (from the gate table).
* :mod:`qstore.ionq.serialize`: circuits to JSON: :func:`to_ionq_json`, multi-circuit blocks,
  :func:`job_body`; :mod:`qstore.ionq.parse`: JSON to circuits: :func:`from_ionq_json`,
  :func:`parse_job_body`; :mod:`qstore.ionq.results`: IonQ result dicts <-> arrays;
  :mod:`qstore.ionq.noise`: the simulator's ``noise`` field as :class:`qsim_core.NoiseModel` (and its 400s).
* :mod:`qstore.ionq.client`: :class:`IonQClient`, a ``requests`` client for
  IonQ's API or the local server (retries, a deadline, idempotent job creation and deletion,
  polling, results as engine arrays, a budget guard; the key checked and sent to the API's origin only).
* :mod:`qstore.ionq.cost`: dry-run cost estimates from ``pricing.json``.
* :mod:`qstore.ionq.server`: the local server (``serve``; ``running_server`` for tests;
  ``qstore serve`` on the command line), with its SQLite job store
  (:mod:`qstore.ionq.server.jobstore`) and latency profiles (:mod:`qstore.ionq.server.latency`).
  Imported on demand: it needs the ``server`` extra (starlette and uvicorn).
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
    IonQOriginError,
    IonQPermissionError,
    IonQRetryError,
    IonQTimeoutError,
    RetryPolicy,
    api_key_from_file,
)
from .cost import CostError, CostEstimate, PricingTable, estimate_cost
from .parse import JobRequest, from_ionq_json, parse_input, parse_job_body
from .results import counts_from_ionq, probabilities_from_ionq, probabilities_to_ionq
from .serialize import bind_batch, job_body, to_ionq_json, to_ionq_multi_json
from .wire import IonQFormatError

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
    "IonQOriginError",
    "IonQPermissionError",
    "IonQRetryError",
    "IonQTimeoutError",
    "JobRequest",
    "PricingTable",
    "RetryPolicy",
    "api_key_from_file",
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
