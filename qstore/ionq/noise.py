"""IonQ's simulator ``noise`` field (``{"model": "aria-1", "seed": 7}``) read as the engine's noise model.

IonQ's cloud simulator runs ``"ideal"`` (no noise, the default) or the
model of a QPU (``aria-1``, ``aria-2``, ``forte-1``: depolarizing channels
after every gate, :class:`qsim_core.NoiseModel`), shot by shot, on at most
as many qubits as that QPU has. ``harmony`` is retired and
``forte-enterprise-1`` is listed without published rates, so neither can be
modelled here: both are refused with the reason, any other name with the
list of known ones.

Public (``__all__``): :data:`IDEAL`, :data:`UNAVAILABLE_MODELS`, :data:`MAX_NOISE_SEED`,
:func:`known_noise_models`, :func:`read_noise`, :func:`noise_field`, :func:`emulated_qpu_model` (the
model this local server emulates a QPU backend with: its published rates, where IonQ has published them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qsim_core.noise import IONQ_MODELS, NoiseModel

from .wire import IonQFormatError

#: the model name of noiseless simulation
IDEAL = "ideal"
#: models IonQ names that cannot be simulated here, and why
UNAVAILABLE_MODELS = {
    "harmony": "IonQ retired the Harmony QPU and its noise model",
    "forte-enterprise-1": "IonQ has published no noise rates for it",
}
#: largest ``noise.seed`` accepted (a non-negative 63-bit integer)
MAX_NOISE_SEED = 2**63 - 1


def known_noise_models() -> tuple[str, ...]:
    """The model names a job may ask for: ``"ideal"`` and IonQ's presets."""
    return (IDEAL, *IONQ_MODELS)


@dataclass(frozen=True)
class NoiseRequest:
    """A validated ``noise`` object: the engine's model (None for ``"ideal"``) and the seed (None if unset)."""

    model: NoiseModel | None
    seed: int | None

    @property
    def name(self) -> str:
        """The model's wire name (``"ideal"`` without noise)."""
        return IDEAL if self.model is None else self.model.name


def read_noise(noise: Mapping[str, Any] | None) -> NoiseRequest:
    """Validate a job's ``noise`` object (None: ideal, no seed).

    Raises:
        IonQFormatError: ``model`` not a string or not a model this server runs (the message
            lists the known ones, or says why a known name cannot be run), or ``seed`` not null
            nor an integer in ``0..2**63 - 1``.
    """
    if noise is None:
        return NoiseRequest(None, None)
    name = noise.get("model", IDEAL)
    if not isinstance(name, str):
        raise IonQFormatError(f"noise.model must be a model name ({', '.join(known_noise_models())}), got {name!r:.80}")
    if name in UNAVAILABLE_MODELS:
        raise IonQFormatError(f"noise model {name!r} is not available: {UNAVAILABLE_MODELS[name]}; "
                              f"known models: {', '.join(known_noise_models())}")
    if name != IDEAL and name not in IONQ_MODELS:
        raise IonQFormatError(f"unknown noise model {name!r:.80}; known models: {', '.join(known_noise_models())}")
    seed = noise.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_NOISE_SEED):
        raise IonQFormatError(f"noise.seed must be null or an integer from 0 to {MAX_NOISE_SEED}, got {seed!r:.80}")
    return NoiseRequest(None if name == IDEAL else NoiseModel.ionq(name), seed)


def emulated_qpu_model(backend: str) -> NoiseModel | None:
    """The noise model this server emulates QPU ``backend`` with (``"qpu.aria-1"`` -> aria-1's), or None for a
    QPU IonQ publishes no rates for (``qpu.forte-enterprise-1``, a bare ``qpu``) and for the simulator."""
    name = backend.removeprefix("qpu.") if backend.startswith("qpu.") else None
    return NoiseModel.ionq(name) if name in IONQ_MODELS else None


def noise_field(request: NoiseRequest, seed: int) -> dict[str, Any]:
    """How a simulator job reports its noise: the model's name and the seed its shots were drawn with.

    ``seed`` is the seed the job ran with (the client's, or the server's derived one), so a
    noisy job can be run again with the same shots.
    """
    return {"model": request.name, "seed": seed if request.seed is None else request.seed}


__all__ = ["IDEAL", "MAX_NOISE_SEED", "UNAVAILABLE_MODELS", "NoiseRequest", "emulated_qpu_model", "known_noise_models",
           "noise_field", "read_noise"]
