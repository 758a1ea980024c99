"""IonQ's JSON wire format: its constants, and each gate-table gate's JSON form, for both directions.

:mod:`qstore.ionq.serialize` writes circuits and job bodies, :mod:`qstore.ionq.parse` reads them,
:mod:`qstore.ionq.results` converts result dictionaries; all three take the wire forms from here.

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

import math
from dataclasses import dataclass

import numpy as np

import qsim_core as qc
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
NAME_ALIASES = {(QIS, "not"): "x"}
#: alternative spellings of a parameter field: (gateset, ionq_name, field) -> alias (cirq-ionq's native zz)
FIELD_ALIASES = {(NATIVE, "zz", "angle"): "phase"}
QUBIT_FIELDS = ("target", "targets", "control", "controls")
CONTROL = "control"


class IonQFormatError(ValueError):
    """An IonQ JSON document is malformed or names something this package cannot run.

    The message names the offending entry (``circuit[3] {...}``) or field.
    """


@dataclass(frozen=True)
class Field:
    """Where one gate parameter lives in a JSON gate entry."""

    name: str  # the JSON field
    slot: int | None  # position in the field's list; None for a scalar field
    width: int  # length of that list (1 for a scalar)


def _parameter_fields(spec: Gate) -> tuple[Field, ...]:
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
    return tuple(Field(field, slot, sum(1 for other, _ in placed if other == field)) for field, slot in placed)


def _controlled_forms() -> dict[tuple[str, str], Gate]:
    """(gateset, IonQ name of a 1-qubit gate) -> the table gate that is its singly controlled form."""
    forms = {}
    for two in qc.GATES.values():
        if two.qubit_roles != (CONTROL, "target"):
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


FIELDS = {spec.name: _parameter_fields(spec) for spec in qc.GATES.values()}


@dataclass(frozen=True)
class Reading:
    """How an entry of one table gate is read, worked out once per gate (a job has thousands of entries).

    Attributes:
        controls: control qubits among the gate's arguments (the other ones are targets).
        arguments: per qubit argument, its index in the entry's control qubits followed by its targets.
        params: per parameter, its field, the field's alias (or None) and its default (None: required).
    """

    controls: int
    arguments: tuple[int, ...]
    params: tuple[tuple[Field, str | None, float | None], ...]


def _reading(spec: Gate) -> Reading:
    """How entries of ``spec`` are read (see :class:`Reading`)."""
    first_optional = spec.num_params - len(spec.defaults)
    params = tuple((field, FIELD_ALIASES.get((spec.gateset, spec.ionq_name, field.name)),
                    spec.defaults[k - first_optional] if k >= first_optional else None)
                   for k, field in enumerate(FIELDS[spec.name]))
    controls = spec.qubit_roles.count(CONTROL)
    taken = {True: iter(range(controls)), False: iter(range(controls, spec.num_qubits))}
    arguments = tuple(next(taken[role == CONTROL]) for role in spec.qubit_roles)
    return Reading(controls, arguments, params)


READINGS = {spec.name: _reading(spec) for spec in qc.GATES.values()}
BY_WIRE_NAME = {(spec.gateset, spec.ionq_name): spec for spec in qc.GATES.values()}
CONTROLLED = _controlled_forms()


# --------------------------------------------------------------------------- circuits -> JSON


def check_gateset(gateset: str) -> None:
    if gateset not in GATESETS:
        raise IonQFormatError(f"gateset must be one of {GATESETS}, got {gateset!r}")


def read_number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IonQFormatError(f"{field!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise IonQFormatError(f"{field!r} must be finite, got {value!r}")
    return float(value)


__all__ = ["API_VERSIONS", "DEFAULT_SHOTS", "GATESETS", "IDEMPOTENCY_FIELD", "MULTI_CIRCUIT", "NATIVE", "QIS",
           "SINGLE_CIRCUIT", "V03_FORMAT", "IonQFormatError"]
