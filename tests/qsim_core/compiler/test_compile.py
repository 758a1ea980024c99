"""The compiler's passes, checked on what they produce (their effect on results is in backends/)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from bench.workloads import layered_circuit
from qsim_core.compiler import CNOT, PERM, SWAP, U1, U2D, U2X, compile_circuit
from qsim_core.compiler.blocking import control_masks, permutation_table
from qsim_core.compiler.program import Step
from tests.conftest import random_params, seed_circuit
from tests.strategies import permutation_runs


def test_seed_circuit_compiles_to_product_init_two_permutations_and_eight_fused_gates():
    program = compile_circuit(seed_circuit(), zbasis=True)
    assert program.kind.tolist() == [PERM] + [U1] * 8 + [PERM]
    assert (program.init_u1 >= 0).all()  # layer 1 + encoding are folded into the product state
    # in Z-basis mode the last RZ layer is invisible, so layer 2 keeps only its RY
    runs = np.diff(program.run_start)
    assert runs[program.arg[1:9]].tolist() == [1] * 8
    full = compile_circuit(seed_circuit(), zbasis=False)
    assert np.diff(full.run_start)[full.arg[1:9]].tolist() == [2] * 8
    assert program.single_block


def test_compilation_is_cached_per_structure_and_invalidated_by_changes():
    c = seed_circuit()
    first = compile_circuit(c)
    assert compile_circuit(c) is first
    assert compile_circuit(seed_circuit()) is first  # equal structure, other object
    c.h(0)
    assert compile_circuit(c) is not first


def test_permutation_table_equals_applying_the_cnots_one_by_one():
    c = qc.Circuit(4)
    pairs = [(0, 1), (2, 0), (1, 3), (3, 2), (0, 3)]
    for a, b in pairs:
        c.cnot(a, b)
    c.swap(1, 2)
    program = compile_circuit(c)
    assert program.kind.tolist() == [PERM]
    table = program.perm_table
    for basis in range(16):
        bits = [(basis >> q) & 1 for q in range(4)]
        for a, b in pairs:
            bits[b] ^= bits[a]
        bits[1], bits[2] = bits[2], bits[1]
        image = sum(bit << q for q, bit in enumerate(bits))
        assert table[image] == basis  # new[image] = old[basis]


@settings(max_examples=30)
@given(circuit=permutation_runs(max_qubits=9), block_qubits=st.sampled_from([3, 5, 14]))
def test_permutation_tables_are_linear_over_gf2(circuit, block_qubits):
    # the kernels read four amplitudes per table entry on this (new[i ^ k] comes from table[i] ^ table[k])
    program = compile_circuit(circuit, block_qubits=block_qubits)
    assert PERM in program.kind.tolist()
    for t in range(len(program.perm_start) - 1):
        table = program.perm_table[program.perm_start[t]:program.perm_start[t + 1]]
        index = np.arange(len(table))
        for k in range(1, len(table)):
            np.testing.assert_array_equal(table[index ^ k], table ^ table[k])


def test_short_cnot_runs_stay_cnot_steps():
    program = compile_circuit(qc.Circuit(3).h(0).cnot(0, 1).h(1).cnot(1, 2))
    assert CNOT in program.kind.tolist() and PERM not in program.kind.tolist()


def fused_runs(program, params: np.ndarray) -> list[np.ndarray]:
    """Every fused single-qubit run's 2x2 product for one parameter vector, in run order."""
    u1, _ = program.bind(np.atleast_2d(params), np.complex128, 1)
    runs = []
    for r in range(len(program.run_start) - 1):
        product = np.eye(2)
        for k in range(program.run_start[r], program.run_start[r + 1]):
            product = u1[0, program.run_gate[k]] @ product
        runs.append(product)
    return runs


def test_tail_pass_keeps_gates_that_matter_for_probabilities():
    c = qc.Circuit(2).h(0).rz(0, 0.3).h(0).rz(1, 0.2).cnot(0, 1).t(1)
    program = compile_circuit(c, zbasis=True)
    # rz(1) before the CNOT and t(1) go; the middle rz survives (in one constant with the two H)
    assert program.init_u1.tolist() == [0, -1] and len(program.run_start) == 2
    h, rz = qc.GATES["h"].matrix(), qc.GATES["rz"].matrix(0.3)
    np.testing.assert_allclose(fused_runs(program, np.zeros(0))[0], h @ rz @ h, atol=1e-14)


def test_large_circuits_are_split_into_blocks_of_bounded_width():
    c = qc.Circuit(10)
    for q in range(10):
        c.ry(q, qc.Param(q))
    for q in range(9):
        c.cnot(q, q + 1)
    for q in range(10):
        c.rx(q, 0.1 * q)
    program = compile_circuit(c, block_qubits=6)
    assert not program.single_block
    widths = np.diff(program.block_qubit_start)
    assert (widths <= 6).all() and len(widths) >= 2
    # every block contains the three lowest qubits (whole cache lines per gathered run)
    for b in range(len(widths)):
        assert {0, 1, 2} <= set(program.block_qubits[program.block_qubit_start[b]:program.block_qubit_start[b + 1]])


def test_cnot_chains_across_blocks_take_their_control_from_outside_the_block():
    # the second chain's CNOT(12, 13) joins the block of qubits 13..23 with 12 as an external control,
    # instead of costing two more passes over the state for the chain's last 11 CNOTs
    program = compile_circuit(layered_circuit(24, 2))
    assert len(program.block_start) == 3
    second = program.block_qubits[program.block_qubit_start[1]:].tolist()
    assert 12 not in second and program.perm_control_qubit.tolist() == [12]
    assert np.diff(program.perm_control_start).sum() == 1
    widths = np.diff(program.block_qubit_start)
    assert (widths <= 14).all()


def test_control_masks_give_the_slice_permutation_for_every_value_of_the_external_controls():
    # local qubits 0..3 (positions 0..3), external controls 4 and 5
    local = {q: q for q in range(4)}
    pairs = [(0, 1), (4, 2), (2, 3), (5, 0), (3, 1), (4, 3)]
    steps = [Step(CNOT, pair, ()) for pair in pairs] + [Step(SWAP, (1, 2), ())]
    table = permutation_table(steps, local, 16)
    masks = control_masks(steps, local)
    assert [q for q, _ in masks] == [4, 5, 4]
    for outside in range(4):
        flip = 0
        for q, mask in masks:
            flip ^= mask if (outside >> (q - 4)) & 1 else 0
        for basis in range(16):
            bits = [(basis >> q) & 1 for q in range(4)] + [outside & 1, outside >> 1]
            for a, b in pairs:
                bits[b] ^= bits[a]
            bits[1], bits[2] = bits[2], bits[1]
            image = sum(bit << q for q, bit in enumerate(bits[:4]))
            assert table[image] ^ flip == basis  # new[image] = old[basis]


def test_bind_shapes_and_matrices():
    c = seed_circuit()
    program = compile_circuit(c)
    params = random_params(c, batch=5)
    u1, u2 = program.bind(params, np.complex64, 2)
    # 40 rotations; per qubit the encoding RY and the first layer's RY merge into one RY of their sum
    assert u1.shape == (5, 32, 2, 2) and u1.dtype == np.complex64 and u2.shape == (5, 0, 4, 4)
    first_ry = next(g for g in program.u1_groups if g.name == "ry")
    k = first_ry.start
    expected = qc.GATES["ry"].matrix(first_ry.values(params)[0][:, 0])
    np.testing.assert_allclose(u1[:, k], expected, atol=1e-7)


def test_narrow_blocks_still_fit_two_qubit_gates_outside_the_low_qubits():
    # with block_qubits=4 the forced low qubits must leave room for cnot(3, 4)
    program = compile_circuit(qc.Circuit(5).cnot(3, 4).h(0), block_qubits=4)
    widths = np.diff(program.block_qubit_start)
    assert (widths <= 4).all()


@pytest.mark.parametrize("name, kind", [("ms", U2X), ("xx", U2X), ("yy", U2X), ("zz", U2D), ("native_zz", U2D)])
def test_structured_two_qubit_gates_compile_to_their_kinds(name, kind):
    spec = qc.GATES[name]
    symbolic = qc.Circuit(3).append(name, (2, 0), [qc.Param(k) for k in range(spec.num_params)])
    constant = qc.Circuit(3).append(name, (0, 1), [0.1 * (k + 1) for k in range(spec.num_params)])
    for circuit in (symbolic, constant):
        program = compile_circuit(circuit)
        assert program.kind.tolist() == [kind]
        assert program.arg.tolist() == [0] and len(program.u2_groups) == 1  # the bound 4x4, as for U2


def test_native_seed_circuit_compiles_like_the_qis_seed_circuit():
    # 56 MS: every cascade folds back into one permutation, the virtual Z frames into RZ rotations
    qis = compile_circuit(seed_circuit(), zbasis=True)
    for drop in (False, True):
        native = compile_circuit(qc.to_native(seed_circuit(), drop_final_phases=drop), zbasis=True)
        assert native.kind.tolist() == qis.kind.tolist() == [PERM] + [U1] * 8 + [PERM]
        assert (native.init_u1 >= 0).all() and native.single_block
        np.testing.assert_array_equal(native.perm_table, qis.perm_table)


def test_virtual_z_frames_become_rotations():
    # with the RZ virtual, GPi2(0) . RZ(theta) . GPi2(1/2) is GPi2(0), then GPi2(1/2 - theta / 2 pi):
    # that is RZ(-theta) RY(theta), and compiles to those two rotations
    theta = qc.Param(0, -1 / (2 * np.pi), 0.5)
    c = qc.Circuit(2).h(1).cnot(1, 0).gpi2(0, 0.0).gpi2(0, theta).cnot(1, 0)
    program = compile_circuit(c)
    run = program.arg[program.kind == U1][0]
    gates = program.run_gate[program.run_start[run]:program.run_start[run + 1]]
    assert sorted(group.name for group in program.u1_groups for g in gates if group.start <= g < group.stop) == [
        "ry", "rz"]
    rz, ry = qc.GATES["rz"].matrix(-0.7), qc.GATES["ry"].matrix(0.7)
    np.testing.assert_allclose(fused_runs(program, np.array([0.7]))[run], rz @ ry, atol=1e-14)


def test_a_native_cnot_folds_into_a_cnot_step():
    # CNOT = RY(pi/2)_c . MS . RX(-pi/2)_c RX(-pi/2)_t RY(-pi/2)_c in native gates, up to a global phase
    c = qc.Circuit(2).ry(0, qc.Param(0)).gpi2(0, 0.25).ms(0, 1, 0.0, 0.0).gpi2(0, 0.5).gpi2(0, 0.75).gpi2(1, 0.5)
    c.ry(1, qc.Param(1))
    program = compile_circuit(c)
    assert CNOT in program.kind.tolist() and U2X not in program.kind.tolist()


def test_non_clifford_native_gates_are_left_alone():
    c = qc.Circuit(2).gpi2(0, qc.Param(0, 1.0, 0.1)).ms(0, 1, 0.1, qc.Param(1), 0.2).gpi(1, 0.3)
    program = compile_circuit(c)
    assert program.kind.tolist() == [U2X, U1] and program.init_u1[0] == 0
    assert {group.name for group in program.u1_groups} == {"gpi2", "gpi"}


@pytest.mark.parametrize("angle", [1e-6, 1e-9, -3e-11])
def test_a_small_rotation_is_kept_however_close_to_the_identity(angle):
    # numpy's allclose has a relative tolerance of 1e-5 by default: an identity test with it took
    # RZ(1e-6) for the identity and dropped it, a 5e-7 error on every amplitude (found by hypothesis)
    c = qc.Circuit(2).rz(0, angle).rx(1, angle)
    states = np.random.default_rng(0).normal(size=(2, 4)) + 0j
    states /= np.linalg.norm(states, axis=1, keepdims=True)
    expected = np.kron(qc.GATES["rx"].matrix(angle), qc.GATES["rz"].matrix(angle))
    for name in qc.available_backends():
        got = qc.Simulator(backend=name).statevector(c, initial_state=states)
        np.testing.assert_allclose(got, states @ expected.T, rtol=0, atol=1e-15)
