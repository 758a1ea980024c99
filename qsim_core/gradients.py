"""Gradients that need only expectation values: parameter-shift and SPSA.

Both work through an *estimator*: any function ``estimate(circuit, rows)``
returning expectation values ``float64[N, K]`` for parameter rows
``float64[N, P]``. The simulator's exact values, its shot estimates, and
counts from any executor (a QPU, IonQ's cloud: see
:func:`qsim_core.measurement.expectations_from_counts`) all fit, so a gradient
that a remote device can compute is computed here the same way. Every shifted
or perturbed circuit of a batch goes to the estimator in one call.

Adjoint differentiation, which needs the state itself, lives in the
backends (:meth:`qsim_core.Simulator.gradient` with ``method="adjoint"``).

Public (``__all__``): :data:`Estimator`, :func:`parameter_shift`, :func:`spsa`,
and :func:`shift_plan` with its :class:`ShiftPlan` (how many shifted circuits
a gradient costs, and which).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .circuit import Circuit, Param, is_symbolic
from .derivatives import shift_rule

Estimator = Callable[[Circuit, np.ndarray], np.ndarray]
"""``estimate(circuit, rows[N, P]) -> values[N, K]``: expectation values for each parameter row."""


@dataclass(frozen=True)
class ShiftPlan:
    """A circuit rewritten so that every parameter use can be shifted on its own.

    Attributes:
        expanded: the circuit with use u's reference replaced by ``Param(u)``
            (constants untouched); its parameter vector holds use values.
        linear: float64[U, P]; use values are ``theta @ linear.T + offset``.
        offset: float64[U].
        rows: float64[M, U]; the shifts of every rule, one row per shifted circuit.
        coefficients: float64[M, U]; ``d f/d x_u = sum_m coefficients[m, u] f(x + rows[m])``.
    """

    expanded: Circuit
    linear: np.ndarray
    offset: np.ndarray
    rows: np.ndarray
    coefficients: np.ndarray


def shift_plan(circuit: Circuit) -> ShiftPlan:
    """The :class:`ShiftPlan` of ``circuit`` (cached on it)."""
    plan = circuit.memo.get("shift-plan")
    if plan is not None:
        return plan
    expanded = Circuit(circuit.num_qubits)
    linear_rows, offsets, rules = [], [], []
    for op in circuit:
        slots = list(op.params)
        for slot, value in enumerate(op.params):
            if not is_symbolic(value):
                continue
            row = np.zeros(circuit.num_params)
            for index, scale in value.terms:
                row[index] += scale
            slots[slot] = Param(len(linear_rows))
            linear_rows.append(row)
            offsets.append(value.offset)
            rules.append(shift_rule(*op.gate.spectra[slot]))
        expanded.append(op.name, op.qubits, slots)
    uses = len(linear_rows)
    total = sum(len(shifts) for shifts, _ in rules)
    rows = np.zeros((total, uses))
    coefficients = np.zeros((total, uses))
    m = 0
    for u, (shifts, weights) in enumerate(rules):
        rows[m:m + len(shifts), u] = shifts
        coefficients[m:m + len(shifts), u] = weights
        m += len(shifts)
    linear = np.array(linear_rows).reshape(uses, circuit.num_params)
    plan = ShiftPlan(expanded, linear, np.array(offsets), rows, coefficients)
    circuit.memo["shift-plan"] = plan
    return plan


def parameter_shift(estimate: Estimator, circuit: Circuit, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and gradients by the exact shift rules of the gate table, in one estimator call.

    Each parameter use is shifted separately (a parameter shared by several
    gates, or scaled, is handled by the chain rule), so the estimator sees
    ``B * (1 + sum_u 2 R_u)`` parameter rows: the unshifted one, then every shift.

    Args:
        estimate: see :data:`Estimator`; shot noise in it carries into the gradient
            unbiased (each term is an independent estimate).
        circuit: the circuit.
        params: float64[B, P].

    Returns:
        ``(values, gradient)``: float64[B, K] and float64[B, K, P].
    """
    plan = shift_plan(circuit)
    batch, uses = params.shape[0], plan.linear.shape[0]
    base = params @ plan.linear.T + plan.offset  # [B, U]
    shifted = base[:, np.newaxis, :] + np.concatenate([np.zeros((1, uses)), plan.rows])[np.newaxis]
    values = np.asarray(estimate(plan.expanded, shifted.reshape(batch * (1 + len(plan.rows)), uses)))
    values = values.reshape(batch, 1 + len(plan.rows), -1)
    per_use = np.einsum("bmk,mu->bku", values[:, 1:], plan.coefficients)
    return values[:, 0], per_use @ plan.linear


def spsa(estimate: Estimator, circuit: Circuit, params: np.ndarray, perturbation: float, samples: int,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous-perturbation gradient estimates (Spall 1992), in one estimator call.

    For each of ``samples`` random sign vectors ``delta`` (entries +-1), the
    estimate is ``(f(theta + c delta) - f(theta - c delta)) / (2 c) * delta``;
    the result averages them. It is biased by O(c^2) and noisy, but costs two
    circuits per sample whatever the number of parameters.

    Args:
        estimate: see :data:`Estimator`.
        circuit: the circuit.
        params: float64[B, P].
        perturbation: c, in the parameters' units (> 0).
        samples: number of perturbation draws averaged (>= 1).
        rng: source of the signs (seeded by the caller).

    Returns:
        ``(values, gradient)``: float64[B, K] and float64[B, K, P].
    """
    batch, width = params.shape
    delta = rng.choice(np.array([-1.0, 1.0]), size=(batch, samples, width))
    rows = np.concatenate([params[:, np.newaxis], params[:, np.newaxis] + perturbation * delta,
                           params[:, np.newaxis] - perturbation * delta], axis=1)
    values = np.asarray(estimate(circuit, rows.reshape(batch * (1 + 2 * samples), width)))
    values = values.reshape(batch, 1 + 2 * samples, -1)
    difference = (values[:, 1:1 + samples] - values[:, 1 + samples:]) / (2 * perturbation)  # [B, S, K]
    return values[:, 0], np.einsum("bsk,bsp->bkp", difference, delta) / samples


__all__ = ["Estimator", "ShiftPlan", "parameter_shift", "shift_plan", "spsa"]
