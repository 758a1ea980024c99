"""The local server under hostile input: each request's expected status, never a 5xx, limits, quotas, fairness.

The table runs against a server in its own process (``qstore serve``), so
the test can also read that process's peak memory afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import qsim_core as qc
from qstore.ionq import job_body
from qstore.ionq.server import running_server

from .test_app import ALICE, BOB, ROOT, Api, assert_ionq_error, make_config

LIMITS = ("--max-qubits", "12", "--max-gates", "200", "--max-circuits", "50", "--max-body-bytes", "1000000",
          "--max-queued-per-key", "20")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Api, int]]:
    """A ``qstore serve`` process with small limits and keys ALICE and BOB: ``(api, pid)``."""
    folder = tmp_path_factory.mktemp("hostile")
    process = subprocess.Popen(
        [sys.executable, "-m", "qstore.cli", "serve", "--port", "0", "--db", str(folder / "jobs.sqlite"), *LIMITS],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "QSTORE_API_KEYS": f"{ALICE},{BOB}"})
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield Api(line.split()[-1]), process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def h_job(**fields) -> dict:
    return {**job_body(qc.Circuit(2).h(0).cnot(0, 1)), **fields}


def gate(**fields) -> dict:
    return {"backend": "simulator", "input": {"qubits": 2, "circuit": [{"gate": "rx", "target": 0, **fields}]}}


def raw(body: dict, old: str, new: str) -> bytes:
    """``body`` as JSON text with ``old`` replaced by ``new`` (to write what ``json.dumps`` will not)."""
    text = json.dumps(body)
    assert old in text
    return text.replace(old, new, 1).encode()


NESTED = b'{"backend": "simulator", "metadata": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b'}, "input": {}}'

#: (what, method, path, key, body as bytes or JSON or None, query params, expected status, text in the message)
CASES = [
    ("shots is a superscript two", "POST", "/jobs", ALICE, h_job(shots="²"), None, 400, "'shots' must be"),
    ("shots of 5000 digits", "POST", "/jobs", ALICE, h_job(shots="9" * 5000), None, 400, "(max_shots)"),
    ("NaN in metadata", "POST", "/jobs", ALICE, raw(h_job(metadata={"a": "PLACE"}), '"PLACE"', "NaN"), None,
     400, "NaN is not a JSON number"),
    ("Infinity in settings", "POST", "/jobs", ALICE, raw(h_job(settings={"a": 1}), '"a": 1', '"a": Infinity'),
     None, 400, "Infinity is not a JSON number"),
    ("-Infinity in noise", "POST", "/jobs", ALICE, raw(h_job(noise={"seed": 1}), '"seed": 1', '"seed": -Infinity'),
     None, 400, "-Infinity is not a JSON number"),
    ("1e999 in noise", "POST", "/jobs", ALICE, raw(h_job(noise={"seed": 1}), '"seed": 1', '"seed": 1e999'),
     None, 400, "out of a 64-bit float's range"),
    ("a lone surrogate in name", "POST", "/jobs", ALICE, raw(h_job(name="PLACE"), "PLACE", "\\ud800"), None,
     400, "lone UTF-16 surrogate"),
    ("a lone surrogate in a metadata key", "POST", "/jobs", ALICE, raw(h_job(metadata={"PLACE": "v"}), "PLACE",
                                                                        "\\udfff"), None, 400, "object key"),
    ("integer angle 10**400", "POST", "/jobs", ALICE, gate(rotation=10**400), None, 400, "401 digits exceeds"),
    ("integer angle 10**300", "POST", "/jobs", ALICE, gate(rotation=10**300), None, 200, ""),  # a valid float
    ("integer angle 2 * 10**308", "POST", "/jobs", ALICE, gate(rotation=2 * 10**307 * 10), None, 400,
     "digits exceeds the limit of 308"),
    ("an integer of 5000 digits", "POST", "/jobs", ALICE, b"9" * 5000, None, 400, "5000 digits"),
    ("nesting 50,000 deep", "POST", "/jobs", ALICE, NESTED, None, 400, "levels"),
    ("qubits 10**300", "POST", "/jobs", ALICE, {**h_job(), "input": {"qubits": 10**300, "circuit": []}}, None,
     400, "(max_qubits)"),
    ("qubit index 10**300", "POST", "/jobs", ALICE, gate(rotation=1) | {"input": {"qubits": 2, "circuit": [
        {"gate": "h", "target": 10**300}]}}, None, 400, "circuit[0]"),
    ("a negative qubit count", "POST", "/jobs", ALICE, {**h_job(), "input": {"qubits": -5, "circuit": []}}, None,
     400, "'qubits' must be an integer >= 1"),
    ("too many gates", "POST", "/jobs", ALICE,
     {"backend": "simulator", "input": {"qubits": 1, "circuit": [{"gate": "h", "target": 0}] * 201}}, None, 400,
     "(max_gates)"),
    ("too many circuits", "POST", "/jobs", ALICE, {"backend": "simulator", "input": {"qubits": 1, "circuits": [
        {"circuit": []}] * 51}}, None, 400, "(max_circuits)"),
    ("11 metadata keys", "POST", "/jobs", ALICE, h_job(metadata={str(k): "v" for k in range(11)}), None, 400,
     "metadata has 11 keys"),
    ("a metadata value of 40,001 characters", "POST", "/jobs", ALICE, h_job(metadata={"k": "v" * 40_001}), None,
     400, "the limit is 40000"),
    ("a body over the size limit", "POST", "/jobs", ALICE, h_job(metadata={"k": "v" * 1_000_000}), None, 413,
     "(max_body_bytes)"),
    ("a JSON array body", "POST", "/jobs", ALICE, [1, 2], None, 400, "must be a JSON object"),
    ("an empty body", "POST", "/jobs", ALICE, b"", None, 400, "must be a JSON object"),
    ("invalid UTF-8", "POST", "/jobs", ALICE, b'{"name": "\xff"}', None, 400, "not valid JSON"),
    ("an unknown backend", "POST", "/jobs", ALICE, h_job(backend="qpu.\u2603"), None, 400, "unknown backend"),
    ("no API key", "POST", "/jobs", None, h_job(), None, 401, "API key"),
    ("list: next of 20 digits", "GET", "/jobs", ALICE, None, {"next": "99999999999999999999"}, 400, "'next'"),
    ("list: limit=0", "GET", "/jobs", ALICE, None, {"limit": "0"}, 400, "'limit' must be an integer from 1"),
    ("list: limit=1001", "GET", "/jobs", ALICE, None, {"limit": "1001"}, 400, "from 1 to 1000"),
    ("list: limit=-1", "GET", "/jobs", ALICE, None, {"limit": "-1"}, 400, "'limit'"),
    ("list: limit 1e999 in the body", "GET", "/jobs", ALICE, b'{"limit": 1e999}', None, 400, "float's range"),
    ("list: limit [1] in the body", "GET", "/jobs", ALICE, {"limit": [1]}, None, 400, "got [1]"),
    ("list: limit true in the body", "GET", "/jobs", ALICE, {"limit": True}, None, 400, "got True"),
    ("list: an unknown status", "GET", "/jobs", ALICE, None, {"status": "\u2603"}, 400, "'status' must be"),
    ("estimate: 40-digit gate counts", "GET", "/jobs/estimate", ALICE, None,
     {"backend": "simulator", "1q_gates": "9" * 40, "2q_gates": "1"}, 400, "'1q_gates' must be an integer"),
    ("estimate: 5000-digit shots", "GET", "/jobs/estimate", ALICE, None,
     {"backend": "simulator", "shots": "9" * 5000}, 400, "'shots'"),
    ("estimate: superscript shots", "GET", "/jobs/estimate", ALICE, None, {"backend": "simulator", "shots": "²"},
     400, "'shots'"),
    ("estimate: the largest counts", "GET", "/jobs/estimate", ALICE, None,
     {"backend": "qpu.forte-1", "1q_gates": str(10**12), "2q_gates": str(10**12), "shots": str(10**12)}, 200, ""),
    ("a path escape", "GET", "/jobs/..%2F..%2Fetc", ALICE, None, None, 404, "Not Found"),
    ("a job id that is no UUID", "GET", "/jobs/1%20OR%201=1", ALICE, None, None, 404, "not found"),
    ("a job id of 10,000 characters", "GET", "/jobs/" + "a" * 10_000, ALICE, None, None, 404, "not found"),
    ("an unknown route", "GET", "/nothing", ALICE, None, None, 404, "Not Found"),
    ("an unsupported method", "PATCH", "/jobs", ALICE, None, None, 405, "Method Not Allowed"),
]


def send(api: Api, method: str, path: str, key: str | None, body, params) -> object:
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    return api.call(method, "/v0.4" + path, key, data=data, params=params,
                    headers={"Content-Type": "application/json"})


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_hostile_requests_get_their_expected_status_and_never_a_5xx(served):
    api, pid = served
    seen = []
    for what, method, path, key, body, params, status, text in CASES:
        response = send(api, method, path, key, body, params)
        seen.append((what, response.status_code))
        if status == 200:
            assert response.status_code == 200, (what, response.text)
        else:
            assert_ionq_error(response, status, text)
    assert all(code < 500 for _, code in seen), seen
    # nothing poisoned was stored: every job (and the list of them) still reads back
    listing = api.call("GET", "/v0.4/jobs", params={"limit": 1000})
    assert listing.status_code == 200
    for job in listing.json()["jobs"]:
        assert api.wait(job["id"])["status"] == "completed"
    assert api.wait(api.submit(h_job()))["status"] == "completed"  # alive
    peak = peak_rss_mib(pid)
    print(f"\nhostile table: {len(seen)} requests, statuses {sorted({code for _, code in seen})}, "
          f"server peak RSS {peak:.0f} MiB")
    assert peak < 1024  # a 50,000-deep body, 5000-digit numbers: nothing blew up the memory


def test_another_keys_job_is_invisible_in_every_route(served):
    api, _ = served
    job_id = api.submit(h_job(metadata={"owner": "alice"}))
    api.wait(job_id)
    for method, tail in [("GET", ""), ("GET", "/results/probabilities"), ("GET", "/results/probabilities/aggregated"),
                         ("PUT", "/status/cancel"), ("DELETE", "")]:
        assert_ionq_error(api.call(method, f"/v0.4/jobs/{job_id}{tail}", BOB), 404, "not found")
        assert_ionq_error(api.call(method, f"/v0.3/jobs/{job_id}{tail}", "wrong"), 401, "API key")
    assert job_id not in {job["id"] for job in api.call("GET", "/v0.4/jobs", BOB).json()["jobs"]}
    idempotent = h_job(metadata={"idempotency_key": "shared"})
    assert api.submit(idempotent, key=ALICE) != api.submit(idempotent, key=BOB)  # keys never meet
    assert api.call("GET", f"/v0.4/jobs/{job_id}").json()["status"] == "completed"


def _read_response(sock: socket.socket) -> str:
    """One HTTP response off the socket: its head, then as many body bytes as its content-length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(4096)
    return (head + b"\r\n\r\n" + body).decode()


def test_a_slow_body_gets_408(tmp_path):
    with running_server(make_config(tmp_path, receive_timeout=0.5)) as root:
        host, port = root.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST /v0.4/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: apiKey {ALICE}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"back".encode())
            started = time.monotonic()
            answer = _read_response(sock)
            assert answer.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in answer, answer
            assert 0.4 < time.monotonic() - started < 5
        assert Api(root).wait(Api(root).submit(h_job()))["status"] == "completed"


def test_connections_over_the_limit_get_503_and_silent_ones_are_closed(tmp_path):
    with running_server(make_config(tmp_path, max_connections=2, receive_timeout=0.5)) as root:
        host, port = root.removeprefix("http://").split(":")
        silent = socket.create_connection((host, int(port)), timeout=10)  # sends nothing
        dribbling = socket.create_connection((host, int(port)), timeout=10)  # a request head, a byte at a time
        time.sleep(0.1)
        assert Api(root).call("GET", "/v0.4/backends").status_code == 503  # the third connection
        opened = time.monotonic()
        for byte in b"GET /v0.4/backends HTTP/1.1\r\nHost: x\r\n":
            try:
                dribbling.sendall(bytes([byte]))
            except OSError:  # closed by the server: the head did not arrive in time
                break
            time.sleep(0.05)
        assert dribbling.recv(1) == b"" and silent.recv(1) == b""  # both closed by the server...
        assert time.monotonic() - opened < 5  # ...after about 0.5 s
        silent.close()
        dribbling.close()
        assert Api(root).call("GET", "/v0.4/backends").status_code == 200
