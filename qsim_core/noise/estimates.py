"""Expectation values estimated from noisy shots (trajectories), one measured basis per group of strings.

Strings that agree on every shared qubit share one measurement (the grouping
of :mod:`qsim_core.measurement`); the basis change (S-dagger, H) runs after
the circuit without noise, as a measurement setting, so only the written
gates are noisy.

Public (``__all__``): :func:`noisy_shot_expectations`.
"""

from __future__ import annotations

import numpy as np

from ..backends import Backend, Job
from ..circuit import Operation
from ..measurement import measurement_groups
from ..observables import PauliStrings
from .model import NoiseModel
from .trajectories import noisy_samples


def _basis_change(basis: dict[int, str]) -> tuple[Operation, ...]:
    ops: list[Operation] = []
    for q, letter in sorted(basis.items()):
        if letter == "Y":
            ops.append(Operation("si", (q,), ()))
        if letter in "XY":
            ops.append(Operation("h", (q,), ()))
    return tuple(ops)


def noisy_shot_expectations(backend: Backend, job: Job, model: NoiseModel, observables: PauliStrings, shots: int,
                            key: int) -> np.ndarray:
    """Expectations estimated from ``shots`` noisy shots per parameter set and measured basis: float64[B, K]."""
    out = np.empty((job.batch, len(observables)))
    for group, (basis, members) in enumerate(measurement_groups(observables)):
        samples = noisy_samples(backend, job, model, shots, key ^ group, _basis_change(basis))
        for k in members:
            support = int(observables.xmask[k] | observables.zmask[k])
            parity = np.bitwise_count(samples & support) & 1
            out[:, k] = 1.0 - 2.0 * parity.mean(axis=1)
    return out


__all__ = ["noisy_shot_expectations"]
