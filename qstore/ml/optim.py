"""Adam and the learning-rate schedule."""

from __future__ import annotations

import numpy as np


class Adam:
    """Adam (Kingma & Ba 2015) over a dict of parameter arrays, updated in place.

    Args:
        lr: step size.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.step_count = 0
        self.moments: dict[str, np.ndarray] = {}
        self.squares: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """One update of every array in ``params`` from ``grads`` (same keys)."""
        self.step_count += 1
        b1, b2 = self.betas
        for key, value in params.items():
            grad = grads[key]
            m = self.moments.setdefault(key, np.zeros_like(value))
            v = self.squares.setdefault(key, np.zeros_like(value))
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            m_hat = m / (1 - b1 ** self.step_count)
            v_hat = v / (1 - b2 ** self.step_count)
            value -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume exactly, as arrays (copies, for a checkpoint)."""
        out = {"step_count": np.array(self.step_count), "lr": np.array(self.lr)}
        out.update({f"m/{k}": v.copy() for k, v in self.moments.items()})
        out.update({f"v/{k}": v.copy() for k, v in self.squares.items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` saved."""
        self.step_count = int(state["step_count"])
        self.lr = float(state["lr"])
        self.moments = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("m/")}
        self.squares = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("v/")}


def exponential_decay(initial: float, rate: float, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based): ``initial * rate ** epoch``."""
    return initial * rate ** epoch
