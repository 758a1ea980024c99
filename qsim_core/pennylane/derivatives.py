"""Adjoint derivatives of expectation values, in PennyLane's result shapes.

Every observable becomes a Pauli sum (:func:`~qsim_core.pennylane.measure.pauli_table`),
the engine differentiates the distinct Pauli strings with its adjoint sweep in
one batched call over the tape's broadcast rows, and the sums are recombined.
Broadcast tapes keep their broadcast axis: the Jacobian entry of a shared
(non-broadcast) trainable parameter has shape ``(B,)``, as PennyLane's
parameter-shift gives it; tapes whose *trainable* parameters are broadcast
are split by the device's preprocessing before they get here.

Public (``__all__``): :func:`jacobian`, :func:`value_and_jacobian`, :func:`vjp`.
"""

from __future__ import annotations

import numpy as np
from pennylane.tape import QuantumScript

from ..simulator import Simulator
from .measure import PauliTable, pauli_table
from .translate import Translation, translate


def _prepare(tape: QuantumScript, num_wires: int) -> tuple[Translation, PauliTable]:
    table = pauli_table([mp.obs for mp in tape.measurements], num_wires, decompose_matrices=True)
    if table is None:
        raise ValueError("adjoint differentiation on qsim_core.qubit needs expectation values of observables")
    return translate(tape, num_wires), table


def _columns(t: Translation, tape: QuantumScript, per_engine: np.ndarray) -> np.ndarray:
    """``per_engine[..., P]`` (engine parameters) -> ``[..., T]`` (the tape's trainable parameters)."""
    index = t.engine_index[list(tape.trainable_params)]
    out = np.zeros(per_engine.shape[:-1] + (len(index),))
    known = index >= 0
    out[..., known] = per_engine[..., index[known]]
    return out


def _results(values: np.ndarray, batched: bool):
    """values ``[B, M]`` -> PennyLane's result of M expectation values."""
    columns = [values[:, m] if batched else values[0, m] for m in range(values.shape[1])]
    return columns[0] if len(columns) == 1 else tuple(columns)


def _shape_jacobian(jac: np.ndarray, batched: bool):
    """``[B, M, T]`` -> PennyLane's nesting: measurements outside, parameters inside, squeezed."""
    num_measurements, num_params = jac.shape[1], jac.shape[2]

    def leaf(m: int, p: int) -> np.ndarray:
        return np.array(jac[:, m, p] if batched else jac[0, m, p])

    if num_params == 0:
        return () if num_measurements == 1 else tuple(() for _ in range(num_measurements))
    if num_measurements == 1 and num_params == 1:
        return leaf(0, 0)
    if num_measurements == 1:
        return tuple(leaf(0, p) for p in range(num_params))
    if num_params == 1:
        return tuple(leaf(m, 0) for m in range(num_measurements))
    return tuple(tuple(leaf(m, p) for p in range(num_params)) for m in range(num_measurements))


def value_and_jacobian(tape: QuantumScript, num_wires: int, simulator: Simulator):
    """The tape's expectation values and their Jacobian with respect to its trainable parameters."""
    t, table = _prepare(tape, num_wires)
    raw, raw_jacobian = simulator.value_and_gradient(t.circuit, table.words, t.params, initial_state=t.initial_state)
    values = raw @ table.coefficients.T
    jac = np.einsum("mk,bkp->bmp", table.coefficients, raw_jacobian)
    batched = t.batch is not None
    return _results(values, batched), _shape_jacobian(_columns(t, tape, jac), batched)


def jacobian(tape: QuantumScript, num_wires: int, simulator: Simulator):
    """The Jacobian alone (see :func:`value_and_jacobian`)."""
    return value_and_jacobian(tape, num_wires, simulator)[1]


def vjp(tape: QuantumScript, num_wires: int, simulator: Simulator, cotangents) -> tuple[np.ndarray, ...]:
    """``sum over outputs of cotangent * d output / d trainable parameter``, one engine adjoint sweep.

    Args:
        tape: expectation values only.
        cotangents: shaped like the tape's result (a scalar or ``(B,)`` per measurement).

    Returns:
        One 0-d array per trainable parameter (summed over broadcast rows, which share it).
    """
    t, table = _prepare(tape, num_wires)
    rows = t.params.shape[0]
    num_measurements = len(tape.measurements)
    dy = np.asarray(cotangents, np.float64) if num_measurements > 1 else np.asarray([cotangents], np.float64)
    if dy.shape not in ((num_measurements,), (num_measurements, rows)) or (t.batch is None and dy.ndim == 2):
        raise ValueError(f"cotangents of shape {np.shape(cotangents)} do not match the tape's "
                         f"{num_measurements} measurement(s) with {rows} broadcast row(s)")
    weights = np.broadcast_to(dy.reshape(num_measurements, -1).T, (rows, num_measurements)) @ table.coefficients
    gradient = simulator.vjp(t.circuit, table.words, t.params, weights, initial_state=t.initial_state)
    per_tape = _columns(t, tape, gradient).sum(axis=0)
    return tuple(np.array(g) for g in per_tape)


__all__ = ["jacobian", "value_and_jacobian", "vjp"]
