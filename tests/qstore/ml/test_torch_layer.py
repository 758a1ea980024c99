"""qstore.ml.torch_layer.TorchQuantumLayer: exact gradients under gradcheck (angle and amplitude encoding), a hybrid CNN
that trains, float32, the sampled gradient methods, errors.

Skipped as a whole when PyTorch is not installed; the ``test`` extra installs it.
"""

from __future__ import annotations

import numpy as np
import pytest

import qsim_core as qc
from qsim_core.circuit import Param
from qstore.data import digits
from qstore.ml import layers
from qstore.ml.layers import QuantumLayerConfig

torch = pytest.importorskip("torch")
from qstore.ml.torch_layer import TorchQuantumLayer  # noqa: E402  (needs torch: after the skip)

#: 3 qubits re-uploaded twice (each input angle feeds two gates) and read out in two bases
SMALL = QuantumLayerConfig(n_qubits=3, depth=2, entanglement="circular", reupload=True, bases=("Z", "X"))
#: the input (8 numbers, any non-zero norm) normalised into the initial state
AMPLITUDE = QuantumLayerConfig(n_qubits=3, depth=2, encoding="amplitude", bases=("Z", "Y"))


@pytest.fixture
def one_thread():
    """Torch's intra-op pool at one thread: on a shared 2-core machine a second team only contends."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def angles(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Uniform angles in [-pi, pi), requiring grad."""
    values = np.random.default_rng(seed).uniform(-np.pi, np.pi, shape)
    return torch.tensor(values, dtype=dtype, requires_grad=True)


def with_weights(layer: TorchQuantumLayer):
    """``layer`` as a function of (inputs, weights), so gradcheck checks both."""
    return lambda x, w: torch.func.functional_call(layer, {"weights": w}, (x,))


@pytest.mark.parametrize("config", [SMALL, AMPLITUDE], ids=["angle", "amplitude"])
def test_gradcheck_config_layer(backend, config):
    torch.manual_seed(0)
    layer = TorchQuantumLayer(config, simulator=qc.Simulator(backend=backend))
    weights = layer.weights.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(with_weights(layer), (angles(5, layer.input_size), weights))


def test_gradcheck_circuit_with_shared_scaled_parameters_and_leading_dims(backend):
    # inputs theta[0:2] each drive two gates, one of them scaled and offset; a weight is shared too
    c = qc.Circuit(3).ry(0, Param(0)).rx(1, Param(1, scale=0.5, offset=0.3)).cnot(0, 1).ry(2, Param(2))
    c.rz(1, Param(0, scale=-2.0)).cnot(1, 2).ry(1, Param(3)).rx(0, Param(2)).cnot(2, 0).ry(2, Param(1))
    layer = TorchQuantumLayer(c, ["Z0", "X1 Y2", "Z0 Z2"], n_inputs=2, simulator=qc.Simulator(backend=backend))
    assert layer.weights.shape == (2,)
    out = layer(angles(2, 3, 2))
    assert out.shape == (2, 3, 3)
    weights = layer.weights.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(with_weights(layer), (angles(2, 3, 2, seed=1), weights))


@pytest.mark.parametrize("config", [SMALL, AMPLITUDE], ids=["angle", "amplitude"])
def test_matches_the_numpy_layer_with_one_engine_call_each_way(monkeypatch, config):
    sim = qc.Simulator()
    reference = layers.QuantumLayer(config, sim, np.random.default_rng(3))
    layer = TorchQuantumLayer(config, simulator=sim)
    with torch.no_grad():
        layer.weights.copy_(torch.from_numpy(reference.params["weights"]))
    calls = {"expectation": 0, "vjp": 0}

    def counting(name: str):
        method = getattr(sim, name)

        def counted(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)

        return counted

    for name in calls:
        monkeypatch.setattr(sim, name, counting(name))

    x = angles(32, layer.input_size)
    cotangent = np.random.default_rng(4).normal(size=(32, 6))
    out = layer(x)
    out.backward(torch.from_numpy(cotangent))
    assert calls == {"expectation": 1, "vjp": 1}  # the whole batch in one call each way
    np.testing.assert_allclose(out.detach().numpy(), reference.forward(x.detach().numpy()), atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), reference.backward(cotangent), atol=1e-12)
    np.testing.assert_allclose(layer.weights.grad.numpy(), reference.grads["weights"], atol=1e-12)


@pytest.mark.parametrize("config", [SMALL, AMPLITUDE], ids=["angle", "amplitude"])
def test_float32_follows_the_input_dtype(precision, config):
    """float32 inputs and weights give float32 outputs and gradients, with either engine precision."""
    torch.manual_seed(0)
    layer64 = TorchQuantumLayer(config)
    layer32 = TorchQuantumLayer(config, simulator=qc.Simulator(precision=precision)).float()
    with torch.no_grad():
        layer32.weights.copy_(layer64.weights)
    x64, x32 = angles(8, layer64.input_size), angles(8, layer64.input_size, dtype=torch.float32)
    out64, out32 = layer64(x64), layer32(x32)
    out64.sum().backward()
    out32.sum().backward()
    assert out32.dtype == x32.grad.dtype == layer32.weights.grad.dtype == torch.float32
    np.testing.assert_allclose(out32.detach().numpy(), out64.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(x32.grad.numpy(), x64.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(layer32.weights.grad.numpy(), layer64.weights.grad.numpy(), atol=5e-5)


def test_sampled_gradient_methods():
    torch.manual_seed(0)
    exact = TorchQuantumLayer(SMALL)
    x = angles(4, 3)
    exact(x).sum().backward()
    expected = exact.weights.grad.numpy()

    shift = TorchQuantumLayer(SMALL, gradient="parameter-shift")
    shift.load_state_dict(exact.state_dict())
    shift(x.detach()).sum().backward()
    np.testing.assert_allclose(shift.weights.grad.numpy(), expected, atol=1e-10)  # shift rules are exact

    for method in ("parameter-shift", "spsa"):
        sampled = TorchQuantumLayer(SMALL, gradient=method, shots=4096, simulator=qc.Simulator(seed=5))
        sampled.load_state_dict(exact.state_dict())
        sampled(x.detach()).sum().backward()
        grad = sampled.weights.grad.numpy()
        assert grad.shape == expected.shape and np.isfinite(grad).all()
        if method == "parameter-shift":  # unbiased; 4 rows x 6 outputs of 4096-shot estimates
            np.testing.assert_allclose(grad, expected, atol=0.5)


def test_configuration_errors():
    circuit = qc.Circuit(2).ry(0, Param(0)).ry(1, Param(1))
    with pytest.raises(ValueError, match="adjoint gradients are exact"):
        TorchQuantumLayer(SMALL, shots=100)
    with pytest.raises(ValueError, match="gradient must be one of"):
        TorchQuantumLayer(SMALL, gradient="finite-difference")
    with pytest.raises(ValueError, match="has 3 input parameters"):
        TorchQuantumLayer(SMALL, n_inputs=2)
    with pytest.raises(ValueError, match="amplitude encoding needs gradient='adjoint'"):
        TorchQuantumLayer(AMPLITUDE, gradient="parameter-shift")
    with pytest.raises(ValueError, match="non-zero norm"):
        TorchQuantumLayer(AMPLITUDE)(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="needs observables and n_inputs"):
        TorchQuantumLayer(circuit, ["Z0"])
    with pytest.raises(ValueError, match=r"n_inputs must be an integer in 0\.\.2"):
        TorchQuantumLayer(circuit, ["Z0"], n_inputs=3)
    with pytest.raises(TypeError, match="QuantumLayerConfig or a qsim_core.Circuit"):
        TorchQuantumLayer("seed", ["Z0"], n_inputs=1)
    layer = TorchQuantumLayer(circuit, "Z0 Z1", n_inputs=1)
    assert layer(torch.zeros(4, 1)).shape == (4, 1)
    with pytest.raises(ValueError, match=r"takes \[\.\.\., 1\] inputs"):
        layer(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.zeros(4, 1, dtype=torch.int64))


def test_hybrid_cnn_trains_on_digits(one_thread):
    """Conv -> pool -> linear -> tanh -> 4-qubit layer -> linear, Adam, 10 epochs on 3 vs 8.

    Measured: validation accuracy 0.986 (70 of the 71 held-out images; 0.507
    untrained), training accuracy 1.0, in about 0.3 s; over seeds 0..3 of the
    same set-up 0.972-0.986 and 0.986-1.0. Bounds below leave room for another
    machine's floating-point summation order.
    """
    torch.manual_seed(0)
    split = digits(3, 8)

    def tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(dataset.x).permute(0, 3, 1, 2).to(torch.float64) / 255.0  # [N, 1, 8, 8]
        return images, torch.tensor(dataset.labels, dtype=torch.float64)

    (x_train, y_train), (x_val, y_val) = tensors(split.train), tensors(split.val)
    quantum = TorchQuantumLayer(QuantumLayerConfig(n_qubits=4, depth=2, entanglement="linear"),
                           simulator=qc.Simulator(seed=0, threads=1))
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),  # [N, 4, 3, 3]
        torch.nn.Linear(36, 4), torch.nn.Tanh(), quantum, torch.nn.Linear(4, 1),
    ).double()
    conv_before = model[0].weight.detach().clone()
    quantum_before = quantum.weights.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    order = torch.Generator().manual_seed(0)

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return ((model(x).squeeze(-1) > 0).double() == y).double().mean().item()

    initial = accuracy(x_val, y_val)
    for _ in range(10):
        for batch in torch.randperm(len(x_train), generator=order).split(32):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x_train[batch]).squeeze(-1),
                                                                        y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    # the gradients reached both sides of the quantum layer
    assert not torch.equal(quantum.weights, quantum_before)
    assert not torch.equal(model[0].weight, conv_before)
    assert accuracy(x_train, y_train) >= 0.95
    assert accuracy(x_val, y_val) >= 0.93 > initial
