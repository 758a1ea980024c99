"""Qiskit circuits -> engine circuits: gates, parameters, terminal measurements.

:func:`translate` turns any :class:`qiskit.QuantumCircuit` into a
:class:`Translation`: one engine :class:`~qsim_core.Circuit` whose gate
parameters are :class:`~qsim_core.Param` / :class:`~qsim_core.ParamSum`
references into a parameter matrix ``params[B, P]``, so a whole
``BindingsArray`` runs as one batched engine call. It is cached by the
circuit's instructions: repeated pubs of one circuit translate once.

Gates. The engine's gate table (:data:`qsim_core.gates.GATES`) has a Qiskit
name for every entry (:data:`QISKIT_NAMES`; the IonQ natives are
``qiskit_ionq``'s ``GPIGate``, ``GPI2Gate``, ``MSGate`` and ``ZZGate``, in
turns as in the engine). ``p`` and ``u1`` run as ``rz`` (equal up to a
global phase, which no expectation or sample sees). A circuit with any
other operation goes once through :func:`qiskit.transpile` with the
engine's gates as its target (:func:`engine_target`, ``optimization_level=0``), which
decomposes library circuits, controlled gates and unitaries.

Parameters. Column ``p`` of ``params`` is ``circuit.parameters[p]`` (Qiskit's
sorted order, as ``BindingsArray.as_array(circuit.parameters)`` gives). A
parameter expression affine in the parameters (``2*a - b + 0.5``, what
decompositions produce) becomes a ``Param``/``ParamSum``; any other
expression (``sin(a)``, ``a*b``) gets a column of its own after the ``P``
parameters, evaluated per parameter set in Python (:meth:`Translation.engine_params`).

Measurements. Only terminal measurements are supported (no gate on a qubit
after it is measured, no control flow); :attr:`Translation.measured` maps
each measured clbit to its qubit. ``barrier``, ``delay``, ``id`` and
``global_phase`` are ignored; a ``reset`` before any gate on its qubit is
dropped (qubits start in ``|0>``), any other is an error.

Bit order: Qiskit qubit k is engine qubit k, bit k of a basis index in both.

Public (``__all__``): :data:`QISKIT_NAMES`, :class:`Translation`,
:func:`translate`, :func:`engine_target` (the engine's gates as a Qiskit
``Target``), :func:`native_gate_classes`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ControlFlowOp, Parameter, ParameterExpression
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.exceptions import QiskitError
from qiskit.primitives.containers import BindingsArray
from qiskit.transpiler import Target

from ..circuit import Circuit, Param, ParamSum, ParamValue
from ..errors import CircuitError
from ..gates import GATES

QISKIT_NAMES: dict[str, str] = {
    "x": "x", "y": "y", "z": "z", "h": "h", "s": "s", "si": "sdg", "t": "t", "ti": "tdg",
    "v": "sx", "vi": "sxdg", "rx": "rx", "ry": "ry", "rz": "rz", "cnot": "cx", "swap": "swap",
    "xx": "rxx", "yy": "ryy", "zz": "rzz", "gpi": "gpi", "gpi2": "gpi2", "ms": "ms", "native_zz": "zz",
}
"""Engine gate name -> Qiskit instruction name, for every gate of the table (same matrix, same units)."""

#: Qiskit gates run as an engine gate that equals them up to a global phase
_PHASE_ALIASES = {"p": "rz", "u1": "rz"}
#: instructions without effect on an ideal simulator's results
_IGNORED = frozenset({"barrier", "delay", "id", "global_phase"})
_NATIVES = frozenset(name for name, gate in GATES.items() if gate.gateset == "native")
_CACHE_SIZE = 128


@functools.cache
def native_gate_classes() -> dict[str, type]:
    """Qiskit name -> ``qiskit_ionq`` gate class of the IonQ natives; empty without ``qiskit_ionq``."""
    try:
        from qiskit_ionq import GPI2Gate, GPIGate, MSGate, ZZGate
    except ImportError:
        return {}
    return {"gpi": GPIGate, "gpi2": GPI2Gate, "ms": MSGate, "zz": ZZGate}


@functools.cache
def _engine_name_of() -> dict[str, str]:
    """Qiskit name -> engine name for the gates mapped directly (natives only with ``qiskit_ionq``)."""
    natives = native_gate_classes()
    names = {q: e for e, q in QISKIT_NAMES.items() if e not in _NATIVES or q in natives}
    return {**names, **_PHASE_ALIASES}


def engine_target() -> Target:
    """A Target of the engine's gates (Qiskit names), ``measure``, ``delay`` and ``reset``, any qubit count, ideal.

    The IonQ natives (``gpi gpi2 ms zz``) are in it when ``qiskit_ionq`` is installed. ``reset``
    is there for ``initialize()``: it runs only before a qubit's first gate (module docstring).
    """
    target = Target(description="qsim_core: the engine's gate table", num_qubits=None)
    standard = get_standard_gate_name_mapping()
    natives = native_gate_classes()
    for engine_name, name in QISKIT_NAMES.items():
        if name in standard:
            target.add_instruction(standard[name], properties=None, name=name)
        elif name in natives:
            arguments = [Parameter(f"{name}_{p}") for p in GATES[engine_name].param_names]
            target.add_instruction(natives[name](*arguments), properties=None, name=name)
    for name in ("measure", "delay", "reset"):
        target.add_instruction(standard[name], properties=None, name=name)
    return target


@functools.cache
def _translation_target() -> Target:
    return engine_target()


@dataclass(frozen=True)
class Translation:
    """A Qiskit circuit in engine form.

    Attributes:
        circuit: the unitary part as an engine circuit (measurements removed).
        parameters: the Qiskit circuit's parameters; column p of ``params`` is ``parameters[p]``.
        derived: non-affine parameter expressions; column ``len(parameters) + j`` holds ``derived[j]``.
        measured: ``clbit index -> qubit`` of the terminal measurements (empty without any).
    """

    circuit: Circuit
    parameters: tuple[Parameter, ...]
    derived: tuple[ParameterExpression, ...]
    measured: Mapping[int, int]

    def bind(self, bindings: BindingsArray) -> np.ndarray:
        """The engine's parameter matrix ``[B, circuit.num_params]`` for ``bindings`` (B = ``bindings.size``).

        Row b is ``bindings`` flattened in C order, as ``np.ndindex(bindings.shape)`` walks it.
        """
        rows = int(np.prod(bindings.shape, dtype=np.int64))
        if not self.parameters:
            return np.zeros((rows, self.circuit.num_params))
        return self.engine_params(bindings.as_array(self.parameters).reshape(rows, len(self.parameters)))

    def clbit_values(self, samples: np.ndarray, clbits: Sequence[int]) -> np.ndarray:
        """Classical bits ``clbits`` for engine samples: uint8 ``samples.shape + (len(clbits),)``.

        ``samples`` are basis indices (qubit k is bit k); an unmeasured clbit reads 0.
        """
        out = np.zeros(np.shape(samples) + (len(clbits),), np.uint8)
        for j, clbit in enumerate(clbits):
            if clbit in self.measured:
                out[..., j] = (samples >> self.measured[clbit]) & 1
        return out

    def engine_params(self, values: np.ndarray) -> np.ndarray:
        """The engine's parameter matrix ``[B, circuit.num_params]`` for Qiskit values ``[B, len(parameters)]``."""
        values = np.asarray(values, np.float64)
        if self.derived:
            column = {p: k for k, p in enumerate(self.parameters)}
            extra = np.empty((len(values), len(self.derived)))
            for j, expr in enumerate(self.derived):
                used = [(p, column[p]) for p in expr.parameters]
                extra[:, j] = [_real(expr.bind({p: row[k] for p, k in used}).numeric(), expr)
                               for row in values.tolist()]
            values = np.concatenate([values, extra], axis=1)
        return np.ascontiguousarray(values[:, :self.circuit.num_params])


def translate(circuit: QuantumCircuit, *, measurements: bool) -> Translation:
    """The engine form of ``circuit`` (cached by its instructions; see the module docstring).

    Args:
        circuit: any Qiskit circuit of unitary gates, optionally followed by measurements.
        measurements: whether terminal measurements are allowed (samplers, backends) or an
            error (estimators: a measurement would collapse the state the observables see).

    Raises:
        CircuitError: control flow, a mid-circuit measurement or reset, a measurement where
            none is allowed, an operation Qiskit cannot decompose into the engine's gates, or
            an expression that is not a real number.
    """
    if not isinstance(circuit, QuantumCircuit):
        raise CircuitError(f"expected a qiskit QuantumCircuit, got {type(circuit).__name__}")
    key = _fingerprint(circuit, measurements)
    if key is not None:
        with _cache_lock:
            cached = _cache.pop(key, None)  # popped and put back last: one comparison of keys, not two
            if cached is not None:
                _cache[key] = cached
                return cached
    translation = _translate(circuit, measurements)
    if key is not None:
        with _cache_lock:
            _cache[key] = translation
            if len(_cache) > _CACHE_SIZE:
                del _cache[next(iter(_cache))]
    return translation


#: least recently used first; primitives may run in several threads at once
_cache: dict[_Key, Translation] = {}
_cache_lock = threading.Lock()


class _Same:
    """Identity key for an operation that is not a standard gate (its name does not say what it does)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj  # held, so its id cannot be reused while the cache entry lives

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj


class _Key:
    """A cache key that hashes its tuple once (a lookup hashes it again and again otherwise)."""

    __slots__ = ("hash", "parts")

    def __init__(self, parts: tuple) -> None:
        self.parts = parts
        self.hash = hash(parts)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.hash == self.hash and other.parts == self.parts


def _fingerprint(circuit: QuantumCircuit, measurements: bool) -> _Key | None:
    """A hashable key of everything translation reads, or None when something is unhashable."""
    standard = _standard_types()
    parts: list[tuple] = []
    for instruction in circuit.data:
        # a standard gate's name says what it does; asking the instruction spares building its Python object
        if instruction.is_standard_gate():
            kind: str | _Same = instruction.name
        else:
            operation = instruction.operation
            kind = operation.name if standard.get(operation.name) is type(operation) else _Same(operation)
        parts.append((kind, instruction.qubits, instruction.clbits, tuple(instruction.params)))
    try:
        return _Key((measurements, tuple(circuit.qubits), tuple(circuit.clbits), tuple(circuit.parameters),
                     tuple(parts)))
    except (TypeError, OverflowError):  # an array parameter; Qiskit cannot hash a negative constant expression
        return None


@functools.cache
def _standard_types() -> dict[str, type]:
    types = {name: type(gate) for name, gate in get_standard_gate_name_mapping().items()}
    return {**types, **native_gate_classes()}


def _translate(circuit: QuantumCircuit, measurements: bool) -> Translation:
    if circuit.num_qubits < 1:
        raise CircuitError("the circuit has no qubits")
    measured: dict[int, int] = {}
    body: list[tuple[object, tuple[int, ...]]] = []
    touched: set[int] = set()
    for position, instruction in enumerate(circuit.data):
        operation = instruction.operation
        name = operation.name
        label = f"instruction {position} ({name})"
        if isinstance(operation, ControlFlowOp):
            raise CircuitError(f"{label}: control flow is not supported (only unitary gates and terminal measurements)")
        if name in _IGNORED:
            continue
        qubits = tuple(circuit.find_bit(q).index for q in instruction.qubits)
        if name == "measure":
            if not measurements:
                raise CircuitError(f"{label}: an estimator circuit must not measure (the measurement would "
                                   "collapse the state); remove it, e.g. circuit.remove_final_measurements()")
            measured[circuit.find_bit(instruction.clbits[0]).index] = qubits[0]
            continue
        if set(qubits) & set(measured.values()):
            raise CircuitError(f"{label} acts on a measured qubit: only terminal measurements are supported")
        if name == "reset":
            if qubits[0] in touched:
                raise CircuitError(f"{label}: reset after a gate is not supported (only at the start)")
            continue
        if instruction.clbits:
            raise CircuitError(f"{label}: non-unitary operations are not supported")
        touched.update(qubits)
        body.append((operation, qubits))
    parameters = tuple(circuit.parameters)
    builder = _Builder(circuit.num_qubits, {p: k for k, p in enumerate(parameters)})
    for operation, qubits in _in_engine_gates(body, circuit.num_qubits):
        builder.add(operation, qubits)
    return Translation(builder.circuit, parameters, tuple(builder.derived), measured)


def _direct(operation: object) -> str | None:
    """The engine gate that runs ``operation`` as it is, or None."""
    name = getattr(operation, "name", "")
    engine = _engine_name_of().get(name)
    if engine is None or _standard_types().get(name) is not type(operation):
        return None
    return engine


def _in_engine_gates(body: list[tuple[object, tuple[int, ...]]], num_qubits: int
                     ) -> list[tuple[object, tuple[int, ...]]]:
    """``body`` with every operation the engine lacks decomposed by Qiskit's transpiler."""
    if all(_direct(op) is not None or getattr(op, "name", "") in _IGNORED for op, _ in body):
        return body
    unitary = QuantumCircuit(num_qubits)
    for operation, qubits in body:
        unitary.append(operation, qubits)
    target = _translation_target()
    try:
        lowered = transpile(unitary, target=target, optimization_level=0)
    except QiskitError as error:
        raise CircuitError(f"cannot decompose the circuit into the engine's gates "
                           f"({', '.join(target.operation_names)}): {error}") from None
    out: list[tuple[object, tuple[int, ...]]] = []
    touched: set[int] = set()
    for instruction in lowered.data:
        operation = instruction.operation
        qubits = tuple(lowered.find_bit(q).index for q in instruction.qubits)
        if operation.name in _IGNORED or operation.name == "reset" and qubits[0] not in touched:
            continue  # e.g. the resets that start initialize(): qubits are in |0> before their first gate
        if _direct(operation) is None:
            raise CircuitError(f"operation {operation.name!r} is not supported: it is not unitary or Qiskit "
                               "cannot decompose it into the engine's gates")
        touched.update(qubits)
        out.append((operation, qubits))
    return out


class _Builder:
    """Appends Qiskit gates to an engine circuit, turning parameter expressions into references."""

    def __init__(self, num_qubits: int, columns: dict[Parameter, int]) -> None:
        self.circuit = Circuit(num_qubits)
        self.columns = columns
        self.derived: list[ParameterExpression] = []
        self._derived_column: dict[ParameterExpression, int] = {}

    def add(self, operation, qubits: tuple[int, ...]) -> None:
        engine = _direct(operation)
        params = [self.value(p) for p in operation.params]
        self.circuit.append(engine, qubits, params)

    def value(self, value: object) -> ParamValue:
        """A gate parameter as the engine takes it: a float, or a reference into the parameter matrix."""
        if not isinstance(value, ParameterExpression):
            return _real(value, value)
        if not value.parameters:
            return _real(value.numeric(), value)
        affine = _affine(value, self.columns)
        if affine is not None:
            return affine
        if value not in self._derived_column:
            self._derived_column[value] = len(self.columns) + len(self.derived)
            self.derived.append(value)
        return Param(self._derived_column[value])


def _affine(expression: ParameterExpression, columns: dict[Parameter, int]) -> ParamValue | None:
    """``expression`` as a Param/ParamSum when it is affine in its parameters, else None."""
    terms: list[ParamValue] = []
    for parameter in expression.parameters:
        try:
            slope = expression.gradient(parameter)
        except (QiskitError, TypeError, ValueError, ZeroDivisionError):
            return None
        if isinstance(slope, ParameterExpression):
            if slope.parameters:
                return None
            slope = slope.numeric()
        if complex(slope).imag:
            return None
        terms.append(Param(columns[parameter], float(complex(slope).real)))
    offset = expression.bind({p: 0.0 for p in expression.parameters}).numeric()
    return ParamSum.combine(*terms, _real(offset, expression))


def _real(value: object, source: object) -> float:
    """``value`` as a finite float; a complex number with an imaginary part is an error naming ``source``."""
    number = complex(value)
    if number.imag != 0.0:
        raise CircuitError(f"gate parameter {source} has the complex value {number}; the engine's gates take "
                           "real parameters")
    return number.real


__all__ = ["QISKIT_NAMES", "Translation", "engine_target", "native_gate_classes", "translate"]
