"""Circuit <-> IonQ JSON: round trips over the whole gate table, every client's field variants, errors, results."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from qstore.ionq import (
    IonQFormatError,
    bind_batch,
    counts_from_ionq,
    from_ionq_json,
    job_body,
    parse_input,
    parse_job_body,
    probabilities_from_ionq,
    probabilities_to_ionq,
    to_ionq_json,
    to_ionq_multi_json,
)
from tests.strategies import circuits


def bound(circuit: qc.Circuit, theta: np.ndarray) -> list[qc.Operation]:
    """The circuit's operations with every parameter reference replaced by its value."""
    return [qc.Operation(op.name, op.qubits, tuple(p.resolve(theta) if qc.circuit.is_symbolic(p) else p
                                                   for p in op.params)) for op in circuit]


def split_by_gateset(circuit: qc.Circuit) -> dict[str, qc.Circuit]:
    """The circuit's QIS and native operations as two circuits of the same width."""
    parts = {gateset: qc.Circuit(circuit.num_qubits) for gateset in ("qis", "native")}
    for op in circuit:
        parts[op.gate.gateset].append(op.name, op.qubits, op.params)
    return parts


def over_the_wire(block: dict) -> dict:
    """What the other side parses: the block through JSON text."""
    return json.loads(json.dumps(block))


@settings(max_examples=60)
@given(circuit=circuits(max_qubits=5, max_ops=25), seed=st.integers(0, 2**32 - 1))
def test_round_trip_is_exact_for_both_gatesets(circuit, seed):
    theta = np.random.default_rng(seed).uniform(-7, 7, circuit.num_params)
    for gateset, part in split_by_gateset(circuit).items():
        params = theta if part.num_params else None
        back = from_ionq_json(over_the_wire(to_ionq_json(part, gateset, params=params)))
        assert back.num_qubits == part.num_qubits
        assert list(back) == bound(part, theta)


@settings(max_examples=25)
@given(circuit=circuits(max_qubits=4, max_ops=15), seed=st.integers(0, 2**32 - 1))
def test_a_qis_circuit_is_sent_as_native_after_to_native(circuit, seed):
    theta = np.random.default_rng(seed).uniform(-3, 3, circuit.num_params)
    native = qc.to_native(circuit, "forte" if seed % 2 else "aria")
    params = theta if native.num_params else None
    back = from_ionq_json(over_the_wire(to_ionq_json(native, "native", params=params)))
    assert list(back) == bound(native, theta)
    sim = qc.Simulator(backend="reference")
    expected = sim.probabilities(circuit, theta if circuit.num_params else None)
    np.testing.assert_allclose(sim.probabilities(back), expected, atol=1e-10)


def test_every_gate_of_the_table_has_one_wire_form():
    seen = set()
    for spec in qc.GATES.values():
        circuit = qc.Circuit(2).append(spec.name, range(spec.num_qubits), [0.125] * spec.num_params)
        (entry,) = to_ionq_json(circuit, spec.gateset)["circuit"]
        assert entry["gate"] == spec.ionq_name
        key = (spec.gateset, json.dumps(entry, sort_keys=True))
        assert key not in seen
        seen.add(key)
    assert len(seen) == len(qc.GATES)


def test_units_and_field_names_follow_the_table():
    qis = to_ionq_json(qc.Circuit(2).rx(0, 0.5).zz(0, 1, 0.25), "qis")["circuit"]
    assert qis == [{"gate": "rx", "target": 0, "rotation": 0.5}, {"gate": "zz", "targets": [0, 1], "rotation": 0.25}]
    native = qc.Circuit(2).gpi(0, 0.1).gpi2(1, 0.2).ms(0, 1, 0.3, 0.4, 0.2).native_zz(1, 0, 0.05)
    assert to_ionq_json(native, "native")["circuit"] == [
        {"gate": "gpi", "target": 0, "phase": 0.1},
        {"gate": "gpi2", "target": 1, "phase": 0.2},
        {"gate": "ms", "targets": [0, 1], "phases": [0.3, 0.4], "angle": 0.2},
        {"gate": "zz", "targets": [1, 0], "angle": 0.05},
    ]


@pytest.mark.parametrize(("entry", "gateset", "expected"), [
    ({"gate": "h", "target": 1}, "qis", ("h", (1,), ())),
    ({"gate": "h", "targets": [1]}, "qis", ("h", (1,), ())),  # qiskit, cirq
    ({"gate": "not", "target": 0}, "qis", ("x", (0,), ())),
    ({"gate": "cnot", "control": 0, "target": 1}, "qis", ("cnot", (0, 1), ())),  # cirq, pennylane, docs
    ({"gate": "cnot", "controls": [1], "targets": [0]}, "qis", ("cnot", (1, 0), ())),
    ({"gate": "x", "controls": [2], "targets": [0]}, "qis", ("cnot", (2, 0), ())),  # qiskit's cx
    ({"gate": "x", "control": 2, "target": 0}, "qis", ("cnot", (2, 0), ())),
    ({"gate": "ry", "targets": [2], "rotation": 1}, "qis", ("ry", (2,), (1.0,))),  # an integer angle
    ({"gate": "swap", "targets": [2, 0]}, "qis", ("swap", (2, 0), ())),
    ({"gate": "yy", "targets": [0, 1], "rotation": -0.5}, "qis", ("yy", (0, 1), (-0.5,))),
    ({"gate": "zz", "targets": [0, 1], "rotation": 0.5}, "qis", ("zz", (0, 1), (0.5,))),  # radians in qis
    ({"gate": "zz", "targets": [0, 1], "angle": 0.125}, "native", ("native_zz", (0, 1), (0.125,))),  # qiskit, docs
    ({"gate": "zz", "targets": [0, 1], "phase": 0.125}, "native", ("native_zz", (0, 1), (0.125,))),  # cirq
    ({"gate": "ms", "targets": [1, 2], "phases": [0.1, 0.2]}, "native", ("ms", (1, 2), (0.1, 0.2, 0.25))),
    ({"gate": "gpi2", "target": 0, "phase": 0}, "native", ("gpi2", (0,), (0.0,))),
])
def test_field_variants_of_the_official_clients_and_docs(entry, gateset, expected):
    circuit = from_ionq_json({"gateset": gateset, "qubits": 3, "circuit": [entry]})
    assert list(circuit) == [qc.Operation(*expected)]


def test_v03_format_and_default_gateset_are_accepted():
    block = {"format": "ionq.circuit.v0", "qubits": 1, "circuit": [{"gate": "h", "target": 0}]}
    assert list(from_ionq_json(block)) == [qc.Operation("h", (0,), ())]


@pytest.mark.parametrize(("entry", "gateset", "message"), [
    ({"gate": "cx", "control": 0, "target": 1}, "qis", "unknown gate 'cx'"),
    ({"gate": "gpi", "target": 0, "phase": 0.1}, "qis", "belongs to gateset 'native'"),
    ({"gate": "rx", "target": 0, "rotation": 0.1}, "native", "belongs to gateset 'qis'"),
    ({"gate": 7, "target": 0}, "qis", "'gate' must be a gate name"),
    ({"gate": "h"}, "qis", "takes 0 control and 1 target"),
    ({"gate": "h", "target": 0, "targets": [0]}, "qis", "not both"),
    ({"gate": "h", "targets": [0, 1]}, "qis", "takes 0 control and 1 target"),
    ({"gate": "cnot", "targets": [0, 1]}, "qis", "takes 1 control and 1 target"),
    ({"gate": "z", "controls": [0], "targets": [1]}, "qis", "'z' with 1 control(s) is not supported"),
    ({"gate": "x", "controls": [0, 1], "targets": [2]}, "qis", "'x' with 2 control(s) is not supported"),
    ({"gate": "swap", "targets": [0, 0]}, "qis", "repeated qubit"),
    ({"gate": "h", "target": 5}, "qis", "out of range"),
    ({"gate": "h", "target": -1}, "qis", "integers >= 0"),
    ({"gate": "h", "target": 1.0}, "qis", "integers >= 0"),
    ({"gate": "h", "target": True}, "qis", "integers >= 0"),
    ({"gate": "rx", "target": 0}, "qis", "needs 'rotation' in radians"),
    ({"gate": "rx", "target": 0, "phase": 0.25}, "qis", "needs 'rotation' in radians"),  # turns on a QIS gate
    ({"gate": "rx", "target": 0, "rotation": 0.2, "phase": 0.25}, "qis", "unexpected field(s) ['phase']"),
    ({"gate": "gpi", "target": 0, "rotation": 3.1}, "native", "needs 'phase' in turns"),  # radians on a native gate
    ({"gate": "h", "target": 0, "rotation": 0.1}, "qis", "unexpected field(s) ['rotation']"),
    ({"gate": "rx", "target": 0, "rotation": "0.1"}, "qis", "must be a number"),
    ({"gate": "rx", "target": 0, "rotation": float("nan")}, "qis", "must be finite"),
    ({"gate": "rx", "target": 0, "rotation": float("inf")}, "qis", "must be finite"),
    ({"gate": "ms", "targets": [0, 1], "phases": [0.1]}, "native", "list of 2 numbers"),
    ({"gate": "ms", "targets": [0, 1], "phases": [0.1, float("-inf")]}, "native", "must be finite"),
    ({"gate": "zz", "targets": [0, 1], "angle": 0.1, "phase": 0.1}, "native", "not both"),
    ("h", "qis", "must be an object"),
])
def test_malformed_entries_raise_a_clear_error_naming_the_entry(entry, gateset, message):
    valid = {"qis": {"gate": "h", "target": 0}, "native": {"gate": "gpi", "target": 0, "phase": 0}}[gateset]
    block = {"gateset": gateset, "qubits": 3, "circuit": [valid, entry]}
    with pytest.raises(IonQFormatError, match=r"circuit\[1\]") as error:
        from_ionq_json(block)
    assert message in str(error.value)
    assert isinstance(error.value, ValueError)


def test_non_finite_numbers_in_json_text_are_rejected():
    text = '{"qubits": 1, "circuit": [{"gate": "rz", "target": 0, "rotation": NaN}]}'
    with pytest.raises(IonQFormatError, match="finite"):
        from_ionq_json(json.loads(text))


@pytest.mark.parametrize(("block", "message"), [
    ({"qubits": 0, "circuit": []}, "'qubits' must be an integer >= 1"),
    ({"qubits": "2", "circuit": []}, "'qubits' must be an integer >= 1"),
    ({"qubits": 2, "gateset": "QIS", "circuit": []}, "'gateset' must be one of"),
    ({"qubits": 2}, "exactly one of 'circuit'"),
    ({"qubits": 2, "circuit": {}}, "must be a list of gate entries"),
    ({"qubits": 2, "format": "openqasm", "circuit": []}, "not supported"),
    ({"qubits": 2, "circuits": [{"circuit": []}]}, "use parse_input"),
    ([], "'input' must be an object"),
])
def test_malformed_input_blocks(block, message):
    with pytest.raises(IonQFormatError, match=message):
        from_ionq_json(block)


def test_parametrised_circuits_bind_or_refuse():
    circuit = qc.Circuit(2).ry(0, qc.Param(0, 2.0, 0.5)).rz(1, qc.Param(0) + qc.Param(1, -1.0))
    with pytest.raises(IonQFormatError, match=r"operation 0 \(ry.*unbound parameter"):
        to_ionq_json(circuit)
    gates = to_ionq_json(circuit, params=[0.25, 1.0])["circuit"]
    assert [g["rotation"] for g in gates] == [1.0, -0.75]
    with pytest.raises(IonQFormatError, match="at least 2 values"):
        to_ionq_json(circuit, params=[0.25])
    with pytest.raises(IonQFormatError, match="non-finite"):
        to_ionq_json(circuit, params=[0.25, np.nan])


def test_gateset_mismatch_on_serialization_points_to_to_native():
    with pytest.raises(IonQFormatError, match="to_native"):
        to_ionq_json(qc.Circuit(1).h(0), "native")
    with pytest.raises(IonQFormatError, match="is a 'native' gate"):
        to_ionq_json(qc.Circuit(1).gpi(0, 0.1), "qis")
    with pytest.raises(IonQFormatError, match="gateset must be one of"):
        to_ionq_json(qc.Circuit(1), "QIS")


def test_multi_circuit_input_round_trips_with_names_and_a_parameter_batch():
    circuit = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1)
    theta = np.array([[0.1], [0.2], [0.3]])
    block = over_the_wire(to_ionq_multi_json(circuit, params=theta, names=["a", None, "c"]))
    assert block["qubits"] == 2 and [c.get("name") for c in block["circuits"]] == ["a", None, "c"]
    parsed = parse_input(block)
    assert [name for name, _ in parsed] == ["a", None, "c"]
    for (_, back), row in zip(parsed, theta, strict=True):
        assert list(back) == bound(circuit, row)
    wide = to_ionq_multi_json([qc.Circuit(1).h(0), qc.Circuit(3).x(2)])
    assert wide["qubits"] == 3
    per_circuit_gateset = {"gateset": "qis", "qubits": 1, "circuits": [
        {"circuit": [{"gate": "h", "target": 0}]},
        {"gateset": "native", "circuit": [{"gate": "gpi", "target": 0, "phase": 0.5}]},
    ]}
    assert [op.name for _, c in parse_input(per_circuit_gateset) for op in c] == ["h", "gpi"]


def test_job_bodies_in_both_api_versions():
    bell = qc.Circuit(2).h(0).cnot(0, 1)
    body = job_body(bell, shots=500, name="bell", metadata={"fizz": "buzz"}, noise={"model": "ideal", "seed": None})
    assert body["type"] == "ionq.circuit.v1" and body["backend"] == "simulator" and body["shots"] == 500
    request = parse_job_body(over_the_wire(body))
    assert (request.api_version, request.multi, request.shots, request.name) == ("v0.4", False, 500, "bell")
    assert request.metadata == {"fizz": "buzz"} and request.noise == {"model": "ideal", "seed": None}
    assert list(request.circuits[0][1]) == list(bell)

    multi = job_body([bell, bell], backend="qpu.aria-1", api_version="v0.3")
    assert multi["target"] == "qpu.aria-1" and "type" not in multi and multi["input"]["format"] == "ionq.circuit.v0"
    request = parse_job_body(over_the_wire(multi))
    assert (request.api_version, request.multi, request.backend, len(request.circuits)) == ("v0.3", True,
                                                                                           "qpu.aria-1", 2)
    assert job_body(bell.copy().ry(0, qc.Param(0)), params=np.zeros((2, 1)))["type"] == "ionq.multi-circuit.v1"


def test_job_body_variants_the_clients_send():
    cirq_like = {"backend": "simulator", "type": "ionq.circuit.v1", "lang": "json", "shots": "1024",
                 "metadata": {"shots": "1024"}, "input": {"gateset": "qis", "qubits": 1,
                                                          "circuit": [{"gate": "h", "targets": [0]}]}}
    assert parse_job_body(cirq_like).shots == 1024
    v03_minimal = {"input": {"format": "ionq.circuit.v0", "qubits": 1, "circuit": [{"gate": "h", "target": 0}]}}
    request = parse_job_body(v03_minimal)
    assert (request.api_version, request.backend, request.shots) == ("v0.3", "simulator", 100)
    v04_with_format = {"backend": "simulator", **v03_minimal}  # input.format is harmless in v0.4 bodies
    assert parse_job_body(v04_with_format).api_version == "v0.4"


@pytest.mark.parametrize(("body", "message"), [
    ({"backend": "simulator", "type": "ionq.qasm3.v1", "input": {"qubits": 1, "data": "OPENQASM 3;"}},
     "'ionq.qasm3.v1' is not supported"),
    ({"backend": "simulator", "type": "ionq.multi-circuit.v1", "input": {"qubits": 1, "circuit": []}},
     "does not match its input"),
    ({"backend": "simulator", "shots": 0, "input": {"qubits": 1, "circuit": []}}, "'shots' must be a positive"),
    ({"backend": "simulator", "shots": "1e3", "input": {"qubits": 1, "circuit": []}}, "'shots' must be a positive"),
    ({"backend": "simulator", "shots": True, "input": {"qubits": 1, "circuit": []}}, "'shots' must be a positive"),
    ({"backend": 5, "input": {"qubits": 1, "circuit": []}}, "'backend' must be a backend name"),
    ({"target": "", "input": {"qubits": 1, "circuit": []}}, "'target' must be a backend name"),
    ({"backend": "simulator", "metadata": [], "input": {"qubits": 1, "circuit": []}}, "'metadata' must be a dict"),
    ({"target": "simulator", "backend": "simulator", "input": {"qubits": 1, "circuit": []}}, "mixed API versions"),
    ({"target": "simulator", "type": "ionq.circuit.v1", "input": {"qubits": 1, "circuit": []}}, "mixed API versions"),
    ({"backend": "simulator"}, "needs an 'input' object"),
    ([1, 2], "must be a JSON object"),
])
def test_malformed_job_bodies(body, message):
    with pytest.raises(IonQFormatError, match=message):
        parse_job_body(body)


def test_results_have_the_engines_bit_order():
    circuit = qc.Circuit(3).x(0)  # only qubit 0 flipped: basis index 1
    engine = qc.Simulator(seed=1).probabilities(circuit)
    assert probabilities_to_ionq(engine) == {"1": 1.0}
    np.testing.assert_array_equal(probabilities_from_ionq({"1": 1}, 3), engine)
    asymmetric = qc.Circuit(3).ry(0, 1.0).x(2)  # qubit 2 set: indices 4 and 5
    engine = qc.Simulator(seed=1).probabilities(asymmetric)
    wire = over_the_wire(probabilities_to_ionq(engine))
    assert set(wire) == {"4", "5"}
    np.testing.assert_allclose(probabilities_from_ionq(wire, 3), engine, atol=1e-15)
    assert counts_from_ionq({"4": 0.25, "5": 0.75}, 3, 1000) == {4: 250, 5: 750}
    drawn = counts_from_ionq(wire, 3, 10_000, sample=True, seed=3)
    assert set(drawn) <= {4, 5} and sum(drawn.values()) == 10_000
    assert abs(drawn[5] / 10_000 - engine[5]) < 0.02
    assert counts_from_ionq(wire, 3, 10_000, sample=True, seed=3) == drawn


@pytest.mark.parametrize(("result", "message"), [
    ({"8": 1.0}, "not a basis index of 3 qubits"),
    ({"-1": 1.0}, "not a basis index"),
    ({"0b1": 1.0}, "not a basis index"),
    ({"1": -0.1}, "negative"),
    ({"1": math.nan}, "finite"),
])
def test_malformed_results(result, message):
    with pytest.raises(IonQFormatError, match=message):
        probabilities_from_ionq(result, 3)


# ---------------------------------------------------------------- what the official clients serialize


def test_qiskit_ionq_serializer_output_parses_to_the_same_state():
    qiskit = pytest.importorskip("qiskit")
    helpers = pytest.importorskip("qiskit_ionq.helpers")
    from qiskit.quantum_info import Statevector
    from qiskit_ionq.ionq_gates import GPI2Gate, GPIGate, MSGate, ZZGate

    qis = qiskit.QuantumCircuit(3)
    qis.h(0)
    qis.cx(0, 2)
    qis.rx(0.3, 1)
    qis.ry(-1.1, 2)
    qis.rz(0.7, 0)
    qis.sdg(1)
    qis.sx(2)
    qis.sxdg(0)
    qis.t(1)
    qis.tdg(2)
    qis.s(0)
    qis.y(1)
    qis.z(2)
    qis.swap(0, 1)
    qis.rxx(0.4, 0, 2)
    qis.ryy(0.5, 1, 2)
    qis.rzz(0.6, 0, 1)
    native = qiskit.QuantumCircuit(3)
    native.append(GPIGate(0.1), [0])
    native.append(GPI2Gate(0.2), [1])
    native.append(MSGate(0.3, 0.4, 0.2), [0, 2])
    native.append(ZZGate(0.15), [1, 2])
    native.append(GPI2Gate(0.7), [2])
    for circuit, gateset in ((qis, "qis"), (native, "native")):
        gates, _, _ = helpers.qiskit_circ_to_ionq_circ(circuit, gateset)
        ours = from_ionq_json({"gateset": gateset, "qubits": 3, "circuit": over_the_wire(gates)})
        expected = Statevector(circuit).probabilities()  # qiskit is little endian, as we are
        np.testing.assert_allclose(qc.Simulator(seed=0).probabilities(ours), expected, atol=1e-10)


def test_cirq_ionq_serializer_output_parses_to_the_same_state():
    cirq = pytest.importorskip("cirq")
    cirq_ionq = pytest.importorskip("cirq_ionq")
    q = cirq.LineQubit.range(3)
    qis = cirq.Circuit([
        cirq.H(q[0]), cirq.CNOT(q[0], q[2]), cirq.rx(0.3)(q[1]), cirq.ry(-1.1)(q[2]), cirq.rz(0.7)(q[0]),
        cirq.S(q[1]) ** -1, cirq.X(q[2]) ** 0.5, cirq.X(q[0]) ** -0.5, cirq.T(q[1]), cirq.T(q[2]) ** -1,
        cirq.Y(q[1]), cirq.Z(q[2]), cirq.SWAP(q[0], q[1]), cirq.XX(q[0], q[2]) ** 0.3,
        cirq.YY(q[1], q[2]) ** 0.2, cirq.ZZ(q[0], q[1]) ** 0.1, cirq.X(q[1]) ** 0.37,
    ])
    native = cirq.Circuit([
        cirq_ionq.GPIGate(phi=0.1)(q[0]), cirq_ionq.GPI2Gate(phi=0.2)(q[1]),
        cirq_ionq.MSGate(phi0=0.3, phi1=0.4, theta=0.2)(q[0], q[2]), cirq_ionq.ZZGate(theta=0.15)(q[1], q[2]),
        cirq_ionq.GPI2Gate(phi=0.7)(q[2]),
    ])
    for circuit in (qis, native):
        program = cirq_ionq.Serializer().serialize_single_circuit(circuit)
        ours = from_ionq_json(over_the_wire(program.input))
        state = cirq.Simulator().simulate(circuit, qubit_order=q).final_state_vector
        expected = np.abs(state.reshape([2] * 3).transpose(2, 1, 0).ravel()) ** 2  # cirq is big endian
        np.testing.assert_allclose(qc.Simulator(seed=0).probabilities(ours), expected, atol=1e-6)


def test_bind_batch_pairs_circuits_with_parameter_vectors():
    a, b = qc.Circuit(1).rx(0, qc.Param(0)), qc.Circuit(1).ry(0, qc.Param(1))
    shared = bind_batch([a, b], [0.1, 0.2])
    assert [c for c, _ in shared] == [a, b] and all(list(theta) == [0.1, 0.2] for _, theta in shared)
    per_circuit = bind_batch([a, b], [[0.1], [0.3, 0.4]])  # ragged: one vector each
    assert [list(theta) for _, theta in per_circuit] == [[0.1], [0.3, 0.4]]
    assert len(bind_batch(a, np.zeros((5, 1)))) == 5
    assert bind_batch(qc.Circuit(1).h(0), [])[0][1].shape == (0,)
    with pytest.raises(IonQFormatError, match="2 circuits but 3 parameter vectors"):
        bind_batch([a, b], np.zeros((3, 2)))
    with pytest.raises(IonQFormatError, match="at least one circuit"):
        bind_batch([], None)
