"""IonQ result dictionaries to and from the engine's arrays.

Result keys are decimal strings of the basis index with qubit k as bit k, the engine's own
order, so a result dict is an index -> probability (or count) map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .wire import (
    IonQFormatError,
    read_number,
)


def probabilities_to_ionq(probabilities: np.ndarray, cutoff: float = 1e-14) -> dict[str, float]:
    """IonQ's result form of a probability vector: ``{"<basis index>": p}``, zeros omitted.

    Args:
        probabilities: float ``(2**n,)``, index bit k is qubit k (the engine's order).
        cutoff: probabilities at or below this are omitted (the rounding noise
            of a double-precision state is about 1e-32; IonQ lists only non-zero states).
    """
    vector = np.asarray(probabilities, dtype=np.float64)
    indices = np.flatnonzero(vector > cutoff)
    # tolist: plain ints and floats in one call, not a numpy scalar per state
    return dict(zip(map(str, indices.tolist()), vector[indices].tolist(), strict=True))


def frequencies_to_ionq(samples: np.ndarray, shots: int) -> dict[str, float]:
    """IonQ's result form of measured shots (a QPU's, or a noisy simulation's): ``{"<basis index>": count / shots}``.

    Args:
        samples: int ``(shots,)`` measured basis indices (bit k is qubit k).
        shots: the number of shots (``len(samples)``), the denominator.
    """
    values, counts = np.unique(np.asarray(samples, dtype=np.int64), return_counts=True)
    return dict(zip(map(str, values.tolist()), (counts / shots).tolist(), strict=True))


def _result_items(result: Mapping[str, Any], num_qubits: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64, values float64) of an IonQ result dict, validated."""
    if not isinstance(result, Mapping):
        raise IonQFormatError(f"a result must be an object of basis index -> value, got {type(result).__name__}")
    size = 1 << num_qubits
    # checked in bulk (a result lists up to 2**n states); the loop below only runs to name a bad entry
    keys, numbers = list(result), list(result.values())
    try:
        if all(map(str.isdigit, keys)) and set(map(type, numbers)) <= {int, float}:
            indices = np.fromiter(map(int, keys), np.int64, len(keys))
            values = np.array(numbers, dtype=np.float64)
            if (indices < size).all() and np.isfinite(values).all() and (values >= 0).all():
                return indices, values
    except (TypeError, ValueError, OverflowError):  # a key that is no str, or no int64
        pass
    indices, values = [], []
    for key, value in result.items():
        if not isinstance(key, str) or not key.isdigit() or int(key) >= size:
            raise IonQFormatError(f"result key {key!r} is not a basis index of {num_qubits} qubits (0..{size - 1})")
        try:
            number = read_number(value, key)
        except IonQFormatError as error:
            raise IonQFormatError(f"result: {error}") from None
        if number < 0:
            raise IonQFormatError(f"result value for {key!r} is negative: {number}")
        indices.append(int(key))
        values.append(number)
    return np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.float64)


def probabilities_from_ionq(result: Mapping[str, Any], num_qubits: int) -> np.ndarray:
    """The engine's probability vector from an IonQ result dict.

    Args:
        result: ``{"<basis index>": p}`` (IonQ's little-endian keys: qubit k is bit k).
        num_qubits: register width n.

    Returns:
        float64 ``(2**n,)``, the same layout as ``qsim_core.Simulator.probabilities``.
    """
    indices, values = _result_items(result, num_qubits)
    vector = np.zeros(1 << num_qubits)
    vector[indices] = values
    return vector


def counts_from_ionq(result: Mapping[str, Any], num_qubits: int, shots: int, *, sample: bool = False,
                     seed: int | None = None) -> dict[int, int]:
    """Counts keyed by basis index (as ``qsim_core.Simulator.counts``) from an IonQ result dict.

    Args:
        result: ``{"<basis index>": p}``.
        num_qubits: register width n.
        shots: number of shots.
        sample: False for QPU and noisy-simulator results, which are already
            ``counts / shots`` (rounded back to counts, as the official
            clients do); True for the ideal simulator's exact probabilities,
            from which ``shots`` outcomes are drawn (multinomial).
        seed: seed of the draw when ``sample`` is True.
    """
    indices, values = _result_items(result, num_qubits)
    if sample:
        drawn = np.random.default_rng(seed).multinomial(shots, values / values.sum())
    else:
        drawn = np.rint(values * shots).astype(np.int64)
    drawn_at = np.flatnonzero(drawn)
    return dict(zip(indices[drawn_at].tolist(), drawn[drawn_at].tolist(), strict=True))


__all__ = ["counts_from_ionq", "frequencies_to_ionq", "probabilities_from_ionq", "probabilities_to_ionq"]
