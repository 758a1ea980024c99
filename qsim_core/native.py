"""Compile any circuit to IonQ's native gates, with Z rotations kept virtual.

:func:`to_native` rewrites a circuit of gate-table operations into GPi, GPi2
and the target's two-qubit gate (MS on Aria and Harmony, native ZZ on Forte,
following IonQ's API: each system accepts one of the two).

Conventions (units and signs)
-----------------------------
Phases and angles are in turns (1 turn = 2 pi rad), ``Rz(t)`` is the table's
``exp(-i t Z / 2)`` in radians and ``s(p) = cos(2 pi p) X + sin(2 pi p) Y``
is the in-plane Pauli of phase ``p``, so ``GPi(p) = s(p)``,
``GPi2(p) = exp(-i pi/4 s(p))`` and ``MS(p0, p1, a) = exp(-i pi a s(p0) (x) s(p1))``.
Matrix products are written in application order right to left.

**Frames.** Every qubit carries a frame ``f`` (turns, a float or a
:class:`~qsim_core.Param`/:class:`~qsim_core.ParamSum`) with the invariant::

    logical circuit so far = (U_0 (x) U_1 ...) . (Rz(2 pi f_0) (x) ...) . emitted circuit

where ``U_q`` is the qubit's *pending* constant 2x2 unitary (see below). A Z
rotation by ``t`` turns only adds ``t`` to ``f``: it costs no gate. A native
gate given in logical phases is emitted with its phases shifted by minus the
frame, because conjugating by a Z rotation turns the Pauli axis::

    s(p) . Rz(2 pi f) = Rz(2 pi f) . s(p - f)          (so for GPi, GPi2 and each MS qubit)

and native ZZ commutes with every frame, so it is emitted unchanged.

**Pending runs.** Constant single-qubit gates (any table gate whose
parameters are numbers, including Z-diagonal ones and constant rx, ry, gpi,
gpi2) multiply the pending ``U_q``; nothing is emitted until a gate that
cannot be merged arrives. ``U_q`` is then written ``Rz(a) Ry(b) Rz(c)``
(ZYZ); ``c`` and ``a`` go into the frame and ``Ry(b)`` costs no pulse
(``b = 0``), one GPi2 (``Ry(pi/2) = GPi2(1/4)``), one GPi
(``Ry(pi) ~ GPi(1/4)``), or two GPi2 around a virtual Z
(``Ry(b) ~ GPi2(1/2) . Rz(b) . GPi2(0)``). Before an MS, the part of ``U_q``
that commutes with the MS (a rotation about that qubit's MS axis) stays
pending; it is chosen so that what is emitted needs at most one pulse.

**Parameters.** Symbolic gates are rewritten linearly, so the output stays
parametrised and one compilation serves every parameter vector:
``rz(theta)`` adds ``theta / 2 pi`` to the frame; ``rx(theta)``, ``ry(theta)``
become ``C . Rz(theta) . C^dagger`` with a constant ``C`` (``C = Ry(pi/2)``
for X, ``Rx(-pi/2)`` for Y); gpi/gpi2 are emitted with shifted phases;
``xx``, ``yy``, ``zz``, ``ms``, ``native_zz`` keep a linear angle.

**Two-qubit gates.** Every one is a product of interactions
``exp(-i pi a A0 (x) A1)`` with ``A`` an in-plane Pauli ``s(p)`` or ``Z``
(``xx(t)``: ``s(0) s(0)``, ``a = t / 2 pi``; ``yy``: ``s(1/4) s(1/4)``;
``zz``, ``native_zz``: ``Z Z``)::

    cnot(c, t) ~ (Rz_c(pi/2) (x) Rx_t(pi/2)) . exp(+i pi/4 Z (x) X)
    swap       ~ XX(pi/2) . YY(pi/2) . ZZ(pi/2)

A ``Z`` axis becomes an MS axis through ``C = Ry(-pi/2)`` (``C X C^dagger = Z``),
an in-plane axis ``s(p)`` becomes a native-ZZ axis through
``C = Rz(2 pi p) Ry(pi/2)`` (``C Z C^dagger = s(p)``); the ``C`` are constant
single-qubit gates that merge into the pending runs. A constant angle is
brought into IonQ's range ``[0, 1/4]``: a whole turn is a global sign,
``exp(-i pi a P) = exp(-i pi (a -+ 1/2) P) . (-+i P)`` moves ``|a| > 1/4``
down (``P`` is two single-qubit Paulis), and a negative angle flips one
in-plane axis (``s(p + 1/2) = -s(p)``) or, for ``Z (x) Z``, is conjugated by X.

**End of the circuit.** By default the result equals the original unitary up
to one global phase, so a non-zero final frame is realised: it is absorbed
into the qubit's last pulse when that is a GPi (``Rz(2 pi f) . GPi(p) ~ GPi(p + f/2)``)
or a GPi2 (``Rz(2 pi f) . GPi2(p) ~ GPi(p - 1/2 + f/2) . GPi2(p - 1/2)``),
else it costs ``Rz(2 pi f) = GPi(f/2) . GPi(0)``. With
``drop_final_phases=True`` the final frames are dropped: they are diagonal,
so every Z-basis measurement probability is unchanged (how IonQ runs circuits).
"""

from __future__ import annotations

import math

import numpy as np

from .circuit import Circuit, Operation, Param, ParamSum, ParamValue, is_symbolic
from .errors import CircuitError
from .gates import GATES

#: target name -> its two-qubit native gate ("ms" on Aria/Harmony, "zz" on Forte)
TARGETS: dict[str, str] = {
    "aria": "ms",
    "aria-1": "ms",
    "aria-2": "ms",
    "harmony": "ms",
    "forte": "zz",
    "forte-1": "zz",
    "forte-enterprise-1": "zz",
}

#: a constant angle (radians) or probability this close to a special value is taken as it
_TOL = 1e-9
_RAD_TO_TURNS = 1.0 / (2.0 * np.pi)
_I2 = np.eye(2, dtype=np.complex128)
_X = GATES["x"].matrix()
_Z = GATES["z"].matrix()

#: symbolic rx/ry(theta) = C . Rz(theta) . C^dagger with this constant C (C Z C^dagger = X or Y)
_ROTATION_BASIS = {"rx": GATES["ry"].matrix(np.pi / 2), "ry": GATES["rx"].matrix(-np.pi / 2)}
#: the interaction axis of xx, yy, zz: an in-plane phase (turns) or None for Z
_PAULI_AXIS: dict[str, float | None] = {"xx": 0.0, "yy": 0.25, "zz": None}
#: C with C X C^dagger = Z: turns a Z interaction axis into the MS axis s(0)
_Z_TO_MS_AXIS = GATES["ry"].matrix(-np.pi / 2)

Axis = ParamValue | None
"""An interaction axis: an in-plane Pauli ``s(phase)`` (phase in turns), or ``None`` for Z."""


def to_native(circuit: Circuit, target: str = "aria", *, drop_final_phases: bool = False) -> Circuit:
    """Rewrite ``circuit`` into IonQ native gates only, for one IonQ system.

    Z rotations are virtual (tracked per qubit and folded into the phases of
    later pulses), runs of constant single-qubit gates are merged into at most
    two pulses, and symbolic parameters stay symbolic (every rewrite is linear
    in them), so one compilation serves a whole batch of parameter vectors.
    The module docstring gives the conventions and identities.

    Args:
        circuit: any circuit of gate-table operations (QIS, native, or mixed).
        target: ``"aria"`` (aliases ``"aria-1"``, ``"aria-2"``, ``"harmony"``)
            uses GPi, GPi2 and MS; ``"forte"`` (``"forte-1"``,
            ``"forte-enterprise-1"``) uses GPi, GPi2 and native ZZ.
        drop_final_phases: if False (default), the result's unitary equals the
            original's up to one global phase. If True, the Z rotations left at
            the end are dropped: the unitaries then differ by a diagonal
            factor, and every Z-basis probability is still the same.

    Returns:
        A new circuit on the same qubits whose operations all have gateset
        ``"native"``; phases and angles are in turns, constant phases in
        ``[0, 1)`` and constant angles in ``[0, 1/4]``. It has the same
        ``num_params`` as ``circuit``, so the same parameter vectors apply.
        Symbolic angles are linear in the parameters; keeping their values in
        IonQ's ``[0, 1/4]`` is up to the caller.

    Raises:
        CircuitError: for an unknown target (the message lists the known
            ones), or an operation with no native rewrite.

    Examples:
        >>> bell = Circuit(2).h(0).cnot(0, 1)   # H merges into the CNOT's own basis change
        >>> [str(op) for op in to_native(bell, drop_final_phases=True)]
        ['ms(0, 1, 0.0, 0.5, 0.25)', 'gpi2(0, 0.75)', 'gpi2(1, 0.0)']
    """
    if target not in TARGETS:
        raise CircuitError(f"unknown IonQ target {target!r}; known targets: {', '.join(TARGETS)}")
    compiler = _Compiler(circuit.num_qubits, TARGETS[target])
    for position, op in enumerate(circuit):
        compiler.operation(position, op)
    result = compiler.finish(drop_final_phases)
    # a parameter may vanish from the output (e.g. in a dropped final frame, or
    # rz(theta) rz(-theta)); the parameter vector keeps its original length
    result._num_params = circuit.num_params
    return result


def _sum(*parts: ParamValue) -> ParamValue:
    return ParamSum.combine(*parts)


def _wrap(phase: ParamValue) -> ParamValue:
    """The same phase (turns) with its constant part in [0, 1).

    Rounded to 1e-12 turn so that rounding noise prints as the exact phase
    (0.25, not 0.24999999999999997; 0, not 0.9999999999999999).
    """
    if isinstance(phase, Param):
        return Param(phase.index, phase.scale, _wrap(phase.offset))
    if isinstance(phase, ParamSum):
        return ParamSum(phase.terms, _wrap(phase.offset))
    return round(phase % 1.0, 12) % 1.0


def _zyz(unitary: np.ndarray) -> tuple[float, float, float]:
    """``(a, b, c)`` in radians with ``unitary ~ Rz(a) Ry(b) Rz(c)`` up to a global phase, ``b`` in [0, pi]."""
    special = unitary / np.sqrt(np.linalg.det(unitary))
    # special = [[e^-i(a+c)/2 cos(b/2), .], [e^i(a-c)/2 sin(b/2), e^i(a+c)/2 cos(b/2)]]
    b = 2.0 * math.atan2(abs(special[1, 0]), abs(special[0, 0]))
    plus = 2.0 * np.angle(special[1, 1]) if abs(special[1, 1]) > _TOL else 0.0
    minus = 2.0 * np.angle(special[1, 0]) if abs(special[1, 0]) > _TOL else 0.0
    return (plus + minus) / 2.0, b, (plus - minus) / 2.0


def _pulse_count(unitary: np.ndarray) -> int:
    """Pulses :meth:`_Compiler.flush` needs for ``unitary`` (frames are free)."""
    b = _zyz(unitary)[1]
    if b < _TOL:
        return 0
    return 1 if min(abs(b - np.pi / 2), abs(b - np.pi)) < _TOL else 2


def _in_plane_rotation(phase: float, angle: float) -> np.ndarray:
    """``exp(-i angle s(phase) / 2)``: angle in radians, phase in turns."""
    return math.cos(angle / 2) * _I2 - 1j * math.sin(angle / 2) * GATES["gpi"].matrix(phase)


def _split(unitary: np.ndarray, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, rest)`` with ``unitary = kept @ rest`` and ``kept`` a rotation about ``s(phase)``.

    ``kept`` commutes with an MS whose axis on this qubit is ``s(phase)``, so
    it can wait until after it; ``rest`` is what must be emitted before. For
    ``kept = exp(-i g s / 2)``, ``|rest[0, 0]|^2 = 1/2 + R cos(g - g0)``, so
    ``g = g0`` makes ``rest`` diagonal when ``R = 1/2`` (no pulse) and
    ``g = g0 +- pi/2`` makes it one GPi2; keeping nothing is preferred when
    it costs as little.
    """
    u = unitary[0, 0]
    w = np.exp(-2j * np.pi * phase) * unitary[1, 0]  # (s(phase) @ unitary)[0, 0]
    g0 = math.atan2((u * np.conj(w)).imag, (abs(u) ** 2 - abs(w) ** 2) / 2)
    candidates = []
    for g in (0.0, g0, g0 + np.pi / 2, g0 - np.pi / 2):
        kept = _in_plane_rotation(phase, g)
        rest = kept.conj().T @ unitary
        candidates.append((_pulse_count(rest), abs(math.remainder(g, 2 * np.pi)), kept, rest))
    _, _, kept, rest = min(candidates, key=lambda item: item[:2])
    return kept, rest


class _Compiler:
    """Streaming rewrite of one circuit: pending runs, frames and emitted operations."""

    def __init__(self, num_qubits: int, entangler: str) -> None:
        self.num_qubits = num_qubits
        self.entangler = entangler
        self.pending = [_I2.copy() for _ in range(num_qubits)]
        self.frame: list[ParamValue] = [0.0] * num_qubits
        self.ops: list[tuple[str, tuple[int, ...], tuple[ParamValue, ...]]] = []
        self.last: list[int | None] = [None] * num_qubits  # index in ops of each qubit's last emitted op

    # ---- input operations -------------------------------------------------

    def operation(self, position: int, op: Operation) -> None:
        """Rewrite one input operation (position is only for error messages)."""
        name, qubits, params = op.name, op.qubits, op.params
        symbolic = any(is_symbolic(value) for value in params)
        if len(qubits) == 1:
            q = qubits[0]
            if not symbolic:
                self.apply(q, GATES[name].matrix(*params) if params else GATES[name].matrix())
            elif name == "rz":
                self.z_rotation(q, params[0] * _RAD_TO_TURNS)
            elif name in _ROTATION_BASIS:
                basis = _ROTATION_BASIS[name]
                self.apply(q, basis.conj().T)
                self.z_rotation(q, params[0] * _RAD_TO_TURNS)
                self.apply(q, basis)
            elif name in ("gpi", "gpi2"):
                self.flush(q)
                self.pulse(q, name, params[0])
            else:
                raise CircuitError(f"operation {position} ({op}) has no linear native rewrite for a symbolic parameter")
        elif name == "cnot":
            control, target = qubits
            self.interaction(qubits, [None, 0.0], -0.25)
            self.apply(control, GATES["rz"].matrix(np.pi / 2))
            self.apply(target, GATES["rx"].matrix(np.pi / 2))
        elif name == "swap":
            for axis in (0.0, 0.25, None):
                self.interaction(qubits, [axis, axis], 0.25)
        elif name in _PAULI_AXIS:
            axis = _PAULI_AXIS[name]
            self.interaction(qubits, [axis, axis], params[0] * _RAD_TO_TURNS)
        elif name == "ms":
            self.interaction(qubits, [params[0], params[1]], params[2])
        elif name == "native_zz":
            self.interaction(qubits, [None, None], params[0])
        else:
            raise CircuitError(f"operation {position} ({op}) has no native rewrite")

    # ---- single-qubit bookkeeping -----------------------------------------

    def apply(self, q: int, matrix: np.ndarray) -> None:
        """Apply a constant single-qubit unitary (merged into the pending run)."""
        self.pending[q] = matrix @ self.pending[q]

    def z_rotation(self, q: int, turns: ParamValue) -> None:
        """Apply ``Rz(2 pi turns)``: merged if constant, else a frame change after the pending run."""
        if not is_symbolic(turns):
            self.apply(q, GATES["rz"].matrix(2 * np.pi * turns))
            return
        self.flush(q)
        self.frame[q] = _sum(self.frame[q], turns)

    def flush(self, q: int, keep_axis: float | None = None) -> None:
        """Emit the pending run of qubit ``q`` (but for a part commuting with ``s(keep_axis)``)."""
        kept, rest = (_I2, self.pending[q]) if keep_axis is None else _split(self.pending[q], keep_axis)
        a, b, c = _zyz(rest)
        self.frame[q] = _sum(self.frame[q], c * _RAD_TO_TURNS)
        if abs(b - np.pi / 2) < _TOL:
            self.pulse(q, "gpi2", 0.25)  # Ry(pi/2)
        elif abs(b - np.pi) < _TOL:
            self.pulse(q, "gpi", 0.25)  # Ry(pi) ~ s(1/4) = Y
        elif b >= _TOL:  # else Ry(b) ~ I: the run was a Z rotation, all frame
            self.pulse(q, "gpi2", 0.0)  # Ry(b) ~ GPi2(1/2) . Rz(b) . GPi2(0)
            self.frame[q] = _sum(self.frame[q], b * _RAD_TO_TURNS)
            self.pulse(q, "gpi2", 0.5)
        self.frame[q] = _sum(self.frame[q], a * _RAD_TO_TURNS)
        self.pending[q] = kept

    def pulse(self, q: int, name: str, phase: ParamValue) -> None:
        """Emit gpi or gpi2 of logical ``phase`` (turns) through the qubit's frame."""
        self.emit(name, (q,), (_wrap(_sum(phase, -self.frame[q])),))

    def emit(self, name: str, qubits: tuple[int, ...], params: tuple[ParamValue, ...]) -> None:
        for q in qubits:
            self.last[q] = len(self.ops)
        self.ops.append((name, qubits, params))

    def pauli(self, q: int, axis: Axis) -> None:
        """Apply the Pauli ``s(axis)``, or Z for None."""
        if axis is None:
            self.apply(q, _Z)
        elif is_symbolic(axis):
            self.flush(q)
            self.pulse(q, "gpi", axis)
        else:
            self.apply(q, GATES["gpi"].matrix(axis))

    # ---- two-qubit interactions -------------------------------------------

    def interaction(self, qubits: tuple[int, ...], axes: list[Axis], angle: ParamValue) -> None:
        """Apply ``exp(-i pi angle A0 (x) A1)`` (angle in turns) with the target's entangler."""
        paulis = flip = False
        if not is_symbolic(angle):
            angle -= round(angle)  # to [-1/2, 1/2]: a whole turn is the global sign -1
            if abs(angle) > 0.25:  # exp(-i pi a P) = exp(-i pi (a -+ 1/2) P) (-+i P)
                angle -= math.copysign(0.5, angle)
                paulis = True
            if angle < 0:
                angle = -angle
                if axes[0] is not None:
                    axes[0] = _sum(axes[0], 0.5)
                elif axes[1] is not None:
                    axes[1] = _sum(axes[1], 0.5)
                else:  # X Z X = -Z
                    flip = True
        if is_symbolic(angle) or angle > _TOL:
            if flip:
                self.apply(qubits[0], _X)
            if self.entangler == "ms":
                self._ms(qubits, axes, angle)
            else:
                self._zz(qubits, axes, angle)
            if flip:
                self.apply(qubits[0], _X)
        if paulis:
            for q, axis in zip(qubits, axes, strict=True):
                self.pauli(q, axis)

    def _ms(self, qubits: tuple[int, ...], axes: list[Axis], angle: ParamValue) -> None:
        phases = []
        for q, axis in zip(qubits, axes, strict=True):
            if axis is None:
                self.apply(q, _Z_TO_MS_AXIS.conj().T)
                axis = 0.0
            self.flush(q, None if is_symbolic(axis) else axis)
            phases.append(_wrap(_sum(axis, -self.frame[q])))
        self.emit("ms", qubits, (*phases, angle))
        for q, axis in zip(qubits, axes, strict=True):
            if axis is None:
                self.apply(q, _Z_TO_MS_AXIS)

    def _zz(self, qubits: tuple[int, ...], axes: list[Axis], angle: ParamValue) -> None:
        # C = Rz(2 pi p) Ry(pi/2) maps Z to s(p); applied as its two factors so that p may be symbolic
        for q, axis in zip(qubits, axes, strict=True):
            if axis is not None:
                self.z_rotation(q, -axis)
                self.apply(q, GATES["ry"].matrix(-np.pi / 2))
            self.flush(q)  # native ZZ commutes with the frames only, not with a pending pulse
        self.emit("native_zz", qubits, (angle,))
        for q, axis in zip(qubits, axes, strict=True):
            if axis is not None:
                self.apply(q, GATES["ry"].matrix(np.pi / 2))
                self.z_rotation(q, axis)

    # ---- end of the circuit -----------------------------------------------

    def finish(self, drop_final_phases: bool) -> Circuit:
        """Emit what is pending, realise (or drop) the final frames, and build the circuit."""
        for q in range(self.num_qubits):
            self.flush(q)
            frame = self.frame[q]
            if drop_final_phases or not is_symbolic(frame) and abs(math.remainder(frame, 1.0)) < _TOL:
                continue  # dropped, or Rz(2 pi k) = +-I
            self._realise_frame(q, frame)
        result = Circuit(self.num_qubits)
        for name, qubits, params in self.ops:
            result.append(name, qubits, params)
        return result

    def _realise_frame(self, q: int, frame: ParamValue) -> None:
        """Replace the frame ``Rz(2 pi frame)`` by physical pulses (see the module docstring)."""
        self.frame[q] = 0.0
        half = frame * 0.5
        position = self.last[q]
        name, _, params = self.ops[position] if position is not None else ("", (), ())
        if name == "gpi":
            self.ops[position] = ("gpi", (q,), (_wrap(_sum(params[0], half)),))
        elif name == "gpi2":
            start = _sum(params[0], -0.5)
            self.ops[position] = ("gpi2", (q,), (_wrap(start),))
            self.pulse(q, "gpi", _sum(start, half))
        else:
            self.pulse(q, "gpi", 0.0)
            self.pulse(q, "gpi", half)
