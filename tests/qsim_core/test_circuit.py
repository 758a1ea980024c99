"""Circuit builder: one method per gate, validation with messages that name the operation."""

from __future__ import annotations

import math

import pytest

import qsim_core as qc


def test_every_gate_has_a_builder_method_that_appends_it():
    for spec in qc.GATES.values():
        c = qc.Circuit(3)
        getattr(c, spec.name)(*range(spec.num_qubits), *[0.1] * (spec.num_params - len(spec.defaults)))
        (op,) = list(c)
        assert (op.name, op.qubits, len(op.params)) == (spec.name, tuple(range(spec.num_qubits)), spec.num_params)


def test_iteration_yields_operations_with_name_qubits_params():
    c = qc.Circuit(2).h(0).cnot(0, 1).ry(1, qc.Param(2, scale=0.5, offset=1.0))
    assert [(op.name, op.qubits) for op in c] == [("h", (0,)), ("cnot", (0, 1)), ("ry", (1,))]
    assert c.operations[2].params == (qc.Param(2, 0.5, 1.0),)
    assert c.num_params == 3 and len(c) == 3


def test_param_arithmetic_and_resolve():
    p = 2 * qc.Param(1) + 0.5
    assert p == qc.Param(1, 2.0, 0.5)
    assert p.resolve([0.0, 1.5]) == pytest.approx(3.5)
    assert (-qc.Param(0)).resolve([2.0]) == -2.0


def test_keyword_parameters():
    c = qc.Circuit(2).ms(0, 1, 0.1, 0.2, angle=0.1).rx(0, theta=0.3)
    assert c.operations[0].params == (0.1, 0.2, 0.1)
    assert c.operations[1].params == (0.3,)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda c: c.rx(3, 0.1), r"operation 0 \(rx\): qubit 3 is out of range for a 3-qubit circuit"),
        (lambda c: c.rx(-1, 0.1), r"qubit -1 is out of range"),
        (lambda c: c.cnot(1, 1), r"operation 0 \(cnot\): repeated qubit in \(1, 1\)"),
        (lambda c: c.ry(0, math.nan), r"operation 0 \(ry\): theta must be finite, got nan"),
        (lambda c: c.rz(0, math.inf), r"theta must be finite, got inf"),
        (lambda c: c.rx(0), r"operation 0 \(rx\) takes 1 parameter\(s\) \('theta',\), got 0"),
        (lambda c: c.x(0, 0.5), r"operation 0 \(x\) takes 0 parameter"),
        (lambda c: c.append("cz", (0, 1)), r"unknown gate 'cz'"),
        (lambda c: c.append("cnot", (0,)), r"operation 0 \(cnot\) acts on 2 qubit\(s\), got 1"),
        (lambda c: c.rx(0.5, 0.1), r"qubit index must be an integer, got 0.5"),
        (lambda c: c.rx(0, "a"), r"theta must be a number, Param or ParamSum, got 'a'"),
        (lambda c: c.rx(0, bogus=1.0), r"unexpected keyword argument"),
    ],
)
def test_bad_operations_raise_with_the_operation_named(build, message):
    c = qc.Circuit(3)
    with pytest.raises(qc.CircuitError, match=message):
        build(c)
    assert len(c) == 0


@pytest.mark.parametrize("n", [0, -2, 1.5, True])
def test_zero_or_bad_qubit_count_is_rejected(n):
    with pytest.raises(qc.CircuitError, match="number of qubits >= 1"):
        qc.Circuit(n)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"index": -1}, "index must be an integer >= 0"), ({"index": 0, "scale": math.nan}, "scale must be a finite"),
     ({"index": 0, "offset": math.inf}, "offset must be a finite")],
)
def test_bad_param_references(kwargs, message):
    with pytest.raises(qc.CircuitError, match=message):
        qc.Param(**kwargs)


def test_copy_is_independent_and_structure_key_tracks_changes():
    c = qc.Circuit(2).h(0)
    d = c.copy().x(1)
    assert len(c) == 1 and len(d) == 2
    assert c.structure_key() != d.structure_key()
    assert c.structure_key() == qc.Circuit(2).h(0).structure_key()


def test_param_sums_combine_and_simplify():
    total = qc.Param(2, 0.5) + qc.Param(0) + 1.0
    assert isinstance(total, qc.ParamSum)
    assert total.terms == ((0, 1.0), (2, 0.5)) and total.offset == 1.0
    assert total.resolve([1.0, 9.0, 4.0]) == 4.0
    assert (total - qc.Param(0)) == qc.Param(2, 0.5, 1.0)  # one term left: a plain Param
    assert qc.ParamSum.combine(qc.Param(1), -qc.Param(1), 0.25) == 0.25
    c = qc.Circuit(1).rz(0, total)
    assert c.num_params == 3


def test_param_sum_rejects_malformed_terms():
    with pytest.raises(qc.CircuitError, match="distinct ascending"):
        qc.ParamSum(((1, 1.0), (1, 2.0)))
