"""A hybrid model: a sequence of layers ending in one logit, binary cross-entropy, accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .layers import Layer


class Sequential:
    """Layers applied in order; the last one outputs one logit per sample ``[B, 1]``.

    Parameters are addressed as ``"{position}.{name}"`` (``"0.W"``, ``"2.weights"``),
    the keys the optimizer and checkpoints use.
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits ``[B]`` for the batch ``x``."""
        for layer in self.layers:
            x = layer.forward(x)
        return x[:, 0]

    def backward(self, grad_logits: np.ndarray) -> None:
        """Back-propagate dLoss/dlogits ``[B]``; fills every layer's ``grads``."""
        grad = grad_logits[:, np.newaxis]
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    def parameters(self) -> dict[str, np.ndarray]:
        """Every trainable array by key (the arrays themselves: updating them in place updates the model)."""
        return {f"{k}.{name}": value for k, layer in enumerate(self.layers) for name, value in layer.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of the last backward pass, by the keys of :meth:`parameters`."""
        return {f"{k}.{name}": value for k, layer in enumerate(self.layers) for name, value in layer.grads.items()}

    def load(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite the parameters from ``values`` (same keys and shapes, e.g. from a checkpoint)."""
        current = self.parameters()
        if set(values) != set(current):
            raise ValueError(f"parameter keys differ: expected {sorted(current)}, got {sorted(values)}")
        for key, array in current.items():
            if np.shape(values[key]) != array.shape:
                raise ValueError(f"parameter {key}: expected shape {array.shape}, got {np.shape(values[key])}")
            array[...] = values[key]


def binary_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean BCE of sigmoid(logits) against 0/1 labels, and its gradient with respect to the logits.

    Computed from the logits (``softplus(z) - y z``) so it never takes log(0).
    """
    loss = np.logaddexp(0.0, logits) - labels * logits
    grad = (1.0 / (1.0 + np.exp(-logits)) - labels) / len(logits)
    return float(loss.mean()), grad


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose logit sign matches the label (logit > 0 means class 1)."""
    return float(np.mean((logits > 0) == (labels > 0.5)))
