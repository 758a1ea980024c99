"""Derivatives of the gate table's gates, and the bookkeeping adjoint differentiation needs.

Everything here follows from one fact the gate table records per parameter
(:attr:`~qsim_core.gates.Gate.spectra`): as a function of one gate parameter
``x``, an expectation value is a trigonometric polynomial with frequencies
``omega, 2 omega, ..., R omega`` (rotation gates: ``omega = 1`` rad/rad,
``R = 1``; GPi2 and the MS phases ``R = 2``). Hence

* the exact parameter-shift rule (:func:`shift_rule`, Wierichs et al. 2022,
  equidistant frequencies), which needs only expectation values and so works
  on any executor, a QPU included;
* the exact derivative of the gate matrix (:func:`derivative_matrix`): each
  entry has the single frequency ``omega R / 2``, so two matrix evaluations a
  half-period apart give it with no truncation error.

A *use* is one gate slot that holds a parameter reference (:class:`Param` or
:class:`ParamSum`). Adjoint kernels and shift rules differentiate per use;
the chain rule to the parameter vector is the matrix ``jacobian[use, k]``
(the reference's scale on ``theta[k]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compiler import Program
from .gates import GATES, Gate


def shift_rule(omega: float, terms: int) -> tuple[np.ndarray, np.ndarray]:
    """Shifts and coefficients of the exact parameter-shift rule.

    For ``f(x) = a_0 + sum_{r=1..R} a_r cos(r omega x) + b_r sin(r omega x)``,
    ``f'(x) = sum_mu coefficients[mu] * f(x + shifts[mu])``.

    Args:
        omega: base frequency (rad per unit of x).
        terms: R, the number of frequencies.

    Returns:
        ``(shifts, coefficients)``, float64[2R] each; shifts in units of x.
        R = 1 gives the familiar ``omega/2 * (f(x + pi/(2 omega)) - f(x - pi/(2 omega)))``.
    """
    mu = np.arange(1, 2 * terms + 1)
    angle = (2 * mu - 1) * np.pi / (2 * terms)
    coefficients = omega * (-1.0) ** (mu - 1) / (4 * terms * np.sin(angle / 2) ** 2)
    angle = np.where(angle > np.pi, angle - 2 * np.pi, angle)  # the same points, written symmetric about x
    return angle / omega, coefficients


def derivative_matrix(spec: Gate, slot: int, values: list[np.ndarray]) -> np.ndarray:
    """``dU/dx`` of gate ``spec`` in its parameter ``slot``, exactly.

    Args:
        spec: the gate-table entry.
        slot: which parameter.
        values: every parameter's value in the gate's unit (arrays broadcast together).

    Returns:
        complex128 ``broadcast shape + (d, d)``, per unit of the parameter.
    """
    omega, terms = spec.spectra[slot]
    frequency = omega * terms / 2
    half = np.pi / (2 * frequency)
    plus, minus = list(values), list(values)
    plus[slot] = values[slot] + half
    minus[slot] = values[slot] - half
    return (frequency / 2) * (spec.matrix(*plus) - spec.matrix(*minus))


@dataclass(frozen=True)
class _Uses:
    """The uses of one parameter slot within one gate group of a program."""

    group: int  # position in the program's u1_groups / u2_groups
    slot: int
    members: np.ndarray  # int64: member positions within the group holding a reference
    ids: np.ndarray  # int64: their use numbers (rows of the derivative arrays)
    rotation: bool  # a rotation gate: the kernels form its derivative from its bound matrix


@dataclass(frozen=True)
class AdjointPlan:
    """Per-program data for adjoint differentiation.

    Attributes:
        program: the compiled program (single block).
        u1_use_start: int64[G1 + 1]; single-qubit gate g's uses are
            ``u1_use_start[g]:u1_use_start[g+1]``.
        u2_use_start: int64[G2 + 1]; the same for two-qubit gates (numbered from 0;
            their gradient columns follow the U1 single-qubit uses).
        jacobian: float64[U1 + U2, P]; d(use value)/d(theta_k), in the unit the
            derivative matrices use (radians for rotations, else the gate's unit).
        chain_start, chain_param, chain_scale: ``jacobian``'s non-zeros by use (compressed rows): use u's
            are ``chain_param[chain_start[u]:chain_start[u + 1]]`` (int64) with ``chain_scale`` (float64);
            a use is usually one parameter's, so the chain rule is a few products per use, not a dense product.
        inverse_table: int64[...]; the inverses of ``program.perm_table``'s tables,
            same ``perm_start`` slices.
        slope1, slope2: complex128 ``[U1, 2, 2]``, ``[U2, 4, 4]``: for a rotation use,
            ``-i P / 2`` (P its generator), so that ``dR(a)/da = R(a) slope`` forms in
            the kernel from the bound gate; zero for other uses.
        rotation1, rotation2: uint8 ``[U1]``, ``[U2]``: 1 for the uses that are rotations.
    """

    program: Program
    u1_use_start: np.ndarray
    u2_use_start: np.ndarray
    u1_uses: tuple[_Uses, ...]
    u2_uses: tuple[_Uses, ...]
    jacobian: np.ndarray
    chain_start: np.ndarray
    chain_param: np.ndarray
    chain_scale: np.ndarray
    inverse_table: np.ndarray
    slope1: np.ndarray
    rotation1: np.ndarray
    slope2: np.ndarray
    rotation2: np.ndarray

    def derivatives(self, params: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Derivative matrices of every non-rotation use: ``du1[B, U1, 2, 2]``, ``du2[B, U2, 4, 4]``.

        The rows of rotation uses are left unset: the kernels do not read them.
        """
        return (self._fill(self.program.u1_groups, self.u1_uses, params, 2, dtype),
                self._fill(self.program.u2_groups, self.u2_uses, params, 4, dtype))

    def _fill(self, groups, uses: tuple[_Uses, ...], params: np.ndarray, dim: int, dtype) -> np.ndarray:
        count = sum(len(u.ids) for u in uses)
        out = np.empty((params.shape[0], count, dim, dim), dtype)
        values: dict[int, list[np.ndarray]] = {}
        for use in uses:
            if use.rotation:
                continue
            group = groups[use.group]
            if use.group not in values:
                values[use.group] = group.values(params)
            slot_values = [v[:, use.members] for v in values[use.group]]
            out[:, use.ids] = derivative_matrix(GATES[group.name], use.slot, slot_values)
        return out


def _number_uses(groups) -> tuple[np.ndarray, tuple[_Uses, ...], list[tuple[int, np.ndarray, np.ndarray]]]:
    """Use numbering in gate order; returns (use_start, uses by group/slot, (use, columns, scales) rows)."""
    count = groups[-1].stop if groups else 0
    per_gate = np.zeros(count, np.int64)
    for group in groups:
        symbolic = (group.scale != 0).any(axis=2)  # [slots, members]
        per_gate[group.start:group.stop] = symbolic.sum(axis=0)
    use_start = np.concatenate([[0], np.cumsum(per_gate)]).astype(np.int64)
    uses, rows = [], []
    for position, group in enumerate(groups):
        symbolic = (group.scale != 0).any(axis=2)
        rank = np.cumsum(symbolic, axis=0) - 1  # a slot's position among its gate's symbolic slots
        for slot in range(symbolic.shape[0]):
            members = np.flatnonzero(symbolic[slot])
            if not members.size:
                continue
            ids = use_start[group.start + members] + rank[slot, members]
            uses.append(_Uses(position, slot, members, ids, group.generator is not None))
            for member, use in zip(members, ids, strict=True):
                rows.append((int(use), group.index[slot, member], group.scale[slot, member]))
    return use_start, tuple(uses), rows


def adjoint_plan(program: Program) -> AdjointPlan:
    """Build the :class:`AdjointPlan` of a single-block program."""
    u1_use_start, u1_uses, u1_rows = _number_uses(program.u1_groups)
    u2_use_start, u2_uses, u2_rows = _number_uses(program.u2_groups)
    offset = int(u1_use_start[-1])
    jacobian = np.zeros((offset + int(u2_use_start[-1]), program.num_params))
    for shift, rows in ((0, u1_rows), (offset, u2_rows)):
        for use, columns, scales in rows:
            np.add.at(jacobian[shift + use], columns, scales)
    inverse = np.empty_like(program.perm_table)
    for t in range(len(program.perm_start) - 1):
        start, stop = program.perm_start[t], program.perm_start[t + 1]
        inverse[start + program.perm_table[start:stop]] = np.arange(stop - start)
    slopes = [_slopes(groups, uses, int(start[-1]), dim) for groups, uses, start, dim in
              ((program.u1_groups, u1_uses, u1_use_start, 2), (program.u2_groups, u2_uses, u2_use_start, 4))]
    uses, params = np.nonzero(jacobian)  # row-major: by use, then parameter
    chain_start = np.searchsorted(uses, np.arange(jacobian.shape[0] + 1)).astype(np.int64)
    return AdjointPlan(program, u1_use_start, u2_use_start, u1_uses, u2_uses, jacobian, chain_start,
                       params.astype(np.int64), jacobian[uses, params], inverse, *slopes[0], *slopes[1])


def _slopes(groups, uses: tuple[_Uses, ...], count: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``-i P / 2`` per rotation use (zero otherwise) and the rotation flags."""
    slope = np.zeros((count, dim, dim), np.complex128)
    rotation = np.zeros(count, np.uint8)
    for use in uses:
        if use.rotation:
            slope[use.ids] = -0.5j * groups[use.group].generator
            rotation[use.ids] = True
    return slope, rotation
