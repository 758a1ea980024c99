"""The local IonQ-compatible server, started for real on 127.0.0.1 and driven over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

import qsim_core as qc
from qsim_core import seed_circuit
from qstore.cli.serve import main
from qstore.ionq import job_body, parse_job_body, probabilities_from_ionq
from qstore.ionq.server import ServerConfig, read_api_keys, running_server, runs_inline
from qstore.ionq.server.app import _INLINE_BODY_BYTES
from qstore.ionq.server.jobstore import JobStore, StoreLockedError
from qstore.ionq.server.latency import PHASES, LatencyProfile

ALICE, BOB = "alice-key", "bob-key"
NO_LATENCY = LatencyProfile.load("none")
#: every job spends at least 30 s "simulating": long enough to act on it while it runs
SLOW = LatencyProfile(30.0, 30.0, {"network": 0.0, "queue": 0.0, "serialization": 0.0, "simulation": 1.0})
ROOT = Path(__file__).resolve().parents[2]


def make_config(tmp_path: Path, profile: LatencyProfile = NO_LATENCY, **limits) -> ServerConfig:
    return ServerConfig(db=tmp_path / "jobs.sqlite", api_keys=frozenset({ALICE, BOB}), profile=profile, **limits)


class Api:
    """Minimal HTTP access to a server root URL."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.http = requests.Session()

    def call(self, method: str, path: str, key: str | None = ALICE, headers: dict | None = None,
             **kwargs) -> requests.Response:
        headers = {**({"Authorization": f"apiKey {key}"} if key else {}), **(headers or {})}
        return self.http.request(method, self.root + path, headers=headers, timeout=10, **kwargs)

    def submit(self, body: dict, key: str = ALICE, version: str = "v0.4") -> str:
        response = self.call("POST", f"/{version}/jobs", key, json=body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "submitted"
        return response.json()["id"]

    def wait(self, job_id: str, key: str = ALICE, version: str = "v0.4", timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("GET", f"/{version}/jobs/{job_id}", key).json()
            if job["status"] in ("completed", "failed", "canceled"):
                return job
            time.sleep(0.01)
        raise AssertionError(f"job {job_id} did not finish: {job}")

    def wait_for_status(self, job_id: str, status: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.call("GET", f"/v0.4/jobs/{job_id}").json()["status"] != status:
            assert time.monotonic() < deadline, f"job {job_id} never reached {status}"
            time.sleep(0.01)


@pytest.fixture
def api(tmp_path):
    with running_server(make_config(tmp_path)) as root:
        yield Api(root)


@pytest.fixture(scope="module")
def limited_api(tmp_path_factory):
    """One server with a 10,000-byte body limit shared by the bad-request cases."""
    with running_server(make_config(tmp_path_factory.mktemp("limited"), max_body_bytes=10_000)) as root:
        yield Api(root)


def asymmetric() -> qc.Circuit:
    """Different probabilities on every basis state a wrong bit order would confuse."""
    return qc.Circuit(3).x(0).ry(1, 0.7).cnot(1, 2).rx(2, 0.3)


def engine(circuit: qc.Circuit) -> np.ndarray:
    return qc.Simulator(seed=0).probabilities(circuit)


def assert_ionq_error(response: requests.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status and body["error"] and text in body["message"], body


def test_single_circuit_job_life_cycle(api):
    metadata = {"shots": "1024", "qiskit_header": "H4sIAAAA", "note": "x" * 500}
    job_id = api.submit(job_body(asymmetric(), shots=1024, name="asym", metadata=metadata))
    job = api.wait(job_id)
    assert job["status"] == "completed" and job["id"] == job_id and job["name"] == "asym"
    assert job["metadata"] == metadata  # echoed verbatim
    assert job["stats"]["qubits"] == 3 and job["stats"]["gate_counts"] == {"1q": 3, "2q": 1}
    assert job["type"] == "ionq.circuit.v1" and job["backend"] == "simulator" and job["shots"] == 1024
    url = job["results"]["probabilities"]["url"]
    assert url == f"/v0.4/jobs/{job_id}/results/probabilities"  # root-relative, versioned
    result = api.call("GET", url).json()
    assert all(isinstance(k, str) and k.isdigit() for k in result)
    np.testing.assert_allclose(probabilities_from_ionq(result, 3), engine(asymmetric()), atol=1e-12)
    assert "0" not in result  # qubit 0 is flipped: zero states are omitted
    assert isinstance(job["execution_duration_ms"], int) and job["completed_at"].endswith("Z")


def test_multi_circuit_job_has_children_and_aggregated_results(api):
    circuits = [asymmetric(), qc.Circuit(2).h(1), qc.Circuit(1).x(0)]
    job_id = api.submit(job_body(circuits, names=["a", "b", "c"]))
    job = api.wait(job_id)
    assert job["type"] == "ionq.multi-circuit.v1" and job["stats"]["circuits"] == 3
    children = job["child_job_ids"]
    assert len(children) == 3
    url = job["results"]["probabilities"]["url"]
    assert url == f"/v0.4/jobs/{job_id}/results/probabilities/aggregated"
    response = api.call("GET", url)
    aggregated = json.loads(response.text)
    assert list(aggregated) == children  # circuit order
    for child_id, circuit in zip(children, circuits, strict=True):
        np.testing.assert_allclose(probabilities_from_ionq(aggregated[child_id], 3), engine(widen(circuit, 3)),
                                   atol=1e-12)
        child = api.call("GET", f"/v0.4/jobs/{child_id}").json()
        assert child["status"] == "completed" and child["parent_job_id"] == job_id
        assert api.call("GET", child["results"]["probabilities"]["url"]).json() == aggregated[child_id]
    assert_ionq_error(api.call("GET", f"/v0.4/jobs/{job_id}/results/probabilities"), 400, "aggregated")
    assert_ionq_error(api.call("DELETE", f"/v0.4/jobs/{children[0]}"), 400, "delete the parent")


def aggregated_probabilities(api: Api, job_id: str, qubits: int) -> list[np.ndarray]:
    """A finished multi-circuit job's probabilities, in circuit order."""
    job = api.wait(job_id)
    assert job["status"] == "completed", job
    aggregated = api.call("GET", job["results"]["probabilities"]["url"]).json()
    return [probabilities_from_ionq(aggregated[child], qubits) for child in job["child_job_ids"]]


@pytest.mark.parametrize("rows", [4, 20])  # 20: parsed and run in worker threads, not on the event loop
def test_bindings_of_one_circuit_run_as_one_batch_with_exact_probabilities(api, rows):
    circuit = seed_circuit()
    theta = np.random.default_rng(rows).uniform(-np.pi, np.pi, (rows, circuit.num_params))
    other = qc.Circuit(8).h(3).cnot(3, 5).ry(7, 0.25)
    circuits = [circuit] * rows
    circuits.insert(1, other)
    params = [*theta[:1], np.zeros(0), *theta[1:]]
    body = job_body(circuits, params=params)
    job = parse_job_body(body)
    assert [batch.positions for batch in job.batches] == [(0, *range(2, rows + 1)), (1,)]  # by gate sequence
    np.testing.assert_array_equal(job.batches[0].params, theta)
    large = rows == 20
    assert (len(json.dumps(body)) > _INLINE_BODY_BYTES) == large and runs_inline(job) != large
    exact = qc.Simulator(seed=0).probabilities(circuit, theta)
    expected = [exact[0], engine(other), *exact[1:]]
    for got, want in zip(aggregated_probabilities(api, api.submit(body), 8), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)


def widen(circuit: qc.Circuit, qubits: int) -> qc.Circuit:
    """The same operations on a wider register (IonQ shares one width across a job's circuits)."""
    wide = qc.Circuit(qubits)
    for op in circuit:
        wide.append(op.name, op.qubits, op.params)
    return wide


def test_v03_bodies_and_routes(api):
    job_id = api.submit(job_body(asymmetric(), api_version="v0.3"), version="v0.3")
    job = api.wait(job_id, version="v0.3")
    assert job["target"] == "simulator" and job["qubits"] == 3 and job["results_url"] == f"/v0.3/jobs/{job_id}/results"
    result = api.call("GET", job["results_url"]).json()
    np.testing.assert_allclose(probabilities_from_ionq(result, 3), engine(asymmetric()), atol=1e-12)
    multi = api.submit(job_body([asymmetric(), asymmetric()], api_version="v0.3"), version="v0.3")
    nested = api.call("GET", api.wait(multi, version="v0.3")["results_url"]).json()
    assert list(nested) == api.call("GET", f"/v0.3/jobs/{multi}").json()["children"]
    # un-versioned paths behave as v0.4
    plain = api.submit(job_body(asymmetric()), version="v0.4")
    assert api.call("GET", f"/jobs/{plain}").json()["id"] == plain


def test_api_keys_and_isolation(api):
    body = job_body(asymmetric())
    for key in (None, "wrong-key"):
        assert_ionq_error(api.call("POST", "/v0.4/jobs", key, json=body), 401, "API key")
    assert_ionq_error(api.call("POST", "/v0.4/jobs", None, json=body, headers={"Authorization": f"Bearer {ALICE}"}),
                      401, "apiKey")
    job_id = api.submit(body, key=ALICE)
    api.wait(job_id)
    for method, path in [("GET", ""), ("GET", "/results/probabilities"), ("PUT", "/status/cancel"), ("DELETE", "")]:
        assert_ionq_error(api.call(method, f"/v0.4/jobs/{job_id}{path}", BOB), 404, "not found")
    assert api.call("GET", "/v0.4/jobs", BOB).json()["jobs"] == []
    assert [j["id"] for j in api.call("GET", "/v0.4/jobs", ALICE).json()["jobs"]] == [job_id]
    assert api.call("GET", f"/v0.4/jobs/{job_id}", ALICE).json()["status"] == "completed"  # untouched by BOB


def test_backends_need_no_key(api):
    backends = api.call("GET", "/v0.4/backends", None).json()
    assert {b["backend"] for b in backends} >= {"simulator", "qpu.aria-1", "qpu.forte-1"}
    assert api.call("GET", "/v0.4/backends/simulator", None).json()["qubits"] == 20  # the server's limit
    assert_ionq_error(api.call("GET", "/v0.4/backends/qpu.nothing", None), 404, "not found")


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (json.dumps({"backend": "simulator", "input": {"qubits": 1, "circuit": [{"gate": "cx", "target": 0}]}}).encode(),
     "unknown gate 'cx'"),
    (json.dumps({"backend": "simulator", "input": {"gateset": "native", "qubits": 1,
                                                   "circuit": [{"gate": "gpi", "target": 0, "rotation": 3.14}]}}
                ).encode(), "needs 'phase' in turns"),
    (b'{"backend": "simulator", "input": {"qubits": 1, "circuit": [{"gate": "rx", "target": 0, "rotation": NaN}]}}',
     "non-finite numbers are refused"),
    (json.dumps(job_body(qc.Circuit(21).h(0))).encode(), "limit of 20"),
    (json.dumps(job_body(qc.Circuit(1).h(0), shots=2_000_000)).encode(), "limit of 1000000"),
    (json.dumps(job_body(qc.Circuit(1).h(0), backend="qpu.nowhere")).encode(), "unknown backend"),
])
def test_bad_requests_get_ionq_shaped_400s_and_the_server_keeps_working(limited_api, body, message):
    response = limited_api.call("POST", "/v0.4/jobs", data=body, headers={"Content-Type": "application/json"})
    assert_ionq_error(response, 400, message)
    assert limited_api.wait(limited_api.submit(job_body(asymmetric())))["status"] == "completed"


def test_bodies_over_the_size_limit_get_413_with_or_without_content_length(limited_api):
    padded = json.dumps(job_body(qc.Circuit(1).h(0), metadata={"pad": "x" * 20_000})).encode()
    assert_ionq_error(limited_api.call("POST", "/v0.4/jobs", data=padded), 413, "limit of 10000 bytes")
    chunks = (b" " * 4096 for _ in range(5))  # a generator: sent chunked, no Content-Length
    assert_ionq_error(limited_api.call("POST", "/v0.4/jobs", data=chunks), 413, "limit of 10000 bytes")


def test_unknown_routes_and_methods_are_ionq_shaped(api):
    assert_ionq_error(api.call("GET", "/v0.4/nothing"), 404, "Not Found")
    assert_ionq_error(api.call("PATCH", "/v0.4/jobs"), 405, "Method Not Allowed")


def test_emulated_qpu_samples_shots_and_says_so(api):
    job = api.wait(api.submit(job_body(asymmetric(), backend="qpu.aria-1", shots=200,
                                       noise={"model": "ideal", "seed": 5})))
    result = api.call("GET", job["results"]["probabilities"]["url"]).json()
    counts = {k: v * 200 for k, v in result.items()}
    assert all(abs(c - round(c)) < 1e-9 for c in counts.values()) and round(sum(counts.values())) == 200
    assert "emulated" in job["warning"]["messages"][0] and "aria-1 noise model" in job["warning"]["messages"][0]
    again = api.wait(api.submit(job_body(asymmetric(), backend="qpu.aria-1", shots=200,
                                         noise={"model": "ideal", "seed": 5})))
    assert api.call("GET", again["results"]["probabilities"]["url"]).json() == result  # seeded
    twins = api.submit(job_body([asymmetric()] * 2, backend="qpu.aria-1", shots=200, noise={"seed": 5}))
    first, second = aggregated_probabilities(api, twins, 3)
    assert not np.array_equal(first, second)  # one batch, but each circuit draws its own shots


def test_cancel_and_delete(tmp_path):
    with running_server(make_config(tmp_path, profile=SLOW, workers=1)) as root:
        api = Api(root)
        running = api.submit(job_body(asymmetric()))
        queued = api.submit(job_body(asymmetric()))
        api.wait_for_status(running, "started")
        assert api.call("GET", f"/v0.4/jobs/{queued}").json()["status"] == "ready"  # one worker: it waits
        assert_ionq_error(api.call("GET", f"/v0.4/jobs/{running}/results/probabilities"), 400, "not finished")
        for job_id in (running, queued):
            assert api.call("PUT", f"/v0.4/jobs/{job_id}/status/cancel").json() == {"id": job_id, "status": "canceled"}
            assert api.call("GET", f"/v0.4/jobs/{job_id}").json()["status"] == "canceled"
        assert api.call("DELETE", f"/v0.4/jobs/{queued}").json() == {"id": queued, "status": "deleted"}
        assert_ionq_error(api.call("GET", f"/v0.4/jobs/{queued}"), 404, "not found")
        assert_ionq_error(api.call("DELETE", f"/v0.4/jobs/{queued}"), 404, "not found")
    with running_server(make_config(tmp_path)) as root:  # canceled jobs stay canceled after a restart
        api = Api(root)
        assert api.call("GET", f"/v0.4/jobs/{running}").json()["status"] == "canceled"
        done = api.submit(job_body(asymmetric()))
        api.wait(done)
        assert api.call("PUT", f"/v0.4/jobs/{done}/status/cancel").json()["status"] == "completed"  # a no-op


def test_idempotent_resubmission(api):
    body = job_body(asymmetric(), metadata={"idempotency_key": "k-1"})
    first = api.submit(body)
    again = api.call("POST", "/v0.4/jobs", json=body).json()
    assert again["id"] == first and again["status"] in ("submitted", "ready", "started", "completed")
    reordered = json.dumps(dict(reversed(body.items())), indent=1)  # the same body, written differently
    resent = api.call("POST", "/v0.4/jobs", data=reordered, headers={"Content-Type": "application/json"})
    assert resent.json()["id"] == first
    assert api.submit(body, key=BOB) != first  # keys are per API key
    body["shots"] = 7
    assert_ionq_error(api.call("POST", "/v0.4/jobs", json=body), 409, "different job")
    assert len(api.call("GET", "/v0.4/jobs").json()["jobs"]) == 1


def test_list_jobs_pages_and_filters(api):
    ids = [api.submit(job_body(qc.Circuit(1).h(0))) for _ in range(5)]
    for job_id in ids:
        api.wait(job_id)
    page = api.call("GET", "/v0.4/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    seen = [j["id"] for j in page["jobs"]]
    while "next" in page:
        page = api.call("GET", "/v0.4/jobs", params={"limit": 2, "next": page["next"]}).json()
        seen += [j["id"] for j in page["jobs"]]
    assert seen == ids[::-1]
    cirq_style = api.call("GET", "/v0.4/jobs", params={"status": "completed"}, json={"limit": 1000}).json()
    assert len(cirq_style["jobs"]) == 5 and "next" not in cirq_style
    assert api.call("GET", "/v0.4/jobs", params={"status": "failed"}).json()["jobs"] == []
    assert_ionq_error(api.call("GET", "/v0.4/jobs", params={"limit": "many"}), 400, "must be an integer from 1 to 1000")


def test_a_job_that_cannot_run_fails_without_stopping_the_workers(tmp_path):
    """A corrupt stored job (e.g. written by another version) fails cleanly; later jobs still run."""
    config = make_config(tmp_path, workers=1)
    store = JobStore(config.db)
    summary = {"type": "ionq.circuit.v1", "name": None, "backend": "simulator", "shots": 1, "noise": None,
               "settings": None, "metadata": {}, "session_id": None,
               "stats": {"qubits": 1, "circuits": 1, "gate_counts": {"1q": 1, "2q": 0}}}
    broken = str(uuid.uuid4())
    owner = hashlib.sha256(ALICE.encode()).hexdigest()
    store.create(owner, broken, summary, b'{"backend": "simulator", "input": {"qubits": 1, "circuit": '
                                          b'[{"gate": "warp", "target": 0}]}}', None)
    store.close()
    with running_server(config) as root:
        api = Api(root)
        job = api.wait(broken)
        assert job["status"] == "failed"
        assert job["failure"]["code"] == "CompilationError" and "warp" in job["failure"]["error"]
        assert api.wait(api.submit(job_body(asymmetric())))["status"] == "completed"


def test_one_server_per_database(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    with pytest.raises(StoreLockedError, match="in use"):
        JobStore(tmp_path / "jobs.sqlite")
    store.close()
    JobStore(tmp_path / "jobs.sqlite").close()


def test_latency_profiles():
    cloud = LatencyProfile.load("ionq-cloud")
    assert (cloud.low, cloud.high) == (2.7, 4.2)
    assert cloud.shares == {"network": 0.55, "queue": 0.20, "serialization": 0.15, "simulation": 0.10}
    rng = np.random.default_rng(0)
    totals = [sum(cloud.draw(phase, rng) for phase in PHASES) for _ in range(2000)]
    assert 2.7 <= min(totals) and max(totals) <= 4.2 and abs(np.mean(totals) - 3.45) < 0.05
    assert all(NO_LATENCY.draw(phase, rng) == 0 for phase in PHASES)
    with pytest.raises(ValueError, match="unknown latency profile"):
        LatencyProfile.load("slow-ish")
    with pytest.raises(ValueError, match="sum to 1"):
        LatencyProfile(1, 2, {"network": 0.5, "queue": 0.2, "serialization": 0.2, "simulation": 0.2})


def test_a_profile_delays_the_answers(tmp_path):
    """The network share is spent on the create answer (half) and the results answer (half)."""
    network = LatencyProfile(0.4, 0.4, {"network": 1.0, "queue": 0.0, "serialization": 0.0, "simulation": 0.0})
    with running_server(make_config(tmp_path, profile=network)) as root:
        api = Api(root)
        started = time.monotonic()
        job = api.wait(api.submit(job_body(asymmetric())))
        created = time.monotonic()
        api.call("GET", job["results"]["probabilities"]["url"])
        assert created - started >= 0.2 and time.monotonic() - created >= 0.2  # sleeps are never shorter


def test_api_keys_from_a_file_and_the_environment(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nalpha\n\n  beta  \n")
    assert read_api_keys(keys, {"QSTORE_API_KEYS": "gamma, delta"}) == {"alpha", "beta", "gamma", "delta"}
    assert read_api_keys(None, {}) == frozenset()
    with pytest.raises(ValueError, match="no API keys"):
        ServerConfig(db=tmp_path / "x", api_keys=frozenset(), profile=NO_LATENCY)
    assert "alpha" not in repr(ServerConfig(db=tmp_path / "x", api_keys=frozenset({"alpha"}), profile=NO_LATENCY))


def test_main_reports_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--api-keys-file", str(tmp_path / "missing"), "--db", str(tmp_path / "db")])
    assert exit_info.value.code == 2 and "missing" in capsys.readouterr().err


# ---------------------------------------------------------------- crash safety, with a real server process


def start_process(tmp_path: Path, *options: str) -> tuple[subprocess.Popen, Api]:
    keys = tmp_path / "keys"
    keys.write_text(f"{ALICE}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "qstore.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--api-keys-file",
         str(keys), "--db", str(tmp_path / "jobs.sqlite"), *options],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = process.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return process, Api(line.split()[-1])


def test_a_job_accepted_before_kill_9_completes_after_restart_exactly_once(tmp_path):
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"total_seconds": {"low": 60, "high": 60},
                                "shares": {"network": 0, "queue": 0, "serialization": 0, "simulation": 1}}))
    process, api = start_process(tmp_path, "--profile", str(slow), "--workers", "1")
    try:
        interrupted = api.submit(job_body(asymmetric()))
        never_started = api.submit(job_body([asymmetric(), qc.Circuit(3).x(2)]))
        api.wait_for_status(interrupted, "started")
        assert api.call("GET", f"/v0.4/jobs/{never_started}").json()["status"] == "ready"  # one worker
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    process, api = start_process(tmp_path, "--profile", "none")
    try:
        for job_id in (interrupted, never_started):
            assert api.wait(job_id)["status"] == "completed"
        result = api.call("GET", f"/v0.4/jobs/{interrupted}/results/probabilities").json()
        np.testing.assert_allclose(probabilities_from_ionq(result, 3), engine(asymmetric()), atol=1e-12)
        assert len(api.call("GET", "/v0.4/jobs").json()["jobs"]) == 2  # nothing lost, nothing duplicated
    finally:
        process.terminate()
        process.wait(timeout=20)
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        attempts = dict(db.execute("SELECT id, attempts FROM jobs WHERE parent IS NULL"))
    assert attempts == {interrupted: 2, never_started: 1}  # the killed run, then one run to completion
