"""Every compiled backend agrees with the reference on random circuits over the whole gate table."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qsim_core as qc
from bench.workloads import layered_circuit
from qsim_core.backends import driver, get_backend
from qsim_core.compiler import compile_circuit
from tests.conftest import TOLERANCE, random_params, seed_circuit
from tests.strategies import circuits

REFERENCE = qc.Simulator(backend="reference")


def observables_for(n: int, rng: np.random.Generator) -> list[str]:
    labels = [f"Z{q}" for q in range(n)]
    for _ in range(4):
        qubits = rng.choice(n, size=rng.integers(1, n + 1), replace=False)
        labels.append(" ".join(f"{rng.choice(list('XYZ'))}{q}" for q in qubits))
    if n > 1:
        labels.append("Z0 Z1")
    return labels


def check_against_reference(circuit: qc.Circuit, backend: str, precision: str, batch: int = 3,
                            block_qubits: int = 14) -> None:
    sim = qc.Simulator(backend=backend, precision=precision, block_qubits=block_qubits)
    tol = TOLERANCE[precision]
    params = random_params(circuit, batch=batch, seed=len(circuit))
    expected_states = REFERENCE.statevector(circuit, params)
    np.testing.assert_allclose(sim.statevector(circuit, params), expected_states, atol=tol)
    np.testing.assert_allclose(sim.probabilities(circuit, params), np.abs(expected_states) ** 2, atol=tol)
    labels = observables_for(circuit.num_qubits, np.random.default_rng(len(circuit)))
    np.testing.assert_allclose(sim.expectation(circuit, labels, params), REFERENCE.expectation(circuit, labels, params),
                               atol=tol * 10)
    # single-qubit Z strings and the identity alone: the kernels then fold the marginals from the amplitudes
    singles = [f"Z{q}" for q in range(circuit.num_qubits)] + ["I"]
    np.testing.assert_allclose(sim.expectation(circuit, singles, params),
                               REFERENCE.expectation(circuit, singles, params), atol=tol * 10)


@given(circuit=circuits())
def test_random_circuits_match_reference(backend, precision, circuit):
    check_against_reference(circuit, backend, precision)


@given(circuit=circuits(min_qubits=7, max_qubits=10, max_ops=40))
def test_random_circuits_match_reference_through_gathered_blocks(backend, circuit):
    # block_qubits below n forces the cache-blocked path used for large circuits
    check_against_reference(circuit, backend, "double", batch=2, block_qubits=5)


@pytest.mark.parametrize("threads", [1, 2])
def test_cnot_chains_with_external_controls_match_reference(backend, precision, threads):
    # blocks of 5 of the 10 qubits: most chains cross blocks, their CNOTs taking controls from outside
    c = layered_circuit(10, 3)
    program = compile_circuit(c, block_qubits=5)
    assert len(program.perm_control_qubit) >= 5
    sim = qc.Simulator(backend=backend, precision=precision, block_qubits=5, threads=threads)
    params = random_params(c, batch=1, seed=3)
    np.testing.assert_allclose(sim.statevector(c, params), REFERENCE.statevector(c, params), atol=TOLERANCE[precision])


def test_evolve_large_refuses_external_controls_that_do_not_fit(backend):
    if backend != "cython":
        pytest.skip("numba's kernels take the driver's arrays unchecked")
    kernels = get_backend(backend).kernels
    c = layered_circuit(10, 3)
    p = compile_circuit(c, block_qubits=5)
    u1, u2 = p.bind(random_params(c, batch=1), np.complex128, 1)
    psi = np.empty(1 << 10, np.complex128)

    def evolve(start, qubit, mask):
        kernels.evolve_large(psi, u1[0], u2[0], 10, p.init_u1, p.block_start, p.block_qubit_start, p.block_qubits,
                             p.kind, p.q0, p.q1, p.arg, p.run_start, p.run_gate, p.perm_start, p.perm_table, start,
                             qubit, mask, 1)

    evolve(p.perm_control_start, p.perm_control_qubit, p.perm_control_mask)
    np.testing.assert_allclose(psi, REFERENCE.statevector(c, random_params(c, batch=1))[0], atol=1e-12)
    with pytest.raises(ValueError, match="perm_control_start must have one entry per permutation table plus one"):
        evolve(p.perm_control_start[:-1], p.perm_control_qubit, p.perm_control_mask)
    with pytest.raises(ValueError, match="must have one entry per external control"):
        evolve(p.perm_control_start, p.perm_control_qubit[:-1], p.perm_control_mask)
    with pytest.raises(ValueError, match="an external control is not a qubit of the register"):
        evolve(p.perm_control_start, np.full_like(p.perm_control_qubit, 10), p.perm_control_mask)


@functools.cache
def wide_reference(num_qubits: int) -> tuple[qc.Circuit, np.ndarray, np.ndarray]:
    circuit = layered_circuit(num_qubits, 2)
    params = random_params(circuit, batch=1, seed=5)
    return circuit, params, REFERENCE.statevector(circuit, params)


@pytest.mark.parametrize("threads", [1, 2])
def test_states_of_many_mib_match_reference(backend, precision, threads):
    # 16 MiB (complex128) and 8 MiB (complex64): the Cython gathers read neighbouring slices together
    circuit, params, expected = wide_reference(20)
    sim = qc.Simulator(backend=backend, precision=precision, threads=threads)
    np.testing.assert_allclose(sim.statevector(circuit, params), expected, atol=TOLERANCE[precision])


def test_product_states_wider_than_a_block_match_reference(backend, precision):
    # single-qubit gates only: the program has no block, the product state is its only pass
    c = qc.Circuit(9)
    for q in range(9):
        c.ry(q, qc.Param(q)).rz(q, qc.Param(9 + q))
    assert len(compile_circuit(c, block_qubits=4).block_start) == 1
    check_against_reference(c, backend, precision, block_qubits=4)


def test_seed_circuit_matches_reference(backend, precision):
    check_against_reference(seed_circuit(), backend, precision, batch=20)


def test_batch_equals_one_by_one(backend):
    c = seed_circuit()
    sim = qc.Simulator(backend=backend)
    params = random_params(c, batch=7)
    batch = sim.expectation(c, ["Z0", "X1 Y2", "Z3 Z4"], params)
    single = np.array([sim.expectation(c, ["Z0", "X1 Y2", "Z3 Z4"], row) for row in params])
    np.testing.assert_allclose(batch, single, atol=1e-12)
    np.testing.assert_allclose(sim.statevector(c, params)[3], sim.statevector(c, params[3]), atol=1e-12)


def test_batches_larger_than_one_chunk(backend, monkeypatch):
    c = seed_circuit()
    params = random_params(c, batch=50)
    sim = qc.Simulator(backend=backend)
    cotangent = np.array([0.5, -1.0, 2.0])
    # the adjoint's chunks share one per-use buffer: a chunk must not add into the previous chunk's sums
    whole = sim.vjp(c, ["Z0", "X1 Y2", "Z3 Z4"], params, cotangent, method="adjoint")
    monkeypatch.setattr(driver, "BATCH_CHUNK", 16)
    np.testing.assert_allclose(sim.probabilities(c, params), REFERENCE.probabilities(c, params), atol=1e-10)
    np.testing.assert_allclose(sim.vjp(c, ["Z0", "X1 Y2", "Z3 Z4"], params, cotangent, method="adjoint"), whole,
                               atol=1e-12)


def test_threads_do_not_change_results(backend):
    # one thread runs the batch on the calling thread, two in a parallel region: the same row code, bit for bit
    c = seed_circuit()
    params = random_params(c, batch=64)
    one = qc.Simulator(backend=backend, threads=1, seed=3)
    two = qc.Simulator(backend=backend, threads=2, seed=3)
    for task in (lambda sim: sim.expectation(c, ["Z0", "Z5", "X1 Y2"], params),
                 lambda sim: sim.expectation(c, ["Z0", "X1 Y2"], params, shots=50),
                 lambda sim: sim.statevector(c, params),
                 lambda sim: sim.probabilities(c, params),
                 lambda sim: sim.sample(c, 100, params),
                 # the adjoint's threads take blocks of rows: an odd batch, and fewer rows than threads
                 lambda sim: sim.vjp(c, ["Z0", "Z5", "X1 Y2"], params[:63], [1.0, -0.5, 2.0], method="adjoint"),
                 lambda sim: sim.vjp(c, ["Z0", "Z5", "X1 Y2"], params[:1], [1.0, -0.5, 2.0], method="adjoint")):
        np.testing.assert_array_equal(task(one), task(two))


@st.composite
def native_clifford_circuits(draw, min_qubits: int = 2, max_qubits: int = 6, max_ops: int = 30):
    """Native gates with Clifford constant phases and angles, Z rotations kept virtual (as IonQ runs them).

    Each qubit carries a frame (a :class:`qc.Param` sum, in turns) that RZ(theta) only advances; gpi, gpi2
    and ms take their phase minus the frame. Symbolic ry and h in between cut the Clifford regions apart.
    This is what the compiler's frame normalisation and Clifford folding exist for.
    """
    n = draw(st.integers(min_qubits, max_qubits))
    circuit = qc.Circuit(n)
    frames: list[float | qc.Param | qc.ParamSum] = [0.0] * n
    quarter = st.sampled_from([0.0, 0.25, 0.5, 0.75])
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(["rz", "gpi", "gpi2", "ms", "ms", "native_zz", "ry", "h", "cnot"]))
        a, b = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
        if kind == "rz":
            frames[a] = qc.ParamSum.combine(frames[a], qc.Param(draw(st.integers(0, 3)), 1 / (2 * np.pi)))
        elif kind in ("gpi", "gpi2"):
            circuit.append(kind, (a,), [qc.ParamSum.combine(draw(quarter), -frames[a])])
        elif kind == "ms":
            angle = draw(st.sampled_from([0.25, 0.25, 0.5, 0.75]))
            circuit.ms(a, b, qc.ParamSum.combine(draw(quarter), -frames[a]),
                       qc.ParamSum.combine(draw(quarter), -frames[b]), angle)
        elif kind == "native_zz":
            circuit.native_zz(a, b, draw(st.sampled_from([0.25, -0.25, 0.125])))
        elif kind == "ry":
            circuit.ry(a, qc.Param(draw(st.integers(0, 3))))
        elif kind == "h":
            circuit.h(a)
        else:
            circuit.cnot(a, b)
    if circuit.num_params < 4:
        circuit.rz(0, qc.Param(3))
    return circuit


@given(circuit=native_clifford_circuits())
def test_native_clifford_circuits_match_reference(backend, precision, circuit):
    check_against_reference(circuit, backend, precision)


@given(circuit=native_clifford_circuits(min_qubits=7, max_qubits=8, max_ops=40))
def test_native_clifford_circuits_match_reference_through_gathered_blocks(backend, circuit):
    check_against_reference(circuit, backend, "double", batch=2, block_qubits=5)


@pytest.mark.parametrize("drop_final_phases", [False, True])
def test_native_seed_circuit_matches_reference(backend, precision, drop_final_phases):
    # its 56 MS gates compile back to two permutations (tests/qsim_core/compiler/test_compile.py):
    # the values must not change
    native = qc.to_native(seed_circuit(), drop_final_phases=drop_final_phases)
    check_against_reference(native, backend, precision, batch=20)
    params = random_params(native, batch=20)
    labels = [f"Z{q}" for q in range(8)]
    np.testing.assert_allclose(qc.Simulator(backend=backend, precision=precision).expectation(native, labels, params),
                               REFERENCE.expectation(seed_circuit(), labels, params), atol=TOLERANCE[precision] * 10)


@pytest.mark.parametrize("qubits", [(0, 1), (1, 0), (0, 3), (3, 1), (2, 5), (5, 2)])
def test_structured_two_qubit_kernels_on_every_path(backend, precision, qubits):
    # pair-mixing with complex and real entries (MS with phases 1/4, 0 is real for every angle), diagonal
    a, b = qubits
    c = qc.Circuit(6)
    for q in range(6):
        c.ry(q, qc.Param(q)).rz(q, qc.Param(6 + q))
    c.ms(a, b, 0.25, 0.0, qc.Param(0)).ms(b, a, 0.1, qc.Param(1), qc.Param(2)).xx(a, b, qc.Param(3))
    c.yy(b, a, qc.Param(4)).zz(a, b, qc.Param(5)).native_zz(b, a, qc.Param(6)).ms(a, b, 0.25, 0.0, 0.2)
    for q in range(6):
        c.rx(q, qc.Param(q))
    check_against_reference(c, backend, precision)
    check_against_reference(c, backend, precision, block_qubits=4)  # gathered blocks of 4 of the 6 qubits
