"""PennyLane front door: a broadcast QNode's forward pass and weight gradient on qsim_core.qubit vs PennyLane's devices.

The workload PennyLane users write: 8 qubits, ``qml.AngleEmbedding`` of a
batch of B = 256 feature rows (broadcast: the features are ``(256, 8)``, not
trainable) and 2 ``qml.StronglyEntanglingLayers`` (48 trainable weights),
measuring ``<Z_0>``; the cost is the sum over the batch and one call is
``qml.grad(cost)(weights)`` with autograd (forward pass + gradient of the
weights). Devices, same process, same QNode body, timed in turn:

* ``qsim_core.qubit`` (ours), ``diff_method="adjoint"``: the 256 rows run as
  one batched engine call (forward and adjoint sweep together),
* ``lightning.qubit``, ``diff_method="adjoint"`` (it splits the broadcast into 256 tapes),
* ``default.qubit``, ``diff_method="backprop"``.

Before timing, each peer's cost and gradient are checked against ours
(1e-8). Goal: ours >= 20x lightning.qubit.

Usage: ``python bench/frameworks_pennylane.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _runner import Record, announce, finish, make_parser, measured, print_table, time_interleaved

BENCHMARK = "frameworks_pennylane"
NUM_QUBITS = 8
BATCH = 256
LAYERS = 2
GOAL = 20.0  # our speed-up over lightning.qubit (adjoint)
TOLERANCE = 1e-8
#: device name -> (short name in the table, diff_method, kind)
DEVICES = {
    "qsim_core.qubit": ("ours", "adjoint", "ours"),
    "lightning.qubit": ("lightning", "adjoint", "peer"),
    "default.qubit": ("default.qubit", "backprop", "peer"),
}


def problem() -> tuple[np.ndarray, np.ndarray]:
    """Fixed features ``(256, 8)`` and weights ``(2, 8, 3)``, radians."""
    import pennylane as qml

    rng = np.random.default_rng(2026)
    features = rng.uniform(-np.pi, np.pi, (BATCH, NUM_QUBITS))
    weights = rng.uniform(-np.pi, np.pi, qml.StronglyEntanglingLayers.shape(LAYERS, NUM_QUBITS))
    return features, weights


def gradient_call(device_name: str) -> Callable[[], tuple[Any, Any]]:
    """``() -> (gradient, cost)``: one forward pass and autograd gradient on ``device_name``."""
    import pennylane as qml
    from pennylane import numpy as pnp

    _, diff_method, _ = DEVICES[device_name]
    features, weights = problem()
    x = pnp.array(features, requires_grad=False)
    device = qml.device(device_name, wires=NUM_QUBITS)

    @qml.qnode(device, diff_method=diff_method)
    def circuit(x, w):
        qml.AngleEmbedding(x, wires=range(NUM_QUBITS))
        qml.StronglyEntanglingLayers(w, wires=range(NUM_QUBITS))
        return qml.expval(qml.PauliZ(0))

    def cost(w):
        return pnp.sum(circuit(x, w))

    grad = qml.grad(cost)
    return lambda: grad(pnp.array(weights, requires_grad=True)), lambda: cost(pnp.array(weights))


def measure(repeat: int) -> list[Record]:
    """Check every installed device against ours, then time them in turn."""
    import importlib.util

    names = [name for name in DEVICES
             if name != "lightning.qubit" or importlib.util.find_spec("pennylane_lightning") is not None]
    calls = {name: gradient_call(name) for name in names}
    reference_grad, reference_cost = calls["qsim_core.qubit"][0](), calls["qsim_core.qubit"][1]()
    timed: dict[str, Callable[[], object]] = {}
    for name, (grad, cost) in calls.items():
        error = max(float(np.abs(grad() - reference_grad).max()), abs(float(cost()) - float(reference_cost)))
        if not error <= TOLERANCE:
            print(f"ERROR: {name}'s cost or gradient differs from ours by {error:.2e}; dropped")
            continue
        timed[name] = grad
    timings = time_interleaved(timed, repeat=repeat)
    return [measured(timing, benchmark=BENCHMARK, case="forward+grad", backend=DEVICES[name][0],
                     kind=DEVICES[name][2], qubits=NUM_QUBITS, batch=BATCH, threads=0, precision="double",
                     note=f"{name}, diff_method={DEVICES[name][1]!r}, autograd")
            for name, timing in timings.items()]


def summary(records: list[Record]) -> list[list[Any]]:
    """Rows: device, diff method, ms per call, our speed-up over it."""
    ours = next((r.seconds for r in records if r.kind == "ours"), float("nan"))
    methods = {short: method for short, method, _ in DEVICES.values()}
    return [[r.backend, methods[r.backend], r.seconds * 1e3, r.seconds / ours] for r in records]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 if a measurement is missing or the goal is missed."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: 3 repeats")
    args = parser.parse_args(argv)
    announce()
    records = measure(repeat=3 if args.quick else 7)
    print_table(["device", "diff method", "ms per call", "ours faster by"], summary(records),
                title=f"PennyLane QNode, {NUM_QUBITS} qubits, AngleEmbedding + {LAYERS} StronglyEntanglingLayers, "
                      f"broadcast batch {BATCH}: forward + autograd gradient of 48 weights (median)")
    times = {r.backend: r.seconds for r in records}
    status = finish(records, args.json, BENCHMARK, [DEVICES[name][0] for name in DEVICES], [0])
    if "lightning" in times and "ours" in times:
        ratio = times["lightning"] / times["ours"]
        print(f"goal: >= {GOAL:g}x lightning.qubit; measured {ratio:.1f}x -> {'met' if ratio >= GOAL else 'MISSED'}")
        status = status or int(ratio < GOAL)
    return status


if __name__ == "__main__":
    sys.exit(main())
