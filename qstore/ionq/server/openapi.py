"""The OpenAPI 3 document the local server publishes at ``GET /v0.4/openapi.json``.

Written by hand from IonQ's v0.4 request and response shapes (see
``docs/guides/ionq.md``) for the routes this server implements, with this
server's limits (qubits, shots, circuits, gates, metadata) as the schema's
bounds. It drives the fuzzing tests (schemathesis) and tells a client what
the server accepts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..noise import MAX_NOISE_SEED, UNAVAILABLE_MODELS, known_noise_models
from ..wire import BY_WIRE_NAME, GATESETS, MULTI_CIRCUIT, NAME_ALIASES, READINGS, SINGLE_CIRCUIT
from .jobstore import PENDING, TERMINAL
from .limits import ESTIMATE_MAXIMA, METADATA_KEY_CHARS, METADATA_KEYS, METADATA_VALUE_CHARS

if TYPE_CHECKING:
    from .app import ServerConfig

_INT = {"type": "integer"}
_STR = {"type": "string"}
_NUMBER = {"type": "number"}
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _gate(gateset: str, name: str, qubit: dict[str, Any]) -> dict[str, Any]:
    """The schema of one gate entry of the wire table: its qubit fields and parameter fields, nothing else."""
    spec = BY_WIRE_NAME[gateset, name]
    reading = READINGS[spec.name]
    names = [name, *(alias for (other, alias), wire in NAME_ALIASES.items() if other == gateset and wire == name)]
    properties: dict[str, Any] = {"gate": {"type": "string", "enum": names}}
    required = ["gate"]
    if reading.controls:
        properties["control"] = qubit
        required.append("control")
    targets = spec.num_qubits - reading.controls
    field = "target" if targets == 1 else "targets"
    properties[field] = qubit if targets == 1 else {"type": "array", "items": qubit, "minItems": targets,
                                                   "maxItems": targets}
    required.append(field)
    for parameter, _, default in reading.params:
        width = parameter.width
        properties[parameter.name] = (_NUMBER if width == 1 else
                                      {"type": "array", "items": _NUMBER, "minItems": width, "maxItems": width})
        if default is None and parameter.name not in required:
            required.append(parameter.name)
    return {"type": "object", "description": f"{spec.unit or 'no parameters'} ({gateset} gate set)",
            "required": required, "properties": properties, "additionalProperties": False}


def _schemas(config: ServerConfig) -> dict[str, Any]:
    limits = config.limits
    qubit = {"type": "integer", "minimum": 0, "maximum": limits.max_qubits - 1}
    gate = {"oneOf": [_gate(gateset, name, qubit) for gateset, name in sorted(BY_WIRE_NAME)]}
    gate_list = {"type": "array", "items": _ref("Gate"), "maxItems": limits.max_gates}
    metadata = {"type": "object", "maxProperties": METADATA_KEYS,  # OpenAPI 3.0 has no propertyNames: said in words
                "description": f"keys up to {METADATA_KEY_CHARS} characters; echoed back verbatim",
                "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_CHARS}}
    status = {"type": "string", "enum": [*PENDING, *TERMINAL]}
    shared_input = {"qubits": {"type": "integer", "minimum": 1, "maximum": limits.max_qubits},
                    "gateset": {"type": "string", "enum": list(GATESETS)},
                    "format": {"type": "string", "enum": ["ionq.circuit.v0"]}}
    nullable_time = {"type": "string", "nullable": True}
    return {
        "Error": {"type": "object", "required": ["error", "message", "statusCode"],
                  "properties": {"error": _STR, "message": _STR, "statusCode": _INT}},
        "Gate": gate,
        "Input": {"oneOf": [
            {"type": "object", "required": ["qubits", "circuit"], "additionalProperties": False,
             "properties": {**shared_input, "circuit": gate_list}},
            {"type": "object", "required": ["qubits", "circuits"], "additionalProperties": False,
             "properties": {**shared_input, "circuits": {
                 "type": "array", "minItems": 1, "maxItems": limits.max_circuits, "items": {
                     "type": "object", "required": ["circuit"], "additionalProperties": False,
                     "properties": {"name": _STR, "circuit": gate_list}}}}}]},
        "JobCreate": {"type": "object", "required": ["backend", "input"], "properties": {
            "type": {"type": "string", "enum": [SINGLE_CIRCUIT, MULTI_CIRCUIT]},
            "backend": {"type": "string", "enum": ["simulator", "qpu.aria-1", "qpu.aria-2", "qpu.forte-1",
                                                   "qpu.forte-enterprise-1"]},
            "shots": {"type": "integer", "minimum": 1, "maximum": limits.max_shots},
            "name": _STR, "input": _ref("Input"), "metadata": metadata,
            "noise": {"type": "object", "description": (
                "simulator only: 'ideal' (no noise) or the depolarizing model of an IonQ QPU, run as one trajectory "
                "per shot on at most that QPU's qubits (25 Aria, 29 Forte); results are frequencies count / shots. "
                f"{', '.join(f'{name!r}: {why}' for name, why in UNAVAILABLE_MODELS.items())}: refused (400)"),
                "properties": {"model": {"type": "string", "enum": list(known_noise_models())},
                               "seed": {"type": "integer", "nullable": True, "minimum": 0,
                                        "maximum": MAX_NOISE_SEED}}},
            "settings": {"type": "object"}, "session_id": {"type": "string", "nullable": True},
            "dry_run": {"type": "boolean"}}},
        "JobCreated": {"type": "object", "required": ["id", "status"], "properties": {
            "id": _STR, "status": status, "session_id": {"type": "string", "nullable": True}}},
        "Job": {"type": "object", "required": ["id", "status", "type", "backend", "stats", "metadata"], "properties": {
            "id": _STR, "type": _STR, "name": {"type": "string", "nullable": True}, "status": status,
            "backend": _STR, "shots": _INT, "metadata": {"type": "object"},
            "noise": {"type": "object", "nullable": True, "description": (
                "a simulator job's model and the seed its shots were drawn with; else as submitted"),
                "properties": {"model": _STR, "seed": {"type": "integer", "nullable": True}}},
            "settings": {"type": "object", "nullable": True},
            "session_id": {"type": "string", "nullable": True}, "dry_run": {"type": "boolean"},
            "stats": {"type": "object", "required": ["qubits", "circuits", "gate_counts"], "properties": {
                "qubits": _INT, "circuits": _INT,
                "gate_counts": {"type": "object", "properties": {"1q": _INT, "2q": _INT}}}},
            "submitted_at": _STR, "started_at": nullable_time, "completed_at": nullable_time,
            "parent_job_id": _STR, "child_job_ids": {"type": "array", "items": _STR},
            "results": {"type": "object", "properties": {
                "probabilities": {"type": "object", "properties": {"url": _STR}},
                "histogram": {"type": "object", "properties": {"url": _STR}}}},
            "execution_duration_ms": _INT,
            "failure": {"type": "object", "properties": {"code": _STR, "error": _STR}},
            "warning": {"type": "object", "properties": {"messages": {"type": "array", "items": _STR}}}}},
        "JobList": {"type": "object", "required": ["jobs"], "properties": {
            "jobs": {"type": "array", "items": _ref("Job")}, "next": _STR}},
        "JobStatus": {"type": "object", "required": ["id", "status"], "properties": {"id": _STR, "status": _STR}},
        "Probabilities": {"type": "object", "description": "basis-state index (decimal string) -> probability",
                          "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
        "Histogram": {"type": "object", "description": "basis-state index (decimal string) -> shots",
                      "additionalProperties": {"type": "integer", "minimum": 1}},
        "AggregatedProbabilities": {"type": "object", "description": "child job id -> its probabilities",
                                    "additionalProperties": _ref("Probabilities")},
        "Estimate": {"type": "object", "required": ["estimated_cost", "cost_unit", "input_values"], "properties": {
            "estimated_cost": _NUMBER, "cost_unit": _STR, "input_values": {"type": "object"},
            "estimated_at": _STR}},
        "Backend": {"type": "object", "required": ["backend", "qubits", "status"], "properties": {
            "backend": _STR, "status": _STR, "qubits": _INT, "average_queue_time": _NUMBER,
            "last_updated": _STR, "has_access": {"type": "boolean"}, "degraded": {"type": "boolean"}}},
    }


def _operation(summary: str, response: dict[str, Any], *, key: bool = True, body: str | None = None,
               parameters: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": response, "default": _json(_ref("Error"), "an error, in IonQ's shape")},
    }
    if parameters:
        operation["parameters"] = list(parameters)
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if not key:
        operation["security"] = []
    return operation


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


def openapi_document(config: ServerConfig) -> dict[str, Any]:
    """The server's OpenAPI 3.0 document (paths relative to ``/v0.4``), with ``config``'s limits as bounds."""
    job_id = (_JOB_ID,)
    job = _json(_ref("Job"), "the job")
    return {
        "openapi": "3.0.3",
        "info": {"title": "qstore local IonQ-compatible server", "version": "0.4",
                 "description": "The subset of IonQ's v0.4 job API this server implements. Send "
                                "'Authorization: apiKey <key>'. Errors: {error, message, statusCode}."},
        "servers": [{"url": "/v0.4"}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                                           "description": "the literal 'apiKey ', then the key"}},
            "schemas": _schemas(config),
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/jobs": {
                "post": _operation("create a job", _json(_ref("JobCreated"), "the job was stored"), body="JobCreate"),
                "get": _operation("list the caller's jobs, newest first", _json(_ref("JobList"), "a page"),
                                  parameters=(_query("status", {"type": "string", "enum": [*PENDING, *TERMINAL]}),
                                              _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                                              _query("next", {"type": "string", "pattern": "^[0-9]{1,18}$"}))),
            },
            "/jobs/estimate": {"get": _operation(
                "price of a job from its gate counts", _json(_ref("Estimate"), "the estimate"),
                parameters=({**_query("backend", {"type": "string", "enum": sorted(config.pricing.backends)}),
                             "required": True},
                            *(_query(name, {"type": "integer", "minimum": 0, "maximum": maximum})
                              for name, maximum in ESTIMATE_MAXIMA.items()),
                            _query("error_mitigation", {"type": "boolean"}), _query("session", {"type": "boolean"}),
                            _query("type", {"type": "string", "enum": [SINGLE_CIRCUIT, MULTI_CIRCUIT]})))},
            "/jobs/{job_id}": {
                "get": _operation("a job's status and details", job, parameters=job_id),
                "delete": _operation("delete a job", _json(_ref("JobStatus"), "deleted"), parameters=job_id),
            },
            "/jobs/{job_id}/status/cancel": {"put": _operation(
                "cancel a job", _json(_ref("JobStatus"), "its status afterwards"), parameters=job_id)},
            "/jobs/{job_id}/results/probabilities": {"get": _operation(
                "one circuit's probabilities", _json(_ref("Probabilities"), "the results"), parameters=job_id)},
            "/jobs/{job_id}/results/probabilities/aggregated": {"get": _operation(
                "a multi-circuit job's probabilities per child job",
                _json(_ref("AggregatedProbabilities"), "the results"), parameters=job_id)},
            "/jobs/{job_id}/results/histogram": {"get": _operation(
                "a sampled circuit's shot counts (noise model or QPU)", _json(_ref("Histogram"), "the counts"),
                parameters=job_id)},
            "/backends": {"get": _operation("the backends", _json({"type": "array", "items": _ref("Backend")},
                                                                   "every backend"), key=False)},
            "/backends/{name}": {"get": _operation(
                "one backend", _json(_ref("Backend"), "the backend"), key=False,
                parameters=({"name": "name", "in": "path", "required": True, "schema": _STR},))},
        },
    }


__all__ = ["openapi_document"]
