"""The Cython kernels' path for eight parameter sets at a time (``_lanes.pxi``): complex128 programs of U1 and
permutation steps, in calls of ``LANE_CALL_SETS`` sets or more."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import qsim_core as qc
from qsim_core.backends import Job, get_backend, isa
from qsim_core.backends.contract import TASK_EXPVAL, TASK_STATE
from qsim_core.compiler import compile_circuit
from qsim_core.observables import parse_observables
from tests.conftest import TOLERANCE, random_params, seed_circuit
from tests.qsim_core.backends.test_cross_backend import REFERENCE, observables_for
from tests.qsim_core.backends.test_dispatch import level_backend
from tests.strategies import circuits, single_qubit_networks

pytestmark = pytest.mark.skipif("cython" not in qc.available_backends(), reason="the Cython kernels are not built")


def kernels():
    return get_backend("cython").kernels


def packed(circuit: qc.Circuit, zbasis: bool = False):
    program = compile_circuit(circuit, zbasis=zbasis)
    u1, u2 = program.matrix_buffers(8, np.complex128)
    return kernels().pack_small(program.num_qubits, u1.out, u2.out, u1.rotations, u2.rotations,
                                u1.refilled or u2.refilled, *program.small_arguments)


def check_lanes_against_reference(backend, circuit: qc.Circuit, batch: int, threads: int = 1) -> None:
    sim = qc.Simulator(backend=backend, threads=threads, seed=3)
    tol = TOLERANCE["double"]
    params = random_params(circuit, batch=batch, seed=batch)
    states = REFERENCE.statevector(circuit, params)
    np.testing.assert_allclose(sim.statevector(circuit, params), states, atol=tol)
    np.testing.assert_allclose(sim.probabilities(circuit, params), np.abs(states) ** 2, atol=tol)
    n = circuit.num_qubits
    rng = np.random.default_rng(n)
    z_strings = ["I", *(f"Z{q}" for q in range(n)),
                 *(" ".join(f"Z{q}" for q in rng.choice(n, size=rng.integers(1, n + 1), replace=False))
                   for _ in range(3))]
    # Z strings that are independent over GF(2) (repeats and the identity aside) come from the marginals in
    # coordinates where each is one bit; others from a Walsh-Hadamard transform; X and Y from each set's state
    independent = ["I", *(f"Z{q}" for q in range(n))] if n == 1 else ["Z0 Z1", "I", "Z1", "Z0 Z1", f"Z{n - 1}"]
    for labels in (independent, z_strings, observables_for(n, rng)):
        np.testing.assert_allclose(sim.expectation(circuit, labels, params),
                                   REFERENCE.expectation(circuit, labels, params), atol=tol * 10)
        # shot estimates: whole counts (exact sums) of samples from the set's own probabilities
        estimates = sim.expectation(circuit, labels, params, shots=50)
        assert estimates.shape == (batch, len(labels)) and np.all(np.abs(estimates) <= 1)
        np.testing.assert_allclose(estimates * 50, np.round(estimates * 50), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(circuit=single_qubit_networks(), batch=st.integers(6, 20), threads=st.sampled_from([1, 2]))
def test_single_qubit_networks_match_the_reference_eight_sets_at_a_time(circuit, batch, threads):
    assert packed(circuit).lane_path == (circuit.num_qubits <= 10)
    check_lanes_against_reference("cython", circuit, batch, threads)


@settings(max_examples=30, deadline=None)
@given(circuit=circuits(max_qubits=8), batch=st.integers(6, 12))
def test_any_circuit_matches_the_reference_in_calls_of_several_sets(circuit, batch):
    # programs with two-qubit matrices keep the per-set path; the others take the lanes
    check_lanes_against_reference("cython", circuit, batch)


@pytest.mark.parametrize("level", list(isa.LEVELS))
@settings(max_examples=12, deadline=None)
@given(circuit=single_qubit_networks(max_qubits=9))
def test_every_level_runs_eight_sets_at_a_time_as_the_reference(level, circuit):
    # the baseline build has no 64-byte vectors: gcc splits them into SSE2 halves
    check_lanes_against_reference(level_backend(level), circuit, batch=11)


def test_what_takes_the_lanes():
    c = seed_circuit()
    assert packed(c).lane_path and packed(c, zbasis=True).lane_path
    assert not packed(qc.Circuit(11).ry(0, qc.Param(0)).cnot(0, 10)).lane_path  # more than LANES_MAX_QUBITS
    assert not packed(qc.Circuit(3).ry(0, qc.Param(0)).xx(0, 1, qc.Param(0))).lane_path  # a two-qubit matrix
    float_program = compile_circuit(c)
    u1, u2 = float_program.matrix_buffers(8, np.complex64)
    assert not kernels().pack_small(8, u1.out, u2.out, u1.rotations, u2.rotations, False,
                                    *float_program.small_arguments).lane_path


def plan(circuit: qc.Circuit, zbasis: bool = True):
    program = compile_circuit(circuit, zbasis=zbasis)
    u1, u2 = program.matrix_buffers(1, np.complex128)
    init_u1, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table = program.small_arguments
    return kernels().lane_plan(program.num_qubits, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table,
                               u1.rotations, u1.out[0], u1.refilled)


def test_the_plan_follows_the_permutations_and_knows_real_steps():
    # the seed circuit: a product state, a CNOT network, the RY layer (real whatever the angles) and a final
    # network; its eight RY steps are sweeps of three, three and two; the map after the last step is the two
    # networks' composition
    widths, first_slots, offsets, reals, tuples, slot_step, where, stored, constants, layers = plan(seed_circuit())
    assert constants.tolist() == [0]  # every u1 matrix a rotation (the list ends in a 0 not read)
    assert widths.tolist() == [3, 3, 2] and first_slots.tolist() == [0, 3, 6] and reals.tolist() == [1, 1, 1]
    assert layers.tolist() == [0, 0, 0]  # one layer: no step between the sweeps, each qubit once
    assert offsets.tolist() == [0, 256, 512] and tuples.size == 768
    networks = qc.Circuit(8)
    for _ in range(2):
        for i, j in itertools.combinations(range(8), 2):
            networks.cnot(i, j)
    for m in (1, 5, 200):  # nothing moves the amplitude stored at m: it ends as the basis state j with where[j] = m
        moved = REFERENCE.statevector(networks, initial_state=np.eye(256)[m])
        assert where[np.flatnonzero(moved)[0]] == m
    assert sorted(where.tolist()) == list(range(256)) and where[stored[3]] == 8
    # (after a CNOT, so that the steps are not the product state's) an RZ before an RY makes the fused step
    # complex, and with it the sweep
    c = qc.Circuit(2).h(0).cnot(0, 1).rz(0, qc.Param(0)).ry(0, qc.Param(1)).ry(1, qc.Param(1)).h(1)
    assert plan(c, zbasis=False)[0].tolist() == [2] and plan(c, zbasis=False)[3].tolist() == [0]
    c = qc.Circuit(2).h(0).cnot(0, 1).ry(0, qc.Param(0)).h(1)
    assert plan(c, zbasis=False)[3].tolist() == [1]


def test_a_layer_is_sweeps_with_no_step_between_on_distinct_qubits():
    layers = qc.Circuit(5)
    for gate in ("ry", "rx"):
        for q in range(5):
            layers.cnot(q, (q + 1) % 5)
        for q in range(5):
            getattr(layers, gate)(q, qc.Param(q))
    widths, *_, layer = plan(layers, zbasis=False)
    assert widths.tolist() == [3, 2, 3, 2] and layer.tolist() == [0, 0, 2, 2]  # the CNOTs start a layer
    # the compiler fuses a qubit's gates between two-qubit steps, so no qubit comes back within sweeps with no
    # step between; a program where one does (the fourth step moved to qubit 0) has two layers there
    program = compile_circuit(qc.Circuit(4).cnot(0, 1).cnot(1, 2).cnot(2, 3).ry(0, qc.Param(0)).ry(1, qc.Param(1))
                              .ry(2, qc.Param(2)).ry(3, qc.Param(3)), zbasis=False)
    u1, _ = program.matrix_buffers(1, np.complex128)
    init_u1, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table = program.small_arguments
    for fourth, want in ((3, [0, 0]), (0, [0, 1])):
        steps = q0.copy()
        steps[-1] = fourth
        found = kernels().lane_plan(4, kind, steps, q1, arg, run_start, run_gate, perm_start, perm_table,
                                    u1.rotations, u1.out[0], u1.refilled)
        assert found[0].tolist() == [3, 1] and found[9].tolist() == want


def test_a_set_gets_the_same_bits_in_any_lane_and_any_call():
    c = seed_circuit().rx(3, qc.Param(0)).cnot(2, 5).rz(1, 0.3)
    theta = random_params(c, batch=21, seed=2) * 10
    engine = get_backend("cython")
    strings = parse_observables(["Z0", "Z1 Z6", "I"], 8)
    mixed = parse_observables(["Z0", "X1 Y2"], 8)
    whole = [engine.expectation(Job(c, theta, np.complex128, 1), strings),
             engine.expectation(Job(c, theta, np.complex128, 1), mixed),
             engine.statevector(Job(c, theta, np.complex128, 1)),
             engine.probabilities(Job(c, theta, np.complex128, 1))]
    smallest = engine.kernels.LANE_CALL_SETS
    order = np.random.default_rng(0).permutation(21)  # every set in another lane, beside other sets
    shuffled = [engine.expectation(Job(c, theta[order], np.complex128, 2), strings),
                engine.expectation(Job(c, theta[order], np.complex128, 2), mixed),
                engine.statevector(Job(c, theta[order], np.complex128, 2)),
                engine.probabilities(Job(c, theta[order], np.complex128, 2))]
    for got, want in zip(shuffled, whole, strict=True):
        np.testing.assert_array_equal(got, want[order])
    samples = engine.sample(Job(c, theta, np.complex128, 1), 100, key=4)
    estimates = engine.shot_expectation(Job(c, theta, np.complex128, 1), mixed, 100, key=4)
    for start, stop in itertools.pairwise([0, smallest, 2 * smallest + 1, 21]):
        part = Job(c, np.ascontiguousarray(theta[start:stop]), np.complex128, 1)
        np.testing.assert_array_equal(engine.sample(part, 100, key=4, offset=start), samples[start:stop])
        np.testing.assert_array_equal(engine.shot_expectation(part, mixed, 100, key=4, offset=start),
                                      estimates[start:stop])
        np.testing.assert_array_equal(engine.expectation(part, strings), whole[0][start:stop])


@pytest.mark.parametrize("threads", [1, 2])
def test_samples_eight_sets_at_a_time_follow_each_sets_distribution(threads):
    c = seed_circuit().cnot(0, 4).h(2)
    theta = random_params(c, batch=9, seed=6)
    shots = 40_000
    samples = qc.Simulator(backend="cython", threads=threads, seed=11).sample(c, shots, theta)
    for row, probs in zip(samples, REFERENCE.probabilities(c, theta), strict=True):
        counts = np.bincount(row, minlength=256)
        expected = probs * shots
        kept = expected >= 5  # chi-square's rule; the rest pooled
        observed = np.append(counts[kept], counts[~kept].sum())
        wanted = np.append(expected[kept], expected[~kept].sum())
        assert stats.chisquare(observed, wanted).pvalue > 1e-4


def test_matrices_bound_beforehand_or_filled_per_group_give_the_same_bits():
    # run_packed without params reads every matrix from the rows (bound by the compiler, as numba's kernels
    # get them); with params it fills the rotations itself, eight sets at a time, compiled without FMAs as the
    # compiler's fill is: the same matrices, so the same results to the bit
    kernels = get_backend("cython").kernels
    c = qc.Circuit(3).rx(0, qc.Param(0)).h(2).cnot(0, 2).ry(1, qc.Param(1) + qc.Param(2)).gpi2(2, qc.Param(0))
    c.cnot(2, 1).rz(0, qc.Param(1) - qc.Param(2) + 0.4).s(1).swap(0, 1).ry(2, qc.Param(2))
    program = compile_circuit(c, zbasis=False)
    theta = random_params(c, batch=13, seed=6) * 300  # angles of every quadrant, one past SINCOS_LIMIT
    theta[4, 1] = 2e6
    bound = program.bind(theta, np.complex128, 1)
    strings = parse_observables(["Z0", "X1 Y2", "Z1 Z2"], 3).packed(kernels.pack_observables)
    results = []
    for given_params in (theta, None):
        u1, u2 = program.matrix_buffers(13, np.complex128)
        refilled = u1.fill(theta, 1, rotations=given_params is None)
        packed = kernels.pack_small(3, refilled, u2.fill(theta, 1, rotations=given_params is None), u1.rotations,
                                    u2.rotations, True, *program.small_arguments)
        assert packed.lane_path
        values, states = np.empty((13, 3)), np.empty((13, 8), np.complex128)
        kernels.run_packed(packed, given_params, TASK_EXPVAL, values, strings, 0, 0, 0, None)
        kernels.run_packed(packed, given_params, TASK_STATE, states, strings, 0, 0, 0, None)
        results.append((values, states))
        if given_params is None:
            np.testing.assert_array_equal(u1.out, bound[0])
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][1], REFERENCE.statevector(c, theta), atol=1e-10)


def test_the_lane_buffers_kept_between_calls_grow_with_threads_and_strings():
    # the packed program keeps one set of lane buffers per thread between calls: a call with more threads or
    # more Z strings than the last replaces them
    c = seed_circuit()
    theta = random_params(c, batch=1500, seed=9)  # enough work for a second thread
    many = [f"Z{a} Z{b}" for a in range(8) for b in range(a + 1, 8)]  # 28 strings, more than the first buffers
    every = [*many, "Z0", "Z1", "Z3"]
    want = dict(zip(every, REFERENCE.expectation(c, every, theta).T, strict=True))
    for threads, labels in ((1, ["Z0"]), (2, ["Z3"]), (2, many), (1, many[:3]), (2, ["Z1"])):
        got = qc.Simulator(backend="cython", threads=threads).expectation(c, labels, theta)
        np.testing.assert_allclose(got, np.array([want[label] for label in labels]).T, atol=1e-12)


def test_the_plan_reads_no_rotation_slot_before_the_kernels_fill_it():
    # the gate-matrix arrays are allocated empty and the kernels fill the rotations' slots per set: the plan
    # decides real sweeps from the constants and the rotations' generators only (reading a slot's garbage, a
    # signalling NaN among it, raised numpy's "invalid value encountered in reduce" now and then)
    c = seed_circuit().h(3).cnot(1, 2).s(4)
    program = compile_circuit(c, zbasis=True)
    u1, u2 = program.matrix_buffers(8, np.complex128)
    words = u1.out.view(np.uint64)
    for gate in np.asarray(u1.rotations[4]):
        words[0, gate] = 0x7FF0000000000001  # a signalling NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        packed_program = kernels().pack_small(8, u1.out, u2.out, u1.rotations, u2.rotations, False,
                                              *program.small_arguments)
    assert packed_program.lane_path
