"""The seed circuit as a PyTorch layer: forward and forward+backward per batch of 32, against PennyLane's TorchLayer.

The layer is what a hybrid torch model calls each training step: 8 input
angles and 32 trainable weights (``qsim_core.seed_circuit()``,
40 parameters) to the 8 expectations <Z_q>, for a mini-batch of B = 32 rows.
Timed per batch, float64 throughout:

* ``forward``: ``layer(x)`` under ``torch.no_grad()`` (inference),
* ``forward+backward``: ``layer(x)`` then ``out.backward(cotangent)`` with
  fixed random cotangent ``[32, 8]``, gradients of the inputs (``x`` requires
  grad, as behind a trainable front-end) and of the weights, grads cleared
  before each call as ``optimizer.zero_grad()`` would.

Ours: ``qstore.ml.torch_layer.TorchQuantumLayer`` (one engine call forward, one batched
adjoint ``Simulator.vjp`` backward) on each compiled backend. Peer:
``qml.qnn.TorchLayer`` on a QNode on ``lightning.qubit`` with
``diff_method="adjoint"`` (inputs broadcast over the batch, as TorchLayer
passes them), in a subprocess with its OpenMP pool sized at import. Both get
``torch.set_num_threads(threads)``. Before timing, the peer's outputs and both
gradients are checked against ours.

Usage: ``python bench/torch_layer.py [--quick] [--json PATH]``
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import peers
from _runner import Record, announce, call_with_threads, finish, make_parser, measured, print_table, time_call

# isort: split
import qsim_core as qc  # after _runner, which puts the checkout on sys.path
from qsim_core import seed_circuit

BENCHMARK = "torch_layer"
NUM_QUBITS = 8
OBSERVABLES = [f"Z{q}" for q in range(NUM_QUBITS)]
BATCH = 32
THREADS = (1, 2)
CASES = ("forward", "forward+backward")
#: largest difference from ours, in outputs and gradients, for the peer to be timed
TOLERANCE = 1e-6


def problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed inputs ``[32, 8]``, weights ``[32]`` (radians) and cotangent ``[32, 8]``."""
    rng = np.random.default_rng(2026)
    inputs = rng.uniform(-np.pi, np.pi, (BATCH, NUM_QUBITS))
    weights = rng.uniform(-np.pi, np.pi, seed_circuit().num_params - NUM_QUBITS)
    return inputs, weights, rng.normal(size=(BATCH, len(OBSERVABLES)))


@functools.cache
def reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs ``[32, 8]``, input gradients ``[32, 8]`` and weight gradients ``[32]`` from our reference backend."""
    inputs, weights, cotangent = problem()
    rows = np.concatenate([inputs, np.broadcast_to(weights, (BATCH, len(weights)))], axis=1)
    sim = qc.Simulator(backend="reference")
    full = sim.vjp(seed_circuit(), OBSERVABLES, rows, cotangent, method="parameter-shift")
    return sim.expectation(seed_circuit(), OBSERVABLES, rows), full[:, :NUM_QUBITS], full[:, NUM_QUBITS:].sum(0)


def _our_layer(backend: str, threads: int) -> tuple[Any, str]:
    from qstore.ml.torch_layer import TorchQuantumLayer

    layer = TorchQuantumLayer(seed_circuit(), OBSERVABLES, n_inputs=NUM_QUBITS,
                         simulator=qc.Simulator(backend=backend, threads=threads))
    return layer, "qstore.ml.torch_layer.TorchQuantumLayer, adjoint vjp"


def _lightning_layer(backend: str, threads: int) -> tuple[Any, str]:
    import pennylane as qml
    import torch

    device = qml.device("lightning.qubit", wires=NUM_QUBITS)
    ops = list(seed_circuit())
    gates = {"ry": qml.RY, "rz": qml.RZ}

    @qml.qnode(device, interface="torch", diff_method="adjoint")
    def circuit(inputs, weights):
        # inputs[..., k]: a (B,) vector per input angle, broadcast over the batch
        params = [inputs[..., k] for k in range(NUM_QUBITS)] + [weights[k] for k in range(len(weights))]
        for op in ops:
            if op.name == "cnot":
                qml.CNOT(wires=list(op.qubits))
            else:
                gates[op.name](params[op.params[0].index], wires=op.qubits[0])
        return [qml.expval(qml.PauliZ(q)) for q in range(NUM_QUBITS)]

    layer = qml.qnn.TorchLayer(circuit, {"weights": seed_circuit().num_params - NUM_QUBITS}).to(torch.float64)
    return layer, "qml.qnn.TorchLayer, lightning.qubit, diff_method='adjoint'"


LAYERS: dict[str, Callable[[str, int], tuple[Any, str]]] = {"lightning": _lightning_layer}


def measure(backend: str, threads: int, repeat: int) -> list[Record]:
    """Check ``backend``'s layer (ours or the peer's) against the reference, then time both cases."""
    import torch

    torch.set_num_threads(threads)
    layer, note = LAYERS.get(backend, _our_layer)(backend, threads)
    inputs, weights, cotangent = problem()
    (weight,) = layer.parameters()
    with torch.no_grad():
        weight.copy_(torch.from_numpy(weights))
    x = torch.tensor(inputs, requires_grad=True)
    grad_out = torch.from_numpy(cotangent)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return layer(x)

    def forward_backward() -> None:
        x.grad = weight.grad = None
        layer(x).backward(grad_out)

    forward_backward()
    got = (forward().numpy(), x.grad.numpy(), weight.grad.numpy())
    error = max(float(np.abs(a - b).max()) for a, b in zip(got, reference(), strict=True))
    if not error <= TOLERANCE:
        print(f"ERROR: {backend}'s outputs or gradients differ from the reference by {error:.2e}; dropped")
        return []
    kind = "peer" if backend in LAYERS else "ours"
    records = []
    for case, fn in zip(CASES, (forward, forward_backward), strict=True):
        timing = time_call(fn, repeat=repeat)
        records.append(measured(timing, benchmark=BENCHMARK, case=case, backend=backend, kind=kind,
                                qubits=NUM_QUBITS, batch=BATCH, threads=threads, precision="double", note=note))
    return records


def summary(records: list[Record]) -> list[list[Any]]:
    """Rows: backend, threads, ms per batch of each case, backward/forward ratio, speed-up over Lightning."""
    times = {(r.backend, r.threads, r.case): r.seconds * 1e3 for r in records}
    rows = []
    for backend, threads in sorted({(r.backend, r.threads) for r in records}, key=lambda k: (k[0] == "lightning", k)):
        forward, both = times[backend, threads, "forward"], times[backend, threads, "forward+backward"]
        peer = times.get(("lightning", threads, "forward+backward"), float("nan"))
        rows.append([backend, threads, forward, both, both / forward, peer / both])
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 if a measurement is missing."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: 3 repeats")
    args = parser.parse_args(argv)
    announce()
    repeat = 3 if args.quick else 7
    backends = [b for b in qc.available_backends() if b != "reference"]
    available_peers = peers.available(("lightning",))
    records: list[Record] = []
    for threads in THREADS:
        for backend in backends:
            records += call_with_threads(measure, threads, isolate=False, backend=backend, repeat=repeat)
        for peer in available_peers:
            records += call_with_threads(measure, threads, isolate=True, backend=peer, repeat=repeat)
    print_table(
        ["backend", "threads", "forward ms", "fwd+bwd ms", "fwd+bwd / fwd", "speed-up vs TorchLayer"],
        summary(records),
        title=f"Seed circuit as a torch layer (8 inputs + 32 weights -> 8 <Z>), per batch of {BATCH}, float64, "
              "median of repeats",
    )
    return finish(records, args.json, BENCHMARK, backends + available_peers, THREADS)


if __name__ == "__main__":
    sys.exit(main())
