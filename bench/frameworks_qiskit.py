"""Qiskit front door: the seed circuit as one EstimatorV2 pub, 1,000 parameter sets x 8 observables.

The seed circuit (``qc.seed_circuit()``, 8 qubits, 40 parameters) rebuilt as
a Qiskit ``QuantumCircuit`` with a ``ParameterVector``, and one pub
``(circuit, [Z_0 .. Z_7], values[1000, 1, 40])`` (evs of shape (1000, 8)), run
through three ``BaseEstimatorV2`` implementations, exact (precision 0):

* ours: ``qsim_core.qiskit.EstimatorV2``;
* Aer: ``qiskit_aer.primitives.EstimatorV2``, statevector method, double
  precision, ``max_parallel_threads`` = threads (its fastest exact setting here:
  one ``AerSimulator.run`` with all 1,000 bindings and a ``save_expectation_value``
  per Pauli, Aer's own path);
* Qiskit's reference ``StatevectorEstimator`` (one ``Statevector`` per parameter
  set and observable, single-threaded Python): timed on the first ``--sv-rows``
  parameter sets and scaled to 1,000, since the whole pub takes about a minute.

Every contender's evs are checked against our ``reference`` backend first.
Ours and Aer are timed one after the other at each thread count, each in a
block of back-to-back calls (``time_call``), not interleaved call by call: after
each of its runs Aer's OpenMP threads spin-wait on the cores for milliseconds,
so a 2-thread call of ours right after one waited for them (2-thread pubs took
15-30 ms against 3.4 ms measured alone, on an idle machine).
Goal: ours >= 20x Aer's EstimatorV2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _runner import (
    Record,
    Timing,
    announce,
    finish,
    make_parser,
    measured,
    print_table,
    time_call,
)

# isort: split
import qsim_core as qc  # after _runner, which puts the checkout on sys.path

BENCHMARK = "frameworks_qiskit"
CASE = "EstimatorV2 1000x8Z"
ROWS = 1000
NUM_QUBITS = 8
GOAL = 20.0  # our speed-up over Aer's EstimatorV2
THREADS = (1, 2)
OURS, AER, STATEVECTOR = "qsim_core EstimatorV2", "aer EstimatorV2", "StatevectorEstimator"


@functools.cache
def qiskit_seed_circuit() -> Any:
    """``qc.seed_circuit()`` as a Qiskit circuit: parameter k of ours is ``theta[k]``."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    seed = qc.seed_circuit()
    theta = ParameterVector("theta", seed.num_params)
    circuit = QuantumCircuit(seed.num_qubits)
    for op in seed:
        if op.name == "cnot":
            circuit.cx(*op.qubits)
        else:
            getattr(circuit, op.name)(theta[op.params[0].index], op.qubits[0])
    return circuit


def parameters() -> np.ndarray:
    """``ROWS`` fixed pseudo-random parameter sets (ROWS, 40), angles in [-pi, pi)."""
    return np.random.default_rng(2026).uniform(-np.pi, np.pi, (ROWS, qc.seed_circuit().num_params))


@functools.cache
def pub(rows: int = ROWS) -> tuple:
    """The benchmark's pub on the first ``rows`` parameter sets: evs of shape (rows, 8). Built once: drawing the
    1,000 x 40 angles again in every timed call cost 0.4 ms, 17 % of our pub's time."""
    labels = ["I" * (NUM_QUBITS - 1 - q) + "Z" + "I" * q for q in range(NUM_QUBITS)]  # Qiskit: qubit 0 rightmost
    return qiskit_seed_circuit(), labels, parameters()[:rows, np.newaxis, :]


@functools.cache
def reference_evs() -> np.ndarray:
    """<Z_q> of the first 5 parameter sets from our ``reference`` backend: what every contender must match."""
    strings = [f"Z{q}" for q in range(NUM_QUBITS)]
    return qc.Simulator(backend="reference").expectation(qc.seed_circuit(), strings, parameters()[:5])


def estimator(name: str, threads: int) -> Any:
    """The contender ``name`` set up for ``threads``."""
    if name == OURS:
        from qsim_core.qiskit import EstimatorV2
        return EstimatorV2(threads=threads)
    if name == AER:
        from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2
        options = {"method": "statevector", "precision": "double", "max_parallel_threads": threads}
        return AerEstimatorV2(options={"backend_options": options})
    from qiskit.primitives import StatevectorEstimator
    return StatevectorEstimator()


def run_pub(contender: Any, rows: int = ROWS) -> np.ndarray:
    """The evs of the benchmark pub on ``rows`` parameter sets."""
    return contender.run([pub(rows)]).result()[0].data.evs


def checked(name: str, contender: Any) -> bool:
    """True when ``contender``'s evs of the first 5 parameter sets match the reference (1e-8)."""
    error = float(np.max(np.abs(run_pub(contender, 5) - reference_evs())))
    if not error <= 1e-8:
        print(f"ERROR: {name} differs from the reference by {error:.2e}; its timings are dropped")
        return False
    return True


def record(name: str, seconds: float, repeats: int, threads: int, note: str = "") -> Record:
    """A record of one pub's time (``seconds`` for all ``ROWS`` parameter sets)."""
    return measured(Timing(seconds, repeats, 1), benchmark=BENCHMARK, case=CASE, backend=name,
                    kind="ours" if name == OURS else "peer", qubits=NUM_QUBITS, batch=ROWS, threads=threads,
                    precision="double", gates=len(qc.seed_circuit()), note=note)


def measure_fast(threads: int, repeat: int) -> list[Record]:
    """Ours and Aer, checked, then timed in turn on the whole pub."""
    contenders = {name: estimator(name, threads) for name in (OURS, AER)}
    runs: dict[str, Callable[[], Any]] = {name: functools.partial(run_pub, est) for name, est in contenders.items()
                                          if checked(name, est)}
    timings = {name: time_call(run, repeat=repeat) for name, run in runs.items()}
    return [record(name, t.seconds, t.repeats, threads, "one pub, exact") for name, t in timings.items()]


def measure_statevector(rows: int) -> list[Record]:
    """Qiskit's StatevectorEstimator on ``rows`` parameter sets, scaled to ``ROWS`` (its cost is per set)."""
    contender = estimator(STATEVECTOR, 1)
    if not checked(STATEVECTOR, contender):
        return []
    timing = time_call(functools.partial(run_pub, contender, rows), repeat=1, min_repeat=1, warmup=False)
    note = f"timed on {rows} of {ROWS} sets, x{ROWS / rows:g}"
    return [record(STATEVECTOR, timing.seconds * ROWS / rows, timing.repeats, 1, note)]


def ratios(records: list[Record]) -> list[list[Any]]:
    """Rows (threads, peer, peer s, ours s, speed-up, goal) per peer record with an ours record."""
    ours = {r.threads: r for r in records if r.kind == "ours"}
    rows = []
    for peer in (r for r in records if r.kind == "peer"):
        mine = ours.get(peer.threads)
        if mine is None:
            continue
        ratio = peer.seconds / mine.seconds
        goal = f"{GOAL:.0f}x: {'yes' if ratio >= GOAL else 'no'}" if peer.backend == AER else ""
        rows.append([peer.threads, peer.backend, peer.seconds, mine.seconds, ratio, goal])
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 if a contender has no timing)."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: 3 rounds, StatevectorEstimator on 20 sets")
    parser.add_argument("--sv-rows", type=int, default=100, metavar="N",
                        help="parameter sets StatevectorEstimator is timed on (default: %(default)s)")
    args = parser.parse_args(argv)
    announce()
    repeat = 3 if args.quick else 7
    records: list[Record] = []
    for threads in THREADS:
        records += measure_fast(threads, repeat)
    records += measure_statevector(20 if args.quick else max(1, min(args.sv_rows, ROWS)))
    print_table(
        ["threads", "estimator", "s per pub", "ms per set", "note"],
        [[r.threads, r.backend, r.seconds, r.seconds / ROWS * 1e3, r.note] for r in records],
        title=f"Seed circuit ({NUM_QUBITS} qubits, {len(qc.seed_circuit())} gates) as one pub: "
              f"{ROWS} parameter sets x {NUM_QUBITS} <Z>, exact, median of {repeat}",
    )
    print_table(["threads", "peer", "peer s", "ours s", "speed-up", "goal"], ratios(records),
                title="Our speed-up (StatevectorEstimator, single-threaded, against ours at 1 thread)")
    expected = [(OURS, t) for t in THREADS] + [(AER, t) for t in THREADS] + [(STATEVECTOR, 1)]
    missing = sorted(set(expected) - {(r.backend, r.threads) for r in records})
    status = finish(records, args.json, BENCHMARK, [], THREADS)
    if missing:
        print("no timings for: " + ", ".join(f"{b} {t}T" for b, t in missing))
    return status or int(bool(missing))


if __name__ == "__main__":
    sys.exit(main())
