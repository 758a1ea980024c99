"""Dry-run cost estimates from the pricing table, and the client's budget guard."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

import numpy as np
import pytest
import requests

import qsim_core as qc
from qstore.ionq import job_body
from qstore.ionq.client import IonQBadRequestError, IonQBudgetError, IonQClient, IonQRetryError, RetryPolicy
from qstore.ionq.cost import CostError, PricingTable, estimate_cost

ARIA = PricingTable.load().price("qpu.aria-1")


def circuit() -> qc.Circuit:
    """3 one-qubit and 2 two-qubit gates."""
    return qc.Circuit(3).h(0).cnot(0, 1).rx(2, 0.5).zz(1, 2, 0.3).x(1)


def test_the_shipped_table_prices_every_backend_the_server_lists():
    from qstore.ionq.server import DEVICE_QUBITS

    table = PricingTable.load()
    assert set(table.backends) == {"simulator", *DEVICE_QUBITS} and table.currency == "USD"
    assert (ARIA.per_1q_gate_shot, ARIA.per_2q_gate_shot, ARIA.minimum, ARIA.minimum_error_mitigation) == (
        0.000220, 0.000975, 12.4166, 97.50)


def test_simulator_jobs_are_free():
    estimate = estimate_cost(job_body(circuit(), shots=10_000))
    assert estimate.cost == 0 and not estimate.error_mitigation


def test_qpu_jobs_cost_gate_shots_plus_a_minimum_per_circuit():
    estimate = estimate_cost(job_body([circuit(), circuit()], backend="qpu.aria-1", shots=1000))
    assert (estimate.circuits, estimate.one_qubit_gates, estimate.two_qubit_gates) == (2, 6, 4)
    assert estimate.error_mitigation  # IonQ's default on QPUs
    expected = 2 * 97.50 + 1000 * (0.000220 * 6 + 0.000975 * 4)
    assert estimate.cost == pytest.approx(expected)
    off = job_body(circuit(), backend="qpu.forte-1", shots=100)
    off["settings"] = {"error_mitigation": {"debiasing": False}}
    assert estimate_cost(off).cost == pytest.approx(12.4166 + 100 * (0.000220 * 3 + 0.000975 * 2))
    legacy = job_body(circuit(), backend="qpu.aria-2", shots=100, api_version="v0.3")
    legacy["error_mitigation"] = {"debias": False}
    assert not estimate_cost(legacy).error_mitigation


def test_unknown_backends_have_no_price():
    with pytest.raises(CostError, match="no price for backend 'qpu'"):
        estimate_cost(job_body(circuit(), backend="qpu"))


class Refuse(requests.adapters.BaseAdapter):
    """A transport that fails the test if anything is sent."""

    def send(self, request, **kwargs):
        raise AssertionError(f"sent {request.method} {request.url}")

    def close(self) -> None:
        pass


def test_the_budget_guard_refuses_before_sending():
    session = requests.Session()
    session.mount("https://", Refuse())
    client = IonQClient("key", session=session, budget=100.0)
    estimate = client.estimate(circuit(), backend="qpu.aria-1", shots=1000)
    assert estimate.cost == pytest.approx(97.50 + 1000 * (0.000220 * 3 + 0.000975 * 2))
    with pytest.raises(IonQBudgetError, match="would cost 100.11 USD; 100.00 USD left") as error:
        client.submit(circuit(), backend="qpu.aria-1", shots=1000)
    assert error.value.estimate == estimate and client.spent == 0


def test_the_budget_counts_what_was_submitted(tmp_path):
    from qstore.ionq.server import ServerConfig, running_server
    from qstore.ionq.server.latency import LatencyProfile

    config = ServerConfig(db=tmp_path / "jobs.sqlite", api_keys=frozenset({"k"}), profile=LatencyProfile.load("none"))
    with running_server(config) as root:
        client = IonQClient("k", f"{root}/v0.4", budget=250.0)
        first = client.submit(circuit(), backend="qpu.aria-1", shots=100)
        assert client.spent == pytest.approx(97.50 + 100 * (0.000220 * 3 + 0.000975 * 2))
        client.submit(circuit(), backend="qpu.aria-1", shots=100)
        with pytest.raises(IonQBudgetError):
            client.submit(circuit(), backend="qpu.aria-1", shots=100)
        assert client.run(circuit()) is not None  # the simulator is free: still allowed
        probabilities = client.probabilities(first)  # an emulated QPU: frequencies of 100 shots
        assert np.allclose(probabilities * 100, np.round(probabilities * 100))


def test_the_server_quotes_estimates_to_qiskit_ionq(tmp_path):
    ionq_client = pytest.importorskip("qiskit_ionq.ionq_client")
    from qstore.ionq.server import ServerConfig, running_server
    from qstore.ionq.server.latency import LatencyProfile

    config = ServerConfig(db=tmp_path / "jobs.sqlite", api_keys=frozenset({"k"}), profile=LatencyProfile.load("none"))
    with running_server(config) as root:
        client = ionq_client.IonQClient("k", f"{root}/v0.4")
        quote = client.estimate_job(backend="qpu.aria-1", oneq_gates=3, twoq_gates=2, qubits=3, shots=1000)
        assert (quote.cost_unit, quote.backend, quote.shots, quote.error_mitigation) == ("USD", "qpu.aria-1", 1000,
                                                                                        False)
        same_job = {**job_body(circuit(), backend="qpu.aria-1", shots=1000),
                    "settings": {"error_mitigation": {"debiasing": False}}}  # qiskit asks without mitigation
        assert quote.cost == pytest.approx(estimate_cost(same_job).cost)
        bad = requests.get(f"{root}/v0.4/jobs/estimate", params={"backend": "qpu.nowhere", "shots": 1},
                           headers={"Authorization": "apiKey k"}, timeout=10)
        assert bad.status_code == 400 and "no price for backend" in bad.json()["message"]


class IonQHost(requests.adapters.BaseAdapter):
    """The remote IonQ host for many threads at once (recorded shapes): ``POST /jobs`` answers
    ``status`` after ``delay`` seconds (the round trip during which the threads race)."""

    def __init__(self, status: int = 200, delay: float = 0.05, error: Exception | None = None) -> None:
        super().__init__()
        self.status, self.delay, self.error = status, delay, error
        self.posts = 0
        self._lock = threading.Lock()

    def send(self, request, **kwargs) -> requests.Response:
        with self._lock:
            self.posts += request.method == "POST"
            number = self.posts
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code = self.status
        body = ({"id": f"job-{number}", "status": "submitted"} if self.status == 200 else
                {"error": HTTPStatus(self.status).phrase, "message": "refused", "statusCode": self.status})
        if request.method == "GET":  # the lost-job lookup: nothing found
            response.status_code, body = 200, {"jobs": []}
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        if self.status == 429:
            response.headers["Retry-After"] = "0"
        response.url, response.request = request.url, request
        return response

    def close(self) -> None:
        pass


def budget_client(host: IonQHost, budget: float) -> IonQClient:
    session = requests.Session()
    session.mount("https://", host)
    return IonQClient("key", session=session, budget=budget, sleep=lambda seconds: None,
                      retry=RetryPolicy(attempts=3, initial_delay=0.0))


def test_threads_racing_for_a_small_budget_never_overspend():
    cost = estimate_cost(job_body(circuit(), backend="qpu.aria-1", shots=100)).cost
    host = IonQHost()
    client = budget_client(host, 3.5 * cost)  # room for three jobs
    start = threading.Barrier(16)

    def submit(_: int) -> str:
        start.wait()
        try:
            return client.submit(circuit(), backend="qpu.aria-1", shots=100)
        except IonQBudgetError:
            return "refused"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(submit, range(16)))
    assert sum(outcome != "refused" for outcome in outcomes) == 3 == host.posts
    assert client.spent == pytest.approx(3 * cost) and client.spent <= client.budget


@pytest.mark.parametrize(("host", "error", "kept"), [
    (IonQHost(status=400, delay=0), IonQBadRequestError, False),  # refused: certainly not created
    (IonQHost(status=429, delay=0), IonQRetryError, False),  # rate limited every time: never processed
    (IonQHost(status=503, delay=0), IonQRetryError, True),  # maybe created: the estimate stays counted
    (IonQHost(delay=0, error=requests.ConnectionError("reset")), IonQRetryError, True),
], ids=["400", "429", "503", "connection-lost"])
def test_a_failed_submission_gives_its_reservation_back_unless_the_job_may_exist(host, error, kept):
    cost = estimate_cost(job_body(circuit(), backend="qpu.aria-1", shots=100)).cost
    client = budget_client(host, 1.5 * cost)
    with pytest.raises(error) as raised:
        client.submit(circuit(), backend="qpu.aria-1", shots=100)
    assert raised.value.maybe_processed is kept
    assert client.spent == pytest.approx(cost if kept else 0.0)
