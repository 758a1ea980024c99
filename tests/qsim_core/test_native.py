"""to_native: IonQ native gates only, the same unitary up to one global phase, parameters kept symbolic."""

from __future__ import annotations

import doctest
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
import qsim_core.native
from qsim_core.backends.reference import apply_matrix
from qsim_core.circuit import is_symbolic
from qsim_core.native import TARGETS, _Compiler
from tests.conftest import random_params, seed_circuit
from tests.strategies import circuits

TWO_QUBIT_GATE = {"aria": "ms", "forte": "native_zz"}


def unitary(circuit: qc.Circuit, theta: np.ndarray | None = None) -> np.ndarray:
    """The full matrix of ``circuit`` at ``theta``, built column by column from the gate table."""
    dim = 2**circuit.num_qubits
    columns = np.eye(dim, dtype=np.complex128)  # row k is basis state k
    for op in circuit:
        values = [value.resolve(theta) if is_symbolic(value) else value for value in op.params]
        spec = qc.GATES[op.name]
        matrix = spec.matrix(*values) if values else spec.matrix()
        columns = apply_matrix(columns, np.broadcast_to(matrix, (dim, *matrix.shape)), op.qubits)
    return columns.T


def assert_equal_up_to_global_phase(actual: np.ndarray, expected: np.ndarray) -> None:
    overlap = np.vdot(expected, actual)
    np.testing.assert_allclose(actual, overlap / abs(overlap) * expected, atol=1e-8)


def assert_native(compiled: qc.Circuit, target: str) -> None:
    """Only GPi, GPi2 and the target's two-qubit gate; constants in IonQ's ranges."""
    allowed = {"gpi", "gpi2", TWO_QUBIT_GATE[target]}
    for op in compiled:
        assert op.gate.gateset == "native" and op.name in allowed, op
        if op.name == "ms":
            *phases, angle = op.params
        elif op.name == "native_zz":
            phases, angle = [], op.params[0]
        else:
            phases, angle = op.params, None
        if angle is not None and not is_symbolic(angle):
            assert 0.0 < angle <= 0.25, op
        for phase in phases:
            assert 0.0 <= (phase.offset if is_symbolic(phase) else phase) < 1.0, op


def pulses(compiled: qc.Circuit) -> int:
    return sum(op.gate.num_qubits == 1 for op in compiled)


@settings(max_examples=60, deadline=None)
@given(circuits(max_qubits=4, max_ops=25, max_params=0), st.sampled_from(sorted(TWO_QUBIT_GATE)))
def test_constant_circuits_keep_their_unitary(circuit, target):
    compiled = qc.to_native(circuit, target)
    assert compiled.num_qubits == circuit.num_qubits
    assert_native(compiled, target)
    assert_equal_up_to_global_phase(unitary(compiled), unitary(circuit))


@settings(max_examples=60, deadline=None)
@given(circuits(min_qubits=1, max_qubits=4, max_ops=25, max_params=4), st.sampled_from(sorted(TWO_QUBIT_GATE)),
       st.integers(0, 2**31))
def test_parametrised_circuits_compile_once_for_every_parameter_vector(circuit, target, seed):
    compiled = qc.to_native(circuit, target)
    assert compiled.num_params == circuit.num_params
    assert_native(compiled, target)
    for theta in np.random.default_rng(seed).uniform(-4, 4, size=(2, circuit.num_params)):
        assert_equal_up_to_global_phase(unitary(compiled, theta), unitary(circuit, theta))


@settings(max_examples=60, deadline=None)
@given(circuits(max_qubits=4, max_ops=25, max_params=3), st.sampled_from(sorted(TWO_QUBIT_GATE)),
       st.integers(0, 2**31))
def test_dropped_final_phases_keep_every_z_basis_probability(circuit, target, seed):
    compiled = qc.to_native(circuit, target, drop_final_phases=True)
    assert compiled.num_params == circuit.num_params
    assert_native(compiled, target)
    assert pulses(compiled) <= pulses(qc.to_native(circuit, target))
    theta = np.random.default_rng(seed).uniform(-4, 4, size=circuit.num_params)
    # |U[i, j]|^2 is the probability of outcome i from basis state j
    np.testing.assert_allclose(np.abs(unitary(compiled, theta)) ** 2, np.abs(unitary(circuit, theta)) ** 2,
                               atol=1e-9)


@pytest.mark.parametrize("target", ["aria", "forte"])
def test_seed_circuit_gate_counts_and_unitary(target):
    circuit = seed_circuit()
    counts = {}
    for drop in (False, True):
        compiled = qc.to_native(circuit, target, drop_final_phases=drop)
        assert_native(compiled, target)
        assert compiled.num_params == circuit.num_params
        assert any(is_symbolic(value) for op in compiled for value in op.params)  # nothing was bound
        counts[drop] = Counter(op.name for op in compiled)
        theta = random_params(circuit, seed=3)
        expected, actual = unitary(circuit, theta), unitary(compiled, theta)
        if drop:
            np.testing.assert_allclose(np.abs(actual) ** 2, np.abs(expected) ** 2, atol=1e-9)
        else:
            assert_equal_up_to_global_phase(actual, expected)
    print(f"seed circuit on {target}: exact {dict(counts[False])}, final phases dropped {dict(counts[True])}")
    for count in counts.values():
        assert count[TWO_QUBIT_GATE[target]] == 56  # one per CNOT
    # fewer than one single-qubit pulse per CNOT (README "Native compilation")
    assert counts[True]["gpi"] + counts[True]["gpi2"] <= {"aria": 42, "forte": 59}[target]
    assert counts[False]["gpi"] + counts[False]["gpi2"] <= {"aria": 50, "forte": 74}[target]


def test_seed_circuit_probabilities_through_the_simulator():
    circuit = seed_circuit()
    compiled = qc.to_native(circuit, drop_final_phases=True)
    sim = qc.Simulator(backend="reference")
    theta = random_params(circuit, batch=3, seed=5)
    np.testing.assert_allclose(sim.probabilities(compiled, params=theta), sim.probabilities(circuit, params=theta),
                               atol=1e-10)


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(qc.CircuitError, match="known targets: aria, .*forte"):
        qc.to_native(qc.Circuit(1).h(0), "heron")


@pytest.mark.parametrize("alias", sorted(TARGETS))
def test_aliases_compile_like_their_system(alias):
    circuit = qc.Circuit(2).h(0).cnot(0, 1).zz(0, 1, 0.4)
    system = "forte" if alias.startswith("forte") else "aria"
    assert qc.to_native(circuit, alias).operations == qc.to_native(circuit, system).operations


def test_z_rotations_are_frames_folded_into_later_phases():
    # Rz(theta_0) then GPi2(theta_1): GPi2(p) Rz(t) = Rz(t) GPi2(p - t / 2 pi), the frame is dropped at the end
    circuit = qc.Circuit(1).rz(0, qc.Param(0)).gpi2(0, qc.Param(1))
    (op,) = qc.to_native(circuit, drop_final_phases=True)
    assert op.name == "gpi2"
    assert op.params[0] == qc.Param(1) - qc.Param(0) * (1 / (2 * np.pi))


def test_final_frames_cost_nothing_when_dropped_and_two_gpi_when_kept():
    circuit = qc.Circuit(3).z(0).s(1).t(2).rz(0, qc.Param(0)).rz(2, 0.3)
    assert len(qc.to_native(circuit, drop_final_phases=True)) == 0
    compiled = qc.to_native(circuit)
    assert Counter(op.name for op in compiled) == {"gpi": 6}
    assert compiled.num_params == circuit.num_params == 1
    theta = np.array([0.7])
    assert_equal_up_to_global_phase(unitary(compiled, theta), unitary(circuit, theta))


def test_constant_single_qubit_runs_merge():
    identity_run = qc.Circuit(1).h(0).x(0).h(0).z(0)  # H X H = Z
    assert len(qc.to_native(identity_run)) == 0
    long_run = qc.Circuit(1).h(0).t(0).ry(0, 0.3).v(0).rx(0, -1.2).gpi(0, 0.1).s(0)
    assert len(qc.to_native(long_run, drop_final_phases=True)) <= 2
    assert_equal_up_to_global_phase(unitary(qc.to_native(long_run)), unitary(long_run))


def test_symbolic_rotations_stay_linear_and_same_axis_runs_merge():
    circuit = qc.Circuit(1).ry(0, qc.Param(0)).ry(0, qc.Param(1))  # RY(a) RY(b) = RY(a + b): one frame
    compiled = qc.to_native(circuit, drop_final_phases=True)
    assert [op.name for op in compiled] == ["gpi2", "gpi2"]
    assert isinstance(compiled.operations[1].params[0], qc.ParamSum)


def test_native_input_passes_through():
    circuit = qc.Circuit(2).gpi(0, 0.125).gpi2(1, qc.Param(0)).ms(0, 1, 0.1, qc.Param(1), 0.2)
    compiled = qc.to_native(circuit, drop_final_phases=True)
    # one pulse each (the GPi may move past the MS: a pi rotation about its qubit-0 axis times a frame)
    assert Counter(op.name for op in compiled) == {"gpi": 1, "gpi2": 1, "ms": 1}
    assert next(op for op in compiled if op.name == "ms").params[2] == 0.2
    theta = np.array([0.3, -0.4])
    assert_equal_up_to_global_phase(unitary(qc.to_native(circuit), theta), unitary(circuit, theta))


def test_large_constant_angles_are_brought_into_range():
    circuit = qc.Circuit(2).xx(0, 1, -5.0).native_zz(0, 1, 0.7).ms(0, 1, 0.2, 0.9, -0.4)
    for target in TWO_QUBIT_GATE:
        compiled = qc.to_native(circuit, target)
        assert_native(compiled, target)
        assert_equal_up_to_global_phase(unitary(compiled), unitary(circuit))


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (qc.Operation("iswap", (0, 1), ()), r"operation 3 \(iswap\(0, 1\)\) has no native rewrite"),
        (qc.Operation("h", (0,), (qc.Param(0),)), r"operation 3 \(h\(0, Param.*no linear native rewrite"),
    ],
)
def test_a_gate_without_a_rewrite_is_named(op, message):
    # the guard for gate-table entries added later without a rule here
    with pytest.raises(qc.CircuitError, match=message):
        _Compiler(2, "ms").operation(3, op)


def test_docstring_example():
    failures, tried = doctest.testmod(qsim_core.native)
    assert tried > 0 and failures == 0
