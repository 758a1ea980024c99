"""Running circuits beyond this process: the asynchronous executor and the local-vs-remote comparison.

* :mod:`.executor`: :class:`AsyncQuantumExecutor`, a counts-only executor (qsim_core's
  :data:`~qsim_core.measurement.Executor` protocol) over the engine, a local IonQ-compatible
  server or IonQ's cloud: bounded concurrency, multi-circuit jobs, a result cache, per-job timing.
* :mod:`.compare`: ``qstore compare``'s library part: the same circuits in process and remotely.
"""

from .compare import Agreement, Comparison, TargetRun, compare, format_report, save, tvd_against_noise
from .executor import AsyncQuantumExecutor, CacheInfo, ExecutorClosedError, JobTiming

__all__ = [
    "Agreement",
    "AsyncQuantumExecutor",
    "CacheInfo",
    "Comparison",
    "ExecutorClosedError",
    "JobTiming",
    "TargetRun",
    "compare",
    "format_report",
    "save",
    "tvd_against_noise",
]
