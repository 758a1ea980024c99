"""Noise models: depolarizing channels after every gate, IonQ's cloud-simulator presets.

IonQ's noisy simulation (https://docs.ionq.com/guides/simulation-with-noise-models)
applies, after every gate of the circuit as written,

* a one-qubit gate: Kraus operators ``sqrt(1 - 3 r1 / 4) I`` and ``sqrt(r1 / 4) X, Y, Z``;
* a two-qubit gate: ``sqrt(1 - 15 r2 / 16) I(x)I`` and ``sqrt(r2 / 16) P(x)Q`` for the 15 other Pauli pairs.

Both are depolarizing channels ``rho -> (1 - r) rho + r Tr_q(rho) (x) I / 2**k`` on the
gate's k qubits, so the rate r is the depolarizing parameter: a channel for
``0 <= r1 <= 4/3`` and ``0 <= r2 <= 16/15`` (the top of each range is the
uniform Pauli channel); those are the accepted ranges. The gate table has no
gate on three or more qubits, so no other case arises.

Public (``__all__``): :class:`NoiseModel`, :data:`IONQ_MODELS`, :func:`resolve_noise`, :class:`NoiseError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import QsimError

#: IonQ's published rates ``(r1, r2)`` and the modelled QPU's qubit count, by model name
IONQ_MODELS: dict[str, tuple[float, float, int]] = {
    "aria-1": (0.0005, 0.0133, 25),
    "aria-2": (0.0006573333333333332, 0.01856, 25),
    "forte-1": (0.0002666666666666667, 0.004949333333333333, 29),
}
_MAX_RATE = {1: 4 / 3, 2: 16 / 15}


class NoiseError(QsimError, ValueError):
    """A request that has no noisy meaning (a noisy statevector, adjoint gradients of a channel)."""


@dataclass(frozen=True)
class NoiseModel:
    """Depolarizing noise after every gate: rate ``r1q`` after one-qubit gates, ``r2q`` after two-qubit ones.

    Args:
        r1q: one-qubit depolarizing rate r1, in [0, 4/3] (Kraus weights in the module docstring).
        r2q: two-qubit depolarizing rate r2, in [0, 16/15].
        name: a label (IonQ's model name for the presets).
        max_qubits: qubit count of the modelled QPU, or None when there is none.

    Raises:
        ValueError: a rate that is not a number in its range.

    Examples:
        >>> NoiseModel.ionq("aria-1").r2q
        0.0133
        >>> round(NoiseModel(r1q=0.001, r2q=0.01).error_probability(2), 6)
        0.009375
    """

    r1q: float
    r2q: float
    name: str = "custom"
    max_qubits: int | None = None

    def __post_init__(self) -> None:
        for label, value, arity in (("r1q", self.r1q, 1), ("r2q", self.r2q, 2)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 <= value <= _MAX_RATE[arity]:
                raise ValueError(f"{label} must be a depolarizing rate in [0, {_MAX_RATE[arity]:.6g}], got {value!r}")
            object.__setattr__(self, label, float(value))

    @classmethod
    def ionq(cls, name: str) -> NoiseModel:
        """IonQ's model ``name`` (``"aria-1"``, ``"aria-2"``, ``"forte-1"``) with its published rates.

        Raises:
            ValueError: an unknown name (the message lists the known ones).
        """
        if name not in IONQ_MODELS:
            raise ValueError(f"unknown noise model {name!r}; known models: {', '.join(IONQ_MODELS)}")
        r1, r2, qubits = IONQ_MODELS[name]
        return cls(r1, r2, name, qubits)

    @property
    def noiseless(self) -> bool:
        """True when both rates are 0 (the simulator then runs the noiseless engine)."""
        return self.r1q == 0 and self.r2q == 0

    def rate(self, arity: int) -> float:
        """The depolarizing rate after a gate on ``arity`` qubits (1 or 2)."""
        return self.r1q if arity == 1 else self.r2q

    def error_probability(self, arity: int) -> float:
        """Probability that a non-identity Pauli follows a gate on ``arity`` qubits: ``(1 - 4**-k) r``."""
        return (1 - 4.0 ** -arity) * self.rate(arity)


def resolve_noise(noise: None | str | NoiseModel) -> NoiseModel | None:
    """``Simulator(noise=...)``'s argument as a model, or None for no noise (also for all-zero rates).

    Raises:
        ValueError: an unknown model name or a value of another type.
    """
    if noise is None:
        return None
    if isinstance(noise, str):
        noise = NoiseModel.ionq(noise)
    if not isinstance(noise, NoiseModel):
        raise ValueError(f"noise must be None, a model name ({', '.join(IONQ_MODELS)}) or a NoiseModel, "
                         f"got {type(noise).__name__}")
    return None if noise.noiseless else noise


__all__ = ["IONQ_MODELS", "NoiseError", "NoiseModel", "resolve_noise"]
