"""Refillable gate-matrix arrays (GateMatrices): any number of rows up to their size, the same as a fresh bind."""

from __future__ import annotations

import numpy as np
import pytest

import qsim_core as qc
from qsim_core.compiler import compile_circuit
from tests.conftest import random_params


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_refills_of_fewer_rows_equal_a_fresh_bind(dtype):
    # rotations, a tabled parametrised gate (GPi2), two-qubit rotations and constants in one program
    circuit = qc.Circuit(3).ry(0, qc.Param(0)).gpi2(1, qc.Param(1)).cnot(0, 1).zz(1, 2, qc.Param(2))
    circuit.ms(0, 2, qc.Param(0) * 0.1, 0.2).h(2).rz(2, qc.Param(1) + qc.Param(2))
    program = compile_circuit(circuit, zbasis=False, block_qubits=12, from_zero=True)
    u1, u2 = program.matrix_buffers(8, dtype)
    for rows, seed in ((8, 1), (3, 2), (1, 3), (8, 4)):
        params = random_params(circuit, batch=rows, seed=seed)
        fresh = program.bind(params, dtype, 1)
        assert np.array_equal(u1.fill(params, 1), fresh[0]) and np.array_equal(u2.fill(params, 1), fresh[1])
    with pytest.raises(ValueError, match="9 parameter sets do not fit matrices for 8"):
        u1.fill(random_params(circuit, batch=9), 1)
