"""Qiskit circuits -> engine circuits: gate matrices, parameter expressions, measurements, caching, errors.

The oracle is Qiskit itself: gate matrices from ``qiskit.quantum_info.Operator``
(``qiskit_ionq``'s natives from their own ``__array__``) and expectations from
``StatevectorEstimator``, never matrices retyped here.
"""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.library import RYGate, get_standard_gate_name_mapping
from qiskit.primitives import StatevectorEstimator
from qiskit.providers import JobStatus
from qiskit.quantum_info import Operator, Pauli, Statevector
from qiskit_ionq import GPI2Gate, GPIGate, MSGate, ZZGate

import qsim_core as qc
from qsim_core.qiskit import EstimatorV2
from qsim_core.qiskit.translate import QISKIT_NAMES, engine_target, translate

NATIVES = {"gpi": GPIGate, "gpi2": GPI2Gate, "ms": MSGate, "zz": ZZGate}


def qiskit_gate(name: str, params: list[float]):
    """The Qiskit gate called ``name`` with ``params``: a standard gate or a qiskit_ionq native."""
    if name in NATIVES:
        return NATIVES[name](*params)
    return type(get_standard_gate_name_mapping()[name])(*params)


def engine_layout(matrix: np.ndarray) -> np.ndarray:
    """A Qiskit gate matrix (qubit 0 least significant) in the engine's layout (first qubit most significant)."""
    k = int(np.log2(len(matrix)))
    order = list(range(k))[::-1]
    return matrix.reshape([2] * 2 * k).transpose(order + [k + q for q in order]).reshape(len(matrix), -1)


def evs(estimator, circuit: QuantumCircuit, observables, values=None) -> np.ndarray:
    return estimator.run([(circuit, observables, values)]).result()[0].data.evs


def test_every_engine_gate_has_a_qiskit_name():
    assert set(QISKIT_NAMES) == set(qc.GATES)
    assert len(set(QISKIT_NAMES.values())) == len(QISKIT_NAMES)


@pytest.mark.parametrize("engine_name", list(qc.GATES))
def test_gate_matrices_agree(engine_name):
    spec = qc.GATES[engine_name]
    params = list(np.random.default_rng(spec.opcode).uniform(-1.0, 1.0, spec.num_params))
    qiskit_matrix = Operator(qiskit_gate(QISKIT_NAMES[engine_name], params)).data
    np.testing.assert_allclose(engine_layout(qiskit_matrix), spec.matrix(*params), atol=1e-12)


@pytest.mark.parametrize("alias", ["p", "u1"])
def test_phase_aliases_equal_rz_up_to_a_global_phase(alias):
    ours = Operator(qiskit_gate(alias, [0.7])).data
    rz = qc.GATES["rz"].matrix(0.7)
    phase = ours[0, 0] / rz[0, 0]
    assert abs(abs(phase) - 1) < 1e-12
    np.testing.assert_allclose(ours, phase * rz, atol=1e-12)


def test_target_holds_every_engine_gate_and_measure():
    target = engine_target()
    assert set(QISKIT_NAMES.values()) | {"measure", "delay", "reset"} <= set(target.operation_names)


def test_affine_expressions_become_references_and_match_qiskit():
    a, b = Parameter("a"), Parameter("b")
    circuit = QuantumCircuit(2)
    circuit.h([0, 1])
    circuit.ry(2 * a - b + 0.5, 0)
    circuit.rzz(a / 3, 0, 1)
    circuit.crx(b, 1, 0)  # decomposed by the transpiler into gates with b/2, -b/2
    circuit.rx(a + 0.25, 1)
    translation = translate(circuit, measurements=False)
    assert not translation.derived
    assert any(isinstance(p, qc.ParamSum) for op in translation.circuit for p in op.params)
    values = np.random.default_rng(1).uniform(-2, 2, (6, 2))
    observables = ["ZI", "XX", "YZ"]
    np.testing.assert_allclose(evs(EstimatorV2(), circuit, [[o] for o in observables], values),
                               evs(StatevectorEstimator(), circuit, [[o] for o in observables], values), atol=1e-12)


def test_non_affine_expressions_get_columns_of_their_own():
    a, b = Parameter("a"), Parameter("b")
    circuit = QuantumCircuit(2)
    circuit.ry(a * b, 0)
    circuit.rx((a + 1).sin(), 1)
    circuit.cx(0, 1)
    circuit.rz(b**2 + a, 1)
    translation = translate(circuit, measurements=False)
    assert len(translation.derived) == 3
    values = np.random.default_rng(2).uniform(-2, 2, (5, 2))
    np.testing.assert_allclose(evs(EstimatorV2(), circuit, [["ZZ"], ["XI"], ["IY"]], values),
                               evs(StatevectorEstimator(), circuit, [["ZZ"], ["XI"], ["IY"]], values), atol=1e-12)


def test_translation_is_cached_and_a_changed_circuit_translates_again():
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    first = translate(circuit, measurements=False)
    assert translate(circuit, measurements=False) is first
    assert translate(circuit.copy(), measurements=False) is first  # same instructions, same translation
    circuit.rx(0.3, 1)
    second = translate(circuit, measurements=False)
    assert second is not first
    assert len(second.circuit) == len(first.circuit) + 1
    # edits that keep the length: another angle, another qubit, another standard gate
    for edited in (circuit.data[2].replace(params=[0.4]), circuit.data[2].replace(qubits=[circuit.qubits[0]]),
                   circuit.data[2].replace(operation=RYGate(0.3))):
        circuit.data[2] = edited
        assert translate(circuit, measurements=False) is not second
        second = translate(circuit, measurements=False)
    np.testing.assert_allclose(evs(EstimatorV2(), circuit, ["ZI", "IX"]),
                               evs(StatevectorEstimator(), circuit, ["ZI", "IX"]), atol=1e-12)


def test_custom_gates_with_one_name_are_not_confused():
    one, other = QuantumCircuit(1), QuantumCircuit(1)
    one.x(0)
    other.h(0)
    results = []
    for body in (one, other):
        circuit = QuantumCircuit(1)
        circuit.append(body.to_gate(label="block"), [0])
        circuit.name = "same"
        results.append(evs(EstimatorV2(), circuit, ["Z", "X"]))
    np.testing.assert_allclose(results[0], [-1, 0], atol=1e-12)
    np.testing.assert_allclose(results[1], [0, 1], atol=1e-12)


def test_terminal_measurements_map_clbits_to_qubits():
    circuit = QuantumCircuit(3, 4)
    circuit.h(0)
    circuit.measure(2, 0)
    circuit.cx(0, 1)
    circuit.barrier()
    circuit.measure([0, 1], [3, 1])
    translation = translate(circuit, measurements=True)
    assert dict(translation.measured) == {0: 2, 3: 0, 1: 1}
    assert [op.name for op in translation.circuit] == ["h", "cnot"]


def test_leading_reset_is_dropped():
    circuit = QuantumCircuit(1)
    circuit.reset(0)
    circuit.x(0)
    np.testing.assert_allclose(evs(EstimatorV2(), circuit, ["Z"]), [-1.0])


def test_initialize_and_state_preparation_at_the_start_run():
    amplitudes = np.random.default_rng(5).normal(size=8) + 1j * np.random.default_rng(6).normal(size=8)
    amplitudes /= np.linalg.norm(amplitudes)
    circuit = QuantumCircuit(3)
    circuit.initialize(amplitudes, [0, 1, 2])
    circuit.cx(0, 2)
    circuit.prepare_state(amplitudes[:2] / np.linalg.norm(amplitudes[:2]), [1])  # a unitary, on a used qubit
    reference = Statevector(circuit)
    labels = ["ZZZ", "XIY", "IXI", "YYZ"]
    expected = [reference.expectation_value(Pauli(label)).real for label in labels]
    np.testing.assert_allclose(evs(EstimatorV2(), circuit, labels), expected, atol=1e-10)


def test_initialize_after_a_gate_is_an_error():
    circuit = QuantumCircuit(1)
    circuit.h(0)
    circuit.initialize([1, 0], [0])
    with pytest.raises(qc.CircuitError, match="reset"):
        translate(circuit, measurements=False)


def unsupported_circuits():
    measured_then_gate = QuantumCircuit(2, 1)
    measured_then_gate.measure(0, 0)
    measured_then_gate.x(0)
    late_reset = QuantumCircuit(1)
    late_reset.x(0)
    late_reset.reset(0)
    control_flow = QuantumCircuit(1, 1)
    control_flow.measure(0, 0)
    with control_flow.if_test((control_flow.clbits[0], 1)):
        control_flow.x(0)
    return {
        "measured qubit": (measured_then_gate, True, "terminal"),
        "reset": (late_reset, True, "reset"),
        "control flow": (control_flow, True, "control flow"),
        "no qubits": (QuantumCircuit(0), True, "no qubits"),
    }


@pytest.mark.parametrize("case", list(unsupported_circuits()))
def test_unsupported_circuits_raise_clear_errors(case):
    circuit, measurements, words = unsupported_circuits()[case]
    with pytest.raises(qc.CircuitError, match=words):
        translate(circuit, measurements=measurements)


def test_estimator_circuits_must_not_measure():
    circuit = QuantumCircuit(1)
    circuit.h(0)
    circuit.measure_all()
    with pytest.raises(qc.CircuitError, match="must not measure"):
        translate(circuit, measurements=False)


def test_a_complex_parameter_value_is_an_error():
    a = Parameter("a")
    circuit = QuantumCircuit(1)
    circuit.rx(a * 1j, 0)
    job = EstimatorV2().run([(circuit, ["Z"], [0.5])])
    assert job.status() == JobStatus.ERROR and not job.done() and job.in_final_state()
    with pytest.raises(qc.CircuitError, match="complex"):
        job.result()
