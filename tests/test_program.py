"""The compiler's passes, checked on what they produce (their effect on results is in backends/)."""

from __future__ import annotations

import numpy as np

import qsim_core as qc
from qsim_core.program import CNOT, PERM, U1, compile_circuit
from tests.conftest import random_params, seed_circuit


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


def test_short_cnot_runs_stay_cnot_steps():
    program = compile_circuit(qc.Circuit(3).h(0).cnot(0, 1).h(1).cnot(1, 2))
    assert CNOT in program.kind.tolist() and PERM not in program.kind.tolist()


def test_tail_pass_keeps_gates_that_matter_for_probabilities():
    c = qc.Circuit(2).h(0).rz(0, 0.3).h(0).rz(1, 0.2).cnot(0, 1).t(1)
    program = compile_circuit(c, zbasis=True)
    kept = [group.name for group in program.u1_groups for _ in range(group.stop - group.start)]
    assert sorted(kept) == ["h", "h", "rz"]  # the middle rz survives, rz(1) before the CNOT and t(1) go


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


def test_bind_shapes_and_matrices():
    c = seed_circuit()
    program = compile_circuit(c)
    params = random_params(c, batch=5)
    u1, u2 = program.bind(params, np.complex64)
    assert u1.shape == (5, 40, 2, 2) and u1.dtype == np.complex64 and u2.shape == (5, 0, 4, 4)
    first_ry = next(g for g in program.u1_groups if g.name == "ry")
    k = first_ry.start
    expected = qc.GATES["ry"].matrix(first_ry.values(params)[0][:, 0])
    np.testing.assert_allclose(u1[:, k], expected, atol=1e-7)


def test_narrow_blocks_still_fit_two_qubit_gates_outside_the_low_qubits():
    # with block_qubits=4 the forced low qubits must leave room for cnot(3, 4)
    program = compile_circuit(qc.Circuit(5).cnot(3, 4).h(0), block_qubits=4)
    widths = np.diff(program.block_qubit_start)
    assert (widths <= 4).all()
