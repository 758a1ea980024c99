"""IonQ's JSON to circuits: ``input`` blocks (single and multi-circuit, v0.4 and v0.3) and whole job bodies.

Every spelling the official clients send is read (see :mod:`qstore.ionq.wire`); anything else is
an :class:`~qstore.ionq.wire.IonQFormatError` naming the entry, never a crash. Circuits that share a
gate sequence are grouped into one :class:`CircuitBatch`: one template circuit and a parameter
row per circuit, so a job runs as a few batched engine calls.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import qsim_core as qc
from qsim_core.gates import Gate

from .noise import NoiseRequest, read_noise
from .wire import (
    BY_WIRE_NAME,
    CONTROL,
    CONTROLLED,
    DEFAULT_SHOTS,
    FIELDS,
    GATESETS,
    MULTI_CIRCUIT,
    NAME_ALIASES,
    QIS,
    QUBIT_FIELDS,
    READINGS,
    SINGLE_CIRCUIT,
    V03_FORMAT,
    IonQFormatError,
    read_number,
)


def _describe(entry: object) -> str:
    try:
        text = json.dumps(entry, default=repr)
    except ValueError:  # an integer over Python's 4,300-digit conversion limit
        return f"<a {type(entry).__name__} holding a number too long to show>"
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


def _parameters(spec: Gate, entry: Mapping[str, Any]) -> tuple[list[float], set[str]]:
    """The gate's parameter values from ``entry`` and the set of fields they used."""
    values: list[float] = []
    used: set[str] = set()
    for field, alias, default in READINGS[spec.name].params:
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
        try:
            values.append(read_number(raw, name))
        except OverflowError:  # an integer beyond a float's range, e.g. 10**400
            raise IonQFormatError(f"{name!r} must be a number in a 64-bit float's range, "
                                  f"got an integer of about {raw.bit_length() * 0.30103:.0f} digits") from None
    return values, used


def _wire_gate(name: object, gateset: str) -> Gate:
    if not isinstance(name, str):
        raise IonQFormatError(f"'gate' must be a gate name, got {name!r}")
    wire = NAME_ALIASES.get((gateset, name), name)
    spec = BY_WIRE_NAME.get((gateset, wire))
    if spec is not None:
        return spec
    others = [g for g in GATESETS if g != gateset and (g, NAME_ALIASES.get((g, name), name)) in BY_WIRE_NAME]
    if others:
        raise IonQFormatError(f"gate {name!r} belongs to gateset {others[0]!r}, but the circuit is "
                              f"{gateset!r} (native and QIS gates cannot be mixed)")
    known = sorted(n for g, n in BY_WIRE_NAME if g == gateset)
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
    if controls and CONTROL not in spec.qubit_roles:
        controlled = CONTROLLED.get((gateset, spec.ionq_name))
        if controlled is None or len(controls) != 1:
            supported = ", ".join(f"{name} (one control)" for _, name in CONTROLLED) or "none"
            raise IonQFormatError(f"gate {spec.ionq_name!r} with {len(controls)} control(s) is not "
                                  f"supported; controlled forms supported: {supported}")
        spec = controlled
    reading = READINGS[spec.name]
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
        unknown = sorted(set(entry) - {"gate", *QUBIT_FIELDS} - used)
        expected = sorted({field.name for field in FIELDS[spec.name]}) or ["none"]
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
        noise: the ``noise`` object or None, as sent.
        settings: the ``settings`` object or None.
        dry_run: compile only.
        session_id: session or None.
        noise_request: ``noise`` validated: the engine's model (None: ideal) and the seed; the server
            simulates with it on the ``simulator`` backend only (noise is a simulator option at IonQ).
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
    noise_request: NoiseRequest = NoiseRequest(None, None)

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
    # ASCII digits only ("²".isdigit() is true, but int() refuses it); 18 digits keep int() cheap
    if isinstance(value, str) and value.isascii() and value.strip().isdecimal() and len(value.strip()) <= 18:
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
    noise = _optional(body, "noise", dict)
    noise_request = read_noise(noise)
    names, batches = _parse_batches(block)
    qubits = _qubit_count(block, "input ")
    model = noise_request.model
    if model is not None and backend == "simulator" and qubits > model.max_qubits:
        raise IonQFormatError(f"noise model {model.name!r} models a {model.max_qubits}-qubit QPU; this job has "
                              f"{qubits} qubits")
    return JobRequest(
        api_version="v0.3" if legacy else "v0.4",
        multi=multi,
        backend=backend,
        shots=_shots(body.get("shots", DEFAULT_SHOTS)),
        gateset=_gateset_of(block, QIS, "input "),
        qubits=qubits,
        names=names,
        batches=batches,
        name=_optional(body, "name", str),
        metadata=dict(metadata),
        noise=noise,
        settings=_optional(body, "settings", dict),
        dry_run=bool(_optional(body, "dry_run", bool, False)),
        session_id=_optional(body, "session_id", str),
        noise_request=noise_request,
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


__all__ = ["CircuitBatch", "JobRequest", "from_ionq_json", "gate_counts", "parse_input", "parse_job_body"]
