"""Gradients on qsim_core.qubit (engine adjoint, device vjp, parameter-shift) against default.qubit's backprop."""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch
from pennylane import numpy as pnp
from pennylane.exceptions import DeviceError, QuantumFunctionError

N = 4
RNG = np.random.default_rng(61)
FEATURES = RNG.uniform(-np.pi, np.pi, (6, N))
WEIGHTS = RNG.uniform(-np.pi, np.pi, qml.StronglyEntanglingLayers.shape(2, N))
OBSERVABLE = qml.Hamiltonian([0.7, -0.4], [qml.Z(0) @ qml.X(2), qml.Y(1)])


def model(x, w, extra):
    qml.AngleEmbedding(x, wires=range(N))
    qml.StronglyEntanglingLayers(w, wires=range(N))
    qml.PhaseShift(extra[0], wires=1)
    qml.adjoint(qml.IsingXX(extra[1], wires=[1, 2]))
    qml.CRY(extra[2], wires=[3, 0])
    return qml.expval(qml.Z(0)), qml.expval(OBSERVABLE), qml.expval(qml.Hermitian(np.diag([1.0, 2, -1, 0.5]),
                                                                                   wires=[3, 1]))


EXTRA = np.array([0.3, -1.1, 0.8])


def _autograd_jacobian(device, diff_method, x, device_vjp=False):
    qnode = qml.QNode(model, device, diff_method=diff_method, device_vjp=device_vjp)

    def cost(w, extra):
        return pnp.stack(qnode(x, w, extra))

    return qml.jacobian(cost)(pnp.array(WEIGHTS, requires_grad=True), pnp.array(EXTRA, requires_grad=True))


@pytest.mark.parametrize("features", [FEATURES[0], FEATURES], ids=["single", "broadcast"])
@pytest.mark.parametrize("diff_method, device_vjp", [("adjoint", False), ("adjoint", True), ("device", False),
                                                     ("parameter-shift", False)])
def test_autograd_jacobian_matches_backprop(features, diff_method, device_vjp):
    ours = _autograd_jacobian(qml.device("qsim_core.qubit", wires=N), diff_method, features, device_vjp)
    reference = _autograd_jacobian(qml.device("default.qubit", wires=N), "backprop", features)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("trainable_features", [False, True])
def test_torch_gradients_match_backprop(trainable_features):
    def run(device, diff_method):
        qnode = qml.QNode(model, device, interface="torch", diff_method=diff_method)
        x = torch.tensor(FEATURES, requires_grad=trainable_features)
        w = torch.tensor(WEIGHTS, requires_grad=True)
        extra = torch.tensor(EXTRA, requires_grad=True)
        outputs = torch.stack(qnode(x, w, extra))
        (outputs * torch.linspace(-1, 1, outputs.numel()).reshape(outputs.shape)).sum().backward()
        grads = [w.grad, extra.grad] + ([x.grad] if trainable_features else [])
        return [outputs.detach().numpy()] + [g.numpy() for g in grads]

    ours = run(qml.device("qsim_core.qubit", wires=N), "adjoint")
    reference = run(qml.device("default.qubit", wires=N), "backprop")
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_compute_derivatives_and_vjp_shapes_follow_pennylane():
    dev = qml.device("qsim_core.qubit", wires=2)
    reference = qml.device("default.qubit", wires=2)
    ops = [qml.RX(np.array([0.1, 0.5, 0.9]), wires=0), qml.Rot(0.2, 0.3, 0.4, wires=1), qml.CNOT([0, 1])]
    tape = qml.tape.QuantumScript(ops, [qml.expval(qml.Z(1)), qml.expval(qml.Y(0) @ qml.X(1))],
                                  trainable_params=[1, 2, 3])
    jac = dev.compute_derivatives(tape)
    assert len(jac) == 2 and all(len(row) == 3 and all(np.shape(v) == (3,) for v in row) for row in jac)
    shifted = qml.gradients.param_shift(tape)
    expected = shifted[1](reference.execute(shifted[0]))
    for a, b in zip(jac, expected, strict=True):
        np.testing.assert_allclose(np.stack(a), np.stack(b), atol=1e-10)
    cotangent = (np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.0, 1.0]))
    vjp = dev.compute_vjp(tape, cotangent)
    manual = [sum(np.dot(cotangent[m], jac[m][p]) for m in range(2)) for p in range(3)]
    np.testing.assert_allclose(vjp, manual, atol=1e-10)
    values, same = dev.execute_and_compute_derivatives(tape)
    np.testing.assert_allclose(values, reference.execute(tape), atol=1e-12)

    single = qml.tape.QuantumScript([qml.RY(0.4, wires=0)], [qml.expval(qml.X(0))], trainable_params=[0])
    assert np.shape(dev.compute_derivatives(single)) == ()
    np.testing.assert_allclose(dev.compute_derivatives(single), np.cos(0.4), atol=1e-12)


def test_adjoint_rejects_what_it_cannot_differentiate():
    dev = qml.device("qsim_core.qubit", wires=1)

    @qml.qnode(dev, diff_method="adjoint")
    def probabilities(x):
        qml.RX(x, wires=0)
        return qml.probs()

    with pytest.raises((DeviceError, QuantumFunctionError), match="adjoint"):
        qml.jacobian(probabilities)(pnp.array(0.2, requires_grad=True))

    assert not dev.supports_derivatives(qml.devices.ExecutionConfig(gradient_method="adjoint"),
                                        qml.tape.QuantumScript([qml.RX(0.2, 0)], [qml.expval(qml.Z(0))], shots=10))


def test_torch_layer_trains_the_same_as_on_default_qubit():
    def layer_on(device_name):
        @qml.qnode(qml.device(device_name, wires=N), interface="torch",
                   diff_method="adjoint" if device_name == "qsim_core.qubit" else "backprop")
        def circuit(inputs, weights):
            qml.AngleEmbedding(inputs, wires=range(N))
            qml.BasicEntanglerLayers(weights, wires=range(N))
            return [qml.expval(qml.Z(q)) for q in range(N)]

        torch.manual_seed(0)
        return qml.qnn.TorchLayer(circuit, {"weights": (2, N)}).to(torch.float64)

    results = []
    for device_name in ("qsim_core.qubit", "default.qubit"):
        layer = layer_on(device_name)
        out = layer(torch.tensor(FEATURES))
        out.pow(2).sum().backward()
        results.append((out.detach().numpy(), layer.weights.grad.numpy()))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)
