"""Schemathesis, driven by the server's own ``/v0.4/openapi.json``, against a real server on 127.0.0.1.

Every operation gets schema-conforming (positive) and schema-violating
(negative) requests, derandomized and bounded (:data:`EXAMPLES` each), with
random job ids and with the id of a real completed job. No answer may be a
5xx, every 2xx answer must match the document, and the server must still run
a job afterwards. The counts of requests and statuses are printed (``-s``).
"""

from __future__ import annotations

from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from qstore.ionq import job_body
from qstore.ionq.server import JobLimits, running_server

from .test_app import ALICE, Api, asymmetric, make_config

#: examples per operation, mode and job id source: about 450 requests, seconds on an idle machine
EXAMPLES = 25
#: small limits: schema-conforming jobs are cheap to run
LIMITS = {"max_qubits": 4, "max_gates": 12, "max_circuits": 4, "max_shots": 2000}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(make_config(tmp_path_factory.mktemp("fuzz"), limits=JobLimits(**LIMITS))) as root:
        yield root


def test_the_published_document_is_valid_openapi_with_the_servers_limits(server):
    document = requests.get(f"{server}/v0.4/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.0 meta-schema schemathesis bundles
    operations = {result.ok().label for result in schema.get_all_operations()}
    assert operations == {"POST /jobs", "GET /jobs", "GET /jobs/estimate", "GET /jobs/{job_id}",
                          "DELETE /jobs/{job_id}", "PUT /jobs/{job_id}/status/cancel",
                          "GET /jobs/{job_id}/results/probabilities",
                          "GET /jobs/{job_id}/results/probabilities/aggregated",
                          "GET /jobs/{job_id}/results/histogram", "GET /backends",
                          "GET /backends/{name}"}
    inputs = document["components"]["schemas"]["Input"]["oneOf"]
    assert {variant["properties"]["qubits"]["maximum"] for variant in inputs} == {LIMITS["max_qubits"]}
    gates = {name for variant in document["components"]["schemas"]["Gate"]["oneOf"]
             for name in variant["properties"]["gate"]["enum"]}
    assert {"h", "not", "cnot", "rx", "gpi2", "ms", "zz"} <= gates


def test_fuzzing_finds_no_server_error_and_every_2xx_matches_the_document(server):
    api = Api(server)
    real_job = api.wait(api.submit(job_body([asymmetric(), asymmetric()])))["id"]
    schema = schemathesis.openapi.from_url(f"{server}/v0.4/openapi.json")
    session = requests.Session()
    base_url = f"{server}/v0.4"
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    def exercise(operation, mode: GenerationMode, path_parameters: dict | None) -> None:
        strategy = operation.as_strategy(mode, headers={"Authorization": f"apiKey {ALICE}"},
                                         path_parameters=path_parameters)

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(case) -> None:
            response = case.call(base_url=base_url, session=session, timeout=30)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{response.status_code} from {case.as_curl_command()}: {response.text[:300]}")
            elif response.status_code < 300 and mode is GenerationMode.POSITIVE:
                operation.validate_response(response)

        try:
            run()
        except Unsatisfiable:  # no way to break the schema of an operation without parameters
            assert mode is GenerationMode.NEGATIVE

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):  # the real job goes last
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(operation, mode, None)
            if "{job_id}" in operation.path and mode is GenerationMode.POSITIVE:
                exercise(operation, mode, {"job_id": real_job})
    sent = sum(statuses.values())
    print(f"\nfuzzing: {sent} requests, statuses {dict(sorted(statuses.items()))}")
    assert not failures, failures[:5]
    assert sent >= 300 and statuses[200] and statuses[400] and statuses[404]
    assert api.wait(api.submit(job_body(asymmetric())))["status"] == "completed"  # still serving
