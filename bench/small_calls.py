"""Small calls: one seed circuit per call and training-step batches, under both OpenMP wait policies.

What a QML loop calls most: the seed circuit (8 qubits, 40 parameters) for
B = 1 (one circuit per call, as the PennyLane and Qiskit adapters call it) and
B = 32 (a training step's batch) up to 1,000 parameter sets, three cases:
``8Z`` (<Z_0>..<Z_7>), ``vjp`` (the adjoint gradient of sum_q <Z_q>, what a
training step needs) and ``1024 shots``, on ``Simulator(threads=1)`` and
``Simulator(threads=2)``.

Each policy runs in a fresh interpreter, since an OpenMP runtime reads it once:

* ``sleep``: idle OpenMP threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``),
  what ``import qsim_core`` sets when the user sets nothing: what a user gets;
* ``spin``: libgomp's default (``GOMP_SPINCOUNT=300000``), what the other
  benchmarks run every library under.

The two thread counts are timed in turn (:func:`_runner.time_interleaved`),
so their ratio holds on a noisy machine. With the driver's work rule
(``qsim_core.backends.driver.WORK_PER_THREAD``) a 2-thread simulator should
never be much slower than a 1-thread one: a second thread is woken only for
work that pays for its wake-up. No peers here: ``seed_circuit.py`` and
``gradients.py`` time them on the same calls.

Usage: ``python bench/small_calls.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np
from _runner import Record, announce, call_with_threads, finish, make_parser, measured, print_table, time_interleaved

# isort: split
import qsim_core as qc  # after _runner, which puts the checkout on sys.path
from qsim_core import seed_circuit

BENCHMARK = "small_calls"
#: built once: a circuit's compiled program is cached on the object (a new one would be looked up by structure)
CIRCUIT = seed_circuit()
OBSERVABLES = [f"Z{q}" for q in range(8)]
SHOTS = 1024
CASES = ("8Z", "vjp", f"{SHOTS} shots")
COTANGENT = np.ones(len(OBSERVABLES))
THREADS = (1, 2)
#: each policy's interpreter environment (None unsets a variable)
POLICIES: dict[str, dict[str, str | None]] = {
    "sleep": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
    "spin": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "300000"},
}


def run_case(case: str, sim: qc.Simulator, rows: np.ndarray) -> object:
    """One call of ``case`` on ``sim`` for the parameter ``rows``."""
    if case == "8Z":
        return sim.expectation(CIRCUIT, OBSERVABLES, rows)
    if case == "vjp":
        return sim.vjp(CIRCUIT, OBSERVABLES, rows, COTANGENT)
    return sim.sample(CIRCUIT, SHOTS, rows)


def measure(threads: int, policy: str, batches: list[int], repeat: int) -> list[Record]:
    """Every case and batch on ``Simulator(threads=1)`` and ``Simulator(threads=2)`` in turn (``threads``: the
    interpreter's thread pools, 2)."""
    backend = qc.available_backends()[0]
    sims = {count: qc.Simulator(backend=backend, threads=count, seed=7) for count in THREADS}
    records = []
    for batch in batches:
        theta = np.random.default_rng(2026).uniform(-np.pi, np.pi, (batch, CIRCUIT.num_params))
        rows = theta[0] if batch == 1 else theta  # B = 1 through the one-circuit form, as a user calls it
        for case in CASES:
            calls = {count: functools.partial(run_case, case, sim, rows) for count, sim in sims.items()}
            # back-to-back calls per turn: a few milliseconds
            timings = time_interleaved(calls, repeat=repeat, block=max(1, 2000 // batch))
            records += [measured(timing, benchmark=BENCHMARK, case=case, backend=backend, kind="ours", qubits=8,
                                 batch=batch, threads=count, precision="double", note=policy)
                        for count, timing in timings.items()]
    return records


def ratios(records: list[Record]) -> list[list[Any]]:
    """Rows (policy, case, B, 1-thread us/call, 2-thread us/call, 2 / 1)."""
    timed = {(r.note, r.case, r.batch, r.threads): r.seconds for r in records}
    rows = []
    for policy, case, batch in sorted({key[:3] for key in timed}):
        one, two = timed.get((policy, case, batch, 1)), timed.get((policy, case, batch, 2))
        if one and two:
            rows.append([policy, case, batch, one * 1e6, two * 1e6, two / one])
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 if a measurement is missing."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: B = 1 and 32, 5 rounds")
    args = parser.parse_args(argv)
    announce()
    batches = [1, 32] if args.quick else [1, 32, 128, 1000]
    repeat = 5 if args.quick else 15
    records: list[Record] = []
    for policy, env in POLICIES.items():
        records += call_with_threads(measure, max(THREADS), isolate=True, env=env, policy=policy, batches=batches,
                                     repeat=repeat)
    print_table(["policy", "case", "B", "1 thread us/call", "2 threads us/call", "2 / 1"], ratios(records),
                title="Seed circuit per call, Simulator(threads=1) and (threads=2) timed in turn, median")
    return finish(records, args.json, BENCHMARK, sorted({r.backend for r in records}) or ["cython"], THREADS)


if __name__ == "__main__":
    sys.exit(main())
