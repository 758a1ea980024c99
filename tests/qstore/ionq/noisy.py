"""Shared by the noisy-job tests: a circuit that noise visibly changes, and a goodness-of-fit check."""

from __future__ import annotations

import numpy as np
from scipy import stats

import qsim_core as qc

#: a fit worse than this p-value fails (the seeds are fixed, so a passing test stays passing)
P_VALUE = 1e-3


def noisy_circuit(theta: float = 0.7) -> qc.Circuit:
    """3 qubits, 12 two-qubit gates: under aria-2 about a fifth of the shots carry an error."""
    c = qc.Circuit(3).x(0).ry(1, theta)
    for _ in range(4):
        c.cnot(1, 2).rx(2, 0.3).cnot(0, 1).zz(0, 2, 0.4).h(1).cnot(2, 0)
    return c


def exact(circuit: qc.Circuit, model: str | None) -> np.ndarray:
    """The exact (density-matrix) distribution under ``model`` (None: noiseless)."""
    return qc.Simulator(noise=model).probabilities(circuit)


def fit(counts: np.ndarray, p: np.ndarray) -> float:
    """Chi-square p-value of ``counts`` against ``p``, states expected fewer than 5 times pooled into one bin."""
    shots = counts.sum()
    expected = shots * p
    small = expected < 5
    observed = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    return float(stats.chisquare(observed[keep], expected[keep] * observed.sum() / expected[keep].sum()).pvalue)


def assert_noisy_counts(counts: np.ndarray, circuit: qc.Circuit, model: str) -> None:
    """``counts`` fit the exact noisy distribution, and not the noiseless one (so the check can fail)."""
    assert fit(counts, exact(circuit, model)) > P_VALUE
    assert fit(counts, exact(circuit, None)) < P_VALUE
