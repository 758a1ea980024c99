"""Hybrid quantum-classical models and their training.

* :mod:`.layers`: :class:`Dense`, :class:`Tanh` and :class:`QuantumLayer` (numpy, batched through the
  engine), configured by :class:`QuantumLayerConfig`; :func:`feature_circuit` builds its circuit.
* :mod:`.model`, :mod:`.optim`: :class:`Sequential`, the loss, :class:`Adam`.
* :mod:`.train`: :class:`TrainConfig`, :func:`build_model`, :func:`train` (resumable).
* :mod:`.checkpoint`: HDF5 checkpoints, written atomically.
* :mod:`.sweep`: grid and random search over training settings on Dask (extra ``dask``; import it).
* :mod:`.torch_layer`: :class:`~.torch_layer.TorchQuantumLayer`, the quantum layer as a
  ``torch.nn.Module`` (extra ``torch``; import it).
"""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .layers import Dense, Layer, QuantumLayer, QuantumLayerConfig, Tanh, feature_circuit
from .model import Sequential, accuracy, binary_cross_entropy
from .optim import Adam, exponential_decay
from .train import TrainConfig, TrainResult, TrainState, build_model, evaluate, train

__all__ = [
    "Adam",
    "Checkpoint",
    "CheckpointError",
    "Dense",
    "Layer",
    "QuantumLayer",
    "QuantumLayerConfig",
    "Sequential",
    "Tanh",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "accuracy",
    "binary_cross_entropy",
    "build_model",
    "evaluate",
    "exponential_decay",
    "feature_circuit",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
