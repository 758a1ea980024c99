"""PyTorch binding: the quantum feature layer as a ``torch.nn.Module``.

:class:`TorchQuantumLayer` maps input angles ``[..., n_inputs]`` (radians), or
amplitude-encoded vectors, to expectation values ``[..., K]``. Its forward
pass is one batched engine call for all rows; its backward pass is one
:meth:`qsim_core.Simulator.vjp` call with the incoming gradient as
cotangent, which gives the gradients of the inputs (per row) and of the
weights (summed over rows) together. So it drops
into any torch model (convolutional front-ends, ``torch.optim``, learning-rate
schedulers) and trains end to end.

Needs the ``torch`` extra (``pip install -e ".[torch]"``). Its numpy twin,
:class:`qstore.ml.QuantumLayer`, is the layer of qstore's own models.

Examples:
    >>> import torch
    >>> from qstore.ml import QuantumLayerConfig
    >>> from qstore.ml.torch_layer import TorchQuantumLayer
    >>> _ = torch.manual_seed(0)
    >>> layer = TorchQuantumLayer(QuantumLayerConfig(n_qubits=4, depth=1))
    >>> out = layer(torch.zeros(5, 4, dtype=torch.float64))
    >>> out.shape, out.dtype
    (torch.Size([5, 4]), torch.float64)
    >>> out.sum().backward()
    >>> layer.weights.grad.shape
    torch.Size([8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import qsim_core as qc
from qsim_core import Circuit

from .._extras import MissingExtraError
from .layers import GRADIENT_METHODS, QuantumLayerConfig, feature_circuit

try:
    import torch
    from torch.autograd.function import FunctionCtx, once_differentiable
except ImportError as error:
    raise MissingExtraError("torch", "qstore.ml.torch_layer", error) from error

__all__ = ["TorchQuantumLayer"]


class _Expectations(torch.autograd.Function):
    """``inputs [B, I], weights [W] -> <O_k> [B, K]`` through the engine, with a batched vjp backward.

    ``inputs`` are the leading circuit parameters (angle inputs) or, for an
    amplitude-encoded layer, normalised initial states ``[B, 2**n]``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, inputs: torch.Tensor, weights: torch.Tensor,
                layer: TorchQuantumLayer) -> torch.Tensor:
        # float64 copies: an optimizer step that changes the weights in place
        # before backward cannot change the point differentiated.
        x = inputs.detach().cpu().numpy().astype(np.float64)
        w = np.broadcast_to(weights.detach().cpu().numpy().astype(np.float64), (len(x), weights.numel()))
        if layer.amplitude:
            # renormalise in float64: float32 normalisation can miss the engine's 1e-6 norm check; the
            # component this removes is along the state, which the normalisation's backward discards
            states = x / np.linalg.norm(x, axis=1, keepdims=True)
            rows = np.ascontiguousarray(w)
        else:
            states, rows = None, np.concatenate([x, w], axis=1)
        values = layer.simulator.expectation(layer.circuit, layer.observables, rows, shots=layer.shots,
                                             initial_state=states)
        ctx.rows, ctx.states, ctx.layer = rows, states, layer
        ctx.input_meta = {"dtype": inputs.dtype, "device": inputs.device}
        ctx.weight_meta = {"dtype": weights.dtype, "device": weights.device}
        return torch.from_numpy(values).to(**ctx.input_meta)

    @staticmethod
    @once_differentiable  # the engine gives first derivatives only
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        layer: TorchQuantumLayer = ctx.layer
        cotangent = grad_out.detach().cpu().numpy().astype(np.float64)
        if ctx.states is not None:
            full, state_grad = layer.simulator.vjp(layer.circuit, layer.observables, ctx.rows, cotangent,
                                                   initial_state=ctx.states, state_gradient=True)
            grad_inputs = state_grad.real  # real amplitudes: only d/d Re psi_0 counts
        else:
            kwargs = {} if layer.gradient == "adjoint" else {"shots": layer.shots}
            full = layer.simulator.vjp(layer.circuit, layer.observables, ctx.rows, cotangent,
                                       method=layer.gradient, **kwargs)
            grad_inputs = full[:, :layer.n_inputs]
        grad_weights = full[:, layer.n_inputs:].sum(axis=0)
        return (torch.from_numpy(np.ascontiguousarray(grad_inputs)).to(**ctx.input_meta),
                torch.from_numpy(grad_weights).to(**ctx.weight_meta), None)


class TorchQuantumLayer(torch.nn.Module):
    """Quantum layer: inputs ``[..., input_size]`` to expectations ``[..., K]``.

    The circuit's parameter vector is ``[inputs (n_inputs), weights (W)]``: the
    first ``n_inputs`` parameters are the input angles (radians), the rest are the
    trainable ``weights``, an ``nn.Parameter`` of shape ``[W]`` initialised
    uniformly in [-pi, pi) from torch's RNG (``torch.manual_seed`` makes it
    reproducible). A config with ``encoding="amplitude"`` takes real vectors
    of ``2**n_qubits`` numbers instead (any non-zero norm), normalised inside
    the autograd graph into the initial state; its circuit has no input
    angles (``n_inputs = 0``) and needs adjoint gradients. Leading input
    dimensions are flattened into one engine batch and restored on output. Outputs have the input's dtype and device
    (float64 or float32; the engine computes in its own precision and
    returns float64, which is then cast), gradients the dtype of what they
    are the gradient of.

    Args:
        circuit_or_config: a :class:`~qstore.ml.layers.QuantumLayerConfig` (the
            circuit is :func:`~qstore.ml.layers.feature_circuit`, ``n_inputs`` is
            its ``num_encoding_params``, the observables default to its readout) or a
            :class:`qsim_core.Circuit` with ``n_inputs`` given (angle inputs only).
        observables: Pauli strings measured, one output each (``"Z0"``,
            ``"X1 Y2"``); required with a circuit.
        n_inputs: how many of the circuit's leading parameters are inputs;
            required with a circuit, optional (checked) with a config.
        simulator: the engine (backend, precision, seed, threads); default
            ``qsim_core.Simulator()``.
        gradient: ``"adjoint"`` (exact, default), ``"parameter-shift"`` or ``"spsa"``.
        shots: None for exact expectations; N to estimate the forward values
            and, for parameter-shift/spsa, every shifted circuit from N shots.
        dtype: the weights' dtype (``module.float()``/``.double()`` also convert).

    Raises:
        ValueError: a missing or inconsistent ``n_inputs``/``observables``, an
            unknown gradient method, shots with adjoint gradients, or amplitude
            encoding with another gradient method.
    """

    def __init__(self, circuit_or_config: Circuit | QuantumLayerConfig,
                 observables: str | Sequence[str] | None = None, *, n_inputs: int | None = None,
                 simulator: qc.Simulator | None = None, gradient: str = "adjoint", shots: int | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if gradient not in GRADIENT_METHODS:
            raise ValueError(f"gradient must be one of {GRADIENT_METHODS}, got {gradient!r}")
        if gradient == "adjoint" and shots is not None:
            raise ValueError("adjoint gradients are exact: use shots with 'parameter-shift' or 'spsa'")
        self.amplitude = False
        if isinstance(circuit_or_config, QuantumLayerConfig):
            config = circuit_or_config
            if n_inputs is not None and n_inputs != config.num_encoding_params:
                raise ValueError(f"this layer config has {config.num_encoding_params} input parameters, "
                                 f"got n_inputs={n_inputs}")
            if config.encoding == "amplitude" and gradient != "adjoint":
                raise ValueError("amplitude encoding needs gradient='adjoint': only it differentiates "
                                 "the initial state")
            circuit, n_inputs = feature_circuit(config), config.num_encoding_params
            observables = config.observables if observables is None else observables
            self.amplitude = config.encoding == "amplitude"
        elif isinstance(circuit_or_config, Circuit):
            circuit = circuit_or_config
            if observables is None or n_inputs is None:
                raise ValueError("a circuit needs observables and n_inputs (how many leading parameters are inputs)")
            if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) \
                    or not 0 <= n_inputs <= circuit.num_params:
                raise ValueError(f"n_inputs must be an integer in 0..{circuit.num_params} (the circuit's "
                                 f"parameter count), got {n_inputs!r}")
        else:
            raise TypeError(f"expected a QuantumLayerConfig or a qsim_core.Circuit, "
                            f"got {type(circuit_or_config).__name__}")
        self.circuit = circuit
        self.n_inputs = n_inputs
        #: numbers per input row: the input angles, or the amplitudes of an amplitude-encoded state
        self.input_size = 2 ** circuit.num_qubits if self.amplitude else n_inputs
        self.observables = [observables] if isinstance(observables, str) else list(observables)
        self.simulator = simulator if simulator is not None else qc.Simulator()
        self.gradient = gradient
        self.shots = shots
        self.weights = torch.nn.Parameter(torch.empty(circuit.num_params - n_inputs, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw the weights uniformly in [-pi, pi) from torch's RNG."""
        with torch.no_grad():
            self.weights.uniform_(-math.pi, math.pi)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Expectations ``[..., K]`` for inputs ``[..., input_size]`` (angles in radians, or amplitudes)."""
        if inputs.ndim == 0 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"the quantum layer takes [..., {self.input_size}] inputs, "
                             f"got shape {tuple(inputs.shape)}")
        if not inputs.is_floating_point():
            raise TypeError(f"inputs must be a floating-point tensor, got {inputs.dtype}")
        flat = inputs.reshape(math.prod(inputs.shape[:-1]), self.input_size)  # -1 is ambiguous for size 0
        if self.amplitude:
            norms = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
            if not bool((norms > 0).all()):
                raise ValueError("amplitude encoding needs inputs with a non-zero norm")
            flat = flat / norms
        values = _Expectations.apply(flat, self.weights, self)
        return values.reshape(*inputs.shape[:-1], len(self.observables))

    def extra_repr(self) -> str:
        return (f"qubits={self.circuit.num_qubits}, input_size={self.input_size}, amplitude={self.amplitude}, "
                f"weights={self.weights.numel()}, outputs={len(self.observables)}, gradient={self.gradient!r}, "
                f"shots={self.shots}, "
                f"backend={self.simulator.backend!r}, precision={self.simulator.precision!r}")
