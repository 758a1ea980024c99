"""Circuits to and from IonQ's JSON, job bodies, and IonQ result dictionaries.

Everything here is driven by the gate table (:data:`qsim_core.GATES`): a
gate's IonQ name (``ionq_name``), gate set (``gateset``), qubit arguments
(``qubit_roles``), parameters (``param_names``, ``defaults``) and unit
(``unit``) decide its JSON form; there is no second gate list.

Wire format (see ``/work/shared/ionq-api.md`` sections 4 and 7)
-----------------------------------------------------------------
* A gate entry is ``{"gate": ionq_name, <qubits>, <parameters>}``.
* Qubits: each ``"control"`` role goes to ``control`` (one) / ``controls``
  (list); every other role to ``target`` (one) / ``targets`` (list), in the
  table's argument order. Both spellings are read; ``target`` and ``control``
  are written for single qubits, ``targets`` for two.
* A single-qubit gate with one entry in ``controls`` is the table gate with
  roles ``(control, target)`` whose matrix is the controlled form of that gate
  (found from the matrices): ``{"gate": "x", "controls": [c], "targets": [t]}``
  (qiskit-ionq's CNOT) reads as ``cnot(c, t)``. ``not`` is IonQ's alias of ``x``.
* Parameters: a QIS gate's angle (unit radians) is ``rotation``. A native
  gate's parameters (unit turns) keep their table names, and names ending in
  a digit share one list: ``phase0``, ``phase1`` become ``phases: [p0, p1]``.
  Trailing parameters with a table default may be omitted (MS ``angle``: 0.25).
  cirq-ionq writes native ``zz``'s ``angle`` as ``phase``; both are read.
* Values are written exactly as the circuit holds them (no wrapping into
  IonQ's documented ranges), so ``from_ionq_json(to_ionq_json(c)) == c``.
* Result keys are decimal strings of the basis index with qubit k as bit k,
  the engine's own order, so a result dict is an index -> probability map.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import qsim_core as qc
from qsim_core.circuit import is_symbolic
from qsim_core.gates import Gate

QIS = "qis"
NATIVE = "native"
GATESETS = (QIS, NATIVE)
SINGLE_CIRCUIT = "ionq.circuit.v1"
MULTI_CIRCUIT = "ionq.multi-circuit.v1"
#: ``input.format`` of the legacy v0.3 API
V03_FORMAT = "ionq.circuit.v0"
API_VERSIONS = ("v0.4", "v0.3")
#: v0.3's documented default shot count; also used when a v0.4 body omits ``shots``
DEFAULT_SHOTS = 100
#: metadata field of a client-generated key that makes job creation idempotent (qstore's client and server)
IDEMPOTENCY_FIELD = "idempotency_key"

#: IonQ gate-name aliases, per gate set
_NAME_ALIASES = {(QIS, "not"): "x"}
#: alternative spellings of a parameter field: (gateset, ionq_name, field) -> alias (cirq-ionq's native zz)
_FIELD_ALIASES = {(NATIVE, "zz", "angle"): "phase"}
_QUBIT_FIELDS = ("target", "targets", "control", "controls")
_CONTROL = "control"


class IonQFormatError(ValueError):
    """An IonQ JSON document is malformed or names something this package cannot run.

    The message names the offending entry (``circuit[3] {...}``) or field.
    """


@dataclass(frozen=True)
class _Field:
    """Where one gate parameter lives in a JSON gate entry."""

    name: str  # the JSON field
    slot: int | None  # position in the field's list; None for a scalar field
    width: int  # length of that list (1 for a scalar)


def _parameter_fields(spec: Gate) -> tuple[_Field, ...]:
    """Per parameter of ``spec``, its JSON field (see the module docstring)."""
    placed: list[tuple[str, int | None]] = []
    for name in spec.param_names:
        stem = name.rstrip("0123456789")
        if spec.unit == "radians":
            placed.append(("rotation", None))
        elif stem != name:
            placed.append((stem + "s", int(name[len(stem):])))
        else:
            placed.append((name, None))
    if len(set(placed)) != len(placed):  # the rules above must give each parameter its own slot
        raise RuntimeError(f"gate {spec.name!r}: parameters {spec.param_names} do not map to distinct IonQ fields")
    return tuple(_Field(field, slot, sum(1 for other, _ in placed if other == field)) for field, slot in placed)


def _controlled_forms() -> dict[tuple[str, str], Gate]:
    """(gateset, IonQ name of a 1-qubit gate) -> the table gate that is its singly controlled form."""
    forms = {}
    for two in qc.GATES.values():
        if two.qubit_roles != (_CONTROL, "target"):
            continue
        sample = [0.3 + 0.1 * k for k in range(two.num_params)]  # generic values: equal matrices there mean equal gates
        for one in qc.GATES.values():
            if one.num_qubits != 1 or one.gateset != two.gateset or one.num_params != two.num_params:
                continue
            expected = np.eye(4, dtype=np.complex128)
            expected[2:, 2:] = one.matrix(*sample)  # control is the first (most significant) argument
            if np.allclose(two.matrix(*sample), expected):
                forms[(one.gateset, one.ionq_name)] = two
    return forms


_FIELDS = {spec.name: _parameter_fields(spec) for spec in qc.GATES.values()}


@dataclass(frozen=True)
class _Reading:
    """How an entry of one table gate is read, worked out once per gate (a job has thousands of entries).

    Attributes:
        controls: control qubits among the gate's arguments (the other ones are targets).
        arguments: per qubit argument, its index in the entry's control qubits followed by its targets.
        params: per parameter, its field, the field's alias (or None) and its default (None: required).
    """

    controls: int
    arguments: tuple[int, ...]
    params: tuple[tuple[_Field, str | None, float | None], ...]


def _reading(spec: Gate) -> _Reading:
    """How entries of ``spec`` are read (see :class:`_Reading`)."""
    first_optional = spec.num_params - len(spec.defaults)
    params = tuple((field, _FIELD_ALIASES.get((spec.gateset, spec.ionq_name, field.name)),
                    spec.defaults[k - first_optional] if k >= first_optional else None)
                   for k, field in enumerate(_FIELDS[spec.name]))
    controls = spec.qubit_roles.count(_CONTROL)
    taken = {True: iter(range(controls)), False: iter(range(controls, spec.num_qubits))}
    arguments = tuple(next(taken[role == _CONTROL]) for role in spec.qubit_roles)
    return _Reading(controls, arguments, params)


_READINGS = {spec.name: _reading(spec) for spec in qc.GATES.values()}
_BY_WIRE_NAME = {(spec.gateset, spec.ionq_name): spec for spec in qc.GATES.values()}
_CONTROLLED = _controlled_forms()


# --------------------------------------------------------------------------- circuits -> JSON


def _check_gateset(gateset: str) -> None:
    if gateset not in GATESETS:
        raise IonQFormatError(f"gateset must be one of {GATESETS}, got {gateset!r}")


def _parameter_vector(circuit: qc.Circuit, params: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    """``params`` as a finite float64 vector of at least ``circuit.num_params`` entries (None stays None).

    Longer vectors are allowed so that circuits of one job can share one vector.
    """
    if params is None:
        return None
    theta = np.asarray(params, dtype=np.float64)
    if theta.ndim != 1 or len(theta) < circuit.num_params:
        raise IonQFormatError(f"params must be a vector of at least {circuit.num_params} values for this circuit, "
                              f"got shape {theta.shape}")
    if not np.isfinite(theta).all():
        raise IonQFormatError(f"params contains a non-finite value at index {int(np.argmin(np.isfinite(theta)))}")
    return theta


#: key of a circuit's :class:`_Layout` per gate set in ``Circuit.memo`` (cleared when the circuit changes)
_LAYOUT_KEY = "qstore.ionq.serialize.layout"


@dataclass(frozen=True)
class _Layout:
    """A circuit's gate entries without their parameter values, worked out once to bind them many times.

    Attributes:
        skeletons: per operation, its entry's ``gate`` and qubit fields.
        lists: per operation, the qubit fields that hold lists (copied into every entry, never shared).
        fields: per operation, where each parameter value goes: ``(field, slot or None, list width)``.
        operation: per parameter value (all operations' values in order), its operation's position.
        index, scale, offset: per value, ``scale * theta[index] + offset`` (index -1: the constant ``offset``).
        sums: positions of the values that are :class:`~qsim_core.ParamSum` objects (resolved one by one).
    """

    skeletons: tuple[dict[str, Any], ...]
    lists: tuple[tuple[str, ...], ...]
    fields: tuple[tuple[tuple[str, int | None, int], ...], ...]
    operation: np.ndarray
    index: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    sums: tuple[tuple[int, qc.ParamSum], ...]

    def values(self, circuit: qc.Circuit, theta: np.ndarray | None) -> list[float]:
        """Every parameter value bound to ``theta``, as :meth:`~qsim_core.Param.resolve` computes it."""
        symbolic = self.index >= 0
        if theta is None:
            unbound = [*np.flatnonzero(symbolic)[:1].tolist(), *(at for at, _ in self.sums[:1])]
            if unbound:
                position = int(self.operation[min(unbound)])
                op = circuit.operations[position]
                value = next(value for value in op.params if is_symbolic(value))
                raise IonQFormatError(f"operation {position} ({op}) has an unbound parameter {value!r}; "
                                      "pass params= to bind it (IonQ's JSON has no symbols)")
            return self.offset.tolist()
        values = self.offset.copy()
        at = np.flatnonzero(symbolic)
        # separate multiply and add, as Param.resolve does them: bit for bit the same values
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, naming its gate
            values[at] = self.scale[at] * theta[self.index[at]] + self.offset[at]
        for at, value in self.sums:
            values[at] = value.resolve(theta)
        if not np.isfinite(values).all():
            at = int(np.flatnonzero(~np.isfinite(values))[0])
            position = int(self.operation[at])
            raise IonQFormatError(f"operation {position} ({circuit.operations[position]}) binds to a non-finite "
                                  f"value {values[at]}")
        return values.tolist()


def _layout(circuit: qc.Circuit, gateset: str) -> _Layout:
    """The circuit's :class:`_Layout` for ``gateset`` (memoised on the circuit)."""
    layouts = circuit.memo.setdefault(_LAYOUT_KEY, {})
    layout = layouts.get(gateset)
    if layout is not None:
        return layout
    skeletons, lists, fields, operation, index, scale, offset, sums = [], [], [], [], [], [], [], []
    for position, op in enumerate(circuit):
        spec = op.gate
        if spec.gateset != gateset:
            hint = " (compile it first: qsim_core.to_native(circuit))" if gateset == NATIVE else ""
            raise IonQFormatError(f"operation {position} ({op}) is a {spec.gateset!r} gate; "
                                  f"it cannot be sent with gateset {gateset!r}{hint}")
        skeleton: dict[str, Any] = {"gate": spec.ionq_name}
        controls = [q for role, q in zip(spec.qubit_roles, op.qubits, strict=True) if role == _CONTROL]
        targets = [q for role, q in zip(spec.qubit_roles, op.qubits, strict=True) if role != _CONTROL]
        if controls:
            skeleton.update({"control": controls[0]} if len(controls) == 1 else {"controls": controls})
        skeleton.update({"target": targets[0]} if len(targets) == 1 else {"targets": targets})
        skeletons.append(skeleton)
        lists.append(tuple(name for name, value in skeleton.items() if isinstance(value, list)))
        fields.append(tuple((field.name, field.slot, field.width) for field in _FIELDS[spec.name]))
        for value in op.params:
            if isinstance(value, qc.ParamSum):
                sums.append((len(operation), value))
            operation.append(position)
            index.append(value.index if isinstance(value, qc.Param) else -1)
            scale.append(value.scale if isinstance(value, qc.Param) else 0.0)
            offset.append(value if not is_symbolic(value) else value.offset)
    layout = layouts[gateset] = _Layout(
        tuple(skeletons), tuple(lists), tuple(fields), np.array(operation, dtype=np.int64),
        np.array(index, dtype=np.int64), np.array(scale, dtype=np.float64), np.array(offset, dtype=np.float64),
        tuple(sums))
    return layout


def _gate_list(circuit: qc.Circuit, gateset: str, params: Sequence[float] | np.ndarray | None) -> list[dict]:
    if not isinstance(circuit, qc.Circuit):
        raise IonQFormatError(f"expected a qsim_core.Circuit, got {type(circuit).__name__}")
    _check_gateset(gateset)
    theta = _parameter_vector(circuit, params)
    layout = _layout(circuit, gateset)
    values = iter(layout.values(circuit, theta))
    entries = []
    for skeleton, lists, fields in zip(layout.skeletons, layout.lists, layout.fields, strict=True):
        entry = skeleton.copy()
        for name in lists:
            entry[name] = list(entry[name])
        for name, slot, width in fields:
            if slot is None:
                entry[name] = next(values)
            else:
                entry.setdefault(name, [None] * width)[slot] = next(values)
        entries.append(entry)
    return entries


def to_ionq_json(circuit: qc.Circuit, gateset: str = QIS, *,
                 params: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """The ``input`` block of a single-circuit IonQ job for ``circuit``.

    Args:
        circuit: a circuit whose gates all belong to ``gateset`` (send a QIS
            circuit as native by compiling it first: ``qsim_core.to_native``).
        gateset: ``"qis"`` (angles in radians) or ``"native"`` (turns).
        params: float vector ``(P,)``, ``P >= circuit.num_params``, that binds every
            :class:`~qsim_core.Param`/:class:`~qsim_core.ParamSum`; required
            when the circuit has any (IonQ's JSON has no symbols).

    Returns:
        ``{"gateset": gateset, "qubits": n, "circuit": [gate entries]}``.

    Raises:
        IonQFormatError: a gate outside ``gateset``, an unbound parameter, a
            wrong ``params`` shape or a non-finite value.

    Example:
        >>> to_ionq_json(qc.Circuit(2).h(0).cnot(0, 1))["circuit"]
        [{'gate': 'h', 'target': 0}, {'gate': 'cnot', 'control': 0, 'target': 1}]
    """
    return {"gateset": gateset, "qubits": circuit.num_qubits, "circuit": _gate_list(circuit, gateset, params)}


def bind_batch(circuits: qc.Circuit | Sequence[qc.Circuit],
               params: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
               ) -> list[tuple[qc.Circuit, np.ndarray | None]]:
    """Pair circuits with parameter vectors for a multi-circuit job.

    Args:
        circuits: one circuit or a sequence of them.
        params: None; one vector ``(P,)`` shared by every circuit; or one
            vector per circuit (a sequence of vectors, or a 2-D array). A single
            circuit with a 2-D ``params[B, P]`` gives B bound copies, the usual
            QML batch.

    Returns:
        ``[(circuit, vector or None), ...]`` in job order.
    """
    many = [circuits] if isinstance(circuits, qc.Circuit) else list(circuits)
    if not many:
        raise IonQFormatError("a job needs at least one circuit")
    if params is None:
        return [(c, None) for c in many]
    if len(params) == 0 or np.ndim(params[0]) == 0:  # one vector for all
        return [(c, np.asarray(params, dtype=np.float64)) for c in many]
    rows = [np.asarray(row, dtype=np.float64) for row in params]
    if len(many) == 1:
        many = many * len(rows)
    if len(rows) != len(many):
        raise IonQFormatError(f"{len(many)} circuits but {len(rows)} parameter vectors")
    return list(zip(many, rows, strict=True))


def to_ionq_multi_json(circuits: qc.Circuit | Sequence[qc.Circuit], gateset: str = QIS, *,
                       params: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
                       names: Sequence[str | None] | None = None) -> dict[str, Any]:
    """The ``input`` block of a multi-circuit job: ``{"gateset", "qubits", "circuits": [...]}``.

    ``qubits`` is the widest circuit's width (IonQ shares one register size).
    ``circuits``/``params`` as for :func:`bind_batch`; ``names`` optionally
    labels each circuit. Raises :class:`IonQFormatError` as :func:`to_ionq_json`.
    """
    bound = bind_batch(circuits, params)
    if names is not None and len(names) != len(bound):
        raise IonQFormatError(f"{len(bound)} circuits but {len(names)} names")
    entries = []
    for k, (circuit, theta) in enumerate(bound):
        entry: dict[str, Any] = {"circuit": _gate_list(circuit, gateset, theta)}
        if names is not None and names[k] is not None:
            entry = {"name": names[k], **entry}
        entries.append(entry)
    return {"gateset": gateset, "qubits": max(c.num_qubits for c, _ in bound), "circuits": entries}


def job_body(circuits: qc.Circuit | Sequence[qc.Circuit], *, gateset: str = QIS,
             params: Sequence[float] | Sequence[Sequence[float]] | np.ndarray | None = None,
             backend: str = "simulator", shots: int = 1024, name: str | None = None,
             metadata: Mapping[str, str] | None = None, noise: Mapping[str, Any] | None = None,
             names: Sequence[str | None] | None = None, api_version: str = "v0.4") -> dict[str, Any]:
    """A complete ``POST /jobs`` body.

    One circuit with no or 1-D ``params`` makes a single-circuit job
    (``"type": "ionq.circuit.v1"``); a sequence of circuits, or one circuit
    with a 2-D ``params[B, P]``, a multi-circuit job (``"ionq.multi-circuit.v1"``).

    Args:
        circuits, gateset, params, names: see :func:`to_ionq_json` and :func:`to_ionq_multi_json`.
        backend: ``"simulator"``, ``"qpu.aria-1"``, ... (v0.3 calls the field ``target``).
        shots: shots per circuit, >= 1.
        name: optional job name.
        metadata: string-valued user metadata, echoed back by the server.
        noise: simulator noise, e.g. ``{"model": "ideal", "seed": None}``.
        api_version: ``"v0.4"`` (the current API) or ``"v0.3"`` (legacy form:
            ``target``, ``input.format = "ionq.circuit.v0"``, no ``type``).
    """
    if api_version not in API_VERSIONS:
        raise IonQFormatError(f"api_version must be one of {API_VERSIONS}, got {api_version!r}")
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise IonQFormatError(f"shots must be a positive integer, got {shots!r}")
    single = isinstance(circuits, qc.Circuit) and (params is None or np.ndim(params) == 1) and names is None
    block = (to_ionq_json(circuits, gateset, params=params) if single
             else to_ionq_multi_json(circuits, gateset, params=params, names=names))
    body: dict[str, Any] = {}
    if api_version == "v0.4":
        body.update({"type": SINGLE_CIRCUIT if single else MULTI_CIRCUIT, "backend": backend})
    else:
        body["target"] = backend
        block = {"format": V03_FORMAT, **block}
    body.update({"shots": int(shots), "input": block})
    if name is not None:
        body["name"] = name
    if metadata:
        body["metadata"] = dict(metadata)
    if noise is not None:
        body["noise"] = dict(noise)
    return body


# --------------------------------------------------------------------------- JSON -> circuits


def _describe(entry: object) -> str:
    text = json.dumps(entry, default=repr)
    return text if len(text) <= 200 else text[:197] + "..."


def _qubit_list(entry: Mapping[str, Any], one: str, many: str) -> list[int]:
    """The qubits given by ``entry[one]`` (an int) or ``entry[many]`` (a list of ints); [] if neither."""
    if one in entry:
        if many in entry:
            raise IonQFormatError(f"give either {one!r} or {many!r}, not both")
        values = [entry[one]]
    elif many in entry:
        values = entry[many]
        if not isinstance(values, list) or not values:
            raise IonQFormatError(f"{many!r} must be a non-empty list of qubit indices, got {values!r}")
    else:
        return []
    for q in values:
        if isinstance(q, bool) or not isinstance(q, int) or q < 0:
            raise IonQFormatError(f"qubit indices must be integers >= 0, got {q!r} in {one!r}/{many!r}")
    return values


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IonQFormatError(f"{field!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise IonQFormatError(f"{field!r} must be finite, got {value!r}")
    return float(value)


def _parameters(spec: Gate, entry: Mapping[str, Any]) -> tuple[list[float], set[str]]:
    """The gate's parameter values from ``entry`` and the set of fields they used."""
    values: list[float] = []
    used: set[str] = set()
    for field, alias, default in _READINGS[spec.name].params:
        name = field.name
        if name in entry:
            if alias is not None and alias in entry:
                raise IonQFormatError(f"give either {name!r} or {alias!r}, not both")
        elif alias is not None and alias in entry:
            name = alias
        elif default is None:
            raise IonQFormatError(f"gate {spec.ionq_name!r} needs {name!r} in {spec.unit}")
        else:
            values.append(default)
            continue
        used.add(name)
        raw = entry[name]
        if field.slot is not None:
            if not isinstance(raw, list) or len(raw) != field.width:
                raise IonQFormatError(f"{name!r} must be a list of {field.width} numbers, got {raw!r}")
            raw = raw[field.slot]
        values.append(_number(raw, name))
    return values, used


def _wire_gate(name: object, gateset: str) -> Gate:
    if not isinstance(name, str):
        raise IonQFormatError(f"'gate' must be a gate name, got {name!r}")
    wire = _NAME_ALIASES.get((gateset, name), name)
    spec = _BY_WIRE_NAME.get((gateset, wire))
    if spec is not None:
        return spec
    others = [g for g in GATESETS if g != gateset and (g, _NAME_ALIASES.get((g, name), name)) in _BY_WIRE_NAME]
    if others:
        raise IonQFormatError(f"gate {name!r} belongs to gateset {others[0]!r}, but the circuit is "
                              f"{gateset!r} (native and QIS gates cannot be mixed)")
    known = sorted(n for g, n in _BY_WIRE_NAME if g == gateset)
    raise IonQFormatError(f"unknown gate {name!r} in gateset {gateset!r}; known: {', '.join(known)}")


def _read_gate(entry: Mapping[str, Any], gateset: str) -> tuple[Gate, tuple[int, ...], list[float]]:
    """One gate entry: its table gate, qubits in the gate's argument order, and parameter values.

    Checks everything a single entry can get wrong; whether its qubits fit
    the register is checked when the gate is appended to a circuit. Messages
    do not name the entry (the caller prefixes its label, built only then).
    """
    spec = _wire_gate(entry.get("gate"), gateset)
    controls = _qubit_list(entry, "control", "controls")
    targets = _qubit_list(entry, "target", "targets")
    if controls and _CONTROL not in spec.qubit_roles:
        controlled = _CONTROLLED.get((gateset, spec.ionq_name))
        if controlled is None or len(controls) != 1:
            supported = ", ".join(f"{name} (one control)" for _, name in _CONTROLLED) or "none"
            raise IonQFormatError(f"gate {spec.ionq_name!r} with {len(controls)} control(s) is not "
                                  f"supported; controlled forms supported: {supported}")
        spec = controlled
    reading = _READINGS[spec.name]
    n_controls = reading.controls
    if len(controls) != n_controls or len(targets) != spec.num_qubits - n_controls:
        raise IonQFormatError(f"gate {spec.ionq_name!r} takes {n_controls} control and "
                              f"{spec.num_qubits - n_controls} target qubit(s) ({', '.join(spec.qubit_roles)}), "
                              f"got {len(controls)} and {len(targets)}")
    if controls:
        given = controls + targets
        qubits = tuple([given[k] for k in reading.arguments])
    else:
        qubits = tuple(targets)
    values, used = _parameters(spec, entry)
    # "gate", one field per kind of qubit given, and the parameter fields: anything more is unknown
    if len(entry) != 1 + bool(controls) + bool(targets) + len(used):
        unknown = sorted(set(entry) - {"gate", *_QUBIT_FIELDS} - used)
        expected = sorted({field.name for field in _FIELDS[spec.name]}) or ["none"]
        raise IonQFormatError(f"unexpected field(s) {unknown} for gate {spec.ionq_name!r} "
                              f"(its parameter fields: {', '.join(expected)}; unit: {spec.unit or 'none'})")
    return spec, qubits, values


def _qubit_count(block: Mapping[str, Any], label: str) -> int:
    qubits = block.get("qubits")
    if isinstance(qubits, bool) or not isinstance(qubits, int) or qubits < 1:
        raise IonQFormatError(f"{label}'qubits' must be an integer >= 1, got {qubits!r}")
    return qubits


def _gateset_of(block: Mapping[str, Any], default: str, label: str) -> str:
    gateset = block.get("gateset", default)
    if gateset not in GATESETS:
        raise IonQFormatError(f"{label}'gateset' must be one of {GATESETS}, got {gateset!r}")
    return gateset


#: a circuit without its parameter values: ``((gate name, qubits), ...)``
_Sequence = tuple[tuple[str, tuple[int, ...]], ...]


def _read_circuit(gates: object, gateset: str, label: str) -> tuple[_Sequence, list[float]]:
    """A gate list as its gate sequence and its parameter values in order (every entry checked)."""
    if not isinstance(gates, list):
        raise IonQFormatError(f"{label}'circuit' must be a list of gate entries, got {type(gates).__name__}")
    sequence = []
    values: list[float] = []
    for position, entry in enumerate(gates):
        if not isinstance(entry, dict):
            raise IonQFormatError(f"{label}circuit[{position}]: a gate entry must be an object, got {entry!r}")
        try:
            spec, qubits, params = _read_gate(entry, gateset)
        except IonQFormatError as error:  # the label names the entry, built here so valid entries never pay for it
            raise IonQFormatError(f"{label}circuit[{position}] {_describe(entry)}: {error}") from None
        sequence.append((spec.name, qubits))
        values.extend(params)
    return tuple(sequence), values


def _template(sequence: _Sequence, qubits: int, gates: list, label: str) -> qc.Circuit:
    """The circuit of ``sequence`` with ``Param(k)`` as its k-th parameter value.

    ``gates`` is the JSON gate list the sequence was read from, for the label
    of a gate whose qubits do not fit the register.
    """
    circuit = qc.Circuit(qubits)
    index = 0
    for position, (name, on) in enumerate(sequence):
        count = qc.GATES[name].num_params
        try:
            circuit.append(name, on, [qc.Param(index + k) for k in range(count)])
        except qc.CircuitError as error:
            raise IonQFormatError(f"{label}circuit[{position}] {_describe(gates[position])}: {error}") from None
        index += count
    return circuit


@dataclass(frozen=True)
class CircuitBatch:
    """The circuits of an input that share one gate sequence (gates and their qubits), as one template.

    IonQ's JSON has no symbols, so ``job_body(circuit, params=theta)`` sends
    every binding as a circuit of its own. Read back as a template with a row
    of values per circuit, they compile to one program (qsim_core caches
    compiled programs per structure, and constant values are part of it)
    and run in one batched call:
    ``Simulator.probabilities(batch.template, batch.params)``.

    Attributes:
        template: the gate sequence with ``Param(k)`` as its k-th gate parameter value.
        params: float64 ``[B, P]``: row b holds the values of circuit ``positions[b]``.
        positions: the circuits' indices in the input, ascending.
    """

    template: qc.Circuit
    params: np.ndarray
    positions: tuple[int, ...]

    def circuits(self) -> list[qc.Circuit]:
        """The batch's circuits with constant values, in the order of ``positions``."""
        bound = []
        for row in self.params.tolist():
            circuit = qc.Circuit(self.template.num_qubits)
            values = iter(row)
            for op in self.template:
                circuit.append(op.name, op.qubits, [next(values) for _ in op.params])
            bound.append(circuit)
        return bound


def _parse_batches(input_block: Mapping[str, Any]) -> tuple[tuple[str | None, ...], tuple[CircuitBatch, ...]]:
    """The names of a single- or multi-circuit ``input`` block's circuits, and the circuits as batches."""
    if not isinstance(input_block, Mapping):
        raise IonQFormatError(f"'input' must be an object, got {type(input_block).__name__}")
    fmt = input_block.get("format", V03_FORMAT)
    if fmt != V03_FORMAT:
        raise IonQFormatError(f"input 'format' {fmt!r} is not supported (only {V03_FORMAT!r} gate lists)")
    qubits = _qubit_count(input_block, "input ")
    gateset = _gateset_of(input_block, QIS, "input ")
    if ("circuit" in input_block) == ("circuits" in input_block):
        raise IonQFormatError("input needs exactly one of 'circuit' (a gate list) or 'circuits' (a list of circuits)")
    if "circuit" in input_block:
        entries = [{"circuit": input_block["circuit"]}]
        labels = [""]
    else:
        entries = input_block["circuits"]
        if not isinstance(entries, list) or not entries:
            raise IonQFormatError(f"input 'circuits' must be a non-empty list, got {entries!r}")
        labels = [f"circuits[{k}]." for k in range(len(entries))]
    names: list[str | None] = []
    groups: dict[_Sequence, tuple[qc.Circuit, list[int], list[list[float]]]] = {}
    for k, (entry, label) in enumerate(zip(entries, labels, strict=True)):
        if not isinstance(entry, dict):
            raise IonQFormatError(f"{label[:-1]} must be an object with a 'circuit' list, got {entry!r}")
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            raise IonQFormatError(f"{label}name must be a string, got {name!r}")
        gates = entry.get("circuit")
        sequence, values = _read_circuit(gates, _gateset_of(entry, gateset, label), label)
        group = groups.get(sequence)
        if group is None:  # a new sequence: its qubits are checked against the register here, once
            group = groups[sequence] = (_template(sequence, qubits, gates, label), [], [])
        group[1].append(k)
        group[2].append(values)
        names.append(name)
    batches = tuple(CircuitBatch(template, np.array(rows, dtype=np.float64), tuple(positions))
                    for template, positions, rows in groups.values())
    return tuple(names), batches


def _bind(names: Sequence[str | None], batches: Sequence[CircuitBatch]) -> list[tuple[str | None, qc.Circuit]]:
    """``[(name, circuit), ...]`` in input order from the batches of an input."""
    circuits: list[qc.Circuit | None] = [None] * len(names)
    for batch in batches:
        for position, circuit in zip(batch.positions, batch.circuits(), strict=True):
            circuits[position] = circuit
    return list(zip(names, circuits, strict=True))


def from_ionq_json(input_block: Mapping[str, Any]) -> qc.Circuit:
    """Parse the ``input`` block of a single-circuit job into a circuit.

    Accepts every variant the official clients and IonQ's docs write (see the
    module docstring): ``target``/``targets``, ``control``/``controls``,
    ``cnot`` or ``x`` with one control, ``not``, native ``zz`` with ``angle``
    or ``phase``, MS without ``angle``, and the v0.3 ``format`` field.

    Returns:
        A circuit on ``input_block["qubits"]`` qubits with constant parameters.

    Raises:
        IonQFormatError: naming the offending entry, for an unknown gate, a
            gate from the other gate set, missing/extra/duplicate qubit or
            parameter fields, a qubit out of range, a non-finite number.
    """
    if isinstance(input_block, Mapping) and "circuits" in input_block:
        raise IonQFormatError("input holds a multi-circuit 'circuits' list; use parse_input for it")
    return parse_input(input_block)[0][1]


def parse_input(input_block: Mapping[str, Any]) -> list[tuple[str | None, qc.Circuit]]:
    """Parse a single- or multi-circuit ``input`` block into ``[(name, circuit), ...]``.

    A multi-circuit block shares ``qubits``; each circuit may override
    ``gateset`` (v0.3 docs). Raises :class:`IonQFormatError` as :func:`from_ionq_json`.
    """
    return _bind(*_parse_batches(input_block))


@dataclass(frozen=True)
class JobRequest:
    """A validated ``POST /jobs`` body (either API version).

    Attributes:
        api_version: ``"v0.4"`` or ``"v0.3"`` (detected from the body's shape).
        multi: a multi-circuit job (children, aggregated results).
        backend: ``"simulator"``, ``"qpu.aria-1"``, ...
        shots: shots per circuit, >= 1 (an int or a numeric string on the wire).
        gateset: the input's gate set.
        qubits: register width shared by every circuit.
        names: each circuit's name or None, in submission order.
        batches: the circuits grouped by gate sequence (:class:`CircuitBatch`), what a simulator runs.
        name: job name or None.
        metadata: user metadata, echoed verbatim.
        noise: the ``noise`` object or None.
        settings: the ``settings`` object or None.
        dry_run: compile only.
        session_id: session or None.
    """

    api_version: str
    multi: bool
    backend: str
    shots: int
    gateset: str
    qubits: int
    names: tuple[str | None, ...]
    batches: tuple[CircuitBatch, ...]
    name: str | None
    metadata: dict[str, Any]
    noise: dict[str, Any] | None
    settings: dict[str, Any] | None
    dry_run: bool
    session_id: str | None

    @functools.cached_property
    def circuits(self) -> tuple[tuple[str | None, qc.Circuit], ...]:
        """``(name or None, circuit)`` per circuit with constant values, in submission order (built on first use)."""
        return tuple(_bind(self.names, self.batches))


def _optional(body: Mapping[str, Any], field: str, kind: type, default: Any = None) -> Any:
    value = body.get(field, default)
    if value is not None and not isinstance(value, kind):
        raise IonQFormatError(f"{field!r} must be a {kind.__name__}, got {value!r}")
    return value


def _shots(value: object) -> int:
    """``shots`` as an int: qiskit sends an int, cirq-ionq a numeric string."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise IonQFormatError(f"'shots' must be a positive integer (or its decimal string), got {value!r}")
    return value


def parse_job_body(body: object) -> JobRequest:
    """Validate a ``POST /jobs`` body of either API version.

    v0.4 bodies are recognised by ``type`` or ``backend``, anything else is
    v0.3 (whose ``target`` defaults to the simulator). A missing ``type`` is
    inferred from the input (``circuit`` vs ``circuits``); ``input.format``
    (``"ionq.circuit.v0"``) is accepted in both.

    Raises:
        IonQFormatError: a wrong field, an unsupported job type, or any
            circuit error (see :func:`from_ionq_json`).
    """
    if not isinstance(body, dict):
        raise IonQFormatError(f"the job body must be a JSON object, got {type(body).__name__}")
    block = body.get("input")
    if not isinstance(block, dict):
        raise IonQFormatError("the job needs an 'input' object with the circuit(s)")
    modern = "backend" in body or "type" in body
    if modern and "target" in body:
        raise IonQFormatError("mixed API versions: v0.3 'target' with v0.4 'backend'/'type'")
    legacy = not modern  # v0.3's 'target' is optional (default: the simulator)
    multi = "circuits" in block
    kind = body.get("type", MULTI_CIRCUIT if multi else SINGLE_CIRCUIT)
    if kind not in (SINGLE_CIRCUIT, MULTI_CIRCUIT):
        raise IonQFormatError(f"job type {kind!r} is not supported; use {SINGLE_CIRCUIT!r} or {MULTI_CIRCUIT!r}")
    if (kind == MULTI_CIRCUIT) != multi:
        raise IonQFormatError(f"job type {kind!r} does not match its input "
                              f"({'a circuits list' if multi else 'a single circuit'})")
    backend = body.get("target", "simulator") if legacy else body.get("backend")
    if not isinstance(backend, str) or not backend:
        raise IonQFormatError(f"{'target' if legacy else 'backend'!r} must be a backend name, got {backend!r}")
    metadata = _optional(body, "metadata", dict, {})
    names, batches = _parse_batches(block)
    return JobRequest(
        api_version="v0.3" if legacy else "v0.4",
        multi=multi,
        backend=backend,
        shots=_shots(body.get("shots", DEFAULT_SHOTS)),
        gateset=_gateset_of(block, QIS, "input "),
        qubits=_qubit_count(block, "input "),
        names=names,
        batches=batches,
        name=_optional(body, "name", str),
        metadata=dict(metadata),
        noise=_optional(body, "noise", dict),
        settings=_optional(body, "settings", dict),
        dry_run=bool(_optional(body, "dry_run", bool, False)),
        session_id=_optional(body, "session_id", str),
    )


def gate_counts(circuits: Iterable[qc.Circuit]) -> tuple[int, int]:
    """``(one-qubit, two-qubit)`` gate totals over ``circuits``: IonQ's ``gate_counts`` and billing units."""
    one = two = 0
    for circuit in circuits:
        for op in circuit:
            if op.gate.num_qubits == 1:
                one += 1
            else:
                two += 1
    return one, two


# --------------------------------------------------------------------------- results


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
            number = _number(value, key)
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


__all__ = [
    "GATESETS",
    "MULTI_CIRCUIT",
    "NATIVE",
    "QIS",
    "SINGLE_CIRCUIT",
    "CircuitBatch",
    "IonQFormatError",
    "JobRequest",
    "bind_batch",
    "counts_from_ionq",
    "from_ionq_json",
    "gate_counts",
    "job_body",
    "parse_input",
    "parse_job_body",
    "probabilities_from_ionq",
    "probabilities_to_ionq",
    "to_ionq_json",
    "to_ionq_multi_json",
]
