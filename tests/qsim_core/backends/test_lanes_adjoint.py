"""Adjoint differentiation eight parameter sets at a time (``_adjoint_lanes.pxi``): complex128 programs of U1 and
permutation steps whose parameters enter through rotations, on Z strings, in calls of ``LANE_CALL_SETS`` sets or
more; everything else keeps the per-set sweep."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core.backends import Job, driver, get_backend, isa
from qsim_core.observables import parse_observables
from tests.conftest import TOLERANCE, random_params, seed_circuit
from tests.qsim_core.backends.test_cross_backend import REFERENCE
from tests.qsim_core.backends.test_dispatch import level_backend
from tests.strategies import single_qubit_networks

pytestmark = pytest.mark.skipif("cython" not in qc.available_backends(), reason="the Cython kernels are not built")


def z_strings(n: int, rng: np.random.Generator) -> list[str]:
    """Single-qubit Z, the identity, and multi-qubit Z strings (Z strings of storage positions in the kernels)."""
    return ["I", *(f"Z{q}" for q in range(n)),
            *(" ".join(f"Z{q}" for q in rng.choice(n, size=rng.integers(1, n + 1), replace=False))
              for _ in range(2))]


def check_adjoint_against_reference(backend, circuit: qc.Circuit, batch: int, threads: int = 1) -> None:
    sim = qc.Simulator(backend=backend, threads=threads)
    tol = TOLERANCE["double"] * 10
    params = random_params(circuit, batch=batch, seed=batch)
    rng = np.random.default_rng(circuit.num_qubits + batch)
    labels = z_strings(circuit.num_qubits, rng)
    cotangent = rng.normal(size=(batch, len(labels)))
    np.testing.assert_allclose(sim.vjp(circuit, labels, params, cotangent),
                               REFERENCE.vjp(circuit, labels, params, cotangent), atol=tol)
    values, jacobian = sim.value_and_gradient(circuit, labels, params)  # a lambda per string
    want_values, want_jacobian = REFERENCE.value_and_gradient(circuit, labels, params)
    np.testing.assert_allclose(values, want_values, atol=tol)
    np.testing.assert_allclose(jacobian, want_jacobian, atol=tol)
    # X and Y strings keep the per-set sweep
    mixed = [*labels[:2], "X0", "Y0"]
    np.testing.assert_allclose(sim.gradient(circuit, mixed, params), REFERENCE.gradient(circuit, mixed, params),
                               atol=tol)


@settings(max_examples=50, deadline=None)
@given(circuit=single_qubit_networks(), batch=st.integers(6, 20), threads=st.sampled_from([1, 2]))
def test_single_qubit_networks_differentiate_as_the_reference_eight_sets_at_a_time(circuit, batch, threads):
    # every single-qubit gate of the table (constants, Param-referenced and ParamSum angles, fused runs)
    check_adjoint_against_reference("cython", circuit, batch, threads)


@pytest.mark.parametrize("level", list(isa.LEVELS))
@settings(max_examples=10, deadline=None)
@given(circuit=single_qubit_networks(max_qubits=9))
def test_every_level_differentiates_eight_sets_at_a_time_as_the_reference(level, circuit):
    check_adjoint_against_reference(level_backend(level), circuit, batch=11)


def layered(n: int) -> qc.Circuit:
    """Rotation layers between CNOT rings: lone RY and RX steps, RZ before RY (a complex fused step with diagonal
    slopes), constant gates in the runs, and a product state of three rotations per qubit."""
    c = qc.Circuit(n)
    k = 0
    for q in range(n):
        c.rx(q, qc.Param(k)).ry(q, qc.Param(k + 1)).rz(q, qc.Param(k + 2))
        k += 3
    for layer in range(3):
        for q in range(n if n > 1 else 0):
            c.cnot(q, (q + 1) % n)
        for q in range(n):
            if (q + layer) % 3 == 0:
                c.ry(q, qc.Param(k))
            elif (q + layer) % 3 == 1:
                c.rz(q, qc.Param(k)).h(q).ry(q, qc.Param(k + 1) + qc.Param(0, 0.5))
                k += 1
            else:
                c.rx(q, qc.Param(k))
            k += 1
    return c


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10])
@pytest.mark.parametrize("threads", [1, 2])
def test_layered_circuits_differentiate_as_the_reference(n, threads):
    check_adjoint_against_reference("cython", layered(n), batch=13, threads=threads)


def test_the_seed_circuit_gradient_matches_parameter_shift():
    c = seed_circuit()
    params = random_params(c, batch=9, seed=5)
    labels = [f"Z{q}" for q in range(8)]
    sim = qc.Simulator(backend="cython")
    cotangent = np.random.default_rng(1).normal(size=(9, 8))
    np.testing.assert_allclose(sim.vjp(c, labels, params, cotangent),
                               sim.vjp(c, labels, params, cotangent, method="parameter-shift"), atol=1e-12)


@pytest.mark.parametrize("circuit", [seed_circuit(), layered(6)], ids=["seed", "layered"])
def test_a_set_gets_the_same_gradient_bits_in_any_lane_and_any_call(circuit):
    theta = random_params(circuit, batch=21, seed=2) * 10
    labels = ["Z0", "Z1 Z4", "I", "Z5"]
    cotangent = np.random.default_rng(3).normal(size=(21, len(labels)))
    one, two = qc.Simulator(backend="cython", threads=1), qc.Simulator(backend="cython", threads=2)
    vjp = one.vjp(circuit, labels, theta, cotangent)
    values, jacobian = one.value_and_gradient(circuit, labels, theta)
    order = np.random.default_rng(0).permutation(21)  # every set in another lane, beside other sets
    np.testing.assert_array_equal(two.vjp(circuit, labels, theta[order], cotangent[order]), vjp[order])
    shuffled_values, shuffled_jacobian = two.value_and_gradient(circuit, labels, theta[order])
    np.testing.assert_array_equal(shuffled_values, values[order])
    np.testing.assert_array_equal(shuffled_jacobian, jacobian[order])
    smallest = get_backend("cython").stable_rows
    for start, stop in itertools.pairwise([0, smallest, 2 * smallest + 1, 21]):
        np.testing.assert_array_equal(one.vjp(circuit, labels, theta[start:stop], cotangent[start:stop]),
                                      vjp[start:stop])
    # the values are the forward pass's, read the same way
    np.testing.assert_array_equal(values, one.expectation(circuit, labels, theta))


def test_the_memory_check_counts_eight_sets_at_a_time(monkeypatch):
    # 400 strings, a lambda each: eight sets at a time keep a lambda and a diagonal per string for eight states
    # (about 79 MB at 10 qubits), one set at a time a state per string (6.4 MB, below what is checked)
    c = layered(10)
    labels = [f"Z{q % 10}" for q in range(400)]
    params = random_params(c, batch=8, seed=1)
    monkeypatch.setattr(qc.memory, "available_bytes", lambda: 70 * 2**20)
    sim = qc.Simulator(backend="cython", threads=1)
    with pytest.raises(qc.CircuitTooLargeError, match="adjoint differentiation of a 10-qubit circuit"):
        sim.gradient(c, labels, params)
    assert sim.gradient(c, labels, params[:5]).shape == (5, 400, c.num_params)


def test_which_calls_the_kernels_differentiate_eight_at_a_time():
    # the one test the driver (weighing the work) and adjoint_packed (dispatching) both ask
    engine = get_backend("cython")
    kernels = engine.adjoint_kernels

    def eight(circuit, labels, batch, initial=False, dtype=np.complex128):
        job = Job(circuit, random_params(circuit, batch=batch), dtype, 1)
        strings = parse_observables(labels, circuit.num_qubits)
        adjoint = driver._adjoint_program(job, strings.z_only)
        gates = driver._BOUND.get(adjoint.plan.program, batch, dtype).pack(engine.kernels)
        observables = strings.packed(engine.kernels.pack_observables)
        return kernels.adjoint_lane_path(adjoint.packed(kernels), gates, observables, batch, initial)

    c = seed_circuit()
    smallest = engine.stable_rows
    assert eight(c, ["Z0", "Z1 Z2", "I"], smallest)
    assert not eight(c, ["Z0"], smallest - 1)  # fewer sets: one at a time
    assert not eight(c, ["Z0", "X1"], smallest)  # an X or Y string
    assert not eight(c, ["Z0"], smallest, initial=True)
    assert not eight(c, ["Z0"], smallest, dtype=np.complex64)  # no lane plan
    assert not eight(qc.Circuit(2).ry(0, qc.Param(0)).xx(0, 1, qc.Param(0)), ["Z0"], smallest)  # a two-qubit matrix
    # (every parameter of a single-qubit gate of the table enters as a rotation, GPi's and GPi2's too)
    assert eight(qc.Circuit(2).h(0).cnot(0, 1).gpi(0, qc.Param(0)).cnot(0, 1), ["Z0"], smallest)
