"""Back-pressure, fairness, cancellation, crash loops, re-validation, retention and the catch-all 500."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sqlite3
import time
import uuid

import numpy as np
import pytest

import qsim_core as qc
from qstore.cli.serve import duration, main
from qstore.ionq import job_body, probabilities_from_ionq
from qstore.ionq.server import JobLimits, running_server
from qstore.ionq.server.jobstore import JobStore
from qstore.ionq.server.latency import LatencyProfile

from .test_app import ALICE, BOB, SLOW, Api, assert_ionq_error, make_config


def seconds_per_job(seconds: float) -> LatencyProfile:
    """Every job spends exactly ``seconds`` "simulating" (and nothing else is delayed)."""
    return LatencyProfile(seconds, seconds, {"network": 0.0, "queue": 0.0, "serialization": 0.0, "simulation": 1.0})


def small() -> dict:
    return job_body(qc.Circuit(2).h(0).cnot(0, 1))


def owner(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_a_key_over_its_quota_gets_429_with_retry_after_and_other_keys_do_not(tmp_path):
    with running_server(make_config(tmp_path, profile=SLOW, workers=1, max_queued_per_key=2)) as root:
        api = Api(root)
        first, _ = api.submit(small()), api.submit(small())
        refused = api.call("POST", "/v0.4/jobs", json=small())
        assert_ionq_error(refused, 429, "(max_queued_per_key)")
        assert refused.headers["Retry-After"] == "1"
        api.submit(small(), key=BOB)  # BOB's quota is his own
        api.call("PUT", f"/v0.4/jobs/{first}/status/cancel")
        api.submit(small())  # a canceled job no longer counts


def test_one_keys_burst_does_not_starve_another_key(tmp_path):
    """Round-robin: BOB's job, queued behind ten of ALICE's, runs after at most one more of hers."""
    with running_server(make_config(tmp_path, profile=seconds_per_job(0.15), workers=1)) as root:
        api = Api(root)
        flood = [api.submit(small()) for _ in range(10)]
        api.wait_for_status(flood[0], "started")
        bob = api.submit(small(), key=BOB)
        answer_times = []
        for _ in range(10):  # BOB's requests stay fast while ALICE's jobs are queued and running
            started = time.monotonic()
            assert api.call("GET", f"/v0.4/jobs/{bob}", BOB).status_code == 200
            answer_times.append(time.monotonic() - started)
        assert max(answer_times) < 0.5, answer_times
        done = api.wait(bob, key=BOB)["completed_at"]
        finished = [api.wait(job_id)["completed_at"] for job_id in flood]
        assert sum(when < done for when in finished) <= 3, (finished, done)  # FIFO would be all 10


def written(tmp_path, job_id: str) -> int:
    """How many of a multi-circuit job's results are in the store."""
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        return db.execute("SELECT COUNT(result) FROM jobs WHERE parent = ?", (job_id,)).fetchone()[0]


def test_a_running_job_stops_between_circuits_when_canceled(tmp_path):
    """100 circuits of 16 qubits take seconds to write; a cancel stops them at the next circuit."""
    circuits = [qc.Circuit(16).h(k % 16).ry(0, 0.1 * k) for k in range(100)]
    with running_server(make_config(tmp_path, workers=1, limits=JobLimits(max_qubits=16))) as root:
        api = Api(root)
        long = api.submit(job_body(circuits))
        deadline = time.monotonic() + 30
        while not written(tmp_path, long):  # results reach the store while the job runs
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert api.call("PUT", f"/v0.4/jobs/{long}/status/cancel").json()["status"] == "canceled"
        canceled_at = time.monotonic()
        assert api.wait(api.submit(small()))["status"] == "completed"  # the worker is free again
        assert time.monotonic() - canceled_at < 5
    assert written(tmp_path, long) < 100  # stopped part way


def stored_job(store: JobStore, body: dict | bytes, key: str = ALICE) -> str:
    summary = {"type": "ionq.circuit.v1", "name": None, "backend": "simulator", "shots": 1, "noise": None,
               "settings": None, "metadata": {}, "session_id": None,
               "stats": {"qubits": 2, "circuits": 1, "gate_counts": {"1q": 1, "2q": 1}}}
    job_id = str(uuid.uuid4())
    store.create(owner(key), job_id, summary, body if isinstance(body, bytes) else json.dumps(body).encode(), None)
    return job_id


def test_a_job_that_keeps_killing_the_server_fails_after_max_attempts(tmp_path):
    config = make_config(tmp_path, max_attempts=3)
    store = JobStore(config.db)
    crashing, resumed = stored_job(store, small()), stored_job(store, small())
    for job_id, attempts in ((crashing, 3), (resumed, 2)):  # as if the server died while running them
        store.claim(job_id)
        store._db.execute("UPDATE jobs SET attempts = ? WHERE id = ?", (attempts, job_id))
        store._db.commit()
    store.close()
    with running_server(config) as root:
        api = Api(root)
        failed = api.wait(crashing)
        assert failed["status"] == "failed" and failed["failure"]["code"] == "InternalError"
        assert "stopped while running this job 3 times" in failed["failure"]["error"]
        assert api.wait(resumed)["status"] == "completed"


def test_recovered_jobs_are_checked_against_the_limits_of_the_new_server(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    wide = stored_job(store, job_body(qc.Circuit(9).h(8)))
    poisoned = stored_job(store, b'{"backend": "simulator", "name": NaN, "input": {"qubits": 1, "circuit": []}}')
    store.close()
    with running_server(make_config(tmp_path, limits=JobLimits(max_qubits=8))) as root:
        api = Api(root)
        job = api.wait(wide)
        assert job["status"] == "failed" and job["failure"]["code"] == "CircuitTooLarge"
        assert "(max_qubits)" in job["failure"]["error"]
        job = api.wait(poisoned)
        assert job["status"] == "failed" and "NaN" in job["failure"]["error"]


def test_a_database_without_the_attempts_column_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the first schema, before attempts were counted
        db.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, owner TEXT "
                   "NOT NULL, parent TEXT, position INTEGER, status TEXT NOT NULL, summary TEXT NOT NULL, request "
                   "BLOB, idempotency_key TEXT, result TEXT, failure TEXT, warnings TEXT, execution_ms INTEGER, "
                   "submitted_at REAL NOT NULL, started_at REAL, completed_at REAL)")
        db.execute("INSERT INTO jobs (id, owner, status, summary, request, submitted_at) VALUES "
                   "('j', 'o', 'started', '{}', '{}', 0)")
    store = JobStore(path)
    assert store.recover() == [("j", "o")]
    assert store.claim("j").attempt == 1
    store.close()


def test_retention_deletes_finished_jobs_and_keeps_unfinished_ones(tmp_path):
    with running_server(make_config(tmp_path, profile=SLOW, workers=1, retain=0.3)) as root:
        api = Api(root)
        done = api.submit(small())
        running = api.submit(small())
        api.wait_for_status(done, "started")
        api.call("PUT", f"/v0.4/jobs/{done}/status/cancel")
        deadline = time.monotonic() + 10
        while api.call("GET", f"/v0.4/jobs/{done}").status_code != 404:
            assert time.monotonic() < deadline, "the finished job was never deleted"
            time.sleep(0.05)
        assert api.call("GET", f"/v0.4/jobs/{running}").json()["status"] in ("ready", "started")
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE id = ?", (done,)).fetchone()[0] == 0


def test_an_unexpected_error_is_a_logged_500_with_a_request_id(tmp_path, caplog):
    store = JobStore(tmp_path / "jobs.sqlite")
    broken = stored_job(store, small())
    store._db.execute("UPDATE jobs SET summary = '{' WHERE id = ?", (broken,))  # what no request can write
    store._db.commit()
    store.close()
    with caplog.at_level(logging.ERROR, logger="qstore.ionq.server"), \
            running_server(make_config(tmp_path, profile=SLOW)) as root:
        api = Api(root)
        response = api.call("GET", f"/v0.4/jobs/{broken}")
        assert_ionq_error(response, 500, "request id")
        request_id = response.json()["request_id"]
        assert response.headers["X-Request-Id"] == request_id and request_id in response.json()["message"]
        assert api.call("GET", "/v0.4/backends").status_code == 200
    assert any(request_id in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("field", ["max_queued_per_key", "max_attempts", "workers", "max_connections"])
def test_config_refuses_nonsense(tmp_path, field):
    with pytest.raises(ValueError, match=field):
        make_config(tmp_path, **{field: 0})


def test_large_aggregated_results_are_streamed_and_exact(tmp_path):
    """2 x 2**16 entries: over the in-one-piece size, so streamed a circuit at a time (v0.4 and v0.3 routes)."""
    circuits = [qc.Circuit(16).ry(0, 0.3).h(5), qc.Circuit(16).x(15).ry(3, 1.1)]
    with running_server(make_config(tmp_path, limits=JobLimits(max_qubits=16))) as root:
        api = Api(root)
        job = api.wait(api.submit(job_body(circuits)))
        for url in (job["results"]["probabilities"]["url"], f"/v0.3/jobs/{job['id']}/results"):
            response = api.call("GET", url)
            assert response.headers.get("transfer-encoding") == "chunked"  # no Content-Length: streamed
            aggregated = response.json()
            assert list(aggregated) == job["child_job_ids"]
            for child, circuit in zip(job["child_job_ids"], circuits, strict=True):
                got = probabilities_from_ionq(aggregated[child], 16)
                np.testing.assert_allclose(got, qc.Simulator(seed=0).probabilities(circuit), atol=1e-12)


def test_serve_reads_durations_and_refuses_bad_limits(tmp_path, capsys):
    assert [duration(text) for text in ("90", "90s", "1.5m", "12h", "7d")] == [90, 90, 90, 43_200, 604_800]
    for bad in ("0", "-1h", "7 weeks", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="positive duration"):
            duration(bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["--api-keys-file", str(tmp_path / "missing"), "--max-gates", "0"])
    assert exit_info.value.code == 2 and "max_gates must be an integer >= 1" in capsys.readouterr().err
