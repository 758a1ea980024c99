"""A large batch beside a busy Python thread: what holding and retaking the GIL costs a call.

A user's program often has other Python threads at work while a batch runs:
an asyncio loop serving requests (``qstore serve``), a Dask worker's
communication thread, a data loader. The kernels run without the GIL, but
each time a call comes back to Python it must take the GIL back, and a busy
thread gives it up only at its switch interval (5 ms by default). A call that
returns to Python once per chunk of sets pays that wait per chunk.

For each compiled backend, ``threads`` = 1 and 2, and three cases on the seed
circuit (``8Z``: <Z_0>..<Z_7>; ``vjp``: the adjoint gradient of sum_q <Z_q>;
``1024 shots``) on B = 32 sets (a training step's batch) and 100,000 (20,000
with ``--quick``), we time the
call alone and beside a thread that spins in Python, in turn (the thread
started, and one call made, before the timed calls), and print the ratio. On this 2-core
machine the busy thread also takes a core, so with 2 kernel threads part of
the ratio is plain CPU sharing; with 1 kernel thread it is the GIL. No peers:
they run a batch circuit by circuit from Python, holding the GIL between
gates, which is a different question.

Usage: ``python bench/contention.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
from _runner import Record, Timing, announce, call_with_threads, finish, make_parser, measured, print_table

# isort: split
import qsim_core as qc  # after _runner, which puts the checkout on sys.path
from qsim_core import seed_circuit

BENCHMARK = "contention"
CIRCUIT = seed_circuit()
OBSERVABLES = [f"Z{q}" for q in range(8)]
SHOTS = 1024
THREADS = (1, 2)
SETTINGS = ("alone", "beside a busy thread")


class BusyThread:
    """A Python thread that spins (holding the GIL as any pure-Python loop does) while the context is open; entering
    returns once it spins, so that a call timed inside pays nothing for starting it."""

    def __init__(self) -> None:
        self._spinning = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        self._spinning.set()
        count = 0
        while not self._stop.is_set():
            count += 1

    def __enter__(self) -> BusyThread:
        self._thread.start()
        self._spinning.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cases(sim: qc.Simulator, theta: np.ndarray) -> dict[str, Callable[[], object]]:
    """The calls timed, by case name."""
    cotangent = np.ones(len(OBSERVABLES))
    return {"8Z": lambda: sim.expectation(CIRCUIT, OBSERVABLES, theta),
            "vjp": lambda: sim.vjp(CIRCUIT, OBSERVABLES, theta, cotangent),
            f"{SHOTS} shots": lambda: sim.sample(CIRCUIT, SHOTS, theta)}


def time_beside_busy_thread(fn: Callable[[], object], repeat: int, number: int) -> dict[str, Timing]:
    """Median seconds per call of ``fn`` alone and beside a :class:`BusyThread`, sampled in turn: each sample times
    ``number`` calls in a row after an untimed one (the contention of a steady state: a thread just started is
    not yet competing for the GIL as it will)."""
    samples: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
    for _ in range(repeat):
        for setting in SETTINGS:
            with BusyThread() if setting != SETTINGS[0] else contextlib.nullcontext():
                fn()
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                samples[setting].append((time.perf_counter() - start) / number)
    return {setting: Timing(statistics.median(times), len(times), number) for setting, times in samples.items()}


def measure(threads: int, batches: list[int], repeat: int) -> list[Record]:
    """Every backend, batch and case at ``threads`` kernel threads, alone and beside a busy thread in turn (a
    small batch's samples time 20 calls)."""
    records = []
    for backend in (name for name in qc.available_backends() if name != "reference"):
        sim = qc.Simulator(backend=backend, threads=threads, seed=7)
        for batch in batches:
            theta = np.random.default_rng(2026).uniform(-np.pi, np.pi, (batch, CIRCUIT.num_params))
            for case, fn in cases(sim, theta).items():
                timings = time_beside_busy_thread(fn, repeat, 1 if batch > 1000 else 20)
                records += [measured(timing, benchmark=BENCHMARK, case=case, backend=backend, kind="ours", qubits=8,
                                     batch=batch, threads=threads, precision="double", note=setting)
                            for setting, timing in timings.items()]
    return records


def ratios(records: list[Record]) -> list[list[object]]:
    """Rows (backend, threads, B, case, ms alone, ms beside a busy thread, busy / alone)."""
    timed = {(r.backend, r.threads, r.batch, r.case, r.note): r.seconds for r in records}
    rows = []
    for backend, threads, batch, case in sorted({key[:4] for key in timed}):
        alone, busy = (timed.get((backend, threads, batch, case, setting)) for setting in SETTINGS)
        if alone and busy:
            rows.append([backend, threads, batch, case, alone * 1e3, busy * 1e3, busy / alone])
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 if a measurement is missing."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: B = 32 and 20,000, 3 rounds")
    args = parser.parse_args(argv)
    announce()
    batches = [32, 20_000 if args.quick else 100_000]
    repeat = 3 if args.quick else 7
    records: list[Record] = []
    for threads in THREADS:
        records += call_with_threads(measure, threads, isolate=False, batches=batches, repeat=repeat)
    print_table(["backend", "threads", "B", "case", "alone ms", "beside busy ms", "ratio"], ratios(records),
                title="Seed circuit per call, alone and beside a spinning Python thread, median")
    return finish(records, args.json, BENCHMARK, sorted({r.backend for r in records}), THREADS)


if __name__ == "__main__":
    sys.exit(main())
