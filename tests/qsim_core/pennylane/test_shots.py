"""Shots on qsim_core.qubit: statistics against exact values, seeds, shot vectors, broadcasting.

Both shot paths run: measurements in a Pauli word's eigenbasis are sampled by
the engine (``pauli_only``), a tape with a sum observable is sampled from the
engine's state by PennyLane's routines.

Statistical checks allow 5 standard errors: a false failure has probability
below 1e-6 per check (and the seeds are fixed, so a run is reproducible).
"""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest

N = 3
ANGLES = np.array([[0.3, 1.1, -0.7], [2.0, -0.4, 0.9]])


def circuit(x, analytic=False, pauli_only=True):
    qml.AngleEmbedding(x, wires=range(N), rotation="Y")
    qml.CNOT([0, 1])
    qml.CRZ(0.6, wires=[1, 2])
    qml.Hadamard(2)
    mixed = qml.X(2) @ qml.Y(1) if pauli_only else qml.X(2) + 0.5 * qml.Y(1)
    exact = (qml.expval(qml.Z(0) @ qml.Z(1)), qml.expval(mixed), qml.probs(wires=[2, 0]), qml.var(qml.Z(1)))
    return exact if analytic else exact + (qml.sample(wires=[0, 1]), qml.counts(wires=[2]))


def run(shots, x, seed=7, pauli_only=True, **kwargs):
    qnode = qml.QNode(circuit, qml.device("qsim_core.qubit", wires=N, seed=seed, **kwargs))
    return qml.set_shots(qnode, shots)(x, pauli_only=pauli_only)


PATHS = pytest.mark.parametrize("pauli_only", [True, False], ids=["engine samples", "pennylane samples"])


@PATHS
def test_shot_estimates_agree_with_exact_values(pauli_only):
    shots = 40_000  # per broadcast row; each row is checked against its own exact values
    exact = qml.QNode(circuit, qml.device("default.qubit", wires=N))(ANGLES, analytic=True, pauli_only=pauli_only)
    zz, mixed, probs, var, samples, counts = run(shots, ANGLES, pauli_only=pauli_only)
    np.testing.assert_array_less(np.abs(zz - exact[0]), 5 * np.sqrt((1 - exact[0] ** 2) / shots))
    np.testing.assert_array_less(np.abs(mixed - exact[1]), 5 * 1.5 / np.sqrt(shots))
    np.testing.assert_array_less(np.abs(probs - exact[2]), 5 * np.sqrt(exact[2] * (1 - exact[2]) / shots) + 1e-12)
    np.testing.assert_array_less(np.abs(var - exact[3]), 5 * 2 / np.sqrt(shots))
    assert samples.shape == (len(ANGLES), shots, 2) and set(np.unique(samples)) <= {0, 1}
    assert all(sum(c.values()) == shots and set(c) <= {"0", "1"} for c in counts)
    wire0_is_1 = exact[2][:, 1] + exact[2][:, 3]  # probs over wires [2, 0]: wire 0 is the low bit
    np.testing.assert_array_less(np.abs(samples[:, :, 0].mean(axis=1) - wire0_is_1), 5 * 0.5 / np.sqrt(shots))


@PATHS
def test_same_seed_same_samples_and_other_seed_other_samples(pauli_only):
    first, second, other = (run(500, ANGLES, seed, pauli_only) for seed in (11, 11, 12))
    np.testing.assert_array_equal(first[4], second[4])
    np.testing.assert_array_equal(first[2], second[2])
    assert not np.array_equal(first[4], other[4])


@PATHS
def test_shot_vectors_and_broadcasting_have_pennylane_shapes(pauli_only):
    results = run([100, (200, 2)], ANGLES, pauli_only=pauli_only)
    assert len(results) == 3
    for shots, result in zip([100, 200, 200], results, strict=True):
        zz, _, probs, _, samples, counts = result
        assert np.shape(zz) == (2,) and np.shape(probs) == (2, 4) and np.shape(samples) == (2, shots, 2)
        assert len(counts) == 2 and all(sum(c.values()) == shots for c in counts)


def test_device_shots_still_work():
    with pytest.warns(qml.exceptions.PennyLaneDeprecationWarning):
        dev = qml.device("qsim_core.qubit", wires=N, shots=50, seed=3)
    assert np.shape(qml.QNode(circuit, dev)(ANGLES[0])[4]) == (50, 2)


def test_parameter_shift_with_shots_estimates_the_gradient():
    dev = qml.device("qsim_core.qubit", wires=1, seed=5)

    @qml.set_shots(20_000)
    @qml.qnode(dev, diff_method="parameter-shift")
    def expval(x):
        qml.RX(x, wires=0)
        return qml.expval(qml.Z(0))

    x = qml.numpy.array(0.8, requires_grad=True)
    # (f(x + pi/2) - f(x - pi/2)) / 2 from two 20,000-shot estimates: standard error <= sqrt(2 / 20,000) / 2
    assert abs(qml.grad(expval)(x) + np.sin(0.8)) < 5 * np.sqrt(2 / 20_000) / 2
