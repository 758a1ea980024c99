"""Noisy simulation with IonQ's aria-1 model: trajectories and exact results, against Qiskit Aer.

Four measurements (``docs/guides/noise.md`` explains the methods):

* ``1024 shots aria-1``: the seed circuit (8 qubits, 96 gates), 100 parameter
  sets, 1,024 noisy shots each; ours (trajectories, each compiled backend)
  against Aer with ``depolarizing_error`` after every gate, in its fastest
  method here (``density_matrix``, or ``statevector`` trajectories, both timed
  once, the faster kept), timed in turn. Goal: at least 20x Aer. The
  histograms are checked against the exact noisy distribution (mean total
  variation distance per parameter set, ours and Aer's side by side: with
  1,024 shots over 256 outcomes both carry the same sampling noise).
* ``8Z exact aria-1``: the 8 exact noisy <Z_q> of 1,000 parameter sets, ours
  (density matrices) against Aer's EstimatorV2 with ``method="density_matrix"``;
  the values must agree to 1e-9.
* ``vjp exact aria-1``: the exact noisy gradient of sum <Z_q> (what a training
  step needs), the adjoint sweep over density matrices against
  parameter-shift over them (the two must agree to 1e-9);
* how the trajectory cost grows with the noise rate (aria-1's rates scaled)
  and the circuit size (``seed_circuit(n)``), as the ratio to the noiseless
  sampling call on the same batch.

Usage: ``python bench/noise.py [--quick] [--json PATH]`` (``--quick``: B = 100 for the exact case,
Aer's density-matrix method only, fewer repeats).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _runner import Record, announce, finish, make_parser, measured, print_table, time_call, time_interleaved

# isort: split
import qsim_core as qc  # after _runner, which puts the checkout on sys.path
from qsim_core import seed_circuit

BENCHMARK = "noise"
MODEL = "aria-1"
SHOTS = 1024
SHOT_BATCH = 100
EXACT_BATCH = 1000
THREADS = 2
GOAL = 20.0
OBSERVABLES = [f"Z{q}" for q in range(8)]


def parameters(batch: int, circuit: qc.Circuit) -> np.ndarray:
    return np.random.default_rng(2026).uniform(-np.pi, np.pi, (batch, circuit.num_params))


class NoisyAer:
    """The circuit in Qiskit, transpiled once (optimization level 0: every written gate stays, each noisy)."""

    def __init__(self, circuit: qc.Circuit, model: qc.NoiseModel) -> None:
        from qiskit import QuantumCircuit, transpile
        from qiskit.circuit import ParameterVector
        from qiskit_aer import AerSimulator
        from qiskit_aer.noise import NoiseModel, depolarizing_error

        self.noise = NoiseModel()
        # Qiskit's depolarizing parameter is IonQ's rate: (1 - r) rho + r Tr(rho) I / 2**k
        self.noise.add_all_qubit_quantum_error(depolarizing_error(model.r1q, 1), ["rx", "ry", "rz"])
        self.noise.add_all_qubit_quantum_error(depolarizing_error(model.r2q, 2), ["cx"])
        self.n = circuit.num_qubits
        vector = ParameterVector("a", circuit.num_params)
        logical = QuantumCircuit(self.n)
        for op in circuit:
            if op.name == "cnot":
                logical.cx(*op.qubits)
            else:  # seed circuit: Param(k) of scale 1, our rotations are Qiskit's
                getattr(logical, op.name)(vector[op.params[0].index], op.qubits[0])
        measured_circuit = logical.copy()
        measured_circuit.measure_all()
        self.simulators = {method: AerSimulator(method=method, noise_model=self.noise, max_parallel_threads=THREADS,
                                                max_parallel_experiments=THREADS)
                           for method in ("density_matrix", "statevector")}
        self.measured = transpile(measured_circuit, self.simulators["statevector"], optimization_level=0)
        self.logical = transpile(logical, self.simulators["density_matrix"], optimization_level=0)
        self.vector = vector

    def _binds(self, circuit, theta: np.ndarray) -> list[dict]:
        return [{p: theta[:, p.index].tolist() for p in circuit.parameters}]

    def counts(self, method: str, theta: np.ndarray, seed: int = 7) -> list[dict[str, int]]:
        result = self.simulators[method].run(self.measured, parameter_binds=self._binds(self.measured, theta),
                                             shots=SHOTS, seed_simulator=seed).result()
        return [result.get_counts(b) for b in range(len(theta))]

    def exact_z(self, theta: np.ndarray) -> np.ndarray:
        from qiskit_aer.primitives import EstimatorV2

        options = {"method": "density_matrix", "noise_model": self.noise, "max_parallel_threads": THREADS,
                   "max_parallel_experiments": THREADS}
        estimator = EstimatorV2(options={"backend_options": options})
        labels = ["I" * (self.n - 1 - q) + "Z" + "I" * q for q in range(self.n)]  # rightmost letter is qubit 0
        values = theta[:, [p.index for p in self.logical.parameters]][:, None, :]
        return np.asarray(estimator.run([(self.logical, labels, values)]).result()[0].data.evs)


def histograms_from_samples(samples: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.bincount(row, minlength=size) for row in samples]) / samples.shape[1]


def histograms_from_counts(counts: list[dict[str, int]], size: int) -> np.ndarray:
    out = np.zeros((len(counts), size))
    for b, mapping in enumerate(counts):
        for key, count in mapping.items():
            out[b, int(key.replace(" ", ""), 2)] = count  # Qiskit's bit strings: qubit 0 rightmost, as our index
    return out / SHOTS


def tvd(a: np.ndarray, b: np.ndarray) -> float:
    """Mean total variation distance between rows."""
    return float(0.5 * np.abs(a - b).sum(axis=1).mean())


def shots_case(quick: bool) -> tuple[list[Record], list[list]]:
    circuit = seed_circuit()
    model = qc.NoiseModel.ionq(MODEL)
    theta = parameters(SHOT_BATCH, circuit)
    exact = qc.Simulator(noise=model).probabilities(circuit, theta)
    aer = NoisyAer(circuit, model)
    methods = ["density_matrix"] if quick else ["density_matrix", "statevector"]
    once = {}
    for method in methods:
        aer.counts(method, theta[:2])
        start = time.perf_counter()
        aer.counts(method, theta)
        once[method] = time.perf_counter() - start
    fastest = min(once, key=once.get)
    contenders = {("aer", fastest): lambda: aer.counts(fastest, theta)}
    sims = {}
    for backend in [b for b in qc.available_backends() if b != "reference"]:
        sims[backend] = qc.Simulator(backend=backend, noise=model, seed=7, threads=THREADS)
        contenders[("ours", backend)] = lambda sim=sims[backend]: sim.sample(circuit, SHOTS, theta)
    timings = time_interleaved(contenders, repeat=3 if quick else 5)
    aer_hist = histograms_from_counts(aer.counts(fastest, theta), 256)
    records, rows = [], []
    aer_seconds = timings[("aer", fastest)].seconds
    note = ", ".join(f"{m} once {s:.2f} s" for m, s in once.items())
    records.append(measured(timings[("aer", fastest)], benchmark=BENCHMARK, case=f"{SHOTS} shots {MODEL}",
                            backend="aer", kind="peer", qubits=8, batch=SHOT_BATCH, threads=THREADS,
                            precision="double", gates=len(circuit), note=f"{fastest} (fastest; {note})",
                            extra={"tvd_vs_exact": tvd(aer_hist, exact)}))
    rows.append(["aer " + fastest, SHOT_BATCH, aer_seconds, 1.0, tvd(aer_hist, exact), "-", "-"])
    for backend, sim in sims.items():
        ours = histograms_from_samples(sim.sample(circuit, SHOTS, theta), 256)
        seconds = timings[("ours", backend)].seconds
        records.append(measured(timings[("ours", backend)], benchmark=BENCHMARK, case=f"{SHOTS} shots {MODEL}",
                                backend=backend, kind="ours", qubits=8, batch=SHOT_BATCH, threads=THREADS,
                                precision="double", gates=len(circuit), note="trajectories",
                                extra={"tvd_vs_exact": tvd(ours, exact), "speedup_vs_aer": aer_seconds / seconds}))
        rows.append([backend, SHOT_BATCH, seconds, aer_seconds / seconds, tvd(ours, exact), tvd(ours, aer_hist),
                     f">= {GOAL:.0f}x"])
    return records, rows


def exact_case(quick: bool) -> tuple[list[Record], list[list]]:
    circuit = seed_circuit()
    batch = 100 if quick else EXACT_BATCH
    theta = parameters(batch, circuit)
    aer = NoisyAer(circuit, qc.NoiseModel.ionq(MODEL))
    sim = qc.Simulator(noise=MODEL, threads=THREADS)
    ours_values = sim.expectation(circuit, OBSERVABLES, theta)
    aer_values = aer.exact_z(theta[:10])
    error = float(np.max(np.abs(ours_values[:10] - aer_values)))
    if not error <= 1e-9:
        print(f"ERROR: our exact noisy <Z> differ from Aer's density matrix by {error:.2e}; timings dropped")
        return [], []
    timings = time_interleaved({"aer": lambda: aer.exact_z(theta),
                                "ours": lambda: sim.expectation(circuit, OBSERVABLES, theta)},
                               repeat=1 if not quick else 2, warmup=False)
    fields = dict(benchmark=BENCHMARK, case=f"8Z exact {MODEL}", qubits=8, batch=batch, threads=THREADS,
                  precision="double", gates=len(circuit))
    records = [measured(timings["aer"], backend="aer", kind="peer", note="EstimatorV2, density_matrix", **fields),
               measured(timings["ours"], backend="qsim_core", kind="ours", note="density matrices",
                        extra={"max_abs_diff_vs_aer": error}, **fields)]
    ratio = timings["aer"].seconds / timings["ours"].seconds
    return records, [["aer density_matrix", batch, timings["aer"].seconds, 1.0, "-"],
                     ["ours (density matrices)", batch, timings["ours"].seconds, ratio, f"{error:.1e}"]]


def gradient_case(quick: bool) -> tuple[list[Record], list[list]]:
    """The exact noisy vjp of sum <Z_q> (a training step's gradient): the adjoint sweep against parameter-shift."""
    circuit = seed_circuit()
    batch = 4 if quick else 16
    theta = parameters(batch, circuit)
    sim = qc.Simulator(noise=MODEL, threads=THREADS)
    ones = np.ones(len(OBSERVABLES))
    methods = ("adjoint", "parameter-shift")
    grads = {m: sim.vjp(circuit, OBSERVABLES, theta, ones, method=m) for m in methods}
    error = float(np.max(np.abs(grads["adjoint"] - grads["parameter-shift"])))
    if not error <= 1e-9:
        print(f"ERROR: the noisy adjoint differs from parameter-shift by {error:.2e}; timings dropped")
        return [], []
    timings = time_interleaved({m: lambda m=m: sim.vjp(circuit, OBSERVABLES, theta, ones, method=m)
                                for m in methods}, repeat=1 if quick else 3, warmup=False)
    fields = dict(benchmark=BENCHMARK, case=f"vjp exact {MODEL}", qubits=8, batch=batch, threads=THREADS,
                  precision="double", gates=len(circuit), kind="ours")
    records = [measured(timings[m], backend=f"qsim_core {m}", note="density matrices",
                        extra={"max_abs_diff": error}, **fields) for m in methods]
    shifted = timings["parameter-shift"].seconds
    return records, [[m, batch, timings[m].seconds / batch, shifted / timings[m].seconds] for m in methods]


def growth_case(quick: bool) -> tuple[list[Record], list[list]]:
    rows, records = [], []
    base = qc.NoiseModel.ionq(MODEL)
    for n in (4, 8) if quick else (4, 8, 12):
        circuit = seed_circuit(n)
        theta = parameters(SHOT_BATCH, circuit)
        plain = qc.Simulator(seed=7, threads=THREADS)
        noiseless = time_call(lambda c=circuit, t=theta, s=plain: s.sample(c, SHOTS, t), repeat=3).seconds
        ones = sum(op.gate.num_qubits == 1 for op in circuit)
        for scale in (0.5, 1.0, 2.0, 4.0):
            model = qc.NoiseModel(base.r1q * scale, base.r2q * scale, f"{MODEL} x{scale:g}")
            errors = ones * model.error_probability(1) + (len(circuit) - ones) * model.error_probability(2)
            sim = qc.Simulator(noise=model, seed=7, threads=THREADS)
            timing = time_call(lambda c=circuit, t=theta, s=sim: s.sample(c, SHOTS, t), repeat=3)
            records.append(measured(timing, benchmark=BENCHMARK, case=f"{SHOTS} shots growth", backend=sim.backend,
                                    kind="ours", qubits=n, batch=SHOT_BATCH, threads=THREADS, precision="double",
                                    gates=len(circuit), note=model.name,
                                    extra={"errors_per_shot": errors, "noiseless_seconds": noiseless}))
            rows.append([n, len(circuit), f"x{scale:g}", errors, 1 - np.exp(-errors), timing.seconds,
                         timing.seconds / noiseless])
    return records, rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0], "smoke test: fewer repeats, B = 100 exact, no Aer "
                                                             "statevector trajectories")
    args = parser.parse_args(argv)
    announce()
    records, shot_rows = shots_case(args.quick)
    print_table(["engine", "B", "s/call", "x Aer", "TVD vs exact", "TVD vs Aer", "goal"], shot_rows,
                title=f"Seed circuit, {MODEL}, {SHOTS} noisy shots per parameter set, {THREADS} threads, same run")
    exact_records, exact_rows = exact_case(args.quick)
    records += exact_records
    print_table(["engine", "B", "s/call", "x Aer", "max |ours - Aer|"], exact_rows,
                title=f"Seed circuit, {MODEL}, exact noisy <Z_0..7>, {THREADS} threads, same run")
    gradient_records, gradient_rows = gradient_case(args.quick)
    records += gradient_records
    print_table(["method", "B", "s per set", "x parameter-shift"], gradient_rows,
                title=f"Seed circuit, {MODEL}, exact noisy vjp of sum <Z_q>, {THREADS} threads, same run")
    growth_records, growth_rows = growth_case(args.quick)
    records += growth_records
    print_table(["qubits", "gates", "rates", "errors/shot", "P(shot has error)", "s/call", "x noiseless"],
                growth_rows, title=f"Trajectory cost growth: seed_circuit(n), B = {SHOT_BATCH}, {SHOTS} shots, "
                                   f"rates = aria-1 scaled")
    names = sorted({r.backend for r in records})
    return finish(records, args.json, BENCHMARK, names, (THREADS,))


if __name__ == "__main__":
    sys.exit(main())
