"""Training: hybrid quantum models and their matched classical baseline, reproducible and resumable.

One step is one mini-batch: forward through every layer, binary
cross-entropy, backward (the quantum layer's backward is one batched
vector-Jacobian product through the engine), one Adam update. The same
:class:`TrainConfig` trains the quantum model and the baseline, which has the
quantum layer replaced by a classical layer of the same width.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import qsim_core as qc
from qsim_core.backends import PREFERENCE
from qsim_core.measurement import Executor
from qsim_core.noise import IONQ_MODELS

from ..settings import build, choice, integer, number, setting, validate
from .layers import GRADIENT_METHODS, Dense, QuantumLayer, QuantumLayerConfig, Tanh
from .model import Sequential, accuracy, binary_cross_entropy
from .optim import Adam, exponential_decay

MODEL_KINDS = ("quantum", "classical")
#: what ``noise`` may be besides None: IonQ's noise models (:data:`qsim_core.noise.IONQ_MODELS`)
NOISE_MODELS = tuple(IONQ_MODELS)
#: what ``backend`` may be: a qsim_core backend, or auto (the fastest that loads here)
BACKENDS = ("auto", *PREFERENCE)


def _noise_model(value: Any) -> str | None:
    """The check of ``noise``: None or one of :data:`NOISE_MODELS`."""
    return None if value is None or value in NOISE_MODELS else f"must be none or one of {', '.join(NOISE_MODELS)}"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved with every checkpoint).

    Each field is a setting (:mod:`qstore.settings`): ``qstore train``'s options and the keys of
    a ``qstore sweep`` config are derived from these declarations.

    Attributes:
        quantum: the quantum layer's shape.
        epochs, batch_size: the schedule; the last partial batch of an epoch is kept.
        lr, lr_decay: Adam's step size in epoch e is ``lr * lr_decay ** e``.
        gradient: the quantum layer's method: ``"adjoint"``, ``"parameter-shift"``, ``"spsa"``.
        shots: None for exact expectations, N for N-shot estimates (not with adjoint).
        backend: the qsim_core backend (``"auto"`` picks the fastest here).
        seed: seeds weight initialisation, batch order and every shot.
        noise: None, or an IonQ noise model (``"aria-1"``, ``"aria-2"``, ``"forte-1"``) the quantum layer runs
            under (:class:`qsim_core.NoiseModel`: depolarizing channels after every gate): forward passes are
            exact noisy expectations (density matrices, up to 12 qubits) or, with ``shots``, trajectory
            estimates; gradients by adjoint (exact, over density matrices), parameter-shift (exact, or
            with ``shots`` estimated) or spsa. Needs angle encoding (amplitude encoding differentiates the
            input state, which the noisy adjoint does not).
    """

    quantum: QuantumLayerConfig = field(default_factory=QuantumLayerConfig)
    epochs: int = setting(5, "epochs", "training epochs", integer(1), int)
    batch_size: int = setting(32, "batch_size", "samples per training step", integer(1), int)
    lr: float = setting(0.05, "lr", "Adam step size", number(0), float)
    lr_decay: float = setting(0.95, "lr_decay", "step size factor per epoch", number(0, 1, closed_high=True), float)
    gradient: str = setting("adjoint", "gradient", "gradient method of the quantum layer", choice(GRADIENT_METHODS),
                            str, choices=GRADIENT_METHODS, flag="--grad")
    shots: int | None = setting(None, "shots", "shots per circuit for parameter-shift and spsa (none: exact)",
                                integer(1, optional=True), int)
    backend: str = setting("auto", "backend", "qsim_core backend (auto: the fastest here)", choice(BACKENDS), str,
                           choices=BACKENDS)
    seed: int = setting(0, "seed", "seeds weight initialisation, batch order and shots", integer(0), int)
    noise: str | None = setting(None, "noise", "IonQ noise model the quantum layer runs under "
                                f"({', '.join(NOISE_MODELS)}; none: noiseless)",
                                _noise_model, str, choices=NOISE_MODELS)

    def __post_init__(self) -> None:
        validate(self)
        if self.noise is not None and self.quantum.encoding != "angle":
            raise ValueError(f"noise {self.noise!r} needs angle encoding: amplitude encoding differentiates the "
                             "input state, which the noisy adjoint does not")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of settings by name (``qubits``, ``lr``, ...; as in a sweep config), defaults for the rest.

        ``shots`` apply to parameter-shift and spsa; an adjoint run is exact and ignores them (with
        ``noise`` too: the adjoint sweep runs over density matrices).
        """
        if values.get("gradient", cls.gradient) == "adjoint":
            values = {**values, "shots": None}
        return build(cls, values)


@dataclass
class TrainState:
    """What a checkpoint holds: enough to continue exactly where training stopped.

    Attributes:
        epoch: epochs completed.
        params: model parameters by key (see :meth:`Sequential.parameters`).
        optimizer: :meth:`Adam.state`.
        rng: the batch-order generator's ``bit_generator.state``.
        history: one dict of metrics per completed epoch.
    """

    epoch: int
    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    rng: dict
    history: list[dict[str, float]]


@dataclass
class TrainResult:
    """A finished run.

    Attributes:
        model: the trained model.
        history: per-epoch metrics: epoch, lr, train_loss, train_acc, val_loss, val_acc.
        circuits: circuits the engine evaluated (forward, and per gradient method, see
            :attr:`QuantumLayer.circuits_per_gradient`); 0 for the classical baseline.
        simulation_s: wall seconds inside the engine.
        total_s: wall seconds of the whole loop (simulation included).
    """

    model: Sequential
    history: list[dict[str, float]]
    circuits: int
    simulation_s: float
    total_s: float

    @property
    def classical_s(self) -> float:
        """Wall seconds outside the engine: the classical layers, the loss, the optimizer, batching."""
        return self.total_s - self.simulation_s


def simulator_for_epoch(config: TrainConfig, epoch: int) -> qc.Simulator:
    """The engine of one epoch (under ``config.noise``), seeded by (run seed, epoch) so a resumed run draws the
    same shots."""
    return qc.Simulator(backend=config.backend, seed=config.seed * 1_000_003 + epoch, noise=config.noise)


def build_model(kind: str, num_features: int, config: TrainConfig, executor: Executor | None = None) -> Sequential:
    """``Dense(F -> m) [-> pi tanh] -> [quantum layer | Dense(m -> K) -> tanh] -> Dense(K -> 1)``.

    The first layers turn any features into the quantum layer's m inputs (angle
    encoding: m = n angles through ``pi tanh``; amplitude encoding: m = 2**n
    amplitudes) and train through its input gradient; the classical baseline
    replaces the quantum layer by a dense layer with the same number of outputs K. With an
    ``executor`` (counts only: a QPU, IonQ, the local server) the quantum layer's circuits run there.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    rng = np.random.default_rng(config.seed)
    inputs = config.quantum.input_size
    width = len(config.quantum.observables)
    layers = [Dense(num_features, inputs, rng)]
    if config.quantum.encoding == "angle":
        layers.append(Tanh(np.pi))
    if kind == "quantum":
        layers.append(QuantumLayer(config.quantum, simulator_for_epoch(config, 0), rng, config.gradient,
                                   config.shots, executor))
    else:
        layers += [Dense(inputs, width, rng), Tanh()]
    layers.append(Dense(width, 1, rng))
    return Sequential(layers)


def _quantum_layers(model: Sequential) -> list[QuantumLayer]:
    return [layer for layer in model.layers if isinstance(layer, QuantumLayer)]


def evaluate(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy over ``x`` in batches (no training)."""
    logits = np.concatenate([model.forward(x[k:k + batch_size]) for k in range(0, len(x), batch_size)])
    loss, _ = binary_cross_entropy(logits, y)
    return loss, accuracy(logits, y)


def train(model: Sequential, config: TrainConfig, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
          y_val: np.ndarray, *, resume: TrainState | None = None,
          on_epoch: Callable[[TrainState], None] | None = None,
          on_step: Callable[[int, int], None] | None = None,
          simulator_factory: Callable[[TrainConfig, int], qc.Simulator] | None = None) -> TrainResult:
    """Train ``model`` for ``config.epochs`` epochs with Adam and binary cross-entropy.

    Args:
        model: from :func:`build_model` (or any :class:`Sequential` ending in one logit).
        config: the run's settings.
        x_train, y_train: features ``[N, F]`` and 0/1 labels ``[N]``.
        x_val, y_val: the validation split, evaluated after every epoch.
        resume: continue from this state (its epochs are not repeated; the result
            equals an uninterrupted run's).
        on_epoch: called with the state after every epoch (e.g. to checkpoint it).
        on_step: called as ``on_step(done, total)`` after every mini-batch (progress bars).
        simulator_factory: ``factory(config, epoch)``, the engine of every quantum layer in that
            epoch (default :func:`simulator_for_epoch`); e.g. a
            :class:`~qstore.distributed.DaskSimulator` seeded like it, to train on a cluster.

    Returns:
        The :class:`TrainResult`.
    """
    optimizer = Adam(config.lr)
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    first_epoch = 0
    if resume is not None:
        model.load(resume.params)
        optimizer.load_state(resume.optimizer)
        rng.bit_generator.state = resume.rng
        history = list(resume.history)
        first_epoch = resume.epoch
    quantum = _quantum_layers(model)
    circuits_before = sum(layer.circuits_run for layer in quantum)
    seconds_before = sum(layer.seconds for layer in quantum)
    steps_per_epoch = -(-len(x_train) // config.batch_size)
    total_steps = steps_per_epoch * (config.epochs - first_epoch)
    done = 0
    factory = simulator_for_epoch if simulator_factory is None else simulator_factory
    start = time.perf_counter()
    for epoch in range(first_epoch, config.epochs):
        optimizer.lr = exponential_decay(config.lr, config.lr_decay, epoch)
        for layer in quantum:
            layer.simulator = factory(config, epoch)
        order = rng.permutation(len(x_train))
        losses, hits = [], []
        for k in range(0, len(order), config.batch_size):
            rows = order[k:k + config.batch_size]
            logits = model.forward(x_train[rows])
            loss, grad = binary_cross_entropy(logits, y_train[rows])
            model.backward(grad)
            optimizer.step(model.parameters(), model.gradients())
            losses.append(loss * len(rows))
            hits.append(accuracy(logits, y_train[rows]) * len(rows))
            done += 1
            if on_step is not None:
                on_step(done, total_steps)
        val_loss, val_acc = evaluate(model, x_val, y_val, config.batch_size)
        history.append({"epoch": epoch + 1, "lr": optimizer.lr, "train_loss": sum(losses) / len(x_train),
                        "train_acc": sum(hits) / len(x_train), "val_loss": val_loss, "val_acc": val_acc})
        if on_epoch is not None:
            on_epoch(TrainState(epoch + 1, {k: v.copy() for k, v in model.parameters().items()}, optimizer.state(),
                                rng.bit_generator.state, list(history)))
    return TrainResult(model, history, sum(layer.circuits_run for layer in quantum) - circuits_before,
                       sum(layer.seconds for layer in quantum) - seconds_before, time.perf_counter() - start)
