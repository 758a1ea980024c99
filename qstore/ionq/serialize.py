"""Circuits to IonQ's JSON: a circuit's ``input`` block, multi-circuit blocks, whole job bodies.

The wire format (gate entries, qubit and parameter fields) is described in :mod:`qstore.ionq.wire`.
Values are written exactly as the circuit holds them (no wrapping into IonQ's documented ranges),
so ``from_ionq_json(to_ionq_json(c)) == c`` (:mod:`qstore.ionq.parse`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import qsim_core as qc
from qsim_core.circuit import is_symbolic

from .wire import (
    API_VERSIONS,
    CONTROL,
    FIELDS,
    MULTI_CIRCUIT,
    NATIVE,
    QIS,
    SINGLE_CIRCUIT,
    V03_FORMAT,
    IonQFormatError,
    check_gateset,
)


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
        controls = [q for role, q in zip(spec.qubit_roles, op.qubits, strict=True) if role == CONTROL]
        targets = [q for role, q in zip(spec.qubit_roles, op.qubits, strict=True) if role != CONTROL]
        if controls:
            skeleton.update({"control": controls[0]} if len(controls) == 1 else {"controls": controls})
        skeleton.update({"target": targets[0]} if len(targets) == 1 else {"targets": targets})
        skeletons.append(skeleton)
        lists.append(tuple(name for name, value in skeleton.items() if isinstance(value, list)))
        fields.append(tuple((field.name, field.slot, field.width) for field in FIELDS[spec.name]))
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
    check_gateset(gateset)
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

    Examples:
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
        circuits: see :func:`to_ionq_json` and :func:`to_ionq_multi_json`.
        gateset: as there.
        params: as there.
        names: as there.
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


__all__ = ["bind_batch", "job_body", "to_ionq_json", "to_ionq_multi_json"]
