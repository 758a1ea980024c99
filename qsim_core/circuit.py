"""Circuits: a validated list of gate operations with bound or free parameters.

Bit order (the one convention every kernel follows): **qubit k is bit k of
the basis-state index**, qubit 0 least significant. In a 3-qubit register the
state with only qubit 0 flipped is index 1, with only qubit 2 flipped index 4.
This is the order of IonQ's result keys.

Parameters are either plain floats (constants), :class:`Param` references
``scale * theta[index] + offset`` into the parameter vector given at run
time, or :class:`ParamSum` affine combinations of several entries, so data
encodings, trainable weights and compiler-merged angles are one mechanism.

Public (``__all__``): :class:`Circuit`, :class:`Operation`, :class:`Param`,
:class:`ParamSum` (all four also ``qsim_core.<name>``), :data:`ParamValue`
(what a gate parameter may be) and :func:`is_symbolic`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .errors import CircuitError
from .gates import GATES, Gate, gate


@dataclass(frozen=True)
class Param:
    """A reference ``scale * theta[index] + offset`` to the run-time parameter vector.

    Args:
        index: position in the parameter vector (``params[..., index]``), >= 0.
        scale: multiplier applied to the parameter (unitless).
        offset: added after scaling, in the gate's unit (radians or turns).

    Adding two parameter references gives a :class:`ParamSum`; multiplying
    by or adding a number stays a ``Param``.

    Examples:
        >>> Param(3, scale=2.0).resolve([0.0, 0.0, 0.0, 0.5])
        1.0
    """

    index: int
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise CircuitError(f"Param index must be an integer >= 0, got {self.index!r}")
        for label in ("scale", "offset"):
            value = getattr(self, label)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CircuitError(f"Param({self.index}) {label} must be a finite number, got {value!r}")

    @property
    def terms(self) -> tuple[tuple[int, float], ...]:
        """``((index, scale),)``: the linear part, in the form :class:`ParamSum` uses."""
        return ((self.index, self.scale),)

    def resolve(self, theta: Sequence[float]) -> float:
        """Value of this parameter for the vector ``theta``."""
        return self.scale * float(theta[self.index]) + self.offset

    def __mul__(self, factor: float) -> Param:
        return Param(self.index, self.scale * factor, self.offset * factor)

    __rmul__ = __mul__

    def __add__(self, shift: float | Param | ParamSum) -> Param | ParamSum:
        if isinstance(shift, (Param, ParamSum)):
            return ParamSum.combine(self, shift)
        return Param(self.index, self.scale, self.offset + shift)

    __radd__ = __add__

    def __sub__(self, shift: float | Param | ParamSum) -> Param | ParamSum:
        return self + (-shift)

    def __neg__(self) -> Param:
        return self * -1.0


@dataclass(frozen=True)
class ParamSum:
    """An affine combination ``sum(scale * theta[index] for index, scale in terms) + offset``.

    What compilers produce when they merge parametrised gates, e.g. two RZ
    frames of different parameters on one qubit. Build it with ``+`` on
    :class:`Param` objects; :meth:`combine` merges repeated indices and
    returns a plain :class:`Param` (or a float) when one term (or none) is left.

    Attributes:
        terms: ``(index, scale)`` pairs, indices distinct and ascending, scales non-zero.
        offset: the constant part, in the gate's unit.
    """

    terms: tuple[tuple[int, float], ...]
    offset: float = 0.0

    def __post_init__(self) -> None:
        indices = [index for index, _ in self.terms]
        if len(indices) < 2 or indices != sorted(set(indices)):
            raise CircuitError(f"ParamSum needs >= 2 distinct ascending indices, got {self.terms!r}; use combine()")
        for index, scale in self.terms:
            Param(index, scale, self.offset)  # same checks as a single reference

    @staticmethod
    def combine(*parts: float | Param | ParamSum) -> float | Param | ParamSum:
        """The sum of numbers and parameter references, in the simplest form that holds it."""
        scales: dict[int, float] = {}
        offset = 0.0
        for part in parts:
            if isinstance(part, (Param, ParamSum)):
                for index, scale in part.terms:
                    scales[index] = scales.get(index, 0.0) + scale
                offset += part.offset
            else:
                offset += float(part)
        terms = tuple((k, scales[k]) for k in sorted(scales) if scales[k] != 0.0)
        if not terms:
            return offset
        if len(terms) == 1:
            return Param(terms[0][0], terms[0][1], offset)
        return ParamSum(terms, offset)

    @property
    def index(self) -> int:
        """The largest parameter index referenced."""
        return self.terms[-1][0]

    def resolve(self, theta: Sequence[float]) -> float:
        """Value for the vector ``theta``."""
        return sum(scale * float(theta[index]) for index, scale in self.terms) + self.offset

    def __mul__(self, factor: float) -> ParamSum:
        return ParamSum(tuple((k, s * factor) for k, s in self.terms), self.offset * factor)

    __rmul__ = __mul__

    def __add__(self, other: float | Param | ParamSum) -> float | Param | ParamSum:
        return ParamSum.combine(self, other)

    __radd__ = __add__

    def __sub__(self, other: float | Param | ParamSum) -> float | Param | ParamSum:
        return ParamSum.combine(self, -other)

    def __neg__(self) -> ParamSum:
        return self * -1.0


ParamValue = float | Param | ParamSum
"""A gate parameter: a constant (float, in the gate's unit) or a run-time reference."""


def is_symbolic(value: object) -> bool:
    """True for a run-time parameter reference (:class:`Param` or :class:`ParamSum`), False for a number."""
    return isinstance(value, (Param, ParamSum))


@dataclass(frozen=True)
class Operation:
    """One gate application.

    Attributes:
        name: gate-table name (see :data:`qsim_core.gates.GATES`).
        qubits: qubit indices in the gate's argument order.
        params: one float or :class:`Param` per gate parameter, in the gate's unit.
    """

    name: str
    qubits: tuple[int, ...]
    params: tuple[ParamValue, ...]

    @property
    def gate(self) -> Gate:
        """The gate-table entry of this operation."""
        return GATES[self.name]

    def __str__(self) -> str:
        args = [str(q) for q in self.qubits] + [repr(p) for p in self.params]
        return f"{self.name}({', '.join(args)})"


class Circuit:
    """A quantum circuit on ``num_qubits`` qubits, built gate by gate.

    Every gate of :data:`~qsim_core.gates.GATES` is a method named after it,
    taking the qubits first and then the gate's parameters: ``c.ry(0, 0.5)``,
    ``c.cnot(control, target)``, ``c.ms(0, 1, phase0, phase1, angle=0.25)``.
    Each method validates its arguments, appends the operation and returns the
    circuit, so calls chain.

    Args:
        num_qubits: register size, >= 1.

    Raises:
        CircuitError: for a non-positive or non-integer qubit count.

    Examples:
        >>> c = Circuit(2).h(0).cnot(0, 1)
        >>> [op.name for op in c]
        ['h', 'cnot']
    """

    def __init__(self, num_qubits: int) -> None:
        if isinstance(num_qubits, bool) or not isinstance(num_qubits, int) or num_qubits < 1:
            raise CircuitError(f"a circuit needs an integer number of qubits >= 1, got {num_qubits!r}")
        self._num_qubits = num_qubits
        self._operations: list[Operation] = []
        self._num_params = 0
        self._memo: dict = {}

    @property
    def num_qubits(self) -> int:
        """Number of qubits in the register."""
        return self._num_qubits

    @property
    def num_params(self) -> int:
        """Length of the parameter vector: 1 + the largest :class:`Param` index (0 if none)."""
        return self._num_params

    @property
    def operations(self) -> tuple[Operation, ...]:
        """The operations in application order."""
        return tuple(self._operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._operations)

    def __len__(self) -> int:
        return len(self._operations)

    def __repr__(self) -> str:
        return f"Circuit({self._num_qubits} qubits, {len(self)} operations, {self._num_params} params)"

    def append(self, name: str, qubits: Sequence[int], params: Sequence[ParamValue] = ()) -> Circuit:
        """Append gate ``name`` on ``qubits`` with ``params`` (defaults fill trailing ones).

        Raises:
            CircuitError: unknown gate, wrong qubit count, qubit out of range or
                repeated, wrong parameter count, non-finite constant.
        """
        spec = gate(name)
        position = len(self._operations)
        label = f"operation {position} ({name})"
        qubits = tuple(qubits)
        if len(qubits) != spec.num_qubits:
            raise CircuitError(f"{label} acts on {spec.num_qubits} qubit(s), got {len(qubits)}: {qubits}")
        for q in qubits:
            if isinstance(q, bool) or not isinstance(q, int):
                raise CircuitError(f"{label}: qubit index must be an integer, got {q!r}")
            if not 0 <= q < self._num_qubits:
                raise CircuitError(
                    f"{label}: qubit {q} is out of range for a {self._num_qubits}-qubit circuit "
                    f"(valid: 0..{self._num_qubits - 1})"
                )
        if len(set(qubits)) != len(qubits):
            raise CircuitError(f"{label}: repeated qubit in {qubits}; a gate needs distinct qubits")
        params = tuple(params)
        missing = spec.num_params - len(params)
        if 0 < missing <= len(spec.defaults):
            params = params + spec.defaults[len(spec.defaults) - missing:]
        if len(params) != spec.num_params:
            raise CircuitError(
                f"{label} takes {spec.num_params} parameter(s) {spec.param_names}, got {len(params)}"
            )
        checked: list[ParamValue] = []
        for pname, value in zip(spec.param_names, params, strict=False):
            if is_symbolic(value):
                checked.append(value)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
                raise CircuitError(f"{label}: {pname} must be a number, Param or ParamSum, got {value!r}")
            number = float(value)
            if not math.isfinite(number):
                raise CircuitError(f"{label}: {pname} must be finite, got {number!r}")
            checked.append(number)
        self._operations.append(Operation(name, qubits, tuple(checked)))
        self._memo.clear()
        for value in checked:
            if is_symbolic(value):
                self._num_params = max(self._num_params, value.index + 1)
        return self

    def copy(self) -> Circuit:
        """An independent copy of this circuit."""
        other = Circuit(self._num_qubits)
        other._operations = list(self._operations)
        other._num_params = self._num_params
        return other

    @property
    def memo(self) -> dict:
        """Per-circuit memo for derived forms (compiled programs); cleared whenever the circuit changes."""
        return self._memo

    def structure_key(self) -> tuple:
        """A hashable key that identifies the circuit for compilation caching."""
        return (self._num_qubits, tuple(self._operations))


def _builder(spec: Gate):
    def method(self: Circuit, *args, **kwargs) -> Circuit:
        qubits = args[: spec.num_qubits]
        params = list(args[spec.num_qubits:])
        for pname in spec.param_names[len(params):]:
            if pname in kwargs:
                params.append(kwargs.pop(pname))
        if kwargs:
            raise CircuitError(f"{spec.name}: unexpected keyword argument(s) {sorted(kwargs)}")
        return self.append(spec.name, qubits, params)

    roles = ", ".join(spec.qubit_roles + spec.param_names)
    unit = f" Parameters in {spec.unit}." if spec.unit else ""
    method.__name__ = spec.name
    method.__qualname__ = f"Circuit.{spec.name}"
    method.__doc__ = f"Append {spec.doc}{unit}\n\nArguments: ({roles}). Returns the circuit."
    return method


for _spec in GATES.values():
    setattr(Circuit, _spec.name, _builder(_spec))


__all__ = ["Circuit", "Operation", "Param", "ParamSum", "ParamValue", "is_symbolic"]
