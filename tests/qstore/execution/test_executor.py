"""The executor against the in-process engine and real local servers: results, packing, cache, timings, failures."""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests

import qsim_core as qc
from qsim_core import seed_circuit
from qstore.execution.executor import AsyncQuantumExecutor, CacheInfo, ExecutorClosedError, JobTiming, _server_phases
from qstore.ionq import IonQFormatError
from qstore.ionq.client import (
    IonQAuthenticationError,
    IonQBadRequestError,
    IonQClient,
    IonQError,
    IonQJobError,
    IonQTimeoutError,
)
from qstore.ionq.server import ServerConfig, running_server
from qstore.ionq.server.latency import LatencyProfile

KEY = "executor-key"
SHOTS = 1024


@contextmanager
def local_server(directory: Path, seconds: float = 0.0):
    """A local server; ``seconds`` > 0 injects that much latency per job (network 1/4, queue 1/4, simulation 1/2)."""
    profile = LatencyProfile(seconds, seconds, {"network": 0.25, "queue": 0.25, "serialization": 0.0,
                                                "simulation": 0.5})
    config = ServerConfig(db=directory / "jobs.sqlite", api_keys=frozenset({KEY}), profile=profile)
    with running_server(config) as root:
        yield root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with local_server(tmp_path_factory.mktemp("executor")) as root:
        yield root


def server_jobs(root: str) -> list[dict]:
    """The key's jobs as the server lists them, newest first."""
    answer = requests.get(f"{root}/v0.4/jobs", headers={"Authorization": f"apiKey {KEY}"}, timeout=5)
    answer.raise_for_status()
    return answer.json()["jobs"]


def basis_circuit(num_qubits: int = 4) -> qc.Circuit:
    """RY(theta_q) on each qubit: theta = pi * bits(k) prepares basis state k exactly."""
    circuit = qc.Circuit(num_qubits)
    for q in range(num_qubits):
        circuit.ry(q, qc.Param(q))
    return circuit


def basis_rows(indices: list[int], num_qubits: int = 4) -> np.ndarray:
    return np.pi * np.array([[(k >> q) & 1 for q in range(num_qubits)] for k in indices], dtype=np.float64)


@pytest.mark.parametrize("remote", [False, True])
def test_every_circuit_gets_its_own_counts_in_order(server, remote):
    indices = [3, 0, 15, 7, 3, 9, 12, 1, 3, 5, 6, 10, 11, 2, 4]  # 3 repeats: one job serves all three
    target = server if remote else qc.Simulator(seed=1)
    with AsyncQuantumExecutor(target, api_key=KEY, max_concurrent=3, circuits_per_job=4) as exe:
        counts = exe.execute(basis_circuit(), basis_rows(indices), shots=SHOTS)
        assert counts == [{k: SHOTS} for k in indices]
        unique = len(set(indices))
        assert exe.cache_info() == CacheInfo(hits=2, misses=unique, maxsize=4096, currsize=unique)
        assert sorted(t.circuits for t in exe.timings) == [1, 4, 4, 4]  # 13 circuits in jobs of <= 4
        assert exe.execute(basis_circuit(), basis_rows([9])[0], shots=SHOTS) == {9: SHOTS}  # 1-D params: one dict


def test_jobs_on_the_server_are_exactly_the_packed_ones(tmp_path):
    with local_server(tmp_path) as root, AsyncQuantumExecutor(root, api_key=KEY, circuits_per_job=5) as exe:
        exe.execute(basis_circuit(), basis_rows(list(range(12))), shots=10)
        jobs = server_jobs(root)
        assert sorted(job["stats"]["circuits"] for job in jobs) == [2, 5, 5]
        assert {job["id"] for job in jobs} == {t.job_id for t in exe.timings}


def test_parameter_shift_gradient_through_the_local_server_matches_the_exact_gradient(server):
    circuit, observables = seed_circuit(), [f"Z{q}" for q in range(8)]
    theta = np.random.default_rng(5).uniform(-np.pi, np.pi, (2, circuit.num_params))
    sim = qc.Simulator(seed=3)
    with AsyncQuantumExecutor(server, api_key=KEY, seed=11) as exe:
        estimate = sim.gradient(circuit, observables, theta, method="parameter-shift", shots=SHOTS, executor=exe)
        assert sum(t.circuits for t in exe.timings) == 2 * (1 + 2 * circuit.num_params)
    exact = sim.gradient(circuit, observables, theta)
    # every parameter is used once, by RY or RZ: d<O>/dp = (<O>(p + pi/2) - <O>(p - pi/2)) / 2, each
    # <O> from SHOTS shots with variance (1 - <O>^2) / SHOTS
    shifts = np.eye(circuit.num_params) * np.pi / 2
    sd = np.empty_like(exact)
    for b, row in enumerate(theta):
        plus, minus = (sim.expectation(circuit, observables, row + sign * shifts) for sign in (1, -1))
        sd[b] = (np.sqrt((1 - plus**2 + 1 - minus**2) / SHOTS) / 2).T
    z = np.abs(estimate - exact) / np.maximum(sd, 1e-12)
    assert z.max() < 5, f"largest deviation {z.max():.1f} standard deviations"  # seeded; 640 entries


def test_the_same_bound_circuit_hits_the_cache_however_it_is_written(server):
    symbolic = qc.Circuit(2).ry(0, qc.Param(0, scale=2.0)).cnot(0, 1)
    constant = qc.Circuit(2).ry(0, 0.6).cnot(0, 1)
    with AsyncQuantumExecutor(server, api_key=KEY, cache_size=2) as exe:
        first = exe.execute(symbolic, [0.3], shots=SHOTS)
        assert exe.execute(constant, shots=SHOTS) == first
        assert exe.cache_info() == CacheInfo(hits=1, misses=1, maxsize=2, currsize=1)
        exe.execute(constant, shots=100)  # other shots: another circuit
        exe.execute(symbolic, [0.5], shots=SHOTS)  # evicts the least recently used (0.6 at 1024 shots)
        exe.execute(constant, shots=SHOTS)
        assert exe.cache_info() == CacheInfo(hits=1, misses=4, maxsize=2, currsize=2)
    with AsyncQuantumExecutor(server, api_key=KEY, cache_size=0) as exe:
        exe.execute(constant, shots=SHOTS)
        exe.execute(constant, shots=SHOTS)
        assert len(exe.timings) == 2 and exe.cache_info().currsize == 0


def test_async_and_blocking_callers_get_the_same_seeded_counts(server):
    circuit = seed_circuit()
    theta = np.random.default_rng(1).uniform(-np.pi, np.pi, (12, circuit.num_params))
    with AsyncQuantumExecutor(server, api_key=KEY, seed=4, cache_size=0) as exe:
        blocking = exe.execute(circuit, theta, shots=SHOTS)

    async def run() -> list:
        async with AsyncQuantumExecutor(server, api_key=KEY, seed=4, circuits_per_job=3) as exe:
            parts = await asyncio.gather(*(exe.execute_async(circuit, theta[k:k + 4], shots=SHOTS)
                                           for k in range(0, 12, 4)))
        return [counts for part in parts for counts in part]

    assert asyncio.run(run()) == blocking
    assert all(sum(counts.values()) == SHOTS for counts in blocking)


def test_several_circuits_of_both_gate_sets_go_into_separate_jobs(server):
    bell = qc.Circuit(2).h(0).cnot(0, 1)
    flip = qc.Circuit(2).x(1)
    circuits = [bell, qc.to_native(flip, "aria"), flip, qc.to_native(bell, "forte")]
    with AsyncQuantumExecutor(server, api_key=KEY, seed=2) as exe:
        counts = exe.execute(circuits, shots=SHOTS)
        assert sorted(t.circuits for t in exe.timings) == [2, 2]
    assert counts[1] == counts[2] == {2: SHOTS}
    assert set(counts[0]) == set(counts[3]) == {0, 3}


def test_remote_timings_split_the_injected_latency_by_phase(tmp_path):
    # 0.4 s per job: 0.05 s on the POST answer and on the results answer, 0.1 s queue, >= 0.2 s simulation
    with local_server(tmp_path, seconds=0.4) as root, AsyncQuantumExecutor(root, api_key=KEY) as exe:
        exe.execute(basis_circuit(), basis_rows([1, 2]), shots=SHOTS)
        (timing,) = exe.timings
    assert timing.circuits == 2 and timing.shots == SHOTS
    assert timing.queue >= 0.1 and timing.simulation >= 0.2 and timing.download >= 0.05
    assert timing.serialization > 0 and timing.network > 0
    phases = [getattr(timing, name) for name in JobTiming.PHASES]
    assert math.isclose(sum(phases), timing.total, abs_tol=1e-6)


def test_in_process_timings_are_all_simulation():
    with AsyncQuantumExecutor(qc.Simulator(seed=0)) as exe:
        exe.execute(basis_circuit(), basis_rows([1, 2, 3]), shots=10)
        (timing,) = exe.timings
    assert timing.job_id is None and timing.simulation > 0
    assert timing.serialization == timing.network == timing.download == 0
    assert math.isclose(timing.queue + timing.simulation, timing.total, abs_tol=1e-6)


def test_server_phases_read_timestamps_or_execution_time():
    stamps = {"submitted_at": "2026-01-01T00:00:00.000000Z", "started_at": "2026-01-01T00:00:00.250000Z",
              "completed_at": "2026-01-01T00:00:01.000000Z", "execution_duration_ms": 8}
    assert _server_phases(stamps) == pytest.approx((0.25, 0.75))
    without_start = {**stamps, "started_at": None}
    assert _server_phases(without_start) == pytest.approx((0.992, 0.008))
    assert _server_phases({"execution_time": 20}) == pytest.approx((0.0, 0.02))
    assert _server_phases({}) == (0.0, 0.0)


class FailingClient(IonQClient):
    """A client whose jobs all report IonQ's failure answer."""

    def job(self, job_id: str) -> dict:
        return {**super().job(job_id), "status": "failed",
                "failure": {"code": "SimulationError", "error": "injected: the simulator ran out of memory"}}


def test_a_failed_job_raises_ionqs_message_and_nothing_is_cached(server):
    with AsyncQuantumExecutor(FailingClient(KEY, f"{server}/v0.4"), circuits_per_job=2) as exe:
        with pytest.raises(IonQJobError, match="failed: SimulationError injected: the simulator ran out of memory"):
            exe.execute(basis_circuit(), basis_rows([1, 2, 3]), shots=10)
        assert exe.cache_info().currsize == 0
    with AsyncQuantumExecutor(server, api_key=KEY, backend="qpu.nowhere") as exe:
        with pytest.raises(IonQBadRequestError, match="unknown backend 'qpu.nowhere'"):
            exe.execute(basis_circuit(), basis_rows([1]), shots=10)
    with AsyncQuantumExecutor(server, api_key="not-a-key") as exe:
        with pytest.raises(IonQAuthenticationError, match="missing or unknown API key"):
            exe.execute(basis_circuit(), basis_rows([1]), shots=10)


def test_a_job_past_the_timeout_is_canceled(tmp_path):
    with local_server(tmp_path, seconds=2.0) as root:
        with AsyncQuantumExecutor(root, api_key=KEY, timeout=0.2) as exe:
            with pytest.raises(IonQTimeoutError, match=r"after 0.2 s; the job was canceled"):
                exe.execute(basis_circuit(), basis_rows([1]), shots=10)
        assert [job["status"] for job in server_jobs(root)] == ["canceled"]


def test_close_cancels_outstanding_jobs_and_fails_their_callers(tmp_path):
    with local_server(tmp_path, seconds=2.0) as root:
        exe = AsyncQuantumExecutor(root, api_key=KEY, circuits_per_job=2)
        with ThreadPoolExecutor(1) as caller:
            call = caller.submit(exe.execute, basis_circuit(), basis_rows([1, 2, 3, 4, 5]), 10)
            for _ in range(500):  # until the server holds all three jobs
                if len(server_jobs(root)) == 3:
                    break
                time.sleep(0.01)
            exe.close()
            assert isinstance(call.exception(timeout=10), ExecutorClosedError)
        assert [job["status"] for job in server_jobs(root)] == ["canceled"] * 3
        with pytest.raises(ExecutorClosedError, match="the executor is closed"):
            exe.execute(basis_circuit(), basis_rows([1]), shots=10)
        exe.close()  # idempotent


@pytest.mark.parametrize(
    ("circuits", "params", "shots", "error", "message"),
    [
        (basis_circuit(), np.zeros((2, 3)), 10, qc.ParameterError, "has 4 parameter.s. but params has 3 per row"),
        (basis_circuit(), None, 10, qc.ParameterError, "has 4 parameter.s. but params has 0 per row; pass params"),
        (basis_circuit(), [[0, 0, 0, np.nan]], 10, qc.ParameterError, "row 0, entry 3 is nan"),
        (basis_circuit(), np.zeros((1, 1, 4)), 10, qc.ParameterError, r"got shape \(1, 1, 4\)"),
        ([basis_circuit()] * 3, np.zeros((2, 4)), 10, qc.ParameterError, r"one row per circuit \(3, P\)"),
        (basis_circuit(), [["a", "b", "c", "d"]], 10, qc.ParameterError, "params must be numbers"),
        (basis_circuit(), np.zeros(4), 0, qc.ParameterError, "shots must be a positive integer, got 0"),
        ("h 0", None, 10, qc.CircuitError, "expected a qsim_core.Circuit, got str"),
        (qc.Circuit(2).h(0).gpi(1, 0.25), None, 10, IonQFormatError, "mixes QIS and native gates"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(server, circuits, params, shots, error, message):
    with AsyncQuantumExecutor(server, api_key=KEY) as exe:
        with pytest.raises(error, match=message):
            exe.execute(circuits, params, shots)
        assert exe.timings == [] and exe.cache_info().misses == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"target": 42}, TypeError, "target must be a qsim_core.Simulator, a server URL, 'ionq' or an IonQClient"),
        ({"max_concurrent": 0}, ValueError, "max_concurrent must be an integer >= 1, got 0"),
        ({"circuits_per_job": 2.5}, ValueError, "circuits_per_job must be an integer >= 1"),
        ({"cache_size": -1}, ValueError, "cache_size must be an integer >= 0, got -1"),
        ({"timeout": 0}, ValueError, "timeout must be a positive number of seconds, got 0"),
        ({"target": "ionq", "api_key": None}, IonQError, "no IonQ API key"),
    ],
)
def test_bad_settings_are_refused(monkeypatch, kwargs, error, message):
    monkeypatch.delenv("IONQ_API_KEY", raising=False)
    with pytest.raises(error, match=message):
        AsyncQuantumExecutor(**{"target": qc.Simulator(), **kwargs})


def test_a_versioned_url_is_used_as_given(server):
    with AsyncQuantumExecutor(f"{server}/v0.4/", api_key=KEY) as exe:
        assert exe.target == f"{server}/v0.4 simulator"
        assert exe.execute(basis_circuit(), basis_rows([6])[0], shots=5) == {6: 5}


def test_concurrent_jobs_never_spend_past_the_clients_budget(tmp_path):
    from qstore.ionq import IonQBudgetError, estimate_cost, job_body

    rows = basis_rows(list(range(12)))
    job_cost = estimate_cost(job_body(basis_circuit(), params=rows[0], backend="qpu.aria-1", shots=100)).cost
    # jobs submitted while others are still being created (injected network latency) race for the budget
    with local_server(tmp_path, seconds=0.05) as root:
        client = IonQClient(KEY, f"{root}/v0.4", budget=3.5 * job_cost)
        with AsyncQuantumExecutor(client, backend="qpu.aria-1", max_concurrent=12, circuits_per_job=1) as exe:
            with pytest.raises(IonQBudgetError):
                exe.execute(basis_circuit(), rows, shots=100)
        assert len(server_jobs(root)) == 3 and client.spent == pytest.approx(3 * job_cost)


def test_a_noise_model_without_a_seed_gets_a_reproducible_seed_per_job(server):
    circuit = qc.Circuit(2).h(0).ry(1, qc.Param(0))
    for _ in range(30):
        circuit.cnot(0, 1)  # 30 CNOTs: about a third of aria-2's shots carry an error
    rows = np.array([[0.0], [0.01], [0.02], [0.03]])

    def run(seed: int) -> list[dict[int, int]]:
        with AsyncQuantumExecutor(server, api_key=KEY, seed=seed, cache_size=0, circuits_per_job=2,
                                  noise={"model": "aria-2"}) as exe:
            return exe.execute(circuit, rows, shots=SHOTS)

    first = run(5)
    assert run(5) == first and run(6) != first
    assert all(sum(counts.values()) == SHOTS for counts in first)
    jobs = server_jobs(server)[:2]  # the last run's two jobs
    assert {job["noise"]["model"] for job in jobs} == {"aria-2"}
    assert jobs[0]["noise"]["seed"] != jobs[1]["noise"]["seed"]  # jobs of different circuits: their own draws
    # without noise, CNOT**30 after H on qubit 0 keeps qubit 1 at RY(<= 0.03): states 2 and 3 are < 3e-4 likely
    assert all(counts.get(2, 0) + counts.get(3, 0) > 20 for counts in first)  # noise puts shots there
