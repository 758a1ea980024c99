"""A local IonQ-compatible REST server backed by :mod:`qsim_core` (extra ``server``: starlette, uvicorn).

* :mod:`.app`: the routes (IonQ's v0.4 and v0.3 job API), authentication, quotas, :class:`ServerConfig`.
* :mod:`.strictjson`: request bodies decoded as strict JSON (no NaN, no lone surrogates, bounded depth).
* :mod:`.limits`: what one job may cost (gates, work, circuits, result size, metadata), checked before parsing.
* :mod:`.openapi`: the OpenAPI document served at ``/v0.4/openapi.json``.
* :mod:`.runner`: jobs simulated in a worker pool, round-robin across API keys, results streamed to the store.
* :mod:`.jobstore`: the SQLite job store; jobs survive restarts and run exactly once (or fail after crashing
  the server ``max_attempts`` times); finished jobs are purged after ``retain`` seconds.
* :mod:`.latency`: injected latency profiles (``none``, ``ionq-cloud``, or a JSON file).
* :mod:`.run`: :func:`running_server` (a background thread, for tests and notebooks) and
  :func:`serve` (the foreground server of ``qstore serve``).
"""

from ..._extras import MissingExtraError

try:
    import starlette  # noqa: F401  (both are needed by the modules below)
    import uvicorn  # noqa: F401
except ImportError as error:
    raise MissingExtraError("server", "the local IonQ-compatible server", error) from error

from .app import API_KEYS_ENV, DEVICE_QUBITS, ServerConfig, create_app, read_api_keys
from .jobstore import JobStore, StoreLockedError
from .latency import PHASES, LatencyProfile
from .limits import JobLimits, LimitError
from .openapi import openapi_document
from .run import running_server, serve
from .runner import execute, runs_inline

__all__ = [
    "API_KEYS_ENV",
    "DEVICE_QUBITS",
    "PHASES",
    "JobLimits",
    "JobStore",
    "LatencyProfile",
    "LimitError",
    "ServerConfig",
    "StoreLockedError",
    "create_app",
    "execute",
    "openapi_document",
    "read_api_keys",
    "running_server",
    "runs_inline",
    "serve",
]
