"""Pauli-string parsing into masks, and its errors."""

from __future__ import annotations

import pytest

import qsim_core as qc
from qsim_core.observables import parse_observables


def test_masks_follow_the_bit_order():
    obs = parse_observables(["Z0", "X1 Y3", "Z0 Z7", "I", "y2*x0"], 8)
    assert obs.zmask.tolist() == [1, 8, 129, 0, 4]
    assert obs.xmask.tolist() == [0, 2 + 8, 0, 0, 4 + 1]
    assert obs.ny.tolist() == [0, 1, 0, 0, 1]
    assert not obs.z_only
    assert parse_observables("Z0 Z1", 2).z_only


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("Z8", r"'Z8': qubit 8 is out of range for 8 qubits"),
        ("Q1", r"'Q1' is not a Pauli string"),
        ("Z", r"'Z' is not a Pauli string"),
        ("Z0 Z0", r"qubit 0 appears twice"),
        ("X1 +", r"stuck at '\+'"),
    ],
)
def test_bad_labels_are_named(label, message):
    with pytest.raises(qc.ObservableError, match=message):
        parse_observables([label], 8)


def test_empty_list_and_non_strings_are_rejected():
    with pytest.raises(qc.ObservableError, match="no observables"):
        parse_observables([], 2)
    with pytest.raises(qc.ObservableError, match="observable 1 must be a Pauli string"):
        parse_observables(["Z0", 3], 2)


def test_factors_decode_each_string_qubit_by_qubit():
    strings = parse_observables(["X0 Y3 Z5", "I", "Y1"], 6)
    assert strings.factors(0) == {0: "X", 3: "Y", 5: "Z"}
    assert strings.factors(1) == {}
    assert strings.factors(2) == {1: "Y"}
