"""``python -m qsim_core``: the reference run's quantum workload, executed locally.

The reference training run (shared/seed-benchmark.md) sent 3,840 seed
circuits with 1,024 shots each to IonQ's cloud simulator and took 2,288 s.
This runs the same circuits (8 qubits, 89 gates, one encoding angle per
qubit from the data, 32 weights) in batches of 32, the same shot count, and
prints how long the engine takes for them. Training itself lives in qstore.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import Simulator, available_backends, seed_circuit

REFERENCE_SECONDS = 2288.4


def main(argv: list[str] | None = None) -> int:
    """Run the workload and print a short report; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m qsim_core", description=__doc__.splitlines()[0])
    parser.add_argument("--circuits", type=int, default=3840, help="circuits to run (reference: 3,840)")
    parser.add_argument("--shots", type=int, default=1024, help="shots per circuit (reference: 1,024)")
    parser.add_argument("--batch", type=int, default=32, help="circuits per engine call (reference batch: 32)")
    parser.add_argument("--backend", default="auto", choices=["auto", *available_backends()])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.circuits < 1 or args.shots < 1 or args.batch < 1:
        parser.error("--circuits, --shots and --batch must be positive")

    circuit = seed_circuit()
    sim = Simulator(backend=args.backend, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    params = rng.uniform(0, np.pi, size=(args.circuits, circuit.num_params))
    sim.sample(circuit, args.shots, params[: args.batch])  # compile outside the timing
    start = time.perf_counter()
    z_estimates = []
    for first in range(0, args.circuits, args.batch):
        z_estimates.append(sim.expectation(circuit, [f"Z{q}" for q in range(8)], params[first:first + args.batch],
                                           shots=args.shots))
    elapsed = time.perf_counter() - start
    mean_z = np.concatenate(z_estimates).mean(axis=0)
    print(f"seed circuit: {circuit.num_qubits} qubits, {len(circuit)} gates, backend {sim.backend}")
    print(f"{args.circuits} circuits x {args.shots} shots in batches of {args.batch}: {elapsed:.3f} s "
          f"({args.circuits / elapsed:,.0f} circuits/s)")
    print(f"reference run on IonQ's cloud simulator: {REFERENCE_SECONDS:,.1f} s "
          f"-> {REFERENCE_SECONDS / elapsed:,.0f}x faster here (circuit work only, no training)")
    print("mean <Z_q> over all circuits:", np.array2string(mean_z, precision=3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
