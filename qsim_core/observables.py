"""Pauli-string observables such as ``"Z0"``, ``"X1 Y3"`` or ``"Z0 Z7"``.

A string is a product of single-qubit Paulis written as letter + qubit index
(``I``, ``X``, ``Y``, ``Z``), separated by spaces or ``*``. ``"I"`` or ``""``
is the identity. Internally a string becomes ``P = i**ny X^xmask Z^zmask``
(bit k of a mask refers to qubit k, the engine's bit order), which kernels
evaluate without building matrices.

Public (``__all__``): :func:`parse_observables` and the parsed form it
returns, :class:`PauliStrings` (what backends take; see
:mod:`qsim_core.backends.contract`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from .errors import ObservableError

_TOKEN = re.compile(r"([IXYZ])(\d+)")


@dataclass(frozen=True)
class PauliStrings:
    """Observables as bit masks.

    Attributes:
        labels: the strings as given.
        xmask, zmask: int64[K]; bit k set where qubit k carries X (or Y) / Z (or Y).
        ny: int64[K]; number of Y factors (the phase i**ny makes P Hermitian).
    """

    labels: tuple[str, ...]
    xmask: np.ndarray
    zmask: np.ndarray
    ny: np.ndarray

    @cached_property
    def z_only(self) -> bool:
        """True when every string is diagonal (only Z and I factors)."""
        return not self.xmask.any()

    def __len__(self) -> int:
        return len(self.labels)

    def packed(self, pack: Callable[[np.ndarray, np.ndarray, np.ndarray], object]) -> object:
        """``pack(xmask, zmask, ny)``, kept per ``pack`` (a kernel module's ``pack_observables``): parsed strings
        are cached, so a caller that repeats its observables has them checked and converted once."""
        found = self._packs.get(pack)
        if found is None:
            found = self._packs[pack] = pack(self.xmask, self.zmask, self.ny)
        return found

    @cached_property
    def _packs(self) -> dict:
        return {}

    def __getstate__(self) -> dict:
        # the packed forms are this process's kernel objects: a pickled copy (a Dask task) packs its own
        return {name: value for name, value in self.__dict__.items() if name != "_packs"}

    def factors(self, k: int) -> dict[int, str]:
        """String k as ``{qubit: "X" | "Y" | "Z"}`` over the qubits it acts on (empty for the identity)."""
        x, z = int(self.xmask[k]), int(self.zmask[k])
        return {q: "Y" if (x >> q) & (z >> q) & 1 else "X" if (x >> q) & 1 else "Z"
                for q in range((x | z).bit_length()) if ((x | z) >> q) & 1}


def parse_observables(observables: str | Sequence[str], num_qubits: int) -> PauliStrings:
    """Parse one Pauli string or a sequence of them for a ``num_qubits`` register.

    Raises:
        ObservableError: unknown letter, malformed token, qubit out of range,
            a qubit named twice in one string, or an empty list.
    """
    labels = (observables,) if isinstance(observables, str) else tuple(observables)
    try:
        return _parse(labels, num_qubits)
    except TypeError:  # an unhashable entry: let _parse name it
        return _parse.__wrapped__(labels, num_qubits)


@lru_cache(maxsize=256)
def _parse(labels: tuple, num_qubits: int) -> PauliStrings:
    if not labels:
        raise ObservableError("no observables given; pass e.g. ['Z0', 'X1 Y2']")
    xmask = np.zeros(len(labels), np.int64)
    zmask = np.zeros(len(labels), np.int64)
    ny = np.zeros(len(labels), np.int64)
    for k, label in enumerate(labels):
        if not isinstance(label, str):
            raise ObservableError(f"observable {k} must be a Pauli string like 'Z0', got {label!r}")
        compact = re.sub(r"[\s*]+", "", label.upper())
        if compact in ("", "I"):
            continue
        consumed = 0
        seen: set[int] = set()
        for match in _TOKEN.finditer(compact):
            if match.start() != consumed:
                break
            consumed = match.end()
            letter, qubit = match.group(1), int(match.group(2))
            if qubit >= num_qubits:
                raise ObservableError(
                    f"observable {label!r}: qubit {qubit} is out of range for {num_qubits} qubits"
                )
            if qubit in seen:
                raise ObservableError(f"observable {label!r}: qubit {qubit} appears twice")
            seen.add(qubit)
            bit = np.int64(1) << qubit
            if letter in "XY":
                xmask[k] |= bit
            if letter in "YZ":
                zmask[k] |= bit
            ny[k] += letter == "Y"
        if consumed != len(compact):
            raise ObservableError(
                f"observable {label!r} is not a Pauli string: expected tokens like 'Z0', 'X1', 'Y3' "
                f"(letters I, X, Y, Z followed by a qubit index), stuck at {compact[consumed:]!r}"
            )
    return PauliStrings(labels, xmask, zmask, ny)


__all__ = ["PauliStrings", "parse_observables"]
