"""Noisy simulator jobs (``noise.model``) on the local server: shot-aware trajectories, the model's limits, 400s."""

from __future__ import annotations

import numpy as np
import pytest

import qsim_core as qc
from qstore.ionq import job_body, parse_job_body, probabilities_from_ionq
from qstore.ionq.server import JobLimits, running_server
from qstore.ionq.server.limits import noisy_runs

from ..noisy import P_VALUE, assert_noisy_counts, exact, fit, noisy_circuit
from .test_app import Api, assert_ionq_error, engine, make_config

SHOTS = 4000


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A server that takes circuits as wide as IonQ's models allow, so the models' own limits show."""
    with running_server(make_config(tmp_path_factory.mktemp("noise"), limits=JobLimits(max_qubits=30))) as root:
        yield Api(root)


def counts_of(api: Api, job: dict, qubits: int) -> np.ndarray:
    result = api.call("GET", job["results"]["probabilities"]["url"]).json()
    counts = probabilities_from_ionq(result, qubits) * job["shots"]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)  # frequencies of whole shots
    return np.round(counts).astype(np.int64)


def test_noisy_job_returns_shot_aware_counts_of_the_noisy_distribution(api):
    circuit = noisy_circuit()
    body = job_body(circuit, shots=SHOTS, noise={"model": "aria-2", "seed": 11})
    job = api.wait(api.submit(body))
    assert job["status"] == "completed" and job["noise"] == {"model": "aria-2", "seed": 11}
    counts = counts_of(api, job, 3)
    assert counts.sum() == SHOTS
    assert_noisy_counts(counts, circuit, "aria-2")
    histogram = api.call("GET", job["results"]["histogram"]["url"]).json()  # the same shots, as IonQ counts them
    assert histogram == {str(k): int(c) for k, c in enumerate(counts) if c}
    again = api.wait(api.submit(body))
    assert np.array_equal(counts_of(api, again, 3), counts)  # the seed reproduces the shots
    other = api.wait(api.submit(job_body(circuit, shots=SHOTS, noise={"model": "aria-2", "seed": 12})))
    assert not np.array_equal(counts_of(api, other, 3), counts)


def test_unseeded_noisy_job_reports_the_seed_it_used(api):
    circuit = noisy_circuit(1.1)
    job = api.wait(api.submit(job_body(circuit, shots=300, noise={"model": "forte-1"})))
    seed = job["noise"]["seed"]
    assert job["noise"]["model"] == "forte-1" and isinstance(seed, int)
    rerun = api.wait(api.submit(job_body(circuit, shots=300, noise={"model": "forte-1", "seed": seed})))
    assert np.array_equal(counts_of(api, rerun, 3), counts_of(api, job, 3))


def test_multi_circuit_noisy_job_draws_every_circuit_its_own_shots(api):
    # at 4,000 shots aria-2's noise shows at these angles (chi-square noncentrality about 980 and 230 against the
    # noiseless distribution); at 2.0 it was 27, a test that failed about once in four samples
    circuits = [noisy_circuit(0.3), noisy_circuit(0.3), noisy_circuit(2.5)]
    job = api.wait(api.submit(job_body(circuits, shots=SHOTS, noise={"model": "aria-2", "seed": 5})))
    aggregated = api.call("GET", job["results"]["probabilities"]["url"]).json()
    counts = [np.round(probabilities_from_ionq(aggregated[child], 3) * SHOTS).astype(np.int64)
              for child in job["child_job_ids"]]
    assert not np.array_equal(counts[0], counts[1])  # same circuit, independent shots
    assert "histogram" not in job["results"]  # a parent has none; each child has its own
    assert_ionq_error(api.call("GET", f"/v0.4/jobs/{job['id']}/results/histogram"), 400, "each child job")
    child = api.call("GET", f"/v0.4/jobs/{job['child_job_ids'][2]}").json()
    histogram = api.call("GET", child["results"]["histogram"]["url"]).json()
    assert sum(histogram.values()) == SHOTS and histogram == {str(k): int(c) for k, c in enumerate(counts[2]) if c}
    for got, circuit in zip(counts, circuits, strict=True):
        assert got.sum() == SHOTS
        assert_noisy_counts(got, circuit, "aria-2")


def test_ideal_model_is_exact_and_reported(api):
    job = api.wait(api.submit(job_body(noisy_circuit(), shots=100, noise={"model": "ideal", "seed": None})))
    assert job["noise"]["model"] == "ideal" and "warning" not in job and "histogram" not in job["results"]
    assert_ionq_error(api.call("GET", f"/v0.4/jobs/{job['id']}/results/histogram"), 400, "exact probabilities")
    result = api.call("GET", job["results"]["probabilities"]["url"]).json()
    np.testing.assert_allclose(probabilities_from_ionq(result, 3), engine(noisy_circuit()), atol=1e-12)


@pytest.mark.parametrize(("noise", "text"), [
    ({"model": "aria-3"}, "unknown noise model 'aria-3'; known models: ideal, aria-1, aria-2, forte-1"),
    ({"model": "harmony"}, "IonQ retired the Harmony QPU"),
    ({"model": "forte-enterprise-1"}, "no noise rates"),
    ({"model": 7}, "noise.model must be a model name"),
    ({"model": "aria-1", "seed": -1}, "noise.seed must be null or an integer"),
    ({"model": "aria-1", "seed": 1.5}, "noise.seed must be null or an integer"),
])
def test_bad_noise_is_a_400_that_says_why(api, noise, text):
    assert_ionq_error(api.call("POST", "/v0.4/jobs", json=job_body(noisy_circuit(), noise=noise)), 400, text)


@pytest.mark.parametrize(("model", "qubits"), [("aria-1", 25), ("forte-1", 29)])
def test_the_modelled_qpus_qubit_limit(api, model, qubits):
    wide = qc.Circuit(qubits + 1).x(qubits)
    assert_ionq_error(api.call("POST", "/v0.4/jobs", json=job_body(wide, noise={"model": model})), 400,
                      f"noise model '{model}' models a {qubits}-qubit QPU; this job has {qubits + 1} qubits")
    fits = parse_job_body(job_body(qc.Circuit(qubits).x(qubits - 1), noise={"model": model}))  # not run: GiBs
    assert fits.noise_request.model == qc.NoiseModel.ionq(model) and fits.qubits == qubits


def test_noisy_jobs_are_charged_for_their_trajectories(tmp_path):
    rate = 15 / 16 * 0.0133
    assert noisy_runs(100, 1024, rate) == 1 + np.ceil(1024 * (1 - (1 - rate) ** 100))
    assert noisy_runs(2000, 10, rate) == 11 and noisy_runs(100, 10, 0.0) == 1  # at most one per shot
    circuit = qc.Circuit(12).h(0)
    for q in range(11):
        circuit.cnot(q, q + 1)
    work = 12 * 2**17  # exactly the noiseless job's charge (12 gates at the compile charge)
    with running_server(make_config(tmp_path, limits=JobLimits(max_work=work))) as root:
        api = Api(root)
        assert api.wait(api.submit(job_body(circuit, shots=1000)))["status"] == "completed"
        assert_ionq_error(api.call("POST", "/v0.4/jobs", json=job_body(circuit, shots=1000, noise={"model": "aria-1"})),
                          400, "noisy runs")


def test_exact_reference_is_the_engines_density_matrix():
    """The reference the tests compare against is not the trajectories themselves."""
    p = exact(noisy_circuit(), "aria-2")
    assert p.sum() == pytest.approx(1.0) and 0.5 * np.abs(p - exact(noisy_circuit(), None)).sum() > 0.05


@pytest.mark.parametrize("model", ["aria-1", "forte-1"])
def test_an_emulated_qpu_runs_its_published_noise_model(api, model):
    # forte-1's rates are low: 4,000 shots of this circuit tell its distribution from the noiseless one about a
    # third of the time (chi-square noncentrality 16 against a critical 26 at p = 1e-3), 20,000 nearly always (78)
    shots = 20_000
    circuit = noisy_circuit(0.9)
    job = api.wait(api.submit(job_body(circuit, backend=f"qpu.{model}", shots=shots, noise={"seed": 3})))
    assert job["status"] == "completed" and f"{model} noise model" in job["warning"]["messages"][0]
    counts = counts_of(api, job, 3)
    assert counts.sum() == shots
    assert_noisy_counts(counts, circuit, model)  # fits the noisy distribution, not the noiseless one


def test_a_qpu_without_published_rates_is_emulated_noiselessly_and_says_so(api):
    circuit = noisy_circuit(0.9)
    job = api.wait(api.submit(job_body(circuit, backend="qpu.forte-enterprise-1", shots=SHOTS, noise={"seed": 3})))
    assert "no noise rates" in job["warning"]["messages"][0]
    assert fit(counts_of(api, job, 3), exact(circuit, None)) > P_VALUE


def test_an_emulated_qpus_noisy_runs_count_against_the_work_limit(tmp_path):
    # 12 qubits, 40 CNOTs, 1,000 shots: within a budget of twice the noiseless charge on the simulator,
    # over it as an emulated aria-1 job, whose charge counts its noisy runs
    circuit = qc.Circuit(12)
    for k in range(40):
        circuit.cnot(k % 12, (k + 1) % 12)
    body = job_body(circuit, shots=1000)
    noiseless = len(circuit) * 2**17
    rate = 15 / 16 * qc.NoiseModel.ionq("aria-1").r2q
    assert len(circuit) * 2**12 * noisy_runs(len(circuit), 1000, rate) > 2 * noiseless
    with running_server(make_config(tmp_path, limits=JobLimits(max_work=2 * noiseless))) as root:
        small = Api(root)
        assert small.wait(small.submit(body))["status"] == "completed"
        assert_ionq_error(small.call("POST", "/v0.4/jobs", json={**body, "backend": "qpu.aria-1"}), 400, "noisy runs")
