"""The one benchmark runner: timing, records, tables, JSON output, thread control.

Every script in ``bench/`` measures through :func:`time_call` (or
:func:`time_interleaved`, to compare long calls in turn), stores
:class:`Record` objects, prints them with :func:`print_table` and writes them
with :func:`write_json`, so all results share one format and one timing rule:

* a warm-up call first (numba JIT compilation, first-touch allocation and
  the peers' lazy set-up are not what we measure), then
* ``repeat`` samples of ``number`` back-to-back calls each, ``number`` chosen
  so one sample lasts at least ``min_sample`` seconds (timer resolution and
  jitter stay small for microsecond calls); the reported time is the
  **median** seconds per call, robust to a neighbour process stealing a core.

Threads: our engine takes ``threads=`` per simulator. Peers have their own
knobs; where a library fixes its thread pool when it is imported (OpenMP
libraries read ``OMP_NUM_THREADS`` once), :func:`call_with_threads` runs the
measurement in a fresh interpreter with the thread variables set.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import gc
import importlib.util
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# Every library's OpenMP runtime under libgomp's default wait (spin 300,000 rounds, then sleep): importing
# qsim_core would otherwise make every runtime loaded after it passive (see qsim_core.threads), which slows
# peers that open a parallel region per gate. A policy set by whoever runs the benchmark is kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "300000"

# The scripts run from a checkout (``python bench/x.py``) without installing qsim_core.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: Variables that size the thread pools of OpenMP, numba, qulacs and BLAS,
#: read once when each library loads.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "QULACS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Result of :func:`time_call`.

    Attributes:
        seconds: median wall-clock seconds per call.
        repeats: number of samples the median is taken over.
        number: calls per sample.
    """

    seconds: float
    repeats: int
    number: int


def time_call(
    fn: Callable[[], object],
    *,
    repeat: int = 5,
    min_repeat: int = 3,
    min_sample: float = 0.02,
    budget: float = 20.0,
    warmup: bool = True,
) -> Timing:
    """Median seconds per call of ``fn()``.

    Args:
        fn: the work to time, called without arguments.
        repeat: samples wanted.
        min_repeat: samples kept even when ``budget`` is exceeded.
        min_sample: seconds one sample should last at least (short calls are
            run several times per sample).
        budget: seconds the samples should take in total; long calls get fewer
            samples, down to ``min_repeat``.
        warmup: make one untimed call first (JIT compilation, allocation).

    Returns:
        The median over the samples, in seconds per call.
    """
    if warmup:
        fn()
    enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection in one sample only is noise
    try:
        start = time.perf_counter()
        fn()
        probe = time.perf_counter() - start
        number = max(1, int(min_sample / probe)) if probe > 0 else 1
        repeats = max(min_repeat, min(repeat, int(budget / max(probe * number, 1e-9))))
        # A long probe call is a valid sample; keep it instead of paying for another.
        samples = [probe] if number == 1 else []
        while len(samples) < repeats:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - start) / number)
    finally:
        if enabled:
            gc.enable()
    return Timing(statistics.median(samples), len(samples), number)


def time_interleaved(fns: dict[Any, Callable[[], object]], *, repeat: int = 7, warmup: bool = True, block: int = 1,
                     lead: int = 0) -> dict[Any, Timing]:
    """Median seconds per call of each of ``fns``, sampled in turn: ``block`` calls of each per round, each timed.

    For comparing calls of 0.1 s and more on a shared machine: a slow spell
    weighs on every contender alike instead of on whichever ran during it, so
    their ratio is steadier than that of two :func:`time_call` runs one after
    the other. A ``block`` of several calls keeps short calls from paying for
    the previous contender's leftover work (another process's, a library's
    background threads); ``lead`` untimed calls before each block do the same
    for long calls, each timed call then following a call of its own kind.
    """
    if warmup:
        for fn in fns.values():
            fn()
    samples: dict[Any, list[float]] = {name: [] for name in fns}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, fn in fns.items():
                for _ in range(lead):
                    fn()
                for _ in range(block):
                    start = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return {name: Timing(statistics.median(times), len(times), 1) for name, times in samples.items()}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass
class Record:
    """One measurement: ``seconds`` per call of work on ``batch`` circuits.

    Attributes:
        benchmark: script name (``seed_circuit``, ``large_n``).
        case: what was computed (``8Z``, ``1024 shots``, ``statevector``, ``copy``).
        backend: our backend name or the peer's name.
        kind: ``ours``, ``peer`` or ``bound`` (a hardware reference such as a copy).
        qubits: register size.
        batch: circuits per call.
        threads: threads the measurement was allowed to use.
        precision: ``double`` (complex128) or ``single`` (complex64).
        seconds: median seconds per call.
        repeats: samples behind the median.
        gates: gates per circuit, 0 where a per-gate time is meaningless.
        note: how the peer was driven, or anything else a reader must know.
        extra: further named figures (GB/s, passes per gate).
        timestamp: when the measurement finished (UTC, ISO 8601).
    """

    benchmark: str
    case: str
    backend: str
    kind: str
    qubits: int
    batch: int
    threads: int
    precision: str
    seconds: float
    repeats: int
    gates: int = 0
    note: str = ""
    extra: dict[str, float] = dataclasses.field(default_factory=dict)
    timestamp: str = dataclasses.field(default_factory=_now)

    @property
    def per_circuit_us(self) -> float:
        """Microseconds per circuit."""
        return self.seconds / self.batch * 1e6

    @property
    def circuits_per_s(self) -> float:
        """Circuits per second."""
        return self.batch / self.seconds

    @property
    def per_gate_ms(self) -> float:
        """Milliseconds per gate (NaN without a gate count)."""
        return self.seconds / self.gates * 1e3 if self.gates else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The fields plus the derived figures, for JSON."""
        out = dataclasses.asdict(self)
        out.update(per_circuit_us=self.per_circuit_us, circuits_per_s=self.circuits_per_s)
        if self.gates:
            out["per_gate_ms"] = self.per_gate_ms
        return out


def measured(timing: Timing, **fields: Any) -> Record:
    """A :class:`Record` for ``timing`` with the other fields given by name."""
    return Record(seconds=timing.seconds, repeats=timing.repeats, **fields)


def busy_cores(interval: float = 0.5) -> float:
    """Cores' worth of CPU time other processes used over ``interval`` seconds (NaN off Linux).

    On a shared 2-core machine a neighbour's compile makes every 2-thread
    timing (ours and the peers' OpenMP teams) wildly slow, so runs say so.
    """

    def busy_and_total() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = busy_and_total()
        time.sleep(interval)
        busy1, total1 = busy_and_total()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)


def warn_if_busy(threshold: float = 0.3) -> float:
    """Print a warning when other processes keep more than ``threshold`` cores busy; returns the figure."""
    busy = busy_cores()
    if busy > threshold:
        print(f"WARNING: other processes keep {busy:.1f} of {os.cpu_count()} cores busy: "
              "timings, multi-thread ones above all, will be slow and noisy")
    return busy


@functools.cache
def machine_tags() -> dict[str, Any]:
    """Git commit, hostname, CPU model, core count, load before the run and OpenMP's wait policy.

    The wait policy is libgomp's default for every library unless the caller set one (see the top of this
    module); the tag says which policy this run's peers and ours ran under.
    """

    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD") or "no-commit"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"commit": commit, "hostname": socket.gethostname(), "cpu": cpu, "cpus": os.cpu_count(),
            "busy_cores_at_start": warn_if_busy(),
            "omp_wait": {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}}


#: seconds of busy work before the first measurement of a run (see :func:`warm_up`)
WARM_UP_SECONDS = 1.5


def warm_up(seconds: float = WARM_UP_SECONDS) -> None:
    """Keep the CPU busy for ``seconds``.

    A core that was idle runs the first second or so of work slower: on the 2-core VM a batch of 1,000 seed
    circuits took 1.58 ms per call for the first 0.9 s of a process and 1.21 ms after, and 1.12 ms from the
    start after 1.5 s of spinning. Whatever a run measures first (our backends) paid for it and the peers
    measured later did not.
    """
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def announce() -> None:
    """Print the machine line at the start of a run, before our own load, then :func:`warm_up` the CPU."""
    tags = machine_tags()
    print(f"{tags['cpu']}, {tags['cpus']} cores, host {tags['hostname']}, commit {tags['commit']}, "
          "OpenMP wait: " + ", ".join(f"{k}={v}" for k, v in tags["omp_wait"].items() if v is not None))
    warm_up()


def write_json(records: Sequence[Record], path: Path | str, benchmark: str) -> Path:
    """Write ``records``, each tagged with :func:`machine_tags`, to ``path``.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tags = machine_tags()
    payload = {
        "benchmark": benchmark,
        "argv": sys.argv,
        **tags,
        "records": [{**tags, **r.to_dict()} for r in records],
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def finish(records: Sequence[Record], path: Path | str, benchmark: str, names: Sequence[str],
           threads: Sequence[int]) -> int:
    """Write the JSON, then name every (backend, threads) pair that has no timing; returns the exit status.

    A missing pair means a failed correctness check or a crash (reported above it), so the run exits 1.
    """
    written = write_json(records, path, benchmark)
    print(f"\nwrote {len(records)} records to {written}")
    expected = {(name, count) for name in names for count in threads}
    missing = sorted(expected - {(r.backend, r.threads) for r in records})
    if missing:
        print("no timings for: " + ", ".join(f"{b} {t}T" for b, t in missing) + " (see ERROR / note above)")
    return 1 if missing else 0


def fmt(value: float) -> str:
    """A number with about three significant digits and thousands separators."""
    if math.isnan(value):
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
    """Print ``rows`` as an aligned text table (numbers right-aligned, via :func:`fmt`)."""
    cells = [[fmt(v) if isinstance(v, float) else str(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    if title:
        print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def make_parser(benchmark: str, description: str, quick_help: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every script shares (``--json``, ``--quick``, described by ``quick_help``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{benchmark}.json",
        metavar="PATH",
        help="where to write the records (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that limit every library's thread pool to ``threads``."""
    return {name: str(threads) for name in THREAD_ENV_VARS}


def call_with_threads(
    func: Callable[..., list[Record]], threads: int, *, isolate: bool, env: dict[str, str | None] | None = None,
    **kwargs: Any
) -> list[Record]:
    """Call ``func(threads=threads, **kwargs)``, in a fresh interpreter if ``isolate``.

    Use ``isolate=True`` for libraries that size their thread pool once, when
    imported: the child starts with :func:`thread_env` set, so the pool has
    exactly ``threads`` threads, and with ``env`` over this process's environment
    (an OpenMP wait policy, read once when the runtime loads; None unsets). ``func`` must be a
    module-level function of a script in ``bench/`` taking JSON-serialisable
    arguments and returning records.

    Returns:
        The records ``func`` returned (none if the child process failed).
    """
    if not isolate:
        return func(threads=threads, **kwargs)
    script = sys.modules[func.__module__].__file__
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        command = [sys.executable, __file__, "--worker", str(script), func.__name__, str(out)]
        changes = {**thread_env(threads), **(env or {})}
        env = {name: value for name, value in {**os.environ, **changes}.items() if value is not None}
        arguments = json.dumps({"threads": threads, **kwargs})
        sys.stdout.flush()  # keep our earlier output ahead of the child's
        result = subprocess.run(command, input=arguments, text=True, env=env, check=False)
        if result.returncode != 0:
            print(f"note: {func.__name__}(threads={threads}) failed in its subprocess (exit {result.returncode})")
            return []
        return [Record(**record) for record in json.loads(out.read_text())]


def _worker(script: str, function: str, out: str) -> None:
    """Child side of :func:`call_with_threads`: run one function, write its records."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # under its own name, so its main() does not run
    records = getattr(module, function)(**json.loads(sys.stdin.read()))
    Path(out).write_text(json.dumps([dataclasses.asdict(r) for r in records]))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:])
    else:
        sys.exit("usage: _runner.py is a library; run bench/seed_circuit.py or bench/large_n.py")
