"""Pass 1 of :mod:`qsim_core.compiler.program`: frame normalisation (IonQ's virtual Z undone)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from ..circuit import Operation, Param, ParamSum, ParamValue, is_symbolic
from ..gates import GATES, PAULI
from .binding import table_matrix
from .clifford import kron, pauli_map
from .program import TOL


@functools.cache
def _phase_slots(name: str) -> tuple[tuple[int, int], ...]:
    """``(slot, qubit position)`` of every parameter that is a Z frame of one of the gate's qubits.

    Read off the gate table's matrices: parameter ``slot`` (in turns) is the
    frame of qubit ``position`` when shifting it by ``d`` conjugates the
    matrix by ``RZ(2 pi d)`` on that qubit (GPi, GPi2, both MS phases).
    """
    spec = GATES[name]
    if spec.unit != "turns" or spec.diagonal:
        return ()
    values = list(np.random.default_rng(7).uniform(-1.0, 1.0, spec.num_params))
    base = spec.matrix(*values)
    found = []
    delta = 0.1234
    rz = np.diag([np.exp(-1j * math.pi * delta), np.exp(1j * math.pi * delta)])
    for slot in range(spec.num_params):
        shifted = values.copy()
        shifted[slot] += delta
        for position in range(spec.num_qubits):
            frame = kron(rz if j == position else PAULI["I"] for j in range(spec.num_qubits))
            if np.allclose(spec.matrix(*shifted), frame @ base @ frame.conj().T, rtol=0, atol=TOL):
                found.append((slot, position))
                break
    return tuple(found)


Form = dict[int, float]  # a linear form in the parameters: index -> coefficient


def _split(value: ParamValue) -> tuple[float, Form]:
    """A parameter value as (constant, linear form)."""
    if is_symbolic(value):
        return value.offset, dict(value.terms)
    return float(value), {}


def _form_value(form: Form, factor: float) -> ParamValue:
    """``factor * form`` as a Param or ParamSum (0.0 for the empty form)."""
    return ParamSum.combine(*(Param(k, factor * c) for k, c in sorted(form.items())))


def _difference(a: Form, b: Form) -> Form:
    """``a - b``, dropping coefficients that cancel up to rounding."""
    out = {}
    for k in a.keys() | b.keys():
        x, y = a.get(k, 0.0), b.get(k, 0.0)
        if abs(x - y) > 1e-12 * max(abs(x), abs(y)):
            out[k] = x - y
    return out


def normalise_frames(ops: Sequence[Operation], num_qubits: int) -> list[Operation]:
    """Pass 1: move the parameter-dependent Z frames of Clifford-based native gates into RZ rotations.

    ``frames[q]`` (in turns) is an ``RZ(2 pi F_q)`` that the emitted
    operations still owe qubit q; it is emitted just before the next gate on
    q that does not commute with it, and at the end.
    """
    frames: list[Form] = [{} for _ in range(num_qubits)]
    out: list[Operation] = []

    def rotate(q: int, form: Form) -> None:
        if form:
            out.append(Operation("rz", (q,), (_form_value(form, 2 * math.pi),)))

    for op in ops:
        slots = _phase_slots(op.name)
        split = [_split(v) for v in op.params]
        if slots and _frame_free_clifford(op, slots, split):
            params = list(op.params)
            for slot, position in slots:
                q = op.qubits[position]
                constant, form = split[slot]
                rotate(q, _difference(frames[q], form))  # RZ(2 pi (F - L)), then G(c), after which F = L
                frames[q] = form
                params[slot] = constant
            out.append(Operation(op.name, op.qubits, tuple(params)))
            continue
        if not op.gate.diagonal:  # a diagonal gate commutes with the owed frames
            for q in op.qubits:
                rotate(q, frames[q])
                frames[q] = {}
        out.append(op)
    for q in range(num_qubits):
        rotate(q, frames[q])
    return out


def _frame_free_clifford(op: Operation, slots: tuple[tuple[int, int], ...], split: list[tuple[float, Form]]) -> bool:
    """Whether ``op`` with its frame slots' linear parts removed is a constant Clifford gate."""
    frame_slots = {slot for slot, _ in slots}
    if any(form for k, (_, form) in enumerate(split) if k not in frame_slots):
        return False
    return _clifford_table_gate(op.name, tuple(constant for constant, _ in split))


def _clifford_table_gate(name: str, params: tuple[float, ...]) -> bool:
    return pauli_map(table_matrix(name, params)) is not None
