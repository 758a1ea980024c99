"""The compiled adjoint sweep's fast paths against parameter-shift on the reference backend.

The sweep takes each derivative from the cross matrix of the states *after* a step, undoes psi only above
the first step that reads it, runs real single-qubit runs as flat vector loops (a loop of its own for qubit 0)
and accumulates only Re(C) when a run's derivative matrices are real. Each test below reaches some of those
paths; the oracle never uses the adjoint method.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import qsim_core as qc
from bench.workloads import layered_circuit
from qsim_core.backends import Job, get_backend
from qsim_core.compiler import PERM, compile_circuit
from qsim_core.observables import parse_observables
from tests.conftest import TOLERANCE, random_params, seed_circuit
from tests.qsim_core.backends.test_cross_backend import observables_for
from tests.qsim_core.test_gradients import random_states
from tests.strategies import circuits

REFERENCE = qc.Simulator(backend="reference")
#: gates with real matrices: runs of them take the vector pass with Re(C) only
REAL_ONE_QUBIT = ("h", "x", "z")
REAL_TWO_QUBIT = ("cnot", "swap")


def shift_gradient(circuit: qc.Circuit, labels: list[str], params: np.ndarray, **kwargs) -> np.ndarray:
    """The Jacobian by the exact parameter-shift rule on the reference backend: (B, K, P)."""
    return REFERENCE.gradient(circuit, labels, params, method="parameter-shift", **kwargs)


def tolerance(precision: str) -> float:
    """Gradients sum many products: ten times the backends' agreement tolerance."""
    return 10 * TOLERANCE[precision]


def check_jacobian(backend: str, precision: str, circuit: qc.Circuit, batch: int, **kwargs) -> None:
    """The compiled adjoint Jacobian (and expectations) of a random batch against the reference's
    parameter-shift, for the observables :func:`observables_for` picks."""
    labels = observables_for(circuit.num_qubits, np.random.default_rng(len(circuit)))
    params = random_params(circuit, batch=batch, seed=len(circuit))
    sim = qc.Simulator(backend=backend, precision=precision)
    values, jacobian = sim.value_and_gradient(circuit, labels, params, **kwargs)
    np.testing.assert_allclose(values, REFERENCE.expectation(circuit, labels, params, **kwargs),
                               atol=TOLERANCE[precision])
    np.testing.assert_allclose(jacobian, shift_gradient(circuit, labels, params, **kwargs), atol=tolerance(precision))


def check_jacobian_and_vjp(backend: str, precision: str, circuit: qc.Circuit, labels: list[str] | None = None) -> None:
    """The compiled adjoint Jacobian and a vjp of a random batch of 3 against the reference's parameter-shift, for
    ``labels`` (default: those :func:`observables_for` picks)."""
    if labels is None:
        labels = observables_for(circuit.num_qubits, np.random.default_rng(len(circuit)))
    params = random_params(circuit, batch=3, seed=len(circuit))
    sim = qc.Simulator(backend=backend, precision=precision)
    expected = shift_gradient(circuit, labels, params)
    np.testing.assert_allclose(sim.gradient(circuit, labels, params), expected, atol=tolerance(precision))
    cotangent = np.random.default_rng(2).normal(size=(3, len(labels)))
    np.testing.assert_allclose(sim.vjp(circuit, labels, params, cotangent),
                               np.einsum("bk,bkp->bp", cotangent, expected), atol=tolerance(precision))


@st.composite
def real_circuits(draw, max_qubits: int = 6, max_ops: int = 24):
    """Circuits of RY rotations (Param, scaled Param, ParamSum or constant) and real gates.

    Sometimes a pair ``RZ(theta) RZ(-theta)`` on one qubit: the fused run is real but its derivative
    matrices are not, which needs the imaginary part of the cross matrix.
    """
    n = draw(st.integers(1, max_qubits))
    num_params = draw(st.integers(1, 4))
    circuit = qc.Circuit(n)
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(["ry", "ry", "one", "two", "rz pair"] if n > 1 else ["ry", "ry", "one", "rz pair"]))
        q = draw(st.integers(0, n - 1))
        if kind == "ry":
            angle = draw(st.sampled_from(["param", "scaled", "sum", "constant"]))
            if angle == "constant":
                circuit.ry(q, draw(st.floats(-3.0, 3.0)))
            else:
                reference = qc.Param(draw(st.integers(0, num_params - 1)), -0.5 if angle == "scaled" else 1.0, 0.25)
                if angle == "sum":
                    reference = reference + qc.Param(draw(st.integers(0, num_params - 1)), 2.0)
                circuit.ry(q, reference)
        elif kind == "one":
            circuit.append(draw(st.sampled_from(REAL_ONE_QUBIT)), [q], [])
        elif kind == "two":
            other = draw(st.integers(0, n - 2))
            other += other >= q  # any qubit but q
            circuit.append(draw(st.sampled_from(REAL_TWO_QUBIT)), [q, other], [])
        else:
            k = draw(st.integers(0, num_params - 1))
            circuit.rz(q, qc.Param(k)).rz(q, qc.Param(k, -1.0))
    if circuit.num_params < num_params:
        circuit.ry(0, qc.Param(num_params - 1))
    return circuit


@settings(max_examples=30)
@given(circuit=real_circuits())
def test_real_runs_match_parameter_shift(backend, precision, circuit):
    check_jacobian_and_vjp(backend, precision, circuit)


@settings(max_examples=25)
@given(circuit=circuits(max_qubits=6, max_ops=24, max_params=4))
def test_every_gate_matches_parameter_shift(backend, precision, circuit):
    check_jacobian(backend, precision, circuit, batch=2)


@settings(max_examples=20)
@given(circuit=st.one_of(real_circuits(max_qubits=5), circuits(max_qubits=5, max_ops=20, max_params=4)))
def test_initial_state_batches_match_parameter_shift(backend, precision, circuit):
    # no product layer: psi is undone down to the first parametrised step, and lambda is the state gradient
    check_jacobian(backend, precision, circuit, batch=3,
                   initial_state=random_states(circuit.num_qubits, 3, len(circuit)))


@pytest.mark.parametrize("target", ["aria", "forte"])
def test_native_circuits_match_parameter_shift(backend, precision, target):
    # GPi/GPi2 phases (derivative matrices, not rotations) and MS gates: the two-qubit backward
    circuit = layered_circuit(4, 2)
    native = qc.to_native(circuit, target, drop_final_phases=True)
    params = random_params(circuit, batch=3, seed=8)
    labels = ["Z0", "Z1 Z3", "X2", "Y0 Y1"]
    sim = qc.Simulator(backend=backend, precision=precision)
    np.testing.assert_allclose(sim.gradient(native, labels, params), shift_gradient(native, labels, params),
                               atol=tolerance(precision))


def test_seed_circuit_batch_matches_parameter_shift(backend, precision):
    circuit = seed_circuit()
    labels = [f"Z{q}" for q in range(8)]
    params = random_params(circuit, batch=20, seed=6)
    cotangent = np.random.default_rng(3).normal(size=(20, 8))
    sim = qc.Simulator(backend=backend, precision=precision)
    expected = np.einsum("bk,bkp->bp", cotangent, shift_gradient(circuit, labels, params))
    np.testing.assert_allclose(sim.vjp(circuit, labels, params, cotangent), expected, atol=tolerance(precision))


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_parametrised_step_anywhere(backend, where):
    # the step psi is last needed at sits first, in the middle or last among constant steps
    n = 5
    circuit = qc.Circuit(n)
    steps = [lambda c: c.h(0).cnot(0, 3).ry(4, 0.3), lambda c: c.swap(1, 4).x(2).cnot(2, 0),
             lambda c: c.h(3).cnot(3, 1).rx(2, 0.7)]
    position = {"first": 0, "middle": 1, "last": 3}[where]
    for index, step in enumerate(steps):
        if index == position:
            circuit.ry(1, qc.Param(0)).rx(0, qc.Param(1))
        step(circuit)
    if position == 3:
        circuit.ry(1, qc.Param(0)).rx(0, qc.Param(1))
    labels = ["Z0", "X1 Z4", "Y2"]
    params = random_params(circuit, batch=2, seed=1)
    np.testing.assert_allclose(qc.Simulator(backend=backend).gradient(circuit, labels, params),
                               shift_gradient(circuit, labels, params), atol=1e-9)


def test_a_run_real_only_at_these_parameters(backend, precision):
    # RY(a) RZ(b) at b = 0 is a real matrix, but d/db of it is not: the sweep needs Im(C) for such a run
    circuit = qc.Circuit(3).h(0).h(1).h(2).rx(2, 0.4).cnot(2, 0)
    for q in range(3):
        circuit.ry(q, qc.Param(q)).rz(q, qc.Param(3 + q))
    circuit.cnot(0, 1).cnot(1, 2).ry(0, qc.Param(0)).rz(0, qc.Param(5))
    params = random_params(circuit, batch=2, seed=4)
    params[:, 3:] = 0.0
    labels = ["Z0", "X1", "Y2 Z0"]
    sim = qc.Simulator(backend=backend, precision=precision)
    np.testing.assert_allclose(sim.gradient(circuit, labels, params), shift_gradient(circuit, labels, params),
                               atol=tolerance(precision))


@st.composite
def layer_circuits(draw, max_qubits: int = 9):
    """Constant gates and CNOTs, then a layer of single-qubit runs on distinct qubits (the first parametrised
    steps: the sweep takes their derivatives from the states after the whole layer, psi unmoved), then CNOTs and
    sometimes a second layer (taken run by run: psi is needed below it).

    The runs mix real ones (RY, the cross pass on qubits >= 2 and, alongside, 0 and 1), complex ones (RX,
    RY RZ), constant ones (no uses), a real run with complex derivatives (RZ(t) RZ(-t)) and shared parameters.
    """
    n = draw(st.integers(2, max_qubits))
    num_params = draw(st.integers(1, 2 * n))
    circuit = qc.Circuit(n)
    for q in range(n):
        circuit.h(q)
    for q in draw(st.permutations(range(n))):
        other = (q + 1) % n
        circuit.cnot(q, other)
    for _ in range(draw(st.integers(1, 2))):
        for q in draw(st.permutations(range(n))):
            kind = draw(st.sampled_from(["ry", "ry", "ry", "rx", "ry rz", "h", "rz pair", "none"]))
            k = qc.Param(draw(st.integers(0, num_params - 1)), draw(st.sampled_from([1.0, -0.5])))
            if kind == "ry":
                circuit.ry(q, k)
            elif kind == "rx":
                circuit.rx(q, k)
            elif kind == "ry rz":
                circuit.ry(q, k).rz(q, qc.Param(draw(st.integers(0, num_params - 1))))
            elif kind == "h":
                circuit.h(q)
            elif kind == "rz pair":
                circuit.rz(q, k).rz(q, qc.Param(k.index, -k.scale))
        for q in range(n - 1):
            circuit.cnot(q, q + 1)
    if circuit.num_params < num_params:
        circuit.ry(0, qc.Param(num_params - 1))
    return circuit


@settings(max_examples=30, deadline=None)
@given(circuit=layer_circuits())
def test_layers_of_distinct_qubits_match_parameter_shift(backend, precision, circuit):
    check_jacobian_and_vjp(backend, precision, circuit)
    # Z strings only: the compiled program drops the trailing phases, and the layer's runs become real
    check_jacobian_and_vjp(backend, precision, circuit, [f"Z{q}" for q in range(circuit.num_qubits)])


@settings(max_examples=30, deadline=None)
@given(circuit=layer_circuits(), pairs=st.lists(st.tuples(st.integers(0, 8), st.integers(1, 8), st.booleans()),
                                                min_size=3, max_size=8))
def test_a_trailing_permutation_matches_parameter_shift(backend, precision, circuit, pairs):
    # a last step that is a permutation (a run of 3 or more CNOT/SWAP gates): with Z strings the sweep starts
    # lambda already taken back through it
    n = circuit.num_qubits
    if n < 2:
        return
    for a, shift, swap in pairs:
        circuit.append("swap" if swap else "cnot", [a % n, (a + shift % (n - 1) + 1) % n], [])
    assume(compile_circuit(circuit, zbasis=True).kind[-1] == PERM)  # not when the run cancels to fewer gates
    check_jacobian_and_vjp(backend, precision, circuit, [f"Z{q}" for q in range(n)] + ["Z0 Z1"])


@pytest.mark.parametrize("name", ["reference", "compiled"])
@pytest.mark.parametrize("labels", [["Z0", "Z1 Z2"], ["X0", "Y1 Z2", "Z1"]])
@pytest.mark.parametrize("with_initial", [False, True])
def test_an_adjoint_without_values_returns_none_and_the_same_gradients(backend, precision, name, labels,
                                                                       with_initial):
    # what Simulator.vjp asks for: the kernels skip the expectations, and nothing else changes
    circuit = layered_circuit(3, 2)
    params = random_params(circuit, batch=5, seed=1)
    dtype = np.complex64 if precision == "single" else np.complex128
    initial = random_states(3, 5, seed=4).astype(dtype) if with_initial else None
    job = Job(circuit, params, dtype, 1, initial=initial)
    engine = get_backend(backend if name == "compiled" else "reference")
    observables = parse_observables(labels, 3)
    weights = np.random.default_rng(3).normal(size=(5, 2, len(labels)))
    values, gradient, states = engine.adjoint(job, observables, weights)
    none, same_gradient, same_states = engine.adjoint(job, observables, weights, values=False)
    assert none is None and values.shape == (5, len(labels))
    np.testing.assert_array_equal(same_gradient, gradient)
    if with_initial:
        np.testing.assert_array_equal(same_states, states)
    else:
        assert states is None and same_states is None
