"""The IonQ client: against the local server (with injected faults) and a mocked remote IonQ host."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests

import qsim_core as qc
from qstore.ionq.client import (
    DEFAULT_BASE_URL,
    LOOKUP_PAGE_SIZE,
    LOOKUP_PAGES,
    IonQAuthenticationError,
    IonQBadRequestError,
    IonQClient,
    IonQError,
    IonQJobError,
    IonQNotFoundError,
    IonQOriginError,
    IonQPermissionError,
    IonQRetryError,
    IonQTimeoutError,
    RetryPolicy,
    api_key_from_file,
)
from qstore.ionq.server import ServerConfig, running_server
from qstore.ionq.server.latency import LatencyProfile

KEY = "alice-key"
FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05, max_total=5.0)


def asymmetric() -> qc.Circuit:
    return qc.Circuit(3).x(0).ry(1, 0.7).cnot(1, 2).rx(2, 0.3)


def engine(circuit: qc.Circuit, params=None) -> np.ndarray:
    return qc.Simulator(seed=0).probabilities(circuit, params)


class Sleeps(list):
    """A ``sleep`` that records the requested waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ---------------------------------------------------------------- against the local server, with faults


@dataclass
class Fault:
    method: str
    path_suffix: str
    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    forward: bool = False  # let the app handle the request first, then lose its answer


class Faults:
    """ASGI middleware that answers the planned requests with an error status (once each)."""

    def __init__(self) -> None:
        self.plan: list[Fault] = []
        self.seen: list[tuple[str, str]] = []

    def wrap(self, app: Callable) -> Faults:
        self.app = app
        return self

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
            for fault in self.plan:
                if scope["method"] == fault.method and scope["path"].endswith(fault.path_suffix):
                    self.plan.remove(fault)
                    if fault.forward:
                        async def lose(message) -> None:
                            pass

                        await self.app(scope, receive, lose)
                    body = json.dumps({"error": HTTPStatus(fault.status).phrase, "message": "injected",
                                       "statusCode": fault.status}).encode()
                    await send({"type": "http.response.start", "status": fault.status,
                                "headers": [(b"content-type", b"application/json"), *fault.headers]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local server behind fault injection: ``(root URL, faults)``."""
    faults = Faults()
    config = ServerConfig(db=tmp_path_factory.mktemp("client") / "jobs.sqlite", api_keys=frozenset({KEY, "bob"}),
                          profile=LatencyProfile.load("none"))
    with running_server(config, wrap=faults.wrap) as root:
        yield root, faults


@pytest.fixture
def client(server):
    root, faults = server
    faults.plan.clear()
    faults.seen.clear()
    sleeps = Sleeps()
    with IonQClient(KEY, f"{root}/v0.4", retry=FAST, sleep=sleeps, seed=1) as client:
        client.sleeps = sleeps
        yield client


def test_run_returns_the_engines_probabilities(client):
    np.testing.assert_allclose(client.run(asymmetric()), engine(asymmetric()), atol=1e-12)
    circuit = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1).rz(1, qc.Param(1))
    theta = np.array([[0.1, 0.2], [1.0, -0.5], [2.5, 0.0]])
    batch = client.run(circuit, params=theta)  # one multi-circuit job
    assert len(batch) == 3
    for row, probabilities in zip(theta, batch, strict=True):
        np.testing.assert_allclose(probabilities, engine(circuit, row), atol=1e-12)
    native = qc.to_native(asymmetric(), "forte")
    np.testing.assert_allclose(client.run(native, gateset="native"), engine(asymmetric()), atol=1e-10)


def test_jobs_can_be_inspected_canceled_and_deleted(client):
    job_id = client.submit(asymmetric(), name="inspect", metadata={"run": "7"})
    job = client.wait(job_id)
    assert job["name"] == "inspect" and job["metadata"]["run"] == "7" and "idempotency_key" in job["metadata"]
    assert client.cancel(job_id)["status"] == "completed"  # finished jobs stay as they are
    assert client.delete(job_id) == {"id": job_id, "status": "deleted"}
    with pytest.raises(IonQNotFoundError, match=f"job {job_id} not found") as error:
        client.job(job_id)
    assert error.value.status == 404 and error.value.error == "Not Found"
    assert {"simulator", "qpu.aria-1"} <= {b["backend"] for b in client.backends()}


def test_transient_errors_are_retried_with_backoff(client, server):
    _, faults = server
    faults.plan += [Fault("GET", "/backends", 503), Fault("GET", "/backends", 502)]
    assert client.backends()
    assert len(client.sleeps) == 2 and all(0 < s <= FAST.max_delay for s in client.sleeps)
    assert client.sleeps[1] > client.sleeps[0] * 0.9  # growing back-off (jitter takes at most half)


def test_retry_after_is_honoured(client, server):
    _, faults = server
    faults.plan.append(Fault("GET", "/backends", 429, ((b"retry-after", b"3"),)))
    client.backends()
    assert client.sleeps == [3.0]
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True).encode()  # an HTTP date
    faults.plan.append(Fault("GET", "/backends", 503, ((b"retry-after", later),)))
    client.backends()
    assert 2 < client.sleeps[-1] <= 4


def test_retries_are_bounded(client, server):
    _, faults = server
    faults.plan += [Fault("GET", "/backends", 503)] * 10
    with pytest.raises(IonQRetryError, match="HTTP 503 after 4 attempts"):
        client.backends()
    assert len(client.sleeps) == 3
    faults.plan[:] = [Fault("GET", "/backends", 429, ((b"retry-after", b"600"),))]
    with pytest.raises(IonQRetryError, match="retry budget"):
        client.backends()


def test_a_lost_create_answer_never_makes_a_second_job(client, server):
    _, faults = server
    before = len(client._request("GET", "jobs", params={"limit": 1000})["jobs"])
    # the server creates the job, the answer is lost; the client finds it by its idempotency key
    faults.plan.append(Fault("POST", "/jobs", 502, forward=True))
    job_id = client.submit(asymmetric())
    assert [m for m, p in faults.seen].count("POST") == 1
    # again, but the lookup fails too: the client re-sends and the server returns the first job
    faults.plan += [Fault("POST", "/jobs", 503, forward=True), Fault("GET", "/v0.4/jobs", 503)]
    second = client.submit(asymmetric())
    assert [m for m, p in faults.seen].count("POST") == 3
    jobs = client._request("GET", "jobs", params={"limit": 1000})["jobs"]
    assert len(jobs) == before + 2 and {job_id, second} <= {j["id"] for j in jobs}
    np.testing.assert_allclose(client.probabilities(second), engine(asymmetric()), atol=1e-12)


def test_client_errors_carry_ionqs_message_and_are_not_retried(client, server):
    root, faults = server
    body = {"type": "ionq.circuit.v1", "backend": "simulator", "shots": 10,
            "input": {"qubits": 1, "circuit": [{"gate": "cx", "target": 0}]}}
    with pytest.raises(IonQBadRequestError, match="unknown gate 'cx'") as error:
        client.submit_body(body)
    assert error.value.status == 400 and error.value.error == "Bad Request"
    with pytest.raises(IonQAuthenticationError, match="API key"):
        IonQClient("not-a-key", f"{root}/v0.4", retry=FAST).job("x")
    with pytest.raises(IonQNotFoundError):
        client.job("no-such-job")
    other = IonQClient("bob", f"{root}/v0.4", retry=FAST)
    with pytest.raises(IonQNotFoundError):
        other.job(client.submit(qc.Circuit(1).h(0)))  # another key's job does not exist for bob
    assert client.sleeps == []


def test_a_dead_server_is_retried_then_reported(server):
    sock_root = "http://127.0.0.1:9"  # the discard port: nothing listens there
    sleeps = Sleeps()
    client = IonQClient(KEY, f"{sock_root}/v0.4", retry=FAST, sleep=sleeps, timeout=(0.5, 0.5))
    with pytest.raises(IonQRetryError, match="ConnectionError after 4 attempts"):
        client.submit(qc.Circuit(1).h(0))
    assert len(sleeps) == 3


# ---------------------------------------------------------------- a mocked remote IonQ host (recorded shapes)

JOB_ID = "617a1f8b-59d4-435d-aa33-695433d7155e"  # from IonQ's create-job example
Answer = tuple[int, object, dict[str, str]]


class Recorded(requests.adapters.BaseAdapter):
    """A transport answering from a script of ``(method, url, answer)``; ``answer`` is a response
    ``(status, json body or raw bytes, headers)``, an exception to raise, or a function of the request giving either."""

    def __init__(self, script: list[tuple[str, str, object]]) -> None:
        super().__init__()
        self.script = list(script)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs) -> requests.Response:
        assert kwargs["timeout"] is not None  # every call has a timeout
        self.sent.append(request)
        method, url, answer = self.script.pop(0)
        assert (request.method, request.url) == (method, url)
        if callable(answer) and not isinstance(answer, type):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        response = requests.Response()
        response.status_code, response.reason = status, HTTPStatus(status).phrase
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers.update({"Content-Type": "application/json", **headers})
        response.url, response.request = request.url, request
        return response

    def close(self) -> None:
        pass


def remote(script: list[tuple[str, str, object]], **options) -> tuple[IonQClient, Recorded, Sleeps]:
    transport = Recorded(script)
    session = requests.Session()
    session.mount("https://", transport)
    sleeps = Sleeps()
    client = IonQClient("secret-key", retry=FAST, session=session, sleep=sleeps, seed=0, **options)
    return client, transport, sleeps


def completed_job(metadata: dict) -> dict:
    """GET /jobs/{id} of a completed single-circuit job, as IonQ's v0.4 docs show it."""
    return {"id": JOB_ID, "type": "ionq.circuit.v1", "name": "Sample circuit", "status": "completed",
            "backend": "simulator", "shots": 1024, "metadata": metadata, "noise": {"model": "ideal", "seed": None},
            "stats": {"qubits": 3, "circuits": 1, "gate_counts": {"1q": 1, "2q": 0}},
            "results": {"probabilities": {"url": f"/v0.4/jobs/{JOB_ID}/results/probabilities"},
                        "histogram": {"url": f"/v0.4/jobs/{JOB_ID}/results/histogram"}},
            "execution_duration_ms": 8, "submitted_at": "2025-06-01T12:00:00.000Z"}


def created(request) -> Answer:
    return 200, {"id": JOB_ID, "status": "submitted", "session_id": None}, {}


def test_the_default_host_gets_ionqs_request_shapes(monkeypatch, caplog):
    monkeypatch.delenv("IONQ_API_URL", raising=False)
    caplog.set_level(logging.DEBUG)
    base = "https://api.ionq.co/v0.4"
    metadata: dict = {}

    def job(request) -> Answer:
        metadata.update(json.loads(sent.sent[0].body)["metadata"])
        return 200, completed_job(metadata), {}

    client, sent, _ = remote([("POST", f"{base}/jobs", created), ("GET", f"{base}/jobs/{JOB_ID}", job),
                              ("GET", f"{base}/jobs/{JOB_ID}/results/probabilities", (200, {"1": 1}, {}))])
    assert client.base_url == DEFAULT_BASE_URL + "/"
    probabilities = client.run(qc.Circuit(3).x(0), shots=1024, name="Sample circuit")
    np.testing.assert_array_equal(probabilities, engine(qc.Circuit(3).x(0)))
    post = sent.sent[0]
    assert post.headers["Authorization"] == "apiKey secret-key"
    assert post.headers["Content-Type"] == "application/json"
    body = json.loads(post.body)
    assert {k: body[k] for k in ("type", "backend", "shots", "name")} == {
        "type": "ionq.circuit.v1", "backend": "simulator", "shots": 1024, "name": "Sample circuit"}
    assert body["input"] == {"gateset": "qis", "qubits": 3, "circuit": [{"gate": "x", "target": 0}]}
    assert len(body["metadata"]["idempotency_key"]) == 32
    assert all(r.headers["Authorization"] == "apiKey secret-key" for r in sent.sent)
    assert "secret-key" not in repr(client) and "secret-key" not in caplog.text


def test_connection_lost_after_create_finds_the_job_instead_of_resubmitting():
    base = "https://api.ionq.co/v0.4"
    posted: list[dict] = []

    def lost(request):
        posted.append(json.loads(request.body))
        return requests.ConnectionError("connection reset by peer")

    def listing(request) -> Answer:
        return 200, {"jobs": [completed_job(posted[0]["metadata"])]}, {}

    client, sent, sleeps = remote([("POST", f"{base}/jobs", lost), ("GET", f"{base}/jobs?limit=25", listing)])
    assert client.submit(qc.Circuit(1).h(0)) == JOB_ID
    assert len(posted) == 1 and len(sleeps) == 1 and not sent.script


def test_a_retried_create_resends_the_same_idempotency_key():
    base = "https://api.ionq.co/v0.4"
    client, sent, sleeps = remote([
        ("POST", f"{base}/jobs", (503, {"error": "Service Unavailable", "message": "busy", "statusCode": 503}, {})),
        ("GET", f"{base}/jobs?limit=25", (200, {"jobs": []}, {})),
        ("POST", f"{base}/jobs", (429, {"error": "Too Many Requests", "message": "slow down", "statusCode": 429},
                                  {"Retry-After": "2"})),
        ("POST", f"{base}/jobs", created),  # after a 429 there is nothing to look up: it was not processed
    ])
    assert client.submit(qc.Circuit(1).h(0)) == JOB_ID
    keys = {json.loads(r.body)["metadata"]["idempotency_key"] for r in sent.sent if r.method == "POST"}
    assert len(keys) == 1 and sleeps[1] == 2.0


@pytest.mark.parametrize(("status", "body", "error_type", "text"), [
    (400, {"error": "Bad Request", "message": "input.qubits must be >= 1", "statusCode": 400},
     IonQBadRequestError, "input.qubits must be >= 1"),
    (401, {"error": "Unauthorized", "message": "Invalid key provided", "statusCode": 401},
     IonQAuthenticationError, "Invalid key provided"),
    (403, {"error": "Forbidden", "message": "no access to qpu.forte-1", "statusCode": 403},
     IonQPermissionError, "no access to qpu.forte-1"),
    (404, {"error": {"type": "NotFoundError", "message": "Job not found"}}, IonQNotFoundError, "Job not found"),
])
def test_client_errors_from_the_remote(status, body, error_type, text):
    client, sent, sleeps = remote([("GET", f"https://api.ionq.co/v0.4/jobs/{JOB_ID}", (status, body, {}))])
    with pytest.raises(error_type, match=text) as error:
        client.job(JOB_ID)
    assert error.value.status == status and sleeps == [] and "secret-key" not in str(error.value)


def test_failed_and_slow_jobs():
    base = "https://api.ionq.co/v0.4"
    failed = {**completed_job({}), "status": "failed",
              "failure": {"code": "SimulationTimeout", "error": "simulation exceeded the time limit"}}
    client, _, _ = remote([("GET", f"{base}/jobs/{JOB_ID}", (200, failed, {}))])
    with pytest.raises(IonQJobError, match="failed: SimulationTimeout simulation exceeded") as error:
        client.wait(JOB_ID)
    assert error.value.job["failure"]["code"] == "SimulationTimeout"
    running = {**completed_job({}), "status": "started"}
    client, _, sleeps = remote([("GET", f"{base}/jobs/{JOB_ID}", (200, running, {}))] * 3)
    with pytest.raises(IonQTimeoutError, match="still started"):
        client.wait(JOB_ID, timeout=0.0)


def test_an_answer_that_is_not_json_is_reported():
    client, _, _ = remote([("GET", "https://api.ionq.co/v0.4/backends", (200, b"<html>captive portal</html>", {}))])
    with pytest.raises(IonQError, match="not JSON"):
        client.backends()


def test_key_and_url_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("IONQ_API_KEY", raising=False)
    with pytest.raises(IonQError, match="IONQ_API_KEY"):
        IonQClient()
    monkeypatch.setenv("IONQ_API_KEY", "env-key")
    monkeypatch.setenv("IONQ_API_URL", "http://127.0.0.1:1234/v0.4/")
    client = IonQClient()
    assert client.base_url == "http://127.0.0.1:1234/v0.4/" and "env-key" not in repr(client)


# ---------------------------------------------------------------- hostile servers and keys


class StubHost:
    """A real HTTP server on 127.0.0.1 answering from ``answer(method, path) -> (status, json body[, headers])``
    (IonQ's recorded shapes), recording every request it gets as ``(method, path, Authorization)``."""

    def __init__(self, answer: Callable[[str, str], tuple]) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, str | None]] = []
        self.release = threading.Event()  # ends answers that hang
        host = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                host.requests.append((self.command, self.path, self.headers.get("Authorization")))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, body, *headers = host.answer(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers[0] if headers else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _reply

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubHost:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_result_urls_off_the_api_origin_are_refused_and_the_key_goes_nowhere_else():
    with StubHost(lambda method, path: (200, {"0": 1.0})) as elsewhere:
        port = elsewhere.server.server_address[1]
        named = {"url": ""}  # the result URL the host names

        def ionq(method: str, path: str) -> tuple[int, object]:
            if path.endswith("/results/probabilities"):
                return 200, {"1": 1.0}
            return 200, {**completed_job({}), "results": {"probabilities": {"url": named["url"]}}}

        with StubHost(ionq) as host:
            own_port = host.server.server_address[1]
            client = IonQClient("secret-key", f"{host.root}/v0.4", retry=FAST, sleep=Sleeps())
            for named["url"] in (f"http://127.0.0.1:{port}/steal",  # another port
                                f"//127.0.0.1:{port}/steal",  # scheme-relative
                                f"http://localhost:{own_port}/v0.4/jobs",  # another host name
                                f"https://127.0.0.1:{own_port}/v0.4/jobs",  # another scheme
                                f"http://127.0.0.1:{own_port}@127.0.0.1:{port}/steal",  # user info
                                f"http://127.0.0.1:{own_port}.evil.example/steal"):  # a longer host name
                job = client.job(JOB_ID)
                with pytest.raises(IonQOriginError, match="refusing to send the API key") as error:
                    client.results(job)
                assert "secret-key" not in str(error.value) and not error.value.maybe_processed
            assert elsewhere.requests == []  # nothing, let alone the key, reached the other server
            for named["url"] in (f"{host.root}/v0.4/jobs/{JOB_ID}/results/probabilities",  # absolute, same origin
                                f"/v0.4/jobs/{JOB_ID}/results/probabilities"):
                assert client.results(client.job(JOB_ID)) == {"1": 1.0}
            assert {auth for _, _, auth in host.requests} == {"apiKey secret-key"}
            # a redirect elsewhere is followed without the key (requests drops it when the host changes)
            named["url"] = f"/v0.4/jobs/{JOB_ID}/results/probabilities"
            host.answer = lambda method, path: (307, {}, {"Location": f"{elsewhere.root}/steal"})
            assert client.results(completed_job({})) == {"0": 1.0}
            assert elsewhere.requests == [("GET", "/steal", None)]


@pytest.mark.parametrize(("key", "problem"), [
    ("ab cd", "is not valid: character 3 of 5 is whitespace"),
    ("ab\r\ncd", "is not valid: character 3 of 6 is whitespace"),
    ("ab\x00cd", "is not valid: character 3 of 5 is a control character"),
    ("ab\x7fcd", "is not valid: character 3 of 5 is a control character"),
    ("abécd", "is not valid: character 3 of 5 is not ASCII"),
    ("", "is empty"),
    (" \n", "is empty"),
])
def test_bad_keys_are_refused_without_showing_them(monkeypatch, tmp_path, key, problem):
    with pytest.raises(IonQError, match=re.escape(f"API key from api_key= {problem}")) as error:
        IonQClient(key, "http://127.0.0.1:1/v0.4")
    assert key.strip() == "" or key not in str(error.value)
    if "\x00" not in key:  # an environment cannot hold a NUL
        monkeypatch.setenv("IONQ_API_KEY", key)
        with pytest.raises(IonQError, match=re.escape(f"API key from $IONQ_API_KEY {problem}")):
            IonQClient(base_url="http://127.0.0.1:1/v0.4")
    path = tmp_path / "key.txt"
    path.write_bytes(key.encode())
    with pytest.raises(IonQError, match="file") as error:
        api_key_from_file(path)
    assert key.strip() == "" or key not in str(error.value)


def test_keys_are_stripped_and_never_in_messages_or_reprs(tmp_path, monkeypatch):
    path = tmp_path / "key.txt"
    path.write_text("  secret-key\n")
    assert api_key_from_file(path) == "secret-key"
    path.write_bytes(b"\xffsecret")
    with pytest.raises(IonQError, match="not ASCII text") as error:
        api_key_from_file(path)
    assert "secret" not in str(error.value)
    with StubHost(lambda method, path: (401, {"error": "Unauthorized", "message": "Invalid key provided",
                                              "statusCode": 401})) as host:
        monkeypatch.setenv("IONQ_API_KEY", "secret-key\n")  # the usual trailing newline of `export K=$(cat file)`
        client = IonQClient(base_url=f"{host.root}/v0.4", retry=FAST)
        with pytest.raises(IonQAuthenticationError) as error:
            client.job(JOB_ID)
        assert host.requests[0][2] == "apiKey secret-key"  # sent stripped
        assert "secret-key" not in str(error.value) and "secret-key" not in repr(client)


def test_the_deadline_bounds_a_call_across_its_retries():
    def busy(method: str, path: str) -> tuple[int, object]:
        time.sleep(0.15)
        return 503, {"error": "Service Unavailable", "message": "busy", "statusCode": 503}

    with StubHost(busy) as host:
        patient = RetryPolicy(attempts=100, initial_delay=0.05, max_delay=0.05, max_total=600.0, jitter=0.0)
        client = IonQClient("k", f"{host.root}/v0.4", retry=patient, deadline=1.0)
        start = time.monotonic()
        with pytest.raises(IonQTimeoutError, match="1.0 s deadline"):
            client.backends()
        assert 0.8 <= time.monotonic() - start <= 2.0 and 2 <= len(host.requests) <= 7

    def hang(method: str, path: str) -> tuple[int, object]:
        host.release.wait(10)
        return 200, []

    with StubHost(hang) as host:
        client = IonQClient("k", f"{host.root}/v0.4", retry=FAST, timeout=(5.0, 60.0), deadline=0.5)
        start = time.monotonic()
        with pytest.raises(IonQTimeoutError, match="0.5 s deadline"):
            client.backends()  # the 60 s read timeout is cut to what is left of the deadline
        assert time.monotonic() - start < 2.0  # not the 60 s read timeout
    for bad in (0, -1.0, "5"):
        with pytest.raises(IonQError, match="deadline must be a positive number"):
            IonQClient("k", "http://127.0.0.1:1/v0.4", deadline=bad)


def test_a_retried_delete_whose_first_answer_was_lost_succeeds(client, server):
    _, faults = server
    job_id = client.submit(asymmetric())
    client.wait(job_id)
    faults.plan.append(Fault("DELETE", f"/jobs/{job_id}", 502, forward=True))  # deleted, then the answer is lost
    assert client.delete(job_id) == {"id": job_id, "status": "deleted"}
    assert [m for m, p in faults.seen].count("DELETE") == 2
    with pytest.raises(IonQNotFoundError):  # a first answer of 404 still means "no such job"
        client.delete(job_id)


def test_delete_on_the_remote_host_is_idempotent():
    url = f"https://api.ionq.co/v0.4/jobs/{JOB_ID}"
    gone = (404, {"error": "Not Found", "message": "Job not found", "statusCode": 404}, {})
    client, sent, sleeps = remote([("DELETE", url, requests.ConnectionError("connection reset")),
                                   ("DELETE", url, gone)])
    assert client.delete(JOB_ID) == {"id": JOB_ID, "status": "deleted"} and len(sleeps) == 1
    busy = (429, {"error": "Too Many Requests", "message": "slow down", "statusCode": 429}, {"Retry-After": "0"})
    client, sent, sleeps = remote([("DELETE", url, busy), ("DELETE", url, gone)])
    with pytest.raises(IonQNotFoundError):  # a 429 was not processed: the 404 is the job's real state
        client.delete(JOB_ID)


def test_the_lost_job_lookup_pages_through_the_newest_jobs():
    base = "https://api.ionq.co/v0.4"
    posted: list[dict] = []

    def lost(request):
        posted.append(json.loads(request.body))
        return requests.ConnectionError("connection reset by peer")

    def page(number: int, last: bool = False) -> Callable:
        def answer(request) -> Answer:
            jobs = [completed_job({"idempotency_key": f"other-{number}-{k}"}) for k in range(LOOKUP_PAGE_SIZE)]
            if last:
                jobs[-1] = {**completed_job(posted[0]["metadata"]), "id": "found"}
            return 200, {"jobs": jobs, "next": f"cursor{number + 1}"}, {}
        return answer

    listing = [(f"{base}/jobs?limit={LOOKUP_PAGE_SIZE}" + (f"&next=cursor{n}" if n else ""), page(n))
               for n in range(LOOKUP_PAGES)]
    found_on_page_3 = [("GET", url, answer) for url, answer in listing[:2]] + [
        ("GET", listing[2][0], page(2, last=True))]
    client, sent, _ = remote([("POST", f"{base}/jobs", lost), *found_on_page_3])
    assert client.submit(qc.Circuit(1).h(0)) == "found" and len(posted) == 1 and not sent.script
    # bounded: after LOOKUP_PAGES pages without the key the job is re-sent (with the same key)
    posted.clear()
    client, sent, _ = remote([("POST", f"{base}/jobs", lost), *[("GET", url, answer) for url, answer in listing],
                              ("POST", f"{base}/jobs", created)])
    assert client.submit(qc.Circuit(1).h(0)) == JOB_ID and not sent.script
