"""EstimatorV2 against Qiskit's StatevectorEstimator: library circuits, broadcasting, random circuits, shots.

Shot estimates are checked statistically: with a fixed seed each check is
deterministic, and its bound (5 standard errors) would fail by chance with
probability below 1e-6 per value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import (
    QFTGate,
    efficient_su2,
    get_standard_gate_name_mapping,
    n_local,
    pauli_two_design,
    real_amplitudes,
    zz_feature_map,
)
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import Operator, SparseObservable, SparsePauliOp, Statevector
from qiskit_ionq import GPI2Gate, GPIGate, MSGate, ZZGate

import qsim_core as qc
from qsim_core.qiskit import EstimatorV2


def both(pub) -> tuple[np.ndarray, np.ndarray]:
    """evs of one pub from ours and from Qiskit's StatevectorEstimator."""
    ours = EstimatorV2().run([pub]).result()[0].data.evs
    reference = StatevectorEstimator().run([pub]).result()[0].data.evs
    return ours, reference


def random_values(circuit: QuantumCircuit, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, shape + (circuit.num_parameters,))


def with_qft(n: int) -> QuantumCircuit:
    circuit = real_amplitudes(n, reps=1)
    circuit.append(QFTGate(n), range(n))
    return circuit


LIBRARY = {
    "real_amplitudes": lambda: real_amplitudes(4, reps=2),
    "efficient_su2": lambda: efficient_su2(3, su2_gates=["rx", "y", "rz"], reps=2, entanglement="circular"),
    "n_local crx": lambda: n_local(3, ["ry", "rz"], "crx", reps=2),
    "n_local rzz+cz": lambda: n_local(3, ["h", "p"], ["rzz", "cz"], reps=1),
    "pauli_two_design": lambda: pauli_two_design(4, reps=2, seed=3),
    "zz_feature_map": lambda: zz_feature_map(3, reps=2),
    "qft": lambda: with_qft(3),
}


@pytest.mark.parametrize("name", list(LIBRARY))
def test_library_circuits_match_statevector_estimator(name):
    circuit = LIBRARY[name]()
    n = circuit.num_qubits
    observables = [SparsePauliOp(["Z" * n, "X" + "I" * (n - 1)], [0.5, -1.5]), "Y" * n, "I" * (n - 1) + "X"]
    values = random_values(circuit, (4, 1))
    ours, reference = both((circuit, observables, values))
    assert ours.shape == reference.shape == (4, 3)
    np.testing.assert_allclose(ours, reference, atol=1e-10)


@pytest.mark.parametrize("values_shape, observables_shape", [((), ()), ((3,), ()), ((2, 3), (3,)),
                                                               ((2, 1), (1, 4)), ((5,), (5,))])
def test_broadcasting_follows_qiskit(values_shape, observables_shape):
    circuit = real_amplitudes(2, reps=1)
    labels = np.array(["ZZ", "XI", "IY", "XY", "ZI"])
    size = int(np.prod(observables_shape))
    observables = labels[:size].reshape(observables_shape).tolist() if observables_shape else "ZZ"
    values = random_values(circuit, values_shape, seed=7)
    result = EstimatorV2().run([(circuit, observables, values)]).result()[0]
    reference = StatevectorEstimator().run([(circuit, observables, values)]).result()[0]
    assert result.data.shape == reference.data.shape == np.broadcast_shapes(values_shape, observables_shape)
    np.testing.assert_allclose(result.data.evs, reference.data.evs, atol=1e-12)
    np.testing.assert_array_equal(result.data.stds, 0.0)
    assert result.metadata["target_precision"] == 0.0


def test_projector_observables_are_expanded():
    circuit = efficient_su2(2, reps=1)
    observables = [SparseObservable.from_label("0+"), SparseObservable.from_list([("rl", 0.5), ("1Z", 2.0)])]
    values = random_values(circuit, (3,), seed=4)
    ours = EstimatorV2().run([(circuit, [[o] for o in observables], values)]).result()[0].data.evs
    for row, row_values in enumerate(values):
        state = Statevector(circuit.assign_parameters(row_values))
        for k, observable in enumerate(observables):  # the reference: the projectors' dense matrices
            assert abs(ours[k, row] - state.expectation_value(Operator(observable.to_matrix())).real) < 1e-12


def test_several_pubs_in_one_run():
    a, b = real_amplitudes(2, reps=1), efficient_su2(3, reps=1)
    bound = a.assign_parameters(random_values(a, (), seed=2))
    pubs = [(a, "ZZ", random_values(a, (2,))), (b, ["XXX", "ZZZ"], random_values(b, (2, 2), seed=1)), (bound, "XI")]
    ours = EstimatorV2().run(pubs).result()
    reference = StatevectorEstimator().run(pubs).result()
    assert len(ours) == 3
    assert ours.metadata == {"version": 2}
    for got, expected in zip(ours, reference, strict=True):
        assert got.data.evs.shape == expected.data.evs.shape
        np.testing.assert_allclose(got.data.evs, expected.data.evs, atol=1e-12)


def test_ionq_native_gates_run_directly_and_match():
    circuit = QuantumCircuit(3)
    circuit.append(GPI2Gate(0.1), [0])
    circuit.append(GPIGate(0.3), [1])
    circuit.append(MSGate(0.2, 0.7, 0.15), [0, 2])
    circuit.append(ZZGate(0.3), [1, 2])
    circuit.append(MSGate(0.05, 0.4), [2, 1])
    from qsim_core.qiskit.translate import translate

    assert [op.name for op in translate(circuit, measurements=False).circuit] == \
        ["gpi2", "gpi", "ms", "native_zz", "ms"]
    ours, reference = both((circuit, ["ZZZ", "XIY", "IYX", "ZXI"]))
    np.testing.assert_allclose(ours, reference, atol=1e-12)


#: Qiskit gates by name: ones the engine runs directly and ones the transpiler decomposes
GATES_BY_ARITY = {
    1: ["h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "sxdg", "rx", "ry", "rz", "p", "u1", "u", "r"],
    2: ["cx", "cz", "cy", "swap", "iswap", "ch", "ecr", "dcx", "rxx", "ryy", "rzz", "rzx", "crx", "cry", "crz",
        "cp", "cu"],
}


@st.composite
def random_circuits(draw) -> QuantumCircuit:
    """Random circuits over the gates of :data:`GATES_BY_ARITY`; each angle a number or ``scale * a_k + offset``."""
    n = draw(st.integers(1, 4))
    circuit = QuantumCircuit(n)
    standard = get_standard_gate_name_mapping()
    numbers = st.floats(-4.0, 4.0, allow_nan=False)
    expressions = st.builds(lambda k, scale, offset: scale * PARAMETERS[k] + offset,
                            st.integers(0, len(PARAMETERS) - 1), st.floats(-2.0, 2.0, allow_nan=False), numbers)
    for _ in range(draw(st.integers(0, 12))):
        arity = draw(st.sampled_from([1, 2] if n > 1 else [1]))
        template = standard[draw(st.sampled_from(GATES_BY_ARITY[arity]))]
        angles = [draw(st.one_of(numbers, expressions)) for _ in template.params]
        circuit.append(type(template)(*angles), draw(st.permutations(range(n)))[:arity])
    return circuit


PARAMETERS = ParameterVector("a", 3)


@settings(max_examples=40)
@given(circuit=random_circuits(), letters=st.lists(st.sampled_from("IXYZ"), min_size=4, max_size=4))
def test_random_circuits_match_statevector_estimator(circuit, letters):
    label = "".join(letters[:circuit.num_qubits])
    values = random_values(circuit, (2, 1), seed=len(circuit))
    ours, reference = both((circuit, [label, "Z" * circuit.num_qubits], values))
    np.testing.assert_allclose(ours, reference, atol=1e-10)


def test_shot_estimates_are_statistically_right_and_reproducible():
    circuit = efficient_su2(3, reps=1)
    values = random_values(circuit, (20, 1), seed=5)
    observables = ["ZZI", "XIX", SparsePauliOp(["IYI", "ZII"], [0.5, 0.5])]
    precision = 0.02
    exact = EstimatorV2().run([(circuit, observables, values)]).result()[0].data.evs
    result = EstimatorV2(seed=11).run([(circuit, observables, values)], precision=precision).result()[0]
    shots = math.ceil(1 / precision**2)
    assert result.metadata == {"target_precision": precision, "shots": shots, "circuit_metadata": circuit.metadata}
    assert np.all(result.data.stds > 0) and np.all(result.data.stds <= 1.0 / math.sqrt(shots) + 1e-12)
    assert np.all(np.abs(result.data.evs - exact) <= 5 * np.maximum(result.data.stds, 1e-3))
    again = EstimatorV2(seed=11).run([(circuit, observables, values)], precision=precision).result()[0]
    np.testing.assert_array_equal(again.data.evs, result.data.evs)
    other = EstimatorV2(seed=12).run([(circuit, observables, values)], precision=precision).result()[0]
    assert not np.array_equal(other.data.evs, result.data.evs)


def test_the_standard_error_matches_the_spread_of_estimates():
    circuit = QuantumCircuit(1)
    circuit.ry(1.0, 0)  # <Z> = cos 1, Var = sin^2 1
    estimator = EstimatorV2(default_precision=0.05, seed=3)
    pub = (circuit, "Z", np.zeros((400, 0)))
    result = estimator.run([pub]).result()[0].data
    spread = np.std(result.evs)
    expected = math.sin(1.0) / math.sqrt(400)
    assert abs(np.mean(result.evs) - math.cos(1.0)) < 5 * expected / math.sqrt(400)
    assert abs(spread - expected) < 0.15 * expected  # the spread of 400 estimates is within ~3.5% (1 sigma)
    # each std is the documented sqrt(1 - ev^2) / sqrt(shots) of its own estimate (400 shots each), and they
    # scatter about the true one by about 3 % each (so a bound per std would fail some seed): their mean by 0.2 %
    np.testing.assert_allclose(result.stds, np.sqrt(1.0 - result.evs**2) / math.sqrt(400), rtol=1e-12)
    assert abs(np.mean(result.stds) - expected) < 0.02 * expected


def test_bad_input_raises_clear_errors():
    circuit = real_amplitudes(2, reps=1)
    with pytest.raises(ValueError, match="precision"):
        EstimatorV2(default_precision=-0.1)
    with pytest.raises(ValueError, match="precision"):
        EstimatorV2().run([(circuit, "ZZ", random_values(circuit, ()))], precision=-1.0)
    with pytest.raises(ValueError):  # Qiskit's pub validation: wrong number of values
        EstimatorV2().run([(circuit, "ZZ", [0.1, 0.2])])
    with pytest.raises(ValueError):  # observable on the wrong number of qubits
        EstimatorV2().run([(circuit, "ZZZ", random_values(circuit, ()))])
    with pytest.raises(ValueError, match="seed"):
        EstimatorV2(seed="seven")
    with pytest.raises(qc.BackendUnavailableError):
        EstimatorV2(backend="no-such-backend")


def test_a_generator_seed_is_drawn_from_per_run():
    circuit = real_amplitudes(1, reps=1)
    pub = (circuit, "Z", random_values(circuit, (3,)))
    first = EstimatorV2(seed=np.random.default_rng(9), default_precision=0.1).run([pub]).result()[0].data.evs
    same = EstimatorV2(seed=np.random.default_rng(9), default_precision=0.1).run([pub]).result()[0].data.evs
    np.testing.assert_array_equal(first, same)
