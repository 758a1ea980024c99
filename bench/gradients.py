"""Gradients of the seed circuit: adjoint and parameter-shift, against PennyLane Lightning and qulacs.

Per parameter set of the seed circuit (8 qubits, 40 parameters) we time

* ``forward``: the 8 expectations <Z_q> (the pass every gradient is compared with),
* ``grad sum Z``: the gradient of the scalar ``sum_q <Z_q>`` (what a training
  step needs: one vector-Jacobian product; ``Simulator.vjp`` with ``method="adjoint"``),
* ``jacobian 8Z``: all 8 x 40 derivatives ``d<Z_q>/d theta`` (adjoint: one
  backward sweep with 8 lanes; parameter-shift: 80 shifted circuits in one batch),

for B = 1 and 1,000 on each compiled backend, 1 and 2 threads (forward and
vjp with their calls taking turns, blocks of 5, so that their ratio does not
move with the VM's slow spells; the Jacobians after them), and in the same
run the peers' gradients of the same scalar: qulacs' ``backprop`` (one
backward sweep, like our vjp) and Lightning's ``diff_method="adjoint"``
through ``qml.grad``. Goals (issue 19, raised from issue 4's 5x): a single
gradient at least 10x faster than qulacs, and a batch of 1,000 gradients at
most 3x its forward pass.

Usage: ``python bench/gradients.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np
import peers
from _runner import (
    Record,
    announce,
    call_with_threads,
    finish,
    make_parser,
    measured,
    print_table,
    time_call,
    time_interleaved,
)

# isort: split
import qsim_core as qc  # after _runner, which puts the checkout on sys.path
from qsim_core import seed_circuit

BENCHMARK = "gradients"
NUM_QUBITS = 8
OBSERVABLES = [f"Z{q}" for q in range(NUM_QUBITS)]
THREADS = (1, 2)
#: peers are slow per gradient: time them on fewer sets and report per set
PEER_BATCH = {"qulacs": 100, "lightning": 20}
SINGLE_GOAL, BATCH_GOAL = 10.0, 3.0
#: our cases timed in turns (the batch goal is their ratio); the others one after the other
INTERLEAVED = ("forward", "grad sum Z (adjoint)")


def parameters(batch: int) -> np.ndarray:
    """``batch`` fixed pseudo-random parameter rows ``(batch, 40)``."""
    return np.random.default_rng(2026).uniform(-np.pi, np.pi, (batch, seed_circuit().num_params))


@functools.cache
def reference_gradient() -> np.ndarray:
    """Gradient of sum_q <Z_q> at the first row, by parameter-shift on the reference backend."""
    sim = qc.Simulator(backend="reference")
    return sim.vjp(seed_circuit(), OBSERVABLES, parameters(1)[0], np.ones(NUM_QUBITS), method="parameter-shift")


def measure_ours(backend: str, threads: int, batches: list[int], repeat: int) -> list[Record]:
    """Forward, vjp (adjoint), Jacobian (adjoint, parameter-shift) on our ``backend``, double precision."""
    circuit = seed_circuit()
    sim = qc.Simulator(backend=backend, threads=threads)
    error = float(np.abs(sim.vjp(circuit, OBSERVABLES, parameters(1)[0], np.ones(NUM_QUBITS))
                         - reference_gradient()).max())
    if not error <= 1e-10:
        print(f"ERROR: our {backend} adjoint gradient differs from parameter-shift by {error:.2e}; dropped")
        return []
    ones = np.ones(NUM_QUBITS)
    cases = {
        "forward": lambda rows: sim.expectation(circuit, OBSERVABLES, rows),
        "grad sum Z (adjoint)": lambda rows: sim.vjp(circuit, OBSERVABLES, rows, ones),
        "jacobian 8Z (adjoint)": lambda rows: sim.gradient(circuit, OBSERVABLES, rows),
        "jacobian 8Z (parameter-shift)": lambda rows: sim.gradient(circuit, OBSERVABLES, rows,
                                                                   method="parameter-shift"),
    }
    records = []
    for batch in batches:
        rows = parameters(batch)[0] if batch == 1 else parameters(batch)
        # the ratio the goal is on: forward and vjp calls take turns, so a slow spell of the VM weighs on both
        timings = time_interleaved({case: functools.partial(cases[case], rows) for case in INTERLEAVED},
                                   repeat=4 * repeat, block=5)
        for case, fn in cases.items():
            timing = timings[case] if case in timings else time_call(functools.partial(fn, rows), repeat=repeat)
            records.append(measured(timing, benchmark=BENCHMARK, case=case, backend=backend, kind="ours",
                                    qubits=NUM_QUBITS, batch=batch, threads=threads, precision="double",
                                    note=("calls interleaved with " + " and ".join(INTERLEAVED)) if case in timings
                                    else ""))
    return records


def _qulacs_gradient(threads: int) -> Any:
    import qulacs

    circuit = qulacs.ParametricQuantumCircuit(NUM_QUBITS)
    add = {"ry": circuit.add_parametric_RY_gate, "rz": circuit.add_parametric_RZ_gate}
    for op in seed_circuit():
        if op.name == "cnot":
            circuit.add_CNOT_gate(*op.qubits)
        else:
            add[op.name](op.qubits[0], 0.0)
    observable = qulacs.Observable(NUM_QUBITS)
    for q in range(NUM_QUBITS):
        observable.add_operator(1.0, f"Z {q}")
    order = [op.params[0].index for op in seed_circuit() if op.params]

    def gradient(theta: np.ndarray) -> np.ndarray:
        out = np.empty_like(theta)
        for b, row in enumerate(theta):
            for k, angle in enumerate(row[order]):
                circuit.set_parameter(k, -angle)  # qulacs rotations are exp(+i a P / 2)
            grads = -np.asarray(circuit.backprop(observable))
            out[b] = 0.0
            np.add.at(out[b], order, grads)
        return out

    return gradient, "ParametricQuantumCircuit.backprop(sum Z)"


def _lightning_gradient(threads: int) -> Any:
    import pennylane as qml
    from pennylane import numpy as pnp

    device = qml.device("lightning.qubit", wires=NUM_QUBITS)
    ops = list(seed_circuit())
    observable = qml.Hamiltonian([1.0] * NUM_QUBITS, [qml.PauliZ(q) for q in range(NUM_QUBITS)])

    @qml.qnode(device, diff_method="adjoint")
    def total(angles):
        for op in ops:
            if op.name == "cnot":
                qml.CNOT(wires=list(op.qubits))
            else:
                gate = qml.RY if op.name == "ry" else qml.RZ
                gate(angles[op.params[0].index], wires=op.qubits[0])
        return qml.expval(observable)

    grad = qml.grad(total)

    def gradient(theta: np.ndarray) -> np.ndarray:
        return np.array([grad(pnp.array(row, requires_grad=True)) for row in theta])

    return gradient, "QNode diff_method='adjoint', qml.grad of expval(sum Z)"


PEER_GRADIENTS = {"qulacs": _qulacs_gradient, "lightning": _lightning_gradient}


def measure_peer(peer: str, threads: int, repeat: int) -> list[Record]:
    """The peer's gradient of sum <Z_q>: check it, then time it per parameter set."""
    gradient, note = PEER_GRADIENTS[peer](threads)
    got = gradient(parameters(1))[0]
    if not np.allclose(got, reference_gradient(), atol=1e-6):
        print(f"ERROR: {peer}'s gradient differs from ours by {np.abs(got - reference_gradient()).max():.2e}")
        return []
    records = []
    for batch in (1, PEER_BATCH[peer]):
        timing = time_call(functools.partial(gradient, parameters(batch)), repeat=repeat)
        records.append(measured(timing, benchmark=BENCHMARK, case="grad sum Z (peer)", backend=peer, kind="peer",
                                qubits=NUM_QUBITS, batch=batch, threads=threads, precision="double", note=note))
    return records


def summary(records: list[Record]) -> list[list[Any]]:
    """Rows: backend, threads, B, forward us/set, each case's us/set and ratio to forward, speed-up over peers."""
    rows = []
    ours = [r for r in records if r.kind == "ours"]
    for backend, threads, batch in sorted({(r.backend, r.threads, r.batch) for r in ours}):
        group = {r.case: r for r in ours if (r.backend, r.threads, r.batch) == (backend, threads, batch)}
        forward = group["forward"].per_circuit_us
        peer_times = {r.backend: r.per_circuit_us for r in records
                      if r.kind == "peer" and r.threads == threads and (r.batch == 1) == (batch == 1)}
        vjp = group["grad sum Z (adjoint)"].per_circuit_us
        row = [backend, threads, batch, forward]
        for case in ("grad sum Z (adjoint)", "jacobian 8Z (adjoint)", "jacobian 8Z (parameter-shift)"):
            row += [group[case].per_circuit_us, group[case].per_circuit_us / forward]
        row += [peer_times.get("qulacs", float("nan")) / vjp, peer_times.get("lightning", float("nan")) / vjp]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 if a measurement is missing."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: B = 1 and 100, 3 repeats")
    args = parser.parse_args(argv)
    announce()
    batches = [1, 100] if args.quick else [1, 1000]
    repeat = 3 if args.quick else 5
    backends = [b for b in qc.available_backends() if b != "reference"]
    records: list[Record] = []
    for backend in backends:
        for threads in THREADS:
            records += measure_ours(backend, threads, batches, repeat)
    available_peers = [p for p in peers.available() if p in PEER_GRADIENTS]
    for peer in available_peers:
        for threads in THREADS:
            records += call_with_threads(measure_peer, threads, isolate=True, peer=peer, repeat=repeat)
    print_table(
        ["case", "B", "threads", "backend", "us/set", "note"],
        [[r.case, r.batch, r.threads, r.backend, r.per_circuit_us, r.note]
         for r in sorted(records, key=lambda r: (r.case, r.batch, r.threads, r.backend))],
        title="Seed circuit gradients (40 parameters), median of repeats, per parameter set",
    )
    print_table(
        ["backend", "threads", "B", "forward us", "vjp us", "x fwd", "jac us", "x fwd", "p-shift us", "x fwd",
         "vjp vs qulacs", "vjp vs lightning"],
        summary(records),
        title=f"Per set, ratio to the forward pass (goal for B=1000 vjp: <= {BATCH_GOAL:.0f}x) and speed-up "
              f"over the peers' gradient of the same scalar (goal at B=1: >= {SINGLE_GOAL:.0f}x qulacs)",
    )
    return finish(records, args.json, BENCHMARK, backends + available_peers, THREADS)


if __name__ == "__main__":
    sys.exit(main())
