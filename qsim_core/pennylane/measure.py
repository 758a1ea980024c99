"""Measurements of translated tapes: what the engine computes itself, and what PennyLane finishes.

Analytic expectations of observables with a Pauli representation (Pauli
words, their sums and products, ``Hamiltonian``/``LinearCombination``) are one
engine call over the distinct Pauli words, combined linearly; probabilities
come from the engine's probabilities. Any other measurement (``var``,
``state``, ``Hermitian``, ``Projector``, ``density_matrix``, ...) and every
shot-based one is computed from the engine's final state by PennyLane's own
measurement functions (:func:`pennylane.devices.qubit.measure_final_state`),
so they follow PennyLane's conventions exactly, shot vectors and broadcasting
included.

With shots, measurements in the computational basis or in the eigenbasis of
one Pauli word (``sample``, ``counts``, ``probs``, ``expval``, ``var``) are
sampled by the engine: the circuit plus the observable's diagonalising gates
(one engine circuit per distinct set of them), every broadcast row and shot in
one call with the engine's seeded per-row streams; PennyLane's
``process_samples`` turns the samples into each result. Other shot-based
measurements (``Hermitian``, sums measured term by term) sample the engine's
final state with PennyLane's routines and the device's seeded numpy generator.

Public (``__all__``): :class:`PauliTable`, :func:`pauli_table`, :func:`measure_tape`, :func:`final_state`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pennylane as qml
from pennylane.devices.qubit import measure_final_state
from pennylane.measurements import ExpectationMP, MeasurementProcess, ProbabilityMP, SampleMeasurement
from pennylane.operation import Operator
from pennylane.tape import QuantumScript

from ..simulator import Simulator
from .translate import Translation, pauli_word, supports_operation, translate


@dataclass(frozen=True)
class PauliTable:
    """Observables as linear combinations of engine Pauli strings.

    Attributes:
        words: the distinct engine Pauli strings, K of them.
        coefficients: float64 ``[M, K]``: observable m is ``sum_k coefficients[m, k] words[k]``.
    """

    words: tuple[str, ...]
    coefficients: np.ndarray


def _sentence(obs: Operator | None, decompose_matrices: bool) -> qml.pauli.PauliSentence | None:
    if obs is None:
        return None
    if obs.pauli_rep is not None:
        return obs.pauli_rep
    if decompose_matrices and obs.has_matrix:
        return qml.pauli_decompose(obs.matrix(), wire_order=obs.wires, pauli=True)
    return None


def pauli_table(observables: list[Operator | None], num_wires: int, decompose_matrices: bool = False
                ) -> PauliTable | None:
    """The observables as Pauli sums, or None if one has no Pauli form.

    Args:
        observables: observables on wires 0..num_wires-1.
        num_wires: the register size.
        decompose_matrices: also expand observables known only by their matrix
            (``Hermitian``) with :func:`pennylane.pauli_decompose` (4**k terms on k wires).
    """
    sentences = [_sentence(obs, decompose_matrices) for obs in observables]
    if any(sentence is None for sentence in sentences):
        return None
    columns: dict[str, int] = {}
    entries = []
    for m, sentence in enumerate(sentences):
        for word, coefficient in sentence.items():
            k = columns.setdefault(pauli_word(word, num_wires), len(columns))
            entries.append((m, k, float(np.real(coefficient))))
    coefficients = np.zeros((len(sentences), max(len(columns), 1)))
    for m, k, value in entries:
        coefficients[m, k] += value
    return PauliTable(tuple(columns) or ("",), coefficients)


def final_state(translation: Translation, simulator: Simulator) -> np.ndarray:
    """The final state, complex ``[B, 2**n]``, global phase included."""
    t = translation
    state = simulator.statevector(t.circuit, t.params, initial_state=t.initial_state)
    return state * t.phase[:, np.newaxis].astype(state.dtype)


def _marginal(probabilities: np.ndarray, wires: list[int], num_wires: int) -> np.ndarray:
    """Marginal probabilities ``[B, 2**len(wires)]`` of ``wires`` (in that order) from ``[B, 2**n]``."""
    rows = probabilities.shape[0]
    tensor = probabilities.reshape((rows,) + (2,) * num_wires)
    dropped = tuple(1 + w for w in range(num_wires) if w not in wires)
    kept = sorted(wires)
    tensor = tensor.sum(axis=dropped) if dropped else tensor
    order = [0] + [1 + kept.index(w) for w in wires]
    return tensor.transpose(order).reshape(rows, -1)


def _engine_expval(mp: MeasurementProcess) -> bool:
    return isinstance(mp, ExpectationMP) and mp.mv is None and mp.obs is not None and mp.obs.pauli_rep is not None


def _engine_probs(mp: MeasurementProcess) -> bool:
    return isinstance(mp, ProbabilityMP) and mp.mv is None and mp.obs is None


def measure_tape(tape: QuantumScript, num_wires: int, simulator: Simulator, rng: np.random.Generator):
    """Run ``tape`` (wires 0..num_wires-1, supported operations only) and return its results.

    The result has PennyLane's shape: one entry per measurement (unwrapped for
    one measurement), per shot-vector entry, each with a leading broadcast axis
    when the tape broadcasts.
    """
    measurements = tape.measurements
    if tape.shots and all(_engine_samples(mp) for mp in measurements):
        return _sampled(tape, num_wires, simulator)
    t = translate(tape, num_wires)
    batched = t.batch is not None
    if tape.shots or not all(_engine_expval(mp) or _engine_probs(mp) for mp in measurements):
        return _pennylane_measure(tape, t, num_wires, simulator, rng)
    expvals = [mp for mp in measurements if isinstance(mp, ExpectationMP)]
    values = None
    if expvals:
        table = pauli_table([mp.obs for mp in expvals], num_wires)
        raw = simulator.expectation(t.circuit, table.words, t.params, initial_state=t.initial_state)
        values = raw @ table.coefficients.T
    probabilities = None
    if len(expvals) < len(measurements):
        probabilities = simulator.probabilities(t.circuit, t.params, initial_state=t.initial_state)
    results = []
    m = 0
    for mp in measurements:
        if isinstance(mp, ExpectationMP):
            column = values[:, m]
            m += 1
            results.append(column if batched else column[0])
        else:
            wires = [int(w) for w in mp.wires] or list(range(num_wires))
            marginal = _marginal(probabilities, wires, num_wires)
            results.append(marginal if batched else marginal[0])
    return results[0] if len(results) == 1 else tuple(results)


def _engine_samples(mp: MeasurementProcess) -> bool:
    """A sample measurement whose basis change (if any) the engine runs: no observable or one Pauli word."""
    if not isinstance(mp, SampleMeasurement) or mp.mv is not None:
        return False
    if mp.obs is None:
        return True
    if isinstance(mp.obs, qml.ops.Sum) or mp.obs.pauli_rep is None or len(mp.obs.pauli_rep) != 1:
        return False
    return all(supports_operation(gate) for gate in mp.diagonalizing_gates())


def _sampled(tape: QuantumScript, num_wires: int, simulator: Simulator):
    """Shot results from engine samples, one engine call per distinct set of diagonalising gates."""
    groups: dict[tuple, list[int]] = {}
    rotations: dict[tuple, list[Operator]] = {}
    for i, mp in enumerate(tape.measurements):
        gates = mp.diagonalizing_gates()
        key = tuple((gate.name, tuple(gate.wires), tuple(float(d) for d in gate.data)) for gate in gates)
        groups.setdefault(key, []).append(i)
        rotations[key] = gates
    shots = tape.shots
    wires = qml.wires.Wires(range(num_wires))
    per_bin: list[list] = [[None] * len(tape.measurements) for _ in shots.bins()]
    for key, members in groups.items():
        t = translate(QuantumScript(tape.operations + rotations[key]), num_wires)
        indices = simulator.sample(t.circuit, shots.total_shots, t.params, initial_state=t.initial_state)
        bits = (indices[..., np.newaxis] >> np.arange(num_wires - 1, -1, -1)) & 1
        samples = bits if t.batch is not None else bits[0]
        for b, (lower, upper) in enumerate(shots.bins()):
            for i in members:
                per_bin[b][i] = tape.measurements[i].process_samples(samples[..., lower:upper, :], wires)
    results = [row[0] if len(row) == 1 else tuple(row) for row in per_bin]
    return tuple(results) if shots.has_partitioned_shots else results[0]


def _pennylane_measure(tape: QuantumScript, t: Translation, num_wires: int, simulator: Simulator,
                       rng: np.random.Generator):
    batched = t.batch is not None
    state = final_state(t, simulator).astype(np.complex128)
    tensor = state.reshape(((state.shape[0],) if batched else ()) + (2,) * num_wires)
    return measure_final_state(tape, tensor, batched, rng=rng)


__all__ = ["PauliTable", "final_state", "measure_tape", "pauli_table"]
