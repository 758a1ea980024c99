"""The local IonQ-compatible server end to end: circuits/s and job latency over HTTP, against in-process simulation.

The seed circuit (8 qubits, 40 angles) on random inputs, 1,024 shots per
circuit, run through :class:`qstore.execution.executor.AsyncQuantumExecutor` (cache off):

* ``in-process``: the executor on a ``qsim_core.Simulator`` in this process,
  jobs of 10 circuits (the baseline the HTTP path is compared with);
* ``round trip``: one 10-circuit job at a time through the server, job latency
  p50/p99 and the mean time per phase (``qstore.execution.executor.JobTiming``).
  Goal: p50 < 20 ms;
* ``throughput``: a batch of circuits at concurrency 1, 10 and 50 (jobs in
  flight), with batching on (10 circuits per job) and off (1): circuits/s,
  job latency p50/p99;
* ``pieces``: what one 10-circuit job costs on each side outside the network:
  building the body, JSON text, the server's parse (validation and grouping
  of the circuits by gate sequence), the server's run of the parsed job (one
  batched engine call per gate sequence, results as JSON), turning results
  into counts.

The server runs in its own process (``python -m qstore.ionq.server``, profile
``none``, its default 2 simulation workers, a fresh SQLite job store in a
temporary folder), as a deployed one would, so client and server do not share
an interpreter lock; on a 2-core machine they still share the cores.

Usage: ``python bench/server.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from _runner import REPO_ROOT, Record, announce, make_parser, measured, print_table, time_call, write_json

# isort: split
import qsim_core as qc  # after _runner, which puts the checkout on sys.path
from qsim_core import seed_circuit
from qstore.execution import AsyncQuantumExecutor, JobTiming
from qstore.ionq import counts_from_ionq, job_body, parse_job_body, probabilities_to_ionq
from qstore.ionq.server import execute

BENCHMARK = "server"
SHOTS = 1024
JOB = 10  # circuits per job when batching is on, and in the round-trip case
CONCURRENCY = (1, 10, 50)
ROUND_TRIP_GOAL_MS = 20.0


def parameters(count: int, seed: int) -> np.ndarray:
    """``count`` random parameter rows ``(count, 40)`` of the seed circuit, angles in [-pi, pi)."""
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, (count, seed_circuit().num_params))


@contextmanager
def server_process(directory: Path) -> Iterator[tuple[str, str]]:
    """A local server in a child process, profile ``none``: ``(root URL, API key)`` while the block runs."""
    key = secrets.token_urlsafe(16)
    command = [sys.executable, "-m", "qstore.ionq.server", "--port", "0", "--profile", "none",
               "--db", str(directory / "jobs.sqlite")]
    child = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "QSTORE_API_KEYS": key},
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()  # "listening on http://127.0.0.1:PORT" once it accepts connections
        if not line.startswith("listening on "):
            raise RuntimeError(f"the server did not start (exit status {child.poll()}): {line!r}")
        yield line.split()[-1], key
    finally:
        child.terminate()
        child.wait(timeout=30)


def percentile_ms(timings: list[JobTiming], q: float) -> float:
    """The ``q``-th percentile of the jobs' total time, milliseconds."""
    return 1e3 * float(np.percentile([t.total for t in timings], q))


def phase_ms(timings: list[JobTiming]) -> dict[str, float]:
    """Mean milliseconds per job in each phase."""
    return {name: 1e3 * float(np.mean([getattr(t, name) for t in timings])) for name in JobTiming.PHASES}


def run_batch(target: qc.Simulator | str, key: str | None, theta: np.ndarray, concurrency: int,
              per_job: int) -> tuple[float, list[JobTiming]]:
    """Wall seconds for all rows of ``theta`` in one call, and the jobs' timings."""
    with AsyncQuantumExecutor(target, api_key=key, max_concurrent=concurrency, circuits_per_job=per_job,
                              cache_size=0) as executor:
        start = time.perf_counter()
        executor.execute(seed_circuit(), theta, SHOTS)
        return time.perf_counter() - start, executor.timings


def record(case: str, backend: str, circuits: int, seconds: float, timings: list[JobTiming], concurrency: int,
           per_job: int, note: str = "") -> Record:
    """A :class:`Record` of ``circuits`` circuits in ``seconds`` with the jobs' latency figures in ``extra``."""
    extra = {"concurrency": concurrency, "circuits_per_job": per_job, "jobs": len(timings),
             "job_p50_ms": percentile_ms(timings, 50), "job_p99_ms": percentile_ms(timings, 99),
             **{f"{name}_ms": value for name, value in phase_ms(timings).items()}}
    return Record(benchmark=BENCHMARK, case=case, backend=backend, kind="ours", qubits=8, batch=circuits,
                  threads=os.cpu_count() or 1, precision="double", seconds=seconds, repeats=len(timings),
                  note=note, extra=extra)


def round_trips(root: str, key: str, jobs: int) -> Record:
    """``jobs`` 10-circuit jobs one after another (fresh inputs each), with their latency and phases."""
    theta = parameters(jobs * JOB, seed=1)
    timings: list[JobTiming] = []
    with AsyncQuantumExecutor(root, api_key=key, max_concurrent=1, circuits_per_job=JOB, cache_size=0) as executor:
        start = time.perf_counter()
        for k in range(jobs):
            executor.execute(seed_circuit(), theta[k * JOB:(k + 1) * JOB], SHOTS)
        wall = time.perf_counter() - start
        timings = executor.timings
    return record("round trip", "local server", jobs * JOB, wall, timings, 1, JOB, note=f"{jobs} jobs in sequence")


def pieces(repeat: int) -> list[list[Any]]:
    """Rows (piece, side, ms per 10-circuit job) of the serialization work in one job."""
    circuit, theta = seed_circuit(), parameters(JOB, seed=2)
    body = job_body([circuit] * JOB, params=theta)
    text, job_id = json.dumps(body), str(uuid.uuid4())
    # new angles in every job, as the server sees them (the engine caches a circuit it has compiled)
    fresh = itertools.cycle([parse_job_body(job_body([circuit] * JOB, params=parameters(JOB, seed=k)))
                             for k in range(16)])
    probabilities = qc.Simulator().probabilities(circuit, theta)
    results = [probabilities_to_ionq(p) for p in probabilities]
    work = [
        ("job_body: circuits -> body", "client", lambda: job_body([circuit] * JOB, params=theta)),
        ("json.dumps(body)", "client", lambda: json.dumps(body)),
        ("json.loads(body)", "server", lambda: json.loads(text)),
        ("parse_job_body: validation, grouping by gate sequence (POST)", "server", lambda: parse_job_body(body)),
        ("execute: a parsed job's run (batched simulation, results as JSON)", "server",
         lambda: execute(next(fresh), job_id, 1)),
        ("probabilities_to_ionq x10", "server", lambda: [probabilities_to_ionq(p) for p in probabilities]),
        ("counts_from_ionq x10 (sampling 1,024 shots)", "client",
         lambda: [counts_from_ionq(r, 8, SHOTS, sample=True, seed=k) for k, r in enumerate(results)]),
    ]
    return [[name, side, 1e3 * time_call(fn, repeat=repeat).seconds] for name, side, fn in work]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (0; the goal verdict is printed)."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "short run: 30 round trips, 200 circuits per case")
    args = parser.parse_args(argv)
    announce()
    circuits = 200 if args.quick else 1000
    round_trip_jobs = 30 if args.quick else 200
    repeat = 3 if args.quick else 5

    records: list[Record] = []
    simulator = qc.Simulator()
    theta = parameters(circuits, seed=0)
    rows = theta[:JOB]
    engine = time_call(lambda: simulator.counts(seed_circuit(), SHOTS, rows), repeat=repeat)
    with AsyncQuantumExecutor(simulator, max_concurrent=1, circuits_per_job=JOB, cache_size=0) as executor:
        in_process = time_call(lambda: executor.execute(seed_circuit(), rows, SHOTS), repeat=repeat)
    for case, backend, timing in (("engine", "Simulator.counts", engine), ("one job", "in-process", in_process)):
        records.append(measured(timing, benchmark=BENCHMARK, case=case, backend=backend, kind="ours", qubits=8,
                                batch=JOB, threads=os.cpu_count() or 1, precision="double",
                                extra={"concurrency": 1, "circuits_per_job": JOB, "jobs": 1,
                                       "job_p50_ms": 1e3 * timing.seconds}, note="median of repeated calls"))
    wall, timings = run_batch(simulator, None, theta, 10, JOB)
    records.append(record("throughput", "in-process", circuits, wall, timings, 10, JOB))

    with tempfile.TemporaryDirectory(prefix="qstore-bench-") as directory, \
            server_process(Path(directory)) as (root, key):
        run_batch(root, key, theta[:2 * JOB], 2, JOB)  # warm-up: the server's first jobs compile its kernels
        run_batch(root, key, theta[:2], 2, 1)
        trip = round_trips(root, key, round_trip_jobs)
        records.append(trip)
        for per_job in (JOB, 1):
            for concurrency in CONCURRENCY:
                wall, timings = run_batch(root, key, theta, concurrency, per_job)
                records.append(record("throughput", "local server", circuits, wall, timings, concurrency, per_job))

    columns = ("job_p50", "job_p99", *JobTiming.PHASES)
    print_table(
        ["case", "target", "concurrency", "circuits/job", "circuits", "jobs", "circuits/s", "job p50 ms",
         "job p99 ms", *[f"{name} ms" for name in JobTiming.PHASES]],
        [[r.case, r.backend, r.extra["concurrency"], r.extra["circuits_per_job"], r.batch, r.extra["jobs"],
          r.circuits_per_s, *[r.extra.get(f"{name}_ms", float("nan")) for name in columns]] for r in records],
        title=f"Seed circuit, {SHOTS:,} shots, through qstore.execution.executor (server: profile none, own process)",
    )
    p50 = trip.extra["job_p50_ms"]
    print_table(["10 seed circuits, 1,024 shots each", "ms"], [
        ["in-process simulation (Simulator.counts)", 1e3 * engine.seconds],
        ["in process through the executor (one job)", 1e3 * in_process.seconds],
        ["through the local server (one job), p50", p50],
        ["added by serialization, HTTP and the server, p50", p50 - 1e3 * engine.seconds],
    ], title="Overhead of the HTTP path over in-process simulation")
    print_table(["piece of one 10-circuit job", "side", "ms"], pieces(repeat), title="Serialization pieces")
    met = "yes" if p50 < ROUND_TRIP_GOAL_MS else "no"
    print(f"\ngoal: a 10-circuit job round trip p50 < {ROUND_TRIP_GOAL_MS:.0f} ms: {p50:.1f} ms: {met}")
    path = write_json(records, args.json, BENCHMARK)
    print(f"wrote {len(records)} records to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
