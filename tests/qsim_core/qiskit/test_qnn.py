"""qiskit-machine-learning's EstimatorQNN and SamplerQNN on our primitives, against the same QNNs on Qiskit's.

EstimatorQNN runs exact (precision 0) on both sides, so forward and backward
agree to rounding. SamplerQNN is shot based on both sides (probabilities
and their parameter-shift gradients from counts), so they agree statistically:
with 20,000 shots a probability's standard error is <= 0.0036 and a
parameter-shift gradient entry's <= 0.0036 (half the difference of two
estimates); the bound 0.03 is over 5 combined standard errors.
"""

from __future__ import annotations

import numpy as np
from qiskit.circuit.library import real_amplitudes, zz_feature_map
from qiskit.primitives import StatevectorEstimator, StatevectorSampler
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN

from qsim_core.qiskit import EstimatorV2, SamplerV2


def model():
    features = zz_feature_map(2, reps=1)
    ansatz = real_amplitudes(2, reps=1)
    return features.compose(ansatz), features.parameters, ansatz.parameters


def test_estimator_qnn_forward_and_backward_match():
    circuit, inputs, weights = model()
    observables = [SparsePauliOp(["ZZ", "XI"], [1.0, 0.5]), SparsePauliOp("IY")]
    x = np.random.default_rng(0).uniform(-1, 1, (5, len(inputs)))
    w = np.random.default_rng(1).uniform(-1, 1, len(weights))
    outputs = []
    for estimator in (EstimatorV2(), StatevectorEstimator()):
        qnn = EstimatorQNN(circuit=circuit, observables=observables, input_params=inputs, weight_params=weights,
                           estimator=estimator, input_gradients=True, default_precision=0.0)
        outputs.append((qnn.forward(x, w), *qnn.backward(x, w)))
    for ours, reference in zip(*outputs, strict=True):
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=1e-10)


def test_sampler_qnn_forward_and_backward_match_statistically():
    circuit, inputs, weights = model()
    circuit.measure_all()
    x = np.random.default_rng(2).uniform(-1, 1, (3, len(inputs)))
    w = np.random.default_rng(3).uniform(-1, 1, len(weights))
    outputs = []
    for sampler in (SamplerV2(default_shots=20_000, seed=1), StatevectorSampler(default_shots=20_000, seed=2)):
        qnn = SamplerQNN(circuit=circuit, input_params=inputs, weight_params=weights, sampler=sampler)
        forward = qnn.forward(x, w)
        _, weight_gradient = qnn.backward(x, w)
        outputs.append((forward, weight_gradient))
    (ours_forward, ours_gradient), (reference_forward, reference_gradient) = outputs
    assert ours_forward.shape == reference_forward.shape == (3, 4)
    np.testing.assert_allclose(ours_forward.sum(axis=1), 1.0)
    np.testing.assert_allclose(ours_forward, reference_forward, atol=0.03)
    assert ours_gradient.shape == reference_gradient.shape == (3, 4, len(weights))
    np.testing.assert_allclose(ours_gradient, reference_gradient, atol=0.03)
