"""Expectation values from measurement counts, the only thing a QPU returns.

A Pauli string is measured by rotating each of its qubits into the Z basis
(X: H; Y: S-dagger then H) and reading the parity of the measured bits on its
support. Strings that agree on every shared qubit (qubit-wise commuting) share
one measured circuit, so ``["Z0", "Z1", "Z0 Z1"]`` costs one circuit and
``["X0", "Z0"]`` two.

An *executor* is any function ``executor(circuit, params[N, P], shots)``
returning one counts mapping per parameter row, keyed by basis index (qubit
k is bit k, IonQ's order) with counts summing to ``shots``.
:meth:`qsim_core.Simulator.counts` is one (see :func:`simulator_executor`);
the IonQ client is another.

Public (``__all__``): :data:`Executor`, :func:`expectations_from_counts`,
:func:`measurement_groups` and :func:`simulator_executor`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .circuit import Circuit
from .observables import PauliStrings, parse_observables

Executor = Callable[[Circuit, np.ndarray, int], Sequence[Mapping[int, int]]]
"""``executor(circuit, params[N, P], shots) -> [counts by basis index] * N`` (see the module docstring)."""


def measurement_groups(observables: PauliStrings) -> list[tuple[dict[int, str], list[int]]]:
    """Group strings measurable together: ``[(basis per qubit {q: "X"|"Y"|"Z"}, string positions)]``."""
    groups: list[tuple[dict[int, str], list[int]]] = []
    for k in range(len(observables)):
        basis = observables.factors(k)
        for group_basis, members in groups:
            if all(group_basis.get(q, letter) == letter for q, letter in basis.items()):
                group_basis.update(basis)
                members.append(k)
                break
        else:
            groups.append((basis, [k]))
    return groups


def rotated(circuit: Circuit, basis: Mapping[int, str]) -> Circuit:
    """``circuit`` followed by the rotations that measure ``basis`` in the Z basis."""
    out = circuit.copy()
    for q, letter in sorted(basis.items()):
        if letter == "Y":
            out.si(q)
        if letter in "XY":
            out.h(q)
    return out


def parities_from_counts(counts: Sequence[Mapping[int, int]], supports: Sequence[int]) -> np.ndarray:
    """Mean of ``(-1)^popcount(index & support)`` per counts mapping: float64[N, len(supports)]."""
    out = np.empty((len(counts), len(supports)))
    masks = np.array(supports, np.int64)
    for row, mapping in enumerate(counts):
        keys = np.fromiter(mapping.keys(), np.int64, len(mapping))
        tally = np.fromiter(mapping.values(), np.float64, len(mapping))
        bits = keys[:, np.newaxis] & masks[np.newaxis, :]
        parity = np.zeros(bits.shape, np.int64)
        while bits.any():
            parity ^= bits & 1
            bits >>= 1
        out[row] = (tally @ (1 - 2 * parity)) / tally.sum()
    return out


def expectations_from_counts(executor: Executor, circuit: Circuit, observables: str | Sequence[str],
                             params: np.ndarray, shots: int) -> np.ndarray:
    """Estimate Pauli expectations from ``shots`` measurements per row: float64[N, K].

    One executor call per measurement group (see :func:`measurement_groups`),
    each with all N parameter rows.
    """
    strings = parse_observables(observables, circuit.num_qubits)
    out = np.empty((len(params), len(strings)))
    for basis, members in measurement_groups(strings):
        counts = executor(rotated(circuit, basis), params, shots)
        if len(counts) != len(params):
            raise ValueError(f"executor returned {len(counts)} counts for {len(params)} parameter rows")
        supports = [int(strings.xmask[k] | strings.zmask[k]) for k in members]
        out[:, members] = parities_from_counts(counts, supports)
    return out


def simulator_executor(simulator) -> Executor:
    """An :data:`Executor` backed by a :class:`~qsim_core.Simulator` (``simulator.counts``)."""
    def run(circuit: Circuit, params: np.ndarray, shots: int) -> list[dict[int, int]]:
        return simulator.counts(circuit, shots, np.asarray(params, np.float64).reshape(len(params), -1))

    return run


__all__ = ["Executor", "expectations_from_counts", "measurement_groups", "simulator_executor"]
