"""The gate table: every entry unitary, equal to its definition from Pauli generators or IonQ's formulas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

import qsim_core as qc
from qsim_core.gates import GATE_BY_OPCODE, gate

I2 = np.eye(2)
X = np.array([[0, 1], [1, 0]], complex)
Y = np.array([[0, -1j], [1j, 0]])
Z = np.diag([1.0 + 0j, -1.0])
P0, P1 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
ANGLES = [0.0, 0.3, -1.7, np.pi, 2.5 * np.pi]
PHASES = [0.0, 0.125, -0.3, 0.5, 0.9]


def matrix(name: str, *params: float) -> np.ndarray:
    spec = qc.GATES[name]
    return spec.matrix(*params) if spec.num_params else spec.matrix()


def sigma(phase: float) -> np.ndarray:
    return np.cos(2 * np.pi * phase) * X + np.sin(2 * np.pi * phase) * Y


@pytest.mark.parametrize("spec", list(qc.GATES.values()), ids=lambda g: g.name)
def test_every_gate_is_unitary_and_flags_hold(spec):
    rng = np.random.default_rng(1)
    for _ in range(5):
        params = rng.uniform(-3, 3, spec.num_params)
        m = matrix(spec.name, *params)
        d = 2**spec.num_qubits
        assert m.shape == (d, d)
        np.testing.assert_allclose(m @ m.conj().T, np.eye(d), atol=1e-14)
        off_diagonal = m - np.diag(np.diag(m))
        if spec.diagonal:
            assert not off_diagonal.any()
        if spec.monomial:
            assert ((np.abs(m) > 1e-12).sum(axis=0) == 1).all()
        if spec.real:
            assert not m.imag.any()


def test_opcodes_follow_table_order_and_names_are_unique():
    assert [g.opcode for g in GATE_BY_OPCODE] == list(range(len(qc.GATES)))
    assert len({g.name for g in GATE_BY_OPCODE}) == len(qc.GATES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x", X), ("y", Y), ("z", Z), ("h", (X + Z) / np.sqrt(2)),
        ("s", expm(-1j * np.pi / 4 * Z) * np.exp(1j * np.pi / 4)),
        ("t", expm(-1j * np.pi / 8 * Z) * np.exp(1j * np.pi / 8)),
        ("v", expm(-1j * np.pi / 4 * X) * np.exp(1j * np.pi / 4)),
        ("cnot", np.kron(P0, I2) + np.kron(P1, X)),
        ("swap", (np.kron(I2, I2) + np.kron(X, X) + np.kron(Y, Y) + np.kron(Z, Z)) / 2),
    ],
)
def test_fixed_gates_match_their_definitions(name, expected):
    np.testing.assert_allclose(matrix(name), expected, atol=1e-14)


@pytest.mark.parametrize(("name", "inverse"), [("s", "si"), ("t", "ti"), ("v", "vi")])
def test_daggered_gates_are_inverses(name, inverse):
    np.testing.assert_allclose(matrix(inverse), matrix(name).conj().T, atol=1e-14)


@pytest.mark.parametrize(
    ("name", "generator"),
    [("rx", X), ("ry", Y), ("rz", Z), ("xx", np.kron(X, X)), ("yy", np.kron(Y, Y)), ("zz", np.kron(Z, Z))],
)
@pytest.mark.parametrize("theta", ANGLES)
def test_rotations_are_exponentials_of_their_pauli_generator(name, generator, theta):
    np.testing.assert_allclose(matrix(name, theta), expm(-0.5j * theta * generator), atol=1e-13)


@pytest.mark.parametrize("phase", PHASES)
def test_native_single_qubit_gates_match_ionq_definitions(phase):
    np.testing.assert_allclose(matrix("gpi", phase), sigma(phase), atol=1e-14)
    np.testing.assert_allclose(matrix("gpi2", phase), (I2 - 1j * sigma(phase)) / np.sqrt(2), atol=1e-14)


@pytest.mark.parametrize("phase0", PHASES)
@pytest.mark.parametrize("phase1", [0.0, 0.2, -0.45])
@pytest.mark.parametrize("angle", [0.25, 0.1, 0.0])
def test_ms_matches_ionq_definition(phase0, phase1, angle):
    expected = expm(-1j * np.pi * angle * np.kron(sigma(phase0), sigma(phase1)))
    np.testing.assert_allclose(matrix("ms", phase0, phase1, angle), expected, atol=1e-13)


def test_ms_default_angle_is_fully_entangling():
    c = qc.Circuit(2).ms(0, 1, 0.0, 0.0)
    assert c.operations[0].params[-1] == 0.25
    np.testing.assert_allclose(matrix("ms", 0, 0, 0.25), (np.eye(4) - 1j * np.kron(X, X)) / np.sqrt(2), atol=1e-14)


@pytest.mark.parametrize("angle", [0.0, 0.1, -0.25, 0.5])
def test_native_zz_is_in_turns(angle):
    np.testing.assert_allclose(matrix("native_zz", angle), expm(-1j * np.pi * angle * np.kron(Z, Z)), atol=1e-13)
    np.testing.assert_allclose(matrix("native_zz", angle), matrix("zz", 2 * np.pi * angle), atol=1e-13)


def test_matrix_functions_are_vectorised():
    thetas = np.array([[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]])
    stacked = qc.GATES["ry"].matrix(thetas)
    assert stacked.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(stacked[1, 2], matrix("ry", 3.0))
    ms = qc.GATES["ms"].matrix(np.array([0.1, 0.2]), 0.3, 0.25)
    np.testing.assert_allclose(ms[1], matrix("ms", 0.2, 0.3, 0.25))


def test_unknown_gate_is_named_in_the_error():
    with pytest.raises(qc.CircuitError, match="unknown gate 'cz'.*known gates: x, y"):
        gate("cz")


@pytest.mark.parametrize("spec", [g for g in qc.GATES.values() if g.generator], ids=lambda g: g.name)
@pytest.mark.parametrize("value", [0.0, 0.37, -2.1])
def test_generator_reproduces_the_matrix(spec, value):
    # the bind kernel builds rotations from (generator, radians_per_unit) alone
    angle = spec.radians_per_unit * value
    np.testing.assert_allclose(matrix(spec.name, value), expm(-0.5j * angle * spec.generator_matrix), atol=1e-13)


def test_rotation_gates_declare_generators():
    assert {g.name for g in qc.GATES.values() if g.generator} == {"rx", "ry", "rz", "xx", "yy", "zz", "native_zz"}
