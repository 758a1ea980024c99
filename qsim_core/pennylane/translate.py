"""PennyLane tapes -> engine circuits: the operations the device runs directly.

A tape becomes a :class:`Translation`: one engine :class:`~qsim_core.Circuit`
whose every gate parameter is a :class:`~qsim_core.Param`, the parameter
matrix ``params[B, P]`` (B = the tape's broadcast size, 1 without
broadcasting), an optional initial state from a leading ``StatePrep`` /
``BasisState`` and the global phase PennyLane's ``state()`` sees. Because the
circuit holds references, not values, it depends only on the tape's structure
(operation names and wires) and is cached by it: every tape of that structure,
in one ``execute`` or across calls, reuses one compiled program.

Wire order: PennyLane puts the first wire in the most significant bit of a
basis index, the engine puts qubit k in bit k (:mod:`qsim_core.circuit`). Wire
``i`` (of ``n``) is therefore engine qubit ``n - 1 - i``, and basis indices,
state vectors and probability vectors are the same arrays in both.

Public (``__all__``): :data:`SUPPORTED_OPERATIONS`, :class:`Translation`,
:func:`supports_operation`, :func:`translate`, :func:`pauli_word`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pennylane as qml
from pennylane.operation import Operator
from pennylane.tape import QuantumScript

from ..circuit import Circuit, Param

# One step of a translation: (engine gate, positions of its qubits among the op's wires,
# ((index of the op parameter, scale), ...) for the gate's parameters).
_Step = tuple[str, tuple[int, ...], tuple[tuple[int, float], ...]]

_ONE: tuple[_Step, ...] = ()
_THETA = ((0, 1.0),)

#: PennyLane operation name -> engine gates, in application order. Matrices agree exactly
#: (PennyLane's RX(t) = exp(-i t X / 2) is the table's rx, IsingZZ is zz, SX is v, ...).
_STEPS: dict[str, tuple[_Step, ...]] = {
    "Identity": _ONE,
    "PauliX": (("x", (0,), ()),),
    "PauliY": (("y", (0,), ()),),
    "PauliZ": (("z", (0,), ()),),
    "Hadamard": (("h", (0,), ()),),
    "S": (("s", (0,), ()),),
    "T": (("t", (0,), ()),),
    "SX": (("v", (0,), ()),),
    "RX": (("rx", (0,), _THETA),),
    "RY": (("ry", (0,), _THETA),),
    "RZ": (("rz", (0,), _THETA),),
    # PhaseShift(p) = exp(i p / 2) RZ(p): the phase goes to the global phase (see _PHASES)
    "PhaseShift": (("rz", (0,), _THETA),),
    # Rot(a, b, c) = RZ(c) RY(b) RZ(a)
    "Rot": (("rz", (0,), ((0, 1.0),)), ("ry", (0,), ((1, 1.0),)), ("rz", (0,), ((2, 1.0),))),
    "CNOT": (("cnot", (0, 1), ()),),
    "CZ": (("h", (1,), ()), ("cnot", (0, 1), ()), ("h", (1,), ())),
    # CY = (I (x) S) CNOT (I (x) S^dagger)
    "CY": (("si", (1,), ()), ("cnot", (0, 1), ()), ("s", (1,), ())),
    "SWAP": (("swap", (0, 1), ()),),
    "IsingXX": (("xx", (0, 1), _THETA),),
    "IsingYY": (("yy", (0, 1), _THETA),),
    "IsingZZ": (("zz", (0, 1), _THETA),),
    "GlobalPhase": _ONE,
}

#: global phase of an operation as ``(index of the op parameter, scale)``: U = exp(i scale p) * (its steps)
_PHASES: dict[str, tuple[int, float]] = {"PhaseShift": (0, 0.5), "GlobalPhase": (0, -1.0)}

#: the inverse of each fixed engine gate (rotations invert by negating their parameter)
_INVERSE = {"s": "si", "si": "s", "t": "ti", "ti": "t", "v": "vi", "vi": "v"}

#: operation names the device executes directly (also ``Adjoint(...)`` of each, and MultiRZ on <= 2 wires)
SUPPORTED_OPERATIONS = frozenset(_STEPS) | {"MultiRZ"}


def supports_operation(op: Operator) -> bool:
    """True when ``op`` translates to engine gates without PennyLane decomposing it."""
    if isinstance(op, qml.ops.Adjoint):
        return supports_operation(op.base)
    if op.name == "MultiRZ":
        return len(op.wires) <= 2
    return op.name in _STEPS


def _steps(op: Operator) -> tuple[tuple[_Step, ...], tuple[int, float] | None]:
    """Engine steps and global phase of ``op`` (an Adjoint reverses and inverts its base's)."""
    if isinstance(op, qml.ops.Adjoint):
        steps, phase = _steps(op.base)
        inverted = tuple((_INVERSE.get(name, name), qubits, tuple((k, -s) for k, s in refs))
                         for name, qubits, refs in reversed(steps))
        return inverted, None if phase is None else (phase[0], -phase[1])
    if op.name == "MultiRZ":
        return ((("rz", (0,), _THETA),) if len(op.wires) == 1 else (("zz", (0, 1), _THETA),)), None
    return _STEPS[op.name], _PHASES.get(op.name)


@dataclass(frozen=True)
class Translation:
    """A tape in the engine's terms.

    Attributes:
        circuit: the engine circuit (shared by every tape of the same structure).
        params: float64 ``[B, P]``; row b holds broadcast row b of every operation parameter.
        engine_index: int64 ``[number of tape parameters]``: the column of ``params`` that
            tape parameter j (``tape.get_parameters(trainable_only=False)`` order) fills, or -1
            for parameters that set no engine gate (state preparation, global phase).
        initial_state: complex ``[B, 2**n]`` from a leading state preparation, else None.
        phase: complex ``[B]`` global phase factor (1 when the tape has none).
        batch: the tape's broadcast size (None when it does not broadcast).
    """

    circuit: Circuit
    params: np.ndarray
    engine_index: np.ndarray
    initial_state: np.ndarray | None
    phase: np.ndarray
    batch: int | None


_CACHE_LIMIT = 512
#: structure key -> (engine circuit, per operation which of its parameters are engine Params)
_circuits: dict[tuple, tuple[Circuit, tuple[tuple[bool, ...], ...]]] = {}


def translate(tape: QuantumScript, num_wires: int) -> Translation:
    """Translate ``tape`` (wires already 0..num_wires-1, operations supported) for the engine.

    Raises:
        ValueError: an operation the device does not execute directly (preprocessing
            decomposes those), or a state preparation after the first operation.
    """
    batch = tape.batch_size
    rows = batch or 1
    operations = tape.operations
    initial = None
    if operations and isinstance(operations[0], qml.operation.StatePrepBase):
        vector = np.asarray(operations[0].state_vector(wire_order=range(num_wires)), np.complex128)
        initial = np.broadcast_to(vector.reshape(-1, 1 << num_wires), (rows, 1 << num_wires))
        operations = operations[1:]
        first = len(tape.operations[0].data)
    else:
        first = 0
    key = (num_wires, tuple((op.name, tuple(op.wires)) for op in operations))
    cached = _circuits.get(key)
    if cached is None:
        cached = _build(operations, num_wires)
        if len(_circuits) >= _CACHE_LIMIT:
            _circuits.clear()
        _circuits[key] = cached
    circuit, slots = cached
    engine_index = np.full(len(tape.get_parameters(trainable_only=False)), -1, np.int64)
    params = np.empty((rows, circuit.num_params))
    phase = np.ones(rows, np.complex128)
    position = first
    k = 0
    for op, op_slots in zip(operations, slots, strict=True):
        _, phase_ref = _steps(op)
        for i, value in enumerate(op.data):
            if i < len(op_slots) and op_slots[i]:
                params[:, k] = np.real(qml.math.toarray(value)) if not isinstance(value, float) else value
                engine_index[position + i] = k
                k += 1
        if phase_ref is not None:
            angle = np.asarray(qml.math.toarray(op.data[phase_ref[0]]), np.float64)
            phase = phase * np.exp(1j * phase_ref[1] * angle)
        position += len(op.data)
    return Translation(circuit, params, engine_index, initial, phase, batch)


def _build(operations: Sequence[Operator], num_wires: int) -> tuple[Circuit, tuple[tuple[bool, ...], ...]]:
    """The engine circuit for a structure, and per operation which of its parameters are engine Params."""
    circuit = Circuit(num_wires)
    slots = []
    k = 0
    for op in operations:
        if not supports_operation(op):
            raise ValueError(f"qsim_core.qubit cannot execute {op.name} directly; PennyLane's preprocessing "
                             "(qml.devices.Device.preprocess_transforms) decomposes it first")
        steps, _ = _steps(op)
        qubits = [num_wires - 1 - int(w) for w in op.wires]
        used = sorted({index for _, _, refs in steps for index, _ in refs})
        mapping = {index: k + j for j, index in enumerate(used)}
        for name, positions, refs in steps:
            circuit.append(name, [qubits[p] for p in positions],
                           [Param(mapping[index], scale) for index, scale in refs])
        slots.append(tuple(i in mapping for i in range(op.num_params)))
        k += len(used)
    return circuit, tuple(slots)


def pauli_word(word: qml.pauli.PauliWord, num_wires: int) -> str:
    """A PennyLane Pauli word (wires 0..n-1) as an engine Pauli string (``""`` for the identity)."""
    return " ".join(f"{letter}{num_wires - 1 - int(wire)}" for wire, letter in sorted(word.items()))


__all__ = ["SUPPORTED_OPERATIONS", "Translation", "pauli_word", "supports_operation", "translate"]
