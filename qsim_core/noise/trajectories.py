"""Noisy shots by quantum trajectories: Pauli errors drawn per shot, simulations shared.

For every shot of every parameter set, each gate's depolarizing channel
either does nothing or applies one of its non-identity Paulis (probability
``(1 - 4**-k) r`` in total, uniform among the ``4**k - 1``). Such a trajectory
is the written circuit with Paulis inserted, and by :mod:`qsim_core.noise.frames`
it needs a simulation only if some error reaches a *slot* (stops in front of a
non-Clifford gate); otherwise it is the error-free state with measured bits flipped.
So one call

1. draws the errors of all ``B * shots`` shots at once (per location a binomial
   count, then that many distinct shots),
2. XORs each shot's precomputed error vectors into its slot pattern and flip mask,
3. samples the error-free circuit for all B sets (one batched engine call; a
   shot with no slot error uses its own position's draw),
4. simulates every *distinct* (set, slot pattern) once, as rows of (at most
   two) batched engine calls on the slot circuit (slot angles 0 or pi), drawing
   exactly as many samples as shots share that pattern,
5. flips each shot's measured bits by its mask.

Every step is exact: the result has the distribution of independent noisy
shots. Seeded by the call's key, so a seed reproduces the samples.

Public (``__all__``): :func:`noisy_samples`.
"""

from __future__ import annotations

import numpy as np

from ..backends import Backend, Job
from ..circuit import Circuit, Operation
from .frames import FramePlan, frame_plan
from .model import NoiseModel

_KEY_BOUND = 1 << 63
#: largest number of shared error-free amplitudes kept at once (B * 2**n)
_SHARED_AMPLITUDES = 1 << 24


def _draw_errors(plan: FramePlan, total: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Independent errors of ``total`` shots: (shot index, combo row) per error, sorted by shot."""
    counts = rng.binomial(total, plan.probability)
    location = np.repeat(np.arange(len(counts)), counts)
    keys = _distinct(location * total + rng.integers(0, total, len(location)))
    while len(keys) < len(location):
        # a with-replacement draw's distinct shots are a uniform subset; top each location up uniformly
        missing = counts - np.bincount(keys // total, minlength=len(counts))
        extra = np.repeat(np.arange(len(counts)), missing)
        keys = _distinct(np.concatenate([keys, extra * total + rng.integers(0, total, len(extra))]))
    location, shot = keys // total, keys % total
    code = rng.integers(1, 4 ** plan.arity[location])
    order = np.argsort(shot, kind="stable")
    return shot[order], plan.combo_start[location[order]] + code[order] - 1


def _pattern_samples(backend: Backend, job: Job, plan: FramePlan, rows: np.ndarray, words: np.ndarray,
                     counts: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Simulate each distinct pattern once: [(pattern ids, int64[len(ids), shots])] per engine call.

    Patterns that act only from ``plan.split`` on start from the error-free state there (computed
    once per parameter set) and run only the rest of the circuit.
    """
    params = plan.slot_rows(job.params[rows], words)
    initial = None if job.initial is None else job.initial[rows]
    late = plan.first_positions(words) >= plan.split if _can_split(job, plan) else np.zeros(len(rows), bool)
    if late.any():
        prefix = Job(plan.prefix, np.ascontiguousarray(job.params[:, :plan.prefix.num_params]), job.dtype,
                     job.threads, job.block_qubits, job.initial)
        states = backend.statevector(prefix)
    # most patterns occur once; one engine call for those and one for the rest (drawing the largest
    # count for each, a few wasted samples) beats a call per count (binding and thread start-up each)
    buckets = 2 * late + (counts > 1)
    out = []
    for bucket in np.unique(buckets):
        ids = np.flatnonzero(buckets == bucket)
        if bucket >= 2:
            circuit, start = plan.suffix, np.ascontiguousarray(states[rows[ids]])
        else:
            circuit, start = plan.slot_circuit, None if initial is None else np.ascontiguousarray(initial[ids])
        sub = Job(circuit, np.ascontiguousarray(params[ids, :circuit.num_params]), job.dtype, job.threads,
                  job.block_qubits, start)
        out.append((ids, backend.sample(sub, int(counts[ids].max()), int(rng.integers(_KEY_BOUND)))))
    return out


def _can_split(job: Job, plan: FramePlan) -> bool:
    """Whether starting from shared states pays and fits: a split exists, the states are small enough."""
    n = job.circuit.num_qubits
    return plan.split > 0 and n <= job.block_qubits and job.batch << n <= _SHARED_AMPLITUDES


def noisy_samples(backend: Backend, job: Job, model: NoiseModel, shots: int, key: int,
                  tail: tuple[Operation, ...] = ()) -> np.ndarray:
    """``shots`` noisy measurements of every parameter set: int64[B, shots] basis indices.

    Args:
        backend: runs the engine calls.
        job: the circuit and its parameter sets (``job.circuit`` is the written circuit).
        model: the noise model (not noiseless).
        shots: shots per parameter set.
        key: 64-bit seed of everything drawn.
        tail: noiseless gates after the circuit (measurement basis changes).
    """
    plan = frame_plan(job.circuit, model, tail)
    rng = np.random.default_rng(key)
    total = job.batch * shots
    error_shot, combo = _draw_errors(plan, total, rng)
    base = job if not tail else Job(_with_tail(job, tail), job.params, job.dtype, job.threads, job.block_qubits,
                                    job.initial)
    out = backend.sample(base, shots, int(rng.integers(_KEY_BOUND))).reshape(total)
    if not len(error_shot):
        return out.reshape(job.batch, shots)
    starts = np.flatnonzero(np.r_[True, error_shot[1:] != error_shot[:-1]])
    shot = error_shot[starts]
    flips = np.bitwise_xor.reduceat(plan.final_x[combo], starts)
    words = np.bitwise_xor.reduceat(plan.slot_words[combo], starts, axis=0)
    slotted = np.flatnonzero(words.any(axis=1))
    if len(slotted):
        set_index = shot[slotted] // shots
        keyed = np.hstack([set_index[:, np.newaxis].astype(np.uint64), words[slotted]])
        distinct, pattern, counts = _unique_rows(keyed)
        order = np.argsort(pattern, kind="stable")
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        where = np.empty((len(distinct), 2), np.int64)  # (bucket, row in bucket) per pattern
        draws = _pattern_samples(backend, job, plan, distinct[:, 0].astype(np.int64), distinct[:, 1:], counts, rng)
        for bucket, (ids, _) in enumerate(draws):
            where[ids, 0] = bucket
            where[ids, 1] = np.arange(len(ids))
        for bucket, (_, samples) in enumerate(draws):
            mine = np.flatnonzero(where[pattern, 0] == bucket)
            out[shot[slotted[mine]]] = samples[where[pattern[mine], 1], rank[mine]]
    out[shot] ^= flips
    return out.reshape(job.batch, shots)


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an int64 array (a sort beats np.unique's hashing here)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True, return_counts=True)`` by one lexsort (much faster)."""
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    new = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    starts = np.flatnonzero(new)
    inverse = np.empty(len(rows), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[starts], inverse, np.diff(np.r_[starts, len(rows)])


def _with_tail(job: Job, tail: tuple[Operation, ...]) -> Circuit:
    circuit = job.circuit.copy()
    for op in tail:
        circuit.append(op.name, op.qubits, op.params)
    return circuit


__all__ = ["noisy_samples"]
