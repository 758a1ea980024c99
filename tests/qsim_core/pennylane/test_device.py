"""qsim_core.qubit against PennyLane's default.qubit: templates, measurements, broadcasting, wires, errors."""

from __future__ import annotations

import doctest

import numpy as np
import pennylane as qml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pennylane.exceptions import DeviceError, WireError

import qsim_core as qc
import qsim_core.pennylane.device
from qsim_core.pennylane import QsimQubit
from qsim_core.pennylane.translate import translate

from ...conftest import COMPILED

TOL = {"double": 1e-10, "single": 1e-5}
N = 4


def both(circuit, wires=N, **kwargs):
    """The QNode ``circuit`` on our device and on default.qubit."""
    return (qml.QNode(circuit, qml.device("qsim_core.qubit", wires=wires, **kwargs)),
            qml.QNode(circuit, qml.device("default.qubit", wires=wires)))


def assert_same(ours, reference, atol=1e-10):
    if isinstance(reference, (tuple, list)):
        assert isinstance(ours, type(reference)) and len(ours) == len(reference)
        for a, b in zip(ours, reference, strict=True):
            assert_same(a, b, atol)
        return
    assert np.shape(ours) == np.shape(reference)
    np.testing.assert_allclose(ours, reference, atol=atol, rtol=0)


RNG = np.random.default_rng(16)
FEATURES = RNG.uniform(-np.pi, np.pi, N)
BATCH = RNG.uniform(-np.pi, np.pi, (5, N))


def _template(name, x):
    """One of PennyLane's templates on N wires, fed with x (features, shape (N,) or (B, N))."""
    wires = range(N)
    weights = np.random.default_rng(1).uniform(-np.pi, np.pi, 64)
    if name == "strongly_entangling":
        qml.AngleEmbedding(x, wires=wires)
        qml.StronglyEntanglingLayers(weights[:24].reshape(2, N, 3), wires=wires)
    elif name == "basic_entangler":
        qml.AngleEmbedding(x, wires=wires, rotation="Y")
        qml.BasicEntanglerLayers(weights[:8].reshape(2, N), wires=wires, rotation=qml.RZ)
    elif name == "iqp":
        qml.IQPEmbedding(x, wires=wires, n_repeats=2)
        qml.SimplifiedTwoDesign(weights[:4], weights[4:16].reshape(2, N - 1, 2), wires=wires)
    elif name == "qaoa":
        qml.QAOAEmbedding(x, weights[:16].reshape(2, 8), wires=wires)
    elif name == "amplitude":
        qml.AmplitudeEmbedding(np.concatenate([x, x[..., ::-1]], axis=-1), wires=wires[:3], normalize=True,
                               pad_with=0.5)
        qml.RandomLayers(weights[:6].reshape(1, 6), wires=wires, seed=3)
    elif name == "controlled":
        qml.AngleEmbedding(x, wires=wires)
        qml.CRX(weights[0], wires=[0, 1])
        qml.Toffoli(wires=[1, 2, 3])
        qml.QubitUnitary(qml.matrix(qml.Rot(*weights[1:4], wires=0) @ qml.IsingXY(weights[5], wires=[0, 1])),
                         wires=[2, 0])
        qml.DoubleExcitationPlus(weights[6], wires=[0, 1, 2, 3])
        qml.ctrl(qml.PhaseShift(weights[7], wires=3), control=[0, 1])


TEMPLATES = ["strongly_entangling", "basic_entangler", "iqp", "qaoa", "amplitude", "controlled"]
HAMILTONIAN = qml.Hamiltonian([0.5, -1.2, 0.3], [qml.Z(0) @ qml.Z(3), qml.X(1) @ qml.Y(2), qml.Identity(0)])


def _measure_all():
    return (qml.expval(qml.Z(0)), qml.expval(HAMILTONIAN), qml.expval(qml.X(1) @ qml.Y(0) + 2 * qml.Z(2)),
            qml.var(qml.X(2)), qml.probs(wires=[3, 1]), qml.expval(qml.Hermitian(HAMILTONIAN.matrix()[:4, :4] +
                                                                                  np.eye(4), wires=[2, 0])),
            qml.expval(qml.Projector([1, 0], wires=[1, 3])), qml.density_matrix(wires=[1]))


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("features", [FEATURES, BATCH], ids=["single", "broadcast"])
def test_templates_match_default_qubit(template, features):
    def circuit(x):
        _template(template, x)
        return _measure_all()

    ours, reference = both(circuit)
    assert_same(ours(features), reference(features))


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("precision", ["double", "single"])
def test_state_matches_default_qubit_on_every_backend_and_precision(backend, precision):
    def circuit(x):
        _template("controlled", x)
        return qml.state()

    ours, reference = both(circuit, backend=backend, precision=precision)
    assert_same(ours(BATCH), reference(BATCH), atol=TOL[precision])


def test_broadcast_runs_as_one_tape_and_tapes_of_one_structure_share_the_circuit():
    dev = qml.device("qsim_core.qubit", wires=N)

    @qml.qnode(dev)
    def circuit(x):
        _template("strongly_entangling", x)
        return qml.expval(qml.Z(0))

    with qml.Tracker(dev) as tracker:
        circuit(BATCH)
    assert tracker.totals["simulations"] == 1  # one tape, not one per broadcast row
    assert tracker.totals["executions"] == 5  # PennyLane counts the rows it stands for

    tapes = [qml.workflow.construct_tape(circuit)(x) for x in (BATCH, BATCH[:2] + 1.0)]
    [a], _ = dev.preprocess_transforms()(tapes[:1])
    [b], _ = dev.preprocess_transforms()(tapes[1:])
    first, second = translate(a, N), translate(b, N)
    assert first.circuit is second.circuit
    assert first.params.shape == (5, first.circuit.num_params)
    assert second.params.shape == (2, first.circuit.num_params)


@pytest.mark.parametrize("wires", [["a", 7, "c"], None])
def test_wire_labels_and_circuit_wires(wires):
    def circuit(x):
        labels = wires or [2, 0, 1]
        qml.RY(x, wires=labels[0])
        qml.CNOT(wires=[labels[0], labels[2]])
        qml.Hadamard(wires=labels[1])
        qml.S(wires=labels[1])
        return qml.probs(), qml.expval(qml.Z(labels[2]) @ qml.X(labels[1])), qml.state()

    ours, reference = both(circuit, wires=wires)
    assert_same(ours(0.4), reference(0.4))


def test_leading_state_preparation_becomes_the_initial_state():
    state = np.random.default_rng(3).normal(size=(3, 8)) + 1j * np.random.default_rng(4).normal(size=(3, 8))
    state /= np.linalg.norm(state, axis=1, keepdims=True)

    def circuit(psi):
        qml.StatePrep(psi, wires=[0, 1, 2])
        qml.RX(0.3, wires=1)
        qml.BasisState(np.array([1, 0, 1]), wires=[0, 1, 2])  # not leading: PennyLane decomposes it
        qml.StatePrep(psi[..., ::-1] if psi.ndim == 1 else psi[0, ::-1], wires=[0, 1, 2])
        return qml.state(), qml.expval(qml.X(0))

    ours, reference = both(circuit, wires=3)
    assert_same(ours(state), reference(state))
    assert_same(ours(state[1]), reference(state[1]))

    def shared_state(x):
        qml.StatePrep(state[0], wires=[0, 1, 2])
        qml.RY(x, wires=2)
        return qml.state()

    ours, reference = both(shared_state, wires=3)
    assert_same(ours(np.array([0.1, 0.7, 2.0])), reference(np.array([0.1, 0.7, 2.0])))


def test_initial_state_wider_than_the_engine_block():
    n = 15  # above the engine's default block width (14), where initial states need a wider block
    state = np.random.default_rng(8).normal(size=(2, 2**n))
    state /= np.linalg.norm(state, axis=1, keepdims=True)

    def circuit():
        qml.StatePrep(state, wires=range(n))
        qml.RX(0.3, wires=0)
        qml.CNOT([0, 14])
        return qml.expval(qml.X(0)), qml.probs(wires=[14, 3])

    ours, reference = both(circuit, wires=n)
    assert_same(ours(), reference())


OPS_1 = [qml.PauliX, qml.PauliY, qml.PauliZ, qml.Hadamard, qml.S, qml.T, qml.SX, qml.Identity]
PARAM_1 = [qml.RX, qml.RY, qml.RZ, qml.PhaseShift, lambda t, wires: qml.GlobalPhase(t, wires=wires)]
OPS_2 = [qml.CNOT, qml.CZ, qml.CY, qml.SWAP]
PARAM_2 = [qml.IsingXX, qml.IsingYY, qml.IsingZZ, qml.MultiRZ]


@st.composite
def operations(draw):
    """A random circuit over the operations the device runs directly (some adjointed), on 3 wires."""
    ops = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["fixed1", "param1", "fixed2", "param2", "rot"]))
        wires = draw(st.permutations([0, 1, 2]))
        angle = draw(st.floats(-4, 4, allow_nan=False))
        if kind == "fixed1":
            op = draw(st.sampled_from(OPS_1))(wires=wires[0])
        elif kind == "param1":
            op = draw(st.sampled_from(PARAM_1))(angle, wires=wires[0])
        elif kind == "fixed2":
            op = draw(st.sampled_from(OPS_2))(wires=wires[:2])
        elif kind == "param2":
            op = draw(st.sampled_from(PARAM_2))(angle, wires=wires[:2])
        else:
            op = qml.Rot(angle, 0.5 * angle, -1.3, wires=wires[0])
        ops.append(qml.adjoint(op) if draw(st.booleans()) else op)
    return ops


@settings(max_examples=40)
@given(operations())
def test_directly_executed_operations_match_default_qubit_including_the_global_phase(ops):
    start = np.random.default_rng(5).normal(size=8) + 1j * np.random.default_rng(6).normal(size=8)
    tape = qml.tape.QuantumScript([qml.StatePrep(start / np.linalg.norm(start), wires=[0, 1, 2]), *ops],
                                  [qml.state()])
    ours = qml.execute([tape], qml.device("qsim_core.qubit", wires=3))[0]
    reference = qml.execute([tape], qml.device("default.qubit", wires=3))[0]
    np.testing.assert_allclose(ours, reference, atol=1e-10)


def test_errors_are_clear():
    dev = qml.device("qsim_core.qubit", wires=2)

    @qml.qnode(dev)
    def off_device():
        qml.RX(0.1, wires=5)
        return qml.expval(qml.Z(0))

    with pytest.raises(WireError, match="5"):
        off_device()

    class Opaque(qml.operation.Operation):
        num_wires = 1

    @qml.qnode(dev)
    def undecomposable():
        Opaque(wires=0)
        return qml.expval(qml.Z(0))

    with pytest.raises(DeviceError, match="Opaque.*not supported with qsim_core.qubit"):
        undecomposable()

    @qml.qnode(dev)
    def samples_without_shots():
        return qml.sample(qml.Z(0))

    with pytest.raises(DeviceError, match="not accepted for analytic simulation"):
        samples_without_shots()

    @qml.qnode(dev, mcm_method="one-shot")
    def mid_circuit():
        qml.measure(0)
        return qml.expval(qml.Z(0))

    with pytest.raises(DeviceError, match="deferred"):
        qml.set_shots(mid_circuit, 10)()

    with pytest.raises(ValueError, match="precision"):
        QsimQubit(wires=2, precision="half")
    with pytest.raises(ValueError, match="threads"):
        QsimQubit(wires=2, threads=0)
    with pytest.raises(ValueError, match="seed"):
        QsimQubit(wires=2, seed="global")
    with pytest.raises(qc.BackendUnavailableError, match="nope"):
        QsimQubit(wires=2, backend="nope")
    with pytest.raises(DeviceError, match="device option"):
        dev.setup_execution_config(qml.devices.ExecutionConfig(device_options={"bogus": 1}))


def test_mid_circuit_measurements_are_deferred():
    def circuit(x):
        qml.RX(x, wires=0)
        m = qml.measure(0)
        qml.cond(m, qml.Hadamard)(wires=1)
        return qml.probs(wires=[1]), qml.expval(m)

    ours, reference = both(circuit, wires=3)
    assert_same(ours(0.7), reference(0.7))


def test_docstring_example():
    failures, tried = doctest.testmod(qsim_core.pennylane.device)
    assert tried > 0 and failures == 0
