"""Noisy simulation: IonQ's depolarizing noise models, exactly (density matrices) and by trajectories.

``qc.Simulator(noise="aria-1")`` (or a :class:`NoiseModel`) applies a
depolarizing channel after every gate of the circuit as written; see
``docs/guides/noise.md``. The modules, one job each:

* :mod:`~qsim_core.noise.model`: :class:`NoiseModel`, IonQ's presets;
* :mod:`~qsim_core.noise.density`: exact noisy probabilities and expectations
  (density matrices, up to :data:`MAX_DENSITY_QUBITS` qubits), with
  :mod:`~qsim_core.noise.density_kernels` its compiled loops;
* :mod:`~qsim_core.noise.adjoint`: exact noisy gradients by the adjoint
  sweep over density matrices;
* :mod:`~qsim_core.noise.frames`: where each possible Pauli error ends up
  (Pauli frames), so trajectories share simulations;
* :mod:`~qsim_core.noise.trajectories`: noisy shots;
* :mod:`~qsim_core.noise.estimates`: expectation estimates from noisy shots.

Public (``__all__``): the names below.
"""

from .adjoint import MAX_INVERTIBLE_RATE, adjoint_supports, noisy_adjoint
from .density import MAX_DENSITY_QUBITS, noisy_expectations, noisy_probabilities
from .estimates import noisy_shot_expectations
from .model import IONQ_MODELS, NoiseError, NoiseModel, resolve_noise
from .trajectories import noisy_samples

__all__ = ["IONQ_MODELS", "MAX_DENSITY_QUBITS", "MAX_INVERTIBLE_RATE", "NoiseError", "NoiseModel", "adjoint_supports",
           "noisy_adjoint", "noisy_expectations", "noisy_probabilities", "noisy_samples", "noisy_shot_expectations",
           "resolve_noise"]
