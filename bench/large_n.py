"""Large registers: seconds per gate on n = 20..26 qubits, against memory bandwidth.

Circuit: ``L`` layers (default 2) of [RY on every qubit, RZ on every qubit,
CNOT(i, i+1) chain], every rotation with its own parameter; one circuit
(B = 1), final state vector out. For each size we time

* our backends (``reference`` excluded: it is slow on purpose) in complex128
  and complex64, at 1 and 2 threads;
* the bandwidth bound: a copy of a state-sized array (numpy at 1 thread, a
  numba ``prange`` loop at 2), GB/s = 2 * bytes / time, timed at the start
  and the end of the run (the faster is kept); every row then gets
  "passes per gate" = its seconds per gate / one copy (an unfused gate
  cannot beat about one pass);
* the peers on the same circuit: qulacs (complex128 only), Qiskit Aer
  (``enable_truncation=False``, both precisions), Lightning (both),
  qsimcirq (complex64 only);
* our passes over the state: each of our rows is one gathered pass per
  cache block of the compiled program (the first block's pass writes the
  product state as it reads it), so "copies per pass" = its seconds / passes / one copy, and its
  effective bandwidth = 2 * state bytes * passes / seconds (a pass reads and
  writes the state once, as a copy does).

Goals at n = 24 and 26 (issue 19): complex128 >= 10x qulacs and complex64 >= 2x
qsimcirq (at most half its time), at 1 and 2 threads; each pass within 1.5
copies.

Usage: ``python bench/large_n.py [--sizes 20 22 24] [--layers 2] [--allow-26] [--quick] [--json PATH]``
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import peers
from _runner import (
    Record,
    announce,
    call_with_threads,
    make_parser,
    measured,
    print_table,
    time_call,
    write_json,
)

# isort: split
from workloads import layered_circuit

import qsim_core as qc  # after _runner, which puts the checkout on sys.path
from qsim_core.compiler import compile_circuit

BENCHMARK = "large_n"
THREADS = (1, 2)
PRECISIONS = ("double", "single")
DTYPES = {"double": np.complex128, "single": np.complex64}
CHECK_QUBITS = 10  # every engine's state is compared with the reference on this size first
TOLERANCE = {"double": 1e-10, "single": 1e-5}
PEER_TOLERANCE = 1e-5
GOALS = {"double": ("qulacs", 10.0), "single": ("qsimcirq", 2.0)}  # precision -> (peer, speed-up wanted)
PASS_GOAL = 1.5  # copies per pass over the state, at most


def parameters(circuit: qc.Circuit) -> np.ndarray:
    """One fixed pseudo-random parameter row for ``circuit``, angles in [-pi, pi)."""
    return np.random.default_rng(2026).uniform(-np.pi, np.pi, circuit.num_params)


@functools.cache
def reference_state(layers: int) -> np.ndarray:
    """The final state of the ``CHECK_QUBITS``-qubit circuit from our ``reference`` backend."""
    circuit = layered_circuit(CHECK_QUBITS, layers)
    return np.asarray(qc.Simulator(backend="reference").statevector(circuit, params=parameters(circuit)))


def _timed(fn: Callable[[], object], circuit: qc.Circuit, repeat: int, min_repeat: int, **fields: Any) -> Record:
    """Time ``fn`` (one run of ``circuit``) into a ``statevector`` record; ``fields`` fill the rest."""
    timing = time_call(fn, repeat=repeat, min_repeat=min_repeat, budget=30.0)
    return measured(timing, benchmark=BENCHMARK, case="statevector", qubits=circuit.num_qubits,
                    batch=1, gates=len(circuit), **fields)


def measure_ours(
    backend: str, precision: str, threads: int, sizes: list[int], layers: int, repeat: int, min_repeat: int
) -> list[Record]:
    """Our ``backend``: check its state against the reference, then time each size."""
    sim = qc.Simulator(backend=backend, precision=precision, seed=7, threads=threads)
    check = layered_circuit(CHECK_QUBITS, layers)
    state = np.asarray(sim.statevector(check, params=parameters(check)))
    error = float(np.max(np.abs(state - reference_state(layers))))
    if not error <= TOLERANCE[precision]:
        print(f"ERROR: our {backend} ({precision}) differs from the reference by {error:.2e}; its timings are dropped")
        return []
    records = []
    for n in sizes:
        circuit = layered_circuit(n, layers)
        theta = parameters(circuit)
        records.append(_timed(functools.partial(sim.statevector, circuit, params=theta), circuit, repeat, min_repeat,
                              backend=backend, kind="ours", threads=threads, precision=precision))
    return records


def passes(n: int, layers: int) -> int:
    """Passes over the state our engine makes on the ``n``-qubit circuit: one per cache block of its compiled
    program (default block width), the first writing the product state; one for a program without blocks."""
    program = compile_circuit(layered_circuit(n, layers))
    return max(1, len(program.block_start) - 1)


def pass_rows(records: list[Record], layers: int) -> list[list[Any]]:
    """Per record of ours: passes, ms per pass, copies per pass, effective GB/s against the copy's."""
    copies = {(r.qubits, r.precision, r.threads): r for r in records if r.kind == "bound"}
    rows = []
    for r in sorted((r for r in records if r.kind == "ours"), key=lambda r: (r.qubits, r.precision, r.threads,
                                                                               r.backend)):
        copy = copies[(r.qubits, r.precision, r.threads)]
        count = passes(r.qubits, layers)
        per_pass = r.seconds / count
        state_bytes = 2**r.qubits * np.dtype(DTYPES[r.precision]).itemsize
        r.extra.update(passes=count, copies_per_pass=per_pass / copy.seconds)
        rows.append([r.qubits, r.precision, r.threads, r.backend, count, per_pass * 1e3, per_pass / copy.seconds,
                     f"{'yes' if per_pass / copy.seconds <= PASS_GOAL else 'no'}",
                     2 * state_bytes * count / r.seconds / 1e9, copy.extra["GB/s"]])
    return rows


def measure_peer(peer: str, threads: int, sizes: list[int], layers: int, repeat: int, min_repeat: int) -> list[Record]:
    """Peer ``peer`` in each precision it has: check its state against the reference, then time each size."""
    records = []
    reference = reference_state(layers)
    for precision in PRECISIONS:
        if precision not in peers.PEERS[peer].precisions:
            continue
        check = layered_circuit(CHECK_QUBITS, layers)
        adapter = peers.make(peer, check, threads, precision)
        if adapter is None or not peers.check_statevector(adapter, parameters(check), reference, PEER_TOLERANCE):
            continue
        for n in sizes:
            circuit = layered_circuit(n, layers)
            theta = parameters(circuit)
            adapter = peers.make(peer, circuit, threads, precision)
            if adapter is None:
                continue
            records.append(_timed(functools.partial(adapter.final_state, theta), circuit, repeat, min_repeat,
                                  backend=peer, kind="peer", threads=threads, precision=precision))
            records[-1].note = adapter.note
            del adapter  # free this size's state before the next, larger one
    return records


def measure_copy(n: int, precision: str, threads: int, repeat: int, min_repeat: int) -> Record:
    """The memory-bandwidth bound: one copy of a ``2**n`` state (numpy at 1 thread, numba prange at more)."""
    src = np.ones(2**n, dtype=DTYPES[precision])  # ones, not empty: pages must really be mapped
    dst = np.ones_like(src)
    if threads == 1:
        backend = "copy (numpy)"
        timing = time_call(lambda: np.copyto(dst, src), repeat=repeat, min_repeat=min_repeat)
    else:
        import numba

        backend = "copy (numba prange)"
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            timing = time_call(lambda: _parallel_copy()(dst, src), repeat=repeat, min_repeat=min_repeat)
        finally:
            numba.set_num_threads(previous)
    return measured(timing, benchmark=BENCHMARK, case="copy", backend=backend, kind="bound", qubits=n, batch=1,
                    threads=threads, precision=precision, extra={"GB/s": 2 * src.nbytes / timing.seconds / 1e9})


@functools.cache
def _parallel_copy() -> Any:
    """A numba kernel ``copy(dst, src)`` over numba's thread pool (built on first use: numba stays optional)."""
    import numba

    @numba.njit(parallel=True)
    def copy(dst: np.ndarray, src: np.ndarray) -> None:
        for i in numba.prange(src.size):
            dst[i] = src[i]

    return copy


def speedups(records: list[Record]) -> list[list[Any]]:
    """Rows comparing each of our results with the goal peer and the fastest peer of its precision."""
    by_key = {(r.backend, r.qubits, r.precision, r.threads): r for r in records}
    rows = []
    for ours in (r for r in records if r.kind == "ours"):
        goal_peer, wanted = GOALS[ours.precision]
        goal = by_key.get((goal_peer, ours.qubits, ours.precision, ours.threads))
        rivals = [r for r in records if r.kind == "peer" and (r.qubits, r.precision, r.threads)
                  == (ours.qubits, ours.precision, ours.threads)]
        fastest = min(rivals, key=lambda r: r.seconds, default=None)
        goal_ratio = goal.seconds / ours.seconds if goal else float("nan")
        rows.append([
            ours.qubits, ours.threads, ours.precision, ours.backend, ours.per_gate_ms,
            goal_peer, goal.per_gate_ms if goal else float("nan"), goal_ratio,
            f"{wanted:g}x: {'yes' if goal_ratio >= wanted else 'no'}" if goal else "-",
            fastest.backend if fastest else "-", fastest.seconds / ours.seconds if fastest else float("nan"),
        ])
    return sorted(rows, key=lambda row: (row[0], row[1], row[2], row[3]))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 if any measurement is missing)."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: 2 repeats (1 for calls over the budget)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 22, 24], metavar="N",
                        help="register sizes, 10..26 (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=2, help="layers of RY-all, RZ-all, CNOT chain (default: 2)")
    parser.add_argument("--allow-26", action="store_true",
                        help="allow n = 26 (a 1 GiB complex128 state per engine; several minutes)")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes))
    if any(not 10 <= n <= 26 for n in sizes) or (26 in sizes and not args.allow_26):
        parser.error("sizes must be in 10..26, and 26 needs --allow-26")
    announce()
    repeat, min_repeat = (2, 1) if args.quick else (3, 3)

    def bounds() -> list[Record]:
        return [measure_copy(n, p, t, repeat, min_repeat) for n in sizes for p in PRECISIONS for t in THREADS]

    first_bounds = bounds()
    records: list[Record] = []
    backends = [b for b in qc.available_backends() if b != "reference"]
    print(f"our backends: {', '.join(backends)}")
    expected = set()
    for backend in backends:
        for precision in PRECISIONS:
            for threads in THREADS:
                expected.add((backend, precision, threads))
                records += measure_ours(backend, precision, threads, sizes, args.layers, repeat, min_repeat)
    for peer in peers.available():
        for threads in THREADS:
            expected.update((peer, p, threads) for p in peers.PEERS[peer].precisions)
            records += call_with_threads(measure_peer, threads, isolate=peers.PEERS[peer].threads_at_import,
                                         peer=peer, sizes=sizes, layers=args.layers, repeat=repeat,
                                         min_repeat=min_repeat)

    # The bound is a best case: measured at both ends of the run, the faster kept, so that load from a
    # neighbour during one of them does not distort every row's passes per gate.
    records += [min(a, b, key=lambda r: r.seconds) for a, b in zip(first_bounds, bounds(), strict=True)]
    copies = {(r.qubits, r.precision, r.threads): r.seconds for r in records if r.kind == "bound"}
    for r in records:
        if r.gates:
            r.extra["passes_per_gate"] = r.seconds / r.gates / copies[(r.qubits, r.precision, r.threads)]
    print_table(
        ["n", "precision", "threads", "copy", "ms/pass", "GB/s"],
        [[r.qubits, r.precision, r.threads, r.backend, r.seconds * 1e3, r.extra["GB/s"]]
         for r in records if r.kind == "bound"],
        title="Memory-bandwidth bound: one copy of a state-sized array",
    )
    print_table(
        ["n", "precision", "threads", "engine", "s/circuit", "ms/gate", "passes/gate", "note"],
        [[r.qubits, r.precision, r.threads, r.backend, r.seconds, r.per_gate_ms, r.extra["passes_per_gate"], r.note]
         for r in sorted(records, key=lambda r: (r.qubits, r.precision, r.threads, r.kind != "ours", r.seconds))
         if r.gates],
        title=f"{args.layers} x [RY all, RZ all, CNOT chain], one circuit, median of repeats",
    )
    print_table(
        ["n", "precision", "threads", "engine", "passes", "ms/pass", "copies/pass", f"<= {PASS_GOAL:g}",
         "effective GB/s", "copy GB/s"],
        pass_rows(records, args.layers),
        title="Our passes over the state against a copy (same run)",
    )
    print_table(
        ["n", "threads", "precision", "ours", "our ms/gate", "goal peer", "its ms/gate", "speed-up", "goal",
         "fastest peer", "speed-up"],
        speedups(records),
        title="Our speed-up (peer time / our time)",
    )
    path = write_json(records, args.json, BENCHMARK)
    print(f"\nwrote {len(records)} records to {path}")
    missing = sorted(expected - {(r.backend, r.precision, r.threads) for r in records if r.gates})
    if missing:
        print("no timings for: " + ", ".join(f"{b} {p} {t}T" for b, p, t in missing) + " (see ERROR / note above)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
