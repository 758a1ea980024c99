"""The gate table: the one place a gate is defined.

Every gate the simulator knows is one :class:`Gate` entry in :data:`GATES`.
The circuit builder (one method per entry), the compiler, every backend, the
tests and the IonQ serializer read this table; there is no second gate list.

Conventions
-----------
* Rotation angles (``rx ry rz xx yy zz``) are in **radians**:
  ``R_P(theta) = exp(-i theta P / 2)``.
* Native-gate phases and angles (``gpi gpi2 ms native_zz``) are in **turns**
  (1 turn = 2 pi rad), as in IonQ's API and its official clients.
* A k-qubit gate's matrix is written in the basis ``|q_0 q_1 ... >`` of its
  qubit arguments with the *first argument most significant* (the textbook
  layout: ``cnot(c, t)`` is ``[[1,0,0,0],[0,1,0,0],[0,0,0,1],[0,0,1,0]]``).
  This is independent of the state's bit order, which is documented in
  :mod:`qsim_core.circuit` (qubit k is bit k of the basis index).
* Matrix functions are vectorised: each parameter may be an array and the
  result has shape ``broadcast(params).shape + (2**k, 2**k)``, complex128;
  parametrised ones accept ``out=`` (any complex dtype) to fill in place.

Public (``__all__``): :class:`Gate`, :data:`GATES` (both also
``qsim_core.<name>``), :data:`GATE_BY_OPCODE`, :func:`gate` (lookup by name
with a helpful error), :data:`PAULI` and :data:`MatrixFunction` (the type of
:attr:`Gate.matrix`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import CircuitError

_SQRT1_2 = 1.0 / np.sqrt(2.0)
_TWO_PI = 2.0 * np.pi

MatrixFunction = Callable[..., np.ndarray]
"""``matrix(*params, out=None) -> complex[..., 2**k, 2**k]``: a gate's vectorised matrix (module docstring)."""

#: single-qubit Pauli matrices, the building blocks of rotation generators
PAULI = {
    "I": np.eye(2, dtype=np.complex128),
    "X": np.array([[0, 1], [1, 0]], np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], np.complex128),
    "Z": np.array([[1, 0], [0, -1]], np.complex128),
}


def _matrix(rows: list[list[object]], *params: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Stack a nested list of scalars/arrays into ``out`` (allocated if None), shape (..., d, d)."""
    if out is None:
        shape = np.broadcast_shapes(*(np.shape(p) for p in params))
        out = np.empty(shape + (len(rows), len(rows)), dtype=np.complex128)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            out[..., r, c] = value
    return out


def _constant(rows: list[list[complex]]) -> MatrixFunction:
    matrix = np.array(rows, dtype=np.complex128)
    matrix.setflags(write=False)
    return lambda: matrix


def _rx(theta, out=None):
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    return _matrix([[c, -1j * s], [-1j * s, c]], theta, out=out)


def _ry(theta, out=None):
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    return _matrix([[c, -s], [s, c]], theta, out=out)


def _rz(theta, out=None):
    e = np.exp(-0.5j * theta)
    return _matrix([[e, 0], [0, np.conj(e)]], theta, out=out)


def _xx(theta, out=None):
    c, s = np.cos(theta / 2), -1j * np.sin(theta / 2)
    return _matrix([[c, 0, 0, s], [0, c, s, 0], [0, s, c, 0], [s, 0, 0, c]], theta, out=out)


def _yy(theta, out=None):
    c, s = np.cos(theta / 2), 1j * np.sin(theta / 2)
    return _matrix([[c, 0, 0, s], [0, c, -s, 0], [0, -s, c, 0], [s, 0, 0, c]], theta, out=out)


def _zz_diagonal(half_angle, out=None):
    e = np.exp(-1j * half_angle)
    f = np.conj(e)
    return _matrix([[e, 0, 0, 0], [0, f, 0, 0], [0, 0, f, 0], [0, 0, 0, e]], half_angle, out=out)


def _zz(theta, out=None):
    return _zz_diagonal(np.asarray(theta) / 2, out)


def _native_zz(angle, out=None):
    return _zz_diagonal(np.pi * np.asarray(angle), out)


def _gpi(phase, out=None):
    e = np.exp(1j * _TWO_PI * np.asarray(phase))
    return _matrix([[0, np.conj(e)], [e, 0]], phase, out=out)


def _gpi2(phase, out=None):
    e = np.exp(1j * _TWO_PI * np.asarray(phase))
    return _matrix([[_SQRT1_2, -1j * _SQRT1_2 * np.conj(e)], [-1j * _SQRT1_2 * e, _SQRT1_2]], phase, out=out)


def _ms(phase0, phase1, angle=0.25, out=None):
    c = np.cos(np.pi * np.asarray(angle))
    s = -1j * np.sin(np.pi * np.asarray(angle))
    plus = np.exp(1j * _TWO_PI * (np.asarray(phase0) + phase1))
    minus = np.exp(1j * _TWO_PI * (np.asarray(phase0) - phase1))
    return _matrix(
        [
            [c, 0, 0, s * np.conj(plus)],
            [0, c, s * np.conj(minus), 0],
            [0, s * minus, c, 0],
            [s * plus, 0, 0, c],
        ],
        phase0,
        phase1,
        angle,
        out=out,
    )


@dataclass(frozen=True)
class Gate:
    """One entry of the gate table.

    Attributes:
        name: our name, also the :class:`~qsim_core.Circuit` method name.
        num_qubits: how many qubits it acts on (1 or 2).
        param_names: names of its real parameters, in call order.
        unit: ``"radians"``, ``"turns"`` or ``""`` for fixed gates.
        matrix: vectorised matrix function (see the module docstring).
        gateset: ``"qis"`` or ``"native"`` (IonQ's two gate sets).
        ionq_name: the gate's name in IonQ's JSON (``native_zz`` is ``zz``).
        qubit_roles: names of the qubit arguments (``cnot``: control, target).
        defaults: default values of trailing parameters (``ms`` angle 0.25).
        diagonal: the matrix is diagonal for every parameter value.
        monomial: one non-zero per column (a basis permutation with phases).
        real: the matrix is real for every parameter value.
        generator: for rotations ``exp(-i a P / 2)``, the Pauli string P in
            the gate's qubit order (``"X"``, ``"ZZ"``); empty otherwise.
        radians_per_unit: a = radians_per_unit * parameter (2 pi for turns).
        spectrum: for parametrised non-rotation gates, per parameter
            ``(omega, R)``: an expectation value, as a function of that
            parameter alone, is a trigonometric polynomial with frequencies
            ``omega, 2 omega, ..., R omega`` (rad per unit). Rotation gates get
            ``(radians_per_unit, 1)`` from their generator; see :attr:`spectra`.
        doc: one line for the builder method's docstring.
        opcode: position in :data:`GATES`, filled in by the table.
    """

    name: str
    num_qubits: int
    param_names: tuple[str, ...]
    unit: str
    matrix: MatrixFunction
    gateset: str
    ionq_name: str
    qubit_roles: tuple[str, ...]
    doc: str
    defaults: tuple[float, ...] = ()
    diagonal: bool = False
    monomial: bool = False
    real: bool = False
    generator: str = ""
    radians_per_unit: float = 1.0
    spectrum: tuple[tuple[float, int], ...] = ()
    opcode: int = field(default=-1, compare=False)

    @property
    def spectra(self) -> tuple[tuple[float, int], ...]:
        """``(omega, R)`` per parameter: the parameter-shift rule's frequencies (see ``spectrum``).

        The gate matrix's own entries then have the single frequency
        ``omega * R / 2``, which is what exact derivative matrices use.
        """
        if self.generator:
            return ((self.radians_per_unit, 1),)
        return self.spectrum

    @property
    def num_params(self) -> int:
        """Number of real parameters the gate takes."""
        return len(self.param_names)

    @property
    def generator_matrix(self) -> np.ndarray | None:
        """The Pauli matrix P of a rotation gate (first qubit most significant), else None."""
        if not self.generator:
            return None
        matrix = np.ones((1, 1), np.complex128)
        for letter in self.generator:
            matrix = np.kron(matrix, PAULI[letter])
        return matrix


_ONE = ("target",)
_TWO = ("qubit0", "qubit1")
_S2 = _SQRT1_2

_TABLE: tuple[Gate, ...] = (
    Gate("x", 1, (), "", _constant([[0, 1], [1, 0]]), "qis", "x", _ONE, "Pauli X.", monomial=True, real=True),
    Gate("y", 1, (), "", _constant([[0, -1j], [1j, 0]]), "qis", "y", _ONE, "Pauli Y.", monomial=True),
    Gate("z", 1, (), "", _constant([[1, 0], [0, -1]]), "qis", "z", _ONE, "Pauli Z.",
         diagonal=True, monomial=True, real=True),
    Gate("h", 1, (), "", _constant([[_S2, _S2], [_S2, -_S2]]), "qis", "h", _ONE, "Hadamard.", real=True),
    Gate("s", 1, (), "", _constant([[1, 0], [0, 1j]]), "qis", "s", _ONE, "S = diag(1, i).",
         diagonal=True, monomial=True),
    Gate("si", 1, (), "", _constant([[1, 0], [0, -1j]]), "qis", "si", _ONE, "S dagger = diag(1, -i).",
         diagonal=True, monomial=True),
    Gate("t", 1, (), "", _constant([[1, 0], [0, np.exp(0.25j * np.pi)]]), "qis", "t", _ONE,
         "T = diag(1, exp(i pi/4)).", diagonal=True, monomial=True),
    Gate("ti", 1, (), "", _constant([[1, 0], [0, np.exp(-0.25j * np.pi)]]), "qis", "ti", _ONE,
         "T dagger = diag(1, exp(-i pi/4)).", diagonal=True, monomial=True),
    Gate("v", 1, (), "", _constant([[0.5 + 0.5j, 0.5 - 0.5j], [0.5 - 0.5j, 0.5 + 0.5j]]), "qis", "v", _ONE,
         "V = sqrt(X)."),
    Gate("vi", 1, (), "", _constant([[0.5 - 0.5j, 0.5 + 0.5j], [0.5 + 0.5j, 0.5 - 0.5j]]), "qis", "vi", _ONE,
         "V dagger."),
    Gate("rx", 1, ("theta",), "radians", _rx, "qis", "rx", _ONE, "RX(theta) = exp(-i theta X / 2).", generator="X"),
    Gate("ry", 1, ("theta",), "radians", _ry, "qis", "ry", _ONE, "RY(theta) = exp(-i theta Y / 2).", real=True,
         generator="Y"),
    Gate("rz", 1, ("theta",), "radians", _rz, "qis", "rz", _ONE, "RZ(theta) = exp(-i theta Z / 2).",
         diagonal=True, monomial=True, generator="Z"),
    Gate("cnot", 2, (), "", _constant([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]), "qis", "cnot",
         ("control", "target"), "Controlled X.", monomial=True, real=True),
    Gate("swap", 2, (), "", _constant([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]), "qis", "swap",
         _TWO, "SWAP.", monomial=True, real=True),
    Gate("xx", 2, ("theta",), "radians", _xx, "qis", "xx", _TWO, "XX(theta) = exp(-i theta X(x)X / 2).",
         generator="XX"),
    Gate("yy", 2, ("theta",), "radians", _yy, "qis", "yy", _TWO, "YY(theta) = exp(-i theta Y(x)Y / 2).",
         generator="YY"),
    Gate("zz", 2, ("theta",), "radians", _zz, "qis", "zz", _TWO, "ZZ(theta) = exp(-i theta Z(x)Z / 2).",
         diagonal=True, monomial=True, generator="ZZ"),
    Gate("gpi", 1, ("phase",), "turns", _gpi, "native", "gpi", _ONE,
         "IonQ GPi(phase) = [[0, e^(-2 pi i phase)], [e^(2 pi i phase), 0]].", monomial=True,
         spectrum=((4 * np.pi, 1),)),
    Gate("gpi2", 1, ("phase",), "turns", _gpi2, "native", "gpi2", _ONE,
         "IonQ GPi2(phase) = (I - i(cos 2 pi phase X + sin 2 pi phase Y)) / sqrt 2.",
         spectrum=((2 * np.pi, 2),)),
    Gate("ms", 2, ("phase0", "phase1", "angle"), "turns", _ms, "native", "ms", _TWO,
         "IonQ Molmer-Sorensen MS(phase0, phase1, angle=0.25) = exp(-i pi angle s(phase0)(x)s(phase1)).",
         defaults=(0.25,), spectrum=((2 * np.pi, 2), (2 * np.pi, 2), (2 * np.pi, 1))),
    Gate("native_zz", 2, ("angle",), "turns", _native_zz, "native", "zz", _TWO,
         "IonQ native ZZ(angle) = exp(-i pi angle Z(x)Z) (Forte).", diagonal=True, monomial=True,
         generator="ZZ", radians_per_unit=2 * np.pi),
)

GATES: dict[str, Gate] = {
    gate.name: Gate(**{**gate.__dict__, "opcode": opcode}) for opcode, gate in enumerate(_TABLE)
}
"""All gates by name, in opcode order."""

GATE_BY_OPCODE: tuple[Gate, ...] = tuple(GATES.values())
"""All gates indexed by opcode."""


def gate(name: str) -> Gate:
    """Return the table entry called ``name``.

    Raises:
        CircuitError: if no gate has that name (the message lists the known ones).
    """
    try:
        return GATES[name]
    except KeyError:
        raise CircuitError(f"unknown gate {name!r}; known gates: {', '.join(GATES)}") from None


__all__ = ["GATES", "GATE_BY_OPCODE", "PAULI", "Gate", "MatrixFunction", "gate"]
