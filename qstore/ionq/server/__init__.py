"""A local IonQ-compatible REST server backed by :mod:`qsim_core` (extra ``server``: starlette, uvicorn).

* :mod:`.app`: the routes (IonQ's v0.4 and v0.3 job API), authentication, :class:`ServerConfig`.
* :mod:`.runner`: jobs simulated in a worker pool, results written to the store.
* :mod:`.jobstore`: the SQLite job store; jobs survive restarts and run exactly once.
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
from .run import running_server, serve
from .runner import execute, runs_inline

__all__ = [
    "API_KEYS_ENV",
    "DEVICE_QUBITS",
    "PHASES",
    "JobStore",
    "LatencyProfile",
    "ServerConfig",
    "StoreLockedError",
    "create_app",
    "execute",
    "read_api_keys",
    "running_server",
    "runs_inline",
    "serve",
]
