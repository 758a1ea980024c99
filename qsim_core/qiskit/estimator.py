"""``EstimatorV2``: Qiskit's estimator primitive (V2) on the engine.

Each pub ``(circuit, observables, parameter_values, precision)`` runs as
one batched engine call: the circuit is translated once
(:mod:`qsim_core.qiskit.translate`), the pub's ``BindingsArray`` is
flattened to ``params[B, P]``, every distinct Pauli term of the pub's
observables becomes one engine Pauli string, and the engine returns all
``B x K`` term expectations at once; observables are their real linear
combinations, broadcast against the bindings as Qiskit broadcasts them.

Precision. ``precision = 0`` gives exact expectations (``stds`` are 0).
``precision > 0`` gives shot estimates, as a QPU would: each Pauli term is
estimated from ``shots = ceil(1 / precision**2)`` samples per parameter set
(the rule of Qiskit's ``BackendEstimatorV2``; diagonal terms share one
measurement, others are measured in their own basis), and ``stds`` is
``sum_i |c_i| sqrt(1 - <P_i>^2) / sqrt(shots)`` from the estimates, also as
``BackendEstimatorV2`` reports it. (Qiskit's ``StatevectorEstimator`` and Aer
instead add Gaussian noise of width ``precision`` to exact values.)

Public (``__all__``): :class:`EstimatorV2`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveResult, PubResult
from qiskit.primitives.containers import EstimatorPub, EstimatorPubLike, ObservablesArray

from ..simulator import Simulator
from .job import Engine, QsimPrimitiveJob, SeedLike
from .translate import translate


class EstimatorV2(BaseEstimatorV2):
    """Expectation values of observables on circuits, Qiskit's ``BaseEstimatorV2`` contract.

    Args:
        default_precision: precision of pubs that name none; 0 (exact) by default.
        seed: an int makes every run reproducible (same input, same estimates);
            a numpy Generator is drawn from once per run; None is fresh randomness.
            Only shot estimates (precision > 0) are random.
        backend: the engine backend (``"auto"``, ``"cython"``, ``"numba"``, ``"reference"``).
        threads: engine threads; None uses every core.

    Example:
        >>> from qiskit.circuit.library import real_amplitudes
        >>> circuit = real_amplitudes(2, reps=1)
        >>> job = EstimatorV2().run([(circuit, ["ZZ", "XI"], [0.1, 0.2, 0.3, 0.4])])
        >>> job.result()[0].data.evs.shape
        (2,)
    """

    def __init__(self, *, default_precision: float = 0.0, seed: SeedLike = None, backend: str = "auto",
                 threads: int | None = None) -> None:
        self._default_precision = _check_precision(default_precision, "default_precision")
        self._engine = Engine(seed, backend, threads)

    @property
    def default_precision(self) -> float:
        """Precision of pubs that name none (0: exact)."""
        return self._default_precision

    @property
    def seed(self) -> SeedLike:
        """The seed given to the constructor."""
        return self._engine.seed

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None
            ) -> QsimPrimitiveJob[PrimitiveResult[PubResult]]:
        """Estimate every pub; the returned job is already done.

        Raises:
            ValueError: a malformed pub (Qiskit's coercion) or a negative precision.
        """
        if precision is None:
            precision = self._default_precision
        coerced = [EstimatorPub.coerce(pub, _check_precision(precision, "precision")) for pub in pubs]
        for position, pub in enumerate(coerced):
            _check_precision(pub.precision, f"pub {position} precision")
        return self._engine.run(_run_pub, coerced)


def _check_precision(precision: object, what: str) -> float:
    if isinstance(precision, bool) or not isinstance(precision, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(precision) < math.inf:
        raise ValueError(f"{what} must be a finite number >= 0 (0: exact), got {precision!r}")
    return float(precision)


def _run_pub(simulator: Simulator, pub: EstimatorPub) -> PubResult:
    translation = translate(pub.circuit, measurements=False)
    params = translation.bind(pub.parameter_values)
    strings, coefficients = _pauli_terms(pub.observables)
    precision = pub.precision
    shots = math.ceil(1.0 / precision**2) if precision > 0 else None
    terms = simulator.expectation(translation.circuit, strings, params, shots=shots)  # [B, K]
    values = terms @ coefficients.T  # [B, M]
    rows, observables = np.broadcast_arrays(np.arange(len(params)).reshape(pub.parameter_values.shape),
                                            np.arange(len(coefficients)).reshape(pub.observables.shape))
    evs = values[rows, observables]
    if shots is None:
        stds = np.zeros_like(evs)
    else:
        spread = np.sqrt(np.clip(1.0 - terms**2, 0.0, None)) @ np.abs(coefficients).T / math.sqrt(shots)
        stds = spread[rows, observables]
    metadata = {"target_precision": precision, "circuit_metadata": pub.circuit.metadata}
    if shots is not None:
        metadata["shots"] = shots
    return PubResult(DataBin(evs=evs, stds=stds, shape=evs.shape), metadata=metadata)


def _pauli_terms(observables: ObservablesArray) -> tuple[list[str], np.ndarray]:
    """The distinct Pauli terms of ``observables`` as engine strings, and coefficients ``[M, K]``.

    ``M`` is ``observables.size`` (C order); row m holds observable m's real coefficient
    of each of the ``K`` strings. Projector terms (``0 1 + - r l``) are expanded into Paulis.
    """
    column: dict[str, int] = {}
    entries: list[tuple[int, int, float]] = []
    flat = observables.sparse_observables_array().reshape(-1)
    for row, observable in enumerate(flat):
        for letters, qubits, coefficient in observable.as_paulis().to_sparse_list():
            label = " ".join(f"{letter}{qubit}" for letter, qubit in zip(letters, qubits, strict=True))
            entries.append((row, column.setdefault(label, len(column)), complex(coefficient).real))
    coefficients = np.zeros((len(flat), max(len(column), 1)))
    for row, k, value in entries:
        coefficients[row, k] += value
    return list(column) or [""], coefficients


__all__ = ["EstimatorV2"]
