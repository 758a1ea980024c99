"""``qstore compare``: identical circuits in process and through a remote target, side by side.

The workload is the seed circuit (:func:`qsim_core.seed_circuit`:
8 qubits, 89 gates, 40 angles) on a batch of random inputs, every angle drawn
uniformly from [-pi, pi), each circuit measured ``shots`` times. Both runs
go through :class:`~qstore.execution.executor.AsyncQuantumExecutor` with the same
settings (cache off, so every circuit really runs):

* **in process**: a :class:`qsim_core.Simulator` in this process;
* **remote**: by default a local IonQ-compatible server started here on the
  fly with the ``ionq-cloud`` latency profile (IonQ's measured 2.7-4.2 s per
  job, split network 55 %, queue 20 %, serialization 15 %, simulation 10 %;
  ``profile="none"`` for none); or an existing server (a URL and its API key);
  or ``"ionq"``, IonQ's cloud simulator (``$IONQ_API_KEY``).

For each it reports per-circuit latency (p50, p95: the time of the job that
carried the circuit), throughput (circuits per second of wall time), the mean
time per job in each phase of :class:`~qstore.execution.executor.JobTiming`, and the
agreement of the counts with the engine's exact probabilities: the total
variation distance (TVD) per circuit, next to the TVD that shot noise alone
gives (the mean and spread over ``NOISE_DRAWS`` simulated draws of the same
number of shots from the exact distribution). The runs agree when the summed
TVD is within 4 standard deviations of the summed expectation. It also reports
the distance between the two runs' histograms, circuit by circuit, against
what two independent draws of the exact distribution give.

With ``noise="aria-1"`` (``aria-2``, ``forte-1``: :data:`qsim_core.noise.IONQ_MODELS`)
both runs simulate IonQ's noise model: in process ``Simulator(noise=...)``
(quantum trajectories, one per shot), remotely the job's ``noise`` field
(the local server's trajectories, or IonQ's cloud noisy simulator); the
exact reference is then the noisy distribution (density matrix,
``Simulator(noise=...).probabilities``). The histogram distance is the figure
of merit: two correct noisy simulators differ by shot noise only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import qsim_core as qc

from ..ionq.client import API_KEY_ENV
from .executor import AsyncQuantumExecutor, JobTiming

#: the local server started on the fly (``target="local"``)
LOCAL = "local"
#: IonQ's cloud (``target="ionq"``)
IONQ = "ionq"
DEFAULT_PROFILE = "ionq-cloud"
#: simulated draws behind the shot-noise TVD of each circuit
NOISE_DRAWS = 2000
#: |z| of the summed TVD beyond which the counts disagree with the exact probabilities
AGREEMENT_Z = 4.0


@dataclass(frozen=True)
class Agreement:
    """How far counts are from exact probabilities, against shot noise.

    Attributes:
        tvd: total variation distance per circuit, ``0.5 * sum |counts / shots - p|``.
        expected: mean TVD per circuit from shot noise alone.
        spread: standard deviation of that TVD per circuit.
        z: ``(sum tvd - sum expected) / sqrt(sum spread**2)``.
    """

    tvd: list[float]
    expected: list[float]
    spread: list[float]
    z: float

    @property
    def consistent(self) -> bool:
        """True when the deviations are what shot noise explains (``|z| < AGREEMENT_Z``)."""
        return abs(self.z) < AGREEMENT_Z


@dataclass(frozen=True)
class TargetRun:
    """One target's run of the workload.

    Attributes:
        label: ``"in-process"`` or a description of the remote target.
        target: the executor's target (backend or base URL).
        wall_s: seconds from submitting the first circuit to holding every count.
        timings: one :class:`~qstore.execution.executor.JobTiming` per job.
        agreement: the counts against the exact probabilities.
    """

    label: str
    target: str
    wall_s: float
    timings: list[JobTiming]
    agreement: Agreement

    @property
    def circuits(self) -> int:
        """Circuits run."""
        return sum(t.circuits for t in self.timings)

    @property
    def throughput(self) -> float:
        """Circuits per second of wall time."""
        return self.circuits / self.wall_s

    def latency(self, percentile: float) -> float:
        """Per-circuit latency percentile, seconds (a circuit's latency is its job's total)."""
        return float(np.percentile([t.total for t in self.timings for _ in range(t.circuits)], percentile))

    def phase_means(self) -> dict[str, float]:
        """Mean seconds per job in each phase of :data:`JobTiming.PHASES`, and ``total``."""
        return {name: float(np.mean([getattr(t, name) for t in self.timings]))
                for name in (*JobTiming.PHASES, "total")}


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: the settings, both runs (in process first), and their histograms' distance.

    Attributes:
        settings: what was run (workload, shots, target, noise model or None, executor settings).
        runs: the in-process run, then the remote one.
        histograms: the two runs' counts against each other (TVD per circuit; shot noise: that of two
            independent draws of the exact distribution).
    """

    settings: dict[str, Any]
    runs: list[TargetRun]
    histograms: Agreement


def tvd_against_noise(counts: list[dict[int, int]], probabilities: np.ndarray, shots: int,
                      rng: np.random.Generator, draws: int = NOISE_DRAWS) -> Agreement:
    """The :class:`Agreement` of ``counts`` (one dict per circuit) with ``probabilities[N, 2**n]``."""
    tvd, expected, spread = [], [], []
    for observed, p in zip(counts, probabilities, strict=True):
        p = p / p.sum()
        frequencies = np.zeros_like(p)
        frequencies[list(observed)] = list(observed.values())
        tvd.append(0.5 * float(np.abs(frequencies / shots - p).sum()))
        noise = 0.5 * np.abs(rng.multinomial(shots, p, size=draws) / shots - p).sum(axis=1)
        expected.append(float(noise.mean()))
        spread.append(float(noise.std()))
    z = (sum(tvd) - sum(expected)) / max(float(np.sqrt(np.sum(np.square(spread)))), 1e-300)
    return Agreement(tvd, expected, spread, z)


def tvd_between(first: list[dict[int, int]], second: list[dict[int, int]], probabilities: np.ndarray, shots: int,
                rng: np.random.Generator, draws: int = NOISE_DRAWS) -> Agreement:
    """The :class:`Agreement` of two runs' counts (one dict per circuit each) with each other.

    The TVD per circuit is ``0.5 * sum |first / shots - second / shots|``; its shot-noise
    expectation and spread come from pairs of independent draws of ``probabilities[N, 2**n]``.
    """
    tvd, expected, spread = [], [], []
    for a, b, p in zip(first, second, probabilities, strict=True):
        p = p / p.sum()
        difference = np.zeros_like(p)
        np.add.at(difference, list(a), list(a.values()))
        np.subtract.at(difference, list(b), list(b.values()))
        tvd.append(0.5 * float(np.abs(difference).sum()) / shots)
        noise = 0.5 * np.abs(rng.multinomial(shots, p, size=draws) - rng.multinomial(shots, p, size=draws)).sum(1)
        expected.append(float(noise.mean()) / shots)
        spread.append(float(noise.std()) / shots)
    z = (sum(tvd) - sum(expected)) / max(float(np.sqrt(np.sum(np.square(spread)))), 1e-300)
    return Agreement(tvd, expected, spread, z)


def _check_target(target: str, api_key: str | None, profile: str | None) -> None:
    """Settings that only make sense for some targets, checked before any work."""
    if target == LOCAL:
        if api_key is not None:
            raise ValueError("an API key applies to a remote target only: the local server makes its own")
        return
    if profile is not None:
        raise ValueError("a latency profile applies to the local server only (target 'local')")
    if target == IONQ and not (api_key or os.environ.get(API_KEY_ENV)):
        raise ValueError(f"target 'ionq' (IonQ's cloud) needs an API key: set {API_KEY_ENV} or pass "
                         "--api-key-file (api_key= in Python)")


@contextmanager
def _remote(target: str, api_key: str | None, profile: str | None) -> Iterator[tuple[str, str, str | None]]:
    """``(label, target for the executor, API key)``; for ``"local"`` a server running while the block runs."""
    if target != LOCAL:
        yield ("IonQ cloud" if target == IONQ else target), target, api_key
        return
    from ..ionq.server import (  # starlette and uvicorn: only when a server is needed
        LatencyProfile,
        ServerConfig,
        running_server,
    )

    profile = profile or DEFAULT_PROFILE
    key = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="qstore-compare-") as directory:
        config = ServerConfig(db=Path(directory) / "jobs.sqlite", api_keys=frozenset({key}),
                              profile=LatencyProfile.load(profile))
        with running_server(config) as root:
            yield f"local server ({Path(profile).stem} profile)", root, key


def _run(label: str, target: qc.Simulator | str, api_key: str | None, circuit: qc.Circuit, theta: np.ndarray,
         probabilities: np.ndarray, shots: int, options: dict[str, Any],
         rng: np.random.Generator) -> tuple[TargetRun, list[dict[int, int]]]:
    with AsyncQuantumExecutor(target, api_key=api_key, cache_size=0, **options) as executor:
        start = time.perf_counter()
        counts = executor.execute(circuit, theta, shots)
        wall = time.perf_counter() - start
        return TargetRun(label, executor.target, wall, executor.timings,
                         tvd_against_noise(counts, probabilities, shots, rng)), counts


def compare(target: str = LOCAL, *, api_key: str | None = None, profile: str | None = None, circuits: int = 20,
            shots: int = 1024, max_concurrent: int = 10, circuits_per_job: int = 10, seed: int = 0,
            timeout: float = 600.0, noise: str | None = None) -> Comparison:
    """Run the workload in process and on ``target``; see the module docstring.

    Args:
        target: ``"local"`` (a server started here), a server URL, or ``"ionq"``.
        api_key: key of a URL or ``"ionq"`` target (default ``$IONQ_API_KEY``); not for ``"local"``.
        profile: latency profile of the local server (a name or a JSON file;
            default ``"ionq-cloud"``); only for ``target="local"``.
        circuits: circuits in the batch (parameter rows of the seed circuit), >= 1.
        shots: shots per circuit, >= 1.
        max_concurrent, circuits_per_job, timeout: executor settings, used for both runs.
        seed: seeds the inputs, the samples and the shot-noise draws.
        noise: None, or an IonQ noise model (``"aria-1"``, ``"aria-2"``, ``"forte-1"``) both runs simulate.

    Raises:
        ValueError: bad settings, an unknown profile or noise model, ``"ionq"`` without a key.
        IonQError: the remote target refused or failed a job, or cannot be reached.
    """
    if isinstance(circuits, bool) or not isinstance(circuits, int) or circuits < 1:
        raise ValueError(f"circuits must be a positive integer, got {circuits!r}")
    _check_target(target, api_key, profile)
    model = None if noise is None else qc.NoiseModel.ionq(noise)  # an unknown name: ValueError listing the known
    circuit = qc.seed_circuit()
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-np.pi, np.pi, (circuits, circuit.num_params))
    simulator = qc.Simulator(seed=seed, noise=model)
    probabilities = simulator.probabilities(circuit, theta)  # the exact reference; also warms the kernels up
    simulator.counts(circuit, shots, theta[:1])  # and the sampling path, so no run pays a first-call cost
    options = {"max_concurrent": max_concurrent, "circuits_per_job": circuits_per_job, "timeout": timeout,
               "seed": seed}
    local, local_counts = _run("in-process", simulator, None, circuit, theta, probabilities, shots, options, rng)
    remote_options = options if model is None else {**options, "noise": {"model": model.name}}
    with _remote(target, api_key, profile) as (label, remote_target, key):
        remote, remote_counts = _run(label, remote_target, key, circuit, theta, probabilities, shots,
                                     remote_options, rng)
    workload = f"seed circuits ({circuit.num_qubits} qubits, {len(circuit)} gates), random inputs"
    settings = {"workload": workload if model is None else f"{workload}, noise model {model.name}",
                "circuits": circuits, "shots": shots, "target": target,
                "profile": (profile or DEFAULT_PROFILE) if target == LOCAL else None, "noise": noise, **options}
    return Comparison(settings, [local, remote], tvd_between(local_counts, remote_counts, probabilities, shots, rng))


def _agreement_line(label: str, a: Agreement, width: int) -> str:
    noise = f"{np.mean(a.expected):.4f} +- {np.mean(a.spread):.4f}"
    verdict = "consistent with shot noise" if a.consistent else "DISAGREE: beyond shot noise"
    return f"{label:<{width}}  {np.mean(a.tvd):>8.4f}  {max(a.tvd):>8.4f}  {noise:>17}  {a.z:>6.2f}  {verdict}"


def format_report(comparison: Comparison) -> str:
    """The four tables (latency and throughput, time per job by phase, agreement, histogram distance) as text."""
    s = comparison.settings
    width = max(len(run.label) for run in comparison.runs)
    lines = [f"{s['circuits']} {s['workload']}, {s['shots']:,} shots each; jobs of up to {s['circuits_per_job']} "
             f"circuits, {s['max_concurrent']} in flight", "",
             f"{'target':<{width}}  {'jobs':>4}  {'wall s':>8}  {'circuits/s':>10}  {'p50 ms':>9}  {'p95 ms':>9}"]
    for run in comparison.runs:
        lines.append(f"{run.label:<{width}}  {len(run.timings):>4}  {run.wall_s:>8.3f}  {run.throughput:>10,.1f}  "
                     f"{1e3 * run.latency(50):>9.2f}  {1e3 * run.latency(95):>9.2f}")
    phases = (*JobTiming.PHASES, "total")
    lines += ["", "mean time per job, ms (share of the job's total)",
              f"{'target':<{width}}  " + "  ".join(f"{name:>17}" for name in phases)]
    for run in comparison.runs:
        means = run.phase_means()
        cells = [f"{1e3 * means[name]:>9.2f} ({100 * means[name] / means['total']:>3.0f} %)" for name in phases[:-1]]
        lines.append(f"{run.label:<{width}}  " + "  ".join(cells) + f"  {1e3 * means['total']:>17.2f}")
    exact = "exact probabilities" if s.get("noise") is None else f"exact {s['noise']} noisy probabilities"
    header = f"{'TVD mean':>8}  {'TVD max':>8}  {'shot noise':>17}  {'z':>6}  verdict"
    lines += ["", f"agreement with the {exact} (total variation distance per circuit)",
              f"{'target':<{width}}  {header}"]
    lines += [_agreement_line(run.label, run.agreement, width) for run in comparison.runs]
    pair = "in-process vs remote"
    lines += ["", "distance between the two runs' histograms (TVD per circuit)", f"{'runs':<{len(pair)}}  {header}",
              _agreement_line(pair, comparison.histograms, len(pair))]
    local, remote = comparison.runs
    lines += ["", f"in process: {remote.wall_s / local.wall_s:,.0f}x less wall time, "
                  f"{remote.latency(50) / local.latency(50):,.0f}x lower p50 latency than {remote.label}"]
    return "\n".join(lines)


def to_json(comparison: Comparison) -> dict[str, Any]:
    """Everything :func:`format_report` shows, per circuit and per job, as JSON-ready data (seconds)."""
    histograms = comparison.histograms
    return {"settings": comparison.settings, "histogram_distance": {
        **dataclasses.asdict(histograms), "tvd_mean": float(np.mean(histograms.tvd)),
        "tvd_max": float(max(histograms.tvd)), "consistent": histograms.consistent}, "runs": [{
        "label": run.label, "target": run.target, "circuits": run.circuits, "jobs": len(run.timings),
        "wall_s": run.wall_s, "circuits_per_s": run.throughput,
        "latency_s": {"p50": run.latency(50), "p95": run.latency(95)}, "phase_means_s": run.phase_means(),
        "agreement": {**dataclasses.asdict(run.agreement), "consistent": run.agreement.consistent},
        "job_timings": [dataclasses.asdict(t) for t in run.timings],
    } for run in comparison.runs]}


def plot(comparison: Comparison, path: Path) -> None:
    """Bar charts: per-circuit latency p50/p95 (log scale) and each phase's share of a job's time."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    labels = [run.label for run in comparison.runs]
    positions = np.arange(len(labels))
    figure, (latency_axis, phase_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for offset, percentile in ((-0.2, 50), (0.2, 95)):
        latency_axis.bar(positions + offset, [run.latency(percentile) for run in comparison.runs], 0.4,
                         label=f"p{percentile}")
    latency_axis.set(yscale="log", ylabel="seconds per circuit", title="latency", xticks=positions,
                     xticklabels=labels)
    latency_axis.legend()
    means = [run.phase_means() for run in comparison.runs]
    bottom = np.zeros(len(labels))
    for name in JobTiming.PHASES:
        share = np.array([m[name] / m["total"] for m in means])
        phase_axis.bar(positions, 100 * share, 0.5, bottom=100 * bottom, label=name)
        bottom += share
    phase_axis.set(ylabel="% of a job's time", title="where a job's time goes", xticks=positions,
                   xticklabels=labels, ylim=(0, 100))
    phase_axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save(comparison: Comparison, directory: Path) -> tuple[Path, Path]:
    """Write ``compare.json`` and ``compare.png`` into ``directory`` (created); their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, png_path = directory / "compare.json", directory / "compare.png"
    json_path.write_text(json.dumps(to_json(comparison), indent=1) + "\n")
    plot(comparison, png_path)
    return json_path, png_path


__all__ = ["Agreement", "Comparison", "TargetRun", "compare", "format_report", "plot", "save", "to_json",
           "tvd_against_noise", "tvd_between"]
