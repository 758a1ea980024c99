"""The vectorised and fused forward kernels against the reference backend.

What is covered, on sizes small enough to be quick but large enough to reach each path:

* the Cython vector kernels (complex, real and diagonal 2x2 on every qubit position) in every
  instruction-set level this machine builds and runs, and numba's twins;
* L1 tiling of a stretch of steps on low qubits (states larger than a 16 KiB tile);
* the compiler's diagonal tails (:mod:`qsim_core.compiler.diagonals`) and the kernels' phase pass over
  a stretch of diagonal steps, in multi-block programs (gathered, run-wise and in-place blocks);
* that none of this reaches the adjoint sweep: its program stays one block with unsplit runs, and its
  gradients agree with parameter-shift.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core.backends import contract, driver, isa
from qsim_core.compiler import U1, compile_circuit
from tests.conftest import COMPILED, TOLERANCE, random_params

REFERENCE = qc.Simulator(backend="reference")
ONE_QUBIT = ("ry", "rz", "rx", "h", "s", "t", "x", "v", "gpi2")
TWO_QUBIT = ("cnot", "swap", "zz", "xx", "ms")


@st.composite
def layered_circuits(draw, min_qubits: int, max_qubits: int, max_layers: int = 3):
    """Layers of single-qubit gates (parametrised rotations and constants) on random qubits, then two-qubit
    gates: runs ending in RZ or T (diagonal tails), real heads (RY, H) and complex ones (RX, V, GPi2)."""
    n = draw(st.integers(min_qubits, max_qubits))
    circuit = qc.Circuit(n)
    k = 0
    for _ in range(draw(st.integers(2, max_layers))):  # the first layer mostly initialises the product state
        for q in draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=2 * n)):
            name = draw(st.sampled_from(ONE_QUBIT))
            if qc.GATES[name].num_params:
                circuit.append(name, [q], [qc.Param(k)])
                k += 1
            else:
                circuit.append(name, [q], [])
        for _ in range(draw(st.integers(0, n))):
            name = draw(st.sampled_from(TWO_QUBIT))
            a, b = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
            params = [qc.Param(k)] if qc.GATES[name].num_params else []
            k += len(params)
            circuit.append(name, [a, b], params * qc.GATES[name].num_params)
    return circuit


def check_states(circuit: qc.Circuit, backend: str, precision: str, block_qubits: int = 14, batch: int = 2) -> None:
    sim = qc.Simulator(backend=backend, precision=precision, block_qubits=block_qubits)
    params = random_params(circuit, batch=batch, seed=circuit.num_qubits)
    np.testing.assert_allclose(sim.statevector(circuit, params), REFERENCE.statevector(circuit, params),
                               atol=TOLERANCE[precision])


@settings(max_examples=25, deadline=None)
@given(circuit=layered_circuits(min_qubits=5, max_qubits=8))
def test_blocked_programs_with_diagonal_stretches_match_reference(backend, precision, circuit):
    check_states(circuit, backend, precision, block_qubits=4)


@settings(max_examples=10, deadline=None)
@given(circuit=layered_circuits(min_qubits=2, max_qubits=7))
def test_single_block_programs_match_reference(backend, precision, circuit):
    check_states(circuit, backend, precision, batch=3)


def rotation_layers(n: int, layers: int) -> qc.Circuit:
    """``layers`` x [RY all, RZ all, CNOT chain] (bench/large_n.py's circuit), then RX on every qubit."""
    circuit = qc.Circuit(n)
    k = 0
    for _ in range(layers):
        for name in ("ry", "rz"):
            for q in range(n):
                circuit.append(name, [q], [qc.Param(k)])
                k += 1
        for q in range(n - 1):
            circuit.cnot(q, q + 1)
    for q in range(n):
        circuit.rx(q, qc.Param(k))
        k += 1
    return circuit


@pytest.mark.parametrize(("num_qubits", "block_qubits"), [(12, 14), (13, 12), (13, 6)],
                         ids=["tiled-single-block", "tiled-blocks", "small-blocks"])
def test_rotation_layers_match_reference(backend, precision, num_qubits, block_qubits):
    # 2**12 amplitudes exceed an L1 tile in both precisions: stretches on low qubits run tile by tile
    check_states(rotation_layers(num_qubits, 2), backend, precision, block_qubits=block_qubits, batch=1)


def runnable_cython_levels() -> list[str]:
    if "cython" not in COMPILED:
        return []
    built = isa.built_levels("qsim_core.backends.cython")
    return [level for level in isa.runnable_levels(isa.cpu_flags()) if level in built]


@pytest.mark.parametrize("level", runnable_cython_levels())
def test_every_cython_level_matches_reference(level, precision):
    kernels = importlib.import_module(f"qsim_core.backends.cython.{isa.LEVELS[level].module}")
    backend = driver.CompiledBackend(f"cython {level}", kernels, kernels)
    tol = TOLERANCE[precision]
    dtype = np.complex128 if precision == "double" else np.complex64
    for circuit, block_qubits in ((rotation_layers(11, 2), 14), (rotation_layers(11, 2), 8)):
        params = random_params(circuit, batch=1, seed=5)
        job = contract.Job(circuit, params, dtype, 1, block_qubits)
        np.testing.assert_allclose(backend.statevector(job), REFERENCE.statevector(circuit, params), atol=tol)


def run_names(program, step: int) -> list[str]:
    """Gate names of the fused run of U1 step ``step``, first gate first."""
    positions = program.run_gate[program.run_start[program.arg[step]]:program.run_start[program.arg[step] + 1]]
    return [next(g.name for g in program.u1_groups if g.start <= p < g.stop) for p in positions]


def u1_runs(program) -> list[list[str]]:
    return [run_names(program, k) for k in range(program.num_steps) if program.kind[k] == U1]


def test_single_block_programs_keep_their_runs_whole():
    # the adjoint sweep runs on these: its fused runs must stay as they were
    program = compile_circuit(rotation_layers(6, 2), block_qubits=6)
    assert u1_runs(program).count(["ry", "rz"]) == 6  # the second layer (the first initialises the product state)


def test_multi_block_programs_split_runs_into_real_heads_and_diagonal_stretches():
    program = compile_circuit(rotation_layers(8, 2), block_qubits=5)
    runs = u1_runs(program)
    assert ["ry", "rz"] not in runs and ["ry"] in runs and ["rz"] in runs
    kinds = [run_names(program, k) == ["rz"] if program.kind[k] == U1 else None for k in range(program.num_steps)]
    # the RZ tails stand together: stretches of several diagonal steps, each before a permutation or a block's end
    assert any(a and b for a, b in zip(kinds, kinds[1:], strict=False))
    ends = set(program.block_start[1:] - 1)
    assert all(not tail or k in ends or kinds[k + 1] is None or kinds[k + 1]
               for k, tail in enumerate(kinds))


def test_adjoint_programs_stay_single_block_and_gradients_match_parameter_shift(backend):
    circuit = rotation_layers(6, 2)
    sim = qc.Simulator(backend=backend, block_qubits=4)
    params = random_params(circuit, seed=3)
    labels = ["Z0", "Z2 Z3", "X5"]
    adjoint = sim.gradient(circuit, labels, params, method="adjoint")
    shift = sim.gradient(circuit, labels, params, method="parameter-shift")
    np.testing.assert_allclose(adjoint, shift, atol=1e-10)
    job = contract.Job(circuit, params[np.newaxis], np.complex128, 1, 4)
    plan_program = driver.plan_for(job, zbasis=False).program
    assert plan_program.single_block
    assert plan_program.num_steps == compile_circuit(circuit, block_qubits=6).num_steps
