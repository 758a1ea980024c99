"""Strict JSON request bodies and the per-job limits, checked without a server."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from qstore.ionq import job_body
from qstore.ionq.server.limits import COMPILE_CHARGE, JobLimits, LimitError
from qstore.ionq.server.strictjson import MAX_DEPTH, MAX_INT_DIGITS, BodyError, loads_strict

#: JSON values Python's encoder writes as strict JSON (finite floats, integers a float can hold, any text)
strict_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(10**MAX_INT_DIGITS) + 1, 10**MAX_INT_DIGITS - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=30)


def depth(value: object) -> int:
    """Nesting of arrays and objects, by recursion (the reference the vectorised count is checked against)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(strict_values, st.booleans())
def test_strict_json_reads_back_what_python_writes_and_measures_depth(value, ascii_only):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    if depth(value) > MAX_DEPTH:
        with pytest.raises(BodyError, match="deeper|deep exceeds"):
            loads_strict(raw)
    else:
        assert loads_strict(raw) == value


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"a": NaN}', "NaN is not a JSON number"),
    (b'{"a": [1, -Infinity]}', "-Infinity is not a JSON number"),
    (b'{"a": Infinity}', "Infinity is not a JSON number"),
    (b'{"limit": 1e999}', "out of a 64-bit float's range"),
    (b'{"a": 1E+0400}', "out of a 64-bit float's range"),
    (b"[" + b"9" * 400 + b".5]", "out of a 64-bit float's range"),
    (b'{"angle": ' + b"1" + b"0" * 400 + b"}", "401 digits exceeds the limit of 308"),
    (b"1" * 5000, "5000 digits exceeds the limit"),
    (b'{"name": "\\ud800"}', "body['name']: a string holds a lone UTF-16 surrogate"),
    (b'{"metadata": {"\\udc00x": "v"}}', "an object key holds a lone UTF-16 surrogate"),
    (b'["ok", ["\\ude00"]]', "body[1][0]"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"limit of {MAX_DEPTH} levels"),
    (b"[" * 100_000 + b"]" * 100_000, f"limit of {MAX_DEPTH} levels"),  # Python's parser would overflow its stack
    (b'{"a": "]]]]]]", "b": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "33 levels"),  # brackets in strings
    (b'{"a": "\\"]]]", "b": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "33 levels"),  # and escaped quotes
    (b"\xff\xfe", "not valid JSON"),
    (b"{not json", "not valid JSON"),
])
def test_what_strict_json_refuses(raw, message):
    with pytest.raises(BodyError) as error:
        loads_strict(raw)
    assert message in str(error.value)


def test_what_strict_json_accepts():
    assert loads_strict(b"") is None
    assert loads_strict(b'"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one character
    assert loads_strict(b'{"a": 1e-999, "b": 1.5e300}') == {"a": 0.0, "b": 1.5e300}  # underflow is fine
    big = 10**MAX_INT_DIGITS - 1
    assert loads_strict(str(big).encode()) == big and math.isfinite(float(big))
    assert loads_strict(b'{"s": "' + b"9" * 400 + b'"}') == {"s": "9" * 400}  # digits in a string
    nested = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert depth(loads_strict(nested)) == MAX_DEPTH


SMALL = JobLimits(max_qubits=10, max_shots=2000, max_circuits=5, max_gates=8, max_result_entries=4096)


def circuit(gates: int, qubits: int = 2) -> qc.Circuit:
    result = qc.Circuit(qubits)
    for k in range(gates):
        result.h(k % qubits)
    return result


@pytest.mark.parametrize(("body", "message"), [
    (job_body(circuit(1, 11)), "input.qubits = 11 exceeds this server's limit of 10 (max_qubits)"),
    (job_body(circuit(1), shots=2001), "shots = 2001 exceeds"),
    ({**job_body(circuit(1)), "shots": "9" * 5000}, "shots = 1000000000000000000 exceeds"),  # never converted
    (job_body([circuit(1)] * 6), "6 circuits exceed this server's limit of 5 (max_circuits)"),
    (job_body([circuit(1), circuit(9)]), "circuits[1] has 9 gates; this server's limit is 8 per circuit"),
    ({"backend": "simulator", "input": {"qubits": 10, "circuits": [{"circuit": [{"gate": "h", "target": 0}]}] * 5}},
     "the results would hold 5120 probability entries (5 circuit(s) x 1024); this server's limit is 4096"),
    (job_body(circuit(1), metadata={f"k{k}": "v" for k in range(11)}), "metadata has 11 keys; the limit is 10"),
    (job_body(circuit(1), metadata={"k" * 41: "v"}), "has 41 characters; the limit is 40"),
    (job_body(circuit(1), metadata={"k": "v" * 40_001}), "metadata['k'] has 40001 characters; the limit is 40000"),
])
def test_limits_name_what_was_exceeded(body, message):
    with pytest.raises(LimitError) as error:
        SMALL.check(body)
    assert message in str(error.value) and error.value.status == 400


@pytest.mark.parametrize(("qubits", "gates_at_limit"), [(2, 10), (17, 10), (18, 5), (20, 1)])
def test_work_is_gates_times_states_with_the_compile_charge_as_floor(qubits, gates_at_limit):
    limits = JobLimits(max_work=10 * COMPILE_CHARGE)  # 10 gates of up to 17 qubits, 5 of 18, 2.5 of 20
    limits.check(job_body([circuit(1, qubits)] * gates_at_limit))
    with pytest.raises(LimitError, match=r"gate-amplitude updates .* \(max_work\)"):
        limits.check(job_body([circuit(1, qubits)] * (gates_at_limit + 1)))


def test_sampled_jobs_count_at_most_shots_entries_and_malformed_bodies_are_left_to_the_parser():
    wide = {"input": {"qubits": 10, "circuits": [{"circuit": [{"gate": "h", "target": 0}]}] * 5}}
    with pytest.raises(LimitError, match="5 circuit"):
        SMALL.check({"backend": "simulator", **wide})  # 5 x 1024 exact probabilities
    SMALL.check({"backend": "qpu.aria-1", "shots": 100, **wide})  # 5 x 100 sampled outcomes at most
    for malformed in (None, [], {"input": []}, {"input": {"qubits": "3"}}, {"metadata": "x", "input": {}}):
        SMALL.check(malformed)  # no error here: parse_job_body names what is wrong
    with pytest.raises(ValueError, match="max_gates must be an integer >= 1"):
        JobLimits(max_gates=0)
