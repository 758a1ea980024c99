"""Pauli frames: where a Pauli error that follows a gate ends up, so trajectories share simulations.

A Pauli error E just after some gate can be moved forward, up to a global
phase (irrelevant to a trajectory's probabilities):

* through a Clifford gate C: ``C E = (C E C^dagger) C``, and ``C E C^dagger`` is again a Pauli;
* through a gate it commutes with for every parameter value (Z through a
  diagonal gate, the generator's own Pauli through a one-qubit rotation);
* past gates on other qubits;
* through a rotation ``R(a) = exp(-i a P / 2)`` with a run-time parameter that it
  anticommutes with, negating the angle: ``E R(a) = R(-a) E``. The slot
  circuit gives every parameter use its own entry (as the parameter-shift
  plan of :mod:`qsim_core.gradients` does), so a negated angle is a parameter row.

Only at a non-Clifford gate that it does not commute with must (that part of)
the error stay, in a *slot* just before the gate. What reaches the end of the
circuit flips measured bits (its X part) and does nothing else. Once only
gates with one non-zero per row and column are left (diagonal gates, CNOTs,
GPi, ...), phases no longer matter to the measured distribution, so an error
passes any such gate freely (``G E = E (E^dagger G E)``, and for these gates
``E^dagger G E`` is G times a diagonal phase). Phases
aside, all of this is linear over GF(2) in the error's (x, z) bits, so each
error's effect is precomputed once per circuit as a bit vector
(:class:`FramePlan`) and a shot's effect is the XOR of its errors' vectors.
Whether a gate is Clifford, and how it maps Paulis, is computed from the gate
table's matrices; a gate with a run-time parameter is never treated as Clifford.

Pauli codes on a gate's k qubits (argument order): bit ``2 t`` is the X bit and
bit ``2 t + 1`` the Z bit of argument t, so codes ``1 .. 4**k - 1`` are the non-identity Paulis.

Public (``__all__``): :class:`FramePlan`, :func:`frame_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..circuit import Circuit, Operation, Param, is_symbolic
from ..gates import GATES, PAULI
from ..gradients import shift_plan
from .model import NoiseModel

_X, _Z = PAULI["X"], PAULI["Z"]
#: the part of an X and of a Z error that passes a constant rotation about each axis: the part along the
#: axis (about Y: Z is Y X up to phase, so Y passes and X stays)
_ROTATION_PASSING = {"X": (1, 0), "Z": (0, 2), "Y": (0, 3)}


def _pauli(code: int, k: int) -> np.ndarray:
    """The Pauli of ``code`` on k qubits (first argument most significant), up to phase."""
    out = np.ones((1, 1), np.complex128)
    for t in range(k):
        factor = np.eye(2, dtype=np.complex128)
        if code >> (2 * t) & 1:
            factor = factor @ _X
        if code >> (2 * t + 1) & 1:
            factor = factor @ _Z
        out = np.kron(out, factor)
    return out


def _code_of(matrix: np.ndarray, k: int) -> int | None:
    """The code of the Pauli ``matrix`` is proportional to, or None if it is not one."""
    for code in range(4 ** k):
        overlap = abs(np.trace(_pauli(code, k).conj().T @ matrix)) / 2 ** k
        if abs(overlap - 1) < 1e-9:
            return code
    return None


@lru_cache(maxsize=1024)
def _clifford_images(name: str, params: tuple[float, ...]) -> tuple[int, ...] | None:
    """Codes of ``U G U^dagger`` for the generators G = X, Z of each argument, or None if U is not Clifford."""
    spec = GATES[name]
    matrix = np.asarray(spec.matrix(*params))
    images = []
    for bit in range(2 * spec.num_qubits):
        code = _code_of(matrix @ _pauli(1 << bit, spec.num_qubits) @ matrix.conj().T, spec.num_qubits)
        if code is None:
            return None
        images.append(code)
    return tuple(images)


def _passing_images(op: Operation) -> tuple[int, ...]:
    """For a non-Clifford gate: the part of each generator's error that commutes with it for every parameter."""
    spec = op.gate
    k = spec.num_qubits
    if spec.diagonal:  # Z commutes with diagonal gates; X does not pass
        return tuple(0 if bit % 2 == 0 else 1 << bit for bit in range(2 * k))
    if len(spec.generator) == 1:  # exp(-i a P / 2) commutes with P: keep each generator's P part
        return _ROTATION_PASSING[spec.generator]
    return (0,) * (2 * k)


def _anticommuting(codes: np.ndarray, generator: str) -> np.ndarray:
    """uint8[V]: 1 where the error (codes on the gate's qubits) anticommutes with the Pauli string ``generator``."""
    swapped = 0  # the generator's code with X and Z bits exchanged: the symplectic form is a parity with it
    for t, letter in enumerate(generator):
        swapped |= (letter in "YZ") << (2 * t) | (letter in "XY") << (2 * t + 1)
    return (np.bitwise_count(codes & swapped) & 1).astype(np.uint8)


def _apply_images(codes: np.ndarray, images: tuple[int, ...]) -> np.ndarray:
    out = np.zeros_like(codes)
    for bit, image in enumerate(images):
        out ^= ((codes >> bit) & 1) * image
    return out


@dataclass(frozen=True)
class FramePlan:
    """Every possible error of a circuit under a model, and where it ends up.

    Attributes:
        probability: float64[L]; per noise location (one per written gate), the
            probability that a non-identity Pauli follows it.
        arity: int64[L]; the gate's qubit count (codes ``1 .. 4**arity - 1`` are equally likely).
        combo_start: int64[L]; location l's code c is row ``combo_start[l] + c - 1`` of the tables.
        slot_words: uint64[C, W]; per (location, code), the slot bits it sets, packed
            little-endian: slot j's X bit at bit 2j, Z bit at 2j + 1, then one bit per
            flippable use (its angle negated).
        final_x: int64[C]; the measured bits it flips.
        slot_circuit: the circuit with parameter use u as ``Param(u)`` and ``rz(Param),
            ry(Param)`` before every gate with a reachable slot, on that slot's qubit,
            then the tail; slot j's angles are parameters ``uses + 2 j`` (rz) and ``+ 2 j + 1`` (ry).
        num_slots: number of slots (reachable ones only).
        flip_uses: int64[F]; the use whose angle each flip bit negates.
        linear, offset: use values are ``params @ linear.T + offset`` (float64[U, P], [U]).
        column_position: int64[2 * num_slots + F]; the written operation each pattern bit acts at.
        split: patterns whose first bit acts at or after this operation start from the error-free
            state there (0: no split); chosen where it saves the most work for the likeliest patterns.
        prefix: the written circuit's operations before ``split`` (its own parameters).
        suffix: the slot circuit from ``split`` on (rows of the slot circuit, cut to its ``num_params``).
    """

    probability: np.ndarray
    arity: np.ndarray
    combo_start: np.ndarray
    slot_words: np.ndarray
    final_x: np.ndarray
    slot_circuit: Circuit
    num_slots: int
    flip_uses: np.ndarray
    linear: np.ndarray
    offset: np.ndarray
    column_position: np.ndarray
    split: int
    prefix: Circuit
    suffix: Circuit

    def first_positions(self, words: np.ndarray) -> np.ndarray:
        """int64[D]: the first written operation each pattern ``words[D, W]`` acts at."""
        bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :len(self.column_position)]
        return np.where(bits == 1, self.column_position, np.iinfo(np.int64).max).min(axis=1)

    def slot_rows(self, params: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Rows of the slot circuit for parameter sets ``params[D, P]`` and patterns ``words[D, W]``."""
        bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
        x, z = bits[:, 0:2 * self.num_slots:2], bits[:, 1:2 * self.num_slots:2]
        uses = params @ self.linear.T + self.offset
        flips = bits[:, 2 * self.num_slots:2 * self.num_slots + len(self.flip_uses)]
        uses[:, self.flip_uses] *= 1.0 - 2.0 * flips
        angles = np.empty((len(words), 2 * self.num_slots))
        angles[:, 0::2] = np.pi * (x ^ z)  # RY(pi x) RZ(pi (x ^ z)) is X^x Z^z up to phase
        angles[:, 1::2] = np.pi * x
        return np.hstack([uses, angles])


def _is_clifford(op: Operation) -> tuple[int, ...] | None:
    if any(is_symbolic(p) for p in op.params):
        return None
    return _clifford_images(op.name, tuple(op.params))


def frame_plan(circuit: Circuit, model: NoiseModel, tail: tuple[Operation, ...] = ()) -> FramePlan:
    """The :class:`FramePlan` of ``circuit`` followed by the noiseless ``tail`` (cached on the circuit)."""
    key = ("noise-frames", model.r1q, model.r2q, tail)
    if key in circuit.memo:
        return circuit.memo[key]
    ops = circuit.operations + tail
    written = len(circuit)
    arity = np.array([op.gate.num_qubits for op in circuit], np.int64)
    vectors = int(2 * arity.sum())
    x = np.zeros(vectors, np.int64)
    z = np.zeros(vectors, np.int64)
    slot_of: list[tuple[int, int]] = []  # (operation position, qubit) per slot candidate
    deposits: list[np.ndarray] = []  # per slot candidate: uint8[V] codes (X bit 1, Z bit 2)
    flips: list[tuple[int, np.ndarray]] = []  # (position, uint8[V] anticommutation bits), one per use
    born = 0
    free_from = len(ops)  # from here on every gate is monomial: phases cannot reach the measured distribution
    while free_from and ops[free_from - 1].gate.monomial:
        free_from -= 1
    for position, op in enumerate(ops):
        codes = np.zeros(vectors, np.int64)
        for t, q in enumerate(op.qubits):
            codes |= ((x >> q) & 1) << (2 * t) | ((z >> q) & 1) << (2 * t + 1)
        images = _is_clifford(op)
        if images is not None:
            new = _apply_images(codes, images)
        elif position >= free_from:
            new = codes
        elif op.gate.generator and is_symbolic(op.params[0]):
            new = codes
            flips.append((position, _anticommuting(codes, op.gate.generator)))
        else:
            new = _apply_images(codes, _passing_images(op))
            stopped = codes ^ new
            for t, q in enumerate(op.qubits):
                slot_of.append((position, q))
                deposits.append(((stopped >> (2 * t)) & 3).astype(np.uint8))
        for t, q in enumerate(op.qubits):
            bit = np.int64(1) << q
            x = (x & ~bit) | ((new >> (2 * t)) & 1) << q
            z = (z & ~bit) | ((new >> (2 * t + 1)) & 1) << q
        if position < written:
            for q in op.qubits:
                x[born] |= np.int64(1) << q
                z[born + 1] |= np.int64(1) << q
                born += 2
    reachable = [j for j, d in enumerate(deposits) if d.any()]
    flip_uses = [use for use, (_, bits) in zip(_uses_of(flips, circuit), flips, strict=True) if bits.any()]
    flips = [(position, bits) for position, bits in flips if bits.any()]
    slot_bits = np.zeros((vectors, 2 * len(reachable) + len(flips)), np.uint8)
    for column, j in enumerate(reachable):
        slot_bits[:, 2 * column] = deposits[j] & 1
        slot_bits[:, 2 * column + 1] = deposits[j] >> 1
    for column, (_, bits) in enumerate(flips):
        slot_bits[:, 2 * len(reachable) + column] = bits
    # row of every (location, code): the XOR of the generator vectors its bits select
    combo_start = np.concatenate([[0], np.cumsum(4 ** arity - 1)[:-1]]).astype(np.int64)
    first_vector = np.concatenate([[0], np.cumsum(2 * arity)[:-1]]).astype(np.int64)
    location = np.repeat(np.arange(len(arity)), 4 ** arity - 1)
    code = np.arange(len(location)) - combo_start[location] + 1
    combo_bits = np.zeros((len(location), slot_bits.shape[1]), np.uint8)
    final_x = np.zeros(len(location), np.int64)
    for bit in range(4):
        chosen = np.flatnonzero((code >> bit) & 1)
        combo_bits[chosen] ^= slot_bits[first_vector[location[chosen]] + bit]
        final_x[chosen] ^= x[first_vector[location[chosen]] + bit]
    words = max(1, -(-combo_bits.shape[1] // 64))
    packed = np.packbits(combo_bits, axis=1, bitorder="little")
    padded = np.zeros((len(location), 8 * words), np.uint8)
    padded[:, :packed.shape[1]] = packed
    probability = np.array([model.error_probability(int(k)) for k in arity])
    shifts = shift_plan(circuit)
    slot_circuit, starts = _slot_circuit(shifts.expanded, tail, [slot_of[j] for j in reachable])
    column_position = np.array([slot_of[j][0] for j in reachable for _ in range(2)] + [p for p, _ in flips],
                               np.int64)
    weight = np.repeat(probability / (4 ** arity - 1), 4 ** arity - 1)
    split = _best_split(combo_bits, column_position, weight, len(ops))
    prefix = Circuit(circuit.num_qubits)
    for op in circuit.operations[:split]:
        prefix.append(op.name, op.qubits, op.params)
    suffix = Circuit(circuit.num_qubits)
    for op in slot_circuit.operations[starts[split]:]:
        suffix.append(op.name, op.qubits, op.params)
    plan = FramePlan(probability, arity, combo_start, padded.view(np.uint64), final_x, slot_circuit, len(reachable),
                     np.array(flip_uses, np.int64), shifts.linear, shifts.offset, column_position,
                     split, prefix, suffix)
    circuit.memo[key] = plan
    return plan


def _uses_of(flips: list[tuple[int, np.ndarray]], circuit: Circuit) -> list[int]:
    """The use number (see :func:`qsim_core.gradients.shift_plan`) of each flip's rotation."""
    first_use = np.cumsum([0] + [sum(is_symbolic(p) for p in op.params) for op in circuit])
    return [int(first_use[position]) for position, _ in flips]


def _best_split(combo_bits: np.ndarray, column_position: np.ndarray, weight: np.ndarray, length: int) -> int:
    """Where to start patterns from a shared error-free state: the operation k that maximises k times
    the share of (single-error) patterns acting at k or later; 0 when that saves under a quarter."""
    if not combo_bits.shape[1]:
        return 0
    first = np.where(combo_bits == 1, column_position, length).min(axis=1)
    acting = first < length
    if not acting.any():
        return 0
    candidates = np.unique(first[acting])
    share = np.array([weight[acting & (first >= k)].sum() for k in candidates]) / weight[acting].sum()
    best = int(np.argmax(candidates * share))
    return int(candidates[best]) if candidates[best] * share[best] >= 0.25 * length else 0


def _slot_circuit(circuit: Circuit, tail: tuple[Operation, ...], slots: list[tuple[int, int]]
                  ) -> tuple[Circuit, list[int]]:
    """The slot circuit, and where each written operation's slot gates start in it."""
    out = Circuit(circuit.num_qubits)
    starts = []
    base = circuit.num_params
    at: dict[int, list[tuple[int, int]]] = {}
    for j, (position, q) in enumerate(slots):
        at.setdefault(position, []).append((j, q))
    for position, op in enumerate(circuit.operations + tail):
        starts.append(len(out))
        for j, q in at.get(position, ()):
            out.rz(q, Param(base + 2 * j))
            out.ry(q, Param(base + 2 * j + 1))
        out.append(op.name, op.qubits, op.params)
    return out, starts + [len(out)]


__all__ = ["FramePlan", "frame_plan"]
