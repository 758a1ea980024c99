"""Layers of a hybrid model: classical dense layers and the quantum feature extractor.

Every layer has the same small contract: ``forward(x)`` on a mini-batch
(rows are samples), remembering what its backward pass needs, then
``backward(grad_out) -> grad_in`` which also sets ``grads`` (one array per
entry of ``params``, same shapes). No autodiff framework: the quantum layer's
backward is the engine's vector-Jacobian product, one batched call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import qsim_core as qc
from qsim_core import Circuit, Param
from qsim_core.gradients import shift_plan
from qsim_core.measurement import Executor, expectations_from_counts
from qsim_core.simulator import GRADIENT_METHODS

from ..settings import choice, integer, setting, subset, switch, validate

ENTANGLEMENTS = ("linear", "circular", "full")
ENCODINGS = ("angle", "amplitude")
BASES = ("X", "Y", "Z")


class Layer:
    """Base: named parameter arrays, their gradients, forward and backward."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Outputs for the batch ``x`` (rows are samples)."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Gradient of the loss with respect to the last forward's input; fills ``grads``."""
        raise NotImplementedError


class Dense(Layer):
    """``y = x @ W + b``; Glorot-uniform ``W [fan_in, fan_out]``, zero ``b``."""

    def __init__(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> None:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        self.params = {"W": rng.uniform(-limit, limit, (fan_in, fan_out)), "b": np.zeros(fan_out)}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self._x = np.empty((0, fan_in))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        self.grads["W"] = self._x.T @ grad_out
        self.grads["b"] = grad_out.sum(axis=0)
        return grad_out @ self.params["W"].T


class Tanh(Layer):
    """``y = scale * tanh(x)``; with ``scale = pi`` it maps any real input to an angle in (-pi, pi)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.params, self.grads = {}, {}
        self._t = np.empty(0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._t = np.tanh(x)
        return self.scale * self._t

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self.scale * (1.0 - self._t ** 2)


@dataclass(frozen=True)
class QuantumLayerConfig:
    """The quantum feature extractor, configured like the reference system's.

    Each field is a setting (:mod:`qstore.settings`): its name in sweep configs and on the
    command line, its help and its check are declared with it.

    Attributes:
        n_qubits: register size; the layer takes ``n_qubits`` input angles (radians).
        depth: number of trainable layers, each [RY every qubit, RZ every qubit, CNOT entangler].
        entanglement: ``"linear"`` (CNOT(q, q+1)), ``"circular"`` (linear plus
            CNOT(n-1, 0)) or ``"full"`` (CNOT(i, j) for all i < j). ``full`` with 8
            qubits and depth 2 is exactly the seed circuit (:func:`qsim_core.seed_circuit`).
        encoding: ``"angle"``: RY(x_q) on each qubit, ``n_qubits`` inputs (radians);
            ``"amplitude"``: the input, a real vector of ``2**n_qubits`` numbers,
            normalised, is the initial state (the engine takes a batch of them).
        reupload: repeat the (angle) encoding before every trainable layer (data re-uploading).
        bases: measurement bases; the outputs are <P_q> for each basis P and qubit q.
    """

    n_qubits: int = setting(8, "qubits", "qubits of the quantum layer", integer(1, 24), int)
    depth: int = setting(2, "depth", "trainable layers", integer(1), int)
    entanglement: str = setting("full", "entanglement", "CNOT pattern of each layer", choice(ENTANGLEMENTS), str,
                                choices=ENTANGLEMENTS)
    encoding: str = setting("angle", "encoding", "angle: one RY per qubit; amplitude: 2**qubits amplitudes as the "
                            "initial state", choice(ENCODINGS), str, choices=ENCODINGS)
    reupload: bool = setting(False, "reupload", "re-encode the data before every layer", switch, bool)
    bases: tuple[str, ...] = setting(("Z",), "bases", "measurement bases", subset(BASES), tuple, choices=BASES)

    def __post_init__(self) -> None:
        validate(self)
        if self.reupload and self.encoding == "amplitude":
            raise ValueError("reupload applies to angle encoding; an amplitude-encoded state is prepared once")

    @property
    def input_size(self) -> int:
        """Inputs per sample: ``n_qubits`` angles, or ``2**n_qubits`` amplitudes."""
        return self.n_qubits if self.encoding == "angle" else 2 ** self.n_qubits

    @property
    def num_encoding_params(self) -> int:
        """Leading circuit parameters that hold the inputs (angle encoding); 0 for amplitude encoding."""
        return self.n_qubits if self.encoding == "angle" else 0

    @property
    def num_weights(self) -> int:
        """Trainable angles: 2 per qubit per layer."""
        return 2 * self.n_qubits * self.depth

    @property
    def observables(self) -> list[str]:
        """The measured Pauli strings, basis-major: ``["Z0", ..., "Z7"]`` for the default."""
        return [f"{basis}{q}" for basis in self.bases for q in range(self.n_qubits)]


def entangler_pairs(n_qubits: int, entanglement: str) -> list[tuple[int, int]]:
    """The (control, target) pairs of one entangling block."""
    if entanglement == "full":
        return [(i, j) for i in range(n_qubits) for j in range(i + 1, n_qubits)]
    pairs = [(q, q + 1) for q in range(n_qubits - 1)]
    if entanglement == "circular" and n_qubits > 2:
        pairs.append((n_qubits - 1, 0))
    return pairs


def feature_circuit(config: QuantumLayerConfig) -> Circuit:
    """The layer's circuit: the angle inputs ``theta[0:n]`` (angle encoding), then ``2 n`` weights per layer."""
    n = config.n_qubits
    circuit = Circuit(n)
    pairs = entangler_pairs(n, config.entanglement)
    for layer in range(config.depth):
        if config.encoding == "angle" and (layer == 0 or config.reupload):
            for q in range(n):
                circuit.ry(q, Param(q))
        base = config.num_encoding_params + 2 * n * layer
        for q in range(n):
            circuit.ry(q, Param(base + q))
        for q in range(n):
            circuit.rz(q, Param(base + n + q))
        for control, target in pairs:
            circuit.cnot(control, target)
    return circuit


class QuantumLayer(Layer):
    """Quantum feature extractor: inputs ``[B, input_size]`` to expectations ``[B, K]``.

    The whole mini-batch is one engine call forward and one backward: the
    vector-Jacobian product gives the gradients of the weights (summed over
    the batch) and of the inputs (per sample), so classical layers before this
    one train through it.

    Args:
        config: the circuit's shape.
        simulator: the engine (backend, precision, seed, threads).
        rng: draws the initial weights, uniform in [-pi, pi).
        gradient: ``"adjoint"`` (exact), ``"parameter-shift"`` or ``"spsa"``.
        shots: None for exact expectations; N to estimate every expectation
            (forward and, for parameter-shift/spsa, every shifted circuit) from N shots.
        executor: run every circuit through this counts-only executor (a QPU, IonQ,
            the local server: ``qstore.execution.executor.AsyncQuantumExecutor``, or anything
            following :mod:`qsim_core.measurement`'s protocol) instead of the
            simulator; needs ``shots`` and parameter-shift or SPSA gradients.
    """

    def __init__(self, config: QuantumLayerConfig, simulator: qc.Simulator, rng: np.random.Generator,
                 gradient: str = "adjoint", shots: int | None = None, executor: Executor | None = None) -> None:
        if gradient not in GRADIENT_METHODS:
            raise ValueError(f"gradient must be one of {GRADIENT_METHODS}, got {gradient!r}")
        if gradient == "adjoint" and shots is not None:
            raise ValueError("adjoint gradients are exact: use shots with 'parameter-shift' or 'spsa'")
        if config.encoding == "amplitude" and gradient != "adjoint":
            raise ValueError("amplitude encoding needs gradient='adjoint': only it differentiates the initial state")
        if executor is not None and (shots is None or gradient == "adjoint"):
            raise ValueError("an executor returns counts: it needs shots and gradient='parameter-shift' or 'spsa'")
        self.executor = executor
        self.config = config
        self.circuit = feature_circuit(config)
        self.simulator = simulator
        self.gradient = gradient
        self.shots = shots
        self.params = {"weights": rng.uniform(-np.pi, np.pi, config.num_weights)}
        self.grads = {"weights": np.zeros(config.num_weights)}
        self.circuits_run = 0
        self.seconds = 0.0
        self._rows = np.empty((0, self.circuit.num_params))
        self._states: np.ndarray | None = None  # amplitude encoding: the normalised inputs
        self._norms = np.empty(0)

    def _parameter_rows(self, x: np.ndarray) -> np.ndarray:
        size = self.config.input_size
        if x.ndim != 2 or x.shape[1] != size:
            raise ValueError(f"the quantum layer takes [batch, {size}] inputs, got shape {x.shape}")
        weights = np.broadcast_to(self.params["weights"], (len(x), self.config.num_weights))
        if self.config.encoding == "angle":
            return np.concatenate([x, weights], axis=1)
        self._norms = np.linalg.norm(x, axis=1)
        if not (self._norms > 0).all():
            raise ValueError("amplitude encoding needs inputs with a non-zero norm")
        self._states = x / self._norms[:, np.newaxis]
        return np.ascontiguousarray(weights)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._rows = self._parameter_rows(np.asarray(x, np.float64))
        start = time.perf_counter()
        if self.executor is not None:
            values = expectations_from_counts(self.executor, self.circuit, self.config.observables, self._rows,
                                              self.shots)
        else:
            values = self.simulator.expectation(self.circuit, self.config.observables, self._rows, shots=self.shots,
                                                initial_state=self._states)
        self.seconds += time.perf_counter() - start
        self.circuits_run += len(self._rows)
        return values

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        if self._states is not None:  # amplitude encoding: the gradient reaches the inputs through the state
            full, state_grad = self.simulator.vjp(self.circuit, self.config.observables, self._rows, grad_out,
                                                  initial_state=self._states, state_gradient=True)
        else:
            kwargs = {} if self.gradient == "adjoint" else {"shots": self.shots, "executor": self.executor}
            full = self.simulator.vjp(self.circuit, self.config.observables, self._rows, grad_out,
                                      method=self.gradient, **kwargs)
        self.seconds += time.perf_counter() - start
        self.circuits_run += len(self._rows) * self.circuits_per_gradient
        inputs = self.config.num_encoding_params
        self.grads["weights"] = full[:, inputs:].sum(axis=0)
        if self._states is None:
            return full[:, :inputs]
        # through the normalisation v = x / |x| (real inputs: only d/d Re psi_0 matters)
        g = state_grad.real
        v = self._states
        return (g - v * np.sum(v * g, axis=1, keepdims=True)) / self._norms[:, np.newaxis]

    @property
    def circuits_per_gradient(self) -> int:
        """Circuits the engine evaluates per sample for one backward pass.

        Adjoint: 1 (a forward and a backward sweep of the same circuit).
        Parameter-shift: the unshifted circuit plus every shift of the plan the
        engine runs (two per rotation use). SPSA: 3 (one unperturbed, two perturbed).
        """
        if self.gradient == "adjoint":
            return 1
        if self.gradient == "spsa":
            return 3
        return 1 + len(shift_plan(self.circuit).rows)
