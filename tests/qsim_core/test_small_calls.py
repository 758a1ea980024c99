"""The small-call fast path: per-thread gate-matrix arrays and packed kernel arguments reused between calls,
parameter checks without copies.

Every result is compared with the reference backend (the oracle), so a stale or shared buffer shows as a
wrong value, not only as a wrong shape.
"""

from __future__ import annotations

import itertools
import pickle
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core.backends import driver, get_backend
from qsim_core.backends.contract import TASK_EXPVAL, TASK_SAMPLES, TASK_STATE, Job
from qsim_core.compiler import compile_circuit, rotations
from qsim_core.observables import parse_observables
from tests.conftest import TOLERANCE, random_params, seed_circuit

Z_ALL = [f"Z{q}" for q in range(8)]


@pytest.fixture
def sim(backend, precision) -> qc.Simulator:
    return qc.Simulator(backend=backend, precision=precision, threads=1, seed=3)


@pytest.fixture(scope="module")
def oracle() -> qc.Simulator:
    return qc.Simulator(backend="reference")


def close(got, want, precision) -> None:
    np.testing.assert_allclose(got, want, atol=TOLERANCE[precision], rtol=0)


def test_a_returned_result_is_never_overwritten_by_the_next_call(sim, oracle, precision):
    c = seed_circuit()
    first, second = random_params(c, seed=1), random_params(c, seed=2)
    states = [sim.statevector(c, first), sim.statevector(c, second)]
    values = [sim.expectation(c, Z_ALL, first), sim.expectation(c, Z_ALL, second)]
    probabilities = [sim.probabilities(c, first), sim.probabilities(c, second)]
    for theta, state, value, probs in zip((first, second), states, values, probabilities, strict=True):
        close(state, oracle.statevector(c, theta), precision)
        close(value, oracle.expectation(c, Z_ALL, theta), precision)
        close(probs, oracle.probabilities(c, theta), precision)


def test_circuits_of_one_shape_with_different_constants_keep_their_own_matrices(sim, oracle, precision):
    # same gates, same parameter references: only the constant angles differ, and those are written into the
    # reused arrays once, so each program must keep arrays of its own
    circuits = [qc.Circuit(3).rx(0, angle).ry(1, qc.Param(0)).cnot(0, 2).rz(2, qc.Param(1)).h(1)
                for angle in (0.3, 1.1)]
    theta = np.array([0.7, -0.4])
    for _ in range(2):
        for c in circuits:
            close(sim.expectation(c, ["Z0", "X1", "Z2"], theta), oracle.expectation(c, ["Z0", "X1", "Z2"], theta),
                  precision)


def test_a_circuit_extended_after_a_call_runs_its_new_gates(sim, oracle, precision):
    c = qc.Circuit(2).ry(0, qc.Param(0)).cnot(0, 1)
    theta = np.array([0.9])
    close(sim.probabilities(c, theta), oracle.probabilities(c, theta), precision)
    c.rx(1, 0.4).rz(0, qc.Param(1))
    theta = np.array([0.9, 0.2])
    close(sim.statevector(c, theta), oracle.statevector(c, theta), precision)
    close(sim.probabilities(c, theta), oracle.probabilities(c, theta), precision)


def test_alternating_batch_sizes_and_precisions(backend, oracle):
    c = seed_circuit()
    sims = {p: qc.Simulator(backend=backend, precision=p, threads=1) for p in ("double", "single")}
    # the kept arrays grow (1, 4, 16, 32 rows) and then serve smaller batches
    for batch in (1, 3, 1, 16, 17, 3):
        theta = random_params(c, batch=batch, seed=batch)
        want = oracle.expectation(c, Z_ALL, theta)
        for precision, sim in sims.items():
            close(sim.expectation(c, Z_ALL, theta), want, precision)


@pytest.mark.parametrize("kept_bytes", [0, 1 << 20], ids=["nothing kept", "the last few kept"])
def test_programs_evicted_from_the_kept_arrays_bind_afresh_and_agree(sim, oracle, precision, monkeypatch,
                                                                      kept_bytes):
    monkeypatch.setattr(driver, "REUSE_MAX_BYTES", kept_bytes)
    circuits = []
    for n in (3, 13, 5):
        c = qc.Circuit(n)
        for q in range(n):
            c.ry(q, qc.Param(q))
        for q in range(n - 1):
            c.cnot(q, q + 1)
        circuits.append(c)
    for c in circuits * 2:
        theta = random_params(c, batch=40, seed=c.num_qubits)
        observables = ["Z0", f"Z{c.num_qubits - 1}", "X1 X2"]
        close(sim.expectation(c, observables, theta), oracle.expectation(c, observables, theta), precision)


def test_a_chunked_batch_matches_the_whole(sim, oracle, precision, monkeypatch):
    c = seed_circuit()
    theta = random_params(c, batch=5, seed=4)
    whole = sim.sample(c, 32, theta)
    monkeypatch.setattr(driver, "BATCH_CHUNK", 2)
    chunked_sim = qc.Simulator(backend=sim.backend, precision=precision, threads=1, seed=3)
    np.testing.assert_array_equal(chunked_sim.sample(c, 32, theta), whole)
    close(chunked_sim.expectation(c, ["Z0", "X1 Y2"], theta), oracle.expectation(c, ["Z0", "X1 Y2"], theta),
          precision)


def test_threads_sharing_a_simulator_get_their_own_results(sim, oracle, precision):
    c = seed_circuit()
    thetas = [random_params(c, seed=s) for s in range(4)]
    wants = [oracle.expectation(c, Z_ALL, theta) for theta in thetas]
    failures: list[str] = []

    def work(k: int) -> None:
        for _ in range(50):
            got = sim.expectation(c, Z_ALL, thetas[k])
            if not np.allclose(got, wants[k], atol=TOLERANCE[precision], rtol=0):
                failures.append(f"thread {k}: {got} != {wants[k]}")
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(thetas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]


def test_a_job_may_name_its_dtype_as_a_numpy_dtype(backend, oracle):
    c = seed_circuit()
    theta = random_params(c, batch=2)
    got = get_backend(backend).expectation(Job(c, theta, np.dtype(np.complex64), 1), parse_observables(Z_ALL, 8))
    close(got, oracle.expectation(c, Z_ALL, theta), "single")


@pytest.mark.parametrize("params", [
    [0.5, -0.25, 1.0],
    np.array([0.5, -0.25, 1.0], dtype=np.float32),
    np.array([0, 1, 2]),
    np.array([[0.5, 9.0, -0.25, 9.0, 1.0, 9.0]])[0, ::2],
    np.asfortranarray(np.array([[0.5, -0.25, 1.0], [0.1, 0.2, 0.3]]))[:1],
])
def test_every_array_like_gives_what_its_float64_copy_gives(sim, params):
    c = qc.Circuit(2).ry(0, qc.Param(0)).rx(1, qc.Param(1)).cnot(0, 1).rz(1, qc.Param(2))
    want = sim.statevector(c, np.array(np.asarray(params, dtype=np.float64)))
    np.testing.assert_array_equal(sim.statevector(c, params), want)


@pytest.mark.parametrize("params", [0.5, np.float64(0.5), np.array(0.5), [[[0.5]]]])
def test_a_scalar_or_3d_params_is_refused(params):
    c = qc.Circuit(1).ry(0, qc.Param(0))
    with pytest.raises(qc.ParameterError, match=r"params must be 1-D \(P,\) or 2-D \(B, P\); got shape"):
        qc.Simulator(backend="reference").probabilities(c, params)


def test_the_callers_parameter_array_is_left_as_it_was(sim):
    c = seed_circuit()
    theta = random_params(c)
    kept = theta.copy()
    sim.expectation(c, Z_ALL, theta)
    sim.sample(c, 16, theta)
    np.testing.assert_array_equal(theta, kept)


@given(batch=st.sampled_from([None, 1, 2, 5, 120]), where=st.integers(0, 10_000),
       bad=st.sampled_from([np.inf, -np.inf, np.nan, "inf-inf"]))
def test_any_non_finite_entry_is_named_small_or_large(batch, where, bad):
    # 40 and 5 x 40 entries take the dot product, 120 x 40 the numpy sum (see simulator._SMALL_PARAMS)
    sim = qc.Simulator(backend="reference")
    c = seed_circuit()
    theta = random_params(c, batch=batch)
    flat = theta.reshape(-1)
    first = where % flat.size
    if bad == "inf-inf":  # opposite infinities cancel to NaN in a sum: still caught
        flat[first] = np.inf
        flat[(first + 1 + where // flat.size) % flat.size if flat.size > 1 else first] = -np.inf
        first = min(first, int(np.flatnonzero(~np.isfinite(flat))[0]))
    else:
        flat[first] = bad
    row, col = divmod(first, c.num_params)
    at = rf"params\[{col}\]" if batch is None else rf"params\[{row}, {col}\]"
    with pytest.raises(qc.ParameterError, match=at + r" is .* \(not finite\); parameter " + str(col)):
        sim.expectation(c, "Z0", theta)


@pytest.mark.parametrize("batch", [None, 4, 120])
def test_finite_values_whose_sum_overflows_pass_without_warnings(backend, batch):
    c = seed_circuit()
    theta = np.full((c.num_params,) if batch is None else (batch, c.num_params), 1e307)  # 40 of them: inf
    sim = qc.Simulator(backend=backend, threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sim.expectation(c, "Z0", theta)
    assert np.isfinite(got).all() and got.shape == ((1,) if batch is None else (batch, 1))


def test_z_only_follows_the_strings():
    assert parse_observables(["Z0", "Z1 Z2", "I"], 3).z_only
    assert not parse_observables(["Z0", "X1"], 3).z_only
    assert not parse_observables("Y2", 3).z_only


@pytest.mark.parametrize("batch", [None, 3])
def test_rotations_of_every_kind_and_width_filled_in_one_call_agree(sim, oracle, precision, batch):
    # one fill call writes the RX, RY, RZ (terms: one, two, three) and XX, YY, ZZ instances at their own slots,
    # between a tabled gate (GPi2) and the compiler's constants; each against the reference's matrices
    c = qc.Circuit(3).rx(0, qc.Param(0)).ry(1, qc.Param(1) + qc.Param(2)).h(2).rz(2, qc.Param(0) + qc.Param(1) * 2)
    c.xx(0, 1, qc.Param(2) * 0.5).gpi2(2, qc.Param(3)).yy(1, 2, 0.3).zz(0, 2, qc.Param(3) + qc.Param(0) + 0.1)
    c.rz(1, qc.Param(1) + qc.Param(2) + qc.Param(3)).rx(2, 0.7).ry(0, qc.Param(3) - 0.2).cnot(2, 0)
    theta = random_params(c, batch=batch, seed=5)
    for observables in (["Z0", "Z1 Z2"], ["X0", "Y1 Z2", "X2"]):
        close(sim.expectation(c, observables, theta), oracle.expectation(c, observables, theta), precision)
    close(sim.statevector(c, theta), oracle.statevector(c, theta), precision)


def test_packed_observables_are_left_out_of_a_pickled_copy(backend):
    strings = parse_observables(["Z0", "X1 Y2"], 3)
    kernels = get_backend(backend).kernels
    assert strings.packed(kernels.pack_observables) is strings.packed(kernels.pack_observables)  # packed once
    copy = pickle.loads(pickle.dumps(strings))
    assert copy.labels == strings.labels and np.array_equal(copy.xmask, strings.xmask)
    assert copy.packed(kernels.pack_observables) is not strings.packed(kernels.pack_observables)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_the_kernels_fill_the_rotations_as_the_compiler_does(backend, dtype):
    # run_packed writes the rotation matrices into the packed arrays itself (the driver fills only the others)
    kernels = get_backend(backend).kernels
    c = qc.Circuit(3).rx(0, qc.Param(0)).ry(1, qc.Param(1) + qc.Param(2)).xx(0, 2, qc.Param(2) * 0.5).h(1)
    c.zz(1, 2, 0.3).gpi2(2, qc.Param(0)).rz(0, qc.Param(1) - qc.Param(2) + 0.4)
    program = compile_circuit(c, zbasis=False, block_qubits=12, from_zero=True)
    theta = random_params(c, batch=3, seed=6) * 300  # angles of every quadrant, some past SINCOS_LIMIT
    theta[0, 1] = 2e6
    u1, u2 = program.matrix_buffers(3, dtype)
    # refilled=True: the kernels write each set's rotations into its row of the arrays, which this reads back
    packed = kernels.pack_small(program.num_qubits, u1.fill(theta, 1, rotations=False),
                                u2.fill(theta, 1, rotations=False), u1.rotations, u2.rotations, True,
                                *program.small_arguments)
    states = np.empty((3, 8), dtype)
    kernels.set_threads(1)
    kernels.run_packed(packed, theta, TASK_STATE, states, parse_observables("I", 3).packed(kernels.pack_observables),
                       0, 0, 0, None)
    want = program.bind(theta, dtype, 1)
    # bit for bit (the Cython build contracts nothing into FMAs here, as numba does not): the forward pass (filled
    # by the kernels) and the adjoint sweep (bound by numba) must run the same matrices
    np.testing.assert_array_equal(u1.out, want[0])
    np.testing.assert_array_equal(u2.out, want[1])
    if backend == "cython":
        assert kernels.SINCOS_LIMIT == rotations.SINCOS_LIMIT


def test_a_packed_program_refuses_arrays_of_the_wrong_shape(backend):
    if backend != "cython":
        pytest.skip("numba's kernels take the driver's arrays unchecked")
    kernels = get_backend(backend).kernels
    c = seed_circuit()
    program = compile_circuit(c, zbasis=True, block_qubits=12, from_zero=True)
    theta = random_params(c, batch=2)
    u1, u2 = program.matrix_buffers(2, np.complex128)
    packed = kernels.pack_small(program.num_qubits, u1.out, u2.out, u1.rotations, u2.rotations, True,
                                *program.small_arguments)
    strings = parse_observables(Z_ALL, 8).packed(kernels.pack_observables)
    with pytest.raises(ValueError, match=r"out must be \[2, 8\] for task 2, got \[1, 8\]"):
        kernels.run_packed(packed, theta, TASK_EXPVAL, np.zeros((1, 8)), strings, 0, 0, 0, None)
    with pytest.raises(ValueError, match=r"initial must be \[2, 256\]"):
        kernels.run_packed(packed, theta, TASK_EXPVAL, np.zeros((2, 8)), strings, 0, 0, 0,
                           np.zeros((2, 4), np.complex128))
    with pytest.raises(ValueError, match="shots must be positive"):
        kernels.run_packed(packed, theta, TASK_SAMPLES, np.zeros((2, 0), np.int64), strings, 0, 0, 0, None)
    for params in (random_params(c, batch=3), theta[:, :20]):  # fewer rows than packed run on the first rows
        with pytest.raises(ValueError, match=r"at most 2 rows \(unless packed with refilled=False\), and params"):
            kernels.run_packed(packed, np.ascontiguousarray(params), TASK_EXPVAL, np.zeros((2, 8)), strings, 0, 0,
                               0, None)
    with pytest.raises(ValueError, match="rotation slot 99 is outside the"):
        index, scale, offset, pauli, slot = u1.rotations
        kernels.pack_small(program.num_qubits, u1.out, u2.out, (index, scale, offset, pauli, slot + 99),
                           u2.rotations, False, *program.small_arguments)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("strings", [["Z0", "X1 Y2", "Z3 Z7"], ["Z0", "Z3 Z7", "Z5"]])
def test_a_batch_cut_into_small_calls_gives_what_the_whole_gives(backend, dtype, strings):
    # the kernels fill each parameter set's rotations as they reach it, and the cython kernels run a complex128
    # call of LANE_CALL_SETS sets or more eight at a time, each set in a lane of its own: nothing may depend on
    # where a set stands or which sets share its call (down to calls of LANE_CALL_SETS; a smaller call takes
    # the per-set path, equal to rounding)
    c = seed_circuit()
    theta = random_params(c, batch=36, seed=8) * 50
    engine = get_backend(backend)
    strings = parse_observables(strings, 8)
    whole_values = engine.expectation(Job(c, theta, dtype, 1), strings)
    whole_samples = engine.sample(Job(c, theta, dtype, 1), 64, key=11)
    smallest = getattr(engine.kernels, "LANE_CALL_SETS", 1) if dtype == np.complex128 else 1
    sizes = [3] * 12 if smallest <= 3 else [smallest, smallest + 1, 8, 36 - 2 * smallest - 9, 1]
    for start, stop in itertools.pairwise(np.cumsum([0, *sizes])):
        part = Job(c, np.ascontiguousarray(theta[start:stop]), dtype, 1)
        if stop - start < smallest:
            np.testing.assert_allclose(engine.expectation(part, strings), whole_values[start:stop], rtol=0,
                                       atol=1e-14)
            continue
        np.testing.assert_array_equal(engine.expectation(part, strings), whole_values[start:stop])
        np.testing.assert_array_equal(engine.sample(part, 64, key=11, offset=start), whole_samples[start:stop])


@pytest.mark.parametrize("refilled", [False, True])
def test_a_batch_past_the_chunk_size_is_one_kernel_call_unless_sets_bind_other_matrices(backend, monkeypatch,
                                                                                      refilled):
    # sets that differ only in their rotations (which the kernels fill) go to the kernels in one call, which
    # releases the GIL once; a circuit with other matrices bound per set (an MS angle) goes chunk by chunk. Either
    # way the results are those of one chunk, bit for bit
    c = seed_circuit().xx(1, 4, qc.Param(2)).ms(2, 6, 0.1, 0.2, 0.15)  # a two-qubit rotation and a constant
    if refilled:
        c.ms(0, 5, qc.Param(3), 0.1, qc.Param(9) * 0.1)
    params = random_params(c, batch=50, seed=4)
    kernels = get_backend(backend).kernels

    def tasks(sim: qc.Simulator) -> list[np.ndarray]:
        return [sim.expectation(c, ["Z0", "X1 Y2"], params), sim.sample(c, 32, params), sim.statevector(c, params),
                sim.expectation(c, ["Z0", "Z3"], params, shots=40),
                sim.vjp(c, ["Z0", "X1 Y2"], params, [1.0, -0.5], method="adjoint")]

    whole = tasks(qc.Simulator(backend=backend, threads=2, seed=5))
    calls, adjoint_calls = [], []
    run_packed = kernels.run_packed
    adjoint_kernels = get_backend(backend).adjoint_kernels
    adjoint_packed = adjoint_kernels.adjoint_packed

    def counted(packed, params, *rest):
        calls.append(len(params))
        return run_packed(packed, params, *rest)

    def adjoint_counted(program, gates, params, *rest):
        adjoint_calls.append(len(params))
        return adjoint_packed(program, gates, params, *rest)

    monkeypatch.setattr(driver, "BATCH_CHUNK", 16)
    monkeypatch.setattr(kernels, "run_packed", counted)
    monkeypatch.setattr(adjoint_kernels, "adjoint_packed", adjoint_counted)
    for got, want in zip(tasks(qc.Simulator(backend=backend, threads=2, seed=5)), whole, strict=True):
        np.testing.assert_array_equal(got, want)
    # (the MS with a parameter in its phase is not a rotation either: its derivative matrices are bound per set);
    # the last chunk takes rows from the one before up to the backend's stable_rows
    last = max(2, get_backend(backend).stable_rows)
    assert calls == ([16, 16, 18 - last, last] if refilled else [50]) * 4
    assert adjoint_calls == ([16, 16, 16, 2] if refilled else [50])


def test_a_program_with_matrices_bound_per_set_refuses_more_sets_than_rows(backend):
    # its matrices other than the rotations are the caller's, one row per set: a longer batch has none to run on
    kernels = get_backend(backend).kernels
    c = seed_circuit()
    program = compile_circuit(c, zbasis=True, block_qubits=12, from_zero=True)
    u1, u2 = program.matrix_buffers(2, np.complex128)
    strings = parse_observables(Z_ALL, 8).packed(kernels.pack_observables)
    theta = random_params(c, batch=3)
    refilled = kernels.pack_small(program.num_qubits, u1.out, u2.out, u1.rotations, u2.rotations, True,
                                  *program.small_arguments)
    with pytest.raises(ValueError, match=r"at most 2 rows \(unless packed with refilled=False\)"):
        kernels.run_packed(refilled, theta, TASK_EXPVAL, np.zeros((3, 8)), strings, 0, 0, 0, None)
    alike = kernels.pack_small(program.num_qubits, u1.out, u2.out, u1.rotations, u2.rotations, False,
                               *program.small_arguments)
    values = np.zeros((3, 8))
    kernels.run_packed(alike, theta, TASK_EXPVAL, values, strings, 0, 0, 0, None)
    np.testing.assert_allclose(values, qc.Simulator(backend="reference").expectation(c, Z_ALL, theta),
                               atol=TOLERANCE["double"])
