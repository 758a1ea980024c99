"""NoiseModel: IonQ's presets, validation, and how Simulator(noise=...) reads it."""

from __future__ import annotations

import math

import pytest

import qsim_core as qc
from qsim_core.noise import IONQ_MODELS, resolve_noise


@pytest.mark.parametrize(("name", "r1", "r2", "qubits"), [
    ("aria-1", 0.0005, 0.0133, 25),
    ("aria-2", 0.0006573333333333332, 0.01856, 25),
    ("forte-1", 0.0002666666666666667, 0.004949333333333333, 29),
])
def test_ionq_presets_carry_the_published_rates(name, r1, r2, qubits):
    model = qc.NoiseModel.ionq(name)
    assert (model.r1q, model.r2q, model.name, model.max_qubits) == (r1, r2, name, qubits)
    assert qc.Simulator(noise=name).noise == model


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="aria-1, aria-2, forte-1"):
        qc.NoiseModel.ionq("harmony")
    with pytest.raises(ValueError, match="known models"):
        qc.Simulator(noise="aria-3")


@pytest.mark.parametrize(("r1", "r2"), [(-0.1, 0.0), (0.0, 1.1), (1.4, 0.0), (math.nan, 0.0), (True, 0.0),
                                        ("0.1", 0.0), (0.0, math.inf)])
def test_rates_outside_the_depolarizing_range_are_refused(r1, r2):
    with pytest.raises(ValueError, match="depolarizing rate"):
        qc.NoiseModel(r1q=r1, r2q=r2)


def test_range_ends_are_channels_and_error_probabilities_follow_the_kraus_weights():
    model = qc.NoiseModel(r1q=4 / 3, r2q=16 / 15)
    assert model.error_probability(1) == pytest.approx(1.0)  # 3 r1 / 4
    assert model.error_probability(2) == pytest.approx(1.0)  # 15 r2 / 16


def test_resolve_noise_short_circuits_zero_rates_and_rejects_other_types():
    assert resolve_noise(None) is None
    assert resolve_noise(qc.NoiseModel(0, 0)) is None
    assert resolve_noise("forte-1") == qc.NoiseModel.ionq("forte-1")
    with pytest.raises(ValueError, match="NoiseModel"):
        resolve_noise(0.01)
    assert set(IONQ_MODELS) == {"aria-1", "aria-2", "forte-1"}
